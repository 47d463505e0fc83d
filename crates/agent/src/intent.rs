//! Launch intents: an item acked but never launched (the agent killed between the ack and
//! the workload's create) is launched on restart — or, when that cannot be done, failed
//! with a clear message — never forgotten.
//!
//! # Design
//!
//! Before the ack the agent writes a small ConfigMap in the run's namespace, named after
//! the run queue item ([`intent_name`]), labelled with the agent identity
//! ([`INTENT_LABEL`] + `rlaunch.dev/agent-identity`), holding the item id, run id, queue
//! and the run spec with every secret removed (with the item's priority and template
//! variables). It is deleted once the workload exists (adoption takes over from there) or
//! once the item's failure is reported. On start, before the first pop, every intent of
//! this identity whose item has no workload is settled by the item's state in W&B:
//! acked under the intent's run id → the launch is finished from the kept spec (same run
//! id, same deterministic workload name, so at most one workload); still pending or only
//! leased (the ack never reached W&B) → the intent goes and the item comes back to a pop;
//! already failed or finished → the intent goes. A spec that carried its own API key
//! (never written to the cluster), a spec too large to keep, or a server that cannot tell
//! the item's state: the item is failed with `failRunQueueItem` (stage `agent`).
//!
//! Why a ConfigMap, not W&B: W&B's API has no query for "items this agent acked", so the
//! record has to live with us; the cluster is where the agent's other durable state is
//! (workloads, their requeue records), it survives the agent's pod, and a ConfigMap needs
//! only `create`, `list` and `delete` on `configmaps` in the target namespaces (the check
//! subcommand asks for them). Why before the ack, not after: a record written after the
//! ack leaves a window where the ack is in W&B and nothing is in the cluster.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, PostParams};
use rlaunch_k8s_runner::RequeueRecord;
use rlaunch_model::{labels, names};

/// Label marking the agent's launch intents.
pub const INTENT_LABEL: &str = "rlaunch.dev/launch-intent";

/// One recorded intent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Intent {
    pub namespace: String,
    pub item_id: String,
    pub run_id: String,
    pub queue: String,
    pub launch: Launch,
}

/// What a restarted agent needs to finish the launch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Launch {
    /// The popped spec without secrets, the item's priority and template variables.
    Kept(Box<RequeueRecord>),
    /// Not kept, and why (a sentence).
    Unkept(String),
}

/// Above this the spec is not kept in the intent (a ConfigMap holds at most 1 MiB).
const MAX_KEPT_BYTES: usize = 512 * 1024;

const OWN_KEY: &str =
    "its run spec carries its own W&B API key, which the agent never writes to the cluster";

impl Launch {
    /// The launch of `record`; `own_key` when the spec has its own `_wandb_api_key`.
    pub(crate) fn of(record: &RequeueRecord, own_key: bool) -> Self {
        if own_key {
            return Launch::Unkept(OWN_KEY.to_owned());
        }
        Launch::Kept(Box::new(record.clone()))
    }

    fn to_data(&self) -> (&'static str, String) {
        match self {
            Launch::Kept(record) => match serde_json::to_string(record) {
                Ok(text) if text.len() <= MAX_KEPT_BYTES => ("launch", text),
                _ => (
                    "launchNotKept",
                    "its run spec is too large to keep in the launch intent".to_owned(),
                ),
            },
            Launch::Unkept(reason) => ("launchNotKept", reason.clone()),
        }
    }

    fn from_data(data: &BTreeMap<String, String>) -> Self {
        if let Some(record) = data
            .get("launch")
            .and_then(|text| serde_json::from_str(text).ok())
        {
            return Launch::Kept(Box::new(record));
        }
        Launch::Unkept(
            data.get("launchNotKept")
                .cloned()
                .unwrap_or_else(|| "the launch intent holds no readable run spec".to_owned()),
        )
    }
}

/// ConfigMap name of the intent for `item_id` (item ids are opaque base64: hashed into a
/// DNS label).
pub(crate) fn intent_name(item_id: &str) -> String {
    format!("rlaunch-intent-{}", names::stable_hash(item_id))
}

fn to_config_map(intent: &Intent, identity: &str) -> ConfigMap {
    let labels = BTreeMap::from([
        (INTENT_LABEL.to_owned(), "launch".to_owned()),
        (labels::AGENT_IDENTITY.to_owned(), identity.to_owned()),
    ]);
    let (launch_key, launch) = intent.launch.to_data();
    let data = BTreeMap::from([
        ("runQueueItemId".to_owned(), intent.item_id.clone()),
        ("runId".to_owned(), intent.run_id.clone()),
        ("queue".to_owned(), intent.queue.clone()),
        (launch_key.to_owned(), launch),
    ]);
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(intent_name(&intent.item_id)),
            namespace: Some(intent.namespace.clone()),
            labels: Some(labels),
            ..ObjectMeta::default()
        },
        data: Some(data),
        ..ConfigMap::default()
    }
}

fn from_config_map(map: &ConfigMap) -> Option<Intent> {
    let data = map.data.as_ref()?;
    Some(Intent {
        namespace: map.metadata.namespace.clone()?,
        item_id: data.get("runQueueItemId")?.clone(),
        run_id: data.get("runId")?.clone(),
        queue: data.get("queue")?.clone(),
        launch: Launch::from_data(data),
    })
}

/// Records the intent; an existing one (a retried item) is kept.
pub(crate) async fn record(
    client: &kube::Client,
    intent: &Intent,
    identity: &str,
) -> Result<(), kube::Error> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), &intent.namespace);
    match api
        .create(&PostParams::default(), &to_config_map(intent, identity))
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(response)) if response.code == 409 => Ok(()),
        Err(error) => Err(error),
    }
}

/// Deletes the intent of `item_id` (gone already is fine).
pub(crate) async fn forget(client: &kube::Client, namespace: &str, item_id: &str) {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    match api
        .delete(&intent_name(item_id), &DeleteParams::background())
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(response)) if response.code == 404 => {}
        Err(error) => {
            tracing::warn!(item = %item_id, namespace, error = %error, "cannot delete the launch intent; a restarted agent will find the workload and delete it");
        }
    }
}

/// Every intent of `identity` in `namespaces`.
pub(crate) async fn list(
    client: &kube::Client,
    identity: &str,
    namespaces: &[String],
) -> Result<Vec<Intent>, kube::Error> {
    let selector = format!("{INTENT_LABEL},{}={identity}", labels::AGENT_IDENTITY);
    let mut intents = Vec::new();
    for namespace in namespaces {
        let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
        let found = api.list(&ListParams::default().labels(&selector)).await?;
        intents.extend(found.items.iter().filter_map(from_config_map));
    }
    Ok(intents)
}

/// Test-only fault hook: with this variable set to `1` the agent stops right after an
/// ack (it never creates the workload) until it is killed. Used by the crash test; never
/// set it in production.
pub const PAUSE_AFTER_ACK_ENV: &str = "LAUNCH_AGENT_TEST_PAUSE_AFTER_ACK";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_intent_round_trips_and_is_named_as_a_dns_label() {
        let intent = Intent {
            namespace: "ml".to_owned(),
            item_id: "UnVuUXVldWVJdGVtOjE=".to_owned(),
            run_id: "abc123".to_owned(),
            queue: "gpu".to_owned(),
            launch: Launch::of(
                &RequeueRecord::new(
                    &serde_json::json!({"entity": "e", "_wandb_api_key": "k"}),
                    0,
                ),
                false,
            ),
        };
        let map = to_config_map(&intent, "prod");
        let kept = &map.data.as_ref().unwrap()["launch"];
        assert!(!kept.contains("_wandb_api_key"), "{kept}");
        let name = map.metadata.name.clone().unwrap();
        assert!(names::is_dns_label(&name), "{name}");
        assert_eq!(name, intent_name(&intent.item_id));
        assert_ne!(intent_name("a"), intent_name("b"));
        assert_eq!(from_config_map(&map), Some(intent));
        let labels = map.metadata.labels.unwrap();
        assert_eq!(labels[labels::AGENT_IDENTITY], "prod");
    }

    #[test]
    fn a_spec_with_its_own_key_or_too_large_is_not_kept_and_says_why() {
        let record = RequeueRecord::new(&serde_json::json!({"entity": "e"}), 0);
        let own = Launch::of(&record, true);
        assert_eq!(own.to_data().0, "launchNotKept");
        let big = RequeueRecord::new(&serde_json::json!({"x": "y".repeat(MAX_KEPT_BYTES)}), 0);
        let (key, reason) = Launch::of(&big, false).to_data();
        assert_eq!(key, "launchNotKept");
        let data = BTreeMap::from([(key.to_owned(), reason)]);
        let Launch::Unkept(reason) = Launch::from_data(&data) else {
            panic!("a spec that was not kept reads back as not kept");
        };
        assert!(reason.contains("too large"), "{reason}");
    }
}
