//! A STAND-IN for the parts of a Supabase project that Outpost and apps reading its tables with
//! supabase-js use (feature `shim`): it is NOT
//! PostgREST, NOT Supabase Auth (GoTrue) and NOT Supabase's API gateway, but a small loopback
//! HTTP server that reproduces, in front of a real Postgres, the behaviours below, each read from
//! the named source and checked by a test in `sync/tests/standin.rs` that cites it. No PostgREST
//! or GoTrue server can be installed here, so the REST transport and sessions are tested and
//! benchmarked against this. It opens a Postgres connection per request, keeps no cache, and
//! is not a server to deploy.
//!
//! **Gateway** (`gateway.rs`; Supabase's API gateway, Kong's key-auth and request-size-limiting
//! plugins):
//! - every `/auth/v1` and `/rest/v1` request needs an `apikey` header (or `?apikey=`) that is
//!   one of the project's keys: a legacy anon JWT or an `sb_publishable_…` key; 401
//!   `{"message":"No API key found in request"}` without one, 401 `{"message":"Invalid API
//!   key"}` for another (Kong key-auth; supabase.com/docs/guides/api/api-keys);
//! - an `sb_…` key may stand in `Authorization: Bearer` only when it equals `apikey`, and then
//!   means no user (the `anon` role) ("You cannot send a publishable or secret key in the
//!   `Authorization: Bearer ...` header, except if the value exactly equals the `apikey`
//!   header", supabase.com/docs/guides/api/api-keys);
//! - a body over the configured size is refused with 413 `{"message":"Request size limit
//!   exceeded"}` (Kong request-size-limiting), after the key check.
//!
//! **Auth** (`gotrue.rs`; supabase/auth `internal/api/token.go`, `internal/tokens/service.go`,
//! `internal/models/refresh_token.go`, `internal/api/errors.go`):
//! - `POST /auth/v1/token?grant_type=password` with `{email, password}` against the emulated
//!   `auth.users` (bcrypt `encrypted_password`), and `?grant_type=refresh_token` with
//!   `{refresh_token}`; 200 `{access_token, token_type: "bearer", expires_in, expires_at,
//!   refresh_token, user}`;
//! - access tokens signed HS256 with the JWT secret (or ES256 with a configured key and its
//!   `kid`) carrying GoTrue's claims (`iss, sub, aud, exp, iat, email, phone, app_metadata,
//!   user_metadata, role, aal, amr, session_id, is_anonymous`), living `access_ttl`;
//! - refresh tokens of GoTrue's classic algorithm (`auth.refresh_tokens`: 12 lowercase base32
//!   characters, single use, each child naming its parent, one family per `auth.sessions` row):
//!   a used token given again returns the session's active token if that is its child; else,
//!   within `reuse_interval` of its use, is swapped once more; else revokes the whole session's
//!   tokens and answers `refresh_token_already_used`;
//! - errors as GoTrue sends them: `{code: <status>, error_code, msg}` with an `x-sb-error-code`
//!   header, or `{code: <error_code>, message}` when the request says
//!   `X-Supabase-Api-Version: 2024-01-01` or later (as supabase-js does); `refresh_token
//!   required` as the OAuth `{error, error_description}`;
//! - `POST /auth/v1/logout?scope=global|local|others` (204; the caller's sessions, this one or
//!   the others deleted with their refresh tokens) and `GET /auth/v1/user`, both behind
//!   GoTrue's `requireAuthentication` (`internal/api/auth.go`: a bearer access token with a good
//!   signature and no skew on `exp`, whose user and session exist; `internal/api/logout.go`,
//!   `internal/api/user.go`);
//! - `GET /auth/v1/.well-known/jwks.json`: the configured public keys.
//!
//! **REST: functions** (`postgrest.rs`; PostgREST `src/library/PostgREST/Error.hs`, `Auth/Jwt.hs`,
//! `Config/Database.hs`, docs `references/transactions.rst`, `references/errors.rst`):
//! - `POST /rest/v1/rpc/<fn>`: the bearer JWT verified with the HS256 secret or, for ES256, the
//!   JWKS key of its `kid`; a malformed or badly signed token answers 401 `PGRST301`, a claim
//!   check 401 `PGRST303` (`exp`, `nbf`, `iat` with PostgREST's 30 s clock skew), both with
//!   `WWW-Authenticate: Bearer error="invalid_token", error_description="…"`; no token is the
//!   `anon` role;
//! - one transaction per request: READ ONLY for a STABLE or IMMUTABLE function, `role` and
//!   `request.jwt.claims` set transaction-locally, then the impersonated role's settings (e.g.
//!   `statement_timeout`), then the function's own hoisted settings (`statement_timeout`,
//!   `plan_filter.statement_cost_limit`, `default_transaction_isolation`);
//! - the function chosen by the JSON body's keys: 404 `PGRST202` when none fits, 300
//!   `PGRST203` when several do;
//! - errors as `{code, message, details, hint}` with PostgREST's SQLSTATE → HTTP status table
//!   (so `57014`, a statement timeout, is 500) and a `Proxy-Status: PostgREST; error=<code>`
//!   header.
//!
//! **Tables and views** (`tables.rs`; PostgREST docs `references/api/tables_views.rst`,
//! `references/api/pagination_count.rst`, `references/api/schemas.rst`, `Error.hs`), what
//! supabase-js's `from(table).select(...)` sends:
//! - `GET` and `HEAD /rest/v1/<table>` for the tables and views of `public`, with the same
//!   token check, role, claims and role settings as an RPC, in a READ ONLY transaction, so
//!   row-level security picks the rows; 404 `PGRST205` for another name, Postgres's 400 `42703`
//!   for an unknown column (columns are written table-qualified, as PostgREST writes them);
//! - `select=` with `*`, columns and `alias:column`; filters `eq, neq, gt, gte, lt, lte, like,
//!   ilike` (`*` for `%`), `is`, `in.(…)` and `not.`, ANDed, each value a bind parameter cast
//!   to its column's type; `order=col.asc|desc[.nullsfirst|.nullslast]`; `limit`, `offset`;
//! - `Content-Range: <first>-<last>/<total or *>` on every answer, the total with `Prefer:
//!   count=exact` (then 206 when the range is short of it); 406 `PGRST106` for an
//!   `Accept-Profile` other than `public`; 400 `PGRST100` for a query string it cannot parse.
//!
//! Where it differs on purpose: the clock skew on `exp` is a setting (`jwt_clock_skew`,
//! PostgREST's 30 s by default) so that a test can see expiry sooner; role settings are read
//! per request (PostgREST reads them when it loads its schema cache), and a role's
//! database-specific settings (`ALTER ROLE … IN DATABASE …`) count ahead of its global ones, so
//! that tests sharing one Postgres server can each set their own (PostgREST reads
//! `pg_roles.rolconfig`, the global ones). Not reproduced: rate limits, other grant types, MFA,
//! session time-boxes and inactivity timeouts, the newer refresh-token algorithm
//! (`GOTRUE_SECURITY_REFRESH_TOKEN_ALGORITHM_VERSION=2`), `GET` RPC calls, functions with a
//! single unnamed `json`/`jsonb` parameter, `default_transaction_isolation` as a role or
//! function setting; on tables, writes (`POST`, `PATCH`, `DELETE`), embedded resources, casts,
//! JSON paths, `or`/`and` and the other operators, the `Range` header, the single-object
//! `vnd.pgrst.object+json` form, planned and estimated counts, PGRST205's "Perhaps you meant"
//! hint (a read that asks for one is answered `PGRST100`, never with a wrong result; a write is
//! 405).

mod gateway;
mod gotrue;
mod jwt;
mod postgrest;
mod tables;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::routing::{get, post};
use axum::Router;

pub use gotrue::create_user;
pub use jwt::{sign_jwt, Es256Key, ALLOWED_SKEW_SECONDS};

/// What the stand-in needs to know, as a Supabase project's settings.
#[derive(Clone)]
pub struct ShimConfig {
    /// A superuser URL of the database it serves.
    pub db_url: String,
    /// The API keys it accepts in `apikey`: legacy anon JWTs and `sb_publishable_…` keys.
    pub anon_keys: Vec<String>,
    /// The legacy JWT secret: verifies HS256 tokens, and signs access tokens unless
    /// `signing_key` is set.
    pub jwt_secret: String,
    /// Public keys (a JWKS, `{"keys": [...]}`) that ES256 tokens are verified with, as a project
    /// with asymmetric signing keys publishes at `/auth/v1/.well-known/jwks.json`.
    pub jwks: Option<serde_json::Value>,
    /// The key access tokens are signed with instead of the secret (its public half belongs
    /// in `jwks`).
    pub signing_key: Option<Es256Key>,
    /// How long an access token lives (Supabase's default: one hour).
    pub access_ttl: Duration,
    /// How long after its use a refresh token may still be exchanged (Supabase's default: 10 s).
    pub reuse_interval: Duration,
    /// The largest request body accepted.
    pub max_body_bytes: usize,
    /// The clock skew PostgREST allows on `exp`, `nbf` and `iat`: its fixed 30 s
    /// ([`ALLOWED_SKEW_SECONDS`]). Real PostgREST cannot change it; a test may shorten it to
    /// see an access token refused soon after it expires.
    pub jwt_clock_skew: Duration,
}

impl std::fmt::Debug for ShimConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the keys or the secret.
        f.debug_struct("ShimConfig")
            .field("access_ttl", &self.access_ttl)
            .field("reuse_interval", &self.reuse_interval)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("jwt_clock_skew", &self.jwt_clock_skew)
            .finish()
    }
}

impl ShimConfig {
    /// Supabase's defaults for the database at `db_url` with one API key and the JWT secret:
    /// one-hour access tokens, a 10 s reuse interval, and no practical body limit (256 MiB).
    pub fn new(db_url: &str, anon_key: &str, jwt_secret: &str) -> Self {
        Self {
            db_url: db_url.to_string(),
            anon_keys: vec![anon_key.to_string()],
            jwt_secret: jwt_secret.to_string(),
            jwks: None,
            signing_key: None,
            access_ttl: Duration::from_secs(3600),
            reuse_interval: Duration::from_secs(10),
            max_body_bytes: 256 * 1024 * 1024,
            jwt_clock_skew: Duration::from_secs(ALLOWED_SKEW_SECONDS),
        }
    }
}

/// Why the stand-in could not start.
#[derive(Debug, thiserror::Error)]
pub enum ShimError {
    /// Binding the loopback port.
    #[error("cannot listen on loopback: {0}")]
    Io(#[from] std::io::Error),
    /// A key in the configuration that cannot be used.
    #[error("bad key in the stand-in's configuration: {0}")]
    Key(String),
    /// Talking to the database (creating a user).
    #[error("database: {0}")]
    Db(#[from] tokio_postgres::Error),
    /// Hashing a password.
    #[error("password hash: {0}")]
    Hash(String),
}

pub(crate) struct Shared {
    config: ShimConfig,
    verifier: jwt::Verifier,
    signer: jwt::Signer,
    /// `iss` of the access tokens: `<url>/auth/v1`, as GoTrue's `GOTRUE_JWT_ISSUER` on Supabase.
    issuer: String,
    requests: AtomicUsize,
}

/// A running stand-in.
pub struct Shim {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Shim {
    /// Starts the stand-in on a free loopback port in front of the database at `db_url` (a
    /// superuser URL), accepting `anon_key` and JWTs signed (HS256) with `jwt_secret`, with
    /// Supabase's defaults otherwise ([`ShimConfig::new`]).
    pub async fn start(db_url: &str, anon_key: &str, jwt_secret: &str) -> std::io::Result<Self> {
        Self::start_with(ShimConfig::new(db_url, anon_key, jwt_secret))
            .await
            .map_err(|e| match e {
                ShimError::Io(e) => e,
                e => std::io::Error::other(e.to_string()),
            })
    }

    /// Starts the stand-in with `config`.
    ///
    /// # Errors
    /// [`ShimError::Key`] for a JWKS or signing key that cannot be used, [`ShimError::Io`] if no
    /// loopback port can be had.
    pub async fn start_with(config: ShimConfig) -> Result<Self, ShimError> {
        let verifier = jwt::Verifier::new(&config.jwt_secret, config.jwks.as_ref())?;
        let signer = jwt::Signer::new(&config.jwt_secret, config.signing_key.as_ref())?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let shared = Arc::new(Shared {
            verifier,
            signer,
            issuer: format!("{url}/auth/v1"),
            requests: AtomicUsize::new(0),
            config,
        });
        let app = Router::new()
            .route("/auth/v1/token", post(gotrue::token))
            .route("/auth/v1/logout", post(gotrue::logout))
            .route("/auth/v1/user", get(gotrue::user))
            .route("/auth/v1/.well-known/jwks.json", get(gotrue::jwks))
            .route("/rest/v1/rpc/{function}", post(postgrest::rpc))
            .route("/rest/v1/{table}", get(tables::read))
            // Bodies over the limit reach the handlers as a rejection, answered as the
            // gateway answers them once the key is checked.
            .layer(axum::extract::DefaultBodyLimit::max(
                shared.config.max_body_bytes,
            ))
            .with_state(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { url, shared, task })
    }

    /// Requests served so far.
    pub fn requests(&self) -> usize {
        self.shared.requests.load(Ordering::SeqCst)
    }
}

impl Drop for Shim {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A connection to the served database, its driver running on the runtime.
async fn connect(db_url: &str) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(db_url, tokio_postgres::NoTls).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}
