//! What can go wrong while syncing, with the endpoint each failure is about.

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The newest central migration this build knows (it still speaks to a server that has only
/// the first, with vectors as JSON).
pub const MIGRATION: &str = "20261206000000_outpost_staged_push";

/// Sync failures. [`Error::is_retryable`] tells the transient ones (network, timeouts,
/// overloaded server) from those that retrying cannot fix (authentication, schema, bad data).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The central store cannot be reached (no network, refused, reset, DNS).
    #[error("{endpoint}: offline ({detail})")]
    Offline {
        /// Where we tried to go (no secrets).
        endpoint: String,
        /// What failed.
        detail: String,
    },
    /// The central store did not answer in time.
    #[error("{endpoint}: no answer to {what} within {millis} ms")]
    Timeout {
        /// Where.
        endpoint: String,
        /// The call.
        what: String,
        /// The limit, in milliseconds.
        millis: u64,
    },
    /// The central store refused our credentials (HTTP 401/403, or a Postgres auth error).
    #[error("{endpoint}: authentication failed ({detail}); check the password, the JWT / API key or the database credentials")]
    Auth {
        /// Where.
        endpoint: String,
        /// What the server said.
        detail: String,
    },
    /// The central schema is not installed.
    #[error("{endpoint}: the central schema is missing; apply every file of migrations/supabase in order, up to {MIGRATION}.sql (supabase db push, or psql -f)")]
    SchemaMissing {
        /// Where.
        endpoint: String,
    },
    /// The central schema is older than this build needs.
    #[error("{endpoint}: central schema version {found} is older than this build needs ({needed}); apply migrations/supabase in order, up to {MIGRATION}.sql")]
    SchemaOutdated {
        /// Where.
        endpoint: String,
        /// Version found.
        found: i64,
        /// Version needed.
        needed: i64,
    },
    /// The central chunk table holds vectors of another dimension than the local model makes.
    #[error("{endpoint}: the central store's embeddings have {central} dimensions but the local model '{model}' makes {local}; change the vector({central}) column in the central migration or use a {central}-d model")]
    DimensionMismatch {
        /// Where.
        endpoint: String,
        /// Central column dimension.
        central: usize,
        /// Local model dimension.
        local: usize,
        /// Local model id.
        model: String,
    },
    /// The server answered something that is not what the protocol says.
    #[error("{endpoint}: malformed answer to {what}: {detail}")]
    BadResponse {
        /// Where.
        endpoint: String,
        /// The call.
        what: String,
        /// What was wrong.
        detail: String,
    },
    /// The server refused the call (a malformed record, an SQL error, HTTP 4xx/5xx).
    #[error("{endpoint}: {what} failed: {detail}")]
    Server {
        /// Where.
        endpoint: String,
        /// The call.
        what: String,
        /// What the server said.
        detail: String,
        /// Whether trying again may help (5xx, serialization failures, lost connections).
        transient: bool,
    },
    /// The server refused one call as too large or too slow for it: HTTP 413, or a statement
    /// cancelled by its `statement_timeout` (SQLSTATE 57014). The same work in smaller calls
    /// may pass; the same call again will not.
    #[error("{endpoint}: {what} was too large for the server: {detail}")]
    TooLarge {
        /// Where.
        endpoint: String,
        /// The call.
        what: String,
        /// What the server said.
        detail: String,
    },
    /// The device's Supabase Auth session is gone for good (its refresh token was revoked,
    /// reused or never existed, the session ended or the user was banned): only a new sign-in
    /// helps. `code` is Supabase Auth's `error_code` (`refresh_token_not_found`,
    /// `refresh_token_already_used`, `session_not_found`, `session_expired`, `user_banned`),
    /// or `no_session` when no session is stored.
    #[error("{endpoint}: signed out: run outpost login ({code}: {detail})")]
    SignedOut {
        /// Where (no secrets).
        endpoint: String,
        /// Supabase Auth's error code.
        code: String,
        /// What the server said.
        detail: String,
    },
    /// The session file could not be read or written.
    #[error("session file {path}: {detail}")]
    Session {
        /// The file.
        path: String,
        /// What failed.
        detail: String,
    },
    /// Configuration that cannot work.
    #[error("sync configuration: {0}")]
    Config(String),
    /// The local store failed.
    #[error(transparent)]
    Local(#[from] outpost_core::Error),
}

/// What kind of failure an [`Error`] is, for callers that report or map it (the agent's
/// `/v1/sync/status`, an exit status, an FFI error enum) without matching every variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The network or the server is unreachable or did not answer in time: retry later.
    Offline,
    /// The server refused the credentials (a key, a JWT, a password).
    Auth,
    /// The stored session is gone for good: sign in again (`outpost login`).
    SignedOut,
    /// The central schema is missing, outdated or of another dimension.
    Schema,
    /// The server refused or failed the call, or answered outside the protocol.
    Server,
    /// The configuration, or the session file, cannot work.
    Config,
    /// The local store failed.
    Local,
}

impl ErrorKind {
    /// A stable name (`offline`, `auth`, `signed_out`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Offline => "offline",
            ErrorKind::Auth => "auth",
            ErrorKind::SignedOut => "signed_out",
            ErrorKind::Schema => "schema",
            ErrorKind::Server => "server",
            ErrorKind::Config => "config",
            ErrorKind::Local => "local",
        }
    }
}

impl Error {
    /// The kind of failure.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Offline { .. } | Error::Timeout { .. } => ErrorKind::Offline,
            Error::Auth { .. } => ErrorKind::Auth,
            Error::SignedOut { .. } => ErrorKind::SignedOut,
            Error::SchemaMissing { .. }
            | Error::SchemaOutdated { .. }
            | Error::DimensionMismatch { .. } => ErrorKind::Schema,
            Error::BadResponse { .. } | Error::Server { .. } | Error::TooLarge { .. } => {
                ErrorKind::Server
            }
            Error::Session { .. } | Error::Config(_) => ErrorKind::Config,
            Error::Local(_) => ErrorKind::Local,
        }
    }

    /// Whether a retry (after a backoff) may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Offline { .. } | Error::Timeout { .. } => true,
            Error::Server { transient, .. } => *transient,
            _ => false,
        }
    }
}
