//! Every request a full run makes, recorded by a layer on the kube client, checked against
//! the RBAC table the chart is generated from.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::sync::{Arc, Mutex};

use common::{JobRun, config, wait_status, wait_terminal};
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{Api, PostParams};
use rlaunch_k8s_runner::{
    ApiKeySecrets, RbacNeed, RbacScope, RunState, Runner, RunnerConfig, rbac_allows, rbac_rules,
};
use rlaunch_render::ObjectRole;
use rlaunch_testkit::annotations::outcome;

type Log = Arc<Mutex<Vec<(http::Method, String)>>>;

/// A client whose every request is appended to the returned log.
async fn recording_client() -> anyhow::Result<(kube::Client, Log)> {
    let cluster = rlaunch_testkit::cluster().await?;
    let kubeconfig = kube::config::Kubeconfig::read_from(cluster.kubeconfig_path())?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?;
    let log: Log = Arc::default();
    let sink = log.clone();
    let layer =
        tower::util::MapRequestLayer::new(move |request: http::Request<kube::client::Body>| {
            let uri = request.uri();
            let path = uri
                .path_and_query()
                .map(|p| p.as_str().to_owned())
                .unwrap_or_default();
            sink.lock().unwrap().push((request.method().clone(), path));
            request
        });
    let client = kube::client::ClientBuilder::try_from(config)?
        .with_layer(&layer)
        .build();
    Ok((client, log))
}

/// `(verb, group, resource, scope)` of a request; `None` for discovery.
fn classify(
    method: &http::Method,
    path_and_query: &str,
) -> Option<(String, String, String, RbacScope)> {
    let (path, query) = path_and_query
        .split_once('?')
        .unwrap_or((path_and_query, ""));
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, rest) = match parts.as_slice() {
        ["api", _version, rest @ ..] => ("", rest),
        ["apis", group, _version, rest @ ..] => (*group, rest),
        _ => return None,
    };
    let (scope, rest) = match rest {
        ["namespaces", _ns, rest @ ..] if !rest.is_empty() => (RbacScope::Namespace, rest),
        rest => (RbacScope::Cluster, rest),
    };
    let (resource, named) = match rest {
        [] => return None,
        [resource] => ((*resource).to_owned(), false),
        [resource, _name] => ((*resource).to_owned(), true),
        [resource, _name, sub, ..] => (format!("{resource}/{sub}"), true),
    };
    let watch = query
        .split('&')
        .any(|p| p == "watch=true" || p == "watch=1");
    let verb = match (method.as_str(), named) {
        ("GET", _) if watch => "watch",
        ("GET", true) => "get",
        ("GET", false) => "list",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        (other, _) => other,
    };
    Some((verb.to_owned(), group.to_owned(), resource, scope))
}

fn calls(log: &Log) -> Vec<(String, String, String, RbacScope)> {
    log.lock()
        .unwrap()
        .iter()
        .filter_map(|(method, path)| classify(method, path))
        .collect()
}

#[tokio::test]
async fn every_call_of_a_full_run_is_in_the_rbac_table_and_every_always_rule_is_used()
-> anyhow::Result<()> {
    let cluster = rlaunch_testkit::cluster().await?;
    let ns = cluster.namespace("rbac").await?;
    let (client, log) = recording_client().await?;
    let runner = Runner::new(client, config());
    // A failing run with additional services: submit, watch, diagnostics, cleanup.
    let failing = JobRun::new(&ns.name, "rbacfail").outcome(outcome::FAIL);
    let mut rendered = failing.rendered();
    let workload = rendered.objects.pop().unwrap();
    rendered
        .objects
        .extend(common::database(&failing, outcome::RUN_FOREVER, 120));
    rendered.objects.push(workload);
    let mut handle = runner.submit(&rendered).await?.handle;
    assert!(matches!(
        wait_terminal(&mut handle).await?.state,
        RunState::Failed(_)
    ));
    // A retried submit of the same run adopts what exists (409 → get).
    let again = runner.submit(&rendered).await?;
    assert!(again.adopted);
    // A run that is cancelled.
    let forever = JobRun::new(&ns.name, "rbaccanc").outcome(outcome::RUN_FOREVER);
    let mut handle = runner.submit(&forever.rendered()).await?.handle;
    wait_status(&mut handle, "running", |s| s.state == RunState::Running).await?;
    runner.cancel(handle.run()).await?;
    wait_terminal(&mut handle).await?;
    // A custom workload (Volcano, plural by discovery), cancelled.
    let mut volcano = JobRun::new(&ns.name, "rbacvolc");
    volcano.with_secret = false;
    let object = volcano.custom_object(
        "batch.volcano.sh",
        "v1alpha1",
        "Job",
        "rbac-volcano",
        serde_json::json!({"minAvailable": 1, "schedulerName": "volcano",
            "tasks": [{"name": "worker", "replicas": 1, "template": volcano.pod_template()}]}),
    );
    let mut handle = runner
        .submit(&common::rendered(&ns.name, vec![object]))
        .await?
        .handle;
    let volcano_kind = handle.run().api.clone();
    runner.cancel(handle.run()).await?;
    wait_terminal(&mut handle).await?;
    // Adoption and the pre-check.
    let mut unresolved = volcano_kind.clone();
    unresolved.plural = None;
    runner
        .list_in_flight(
            common::IDENTITY,
            std::slice::from_ref(&ns.name),
            &[unresolved],
        )
        .await?;
    let spec: Pod = serde_json::from_value(serde_json::json!({
        "spec": {"containers": [{"name": "c", "image": "i"}]}
    }))?;
    runner.precheck(&ns.name, &[spec.spec.unwrap()]).await?;
    let recorded = calls(&log);
    let outside: Vec<_> = recorded
        .iter()
        .filter(|(verb, group, resource, scope)| !rbac_allows(verb, group, resource, *scope))
        .collect();
    assert!(
        outside.is_empty(),
        "calls missing from the RBAC table: {outside:?}"
    );
    let unused: Vec<_> = rbac_rules()
        .into_iter()
        .filter(|rule| rule.need == RbacNeed::Always)
        .flat_map(|rule| {
            rule.verbs
                .iter()
                .map(move |verb| (*verb, rule.group, rule.resource, rule.scope))
        })
        .filter(|(verb, group, resource, scope)| {
            !recorded
                .iter()
                .any(|(v, g, r, s)| v == verb && g == group && r == resource && s == scope)
        })
        .collect();
    assert!(
        unused.is_empty(),
        "table rules a full run never used: {unused:?}"
    );
    ns.cleanup().await;
    Ok(())
}

/// The shared helm-mode Secret: with `Create` an existing one is used without reading it;
/// with `PreProvisioned` no Secret request is made at all.
#[tokio::test]
async fn a_shared_secret_is_never_read_and_a_pre_provisioned_one_never_touched()
-> anyhow::Result<()> {
    let cluster = rlaunch_testkit::cluster().await?;
    let ns = cluster.namespace("rbacsec").await?;
    let admin = cluster.client().await?;
    for (mode, run_id) in [
        (ApiKeySecrets::Create, "sharecre"),
        (ApiKeySecrets::PreProvisioned, "sharepre"),
    ] {
        let run = JobRun::new(&ns.name, run_id).outcome(outcome::SUCCEED);
        let mut rendered = run.rendered();
        let secret = &mut rendered.objects[0];
        secret.role = ObjectRole::ApiKeySecret { shared: true };
        let mut existing = secret.manifest.clone();
        existing["metadata"]["namespace"] = serde_json::Value::Null;
        let secrets: Api<Secret> = Api::namespaced(admin.clone(), &ns.name);
        secrets
            .create(&PostParams::default(), &serde_json::from_value(existing)?)
            .await?;
        let (client, log) = recording_client().await?;
        let runner = Runner::new(
            client,
            RunnerConfig {
                api_key_secrets: mode,
                ..config()
            },
        );
        let mut handle = runner.submit(&rendered).await?.handle;
        assert_eq!(wait_terminal(&mut handle).await?.state, RunState::Finished);
        let secret_calls: Vec<_> = calls(&log)
            .into_iter()
            .filter(|(_, _, resource, _)| resource == "secrets")
            .map(|(verb, ..)| verb)
            .collect();
        match mode {
            ApiKeySecrets::Create => assert_eq!(secret_calls, vec!["create"], "{mode:?}"),
            ApiKeySecrets::PreProvisioned => assert!(secret_calls.is_empty(), "{secret_calls:?}"),
        }
        // The shared Secret outlives the run.
        assert!(secrets.get_opt(&run.secret_name()).await?.is_some());
        secrets
            .delete(&run.secret_name(), &Default::default())
            .await?;
    }
    ns.cleanup().await;
    Ok(())
}
