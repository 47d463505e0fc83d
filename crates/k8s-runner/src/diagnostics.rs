//! Failure diagnostics: log tails of every container of a run's pods, and the Kubernetes
//! events of the workload and its pods, condensed.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{Api, ListParams, LogParams};
use kube::{Client, ResourceExt};
use tracing::debug;

use crate::api::RunRef;
use crate::attribution::pod_selector;
use crate::state::{ContainerLog, Diagnostics};

/// Most event lines kept in [`Diagnostics::events`].
const MAX_EVENT_LINES: usize = 30;

/// The pods of a run's workload (see [`crate::attribution`]).
pub(crate) async fn run_pods(client: &Client, run: &RunRef) -> Vec<Pod> {
    let api: Api<Pod> = Api::namespaced(client.clone(), &run.namespace);
    match api
        .list(&ListParams::default().labels(&pod_selector(run)))
        .await
    {
        Ok(list) => list.items,
        Err(error) => {
            debug!(run = %run.object(), error = %error, "listing pods for diagnostics failed");
            Vec::new()
        }
    }
}

/// The log of `container` in each pod of `run`, from the start, at most `limit_bytes` each.
pub(crate) async fn read_log(
    client: &Client,
    run: &RunRef,
    container: &str,
    limit_bytes: usize,
) -> crate::error::Result<Vec<ContainerLog>> {
    let api: Api<Pod> = Api::namespaced(client.clone(), &run.namespace);
    let pods = api
        .list(&ListParams::default().labels(&pod_selector(run)))
        .await
        .map_err(|source| crate::error::Error::List {
            kind: "Pod".to_owned(),
            scope: format!("namespace {}", run.namespace),
            selector: pod_selector(run),
            source: Box::new(source),
        })?;
    let limit = i64::try_from(limit_bytes).unwrap_or(i64::MAX);
    let mut logs = Vec::new();
    for pod in pods.items {
        let name = pod.name_any();
        let params = LogParams {
            container: Some(container.to_owned()),
            limit_bytes: Some(limit),
            ..LogParams::default()
        };
        let text = api
            .logs(&name, &params)
            .await
            .map_err(|source| crate::error::Error::Get {
                kind: "Pod log".to_owned(),
                object: format!("{}/{name} container {container}", run.namespace),
                source: Box::new(source),
            })?;
        logs.push(ContainerLog {
            pod: name,
            container: container.to_owned(),
            truncated: text.len() >= limit_bytes,
            tail: text,
        });
    }
    Ok(logs)
}

/// Keep the last `limit` bytes of `text`, cut at a character boundary.
pub fn tail_bytes(text: &str, limit: usize) -> (String, bool) {
    if text.len() <= limit {
        return (text.to_owned(), false);
    }
    let mut start = text.len() - limit;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    (text[start..].to_owned(), true)
}

/// Condense events: one line per `(type, object, reason, message)`, counts summed, in order of
/// first appearance, warnings first.
pub fn condense_events(events: &[Event]) -> Vec<String> {
    let mut lines: BTreeMap<(u8, usize), (String, i32)> = BTreeMap::new();
    let mut index: BTreeMap<String, (u8, usize)> = BTreeMap::new();
    for (position, event) in events.iter().enumerate() {
        let type_ = event.type_.clone().unwrap_or_else(|| "Normal".to_owned());
        let object = format!(
            "{}/{}",
            event
                .involved_object
                .kind
                .as_deref()
                .unwrap_or("object")
                .to_lowercase(),
            event.involved_object.name.as_deref().unwrap_or_default()
        );
        let reason = event.reason.clone().unwrap_or_default();
        let message = event.message.clone().unwrap_or_default();
        let line = format!("{type_} {reason} {object}: {}", message.trim());
        let count = event.count.unwrap_or(1).max(1);
        let rank = u8::from(type_ != "Warning");
        let key = *index.entry(line.clone()).or_insert((rank, position));
        lines.entry(key).or_insert((line, 0)).1 += count;
    }
    lines
        .into_values()
        .take(MAX_EVENT_LINES)
        .map(|(line, count)| {
            if count > 1 {
                format!("{line} (x{count})")
            } else {
                line
            }
        })
        .collect()
}

/// Events whose involved object is one of `names`, in namespace order.
async fn events_for(client: &Client, namespace: &str, names: &[String]) -> Vec<Event> {
    let api: Api<Event> = Api::namespaced(client.clone(), namespace);
    let mut events = Vec::new();
    for name in names {
        let params = ListParams::default().fields(&format!("involvedObject.name={name}"));
        match api.list(&params).await {
            Ok(list) => events.extend(list.items),
            Err(error) => debug!(object = %name, error = %error, "listing events failed"),
        }
    }
    events.sort_by_key(|event| {
        event
            .last_timestamp
            .as_ref()
            .map(|t| t.0)
            .or_else(|| event.event_time.as_ref().map(|t| t.0))
    });
    events
}

/// Collect log tails (at most `log_tail_bytes` per container) and condensed events.
pub(crate) async fn collect(client: &Client, run: &RunRef, log_tail_bytes: usize) -> Diagnostics {
    let pods = run_pods(client, run).await;
    let pod_api: Api<Pod> = Api::namespaced(client.clone(), &run.namespace);
    let mut logs = Vec::new();
    for pod in &pods {
        let pod_name = pod.name_any();
        let mut containers: Vec<String> = Vec::new();
        if let Some(spec) = &pod.spec {
            for container in spec.init_containers.iter().flatten() {
                containers.push(container.name.clone());
            }
            for container in &spec.containers {
                containers.push(container.name.clone());
            }
        }
        for container in containers {
            let params = LogParams {
                container: Some(container.clone()),
                // Bound what the apiserver sends; the byte cut below bounds what we keep.
                tail_lines: Some(500),
                ..LogParams::default()
            };
            match pod_api.logs(&pod_name, &params).await {
                Ok(text) => {
                    let (tail, truncated) = tail_bytes(&text, log_tail_bytes);
                    logs.push(ContainerLog {
                        pod: pod_name.clone(),
                        container: container.clone(),
                        tail,
                        truncated,
                    });
                }
                Err(error) => {
                    debug!(pod = %pod_name, container = %container, error = %error, "no logs")
                }
            }
        }
    }
    let mut names = vec![run.name.clone()];
    names.extend(pods.iter().map(ResourceExt::name_any));
    let events = condense_events(&events_for(client, &run.namespace, &names).await);
    Diagnostics { events, logs }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(
        type_: &str,
        kind: &str,
        name: &str,
        reason: &str,
        message: &str,
        count: i32,
    ) -> Event {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": format!("{name}.1")},
            "involvedObject": {"kind": kind, "name": name},
            "type": type_, "reason": reason, "message": message, "count": count
        }))
        .unwrap()
    }

    #[test]
    fn tail_keeps_the_end_on_a_char_boundary() {
        assert_eq!(tail_bytes("hello", 10), ("hello".to_owned(), false));
        assert_eq!(tail_bytes("hello world", 5), ("world".to_owned(), true));
        let (tail, truncated) = tail_bytes("aé", 1);
        assert!(truncated);
        assert_eq!(tail, "");
    }

    #[test]
    fn events_are_condensed_with_counts_and_warnings_first() {
        let events = vec![
            event("Normal", "Pod", "p", "Scheduled", "assigned", 1),
            event("Warning", "Pod", "p", "FailedScheduling", "no gpu", 2),
            event("Warning", "Pod", "p", "FailedScheduling", "no gpu", 3),
        ];
        assert_eq!(
            condense_events(&events),
            vec![
                "Warning FailedScheduling pod/p: no gpu (x5)".to_owned(),
                "Normal Scheduled pod/p: assigned".to_owned(),
            ]
        );
    }
}
