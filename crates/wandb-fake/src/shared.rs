//! The store behind a lock, shared by every request and by [`crate::FakeWandb`], with a
//! change counter that waiters watch.

use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::watch;

use crate::store::Store;

/// The store behind a lock, with a change counter that [`crate::FakeWandb::wait_until`]
/// waits on. Reads ([`SharedStore::read`]) never bump it; every write does.
#[derive(Clone, Debug)]
pub(crate) struct SharedStore {
    inner: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    store: Mutex<Store>,
    version: watch::Sender<u64>,
}

/// A write lock: tells waiters about the change when dropped.
pub(crate) struct WriteGuard<'a> {
    guard: MutexGuard<'a, Store>,
    version: &'a watch::Sender<u64>,
}

impl std::ops::Deref for WriteGuard<'_> {
    type Target = Store;
    fn deref(&self) -> &Store {
        &self.guard
    }
}

impl std::ops::DerefMut for WriteGuard<'_> {
    fn deref_mut(&mut self) -> &mut Store {
        &mut self.guard
    }
}

impl Drop for WriteGuard<'_> {
    fn drop(&mut self) {
        self.version.send_modify(|version| *version += 1);
    }
}

impl SharedStore {
    pub(crate) fn new(store: Store) -> Self {
        Self {
            inner: Arc::new(Shared {
                store: Mutex::new(store),
                version: watch::Sender::new(0),
            }),
        }
    }

    /// Locks for reading (waiters are not woken).
    pub(crate) fn read(&self) -> MutexGuard<'_, Store> {
        // A panic while holding the lock leaves plain data behind; keep serving.
        self.inner
            .store
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Locks for writing; waiters re-check when the guard is dropped.
    pub(crate) fn write(&self) -> WriteGuard<'_> {
        WriteGuard {
            guard: self.read(),
            version: &self.inner.version,
        }
    }

    /// A receiver that sees every write.
    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.inner.version.subscribe()
    }
}
