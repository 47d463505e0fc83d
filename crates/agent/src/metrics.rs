//! Prometheus metrics (prometheus-client), served as text on `/metrics`.
//!
//! Labels are bounded: queue names from the config, stages and state names from fixed
//! enums, operations and error kinds from `&'static str`s — never error text.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use std::sync::atomic::AtomicU64;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueueLabels {
    queue: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FailedLabels {
    queue: String,
    stage: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GpuLabels {
    queue: String,
    entity: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ApiErrorLabels {
    operation: String,
    kind: String,
}

type HistogramFamily = Family<QueueLabels, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.05, 2.0, 14))
}

/// 1 s to about 9 h: items may wait in a queue for hours.
fn queue_wait_histogram() -> Histogram {
    Histogram::new(exponential_buckets(1.0, 2.0, 16))
}

/// A step of time to GPU after the workload's creation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum GpuStep {
    /// Created → admitted (out of `queued`).
    CreatedToScheduled,
    /// Admitted → first pod running.
    ScheduledToRunning,
}

/// The agent's metrics. Cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    popped: Family<QueueLabels, Counter>,
    acked: Family<QueueLabels, Counter>,
    failed: Family<FailedLabels, Counter>,
    requeued: Family<QueueLabels, Counter>,
    adopted: Counter,
    jobs: Family<StateLabels, Gauge>,
    queue_wait: HistogramFamily,
    pop_to_created: HistogramFamily,
    created_to_scheduled: HistogramFamily,
    scheduled_to_running: HistogramFamily,
    api_errors: Family<ApiErrorLabels, Counter>,
    gpu_seconds: Family<GpuLabels, Counter<f64, AtomicU64>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry with every metric registered.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("rlaunch_agent");
        let popped = Family::<QueueLabels, Counter>::default();
        let acked = Family::<QueueLabels, Counter>::default();
        let failed = Family::<FailedLabels, Counter>::default();
        let requeued = Family::<QueueLabels, Counter>::default();
        let adopted = Counter::default();
        let jobs = Family::<StateLabels, Gauge>::default();
        let queue_wait: HistogramFamily = Family::new_with_constructor(queue_wait_histogram);
        let pop_to_created: HistogramFamily = Family::new_with_constructor(latency_histogram);
        let created_to_scheduled: HistogramFamily = Family::new_with_constructor(latency_histogram);
        let scheduled_to_running: HistogramFamily = Family::new_with_constructor(latency_histogram);
        let api_errors = Family::<ApiErrorLabels, Counter>::default();
        let gpu_seconds = Family::<GpuLabels, Counter<f64, AtomicU64>>::default();
        registry.register("items_popped", "Run queue items popped", popped.clone());
        registry.register("items_acked", "Run queue items acknowledged", acked.clone());
        registry.register(
            "items_failed",
            "Run queue items failed, by stage",
            failed.clone(),
        );
        registry.register(
            "items_requeued",
            "Preempted runs requeued",
            requeued.clone(),
        );
        registry.register(
            "runs_adopted",
            "Runs adopted after a restart",
            adopted.clone(),
        );
        registry.register("jobs", "Items in flight, by state", jobs.clone());
        registry.register(
            "queue_wait_seconds",
            "Time to GPU, from the item pushed to W&B to its pop (W&B's clock against ours; needs a server that tells an item's creation time)",
            queue_wait.clone(),
        );
        registry.register(
            "pop_to_created_seconds",
            "From pop to the workload created in the cluster",
            pop_to_created.clone(),
        );
        registry.register(
            "created_to_scheduled_seconds",
            "Time to GPU, from the workload created to its admission: the end of `queued` (Kueue, Volcano, a suspended workload), about zero when nothing holds it",
            created_to_scheduled.clone(),
        );
        registry.register(
            "scheduled_to_running_seconds",
            "Time to GPU, from admission to the first pod running (pod scheduling, image pull, container start)",
            scheduled_to_running.clone(),
        );
        registry.register(
            "api_errors",
            "Failed W&B API calls, by operation and error kind",
            api_errors.clone(),
        );
        registry.register(
            "gpu_seconds",
            "GPU time used: seconds a run was seen running times the GPUs its workload requests, by queue and the run's entity",
            gpu_seconds.clone(),
        );
        Self {
            inner: Arc::new(Inner {
                registry,
                popped,
                acked,
                failed,
                requeued,
                adopted,
                jobs,
                queue_wait,
                pop_to_created,
                created_to_scheduled,
                scheduled_to_running,
                api_errors,
                gpu_seconds,
            }),
        }
    }

    fn queue(queue: &str) -> QueueLabels {
        QueueLabels {
            queue: queue.to_owned(),
        }
    }

    /// An item was popped from `queue`.
    pub fn popped(&self, queue: &str) {
        self.inner.popped.get_or_create(&Self::queue(queue)).inc();
    }

    /// An item of `queue` was acked.
    pub fn acked(&self, queue: &str) {
        self.inner.acked.get_or_create(&Self::queue(queue)).inc();
    }

    /// An item of `queue` was failed at `stage`.
    pub fn failed(&self, queue: &str, stage: &str) {
        let labels = FailedLabels {
            queue: queue.to_owned(),
            stage: stage.to_owned(),
        };
        self.inner.failed.get_or_create(&labels).inc();
    }

    /// A preempted run of `queue` was requeued.
    pub fn requeued(&self, queue: &str) {
        self.inner.requeued.get_or_create(&Self::queue(queue)).inc();
    }

    /// A run was adopted.
    pub fn adopted(&self) {
        self.inner.adopted.inc();
    }

    /// Items in flight per state name (states missing from `counts` are set to 0).
    pub fn set_jobs(&self, counts: &[(&'static str, i64)]) {
        for state in crate::store::PHASE_NAMES {
            let value = counts
                .iter()
                .find(|(name, _)| name == state)
                .map_or(0, |(_, n)| *n);
            self.inner
                .jobs
                .get_or_create(&StateLabels {
                    state: (*state).to_owned(),
                })
                .set(value);
        }
    }

    /// How long an item of `queue` waited in W&B before its pop.
    pub fn queue_wait(&self, queue: &str, waited: Duration) {
        self.inner
            .queue_wait
            .get_or_create(&Self::queue(queue))
            .observe(waited.as_secs_f64());
    }

    /// GPU-seconds used by a run of `queue` in `entity`.
    pub fn gpu_seconds(&self, queue: &str, entity: &str, seconds: f64) {
        let labels = GpuLabels {
            queue: queue.to_owned(),
            entity: entity.to_owned(),
        };
        self.inner
            .gpu_seconds
            .get_or_create(&labels)
            .inc_by(seconds);
    }

    /// Pop → created latency of an item of `queue`.
    pub fn pop_to_created(&self, queue: &str, elapsed: Duration) {
        self.inner
            .pop_to_created
            .get_or_create(&Self::queue(queue))
            .observe(elapsed.as_secs_f64());
    }

    /// One time-to-GPU step of a run of `queue` (after pop → created).
    pub(crate) fn time_to_gpu(&self, queue: &str, step: GpuStep, elapsed: Duration) {
        let family = match step {
            GpuStep::CreatedToScheduled => &self.inner.created_to_scheduled,
            GpuStep::ScheduledToRunning => &self.inner.scheduled_to_running,
        };
        family
            .get_or_create(&Self::queue(queue))
            .observe(elapsed.as_secs_f64());
    }

    /// A W&B call failed.
    pub fn api_error(&self, operation: &str, kind: &str) {
        let labels = ApiErrorLabels {
            operation: operation.to_owned(),
            kind: kind.to_owned(),
        };
        self.inner.api_errors.get_or_create(&labels).inc();
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.inner.registry).is_err() {
            out.clear();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_exposition_names_queues_stages_and_operations() {
        let metrics = Metrics::new();
        metrics.popped("gpu");
        metrics.failed("gpu", "agent");
        metrics.api_error("popFromRunQueue", "server_unavailable");
        metrics.queue_wait("gpu", Duration::from_secs(90));
        metrics.pop_to_created("gpu", Duration::from_millis(300));
        metrics.gpu_seconds("gpu", "team-a", 30.0);
        metrics.gpu_seconds("gpu", "team-a", 12.5);
        metrics.time_to_gpu("gpu", GpuStep::CreatedToScheduled, Duration::from_secs(4));
        metrics.time_to_gpu("gpu", GpuStep::ScheduledToRunning, Duration::from_secs(2));
        metrics.set_jobs(&[("running", 2)]);
        let text = metrics.encode();
        assert!(
            text.contains("rlaunch_agent_items_popped_total{queue=\"gpu\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("rlaunch_agent_items_failed_total{queue=\"gpu\",stage=\"agent\"} 1"),
            "{text}"
        );
        assert!(text.contains("rlaunch_agent_api_errors_total{operation=\"popFromRunQueue\",kind=\"server_unavailable\"} 1"), "{text}");
        assert!(
            text.contains("rlaunch_agent_pop_to_created_seconds_count{queue=\"gpu\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("rlaunch_agent_gpu_seconds_total{queue=\"gpu\",entity=\"team-a\"} 42.5"),
            "{text}"
        );
        assert!(
            text.contains("rlaunch_agent_queue_wait_seconds_bucket{le=\"64.0\",queue=\"gpu\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("rlaunch_agent_queue_wait_seconds_bucket{le=\"128.0\",queue=\"gpu\"} 1"),
            "{text}"
        );
        for step in [
            "queue_wait",
            "pop_to_created",
            "created_to_scheduled",
            "scheduled_to_running",
        ] {
            let line = format!("rlaunch_agent_{step}_seconds_count{{queue=\"gpu\"}} 1");
            assert!(text.contains(&line), "{line}: {text}");
        }
        assert!(
            text.contains("rlaunch_agent_jobs{state=\"running\"} 2"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
