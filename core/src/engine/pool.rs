//! The engine's connections: one writer behind a mutex, and a pool of readers that serve
//! searches and listings in parallel (SQLite in WAL mode lets them read while one writes).
//!
//! A connection is handed back even when the call using it panicked; one left inside a
//! transaction (a panic between `BEGIN` and `COMMIT`) is rolled back first, so that it never
//! serves a stale snapshot afterwards.

use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

use crate::db::Store;

/// Readers handed out one caller at a time; none when the database is in memory (a second
/// connection would see another database), in which case reads go to the writer.
pub(super) struct Readers {
    free: Mutex<Vec<Store>>,
    returned: Condvar,
    size: usize,
}

impl Readers {
    pub(super) fn new(stores: Vec<Store>) -> Self {
        Self {
            size: stores.len(),
            free: Mutex::new(stores),
            returned: Condvar::new(),
        }
    }

    pub(super) fn size(&self) -> usize {
        self.size
    }

    /// Runs `f` on a free reader, waiting for one if all are busy.
    pub(super) fn with<T>(&self, f: impl FnOnce(&Store) -> T) -> T {
        let mut free = self.free.lock().unwrap_or_else(PoisonError::into_inner);
        let store = loop {
            if let Some(s) = free.pop() {
                break s;
            }
            free = self
                .returned
                .wait(free)
                .unwrap_or_else(PoisonError::into_inner);
        };
        drop(free);
        let back = Back(self, Some(store));
        match &back.1 {
            Some(store) => f(store),
            None => unreachable!("the reader is held until `back` drops"),
        }
    }
}

/// Returns its reader to the pool on drop, panic or not.
struct Back<'a>(&'a Readers, Option<Store>);

impl Drop for Back<'_> {
    fn drop(&mut self) {
        if let Some(store) = self.1.take() {
            store.end_abandoned_transaction();
            let mut free = self.0.free.lock().unwrap_or_else(PoisonError::into_inner);
            free.push(store);
            self.0.returned.notify_one();
        }
    }
}

/// Locks the writer. A writer whose holder panicked is taken over, with any transaction the
/// panic left open rolled back: the database itself is consistent (SQLite's own atomicity).
pub(super) fn lock(writer: &Mutex<Store>) -> MutexGuard<'_, Store> {
    let guard = writer.lock().unwrap_or_else(|poisoned| {
        writer.clear_poison();
        poisoned.into_inner()
    });
    guard.end_abandoned_transaction();
    guard
}
