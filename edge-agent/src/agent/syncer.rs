//! Background sync: every `sync.interval_s` and on demand (`POST /v1/sync`), push the outbox and
//! pull what is new, over the agent's engine, whose writer it takes only to apply one batch, so
//! that a slow or absent central store never holds up ingestion or search. While the central store is unreachable the agent keeps
//! serving and retries sooner than the interval, with exponential backoff.
//!
//! Signed in (`outpost login`), the agent keeps the session fresh: every call refreshes the
//! access token ahead of its expiry, and between syncs a timer refreshes it when it is due, so a
//! long interval (or none) never lets it lapse. A session that has ended is reported
//! (`last_error_kind: signed_out`) and the agent keeps serving; the next round reads the
//! session file again, so a new `outpost login` is picked up without a restart.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use outpost_core::Engine;
use outpost_sync::session::now_s;
use outpost_sync::{
    Backoff, Central, CentralConfig, ErrorKind, SessionInfo, SessionStore, SessionTokens,
    SyncOptions, SyncReport, TokenProvider as _,
};

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
    /// What kind of failure that was: `offline`, `auth`, `signed_out` (run `outpost login`),
    /// `schema`, `server`, `config`, `local`.
    pub last_error_kind: Option<String>,
    /// Who sync acts as, when signed in (`outpost login`), and when the access token expires.
    /// Never the tokens.
    pub session: Option<SessionInfo>,
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
    session: Option<SessionStore>,
}

impl SyncHandle {
    /// A handle for an agent without a central store.
    pub fn off() -> Self {
        Self {
            requests: None,
            state: Arc::new(Mutex::new(SyncState::default())),
            session: None,
        }
    }

    /// The state, with the session as the session file has it now.
    pub fn snapshot(&self) -> SyncState {
        let mut s = self.state.lock().map(|s| s.clone()).unwrap_or_default();
        if let Some(store) = &self.session {
            s.session = store.load().ok().flatten().map(|s| s.info(now_s()));
        }
        s
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

/// The central store opened, and the session its transport refreshes (when signed in).
type Opened = (Central, Option<Arc<SessionTokens>>);

/// Why an attempt failed: the message and its kind.
type Failure = (String, ErrorKind);

fn failure(e: &outpost_sync::Error) -> Failure {
    (e.to_string(), e.kind())
}

/// Starts the sync task; it stops when `shutdown` turns true.
///
/// # Errors
/// A central configuration that cannot be opened (a signed-out session is not one: the agent
/// starts, reports it, and picks up the next `outpost login`).
pub fn start(
    setup: SyncSetup,
    shutdown: watch::Receiver<bool>,
) -> Result<(SyncHandle, tokio::task::JoinHandle<()>), outpost_sync::Error> {
    let mut first_error = None;
    let opened = match setup.central.open_with_session(setup.timeout) {
        Ok(opened) => Some(opened),
        Err(e) if e.kind() == ErrorKind::SignedOut => {
            tracing::warn!(error = %e, "not signed in; the agent serves and syncs after outpost login");
            first_error = Some(failure(&e));
            None
        }
        Err(e) => return Err(e),
    };
    let state = Arc::new(Mutex::new(SyncState {
        configured: true,
        endpoint: Some(setup.central.describe()),
        last_error: first_error.as_ref().map(|(m, _)| m.clone()),
        last_error_kind: first_error.map(|(_, k)| k.as_str().to_string()),
        ..Default::default()
    }));
    let (tx, rx) = mpsc::channel(16);
    let handle = SyncHandle {
        requests: Some(tx),
        state: state.clone(),
        session: setup.central.session_store().cloned(),
    };
    let task = tokio::spawn(run(setup, opened, state, rx, shutdown));
    Ok((handle, task))
}

/// When the session (if any) is next due for a refresh.
async fn refresh_due(opened: &Option<Opened>) -> Option<Instant> {
    match opened {
        Some((_, Some(tokens))) => Some(Instant::now() + tokens.refresh_due_in().await),
        _ => None,
    }
}

async fn run(
    setup: SyncSetup,
    mut opened: Option<Opened>,
    state: Arc<Mutex<SyncState>>,
    mut requests: mpsc::Receiver<Reply>,
    mut shutdown: watch::Receiver<bool>,
) {
    let SyncSetup {
        central: config,
        engine,
        interval,
        timeout,
        batch_size,
        metrics,
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
    let mut next: Option<Instant> = Some(Instant::now());
    // No background refresh before this (after one failed).
    let mut keep_fresh_after = Instant::now();
    loop {
        let mut reply: Option<Reply> = None;
        // The session's refresh, when it falls before the next round.
        let due = refresh_due(&opened)
            .await
            .map(|due| due.max(keep_fresh_after))
            .filter(|due| next.is_none_or(|next| *due < next));
        let far = Instant::now() + Duration::from_secs(86_400);
        tokio::select! {
            _ = shutdown.changed() => break,
            r = requests.recv() => match r {
                Some(r) => reply = Some(r),
                None => break,
            },
            _ = tokio::time::sleep_until(next.unwrap_or(far)), if next.is_some() => {}
            _ = tokio::time::sleep_until(due.unwrap_or(far)), if due.is_some() => {
                if *shutdown.borrow() {
                    break;
                }
                if !keep_fresh(&mut opened, &state).await {
                    // Do not spin on a failing refresh: the next round, or a pause, first.
                    keep_fresh_after = Instant::now() + Duration::from_secs(10);
                }
                continue;
            }
        }
        if *shutdown.borrow() {
            break;
        }
        let mut open_error = None;
        if opened.is_none() {
            // Not signed in at start, or the session ended: read it again (a new login).
            match config.open_with_session(timeout) {
                Ok(o) => opened = Some(o),
                Err(e) => open_error = Some(failure(&e)),
            }
        }
        let result = match (&opened, open_error) {
            (Some((central, _)), _) => round(&engine, central, &opts).await,
            (None, Some(e)) => Err(e),
            (None, None) => Err(("the central store is not open".into(), ErrorKind::Config)),
        };
        // An ended session, or one replaced by another user's login: read the file again
        // next round (a new `outpost login` is used without a restart).
        if opened.as_ref().is_some_and(|(_, tokens)| tokens.is_some())
            && matches!(&result, Err((_, ErrorKind::SignedOut | ErrorKind::Config)))
        {
            opened = None;
        }
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
                s.last_error_kind = None;
                s.last_report = Some(report.clone());
                metrics.central_up.set(1);
                tracing::info!(
                    pushed = report.pushed,
                    pulled = report.pulled,
                    "synced with the central store"
                );
            }
            Err((message, kind)) => {
                let offline = *kind == ErrorKind::Offline;
                failures = failures.saturating_add(1);
                s.online = Some(!offline);
                s.last_error = Some(message.clone());
                s.last_error_kind = Some(kind.as_str().to_string());
                metrics.central_up.set(0);
                metrics.error(match kind {
                    ErrorKind::Offline => "sync_offline",
                    ErrorKind::SignedOut => "sync_signed_out",
                    _ => "sync",
                });
                tracing::warn!(error = %message, "sync failed; the agent keeps serving");
            }
        }
        drop(s);
        // Backoff after failures: 1, 2, 4 ... seconds, never longer than the interval.
        let backoff = Duration::from_secs(1 << failures.min(8));
        let wait = match (failures, interval.is_zero()) {
            (0, true) => None,
            (0, false) => Some(interval),
            (_, true) => Some(backoff),
            (_, false) => Some(backoff.min(interval)),
        };
        next = wait.map(|w| Instant::now() + w);
        if let Some(r) = reply {
            let _ = r.send(result.map_err(|(m, _)| m));
        }
    }
}

/// Refreshes the session between rounds, through the transport's own tokens; whether it
/// worked. A failure is reported in the state; an ended session closes the central store until
/// the next login.
async fn keep_fresh(opened: &mut Option<Opened>, state: &Mutex<SyncState>) -> bool {
    let Some((_, Some(tokens))) = opened.as_ref() else {
        return true;
    };
    match tokens.access_token().await {
        Ok(_) => {
            tracing::debug!("session kept fresh between syncs");
            true
        }
        Err(e) => {
            tracing::warn!(error = %e, "could not refresh the session; will try again");
            let (message, kind) = failure(&e);
            {
                let mut s = state
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                s.last_error = Some(message);
                s.last_error_kind = Some(kind.as_str().to_string());
            }
            if matches!(kind, ErrorKind::SignedOut | ErrorKind::Config) {
                *opened = None;
            }
            false
        }
    }
}

/// One sync, then embedding of pulled documents whose vectors came from another model.
async fn round(
    engine: &Engine,
    central: &Central,
    opts: &SyncOptions,
) -> Result<SyncReport, Failure> {
    let report = outpost_sync::sync_once(engine, central, opts, &mut |_| {})
        .await
        .map_err(|e| failure(&e))?;
    engine
        .reembed_pending(&|| false)
        .map_err(|e| (e.to_string(), ErrorKind::Local))?;
    Ok(report)
}
