//! Launch intents: an item acked but never launched (the agent killed between the ack and
//! the workload's create) is failed on restart with a clear message, never forgotten.
//!
//! # Design
//!
//! Before the ack the agent writes a small ConfigMap in the run's namespace, named after
//! the run queue item ([`intent_name`]), labelled with the agent identity
//! ([`INTENT_LABEL`] + `rlaunch.dev/agent-identity`), holding the item id, run id and queue
//! (never the run spec, never a secret). It is deleted once the workload exists (adoption
//! takes over from there) or once the item's failure is reported. On start, before the
//! first pop, every intent of this identity whose item has no workload is reported with
//! `failRunQueueItem` (stage `agent`), then deleted.
//!
//! Why a ConfigMap, not W&B: W&B's API has no query for "items this agent acked", so the
//! record has to live with us; the cluster is where the agent's other durable state is
//! (workloads, their requeue records), it survives the agent's pod, and a ConfigMap needs
//! only `create`, `list` and `delete` on `configmaps` in the target namespaces (the check
//! subcommand asks for them). Why before the ack, not after: a record written after the
//! ack leaves a window where the ack is in W&B and nothing is in the cluster. The cost: an
//! item whose pop was recorded but whose ack never reached W&B is failed too, with the same
//! message, instead of being left to its lease — the agent cannot tell the two apart, and
//! a failed item with a clear message is recoverable (push it again) where a forgotten one
//! is not.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, PostParams};
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
    let data = BTreeMap::from([
        ("runQueueItemId".to_owned(), intent.item_id.clone()),
        ("runId".to_owned(), intent.run_id.clone()),
        ("queue".to_owned(), intent.queue.clone()),
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
        };
        let map = to_config_map(&intent, "prod");
        let name = map.metadata.name.clone().unwrap();
        assert!(names::is_dns_label(&name), "{name}");
        assert_eq!(name, intent_name(&intent.item_id));
        assert_ne!(intent_name("a"), intent_name("b"));
        assert_eq!(from_config_map(&map), Some(intent));
        let labels = map.metadata.labels.unwrap();
        assert_eq!(labels[labels::AGENT_IDENTITY], "prod");
    }
}
