//! Background sync: every `sync.interval_s` and on demand (`POST /v1/sync`), push the outbox and
//! pull what is new, over the agent's engine, whose writer it takes only to apply one batch, so
//! that a slow or absent central store never holds up ingestion or search. While the central store is unreachable the agent keeps
//! serving and retries sooner than the interval, with exponential backoff.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{mpsc, oneshot, watch};

use outpost_core::Engine;
use outpost_sync::{Backoff, CentralConfig, SyncOptions, SyncReport};

use super::metrics::Metrics;

/// How the background sync stands.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SyncState {
    /// Whether a central store is configured.
    pub configured: bool,
    /// The central store, secrets masked.
    pub endpoint: Option<String>,
    /// Whether the last attempt reached it (`None` before the first).
    pub online: Option<bool>,
    /// Last attempt, Unix milliseconds.
    pub last_attempt_ms: Option<i64>,
    /// Last successful sync, Unix milliseconds.
    pub last_success_ms: Option<i64>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// What the last successful sync moved.
    pub last_report: Option<SyncReport>,
}

/// Why a sync asked for did not happen.
#[derive(Debug)]
pub enum SyncRequestError {
    /// No central store.
    NotConfigured,
    /// It failed; the message says why.
    Failed(String),
}

type Reply = oneshot::Sender<Result<SyncReport, String>>;

/// The handle the API holds.
#[derive(Clone)]
pub struct SyncHandle {
    requests: Option<mpsc::Sender<Reply>>,
    state: Arc<Mutex<SyncState>>,
}

impl SyncHandle {
    /// A handle for an agent without a central store.
    pub fn off() -> Self {
        Self {
            requests: None,
            state: Arc::new(Mutex::new(SyncState::default())),
        }
    }

    /// The state.
    pub fn snapshot(&self) -> SyncState {
        self.state.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// `not configured`, `unknown` (before the first attempt), `online` or `offline`.
    pub fn central_state(&self) -> &'static str {
        let s = self.snapshot();
        match (s.configured, s.online) {
            (false, _) => "not configured",
            (true, None) => "unknown",
            (true, Some(true)) => "online",
            (true, Some(false)) => "offline",
        }
    }

    /// Syncs now and waits for the result.
    ///
    /// # Errors
    /// [`SyncRequestError`].
    pub async fn sync_now(&self) -> Result<SyncReport, SyncRequestError> {
        let requests = self
            .requests
            .as_ref()
            .ok_or(SyncRequestError::NotConfigured)?;
        let (tx, rx) = oneshot::channel();
        requests
            .send(tx)
            .await
            .map_err(|_| SyncRequestError::Failed("the sync task has stopped".into()))?;
        rx.await
            .map_err(|_| SyncRequestError::Failed("the sync task has stopped".into()))?
            .map_err(SyncRequestError::Failed)
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// What the sync task needs.
pub struct SyncSetup {
    pub central: CentralConfig,
    /// The agent's engine: sync takes its writer for each batch it applies.
    pub engine: Arc<Engine>,
    pub interval: Duration,
    pub timeout: Duration,
    pub batch_size: usize,
    pub metrics: Arc<Metrics>,
}

/// Starts the sync task; it stops when `shutdown` turns true.
///
/// # Errors
/// A central configuration that cannot be opened.
pub fn start(
    setup: SyncSetup,
    shutdown: watch::Receiver<bool>,
) -> Result<(SyncHandle, tokio::task::JoinHandle<()>), outpost_sync::Error> {
    let central = setup.central.open(setup.timeout)?;
    let state = Arc::new(Mutex::new(SyncState {
        configured: true,
        endpoint: Some(setup.central.describe()),
        ..Default::default()
    }));
    let (tx, rx) = mpsc::channel(16);
    let handle = SyncHandle {
        requests: Some(tx),
        state: state.clone(),
    };
    let task = tokio::spawn(run(setup, central, state, rx, shutdown));
    Ok((handle, task))
}

async fn run(
    setup: SyncSetup,
    central: outpost_sync::Central,
    state: Arc<Mutex<SyncState>>,
    mut requests: mpsc::Receiver<Reply>,
    mut shutdown: watch::Receiver<bool>,
) {
    let SyncSetup {
        engine,
        interval,
        batch_size,
        metrics,
        ..
    } = setup;
    let mut opts = SyncOptions::new(engine.embedder().model_id(), engine.embedder().dims());
    opts.batch_size = batch_size.max(1);
    // Ride over a blip within one round; longer outages are the loop's business.
    opts.backoff = Backoff {
        initial: Duration::from_millis(100),
        max: Duration::from_secs(1),
        give_up_after: Some(Duration::from_secs(3)),
    };
    let mut failures: u32 = 0;
    // The next round without being asked; `None`: only when asked. The first runs at once, so
    // that a restarted agent catches up before its first interval.
    let mut next = Some(Duration::ZERO);
    loop {
        let mut reply: Option<Reply> = None;
        tokio::select! {
            _ = shutdown.changed() => break,
            r = requests.recv() => match r {
                Some(r) => reply = Some(r),
                None => break,
            },
            _ = tokio::time::sleep(next.unwrap_or_default()), if next.is_some() => {}
        }
        if *shutdown.borrow() {
            break;
        }
        let result = round(&engine, &central, &opts).await;
        let mut s = state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        s.last_attempt_ms = Some(now_ms());
        match &result {
            Ok(report) => {
                failures = 0;
                s.online = Some(true);
                s.last_success_ms = s.last_attempt_ms;
                s.last_error = None;
                s.last_report = Some(report.clone());
                metrics.central_up.set(1);
                tracing::info!(
                    pushed = report.pushed,
                    pulled = report.pulled,
                    "synced with the central store"
                );
            }
            Err((message, offline)) => {
                failures = failures.saturating_add(1);
                s.online = Some(!offline);
                s.last_error = Some(message.clone());
                metrics.central_up.set(0);
                metrics.error(if *offline { "sync_offline" } else { "sync" });
                tracing::warn!(error = %message, "sync failed; the agent keeps serving");
            }
        }
        drop(s);
        // Backoff after failures: 1, 2, 4 ... seconds, never longer than the interval.
        let backoff = Duration::from_secs(1 << failures.min(8));
        next = match (failures, interval.is_zero()) {
            (0, true) => None,
            (0, false) => Some(interval),
            (_, true) => Some(backoff),
            (_, false) => Some(backoff.min(interval)),
        };
        if let Some(r) = reply {
            let _ = r.send(result.map_err(|(m, _)| m));
        }
    }
}

/// One sync, then embedding of pulled documents whose vectors came from another model.
async fn round(
    engine: &Engine,
    central: &outpost_sync::Central,
    opts: &SyncOptions,
) -> Result<SyncReport, (String, bool)> {
    let report = outpost_sync::sync_once(engine, central, opts, &mut |_| {})
        .await
        .map_err(|e| {
            let offline = matches!(
                e,
                outpost_sync::Error::Offline { .. } | outpost_sync::Error::Timeout { .. }
            );
            (e.to_string(), offline)
        })?;
    engine
        .reembed_pending(&|| false)
        .map_err(|e| (e.to_string(), false))?;
    Ok(report)
}
