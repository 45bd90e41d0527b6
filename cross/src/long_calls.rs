//! The long calls (`ingest_path`, `sync_now`) as foreign async functions: Kotlin `suspend`,
//! Swift `async`, Python coroutines. The work runs on a thread of its own while the host's
//! executor awaits it; it reports progress through a [`ProgressListener`] and stops early when
//! the caller's scope is cancelled (UniFFI drops the future: a cancelled coroutine or task), or
//! after `Engine.cancel()` or `Engine.shutdown()`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use crate::{guard, OutpostError, Result};

/// Told how far a long call has come. Called on the call's own worker thread, often: keep it
/// short (post to the UI thread), and don't call the engine's long calls from inside it.
#[uniffi::export(callback_interface)]
pub trait ProgressListener: Send + Sync {
    /// `phase`: `files` (an ingest: files finished of those found), `push` (records pushed of
    /// the outbox at the start) or `pull` (records pulled; `total` 0: not known ahead).
    fn on_progress(&self, phase: String, done: u64, total: u64);
}

/// Whether a long call must stop: the engine's cancel epoch moved since it began
/// (`cancel()`, `shutdown()`), or its caller went away (the future was dropped).
#[derive(Clone)]
pub(crate) struct Stop {
    epoch_now: Arc<AtomicU64>,
    epoch_at_start: u64,
    dropped: Arc<AtomicBool>,
}

impl Stop {
    pub(crate) fn new(epoch: &Arc<AtomicU64>) -> Self {
        Self {
            epoch_now: epoch.clone(),
            epoch_at_start: epoch.load(Ordering::SeqCst),
            dropped: Arc::new(AtomicBool::new(false)),
        }
    }

    pub(crate) fn requested(&self) -> bool {
        self.dropped.load(Ordering::SeqCst)
            || self.epoch_now.load(Ordering::SeqCst) != self.epoch_at_start
    }
}

/// Sets the flag when the future holding it is dropped: finished (harmless, the work is done)
/// or abandoned by a cancelled caller (the work sees it at its next check and stops).
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Runs `work` on a new thread (named after `what`) and awaits its result without blocking the
/// host's executor. A panic in `work` is [`OutpostError::Internal`], as in the synchronous calls.
pub(crate) async fn in_background<T: Send + 'static>(
    what: &'static str,
    stop: Stop,
    work: impl FnOnce(&Stop) -> Result<T> + Send + 'static,
) -> Result<T> {
    let _stop_on_drop = StopOnDrop(stop.dropped.clone());
    // tokio's oneshot needs no runtime: the host's executor polls the receiver.
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name(format!("outpost-{what}"))
        .spawn(move || {
            // The receiver is gone when the caller was cancelled: nobody to tell.
            let _ = tx.send(guard(what, || work(&stop)));
        })
        .map_err(|e| OutpostError::Internal {
            detail: format!("starting {what}: {e}"),
        })?;
    rx.await.unwrap_or_else(|_| {
        Err(OutpostError::Internal {
            detail: format!("{what} ended without an answer"),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use std::time::{Duration, Instant};

    /// A minimal executor: polls `fut` to completion on this thread.
    fn block_on<F: std::future::Future>(fut: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime")
            .block_on(fut)
    }

    #[test]
    fn dropping_the_future_stops_the_work() {
        let epoch = Arc::new(AtomicU64::new(0));
        let stop = Stop::new(&epoch);
        let seen = stop.clone();
        let finished = Arc::new(AtomicBool::new(false));
        let flag = finished.clone();
        let mut fut = Box::pin(in_background("test", stop, move |stop| {
            let start = Instant::now();
            while !stop.requested() {
                assert!(start.elapsed() < Duration::from_secs(10), "never stopped");
                std::thread::sleep(Duration::from_millis(5));
            }
            flag.store(true, Ordering::SeqCst);
            Ok(())
        }));
        // Poll once so that the work starts, then drop the future, as a cancelled caller does.
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        assert!(fut.as_mut().poll(&mut cx).is_pending());
        drop(fut);
        assert!(seen.requested());
        let start = Instant::now();
        while !finished.load(Ordering::SeqCst) {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "the work went on"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn cancel_stops_the_work_and_a_panic_is_an_internal_error() {
        let epoch = Arc::new(AtomicU64::new(0));
        let stop = Stop::new(&epoch);
        epoch.fetch_add(1, Ordering::SeqCst);
        assert!(matches!(
            block_on(in_background("t", stop, |stop| Ok(stop.requested()))),
            Ok(true)
        ));
        let panicked: Result<()> = block_on(in_background("t", Stop::new(&epoch), |_| {
            panic!("in the worker")
        }));
        assert!(
            matches!(panicked, Err(OutpostError::Internal { detail }) if detail.contains("in the worker"))
        );
    }
}
