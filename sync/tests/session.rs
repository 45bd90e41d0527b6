//! Sessions end to end: signing in with Supabase Auth, the REST transport refreshing the access
//! token ahead of its expiry and once after a rejection, rotation saved before use, two
//! processes sharing one session, and a session that is gone for good.
//!
//! Two servers play Supabase. The tests at the end run against the stand-in
//! (`outpost_sync::shim`: Supabase Auth's token endpoint and PostgREST in front of the real
//! Postgres, with a configurable access-token lifetime and reuse interval), syncing real
//! devices. The others use a small loopback mock in this file that follows the GoTrue and
//! PostgREST contract the transport relies on (supabase/auth `internal/api/token_refresh.go`: single-use
//! refresh tokens, the revoked parent of the active token answered with the active one, older
//! ones answered `refresh_token_already_used` and the family revoked; PostgREST: 401 `PGRST303`
//! for an expired JWT, `PGRST301` for one it cannot verify). It counts what it was asked, which
//! the tests check; it runs no SQL. The faithful stand-in in front of the real Postgres is
//! `outpost_sync::shim` (feature `shim`).

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};

use outpost_sync::session::now_s;
use outpost_sync::{
    AuthClient, Backoff, Central, CentralConfig, CentralSettings, Error, ErrorKind, Session,
    SessionStore,
};

type TestResult = Result<(), Box<dyn std::error::Error>>;

const USER: &str = "0190f0f0-0000-7000-8000-0000000000aa";
const EMAIL: &str = "ada@example.com";
const PASSWORD: &str = "correct horse battery staple";

#[derive(Default)]
struct MockState {
    next: u64,
    /// Access tokens issued, with their expiry (Unix seconds).
    access: HashMap<String, i64>,
    /// The active refresh token and its parent.
    active: Option<(String, Option<String>)>,
    /// Refresh tokens used (revoked).
    used: HashSet<String>,
    /// Whether the session was revoked (reuse detected, logout).
    revoked: bool,
    refreshes: usize,
    rpc_calls: usize,
    rejected: usize,
    /// (apikey, authorization) of every RPC call.
    seen: Vec<(String, String)>,
    /// Reject every bearer token (a server whose secret changed).
    reject_all: bool,
}

struct Mock {
    key: String,
    ttl: i64,
    delay: Duration,
    state: Mutex<MockState>,
}

type Shared = Arc<Mock>;

fn gotrue_error(status: StatusCode, code: &str, msg: &str) -> Response {
    (
        status,
        Json(json!({ "code": status.as_u16(), "error_code": code, "msg": msg })),
    )
        .into_response()
}

impl Mock {
    fn issue(&self, s: &mut MockState, parent: Option<String>) -> Value {
        s.next += 1;
        let access = format!("access-{}", s.next);
        let refresh = format!("refresh-{}", s.next);
        let exp = now_s() + self.ttl;
        s.access.insert(access.clone(), exp);
        s.active = Some((refresh.clone(), parent));
        json!({
            "access_token": access, "token_type": "bearer", "expires_in": self.ttl,
            "expires_at": exp, "refresh_token": refresh,
            "user": { "id": USER, "email": EMAIL, "aud": "authenticated", "role": "authenticated" }
        })
    }
}

async fn token(
    State(mock): State<Shared>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    if headers.get("apikey").and_then(|v| v.to_str().ok()) != Some(mock.key.as_str()) {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"message": "Invalid API key"})),
        )
            .into_response();
    }
    tokio::time::sleep(mock.delay).await;
    let mut s = mock.state.lock().unwrap_or_else(|e| e.into_inner());
    match q.get("grant_type").map(String::as_str) {
        Some("password") => {
            if body["email"] != EMAIL || body["password"] != PASSWORD {
                return gotrue_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_credentials",
                    "Invalid login credentials",
                );
            }
            s.revoked = false;
            s.used.clear();
            Json(mock.issue(&mut s, None)).into_response()
        }
        Some("refresh_token") => {
            s.refreshes += 1;
            let given = body["refresh_token"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let Some((active, parent)) = s.active.clone() else {
                return gotrue_error(
                    StatusCode::BAD_REQUEST,
                    "refresh_token_not_found",
                    "Invalid Refresh Token: Refresh Token Not Found",
                );
            };
            if s.revoked {
                return gotrue_error(
                    StatusCode::BAD_REQUEST,
                    "session_not_found",
                    "Invalid Refresh Token: No Valid Session Found",
                );
            }
            if given == active {
                s.used.insert(given.clone());
                return Json(mock.issue(&mut s, Some(given))).into_response();
            }
            if parent.as_deref() == Some(given.as_str()) {
                // The client lost the answer: hand back the active token, no new rotation.
                s.next += 1;
                let access = format!("access-{}", s.next);
                let exp = now_s() + mock.ttl;
                s.access.insert(access.clone(), exp);
                return Json(json!({
                    "access_token": access, "token_type": "bearer", "expires_in": mock.ttl,
                    "expires_at": exp, "refresh_token": active,
                    "user": { "id": USER, "email": EMAIL }
                }))
                .into_response();
            }
            if s.used.contains(&given) {
                s.revoked = true;
                return gotrue_error(
                    StatusCode::BAD_REQUEST,
                    "refresh_token_already_used",
                    "Invalid Refresh Token: Already Used",
                );
            }
            gotrue_error(
                StatusCode::BAD_REQUEST,
                "refresh_token_not_found",
                "Invalid Refresh Token: Refresh Token Not Found",
            )
        }
        _ => gotrue_error(StatusCode::BAD_REQUEST, "validation_failed", "bad grant"),
    }
}

async fn logout(State(mock): State<Shared>, headers: HeaderMap) -> Response {
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default()
        .to_string();
    let mut s = mock.state.lock().unwrap_or_else(|e| e.into_inner());
    if !s.access.contains_key(&bearer) {
        return gotrue_error(StatusCode::UNAUTHORIZED, "bad_jwt", "invalid JWT");
    }
    s.revoked = true;
    StatusCode::NO_CONTENT.into_response()
}

async fn rpc(State(mock): State<Shared>, headers: HeaderMap) -> Response {
    let header = |k: &str| {
        headers
            .get(k)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let mut s = mock.state.lock().unwrap_or_else(|e| e.into_inner());
    s.rpc_calls += 1;
    s.seen.push((header("apikey"), header("authorization")));
    let bearer = header("authorization")
        .strip_prefix("Bearer ")
        .unwrap_or_default()
        .to_string();
    let reject = |s: &mut MockState, code: &str, message: &str| {
        s.rejected += 1;
        (
            StatusCode::UNAUTHORIZED,
            Json(json!({"code": code, "message": message, "details": null, "hint": null})),
        )
            .into_response()
    };
    if s.reject_all {
        return reject(&mut s, "PGRST301", "JWSError JWSInvalidSignature");
    }
    match s.access.get(&bearer).copied() {
        None => reject(
            &mut s,
            "PGRST301",
            "JWSError (CompactDecodeError Invalid number of parts)",
        ),
        Some(exp) if exp <= now_s() => reject(&mut s, "PGRST303", "JWT expired"),
        Some(_) => Json(json!({
            "schema_version": 1, "embedding_dims": 384, "migration": "20261122000000_outpost_sync"
        }))
        .into_response(),
    }
}

/// A running mock with access tokens of `ttl` seconds.
struct Server {
    url: String,
    mock: Shared,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Server {
    async fn start(key: &str, ttl: i64, delay: Duration) -> std::io::Result<Self> {
        let mock = Arc::new(Mock {
            key: key.to_string(),
            ttl,
            delay,
            state: Mutex::new(MockState::default()),
        });
        let app = Router::new()
            .route("/auth/v1/token", post(token))
            .route("/auth/v1/logout", post(logout))
            .route("/rest/v1/rpc/{function}", post(rpc))
            .with_state(mock.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { url, mock, task })
    }

    fn with<T>(&self, f: impl FnOnce(&mut MockState) -> T) -> T {
        f(&mut self.mock.state.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn auth(&self) -> Result<AuthClient, Error> {
        Ok(
            AuthClient::new(&self.url, &self.mock.key, Duration::from_secs(5))?.with_retry(
                Backoff {
                    initial: Duration::from_millis(10),
                    max: Duration::from_millis(50),
                    give_up_after: Some(Duration::from_millis(300)),
                },
            ),
        )
    }

    /// Signs in and stores the session in `store`, as `outpost login` does.
    async fn login(&self, store: &SessionStore) -> Result<Session, Box<dyn std::error::Error>> {
        let answer = self.auth()?.sign_in_with_password(EMAIL, PASSWORD).await?;
        let session = Session::from_response(&self.url, &answer, now_s());
        store.lock()?.save(&session)?;
        Ok(session)
    }

    /// The central store as sync opens it: settings without a JWT, and the session.
    fn central(&self, store: &SessionStore) -> Result<Central, Error> {
        let settings = CentralSettings {
            supabase_url: Some(self.url.clone()),
            supabase_anon_key: Some(self.mock.key.clone()),
            ..Default::default()
        };
        let config = CentralConfig::from_settings_with_session(&settings, Some(store))?;
        assert!(
            matches!(config, CentralConfig::RestSession { .. }),
            "{config:?}"
        );
        config.open(Duration::from_secs(5))
    }
}

fn counts(server: &Server) -> (usize, usize, usize) {
    server.with(|s| (s.refreshes, s.rpc_calls, s.rejected))
}

/// Ages the stored session's access token so that it is due for a refresh (as if time had
/// passed), without touching the server.
fn age(store: &SessionStore, expires_in_s: i64) -> TestResult {
    let lock = store.lock()?;
    let mut s = lock.load()?.ok_or("no session")?;
    s.expires_at = now_s() + expires_in_s;
    lock.save(&s)?;
    Ok(())
}

#[tokio::test]
async fn a_token_about_to_expire_is_refreshed_before_the_call_and_the_rotation_saved() -> TestResult
{
    let server = Server::start("sb_publishable_test", 3600, Duration::ZERO).await?;
    let home = tempfile::tempdir()?;
    let store = SessionStore::new(home.path());
    let first = server.login(&store).await?;
    let central = server.central(&store)?;
    central.info().await?;
    assert_eq!(counts(&server), (0, 1, 0), "a fresh token is used as it is");
    // Thirty seconds left: within the margin, so the next call refreshes first.
    age(&store, 30)?;
    let central = server.central(&store)?;
    central.info().await?;
    assert_eq!(
        counts(&server),
        (1, 2, 0),
        "refreshed ahead: the server never saw it expire"
    );
    // The rotated refresh token is on disk; the old one is spent.
    let saved = store.load()?.ok_or("no session")?;
    assert_ne!(saved.refresh_token, first.refresh_token);
    assert_ne!(saved.access_token, first.access_token);
    assert!(saved.expires_at > now_s() + 3000);
    assert_eq!(
        (saved.user_id.as_str(), saved.email.as_deref()),
        (USER, Some(EMAIL))
    );
    // The key went as `apikey` only, the user's token as the bearer: never the key.
    for (apikey, authorization) in server.with(|s| s.seen.clone()) {
        assert_eq!(apikey, "sb_publishable_test");
        assert!(
            authorization.starts_with("Bearer access-"),
            "{authorization}"
        );
        assert!(!authorization.contains("sb_publishable"));
    }
    Ok(())
}

#[tokio::test]
async fn a_rejected_token_is_refreshed_once_and_the_call_retried_once() -> TestResult {
    // A legacy anon key (a JWT) goes as `apikey`, never as the bearer of a signed-in call.
    let legacy_key = "eyJhbGciOiJIUzI1NiJ9.eyJyb2xlIjoiYW5vbiJ9.c2ln";
    let server = Server::start(legacy_key, 3600, Duration::ZERO).await?;
    let home = tempfile::tempdir()?;
    let store = SessionStore::new(home.path());
    server.login(&store).await?;
    let central = server.central(&store)?;
    // The server expires the token early (a clock ahead of ours, a shortened JWT expiry).
    server.with(|s| s.access.values_mut().for_each(|exp| *exp = now_s() - 1));
    central.info().await?;
    assert_eq!(
        counts(&server),
        (1, 2, 1),
        "one 401 (PGRST303), one refresh, one retry"
    );
    // A server that rejects every token: one refresh and one retry, then an auth error, no loop.
    server.with(|s| s.reject_all = true);
    let e = central.info().await.err().ok_or("accepted")?;
    assert_eq!(e.kind(), ErrorKind::Auth, "{e}");
    assert_eq!(counts(&server), (2, 4, 3));
    for (apikey, authorization) in server.with(|s| s.seen.clone()) {
        assert_eq!(apikey, legacy_key);
        assert!(
            !authorization.contains(legacy_key),
            "the anon key went as the bearer"
        );
    }
    Ok(())
}

#[tokio::test]
async fn a_fixed_jwt_is_never_refreshed() -> TestResult {
    let server = Server::start("sb_publishable_test", 3600, Duration::ZERO).await?;
    let transport = outpost_sync::rest::RestTransport::new(
        &server.url,
        "sb_publishable_test",
        "not-a-token-the-server-knows",
        Duration::from_secs(5),
    )?;
    let e = Central::new(transport)
        .info()
        .await
        .err()
        .ok_or("accepted")?;
    assert_eq!(e.kind(), ErrorKind::Auth, "{e}");
    assert_eq!(counts(&server), (0, 1, 1));
    Ok(())
}

#[tokio::test]
async fn two_processes_refresh_a_shared_session_once() -> TestResult {
    // A slow token endpoint, so that both ask while the other is waiting.
    let server = Server::start("sb_publishable_test", 3600, Duration::from_millis(300)).await?;
    let home = tempfile::tempdir()?;
    let store = SessionStore::new(home.path());
    server.login(&store).await?;
    age(&store, 5)?;
    // The CLI and the agent: each opened the session on its own, each holds the stale token.
    let cli = server.central(&store)?;
    let agent = server.central(&store)?;
    let (a, b) = tokio::join!(cli.info(), agent.info());
    a?;
    b?;
    // The second took the lock after the first had refreshed, re-read the file and used the
    // new token: one refresh, and no refresh token spent twice (which would have revoked the
    // session).
    assert_eq!(counts(&server).0, 1);
    assert!(!server.with(|s| s.revoked));
    Ok(())
}

#[tokio::test]
async fn a_crash_after_the_server_rotated_does_not_sign_the_device_out() -> TestResult {
    let server = Server::start("sb_publishable_test", 3600, Duration::ZERO).await?;
    let home = tempfile::tempdir()?;
    let store = SessionStore::new(home.path());
    let before = server.login(&store).await?;
    // The server rotates, but the answer never reaches the file (the process died).
    server.auth()?.refresh(&before.refresh_token).await?;
    age(&store, 5)?;
    // The next process presents the old token: the revoked parent of the active one, which
    // GoTrue answers with the active one.
    server.central(&store)?.info().await?;
    let after = store.load()?.ok_or("no session")?;
    assert_eq!(after.signed_out, None);
    assert_ne!(after.refresh_token, before.refresh_token);
    Ok(())
}

#[tokio::test]
async fn a_reused_refresh_token_signs_out_for_good_with_a_clear_error() -> TestResult {
    let server = Server::start("sb_publishable_test", 3600, Duration::ZERO).await?;
    let home = tempfile::tempdir()?;
    let store = SessionStore::new(home.path());
    let stale = server.login(&store).await?;
    // Someone else (a copied session file) refreshed twice: the device's token is now a
    // grandparent, which is reuse.
    let auth = server.auth()?;
    let next = auth.refresh(&stale.refresh_token).await?;
    auth.refresh(&next.refresh_token).await?;
    age(&store, 5)?;
    let central = server.central(&store)?;
    let e = central.info().await.err().ok_or("reuse accepted")?;
    assert_eq!(e.kind(), ErrorKind::SignedOut, "{e}");
    assert!(!e.is_retryable());
    assert!(
        e.to_string().contains("signed out: run outpost login"),
        "{e}"
    );
    assert!(e.to_string().contains("refresh_token_already_used"), "{e}");
    // The file says so and holds no token any more; opening it again fails without asking the
    // server, and status can show why.
    let ended = store.load()?.ok_or("the file was deleted")?;
    assert_eq!(
        ended.signed_out.as_deref(),
        Some("refresh_token_already_used")
    );
    assert!(ended.refresh_token.is_empty() && ended.access_token.is_empty());
    let refreshes = counts(&server).0;
    let e = server
        .central(&store)
        .err()
        .ok_or("opened an ended session")?;
    assert_eq!(e.kind(), ErrorKind::SignedOut, "{e}");
    assert_eq!(counts(&server).0, refreshes);
    // Signing in again replaces it.
    server.login(&store).await?;
    server.central(&store)?.info().await?;
    Ok(())
}

#[tokio::test]
async fn an_unreachable_auth_server_is_retryable_and_keeps_the_session() -> TestResult {
    let server = Server::start("sb_publishable_test", 3600, Duration::ZERO).await?;
    let home = tempfile::tempdir()?;
    let store = SessionStore::new(home.path());
    server.login(&store).await?;
    age(&store, 5)?;
    let kept = store.load()?;
    // Opened as config does, with a short retry budget (the default retries for 30 s).
    let tokens = outpost_sync::SessionTokens::open(store.clone(), server.auth()?)?;
    let central = Central::new(outpost_sync::rest::RestTransport::with_tokens(
        &server.url,
        "sb_publishable_test",
        Arc::new(tokens),
        Duration::from_secs(5),
    )?);
    drop(server);
    let e = central.info().await.err().ok_or("answered")?;
    assert_eq!(e.kind(), ErrorKind::Offline, "{e}");
    assert!(e.is_retryable());
    assert_eq!(store.load()?, kept);
    Ok(())
}

#[tokio::test]
async fn wrong_passwords_and_logout() -> TestResult {
    let server = Server::start("sb_publishable_test", 3600, Duration::ZERO).await?;
    let e = server
        .auth()?
        .sign_in_with_password(EMAIL, "wrong")
        .await
        .err()
        .ok_or("signed in with a wrong password")?;
    assert_eq!(e.kind(), ErrorKind::Auth, "{e}");
    assert!(e.to_string().contains("Invalid login credentials"), "{e}");
    let home = tempfile::tempdir()?;
    let store = SessionStore::new(home.path());
    let session = server.login(&store).await?;
    server.auth()?.logout(&session.access_token).await?;
    assert!(server.with(|s| s.revoked));
    // A session the server no longer knows counts as logged out.
    server.auth()?.logout("access-unknown").await?;
    Ok(())
}

// --- Against the stand-in (`outpost_sync::shim`) in front of the real Postgres. ---

/// A migrated database, a stand-in with `access_ttl` tokens and no reuse interval (a spent
/// refresh token is never accepted twice), and a user signed in into a fresh `OUTPOST_HOME`.
struct Project {
    db: common::Db,
    shim: outpost_sync::shim::Shim,
    store: SessionStore,
    user_id: String,
    _home: tempfile::TempDir,
}

const STANDIN_EMAIL: &str = "lin@example.com";
const STANDIN_PASSWORD: &str = "pw-lin-123";

impl Project {
    async fn start(access_ttl: Duration) -> Result<Self, Box<dyn std::error::Error>> {
        let db = common::Db::new(true).await?;
        let mut config = db.standin_config();
        config.access_ttl = access_ttl;
        config.reuse_interval = Duration::ZERO;
        // No leeway on `exp` (PostgREST allows 30 s): an expired token is refused at once.
        config.jwt_clock_skew = Duration::ZERO;
        let shim = outpost_sync::shim::Shim::start_with(config).await?;
        let user_id = db.create_user(STANDIN_EMAIL, STANDIN_PASSWORD).await?;
        let home = tempfile::tempdir()?;
        let store = SessionStore::new(home.path());
        let answer = Self::auth_for(&shim)?
            .sign_in_with_password(STANDIN_EMAIL, STANDIN_PASSWORD)
            .await?;
        assert_eq!(answer.user.id, user_id);
        store
            .lock()?
            .save(&Session::from_response(&shim.url, &answer, now_s()))?;
        Ok(Self {
            db,
            shim,
            store,
            user_id,
            _home: home,
        })
    }

    fn auth_for(shim: &outpost_sync::shim::Shim) -> Result<AuthClient, Error> {
        AuthClient::new(&shim.url, common::anon_key(), Duration::from_secs(10))
    }

    /// The central store as `outpost sync` opens it with this session.
    fn central(&self) -> Result<Central, Error> {
        let settings = CentralSettings {
            supabase_url: Some(self.shim.url.clone()),
            supabase_anon_key: Some(common::anon_key().to_string()),
            ..Default::default()
        };
        CentralConfig::from_settings_with_session(&settings, Some(&self.store))?
            .open(Duration::from_secs(10))
    }

    async fn documents_of_user(&self) -> Result<String, Box<dyn std::error::Error>> {
        self.db
            .scalar(&format!(
                "select count(*) from public.outpost_documents where owner = '{}' and not deleted",
                self.user_id
            ))
            .await
    }
}

#[tokio::test]
async fn a_device_keeps_syncing_as_its_access_tokens_expire() -> TestResult {
    if common::local_only(
        "a_device_keeps_syncing_as_its_access_tokens_expire",
        "it starts the stand-in",
    ) {
        return Ok(());
    }
    // Two-second access tokens: every sync after a pause finds its token expired.
    let project = Project::start(Duration::from_secs(2)).await?;
    let central = project.central()?;
    let mut device = common::Device::new()?;
    let mut seen = HashSet::new();
    for round in 0..3 {
        device.put(
            &format!("notes/{round}.md"),
            &format!("Round {round} of the otters."),
        )?;
        device.sync(&central).await?;
        let session = project.store.load()?.ok_or("no session")?;
        assert!(
            seen.insert(session.refresh_token.clone()),
            "round {round}: no rotation"
        );
        tokio::time::sleep(Duration::from_millis(2100)).await;
    }
    // Every round's write landed as the signed-in user, and the replicas agree.
    assert_eq!(project.documents_of_user().await?, "3");
    assert!(device.verify(&central).await?.equal);
    let session = project.store.load()?.ok_or("no session")?;
    assert_eq!(session.user_id, project.user_id);
    assert_eq!(session.signed_out, None);
    Ok(())
}

#[tokio::test]
async fn a_token_the_server_rejects_is_refreshed_once_against_the_standin() -> TestResult {
    if common::local_only(
        "a_token_the_server_rejects_is_refreshed_once",
        "it starts the stand-in",
    ) {
        return Ok(());
    }
    let project = Project::start(Duration::from_secs(3600)).await?;
    // The stored access token looks valid here but the server cannot verify it (PGRST301).
    {
        let lock = project.store.lock()?;
        let mut s = lock.load()?.ok_or("no session")?;
        s.access_token =
            outpost_sync::shim::sign_jwt(&project.user_id, "another-secret-entirely-32-chars")?;
        lock.save(&s)?;
    }
    let before = project.store.load()?.ok_or("no session")?;
    let central = project.central()?;
    let mut device = common::Device::new()?;
    device.put("notes/a.md", "Sea otters keep a favourite stone.")?;
    device.sync(&central).await?;
    let after = project.store.load()?.ok_or("no session")?;
    assert_ne!(after.refresh_token, before.refresh_token, "refreshed once");
    assert_eq!(project.documents_of_user().await?, "1");
    Ok(())
}

#[tokio::test]
async fn a_device_whose_clock_is_behind_recovers_from_pgrst303() -> TestResult {
    if common::local_only("a_device_whose_clock_is_behind", "it starts the stand-in") {
        return Ok(());
    }
    let project = Project::start(Duration::from_secs(2)).await?;
    // The device believes its token is good for an hour (its clock is behind the server's).
    {
        let lock = project.store.lock()?;
        let mut s = lock.load()?.ok_or("no session")?;
        s.expires_at = now_s() + 3600;
        lock.save(&s)?;
    }
    let before = project.store.load()?.ok_or("no session")?;
    tokio::time::sleep(Duration::from_millis(3100)).await;
    // The server refuses the expired token (401 PGRST303); the call is retried once with a
    // refreshed one and goes through.
    let central = project.central()?;
    let mut device = common::Device::new()?;
    device.put("notes/late.md", "Otters groom their fur for hours.")?;
    device.sync(&central).await?;
    assert_eq!(project.documents_of_user().await?, "1");
    let after = project.store.load()?.ok_or("no session")?;
    assert_ne!(after.refresh_token, before.refresh_token);
    Ok(())
}

#[tokio::test]
async fn two_processes_share_a_session_without_spending_a_token_twice() -> TestResult {
    if common::local_only("two_processes_share_a_session", "it starts the stand-in") {
        return Ok(());
    }
    let project = Project::start(Duration::from_secs(3600)).await?;
    age(&project.store, 5)?;
    // The CLI and the agent, each with the session open; with no reuse interval, a refresh
    // token spent twice would end the session.
    let (cli, agent) = (project.central()?, project.central()?);
    let (a, b) = tokio::join!(cli.info(), agent.info());
    a?;
    b?;
    age(&project.store, 5)?;
    project.central()?.info().await?;
    assert_eq!(project.store.load()?.ok_or("no session")?.signed_out, None);
    Ok(())
}

#[tokio::test]
async fn a_copied_session_spent_elsewhere_signs_out_with_a_clear_error() -> TestResult {
    if common::local_only("a_copied_session_spent_elsewhere", "it starts the stand-in") {
        return Ok(());
    }
    let project = Project::start(Duration::from_secs(3600)).await?;
    // A copy of the session file on another device, which refreshes first.
    let other_home = tempfile::tempdir()?;
    let other = SessionStore::new(other_home.path());
    other
        .lock()?
        .save(&project.store.load()?.ok_or("no session")?)?;
    age(&other, 5)?;
    let settings = CentralSettings {
        supabase_url: Some(project.shim.url.clone()),
        supabase_anon_key: Some(common::anon_key().to_string()),
        ..Default::default()
    };
    CentralConfig::from_settings_with_session(&settings, Some(&other))?
        .open(Duration::from_secs(10))?
        .info()
        .await?;
    // That spent the token this device still holds. Once the other device has rotated again,
    // it is no longer the active token's parent either: presenting it is reuse.
    age(&other, 5)?;
    CentralConfig::from_settings_with_session(&settings, Some(&other))?
        .open(Duration::from_secs(10))?
        .info()
        .await?;
    age(&project.store, 5)?;
    let e = project
        .central()?
        .info()
        .await
        .err()
        .ok_or("a reused token was accepted")?;
    assert_eq!(e.kind(), ErrorKind::SignedOut, "{e}");
    assert!(
        e.to_string().contains("signed out: run outpost login"),
        "{e}"
    );
    let ended = project.store.load()?.ok_or("the file was deleted")?;
    assert!(ended.signed_out.is_some() && ended.refresh_token.is_empty());
    Ok(())
}
