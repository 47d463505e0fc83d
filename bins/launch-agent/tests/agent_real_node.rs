//! The agent end to end on the test cluster's real node (kubelet + containerd + runc): the
//! real `launch-agent` against `wandb-fake`, its pods running the trainer image, which calls
//! the fake as `wandb.init` does. Every outcome here is one the real kubelet wrote: a clean
//! exit, an exit code with the container's real log, a memory-cgroup OOM kill, an image
//! missing from the registry, the kubelet's crash-loop back-off, and a user's stop that
//! reaches the container as SIGTERM.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{AgentProcess, eventually};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use rlaunch_testkit::node::{self, images};
use rlaunch_testkit::{RealNodeInfo, TestCluster, TestNamespace};
use rlaunch_wandb_fake::{
    FAKE_ENTITY, FakeConfig, FakeWandb, ItemReport, ItemState, ItemView, NewItem, NewQueue,
};
use serde_json::{Value, json};

/// A hang guard (the image-pull test waits out the agent's image-pull grace, set to 20 s here).
const WAIT: Duration = Duration::from_secs(300);
const PROJECT: &str = "real-node";

/// The cluster with its real node, a namespace and a fake W&B that the node's pods reach.
struct Setup {
    cluster: &'static TestCluster,
    node: RealNodeInfo,
    ns: TestNamespace,
    fake: Arc<FakeWandb>,
}

async fn setup(prefix: &str) -> anyhow::Result<Setup> {
    let cluster = rlaunch_testkit::real_node_cluster().await?;
    let node = cluster.real_node().await?;
    let ns = cluster.namespace(prefix).await?;
    // Pods reach the host on the node's bridge address, the agent too.
    let listener = tokio::net::TcpListener::bind((node.host_ip.as_str(), 0)).await?;
    let fake = Arc::new(FakeWandb::serve_on(listener, FakeConfig::default()).await?);
    Ok(Setup {
        cluster,
        node,
        ns,
        fake,
    })
}

impl Setup {
    /// A queue whose Jobs run on the real node, with `env` for the trainer, a memory limit
    /// and `job` merged into the Job spec (e.g. `backoffLimit`).
    fn queue(&self, name: &str, env: Value, memory: &str, job: Value, pod: Value) {
        let mut queue = NewQueue::new(FAKE_ENTITY, name);
        let mut spec = json!({
            "nodeSelector": node::node_selector(),
            "tolerations": [node::toleration()],
            "containers": [{
                "name": "main",
                "env": env,
                "resources": {"limits": {"cpu": "200m", "memory": memory}},
            }],
        });
        merge(&mut spec, pod);
        let mut job_spec = json!({"template": {"spec": spec}});
        merge(&mut job_spec, job);
        queue.config = json!({"resource_args": {"kubernetes": {
            "metadata": {"namespace": self.ns.name},
            "spec": job_spec,
        }}});
        self.fake.create_queue(queue).unwrap();
    }

    fn push(&self, queue: &str, image: &str) -> String {
        self.fake
            .push_item(NewItem {
                entity: FAKE_ENTITY.to_owned(),
                project: "model-registry".to_owned(),
                queue: queue.to_owned(),
                run_spec: json!({
                    "entity": FAKE_ENTITY,
                    "project": PROJECT,
                    "docker": {"docker_image": image},
                }),
                priority: None,
            })
            .unwrap()
    }

    async fn agent(&self, queues: &[&str]) -> anyhow::Result<AgentProcess> {
        let config = format!(
            "entity: {FAKE_ENTITY}\nqueues: [{}]\nmax_jobs: -1\npoll_interval: 0.3\nstopped_run_timeout: 1\nimage_pull_grace: 20\ntarget_namespaces: [{ns}]\nidentity: real-{ns}\n",
            queues.join(", "),
            ns = self.ns.name
        );
        AgentProcess::start(&self.fake, self.cluster.kubeconfig_path(), &config).await
    }

    /// Waits for `item` to satisfy `done`, failing with the agent's and the node's logs.
    async fn wait_item(
        &self,
        agent: &AgentProcess,
        item: &str,
        what: &str,
        done: impl Fn(&ItemView) -> bool,
    ) -> ItemView {
        let waited = eventually(what, WAIT, || async {
            anyhow::ensure!(!agent.has_exited(), "the agent exited early");
            Ok(self.fake.item(item).filter(|i| done(i)))
        })
        .await;
        match waited {
            Ok(item) => item,
            Err(error) => panic!(
                "{error}\nitem: {:#?}\nagent log:\n{}\n{}",
                self.fake.item(item),
                agent.log_text(),
                self.node.log_tails(20)
            ),
        }
    }

    /// The failure of `item` once it is failed.
    async fn failure(&self, agent: &AgentProcess, item: &str) -> ItemReport {
        let item = self
            .wait_item(agent, item, "the item to be failed", |i| {
                i.state == ItemState::Failed
            })
            .await;
        let failure = item.failure.expect("a failed item has its failure");
        eprintln!("failure: {failure:?}");
        assert_eq!(failure.stage, "run", "{failure:?}");
        failure
    }

    /// The descriptions the trainer sent with `upsertBucket` for `run_id`.
    fn trainer_calls(&self, run_id: &str) -> Vec<String> {
        self.fake
            .journal_of("UpsertBucket")
            .into_iter()
            .filter_map(|entry| entry.variables)
            .filter(|vars| vars["name"] == run_id)
            .filter_map(|vars| vars["description"].as_str().map(str::to_owned))
            .collect()
    }

    async fn finish(self, mut agent: AgentProcess) -> anyhow::Result<()> {
        agent.signal("TERM")?;
        let exit = tokio::time::timeout(Duration::from_secs(60), agent.child.wait()).await??;
        assert!(exit.success(), "{exit:?}\n{}", agent.log_text());
        self.ns.cleanup().await;
        Ok(())
    }
}

/// Merges `patch` into `target`, objects key by key, anything else replaced.
fn merge(target: &mut Value, patch: Value) {
    match (target, patch) {
        (Value::Object(target), Value::Object(patch)) => {
            for (key, value) in patch {
                merge(target.entry(key).or_insert(Value::Null), value);
            }
        }
        (target, patch) => *target = patch,
    }
}

fn trainer() -> String {
    images::reference(images::TRAINER)
}

fn env(pairs: &[(&str, &str)]) -> Value {
    pairs
        .iter()
        .map(|(name, value)| json!({"name": name, "value": value}))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trainer_that_inits_and_exits_zero_finishes_without_a_failure_report()
-> anyhow::Result<()> {
    let s = setup("agent-real-ok").await?;
    s.queue("ok", env(&[]), "64Mi", json!({}), json!({}));
    let item = s.push("ok", &trainer());
    let agent = s.agent(&["ok"]).await?;
    let finished = |log: &str| {
        log.lines()
            .any(|l| l.contains("item finished") && l.contains(&item))
    };
    eventually("the agent to report the item finished", WAIT, || async {
        anyhow::ensure!(!agent.has_exited(), "the agent exited early");
        Ok(finished(&agent.log_text()).then_some(()))
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}\n{}", agent.log_text(), s.node.log_tails(20)));
    let view = s.fake.item(&item).unwrap();
    assert_eq!(view.state, ItemState::Claimed, "{view:?}");
    assert!(view.failure.is_none(), "{view:?}");
    let run_id = view.associated_run_id.clone().unwrap();
    assert_eq!(s.trainer_calls(&run_id), ["trainer: init"]);
    let run = s.fake.run(FAKE_ENTITY, PROJECT, &run_id).unwrap();
    assert_eq!(run.state, "running", "wandb.init started the acked run");
    s.finish(agent).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_three_fails_with_the_code_and_the_containers_real_last_log_lines()
-> anyhow::Result<()> {
    let s = setup("agent-real-exit").await?;
    let vars = env(&[("TRAINER_EXIT_CODE", "3"), ("TRAINER_STEPS", "4")]);
    s.queue("exit", vars, "64Mi", json!({}), json!({}));
    let item = s.push("exit", &trainer());
    let agent = s.agent(&["exit"]).await?;
    let failure = s.failure(&agent, &item).await;
    assert!(
        failure.message.contains("container main")
            && failure.message.contains("exited with code 3"),
        "{}",
        failure.message
    );
    let files = s.fake.failure_files(&item);
    let error_log = files
        .iter()
        .find(|(name, _)| name.ends_with("error.log"))
        .map(|(_, text)| text.clone())
        .unwrap_or_else(|| panic!("no error file uploaded: {files:#?}"));
    for line in ["trainer: step 4", "trainer: exiting with code 3"] {
        assert!(error_log.contains(line), "{line:?} missing:\n{error_log}");
    }
    assert!(!error_log.contains(rlaunch_wandb_fake::FAKE_API_KEY));
    s.finish(agent).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allocating_past_the_limit_is_an_oom_kill_naming_container_and_limit() -> anyhow::Result<()>
{
    let s = setup("agent-real-oom").await?;
    s.queue(
        "oom",
        env(&[("TRAINER_ALLOCATE", "1")]),
        "32Mi",
        json!({}),
        json!({}),
    );
    let item = s.push("oom", &trainer());
    let agent = s.agent(&["oom"]).await?;
    let failure = s.failure(&agent, &item).await;
    for part in ["container main", "OOMKilled", "memory limit 32Mi"] {
        assert!(
            failure.message.contains(part),
            "{part:?}: {}",
            failure.message
        );
    }
    s.finish(agent).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_missing_from_the_registry_fails_naming_the_image() -> anyhow::Result<()> {
    let s = setup("agent-real-pull").await?;
    s.queue("pull", env(&[]), "64Mi", json!({}), json!({}));
    let missing = images::reference("no-such-trainer:1");
    let item = s.push("pull", &missing);
    let agent = s.agent(&["pull"]).await?;
    let failure = s.failure(&agent, &item).await;
    assert!(
        failure
            .message
            .contains(&format!("cannot pull image {missing}")),
        "{}",
        failure.message
    );
    s.finish(agent).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_looping_trainer_is_classified_as_a_crash_loop() -> anyhow::Result<()> {
    let s = setup("agent-real-crash").await?;
    s.queue(
        "crash",
        env(&[("TRAINER_EXIT_CODE", "1")]),
        "64Mi",
        json!({"backoffLimit": 2}),
        json!({"restartPolicy": "OnFailure"}),
    );
    let item = s.push("crash", &trainer());
    let agent = s.agent(&["crash"]).await?;
    let failure = s.failure(&agent, &item).await;
    assert!(
        failure.message.contains("container main")
            && failure
                .message
                .contains("CrashLoopBackOff (last exit code 1)"),
        "{}",
        failure.message
    );
    s.finish(agent).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_from_the_ui_reaches_the_container_as_sigterm_and_the_pod_is_gone()
-> anyhow::Result<()> {
    let s = setup("agent-real-stop").await?;
    s.queue(
        "forever",
        env(&[("TRAINER_FOREVER", "1")]),
        "64Mi",
        json!({}),
        json!({}),
    );
    let item = s.push("forever", &trainer());
    let agent = s.agent(&["forever"]).await?;
    let run_id = eventually("the trainer to call wandb.init", WAIT, || async {
        anyhow::ensure!(!agent.has_exited(), "the agent exited early");
        let run_id = s.fake.item(&item).and_then(|i| i.associated_run_id);
        Ok(run_id.filter(|id| !s.trainer_calls(id).is_empty()))
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}\n{}", agent.log_text(), s.node.log_tails(20)));
    s.fake.stop_run(FAKE_ENTITY, PROJECT, &run_id);
    let pods: Api<Pod> = Api::namespaced(s.cluster.client().await?, &s.ns.name);
    let gone = eventually("the pod to be gone", WAIT, || async {
        Ok(pods
            .list(&ListParams::default())
            .await?
            .items
            .is_empty()
            .then_some(()))
    })
    .await;
    if let Err(error) = gone {
        panic!("{error}\n{}\n{}", agent.log_text(), s.node.log_tails(20));
    }
    assert_eq!(
        s.trainer_calls(&run_id),
        ["trainer: init", images::TRAINER_SIGTERM],
        "the container got SIGTERM and said so before it ended"
    );
    let view = s.fake.item(&item).unwrap();
    assert_eq!(view.state, ItemState::Claimed, "a stop is not a failure");
    assert!(view.failure.is_none(), "{view:?}");
    s.finish(agent).await
}
