//! Time to GPU after the create, and GPU-seconds while running, from the runner's state
//! changes (pure: instants are given).
//!
//! The runner's states are `starting`, `queued` (held by a queueing system) and `running`;
//! they do not separate "pod bound to a node" from "container started". So *scheduled*
//! here is the admission: the first state after the create that is not `queued` (about
//! the create itself when nothing holds the workload), and *running* is the first
//! `running`. Adopted runs have no creation instant and are not measured.

use std::time::Duration;

use rlaunch_k8s_runner::RunState;
use std::time::Instant;

use crate::metrics::GpuStep;

/// Where a created run is on its way to a running pod.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TimeToGpu {
    /// Created; maybe queued.
    Created { at: Instant },
    /// Admitted (out of `queued`); pods being scheduled, pulled, started.
    Scheduled { at: Instant },
    /// Running or terminal: nothing more to measure.
    Done,
}

impl TimeToGpu {
    /// A run created at `at`.
    pub fn created(at: Instant) -> Self {
        TimeToGpu::Created { at }
    }

    /// The steps completed by seeing `state` at `now`, each with its duration.
    pub fn observe(&mut self, state: &RunState, now: Instant) -> Vec<(GpuStep, Duration)> {
        let mut steps = Vec::new();
        if state.is_terminal() {
            *self = TimeToGpu::Done;
            return steps;
        }
        if let (TimeToGpu::Created { at }, RunState::Starting | RunState::Running) = (*self, state)
        {
            steps.push((GpuStep::CreatedToScheduled, now - at));
            *self = TimeToGpu::Scheduled { at: now };
        }
        if let (TimeToGpu::Scheduled { at }, RunState::Running) = (*self, state) {
            steps.push((GpuStep::ScheduledToRunning, now - at));
            *self = TimeToGpu::Done;
        }
        steps
    }
}

/// GPU-seconds of a run: the GPUs it requests times the time it is seen running, handed
/// out at every observation so a long run shows on the metric before it ends.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct GpuUse {
    gpus: u32,
    running_since: Option<Instant>,
}

impl GpuUse {
    /// A run whose workload requests `gpus`.
    pub fn new(gpus: u32) -> Self {
        Self {
            gpus,
            running_since: None,
        }
    }

    /// GPU-seconds used since the last observation, seeing `state` at `now`.
    pub fn observe(&mut self, state: &RunState, now: Instant) -> f64 {
        let used = self.running_since.take().map_or(0.0, |since| {
            now.saturating_duration_since(since).as_secs_f64() * f64::from(self.gpus)
        });
        if matches!(state, RunState::Running) {
            self.running_since = Some(now);
        }
        used
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpu_seconds_count_only_running_time_times_the_gpus() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut used = GpuUse::new(4);
        assert_eq!(used.observe(&RunState::Starting, t0), 0.0);
        assert_eq!(used.observe(&RunState::Running, t0 + s(10)), 0.0);
        assert_eq!(used.observe(&RunState::Running, t0 + s(15)), 20.0);
        assert_eq!(used.observe(&RunState::Finished, t0 + s(20)), 20.0);
        assert_eq!(used.observe(&RunState::Finished, t0 + s(99)), 0.0);
        let mut none = GpuUse::new(0);
        assert_eq!(none.observe(&RunState::Running, t0), 0.0);
        assert_eq!(none.observe(&RunState::Finished, t0 + s(9)), 0.0);
    }

    fn queued() -> RunState {
        RunState::Queued {
            reason: "quota".to_owned(),
        }
    }

    #[test]
    fn a_queued_run_is_scheduled_when_admitted_then_runs() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut clock = TimeToGpu::created(t0);
        assert_eq!(clock.observe(&queued(), t0 + s(1)), []);
        assert_eq!(
            clock.observe(&RunState::Starting, t0 + s(30)),
            [(GpuStep::CreatedToScheduled, s(30))]
        );
        assert_eq!(
            clock.observe(&RunState::Running, t0 + s(42)),
            [(GpuStep::ScheduledToRunning, s(12))]
        );
        assert_eq!(clock.observe(&RunState::Running, t0 + s(50)), []);
        assert_eq!(clock, TimeToGpu::Done);
    }

    #[test]
    fn an_unheld_run_is_scheduled_at_once_and_a_terminal_one_is_not_measured() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut clock = TimeToGpu::created(t0);
        assert_eq!(
            clock.observe(&RunState::Running, t0 + s(5)),
            [
                (GpuStep::CreatedToScheduled, s(5)),
                (GpuStep::ScheduledToRunning, s(0))
            ]
        );
        let mut failed_early = TimeToGpu::created(t0);
        assert_eq!(failed_early.observe(&queued(), t0 + s(1)), []);
        let stopped = RunState::Stopped {
            reason: "cancelled".to_owned(),
        };
        assert_eq!(failed_early.observe(&stopped, t0 + s(2)), []);
        assert_eq!(failed_early.observe(&RunState::Running, t0 + s(3)), []);
    }
}
