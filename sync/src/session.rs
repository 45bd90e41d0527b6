//! The device's Supabase Auth session: stored in `<outpost home>/session.json`, refreshed ahead
//! of expiry, shared safely by every process on the device.
//!
//! - **The file** holds the project URL, the user (id, email), the access token and when it
//!   expires, and the refresh token, as JSON. It is created with mode 0600 (never a moment of
//!   wider access) and replaced atomically: the new version is written to a temporary file in
//!   the same folder, fsynced, renamed over the old one, and the folder fsynced. So when a
//!   refresh rotates the refresh token, the new one is on disk before the old one is forgotten,
//!   and a crash at any point leaves the old or the new file, never none and never half of one.
//!   (A crash after the server rotated but before the rename leaves the old token, which GoTrue
//!   still accepts once as the parent of the active one and answers with the active one.)
//! - **One refresh at a time.** A refresh takes an exclusive lock on `session.lock` beside the
//!   file (`flock`), then re-reads the file: another process (the CLI beside the agent) may have
//!   refreshed meanwhile, and its tokens are used instead of spending the same refresh token
//!   twice, which the server would take for token theft and answer by revoking the session.
//! - **Never printed.** `Debug` of [`Session`] masks the tokens; [`SessionInfo`] is what may be
//!   shown (user, expiry).
//!
//! [`TokenProvider`] is what the REST transport asks for a bearer token before each call:
//! [`StaticToken`] (a fixed `OUTPOST_SUPABASE_JWT`, never refreshed) or [`SessionTokens`] (this
//! file, refreshed through [`crate::auth::AuthClient`]).

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::auth::{AuthClient, TokenResponse};
use crate::error::{Error, Result};
use crate::transport::BoxFuture;

/// The session file's name in the Outpost home folder.
pub const SESSION_FILE: &str = "session.json";
/// The lock file's name beside it.
pub const LOCK_FILE: &str = "session.lock";
/// The longest refresh margin: a token is refreshed once it expires within a minute.
pub const MAX_REFRESH_MARGIN: Duration = Duration::from_secs(60);

/// Seconds since the Unix epoch by this device's clock.
pub fn now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// How long before its expiry a token of `lifetime` is refreshed: a minute, or a quarter of its
/// lifetime for tokens shorter than four minutes (so a 30-second token is not refreshed before
/// every call). supabase-js refreshes 90 s ahead; its tokens are rarely shorter than 5 minutes.
pub fn refresh_margin(lifetime: Duration) -> Duration {
    (lifetime / 4).min(MAX_REFRESH_MARGIN)
}

/// A signed-in session. `Debug` masks the tokens; never print or log them.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// The Supabase project URL the session belongs to.
    pub url: String,
    /// The user id (the `sub` of the access token).
    pub user_id: String,
    /// The user's email, if any.
    #[serde(default)]
    pub email: Option<String>,
    /// The access token (a JWT); empty once signed out.
    pub access_token: String,
    /// When the access token expires, Unix seconds by this device's clock (the time it was
    /// received plus its `expires_in`, so a device with a wrong clock still refreshes in time).
    pub expires_at: i64,
    /// The access token's lifetime in seconds.
    pub expires_in: u64,
    /// The refresh token (single use); empty once signed out.
    pub refresh_token: String,
    /// Set when the server said the session is gone for good: its error code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed_out: Option<String>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("url", &self.url)
            .field("user_id", &self.user_id)
            .field("email", &self.email)
            .field("access_token", &"***")
            .field("expires_at", &self.expires_at)
            .field("expires_in", &self.expires_in)
            .field("refresh_token", &"***")
            .field("signed_out", &self.signed_out)
            .finish()
    }
}

/// What may be shown of a session: who, where, until when. No tokens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SessionInfo {
    /// The project URL.
    pub url: String,
    /// The user id.
    pub user_id: String,
    /// The user's email.
    pub email: Option<String>,
    /// When the current access token expires, Unix seconds (it is refreshed before then).
    pub access_token_expires_at: i64,
    /// Seconds from now until then (negative once past).
    pub access_token_expires_in_s: i64,
    /// Whether the session is gone for good (then: why); a new `outpost login` is needed.
    pub signed_out: Option<String>,
}

impl Session {
    /// The session a token answer stands for, received at `now` (Unix seconds).
    pub fn from_response(url: &str, t: &TokenResponse, now: i64) -> Self {
        Self {
            url: url.trim_end_matches('/').to_string(),
            user_id: t.user.id.clone(),
            email: t.user.email.clone(),
            access_token: t.access_token.clone(),
            expires_at: now.saturating_add(t.expires_in as i64),
            expires_in: t.expires_in,
            refresh_token: t.refresh_token.clone(),
            signed_out: None,
        }
    }

    /// Whether the access token must be refreshed before use at `now` (Unix seconds): it is
    /// missing, or expires within [`refresh_margin`] of its lifetime.
    pub fn needs_refresh(&self, now: i64) -> bool {
        let margin = refresh_margin(Duration::from_secs(self.expires_in)).as_secs() as i64;
        self.access_token.is_empty() || now.saturating_add(margin) >= self.expires_at
    }

    /// What may be shown of it at `now`.
    pub fn info(&self, now: i64) -> SessionInfo {
        SessionInfo {
            url: self.url.clone(),
            user_id: self.user_id.clone(),
            email: self.email.clone(),
            access_token_expires_at: self.expires_at,
            access_token_expires_in_s: self.expires_at - now,
            signed_out: self.signed_out.clone(),
        }
    }

    fn signed_out_error(&self, code: &str, detail: &str) -> Error {
        Error::SignedOut {
            endpoint: self.url.clone(),
            code: code.to_string(),
            detail: detail.to_string(),
        }
    }
}

/// Where the session lives: a folder (the Outpost home, `$OUTPOST_HOME`), holding
/// [`SESSION_FILE`] and [`LOCK_FILE`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionStore {
    dir: PathBuf,
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

fn io_error(path: &Path, what: &str, e: std::io::Error) -> Error {
    Error::Session {
        path: path.display().to_string(),
        detail: format!("{what}: {e}"),
    }
}

impl SessionStore {
    /// The session kept in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The session file.
    pub fn path(&self) -> PathBuf {
        self.dir.join(SESSION_FILE)
    }

    /// Whether a session file exists.
    pub fn exists(&self) -> bool {
        self.path().is_file()
    }

    /// The stored session, if any. Needs no lock: the file is only ever replaced whole.
    ///
    /// # Errors
    /// [`Error::Session`] when the file cannot be read or is not a session.
    pub fn load(&self) -> Result<Option<Session>> {
        let path = self.path();
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_error(&path, "reading", e)),
        };
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            if let Ok(meta) = std::fs::metadata(&path) {
                if meta.permissions().mode() & 0o077 != 0 {
                    tracing::warn!(path = %path.display(), "the session file was readable by others; setting it to 0600");
                    let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600));
                }
            }
        }
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| Error::Session {
                path: path.display().to_string(),
                detail: format!("not a session file ({e}); run outpost login again"),
            })
    }

    fn create_dir(&self) -> Result<()> {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt as _;
            builder.mode(0o700);
        }
        builder
            .create(&self.dir)
            .map_err(|e| io_error(&self.dir, "creating the folder", e))
    }

    fn open_lock_file(&self) -> Result<File> {
        self.create_dir()?;
        let path = self.dir.join(LOCK_FILE);
        let mut options = OpenOptions::new();
        options.read(true).write(true).create(true).truncate(false);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            options.mode(0o600);
        }
        options
            .open(&path)
            .map_err(|e| io_error(&path, "opening the lock file", e))
    }

    /// Takes the exclusive lock, waiting for it as long as another process holds it.
    ///
    /// # Errors
    /// [`Error::Session`] when the lock file cannot be opened or locked.
    pub fn lock(&self) -> Result<SessionLock> {
        let file = self.open_lock_file()?;
        file.lock()
            .map_err(|e| io_error(&self.dir.join(LOCK_FILE), "locking", e))?;
        Ok(SessionLock {
            _file: file,
            store: self.clone(),
        })
    }

    /// Takes the lock if no other process holds it.
    ///
    /// # Errors
    /// [`Error::Session`] when the lock file cannot be opened or locked.
    pub fn try_lock(&self) -> Result<Option<SessionLock>> {
        let file = self.open_lock_file()?;
        match file.try_lock() {
            Ok(()) => Ok(Some(SessionLock {
                _file: file,
                store: self.clone(),
            })),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(e)) => {
                Err(io_error(&self.dir.join(LOCK_FILE), "locking", e))
            }
        }
    }

    /// Takes the lock from async code, polling without blocking the runtime, for at most `wait`.
    ///
    /// # Errors
    /// [`Error::Session`], also when another process held the lock all along.
    pub async fn lock_async(&self, wait: Duration) -> Result<SessionLock> {
        let start = Instant::now();
        loop {
            if let Some(lock) = self.try_lock()? {
                return Ok(lock);
            }
            if start.elapsed() >= wait {
                return Err(Error::Session {
                    path: self.dir.join(LOCK_FILE).display().to_string(),
                    detail: format!(
                        "another process held the session lock for {} s",
                        wait.as_secs()
                    ),
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The session lock, held while a process reads, refreshes and saves the session; released when
/// dropped. Writing the session needs it.
#[derive(Debug)]
pub struct SessionLock {
    _file: File,
    store: SessionStore,
}

impl SessionLock {
    /// The stored session, read under the lock (another process may have just replaced it).
    ///
    /// # Errors
    /// As [`SessionStore::load`].
    pub fn load(&self) -> Result<Option<Session>> {
        self.store.load()
    }

    /// Writes `session` to a new temporary file (mode 0600 from its creation) beside the
    /// session file and fsyncs it: the first half of [`SessionLock::save`]. Public for the
    /// crash tests only.
    ///
    /// # Errors
    /// [`Error::Session`].
    #[doc(hidden)]
    pub fn write_temp(&self, session: &Session) -> Result<PathBuf> {
        self.store.create_dir()?;
        let name = format!(
            ".{SESSION_FILE}.{}.{}.tmp",
            std::process::id(),
            TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let path = self.store.dir.join(name);
        let mut options = OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            options.mode(0o600);
        }
        let result = (|| {
            let mut file = options.open(&path)?;
            let json = serde_json::to_vec_pretty(session).map_err(std::io::Error::other)?;
            file.write_all(&json)?;
            file.sync_all()
        })();
        if let Err(e) = result {
            let _ = std::fs::remove_file(&path);
            return Err(io_error(&path, "writing", e));
        }
        Ok(path)
    }

    /// Replaces the session file with `session`, atomically and durably: a temporary file
    /// written and fsynced, renamed over the file, the folder fsynced. Temporary files a crash
    /// left behind are removed first.
    ///
    /// # Errors
    /// [`Error::Session`]; the old file is then untouched.
    pub fn save(&self, session: &Session) -> Result<()> {
        self.remove_leftovers();
        let temp = self.write_temp(session)?;
        let path = self.store.path();
        if let Err(e) = std::fs::rename(&temp, &path) {
            let _ = std::fs::remove_file(&temp);
            return Err(io_error(&path, "replacing", e));
        }
        self.sync_dir()
    }

    /// Deletes the session file (and leftovers); whether there was one.
    ///
    /// # Errors
    /// [`Error::Session`].
    pub fn remove(&self) -> Result<bool> {
        self.remove_leftovers();
        let path = self.store.path();
        match std::fs::remove_file(&path) {
            Ok(()) => {
                self.sync_dir()?;
                Ok(true)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io_error(&path, "removing", e)),
        }
    }

    fn sync_dir(&self) -> Result<()> {
        #[cfg(unix)]
        {
            File::open(&self.store.dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| io_error(&self.store.dir, "syncing the folder", e))?;
        }
        Ok(())
    }

    /// Temporary files of saves that crashed before their rename (only a lock holder writes
    /// them, and we hold the lock, so none is in use).
    fn remove_leftovers(&self) {
        let prefix = format!(".{SESSION_FILE}.");
        if let Ok(entries) = std::fs::read_dir(&self.store.dir) {
            for entry in entries.flatten() {
                let name = entry.file_name();
                let name = name.to_string_lossy();
                if name.starts_with(&prefix) && name.ends_with(".tmp") {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
    }
}

/// Where the REST transport gets its bearer token before each call.
pub trait TokenProvider: Send + Sync + std::fmt::Debug {
    /// The user the tokens are for (empty if unknown; the server still decides).
    fn user_id(&self) -> &str;

    /// A token to send now: refreshed first when it is about to expire.
    ///
    /// # Errors
    /// [`Error::SignedOut`], [`Error::Offline`] and the other failures of a refresh.
    fn access_token(&self) -> BoxFuture<'_, Result<String>>;

    /// The server rejected `rejected` as expired or invalid (PostgREST's `PGRST301` /
    /// `PGRST303`): a new token to retry with once, or `None` when tokens cannot be refreshed.
    ///
    /// # Errors
    /// As [`TokenProvider::access_token`].
    fn refresh_rejected<'a>(&'a self, rejected: &'a str) -> BoxFuture<'a, Result<Option<String>>>;
}

/// A fixed JWT (`OUTPOST_SUPABASE_JWT`): sent as it is, never refreshed.
pub struct StaticToken {
    jwt: String,
    user_id: String,
}

impl std::fmt::Debug for StaticToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StaticToken")
            .field("user_id", &self.user_id)
            .finish_non_exhaustive()
    }
}

impl StaticToken {
    /// The token `jwt`, whose user is its `sub` claim.
    pub fn new(jwt: &str) -> Self {
        Self {
            jwt: jwt.to_string(),
            user_id: crate::claims::jwt_subject(jwt).unwrap_or_default(),
        }
    }
}

impl TokenProvider for StaticToken {
    fn user_id(&self) -> &str {
        &self.user_id
    }

    fn access_token(&self) -> BoxFuture<'_, Result<String>> {
        Box::pin(async move { Ok(self.jwt.clone()) })
    }

    fn refresh_rejected<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<Option<String>>> {
        Box::pin(async { Ok(None) })
    }
}

/// The stored session as a [`TokenProvider`]: refreshed ahead of expiry and once on rejection,
/// under the session lock, its rotations saved before use.
pub struct SessionTokens {
    store: SessionStore,
    auth: AuthClient,
    user_id: String,
    current: tokio::sync::Mutex<Session>,
    lock_wait: Duration,
}

impl std::fmt::Debug for SessionTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionTokens")
            .field("path", &self.store.path())
            .field("user_id", &self.user_id)
            .finish_non_exhaustive()
    }
}

impl SessionTokens {
    /// The session stored in `store`, refreshed through `auth` (whose URL must be the
    /// session's).
    ///
    /// # Errors
    /// [`Error::SignedOut`] when no session is stored or it is signed out; [`Error::Config`]
    /// when it belongs to another project; [`Error::Session`] for an unreadable file.
    pub fn open(store: SessionStore, auth: AuthClient) -> Result<Self> {
        let session = store.load()?.ok_or_else(|| Error::SignedOut {
            endpoint: auth.url().to_string(),
            code: "no_session".into(),
            detail: format!("no session in {}", store.path().display()),
        })?;
        if let Some(code) = &session.signed_out {
            return Err(session.signed_out_error(code, "the stored session has ended"));
        }
        if session.url.trim_end_matches('/') != auth.url() {
            return Err(Error::Config(format!(
                "the stored session is for {} but the central store is {}; run outpost login again",
                session.url,
                auth.url()
            )));
        }
        Ok(Self {
            store,
            auth,
            user_id: session.user_id.clone(),
            current: tokio::sync::Mutex::new(session),
            lock_wait: Duration::from_secs(90),
        })
    }

    /// What may be shown of the session as this process holds it.
    pub async fn info(&self) -> SessionInfo {
        self.current.lock().await.info(now_s())
    }

    /// How long until the access token is due for a refresh (zero when it is due now): when a
    /// process that does not call the server before then should call
    /// [`TokenProvider::access_token`] to keep the session fresh.
    pub async fn refresh_due_in(&self) -> Duration {
        let s = self.current.lock().await;
        let margin = refresh_margin(Duration::from_secs(s.expires_in)).as_secs() as i64;
        let left = s.expires_at - margin - now_s();
        Duration::from_secs(left.max(0) as u64)
    }

    /// A token to use now; `rejected`: the server refused this one, refresh even if it looks
    /// valid (unless another process already replaced it).
    async fn token(&self, rejected: Option<&str>) -> Result<String> {
        let mut current = self.current.lock().await;
        let stale =
            |s: &Session| s.needs_refresh(now_s()) || rejected == Some(s.access_token.as_str());
        if !stale(&current) {
            return Ok(current.access_token.clone());
        }
        let lock = self.store.lock_async(self.lock_wait).await?;
        // Another process may have refreshed (or logged out) while we waited.
        let on_disk = lock.load()?.ok_or_else(|| {
            current.signed_out_error(
                "no_session",
                "the session file was removed (outpost logout)",
            )
        })?;
        if on_disk.user_id != self.user_id || on_disk.url != current.url {
            return Err(Error::Config(format!(
                "the stored session is now user {}'s at {} (a new outpost login); the sync must reopen it",
                on_disk.user_id, on_disk.url
            )));
        }
        if let Some(code) = &on_disk.signed_out {
            let e = on_disk.signed_out_error(code, "the stored session has ended");
            *current = on_disk;
            return Err(e);
        }
        *current = on_disk;
        if !stale(&current) {
            return Ok(current.access_token.clone());
        }
        match self.auth.refresh(&current.refresh_token).await {
            Ok(answer) => {
                let next = Session::from_response(&current.url, &answer, now_s());
                if next.user_id != self.user_id {
                    return Err(Error::BadResponse {
                        endpoint: current.url.clone(),
                        what: "session refresh".into(),
                        detail: "the refreshed session is for another user".into(),
                    });
                }
                // Durable before the old refresh token is forgotten; if this fails, the old
                // one stays in memory and on disk, and GoTrue accepts it once more.
                lock.save(&next)?;
                tracing::debug!(expires_in = next.expires_in, "session refreshed");
                *current = next;
                Ok(current.access_token.clone())
            }
            Err(e @ Error::SignedOut { .. }) => {
                if let Error::SignedOut { code, .. } = &e {
                    let mut ended = current.clone();
                    ended.signed_out = Some(code.clone());
                    ended.access_token.clear();
                    ended.refresh_token.clear();
                    if lock.save(&ended).is_ok() {
                        *current = ended;
                    }
                }
                tracing::warn!(error = %e, "the session has ended");
                Err(e)
            }
            Err(e) => Err(e),
        }
    }
}

impl TokenProvider for SessionTokens {
    fn user_id(&self) -> &str {
        &self.user_id
    }

    fn access_token(&self) -> BoxFuture<'_, Result<String>> {
        Box::pin(self.token(None))
    }

    fn refresh_rejected<'a>(&'a self, rejected: &'a str) -> BoxFuture<'a, Result<Option<String>>> {
        Box::pin(async move { self.token(Some(rejected)).await.map(Some) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type TestResult = std::result::Result<(), Box<dyn std::error::Error>>;

    fn session(access: &str, refresh: &str, expires_at: i64, expires_in: u64) -> Session {
        Session {
            url: "http://127.0.0.1:9".into(),
            user_id: "0190f0f0-0000-7000-8000-000000000001".into(),
            email: Some("ada@example.com".into()),
            access_token: access.into(),
            expires_at,
            expires_in,
            refresh_token: refresh.into(),
            signed_out: None,
        }
    }

    #[test]
    fn the_margin_is_a_minute_or_a_quarter_of_short_lifetimes() {
        assert_eq!(
            refresh_margin(Duration::from_secs(3600)),
            Duration::from_secs(60)
        );
        assert_eq!(
            refresh_margin(Duration::from_secs(300)),
            Duration::from_secs(60)
        );
        assert_eq!(
            refresh_margin(Duration::from_secs(120)),
            Duration::from_secs(30)
        );
        assert_eq!(
            refresh_margin(Duration::from_secs(30)),
            Duration::from_millis(7500)
        );
    }

    #[test]
    fn refresh_is_due_within_the_margin() {
        let now = 1_000_000;
        // An hour-long token: fresh until a minute before it expires.
        let s = session("a", "r", now + 3600, 3600);
        assert!(!s.needs_refresh(now));
        assert!(!s.needs_refresh(now + 3600 - 61));
        assert!(s.needs_refresh(now + 3600 - 60));
        assert!(s.needs_refresh(now + 4000));
        // A 30-second token: refreshed only in its last 7 seconds, not before every call.
        let s = session("a", "r", now + 30, 30);
        assert!(!s.needs_refresh(now));
        assert!(!s.needs_refresh(now + 22));
        assert!(s.needs_refresh(now + 23));
        // No access token at all: refresh first.
        assert!(session("", "r", now + 3600, 3600).needs_refresh(now));
    }

    #[test]
    fn tokens_are_never_in_debug_output() {
        let s = session("secret-access", "secret-refresh", 1, 3600);
        let shown = format!("{s:?} {:?}", s.info(0));
        assert!(
            !shown.contains("secret-access") && !shown.contains("secret-refresh"),
            "{shown}"
        );
        assert!(shown.contains("ada@example.com"));
        let t = StaticToken::new("secret.jwt.here");
        assert!(!format!("{t:?}").contains("secret"));
    }

    #[cfg(unix)]
    #[test]
    fn the_file_is_0600_from_its_creation_and_replaced_whole() -> TestResult {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir()?;
        let store = SessionStore::new(dir.path().join("home"));
        assert_eq!(store.load()?, None);
        let lock = store.lock()?;
        // The temporary file is 0600 before anything is written to it.
        let temp = lock.write_temp(&session("a1", "r1", 10, 3600))?;
        assert_eq!(
            std::fs::metadata(&temp)?.permissions().mode() & 0o777,
            0o600
        );
        std::fs::remove_file(&temp)?;
        lock.save(&session("a1", "r1", 10, 3600))?;
        assert_eq!(
            std::fs::metadata(store.path())?.permissions().mode() & 0o777,
            0o600
        );
        lock.save(&session("a2", "r2", 20, 3600))?;
        let loaded = store.load()?.ok_or("no session")?;
        assert_eq!(
            (loaded.access_token.as_str(), loaded.refresh_token.as_str()),
            ("a2", "r2")
        );
        // Nothing but the session and the lock is left in the folder.
        let mut names: Vec<String> = std::fs::read_dir(store.dir())?
            .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect::<std::io::Result<_>>()?;
        names.sort();
        assert_eq!(names, [SESSION_FILE, LOCK_FILE]);
        assert!(lock.remove()?);
        assert_eq!(store.load()?, None);
        assert!(!lock.remove()?);
        Ok(())
    }

    #[test]
    fn a_crash_before_the_rename_leaves_the_old_session() -> TestResult {
        let dir = tempfile::tempdir()?;
        let store = SessionStore::new(dir.path());
        let old = session("a1", "r1", 10, 3600);
        let new = session("a2", "r2", 20, 3600);
        {
            let lock = store.lock()?;
            lock.save(&old)?;
            // The process dies after writing and syncing the new file, before the rename...
            let temp = lock.write_temp(&new)?;
            assert!(temp.exists());
            // ...and another dies half-way through writing one.
            std::fs::write(
                dir.path().join(format!(".{SESSION_FILE}.999.0.tmp")),
                b"{\"url\":",
            )?;
        }
        // What the next process reads is the old, whole session, usable as it was.
        assert_eq!(store.load()?, Some(old));
        // Its next save replaces it and sweeps the leftovers away.
        let lock = store.lock()?;
        lock.save(&new)?;
        assert_eq!(store.load()?, Some(new));
        let leftovers = std::fs::read_dir(dir.path())?
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .count();
        assert_eq!(leftovers, 0);
        Ok(())
    }

    #[test]
    fn the_lock_is_exclusive_between_handles() -> TestResult {
        let dir = tempfile::tempdir()?;
        let store = SessionStore::new(dir.path());
        let held = store.lock()?;
        // flock locks belong to the open file, so a second handle (another process, or this
        // one) must wait.
        assert!(store.try_lock()?.is_none());
        drop(held);
        assert!(store.try_lock()?.is_some());
        Ok(())
    }

    #[test]
    fn a_corrupt_file_is_an_error_not_a_missing_session() -> TestResult {
        let dir = tempfile::tempdir()?;
        let store = SessionStore::new(dir.path());
        std::fs::write(store.path(), b"not json")?;
        let e = store.load().err().ok_or("a corrupt file loaded")?;
        assert!(e.to_string().contains("run outpost login"), "{e}");
        Ok(())
    }

    fn unreachable_auth() -> std::result::Result<AuthClient, Error> {
        // Nothing listens on port 9 of loopback: a refresh would fail at once (offline).
        Ok(
            AuthClient::new("http://127.0.0.1:9", "anon", Duration::from_secs(2))?
                .with_retry(crate::backoff::Backoff::none()),
        )
    }

    #[tokio::test]
    async fn after_the_lock_a_refresh_by_another_process_is_used() -> TestResult {
        let dir = tempfile::tempdir()?;
        let store = SessionStore::new(dir.path());
        let now = now_s();
        store
            .lock()?
            .save(&session("old-access", "r1", now - 5, 3600))?;
        let tokens = SessionTokens::open(store.clone(), unreachable_auth()?)?;
        // Another process refreshes meanwhile (the CLI beside the agent).
        store
            .lock()?
            .save(&session("new-access", "r2", now + 3600, 3600))?;
        // Our token is expired; after taking the lock we re-read and use theirs, spending no
        // refresh token (the auth server is unreachable: a refresh would fail).
        assert_eq!(tokens.access_token().await?, "new-access");
        // Rejected by the server while another process's newer token is on disk: theirs.
        store
            .lock()?
            .save(&session("newer-access", "r3", now + 3600, 3600))?;
        assert_eq!(
            tokens.refresh_rejected("new-access").await?.as_deref(),
            Some("newer-access")
        );
        Ok(())
    }

    #[tokio::test]
    async fn a_login_as_another_user_is_not_mixed_into_an_open_session() -> TestResult {
        let dir = tempfile::tempdir()?;
        let store = SessionStore::new(dir.path());
        store.lock()?.save(&session("a", "r1", now_s() - 5, 3600))?;
        let tokens = SessionTokens::open(store.clone(), unreachable_auth()?)?;
        let mut other = session("b", "r9", now_s() + 3600, 3600);
        other.user_id = "0190f0f0-0000-7000-8000-000000000002".into();
        store.lock()?.save(&other)?;
        let e = tokens
            .access_token()
            .await
            .err()
            .ok_or("used another user's token")?;
        assert_eq!(e.kind(), crate::error::ErrorKind::Config, "{e}");
        assert!(e.to_string().contains("outpost login"), "{e}");
        Ok(())
    }

    #[tokio::test]
    async fn a_refresh_that_cannot_reach_the_server_keeps_the_session() -> TestResult {
        let dir = tempfile::tempdir()?;
        let store = SessionStore::new(dir.path());
        let stored = session("old-access", "r1", now_s() - 5, 3600);
        store.lock()?.save(&stored)?;
        let tokens = SessionTokens::open(store.clone(), unreachable_auth()?)?;
        let e = tokens
            .access_token()
            .await
            .err()
            .ok_or("refreshed offline")?;
        assert!(e.is_retryable(), "{e}");
        // Nothing was forgotten: the next attempt has the same refresh token.
        assert_eq!(store.load()?, Some(stored));
        Ok(())
    }

    #[tokio::test]
    async fn a_removed_or_ended_session_is_signed_out() -> TestResult {
        let dir = tempfile::tempdir()?;
        let store = SessionStore::new(dir.path());
        let e = SessionTokens::open(store.clone(), unreachable_auth()?)
            .err()
            .ok_or("opened without a session")?;
        assert!(matches!(e, Error::SignedOut { .. }), "{e}");
        store.lock()?.save(&session("a", "r1", now_s() - 5, 3600))?;
        let tokens = SessionTokens::open(store.clone(), unreachable_auth()?)?;
        store.lock()?.remove()?;
        let e = tokens
            .access_token()
            .await
            .err()
            .ok_or("a token after logout")?;
        assert!(
            e.to_string().contains("signed out: run outpost login"),
            "{e}"
        );
        let mut ended = session("", "", 0, 3600);
        ended.signed_out = Some("refresh_token_already_used".into());
        store.lock()?.save(&ended)?;
        let e = SessionTokens::open(store, unreachable_auth()?)
            .err()
            .ok_or("opened an ended session")?;
        assert_eq!(e.kind(), crate::error::ErrorKind::SignedOut);
        Ok(())
    }
}
