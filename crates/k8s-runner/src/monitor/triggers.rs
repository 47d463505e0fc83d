//! Watchers: they turn watch events into [`Trigger`]s for the reconcile loop and decide
//! nothing themselves. Each stops when the loop is gone.

use std::collections::HashSet;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Event as CoreEvent, Pod};
use kube::api::{Api, DynamicObject};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Client, ResourceExt};
use rlaunch_model::labels;
use tokio::sync::mpsc::UnboundedSender;
use tracing::warn;

use super::Trigger;
use crate::api::Coordinates;
use rlaunch_render::ApiCoordinates;

/// Send to the loop; false once it is gone.
fn send(tx: &UnboundedSender<Trigger>, trigger: Trigger) -> bool {
    tx.send(trigger).is_ok()
}

fn monitored() -> watcher::Config {
    watcher::Config::default().labels(&format!("{}=true", labels::MONITOR))
}

/// Pods of monitored workloads in `namespace`.
pub(super) async fn pods(tx: UnboundedSender<Trigger>, client: Client, namespace: String) {
    let api: Api<Pod> = Api::namespaced(client, &namespace);
    let mut stream = watcher::watcher(api, monitored()).default_backoff().boxed();
    while let Some(event) = stream.next().await {
        let trigger = |pod: Pod, deleted: bool| Trigger::Pod {
            namespace: namespace.clone(),
            pod: Box::new(pod),
            deleted,
        };
        let sent = match event {
            Ok(Event::Apply(pod) | Event::InitApply(pod)) => send(&tx, trigger(pod, false)),
            Ok(Event::Delete(pod)) => send(&tx, trigger(pod, true)),
            Ok(Event::Init | Event::InitDone) => true,
            Err(error) => {
                warn!(namespace = %namespace, error = %error, "pod watch failed; retrying with backoff");
                true
            }
        };
        if !sent {
            return;
        }
    }
}

/// Monitored workloads of one kind in `namespace`; a finished relist reports the names it
/// saw, so a workload deleted while the watch was down is noticed.
pub(super) async fn workloads(
    tx: UnboundedSender<Trigger>,
    client: Client,
    namespace: String,
    workload: ApiCoordinates,
) {
    let api: Api<DynamicObject> =
        Api::namespaced_with(client, &namespace, &workload.api_resource());
    let mut stream = watcher::watcher(api, monitored()).default_backoff().boxed();
    let mut listed: HashSet<String> = HashSet::new();
    while let Some(event) = stream.next().await {
        let apply = |object: DynamicObject| Trigger::Workload {
            api: workload.clone(),
            object: Box::new(object),
        };
        let sent = match event {
            Ok(Event::Init) => {
                listed.clear();
                true
            }
            Ok(Event::InitApply(object)) => {
                listed.insert(object.name_any());
                send(&tx, apply(object))
            }
            Ok(Event::InitDone) => send(
                &tx,
                Trigger::Relisted {
                    namespace: namespace.clone(),
                    api: workload.clone(),
                    names: std::mem::take(&mut listed),
                },
            ),
            Ok(Event::Apply(object)) => send(&tx, apply(object)),
            Ok(Event::Delete(object)) => {
                let key = (namespace.clone(), workload.key(), object.name_any());
                // The last status first: a workload that finished before its deletion
                // keeps its outcome.
                send(&tx, apply(object)) && send(&tx, Trigger::WorkloadDeleted(key))
            }
            Err(error) => {
                warn!(namespace = %namespace, kind = %workload.kind, error = %error, "workload watch failed; retrying with backoff");
                true
            }
        };
        if !sent {
            return;
        }
    }
}

/// `FailedCreate` events in `namespace`: a workload's pods refused by a quota or limit range.
pub(super) async fn refusals(tx: UnboundedSender<Trigger>, client: Client, namespace: String) {
    let trigger = |namespace: String, workload, message| Trigger::Refused {
        namespace,
        workload,
        message,
    };
    events(tx, client, namespace, "reason=FailedCreate", trigger).await;
}

/// Kueue's `Pending` events in `namespace`: why a queued workload is not admitted yet
/// (`couldn't assign flavors to pod set main: insufficient unused quota …`). Kueue writes
/// the reason on its `Workload` (condition `QuotaReserved=False` and this event), never on
/// the Job, whose own `Suspended` condition only says `Job suspended`.
pub(super) async fn admissions(tx: UnboundedSender<Trigger>, client: Client, namespace: String) {
    let trigger = |namespace: String, kueue_workload, message| Trigger::AdmissionPending {
        namespace,
        kueue_workload,
        message,
    };
    let fields = "involvedObject.kind=Workload,reason=Pending";
    events(tx, client, namespace, fields, trigger).await;
}

/// Watches the events of `namespace` matching `fields` and sends
/// `trigger(namespace, involved object's name, message)` for each, until the monitor is gone.
async fn events(
    tx: UnboundedSender<Trigger>,
    client: Client,
    namespace: String,
    fields: &str,
    trigger: impl Fn(String, String, String) -> Trigger,
) {
    let api: Api<CoreEvent> = Api::namespaced(client, &namespace);
    let config = watcher::Config::default().fields(fields);
    let mut stream = watcher::watcher(api, config).default_backoff().boxed();
    while let Some(event) = stream.next().await {
        let sent = match event {
            Ok(Event::Apply(event) | Event::InitApply(event)) => match event.involved_object.name {
                Some(name) => send(
                    &tx,
                    trigger(namespace.clone(), name, event.message.unwrap_or_default()),
                ),
                None => true,
            },
            Ok(Event::Delete(_) | Event::Init | Event::InitDone) => true,
            Err(error) => {
                warn!(namespace = %namespace, fields, error = %error, "event watch failed; retrying with backoff");
                true
            }
        };
        if !sent {
            return;
        }
    }
}
