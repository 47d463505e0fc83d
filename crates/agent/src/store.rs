//! Items in flight and the job slots they hold: the agent's counterpart of a reflector
//! store. One entry per run queue item, keyed by its id, with its [`Phase`].

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use crate::config::JobLimit;

/// Where an item is in the pipeline. Each variant carries what that phase knows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Popped; being validated (not acked yet).
    Validating,
    /// Acked with a run id; resolving and building the image.
    Preparing {
        /// The run id.
        run_id: String,
    },
    /// Rendering, pre-checking and creating the objects.
    Submitting {
        /// The run id.
        run_id: String,
    },
    /// The workload exists; watched until terminal.
    Running {
        /// The run id.
        run_id: String,
        /// `ns/name` of the workload.
        workload: String,
        /// Its state name (`starting`, `running`, ...).
        state: &'static str,
    },
    /// The workload is terminal; the outcome is being reported. Holds no slot.
    Reporting {
        /// The run id.
        run_id: String,
        /// The terminal state name.
        state: &'static str,
    },
}

/// Phase names, the values of the `jobs{state}` metric.
pub const PHASE_NAMES: &[&str] = &[
    "validating",
    "preparing",
    "submitting",
    "starting",
    "queued",
    "running",
    "reporting",
];

impl Phase {
    /// The metric/log name.
    pub fn name(&self) -> &'static str {
        match self {
            Phase::Validating => "validating",
            Phase::Preparing { .. } => "preparing",
            Phase::Submitting { .. } => "submitting",
            Phase::Running { state, .. } => match *state {
                "starting" => "starting",
                "queued" => "queued",
                _ => "running",
            },
            Phase::Reporting { .. } => "reporting",
        }
    }

    /// True while the item holds a job slot: from pop until its workload is terminal.
    pub fn holds_slot(&self) -> bool {
        !matches!(self, Phase::Reporting { .. })
    }

    /// True between pop and a created workload: shutdown lets these finish first, so an
    /// acked item gets its workload (and a restarted agent adopts it).
    pub fn before_workload(&self) -> bool {
        matches!(
            self,
            Phase::Validating | Phase::Preparing { .. } | Phase::Submitting { .. }
        )
    }

    /// The run id, once acked.
    pub fn run_id(&self) -> Option<&str> {
        match self {
            Phase::Validating => None,
            Phase::Preparing { run_id }
            | Phase::Submitting { run_id }
            | Phase::Running { run_id, .. }
            | Phase::Reporting { run_id, .. } => Some(run_id),
        }
    }
}

#[derive(Clone, Debug)]
struct Entry {
    queue: String,
    scheduler: bool,
    phase: Phase,
}

/// The in-flight items. Cheap to clone; every change is announced on [`Store::changes`].
#[derive(Clone, Debug)]
pub struct Store {
    items: Arc<Mutex<BTreeMap<String, Entry>>>,
    changed: Arc<watch::Sender<u64>>,
}

impl Default for Store {
    fn default() -> Self {
        Self {
            items: Arc::default(),
            changed: Arc::new(watch::channel(0).0),
        }
    }
}

impl Store {
    fn with<T>(&self, f: impl FnOnce(&mut BTreeMap<String, Entry>) -> T) -> T {
        let mut items = match self.items.lock() {
            Ok(items) => items,
            Err(poisoned) => poisoned.into_inner(),
        };
        let out = f(&mut items);
        drop(items);
        self.changed.send_modify(|n| *n += 1);
        out
    }

    /// Track a new item. Returns false if it is already tracked (a duplicate pop).
    pub fn insert(&self, item_id: &str, queue: &str, scheduler: bool, phase: Phase) -> bool {
        self.with(|items| {
            if items.contains_key(item_id) {
                return false;
            }
            items.insert(
                item_id.to_owned(),
                Entry {
                    queue: queue.to_owned(),
                    scheduler,
                    phase,
                },
            );
            true
        })
    }

    /// Move an item to `phase`.
    pub fn set(&self, item_id: &str, phase: Phase) {
        self.with(|items| {
            if let Some(entry) = items.get_mut(item_id) {
                entry.phase = phase;
            }
        });
    }

    /// Forget an item (its outcome is reported).
    pub fn remove(&self, item_id: &str) {
        self.with(|items| {
            items.remove(item_id);
        });
    }

    /// True when the item is tracked.
    pub fn contains(&self, item_id: &str) -> bool {
        self.read(|items| items.contains_key(item_id))
    }

    fn read<T>(&self, f: impl FnOnce(&BTreeMap<String, Entry>) -> T) -> T {
        match self.items.lock() {
            Ok(items) => f(&items),
            Err(poisoned) => f(&poisoned.into_inner()),
        }
    }

    /// Non-scheduler items holding a slot.
    pub fn jobs_holding_slots(&self) -> usize {
        self.read(|items| {
            items
                .values()
                .filter(|e| !e.scheduler && e.phase.holds_slot())
                .count()
        })
    }

    /// Scheduler items holding a slot.
    pub fn schedulers_holding_slots(&self) -> usize {
        self.read(|items| {
            items
                .values()
                .filter(|e| e.scheduler && e.phase.holds_slot())
                .count()
        })
    }

    /// True when another job may be popped under `limit`.
    pub fn has_room(&self, limit: JobLimit) -> bool {
        limit.has_room(self.jobs_holding_slots())
    }

    /// Items that do not have a workload yet.
    pub fn before_workload(&self) -> usize {
        self.read(|items| items.values().filter(|e| e.phase.before_workload()).count())
    }

    /// Count per phase name.
    pub fn counts(&self) -> Vec<(&'static str, i64)> {
        self.read(|items| {
            let mut counts: BTreeMap<&'static str, i64> = BTreeMap::new();
            for entry in items.values() {
                *counts.entry(entry.phase.name()).or_default() += 1;
            }
            counts.into_iter().collect()
        })
    }

    /// `(item id, queue, phase)` of every item, for the shutdown log.
    pub fn snapshot(&self) -> Vec<(String, String, Phase)> {
        self.read(|items| {
            items
                .iter()
                .map(|(id, e)| (id.clone(), e.queue.clone(), e.phase.clone()))
                .collect()
        })
    }

    /// A receiver that changes whenever the store does.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slot_frees_the_moment_the_workload_is_terminal() {
        let store = Store::default();
        assert!(store.insert("a", "q", false, Phase::Validating));
        assert!(
            !store.insert("a", "q", false, Phase::Validating),
            "duplicate"
        );
        store.insert("b", "q", false, Phase::Validating);
        assert!(!store.has_room(JobLimit::AtMost(2)));
        store.set(
            "a",
            Phase::Reporting {
                run_id: "r".into(),
                state: "finished",
            },
        );
        assert_eq!(store.jobs_holding_slots(), 1);
        assert!(store.has_room(JobLimit::AtMost(2)));
        assert!(!store.has_room(JobLimit::AtMost(0)));
        assert!(store.has_room(JobLimit::Unlimited));
    }

    #[test]
    fn schedulers_do_not_count_against_max_jobs() {
        let store = Store::default();
        store.insert("s", "q", true, Phase::Validating);
        assert!(store.has_room(JobLimit::AtMost(1)));
        assert_eq!(store.schedulers_holding_slots(), 1);
    }

    #[test]
    fn counts_and_before_workload() {
        let store = Store::default();
        store.insert(
            "a",
            "q",
            false,
            Phase::Preparing {
                run_id: "r1".into(),
            },
        );
        store.insert(
            "b",
            "q",
            false,
            Phase::Running {
                run_id: "r2".into(),
                workload: "ns/w".into(),
                state: "starting",
            },
        );
        assert_eq!(store.before_workload(), 1);
        assert_eq!(store.counts(), vec![("preparing", 1), ("starting", 1)]);
        store.remove("a");
        assert_eq!(store.before_workload(), 0);
    }
}
