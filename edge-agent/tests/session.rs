//! `outpost login`, `outpost sync status` and `outpost logout` end to end, against a loopback
//! mock of Supabase Auth's token and logout endpoints (the GoTrue contract: `{access_token,
//! token_type, expires_in, expires_at, refresh_token, user}` answers, `{code, error_code, msg}`
//! errors). Each test has its own `OUTPOST_HOME`; no token may ever appear in the output.

mod common;

use std::collections::HashMap;
use std::io::Write as _;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};

use common::agent::{Agent, Start};
use common::{exit_code, outpost_command, TestDb, TestResult};

const KEY: &str = "sb_publishable_cli_test";
const USER: &str = "0190f0f0-0000-7000-8000-0000000000bb";
const EMAIL: &str = "grace@example.com";
const PASSWORD: &str = "hopper";

#[derive(Default)]
struct Seen {
    next: u64,
    refreshes: usize,
    logouts: usize,
    /// Every token handed out, to check none is ever printed.
    tokens: Vec<String>,
    /// The refresh token that may be exchanged now (besides the app's).
    active: Option<String>,
    /// Access token lifetime in seconds (default 3600).
    ttl: i64,
    /// The session was revoked: every refresh is refused.
    revoked: bool,
}

type Shared = Arc<Mutex<Seen>>;

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

async fn token(
    State(seen): State<Shared>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    if headers.get("apikey").and_then(|v| v.to_str().ok()) != Some(KEY) {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"message": "Invalid API key"})),
        )
            .into_response();
    }
    let mut s = seen.lock().unwrap_or_else(|e| e.into_inner());
    let ok = match q.get("grant_type").map(String::as_str) {
        Some("password") => {
            let ok = body["email"] == EMAIL && body["password"] == PASSWORD;
            if ok {
                s.revoked = false;
            }
            ok
        }
        Some("refresh_token") => {
            s.refreshes += 1;
            let given = body["refresh_token"].as_str().unwrap_or_default();
            !s.revoked && (given == "app-refresh-token" || s.active.as_deref() == Some(given))
        }
        _ => false,
    };
    if !ok {
        let (code, msg) = if q.get("grant_type").map(String::as_str) == Some("password") {
            ("invalid_credentials", "Invalid login credentials")
        } else {
            (
                "refresh_token_not_found",
                "Invalid Refresh Token: Refresh Token Not Found",
            )
        };
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"code": 400, "error_code": code, "msg": msg})),
        )
            .into_response();
    }
    s.next += 1;
    let (access, refresh) = (
        format!("at-{}-secret", s.next),
        format!("rt-{}-secret", s.next),
    );
    s.tokens.extend([access.clone(), refresh.clone()]);
    s.active = Some(refresh.clone());
    let ttl = if s.ttl > 0 { s.ttl } else { 3600 };
    Json(json!({
        "access_token": access, "token_type": "bearer", "expires_in": ttl,
        "expires_at": now() + ttl, "refresh_token": refresh,
        "user": {"id": USER, "email": EMAIL}
    }))
    .into_response()
}

async fn logout(State(seen): State<Shared>, headers: HeaderMap) -> StatusCode {
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let mut s = seen.lock().unwrap_or_else(|e| e.into_inner());
    if s.tokens.iter().any(|t| bearer == format!("Bearer {t}")) {
        s.logouts += 1;
        StatusCode::NO_CONTENT
    } else {
        StatusCode::UNAUTHORIZED
    }
}

/// The mock on its own runtime thread; its URL and what it saw.
fn start_mock() -> Result<(String, Shared), Box<dyn std::error::Error>> {
    let seen: Shared = Arc::default();
    let app = Router::new()
        .route("/auth/v1/token", post(token))
        .route("/auth/v1/logout", post(logout))
        .with_state(seen.clone());
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let url = format!("http://{}", listener.local_addr()?);
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
            let _ = axum::serve(listener, app).await;
        });
    });
    Ok((url, seen))
}

/// Runs `outpost --db DB ARGS` with `home` as OUTPOST_HOME, the project configured, `stdin`
/// piped in: (exit code, stdout, stderr).
fn run(
    db: &Path,
    home: &Path,
    url: &str,
    args: &[&str],
    stdin: &str,
) -> Result<(i32, String, String), Box<dyn std::error::Error>> {
    let mut child = outpost_command(db, args)
        .env("OUTPOST_HOME", home)
        .env("OUTPOST_SUPABASE_URL", url)
        .env("OUTPOST_SUPABASE_ANON_KEY", KEY)
        .env_remove("OUTPOST_SUPABASE_JWT")
        .env_remove("OUTPOST_CENTRAL_URL")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    child
        .stdin
        .take()
        .ok_or("no stdin")?
        .write_all(stdin.as_bytes())?;
    let out = child.wait_with_output()?;
    Ok((
        exit_code(out.status),
        String::from_utf8(out.stdout)?,
        String::from_utf8(out.stderr)?,
    ))
}

fn assert_no_tokens(seen: &Shared, text: &str) {
    for t in &seen.lock().unwrap_or_else(|e| e.into_inner()).tokens {
        assert!(!text.contains(t.as_str()), "a token was printed: {text}");
    }
    assert!(!text.contains(PASSWORD), "the password was printed");
}

#[test]
fn login_status_and_logout() -> TestResult {
    let (url, seen) = start_mock()?;
    let db = TestDb::new()?;
    let home = tempfile::tempdir()?;
    let session_file = home.path().join("session.json");

    // A wrong password: refused, nothing stored.
    let (code, out, err) = run(
        db.path(),
        home.path(),
        &url,
        &["login", "--email", EMAIL, "--password-stdin"],
        "wrong\n",
    )?;
    assert_ne!(code, 0, "{out}");
    assert!(err.contains("Invalid login credentials"), "{err}");
    assert!(!session_file.exists());

    let (code, out, err) = run(
        db.path(),
        home.path(),
        &url,
        &["login", "--email", EMAIL, "--password-stdin", "--json"],
        &format!("{PASSWORD}\n"),
    )?;
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out)?;
    assert_eq!(
        (v["email"].as_str(), v["user_id"].as_str()),
        (Some(EMAIL), Some(USER))
    );
    assert_no_tokens(&seen, &format!("{out}{err}"));
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&session_file)?.permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "session file mode {mode:o}");
    }

    // `sync status` says who and until when, locally, without tokens.
    let (code, out, err) = run(
        db.path(),
        home.path(),
        &url,
        &["sync", "status", "--json"],
        "",
    )?;
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out)?;
    assert_eq!(v["session"]["email"].as_str(), Some(EMAIL));
    assert_eq!(v["session"]["user_id"].as_str(), Some(USER));
    let left = v["session"]["access_token_expires_in_s"]
        .as_i64()
        .ok_or("no expiry")?;
    assert!((3000..=3600).contains(&left), "{left}");
    assert!(
        v["central"]
            .as_str()
            .unwrap_or_default()
            .contains("signed in"),
        "{v}"
    );
    assert_no_tokens(&seen, &format!("{out}{err}"));
    let (code, out, _) = run(db.path(), home.path(), &url, &["sync", "status"], "")?;
    assert_eq!(code, 0);
    assert!(out.contains(EMAIL) && out.contains("expires in"), "{out}");
    assert_no_tokens(&seen, &out);

    // Logout ends the session on the server and deletes it here.
    let (code, out, err) = run(db.path(), home.path(), &url, &["logout", "--json"], "")?;
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out)?;
    assert_eq!(v["server"].as_str(), Some("session ended"), "{v}");
    assert_eq!(seen.lock().map(|s| s.logouts).unwrap_or_default(), 1);
    assert!(!session_file.exists());
    let (_, out, _) = run(
        db.path(),
        home.path(),
        &url,
        &["sync", "status", "--json"],
        "",
    )?;
    let v: Value = serde_json::from_str(&out)?;
    assert!(v["session"].is_null(), "{v}");
    Ok(())
}

#[test]
fn login_adopts_an_apps_refresh_token() -> TestResult {
    let (url, seen) = start_mock()?;
    let db = TestDb::new()?;
    let home = tempfile::tempdir()?;
    // An unknown token is refused, clearly.
    let (code, _, err) = run(
        db.path(),
        home.path(),
        &url,
        &["login", "--refresh-token-stdin"],
        "not-a-token\n",
    )?;
    assert_ne!(code, 0);
    assert!(err.contains("signed out: run outpost login"), "{err}");
    let (code, out, err) = run(
        db.path(),
        home.path(),
        &url,
        &["login", "--refresh-token-stdin"],
        "app-refresh-token\n",
    )?;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(EMAIL), "{out}");
    assert_eq!(seen.lock().map(|s| s.refreshes).unwrap_or_default(), 2);
    let stored: Value =
        serde_json::from_str(&std::fs::read_to_string(home.path().join("session.json"))?)?;
    // The app's token was exchanged: the stored one is the rotated one.
    assert_eq!(stored["refresh_token"].as_str(), Some("rt-1-secret"));
    assert!(!out.contains("app-refresh-token") && !err.contains("app-refresh-token"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_syncs_as_the_session_refreshes_it_and_reports_a_lost_one() -> TestResult {
    let (url, seen) = start_mock()?;
    // Six-second access tokens: refreshed a second and a half before they expire.
    seen.lock().map_err(|_| "poisoned")?.ttl = 6;
    let db = TestDb::new()?;
    let home = tempfile::tempdir()?;
    let (code, _, err) = run(
        db.path(),
        home.path(),
        &url,
        &["login", "--email", EMAIL, "--password-stdin"],
        &format!("{PASSWORD}\n"),
    )?;
    assert_eq!(code, 0, "{err}");
    let home_s = home.path().to_str().ok_or("path")?;
    let agent = Agent::start(Start {
        args: &["--sync-interval", "2"],
        config: "[sync]\ntimeout_s = 3\n",
        env: &[
            ("OUTPOST_HOME", home_s),
            ("OUTPOST_SUPABASE_URL", &url),
            ("OUTPOST_SUPABASE_ANON_KEY", KEY),
        ],
        embedder: "hash",
        ..Start::new(db.path())
    })?;
    let wait = std::time::Duration::from_secs(40);
    let refreshes = || seen.lock().map(|s| s.refreshes).unwrap_or_default();
    // The mock has no REST API, so each round fails after the token step; what matters here is
    // that the session is used, refreshed in the background and shown.
    agent
        .until("the agent to refresh the session", wait, || async {
            Ok(refreshes() >= 2)
        })
        .await?;
    let (status, v) = agent.get("/v1/sync/status").await?;
    assert_eq!(status, 200);
    let session = &v["central"]["session"];
    assert_eq!(session["email"].as_str(), Some(EMAIL), "{v}");
    assert_eq!(session["user_id"].as_str(), Some(USER));
    assert!(
        session["access_token_expires_in_s"].as_i64().is_some(),
        "{v}"
    );
    assert!(
        v["central"]["endpoint"]
            .as_str()
            .unwrap_or_default()
            .contains("signed in"),
        "{v}"
    );
    assert_no_tokens(&seen, &v.to_string());
    // The session is revoked on the server: the agent says so, and keeps serving.
    seen.lock().map_err(|_| "poisoned")?.revoked = true;
    agent
        .until("the agent to report the lost session", wait, || async {
            let (_, v) = agent.get("/v1/sync/status").await?;
            Ok(v["central"]["last_error_kind"] == "signed_out")
        })
        .await?;
    let (_, v) = agent.get("/v1/sync/status").await?;
    let message = v["central"]["last_error"].as_str().unwrap_or_default();
    assert!(message.contains("signed out: run outpost login"), "{v}");
    assert!(v["central"]["session"]["signed_out"].is_string(), "{v}");
    assert_eq!(agent.get("/healthz").await?.0, 200);
    // A new login is picked up without a restart.
    let (code, _, err) = run(
        db.path(),
        home.path(),
        &url,
        &["login", "--email", EMAIL, "--password-stdin"],
        &format!("{PASSWORD}\n"),
    )?;
    assert_eq!(code, 0, "{err}");
    agent
        .until("the agent to use the new session", wait, || async {
            let (_, v) = agent.get("/v1/sync/status").await?;
            Ok(v["central"]["last_error_kind"] != "signed_out"
                && v["central"]["session"]["signed_out"].is_null())
        })
        .await?;
    assert_no_tokens(&seen, &agent.logs());
    Ok(())
}

async fn admin(url: &str) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

/// The agent against the Supabase stand-in (`outpost_sync::shim`: Auth and PostgREST in front of
/// the real Postgres) with four-second access tokens and no periodic sync: the session is kept
/// fresh by the agent's own timer, and a sync asked for much later still goes through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_keeps_a_short_session_fresh_between_syncs() -> TestResult {
    let server = std::env::var("OUTPOST_TEST_PG_URL").map_err(|_| {
        "OUTPOST_TEST_PG_URL is not set: this test needs the real PostgreSQL + pgvector that scripts/test.sh starts (or: scripts/pg.sh start DIR)"
    })?;
    let name = format!("session_{}", uuid::Uuid::now_v7().simple());
    admin(&server)
        .await?
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await?;
    let (base, _) = server.rsplit_once('/').ok_or("a URL with a database")?;
    let db_url = format!("{base}/{name}");
    let central = admin(&db_url).await?;
    central
        .batch_execute(include_str!(
            "../../sync/tests/sql/supabase_auth_emulation.sql"
        ))
        .await?;
    central
        .batch_execute(include_str!(
            "../../migrations/supabase/20261122000000_outpost_sync.sql"
        ))
        .await?;
    let secret = "outpost-session-test-secret-with-32-chars";
    let mut config = outpost_sync::shim::ShimConfig::new(&db_url, KEY, secret);
    config.access_ttl = std::time::Duration::from_secs(4);
    config.reuse_interval = std::time::Duration::ZERO;
    let shim = outpost_sync::shim::Shim::start_with(config).await?;
    let user = outpost_sync::shim::create_user(&db_url, EMAIL, PASSWORD).await?;

    let db = TestDb::new()?;
    let home = tempfile::tempdir()?;
    let (db_path, home_path, url) = (
        db.path().to_path_buf(),
        home.path().to_path_buf(),
        shim.url.clone(),
    );
    let (code, _, err) = tokio::task::spawn_blocking(move || {
        run(
            &db_path,
            &home_path,
            &url,
            &["login", "--email", EMAIL, "--password-stdin"],
            &format!("{PASSWORD}\n"),
        )
        .map_err(|e| e.to_string())
    })
    .await??;
    assert_eq!(code, 0, "{err}");
    let session_file = home.path().join("session.json");
    let refresh_token = || -> TestResult<String> {
        let v: Value = serde_json::from_str(&std::fs::read_to_string(&session_file)?)?;
        Ok(v["refresh_token"].as_str().unwrap_or_default().to_string())
    };
    let first = refresh_token()?;

    let home_s = home.path().to_str().ok_or("path")?;
    let agent = Agent::start(Start {
        args: &["--sync-interval", "0"],
        config: "[sync]\ntimeout_s = 5\n",
        env: &[
            ("OUTPOST_HOME", home_s),
            ("OUTPOST_SUPABASE_URL", &shim.url),
            ("OUTPOST_SUPABASE_ANON_KEY", KEY),
        ],
        embedder: "hash",
        ..Start::new(db.path())
    })?;
    let wait = std::time::Duration::from_secs(30);
    // The first round (at start) succeeds; no other round is scheduled.
    agent
        .until("the first sync", wait, || async {
            Ok(agent.get("/v1/sync/status").await?.1["central"]["last_success_ms"].is_i64())
        })
        .await?;
    // Twelve seconds: three token lifetimes, with no sync in between. The agent's timer
    // refreshes the session before each expiry (the file's refresh token rotates).
    let mut seen = std::collections::HashSet::from([first]);
    let started = std::time::Instant::now();
    while started.elapsed() < std::time::Duration::from_secs(12) {
        seen.insert(refresh_token()?);
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert!(
        seen.len() >= 3,
        "the session was refreshed {} times",
        seen.len() - 1
    );
    let (_, v) = agent.get("/v1/sync/status").await?;
    assert!(v["central"]["last_error"].is_null(), "{v}");
    let left = v["central"]["session"]["access_token_expires_in_s"]
        .as_i64()
        .ok_or("no expiry")?;
    assert!(left >= 0, "the access token lapsed: {v}");
    // A sync asked for now goes through, as the signed-in user.
    let (status, v) = agent
        .post(
            "/v1/documents",
            &json!({"text": "Otters juggle pebbles.", "source": "notes/otters"}),
        )
        .await?;
    assert_eq!(status, 201, "{v}");
    let (status, v) = agent.post("/v1/sync", &json!({})).await?;
    assert_eq!(status, 200, "{v}");
    let owned: i64 = central
        .query_one(
            "select count(*) from public.outpost_documents where owner = $1::text::uuid",
            &[&user],
        )
        .await?
        .get(0);
    assert_eq!(owned, 1);
    assert!(
        !agent.logs().contains(&refresh_token()?),
        "a token reached the log"
    );
    Ok(())
}
