//! A pure schedulability pre-check: would the kube-scheduler place these pods on these nodes?
//!
//! [`precheck`] replays the kube-scheduler filters that decide GPU placement, in the
//! scheduler's order, and stops at the first failing filter per node as the scheduler does:
//!
//! 1. `NodeUnschedulable`: a cordoned node (`spec.unschedulable`) unless the pod tolerates
//!    `node.kubernetes.io/unschedulable:NoSchedule` → `node(s) were unschedulable`;
//! 2. `NodeName`: `spec.nodeName` names another node → `node(s) didn't match the requested node name`;
//! 3. `TaintToleration`: the first `NoSchedule`/`NoExecute` taint the pod does not tolerate →
//!    `node(s) had untolerated taint {key: value}`. Like the scheduler, only real taints count:
//!    a node whose `Ready` condition is `False` is excluded once the node lifecycle controller
//!    has tainted it `node.kubernetes.io/not-ready`, not before;
//! 4. `NodeAffinity`: `nodeSelector` and required node affinity (`In`, `NotIn`, `Exists`,
//!    `DoesNotExist`, `Gt`, `Lt`; `matchFields` on `metadata.name`) →
//!    `node(s) didn't match Pod's node affinity/selector`;
//! 5. `NodeResourcesFit`: the pod count, `cpu`, `memory`, `ephemeral-storage` and every
//!    extended resource against allocatable minus the requests of the node's non-terminal pods
//!    → `Too many pods`, `Insufficient cpu`, `Insufficient nvidia.com/gpu`, ...
//!
//! Pod requests follow the scheduler: container requests (defaulted from limits), plus
//! restartable (sidecar) init containers, at least the largest init container, plus
//! `overhead`; pod-level `resources` replace the container sum for the resources they set.
//!
//! Several pods (a gang) are placed greedily, first fit in the order given, each on the first
//! node (in the order given) that passes every filter, with earlier placements counted. This can
//! report `FitsLater`/`NeverFits` for a gang that a smarter packing would fit; it never reports
//! `FitsNow` for one that does not fit.
//!
//! Before the scheduler, the target namespace's LimitRanges fill in default requests and
//! limits, and its LimitRanges and ResourceQuotas may refuse the pods; the worse verdict wins
//! (see the `admission` module docs: a LimitRange bound or a quota's hard total exceeded
//! never fits, more than a quota has left fits later).
//!
//! Not modelled: inter-pod affinity, topology spread, host ports, volumes, DRA claims,
//! preemption, and scheduler extenders or Volcano/Kueue admission.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use k8s_openapi::api::core::v1::{
    LimitRange, Node, NodeSelectorRequirement, NodeSelectorTerm, Pod, PodSpec, ResourceQuota,
    Taint, Toleration,
};

use crate::admission::{self, Admission};
use crate::amounts::{Amounts, PODS, add_into, amount, format_amount, pod_requests};

/// The answer of [`precheck`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// Every pod can be placed now, with the current allocations.
    FitsNow,
    /// Not now, but every pod could be placed if the running pods were gone.
    FitsLater,
    /// Not even on empty nodes: fix the request, tolerations, affinity or the cluster.
    NeverFits,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Verdict::FitsNow => "fits now",
            Verdict::FitsLater => "fits later",
            Verdict::NeverFits => "never fits",
        })
    }
}

/// The result of [`precheck`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PreCheck {
    /// The verdict.
    pub verdict: Verdict,
    /// When a pod does not fit now: the scheduler's per-reason counts, sorted as the scheduler
    /// sorts them, e.g. `["2 Insufficient nvidia.com/gpu", "2 node(s) were unschedulable"]`.
    pub reasons: Vec<String>,
    /// When admission refuses the pods: its objections, e.g. `ResourceQuota gpu: the run
    /// requests requests.nvidia.com/gpu=16, above the quota's hard limit
    /// requests.nvidia.com/gpu=8`. Otherwise the kube-scheduler `FitError` text for the
    /// first pod that does not fit now, e.g.
    /// `0/6 nodes are available: 2 Insufficient nvidia.com/gpu, 4 node(s) were unschedulable.`;
    /// when everything fits, a short note.
    pub message: String,
    /// A human summary, e.g. `pod 0: request 16 nvidia.com/gpu; largest node allocatable is 8`.
    pub summary: String,
    /// With [`Verdict::FitsNow`], the node chosen for each wanted pod; otherwise empty.
    pub placements: Vec<String>,
}

/// Whether `toleration` tolerates `taint`, by the `v1.Toleration.ToleratesTaint` rules: the
/// effect matches (or is empty), the key matches (or is empty, which with `Exists` means every
/// key), and `Exists` or `Equal` with the same value.
pub fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    let effect = toleration.effect.as_deref().unwrap_or_default();
    if !effect.is_empty() && effect != taint.effect {
        return false;
    }
    let key = toleration.key.as_deref().unwrap_or_default();
    if !key.is_empty() && key != taint.key {
        return false;
    }
    match toleration.operator.as_deref().unwrap_or_default() {
        "" | "Equal" => {
            toleration.value.as_deref().unwrap_or_default()
                == taint.value.as_deref().unwrap_or_default()
        }
        "Exists" => true,
        _ => false,
    }
}

fn requirement_matches(requirement: &NodeSelectorRequirement, value: Option<&str>) -> bool {
    let values = requirement.values.as_deref().unwrap_or_default();
    let number = |text: &str| text.parse::<i64>().ok();
    let compare = |ordering: std::cmp::Ordering| match (value.and_then(number), values) {
        (Some(actual), [bound]) => {
            number(bound).is_some_and(|bound| actual.cmp(&bound) == ordering)
        }
        _ => false,
    };
    match requirement.operator.as_str() {
        "In" => value.is_some_and(|value| values.iter().any(|candidate| candidate == value)),
        "NotIn" => value.is_none_or(|value| !values.iter().any(|candidate| candidate == value)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" => compare(std::cmp::Ordering::Greater),
        "Lt" => compare(std::cmp::Ordering::Less),
        _ => false,
    }
}

fn term_matches(
    term: &NodeSelectorTerm,
    labels: &BTreeMap<String, String>,
    node_name: &str,
) -> bool {
    let expressions = term.match_expressions.as_deref().unwrap_or_default();
    let fields = term.match_fields.as_deref().unwrap_or_default();
    if expressions.is_empty() && fields.is_empty() {
        return false;
    }
    expressions.iter().all(|requirement| {
        requirement_matches(
            requirement,
            labels.get(&requirement.key).map(String::as_str),
        )
    }) && fields.iter().all(|requirement| {
        requirement.key == "metadata.name" && requirement_matches(requirement, Some(node_name))
    })
}

/// Whether a node's labels satisfy the pod's `nodeSelector` and required node affinity.
pub fn matches_node_affinity(
    spec: &PodSpec,
    labels: &BTreeMap<String, String>,
    node_name: &str,
) -> bool {
    let selector_ok = spec
        .node_selector
        .iter()
        .flatten()
        .all(|(key, value)| labels.get(key) == Some(value));
    let required = spec
        .affinity
        .as_ref()
        .and_then(|affinity| affinity.node_affinity.as_ref())
        .and_then(|node_affinity| {
            node_affinity
                .required_during_scheduling_ignored_during_execution
                .as_ref()
        });
    selector_ok
        && required.is_none_or(|selector| {
            selector
                .node_selector_terms
                .iter()
                .any(|term| term_matches(term, labels, node_name))
        })
}

/// One node as the filters see it.
#[derive(Clone, Debug)]
struct NodeState {
    name: String,
    labels: BTreeMap<String, String>,
    taints: Vec<Taint>,
    unschedulable: bool,
    allocatable: Amounts,
    requested: Amounts,
    pod_count: i128,
}

fn synthetic_taint(key: &str) -> Taint {
    Taint {
        key: key.to_owned(),
        effect: "NoSchedule".to_owned(),
        ..Taint::default()
    }
}

impl NodeState {
    fn new(node: &Node) -> Self {
        let spec = node.spec.as_ref();
        let status = node.status.as_ref();
        // Only real taints count, as in the scheduler: the node lifecycle controller turns a
        // not-ready node into a `node.kubernetes.io/not-ready` taint, and until it does the
        // scheduler still binds there.
        let taints = spec
            .and_then(|spec| spec.taints.clone())
            .unwrap_or_default();
        // Malformed allocatable quantities (never written by a kubelet) count as zero.
        let allocatable = status
            .and_then(|status| status.allocatable.as_ref())
            .into_iter()
            .flatten()
            .filter_map(|(resource, quantity)| {
                Some((resource.clone(), amount(resource, quantity).ok()?))
            })
            .collect();
        NodeState {
            name: node.metadata.name.clone().unwrap_or_default(),
            labels: node.metadata.labels.clone().unwrap_or_default(),
            taints,
            unschedulable: spec.and_then(|spec| spec.unschedulable).unwrap_or(false),
            allocatable,
            requested: Amounts::new(),
            pod_count: 0,
        }
    }

    fn emptied(&self) -> Self {
        NodeState {
            requested: Amounts::new(),
            pod_count: 0,
            ..self.clone()
        }
    }

    fn allocatable_of(&self, resource: &str) -> i128 {
        self.allocatable.get(resource).copied().unwrap_or(0)
    }

    fn free_of(&self, resource: &str) -> i128 {
        self.allocatable_of(resource) - self.requested.get(resource).copied().unwrap_or(0)
    }

    fn place(&mut self, requests: &Amounts) {
        add_into(&mut self.requested, requests);
        self.pod_count += 1;
    }

    /// The first failing filter that does not depend on allocations, as a reason.
    fn static_reason(&self, spec: &PodSpec) -> Option<String> {
        let tolerations = spec.tolerations.as_deref().unwrap_or_default();
        if self.unschedulable {
            let cordon = synthetic_taint("node.kubernetes.io/unschedulable");
            if !tolerations
                .iter()
                .any(|toleration| tolerates(toleration, &cordon))
            {
                return Some("node(s) were unschedulable".to_owned());
            }
        }
        if let Some(node_name) = spec.node_name.as_deref()
            && !node_name.is_empty()
            && node_name != self.name
        {
            return Some("node(s) didn't match the requested node name".to_owned());
        }
        let untolerated = self.taints.iter().find(|taint| {
            (taint.effect == "NoSchedule" || taint.effect == "NoExecute")
                && !tolerations
                    .iter()
                    .any(|toleration| tolerates(toleration, taint))
        });
        if let Some(taint) = untolerated {
            return Some(format!(
                "node(s) had untolerated taint {{{}: {}}}",
                taint.key,
                taint.value.as_deref().unwrap_or_default()
            ));
        }
        if !matches_node_affinity(spec, &self.labels, &self.name) {
            return Some("node(s) didn't match Pod's node affinity/selector".to_owned());
        }
        None
    }

    /// `NodeResourcesFit` reasons, in the scheduler's order.
    fn resource_reasons(&self, requests: &Amounts) -> Vec<String> {
        let mut reasons = Vec::new();
        if self.pod_count + 1 > self.allocatable_of(PODS) {
            reasons.push("Too many pods".to_owned());
        }
        for (resource, wanted) in requests {
            if resource == PODS || *wanted <= 0 {
                continue;
            }
            if *wanted > self.free_of(resource) {
                reasons.push(format!("Insufficient {resource}"));
            }
        }
        reasons
    }

    fn reasons(&self, spec: &PodSpec, requests: &Amounts) -> Vec<String> {
        match self.static_reason(spec) {
            Some(reason) => vec![reason],
            None => self.resource_reasons(requests),
        }
    }
}

/// Why pod `pod` could not be placed: the reasons of every node.
struct Unplaced {
    pod: usize,
    node_reasons: Vec<Vec<String>>,
    placed_before: Vec<usize>,
}

/// Greedy first fit; returns the node index per pod, or the first pod that found no node.
fn place_all(
    nodes: &mut [NodeState],
    wanted: &[(&PodSpec, Amounts)],
) -> std::result::Result<Vec<usize>, Unplaced> {
    let mut placements = Vec::with_capacity(wanted.len());
    for (pod, (spec, requests)) in wanted.iter().enumerate() {
        let mut node_reasons = Vec::with_capacity(nodes.len());
        let mut chosen = None;
        for (index, node) in nodes.iter().enumerate() {
            let reasons = node.reasons(spec, requests);
            if reasons.is_empty() {
                chosen = Some(index);
                break;
            }
            node_reasons.push(reasons);
        }
        match chosen.and_then(|index| Some((index, nodes.get_mut(index)?))) {
            Some((index, node)) => {
                node.place(requests);
                placements.push(index);
            }
            None => {
                return Err(Unplaced {
                    pod,
                    node_reasons,
                    placed_before: placements,
                });
            }
        }
    }
    Ok(placements)
}

/// The scheduler's reason histogram: `"<count> <reason>"`, sorted as strings.
fn histogram(node_reasons: &[Vec<String>]) -> Vec<String> {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for reason in node_reasons.iter().flatten() {
        *counts.entry(reason.as_str()).or_insert(0) += 1;
    }
    let mut reasons: Vec<String> = counts
        .into_iter()
        .map(|(reason, count)| format!("{count} {reason}"))
        .collect();
    reasons.sort();
    reasons
}

/// The kube-scheduler `FitError` message for `node_count` nodes and these reasons.
fn fit_error_message(node_count: usize, reasons: &[String]) -> String {
    if reasons.is_empty() {
        format!("0/{node_count} nodes are available.")
    } else {
        format!(
            "0/{node_count} nodes are available: {}.",
            reasons.join(", ")
        )
    }
}

/// `request 16 nvidia.com/gpu; largest node allocatable is 8` for every resource no eligible
/// node has enough of (by `capacity`), or an explanation when none is short on its own.
fn shortfall(
    nodes: &[NodeState],
    spec: &PodSpec,
    requests: &Amounts,
    capacity: impl Fn(&NodeState, &str) -> i128,
    largest: &str,
) -> Vec<String> {
    let eligible: Vec<&NodeState> = nodes
        .iter()
        .filter(|node| node.static_reason(spec).is_none())
        .collect();
    if eligible.is_empty() {
        return vec![
            "no node passes the cordon, taint and node affinity/selector checks".to_owned(),
        ];
    }
    let mut lines = Vec::new();
    for (resource, wanted) in requests
        .iter()
        .filter(|(resource, wanted)| *resource != PODS && **wanted > 0)
    {
        let best = eligible
            .iter()
            .map(|node| capacity(node, resource))
            .max()
            .unwrap_or(0);
        if *wanted > best {
            lines.push(format!(
                "request {} {resource}; {largest} is {}",
                format_amount(resource, *wanted),
                format_amount(resource, best.max(0))
            ));
        }
    }
    if eligible
        .iter()
        .all(|node| node.pod_count + 1 > node.allocatable_of(PODS))
    {
        lines.push("every matching node is at its pod limit".to_owned());
    }
    lines
}

/// Checks whether `wanted` pods (one pod, or a gang placed together) can be created in the
/// target namespace and scheduled on `nodes`. Never does IO; see the module docs for what is
/// modelled.
///
/// - `nodes`: every node of the cluster.
/// - `pods`: the running pods of every namespace (non-terminal pods with `spec.nodeName`
///   count against their node).
/// - `quotas`, `limit_ranges`: the ResourceQuotas and LimitRanges of the target namespace
///   (empty slices when the namespace has none, or when they cannot be listed).
/// - `wanted`: the pod specs the workload will create, replicas included.
///
/// The worse of the two answers wins: the namespace's admission (a LimitRange bound or a
/// quota's hard total exceeded: never fits; more than the quota has left: fits later) and
/// the scheduler's, computed on the pods as admission defaults them.
pub fn precheck(
    nodes: &[Node],
    pods: &[Pod],
    quotas: &[ResourceQuota],
    limit_ranges: &[LimitRange],
    wanted: &[PodSpec],
) -> PreCheck {
    let wanted = admission::with_defaults(limit_ranges, wanted);
    let scheduling = schedule(nodes, pods, &wanted);
    match admission::check(quotas, limit_ranges, &wanted) {
        Ok(Admission::Admitted) => scheduling,
        Ok(Admission::Never(lines)) => objection(Verdict::NeverFits, lines),
        Ok(Admission::Later(lines)) if scheduling.verdict == Verdict::FitsNow => {
            objection(Verdict::FitsLater, lines)
        }
        Ok(Admission::Later(lines)) => PreCheck {
            summary: format!("{}; {}", scheduling.summary, lines.join("; ")),
            reasons: scheduling.reasons.into_iter().chain(lines).collect(),
            ..scheduling
        },
        Err(error) => unparsable(None, &error),
    }
}

/// A verdict of the namespace's admission: every line is a reason, the message and summary.
fn objection(verdict: Verdict, lines: Vec<String>) -> PreCheck {
    let text = lines.join("; ");
    PreCheck {
        verdict,
        reasons: lines,
        message: text.clone(),
        summary: text,
        placements: Vec::new(),
    }
}

fn unparsable(pod: Option<usize>, error: &crate::Error) -> PreCheck {
    let which = pod.map_or("the namespace's quotas or limits".to_owned(), |pod| {
        format!("pod {pod}: its resources")
    });
    PreCheck {
        verdict: Verdict::NeverFits,
        reasons: Vec::new(),
        message: error.to_string(),
        summary: format!("{which} do not parse: {error}"),
        placements: Vec::new(),
    }
}

fn trivial(verdict: Verdict, message: &str, summary: &str) -> PreCheck {
    PreCheck {
        verdict,
        reasons: Vec::new(),
        message: message.to_owned(),
        summary: summary.to_owned(),
        placements: Vec::new(),
    }
}

/// The scheduler's half: place the pods now, else on empty nodes, and say why not.
fn schedule(nodes: &[Node], pods: &[Pod], wanted: &[PodSpec]) -> PreCheck {
    let mut requests = Vec::with_capacity(wanted.len());
    for (index, spec) in wanted.iter().enumerate() {
        match pod_requests(spec) {
            Ok(amounts) => requests.push((spec, amounts)),
            Err(error) => return unparsable(Some(index), &error),
        }
    }
    if wanted.is_empty() {
        return trivial(Verdict::FitsNow, "no pods to place", "no pods to place");
    }
    if nodes.is_empty() {
        return trivial(
            Verdict::NeverFits,
            "no nodes available to schedule pods",
            "the cluster has no nodes",
        );
    }
    let empty: Vec<NodeState> = nodes.iter().map(NodeState::new).collect();
    let before = with_running_pods(&empty, pods);
    let mut now = before.clone();
    match place_all(&mut now, &requests) {
        Ok(placements) => fits_now(&now, &placements),
        Err(unplaced) => not_now(&empty, before, &requests, unplaced),
    }
}

/// The nodes with the running pods' requests placed on them.
fn with_running_pods(empty: &[NodeState], pods: &[Pod]) -> Vec<NodeState> {
    let mut now = empty.to_vec();
    let index_by_name: HashMap<&str, usize> = empty
        .iter()
        .enumerate()
        .map(|(index, node)| (node.name.as_str(), index))
        .collect();
    for pod in pods {
        let phase = pod
            .status
            .as_ref()
            .and_then(|status| status.phase.as_deref());
        if matches!(phase, Some("Succeeded" | "Failed")) {
            continue;
        }
        let Some(spec) = pod.spec.as_ref() else {
            continue;
        };
        let node = spec
            .node_name
            .as_deref()
            .and_then(|name| index_by_name.get(name));
        // A running pod's malformed quantities (rejected by the apiserver) count as nothing.
        if let Some(node) = node.and_then(|&index| now.get_mut(index)) {
            node.place(&pod_requests(spec).unwrap_or_default());
        }
    }
    now
}

fn fits_now(nodes: &[NodeState], placements: &[usize]) -> PreCheck {
    let names: Vec<String> = placements
        .iter()
        .filter_map(|index| nodes.get(*index).map(|node| node.name.clone()))
        .collect();
    let summary = if names.len() == 1 {
        format!("the pod fits now on {}", names.join(""))
    } else {
        let each: Vec<String> = names
            .iter()
            .enumerate()
            .map(|(pod, node)| format!("pod {pod} on {node}"))
            .collect();
        format!("all {} pods fit now: {}", names.len(), each.join(", "))
    };
    PreCheck {
        verdict: Verdict::FitsNow,
        reasons: Vec::new(),
        message: summary.clone(),
        summary,
        placements: names,
    }
}

/// Some pod does not fit now: the scheduler's message, and whether empty nodes would do.
fn not_now(
    empty: &[NodeState],
    before: Vec<NodeState>,
    requests: &[(&PodSpec, Amounts)],
    unplaced: Unplaced,
) -> PreCheck {
    let reasons = histogram(&unplaced.node_reasons);
    let message = fit_error_message(empty.len(), &reasons);
    let mut empty_run = empty.iter().map(NodeState::emptied).collect::<Vec<_>>();
    let (verdict, summary) = match place_all(&mut empty_run, requests) {
        Ok(_) => (
            Verdict::FitsLater,
            fits_later_summary(before, requests, &unplaced),
        ),
        Err(never) => (
            Verdict::NeverFits,
            never_fits_summary(empty, requests, &never),
        ),
    };
    PreCheck {
        verdict,
        reasons,
        message,
        summary,
        placements: Vec::new(),
    }
}

/// Replays the gang members placed before the failing pod, then says what is short now.
fn fits_later_summary(
    mut state: Vec<NodeState>,
    requests: &[(&PodSpec, Amounts)],
    unplaced: &Unplaced,
) -> String {
    for (pod, node) in unplaced.placed_before.iter().enumerate() {
        if let (Some(node), Some((_, amounts))) = (state.get_mut(*node), requests.get(pod)) {
            node.place(amounts);
        }
    }
    let mut lines = Vec::new();
    if let Some((spec, amounts)) = requests.get(unplaced.pod) {
        lines = shortfall(
            &state,
            spec,
            amounts,
            |node, resource| node.free_of(resource),
            "most free on a matching node",
        );
    }
    if lines.is_empty() {
        lines.push(
            "no single matching node has enough of every requested resource free at once"
                .to_owned(),
        );
    }
    format!(
        "pod {} does not fit now but would fit once running pods finish: {}",
        unplaced.pod,
        lines.join("; ")
    )
}

/// Says what no empty node has enough of for the pod that does not fit.
fn never_fits_summary(
    empty: &[NodeState],
    requests: &[(&PodSpec, Amounts)],
    never: &Unplaced,
) -> String {
    let mut lines = Vec::new();
    if let Some((spec, amounts)) = requests.get(never.pod) {
        lines = shortfall(
            empty,
            spec,
            amounts,
            NodeState::allocatable_of,
            "largest node allocatable",
        );
    }
    if lines.is_empty() {
        lines.push(if never.pod > 0 {
            format!(
                "pods 0..{} fit on empty nodes but pod {} does not fit beside them; the gang needs more nodes",
                never.pod - 1,
                never.pod
            )
        } else {
            "no single matching node has enough of every requested resource at once".to_owned()
        });
    }
    format!("pod {}: {}", never.pod, lines.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{gpu_pod, node, pod_spec, running_pod};
    use serde_json::json;

    /// The scheduler's half alone: no quotas, no limit ranges.
    fn precheck(nodes: &[Node], pods: &[Pod], wanted: &[PodSpec]) -> PreCheck {
        super::precheck(nodes, pods, &[], &[], wanted)
    }

    fn a100_pod(gpus: u32) -> PodSpec {
        pod_spec(json!({
            "containers": [{"name": "train", "resources": {"limits": {"nvidia.com/gpu": gpus.to_string()}}}],
            "nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"}
        }))
    }

    #[test]
    fn fits_now_on_the_first_node_with_enough_free_gpus() {
        let nodes = [node("full").gpus(8).build(), node("free").gpus(8).build()];
        let pods = [running_pod("full", 8, "Running")];
        let check = precheck(&nodes, &pods, &[gpu_pod(4)]);
        assert_eq!(check.verdict, Verdict::FitsNow);
        assert_eq!(check.placements, ["free"]);
        assert!(check.reasons.is_empty());
    }

    #[test]
    fn mixed_cluster_gets_the_scheduler_message() {
        let a100 = "NVIDIA-A100-SXM4-80GB";
        let nodes = [
            node("a1")
                .gpus(8)
                .label("nvidia.com/gpu.product", a100)
                .build(),
            node("a2")
                .gpus(8)
                .label("nvidia.com/gpu.product", a100)
                .build(),
            node("l1")
                .gpus(8)
                .label("nvidia.com/gpu.product", "NVIDIA-L4")
                .build(),
            node("l2")
                .gpus(8)
                .label("nvidia.com/gpu.product", "NVIDIA-L4")
                .build(),
            node("g1")
                .gpus(8)
                .label("nvidia.com/gpu.product", a100)
                .taint("nvidia.com/gpu", "present", "NoSchedule")
                .build(),
            node("g2")
                .gpus(8)
                .label("nvidia.com/gpu.product", a100)
                .taint("nvidia.com/gpu", "present", "NoSchedule")
                .build(),
        ];
        let pods = [
            running_pod("a1", 6, "Running"),
            running_pod("a2", 6, "Pending"),
        ];
        let check = precheck(&nodes, &pods, &[a100_pod(4)]);
        assert_eq!(
            check.message,
            "0/6 nodes are available: 2 Insufficient nvidia.com/gpu, 2 node(s) didn't match Pod's node affinity/selector, 2 node(s) had untolerated taint {nvidia.com/gpu: present}."
        );
        assert_eq!(check.reasons.len(), 3);
        assert_eq!(check.verdict, Verdict::FitsLater);
        assert!(
            check
                .summary
                .contains("request 4 nvidia.com/gpu; most free on a matching node is 2"),
            "{}",
            check.summary
        );
    }

    #[test]
    fn request_above_every_node_never_fits() {
        let nodes = [node("n1").gpus(8).build(), node("n2").gpus(8).build()];
        let check = precheck(&nodes, &[], &[gpu_pod(16)]);
        assert_eq!(check.verdict, Verdict::NeverFits);
        assert_eq!(
            check.message,
            "0/2 nodes are available: 2 Insufficient nvidia.com/gpu."
        );
        assert_eq!(
            check.summary,
            "pod 0: request 16 nvidia.com/gpu; largest node allocatable is 8"
        );
    }

    #[test]
    fn cordoned_and_not_ready_nodes_never_fit() {
        let nodes = [
            node("cordoned").gpus(8).cordoned().build(),
            node("down")
                .gpus(8)
                .ready("False")
                .taint("node.kubernetes.io/not-ready", "", "NoSchedule")
                .build(),
            node("lost")
                .gpus(8)
                .ready("Unknown")
                .taint("node.kubernetes.io/unreachable", "", "NoSchedule")
                .build(),
        ];
        let check = precheck(&nodes, &[], &[gpu_pod(1)]);
        assert_eq!(check.verdict, Verdict::NeverFits);
        assert_eq!(
            check.reasons,
            [
                "1 node(s) had untolerated taint {node.kubernetes.io/not-ready: }",
                "1 node(s) had untolerated taint {node.kubernetes.io/unreachable: }",
                "1 node(s) were unschedulable",
            ]
        );
        assert!(
            check.summary.contains("no node passes"),
            "{}",
            check.summary
        );
    }

    #[test]
    fn tolerating_the_cordon_taint_allows_a_cordoned_node() {
        let nodes = [node("cordoned").gpus(8).cordoned().build()];
        let mut spec = gpu_pod(1);
        spec.tolerations.get_or_insert_default().push(Toleration {
            key: Some("node.kubernetes.io/unschedulable".to_owned()),
            operator: Some("Exists".to_owned()),
            ..Toleration::default()
        });
        assert_eq!(precheck(&nodes, &[], &[spec]).verdict, Verdict::FitsNow);
    }

    #[test]
    fn toleration_rules_follow_the_api() {
        let taint = |key: &str, value: &str, effect: &str| Taint {
            key: key.to_owned(),
            value: (!value.is_empty()).then(|| value.to_owned()),
            effect: effect.to_owned(),
            time_added: None,
        };
        let toleration = |key: &str, operator: &str, value: &str, effect: &str| Toleration {
            key: (!key.is_empty()).then(|| key.to_owned()),
            operator: (!operator.is_empty()).then(|| operator.to_owned()),
            value: (!value.is_empty()).then(|| value.to_owned()),
            effect: (!effect.is_empty()).then(|| effect.to_owned()),
            toleration_seconds: None,
        };
        let gke = taint("nvidia.com/gpu", "present", "NoSchedule");
        let cases = [
            (
                toleration("nvidia.com/gpu", "Exists", "", "NoSchedule"),
                true,
            ),
            (toleration("nvidia.com/gpu", "Exists", "", ""), true),
            (toleration("", "Exists", "", ""), true),
            (
                toleration("nvidia.com/gpu", "Equal", "present", "NoSchedule"),
                true,
            ),
            (toleration("nvidia.com/gpu", "", "present", ""), true),
            (
                toleration("nvidia.com/gpu", "Equal", "absent", "NoSchedule"),
                false,
            ),
            (
                toleration("nvidia.com/gpu", "Exists", "", "NoExecute"),
                false,
            ),
            (toleration("amd.com/gpu", "Exists", "", "NoSchedule"), false),
            (toleration("nvidia.com/gpu", "Gt", "1", "NoSchedule"), false),
        ];
        for (toleration, expected) in cases {
            assert_eq!(tolerates(&toleration, &gke), expected, "{toleration:?}");
        }
    }

    #[test]
    fn only_no_schedule_and_no_execute_taints_repel() {
        let nodes = [
            node("soft")
                .gpus(8)
                .taint("team", "a", "PreferNoSchedule")
                .build(),
            node("hard").gpus(8).taint("team", "b", "NoExecute").build(),
        ];
        let mut spec = gpu_pod(1);
        spec.node_selector =
            Some([("kubernetes.io/hostname".to_owned(), "hard".to_owned())].into());
        let check = precheck(&nodes, &[], &[spec]);
        assert_eq!(
            check.reasons,
            [
                "1 node(s) didn't match Pod's node affinity/selector",
                "1 node(s) had untolerated taint {team: b}"
            ]
        );
        assert_eq!(precheck(&nodes, &[], &[gpu_pod(1)]).placements, ["soft"]);
    }

    #[test]
    fn node_affinity_operators() {
        let labels: BTreeMap<String, String> = [
            ("nvidia.com/gpu.product", "NVIDIA-H100-80GB-HBM3"),
            ("nvidia.com/gpu.memory", "81559"),
            ("zone", "a"),
        ]
        .into_iter()
        .map(|(key, value)| (key.to_owned(), value.to_owned()))
        .collect();
        let expression = |key: &str, operator: &str, values: &[&str]| json!({"key": key, "operator": operator, "values": values});
        let cases = [
            (
                expression(
                    "nvidia.com/gpu.product",
                    "In",
                    &["NVIDIA-H100-80GB-HBM3", "NVIDIA-H100-PCIe"],
                ),
                true,
            ),
            (
                expression("nvidia.com/gpu.product", "In", &["NVIDIA-L4"]),
                false,
            ),
            (
                expression("nvidia.com/gpu.product", "NotIn", &["NVIDIA-L4"]),
                true,
            ),
            (expression("missing", "NotIn", &["x"]), true),
            (expression("zone", "Exists", &[]), true),
            (expression("zone", "DoesNotExist", &[]), false),
            (expression("missing", "DoesNotExist", &[]), true),
            (expression("nvidia.com/gpu.memory", "Gt", &["73727"]), true),
            (expression("nvidia.com/gpu.memory", "Gt", &["81559"]), false),
            (expression("nvidia.com/gpu.memory", "Lt", &["90000"]), true),
            (expression("zone", "Gt", &["1"]), false),
            (
                expression("nvidia.com/gpu.memory", "Gt", &["1", "2"]),
                false,
            ),
        ];
        for (requirement, expected) in cases {
            let spec = pod_spec(json!({"containers": [], "affinity": {"nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                    {"matchExpressions": [requirement]}]}}}}));
            assert_eq!(
                matches_node_affinity(&spec, &labels, "n1"),
                expected,
                "{requirement}"
            );
        }
        let ored = pod_spec(json!({"containers": [], "affinity": {"nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": [expression("zone", "In", &["b"])]},
                {"matchFields": [expression("metadata.name", "In", &["n1"])]}]}}}}));
        assert!(matches_node_affinity(&ored, &labels, "n1"));
        assert!(!matches_node_affinity(&ored, &labels, "n2"));
        let empty_term = pod_spec(json!({"containers": [], "affinity": {"nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{}]}}}}));
        assert!(!matches_node_affinity(&empty_term, &labels, "n1"));
    }

    #[test]
    fn gang_fits_now_only_when_every_member_fits_at_once() {
        let nodes = [node("n1").gpus(8).build(), node("n2").gpus(8).build()];
        let gang = [gpu_pod(8), gpu_pod(8)];
        let check = precheck(&nodes, &[], &gang);
        assert_eq!(check.verdict, Verdict::FitsNow);
        assert_eq!(check.placements, ["n1", "n2"]);

        let busy = precheck(&nodes, &[running_pod("n2", 4, "Running")], &gang);
        assert_eq!(busy.verdict, Verdict::FitsLater);
        assert!(
            busy.summary.starts_with("pod 1 does not fit now"),
            "{}",
            busy.summary
        );
        assert_eq!(
            busy.message,
            "0/2 nodes are available: 2 Insufficient nvidia.com/gpu."
        );

        let too_big = precheck(&nodes, &[], &[gpu_pod(8), gpu_pod(8), gpu_pod(8)]);
        assert_eq!(too_big.verdict, Verdict::NeverFits);
        assert!(
            too_big.summary.contains("the gang needs more nodes"),
            "{}",
            too_big.summary
        );
    }

    #[test]
    fn terminal_pods_and_pods_elsewhere_do_not_count() {
        let nodes = [node("n1").gpus(8).build()];
        let pods = [
            running_pod("n1", 8, "Succeeded"),
            running_pod("n1", 8, "Failed"),
            running_pod("other", 8, "Running"),
        ];
        assert_eq!(
            precheck(&nodes, &pods, &[gpu_pod(8)]).verdict,
            Verdict::FitsNow
        );
    }

    #[test]
    fn pod_limit_and_several_resources_are_all_reported() {
        let nodes = [node("tiny").gpus(8).allocatable("pods", "1").build()];
        let pods = [running_pod("tiny", 0, "Running")];
        let check = precheck(&nodes, &pods, &[gpu_pod(1)]);
        assert_eq!(check.reasons, ["1 Too many pods"]);
        assert_eq!(check.verdict, Verdict::FitsLater);

        let greedy = pod_spec(json!({"containers": [{"name": "train", "resources": {
            "requests": {"cpu": "64", "memory": "1Ti"}, "limits": {"nvidia.com/gpu": "16"}}}],
            "tolerations": [{"operator": "Exists"}]}));
        let check = precheck(&[node("n1").gpus(8).build()], &[], &[greedy]);
        assert_eq!(
            check.reasons,
            [
                "1 Insufficient cpu",
                "1 Insufficient memory",
                "1 Insufficient nvidia.com/gpu"
            ]
        );
        assert!(
            check
                .summary
                .contains("request 64 cpu; largest node allocatable is 32"),
            "{}",
            check.summary
        );
        assert!(
            check
                .summary
                .contains("request 1Ti memory; largest node allocatable is 256Gi"),
            "{}",
            check.summary
        );
    }

    #[test]
    fn reasons_sort_as_strings_like_the_scheduler() {
        let mut nodes: Vec<Node> = (0..10)
            .map(|index| node(&format!("small-{index}")).gpus(1).build())
            .collect();
        nodes.push(node("cordoned-a").gpus(8).cordoned().build());
        nodes.push(node("cordoned-b").gpus(8).cordoned().build());
        let check = precheck(&nodes, &[], &[gpu_pod(4)]);
        assert_eq!(
            check.message,
            "0/12 nodes are available: 10 Insufficient nvidia.com/gpu, 2 node(s) were unschedulable."
        );
    }

    #[test]
    fn missing_extended_resource_is_insufficient() {
        let check = precheck(&[node("cpu-only").build()], &[], &[gpu_pod(1)]);
        assert_eq!(check.reasons, ["1 Insufficient nvidia.com/gpu"]);
        assert_eq!(
            check.summary,
            "pod 0: request 1 nvidia.com/gpu; largest node allocatable is 0"
        );
    }

    #[test]
    fn pod_requests_follow_init_and_sidecar_rules() {
        let spec = pod_spec(json!({
            "containers": [
                {"name": "a", "resources": {"requests": {"cpu": "1"}}},
                {"name": "b", "resources": {"limits": {"cpu": "2", "nvidia.com/gpu": "1"}}}
            ],
            "initContainers": [
                {"name": "sidecar", "restartPolicy": "Always", "resources": {"requests": {"cpu": "1"}}},
                {"name": "setup", "resources": {"requests": {"cpu": "5", "memory": "1Gi"}}}
            ],
            "overhead": {"cpu": "250m"}
        }));
        let requests = pod_requests(&spec).unwrap();
        assert_eq!(
            requests["cpu"], 6250,
            "max(1+2+1, 5+1) cores + overhead, in millicores"
        );
        assert_eq!(requests["memory"], 1 << 30);
        assert_eq!(requests["nvidia.com/gpu"], 1);
    }

    #[test]
    fn no_nodes_and_bad_quantities_never_fit() {
        let check = precheck(&[], &[], &[gpu_pod(1)]);
        assert_eq!(
            (check.verdict, check.message.as_str()),
            (Verdict::NeverFits, "no nodes available to schedule pods")
        );
        let bad = pod_spec(
            json!({"containers": [{"name": "x", "resources": {"limits": {"cpu": "lots"}}}]}),
        );
        let check = precheck(&[node("n1").build()], &[], &[bad]);
        assert_eq!(check.verdict, Verdict::NeverFits);
        assert!(
            check.message.contains("invalid quantity \"lots\""),
            "{}",
            check.message
        );
    }

    #[test]
    fn rendered_tolerations_tolerate_the_gke_gpu_taint() {
        let request = crate::GpuRequest::parse("1xL4").unwrap();
        let mut spec = json!({"containers": [{"name": "train"}]});
        crate::set_gpu_resources(&mut spec, &request, None).unwrap();
        crate::add_gpu_tolerations(&mut spec, &request).unwrap();
        let nodes = [node("gke")
            .gpus(1)
            .taint("nvidia.com/gpu", "present", "NoSchedule")
            .build()];
        assert_eq!(
            precheck(&nodes, &[], &[pod_spec(spec)]).verdict,
            Verdict::FitsNow
        );
    }
}

#[cfg(test)]
mod readiness_tests {
    use super::*;
    use crate::fixtures::{gpu_pod, node};

    fn precheck(nodes: &[Node], pods: &[Pod], wanted: &[PodSpec]) -> PreCheck {
        super::precheck(nodes, pods, &[], &[], wanted)
    }

    #[test]
    fn an_untainted_not_ready_node_still_fits_as_in_the_scheduler() {
        let nodes = [node("fresh").gpus(8).ready("False").build()];
        assert_eq!(
            precheck(&nodes, &[], &[gpu_pod(1)]).verdict,
            Verdict::FitsNow
        );
    }
}
