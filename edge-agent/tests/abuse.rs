//! Abuse of the agent's HTTP API (issue 23), against a real `outpost serve` on 127.0.0.1 with
//! `--embedder hash` (nothing here depends on what vectors mean). What it proves:
//!
//! - **Token.** Every route the OpenAPI document lists (the `/v1/...` OpenAI-compatible ones
//!   included), `/openapi.json` itself and unknown paths answer 401 JSON to no token, a wrong
//!   one, one differing in its last byte, a prefix, a longer one, `Basic` auth and a bare token;
//!   a lowercase or uppercase `bearer` scheme is accepted (RFC 9110: schemes are
//!   case-insensitive). Only `/healthz` and the page's static files (`/`, `/ui/app.js`,
//!   `/ui/style.css`) are open: they are compiled into the binary and carry no data, which the
//!   test checks by ingesting a marker first. The comparison itself (`same_secret`) is a unit
//!   test in `src/agent/mod.rs`.
//! - **Loopback.** A public address without a token (or with a blank one) is refused at start-up
//!   with exit status ≠ 0; on loopback without a token the agent says at start-up that none is
//!   required and why; with a token it says one is required, never printing it.
//! - **Size.** Every route that takes a body (every POST/PUT/PATCH of `/openapi.json`, so a new
//!   route cannot be forgotten) answers a body over its limit with 413 JSON, declared
//!   (`Content-Length`) or chunked, and stores nothing; an over-long URL, too many headers and a
//!   huge header get a 4xx; a client sending its headers a byte at a time is disconnected after
//!   `serve.header_timeout_s` while others are served.
//! - **Paths.** The API has no route that reads or writes a server-side path: a document's
//!   `source`, title and an upload's file name are text. `../`, absolute paths, `%2e%2e/` and
//!   NUL bytes in them are stored literally (or refused with a 4xx) and nothing outside is read
//!   or written; `..%2F` in an id is a 404. The only server-side paths are watched folders (from
//!   the configuration, not the API): a symbolic link in one leading out of it, present at
//!   start-up or created later, file or folder, is not followed.
//! - **SQL.** Filters, metadata keys and values, sources, collection names and conversation
//!   titles full of SQL metacharacters are stored and matched literally; a filter that should
//!   match nothing matches nothing; Python's own SQLite then finds the database intact with the
//!   expected number of documents.
//! - **Secrets.** With a token, a Postgres URL with a password (in the authority or as a
//!   `password=` parameter) and a JWT, debug logging, failed syncs, 401s and bad requests, and
//!   `outpost config show` / `outpost sync`: no secret appears in any output line or HTTP body.
//! - **Nesting.** 100,000 levels of `[` and 40,000 of `{"a":` on every JSON route are a 4xx JSON
//!   error, not a stack overflow.
//! - **UTF-8.** Invalid UTF-8 in JSON bodies, escaped lone surrogates, query strings, paths
//!   (percent-encoded and raw), header values, uploads and multipart fields: a 4xx, no panic,
//!   nothing stored.
//!
//! After every abusive request the agent still answers `/healthz` and a normal search.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};

use common::agent::{command, Agent, Start};
use common::{exit_code, python_sqlite, wait_at_most, TestDb, TestResult};

/// The agent's token in these tests.
const TOKEN: &str = "abuse-token-7f3a9c1e5b2d4f6a8c0e";
/// A password in a central URL.
const PASSWORD: &str = "s3cretpw";
/// A Supabase-style JWT (its subject is a UUID; the signature is not real).
const JWT: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiI2ZjFjMmQzZS00YjVhLTRjN2QtOGU5Zi0wYTFiMmMzZDRlNWYiLCJyb2xlIjoiYXV0aGVudGljYXRlZCIsImV4cCI6NDEwMjQ0NDgwMH0.c2lnbmF0dXJlLW5vdC1yZWFsLWFidXNlLXRlc3Q";
/// A Supabase anon key and a language-model API key.
const ANON_KEY: &str = "sb_publishable_abuseAnonKey0123";
const LLM_KEY: &str = "sk-abuse-llm-key-4242";
/// Body limits of these agents (JSON, upload), small so that over-limit bodies are cheap.
const BODY_LIMIT: usize = 256 * 1024;
const UPLOAD_LIMIT: usize = 1024 * 1024;

/// The configuration of these agents: a token and small body limits.
fn config() -> String {
    format!(
        "[serve]\ntoken = \"{TOKEN}\"\nmax_body_bytes = {BODY_LIMIT}\n\
         max_upload_bytes = {UPLOAD_LIMIT}\n"
    )
}

/// An agent with [`config`] and `extra` settings of `[serve]` on `db`, the hash embedder and
/// `args` after `serve`.
fn start_with(db: &TestDb, extra: &str, args: &[&str]) -> TestResult<Agent> {
    let config = format!("{}{extra}", config());
    let mut s = Start::new(db.path());
    s.config = &config;
    s.embedder = "hash";
    s.args = args;
    Agent::start(s)
}

/// An agent with [`config`] on `db`.
fn start(db: &TestDb, args: &[&str]) -> TestResult<Agent> {
    start_with(db, "", args)
}

/// A request with the right token.
async fn call(
    agent: &Agent,
    method: Method,
    path: &str,
    body: Option<&Value>,
) -> TestResult<(u16, Value)> {
    agent.call(method, path, body, Some(TOKEN)).await
}

/// A request with the right token and a raw body.
async fn send(
    agent: &Agent,
    method: Method,
    path: &str,
    content_type: &str,
    body: Vec<u8>,
) -> TestResult<(u16, Value)> {
    let resp = reqwest::Client::new()
        .request(method, format!("{}{path}", agent.url))
        .bearer_auth(TOKEN)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await?;
    common::agent::answer(resp).await
}

/// A file upload (`POST /v1/documents`, multipart) with the right token.
async fn upload(agent: &Agent, form: reqwest::multipart::Form) -> TestResult<(u16, Value)> {
    let resp = reqwest::Client::new()
        .post(format!("{}/v1/documents", agent.url))
        .bearer_auth(TOKEN)
        .multipart(form)
        .send()
        .await?;
    common::agent::answer(resp).await
}

/// Fails unless `body` is the agent's JSON error with a 4xx `status`.
fn is_json_4xx(what: &str, status: u16, body: &Value) -> TestResult {
    if !(400..500).contains(&status) || !body["error"]["code"].is_string() {
        return Err(format!("{what}: expected a 4xx JSON error, got {status} {body}").into());
    }
    Ok(())
}

/// The agent is alive: `/healthz` answers and a search runs (each on a new connection).
async fn alive(agent: &Agent, after: &str) -> TestResult {
    let http = reqwest::Client::new();
    let health = http.get(format!("{}/healthz", agent.url)).send().await;
    match health {
        Ok(r) if r.status() == 200 => {}
        other => return Err(format!("after {after}: /healthz answered {other:?}").into()),
    }
    let search = http
        .post(format!("{}/v1/search", agent.url))
        .bearer_auth(TOKEN)
        .json(&json!({ "query": "tides", "mode": "text" }))
        .send()
        .await;
    match search {
        Ok(r) if r.status() == 200 => Ok(()),
        other => Err(format!("after {after}: a search answered {other:?}").into()),
    }
}

/// Live documents, by `/v1/stats`.
async fn documents(agent: &Agent) -> TestResult<u64> {
    let (status, stats) = call(agent, Method::GET, "/v1/stats", None).await?;
    assert_eq!(status, 200, "{stats}");
    stats["documents"]
        .as_u64()
        .ok_or_else(|| "stats without documents".into())
}

/// Every (method, path, takes a body) in `/openapi.json`, path parameters filled in.
async fn routes(agent: &Agent) -> TestResult<Vec<(Method, String, bool)>> {
    let (status, doc) = call(agent, Method::GET, "/openapi.json", None).await?;
    assert_eq!(status, 200, "{doc}");
    let mut out = Vec::new();
    for (path, item) in doc["paths"]
        .as_object()
        .ok_or("openapi.json without paths")?
    {
        for (method, op) in item
            .as_object()
            .ok_or("a path item that is not an object")?
        {
            let method: Method = method.to_uppercase().parse()?;
            let path = path.replace("{id}", "0190a0a0-0000-7000-8000-000000000000");
            out.push((method, path, op.get("requestBody").is_some()));
        }
    }
    // The routes the agent has: if one is missing here, the OpenAPI document lost it.
    for expected in [
        "/v1/documents",
        "/v1/search",
        "/v1/chat/completions",
        "/v1/embeddings",
        "/v1/models",
        "/healthz",
        "/metrics",
    ] {
        assert!(
            out.iter().any(|(_, p, _)| p == expected),
            "openapi.json lists no {expected}"
        );
    }
    Ok(out)
}

/// Standard base64 (for `Basic` credentials).
fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in bytes.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(A[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// `host:port` of the agent.
fn host(agent: &Agent) -> &str {
    agent.url.trim_start_matches("http://")
}

/// Sends `request` as it is on a new connection and reads the answer until the server closes
/// it: the status (0 if the connection closed without one) and the whole response as text.
fn raw(agent: &Agent, request: &[u8]) -> TestResult<(u16, String)> {
    let mut stream = TcpStream::connect(host(agent))?;
    stream.set_read_timeout(Some(Duration::from_secs(20)))?;
    // The server may answer and close before it has read everything: that is allowed.
    let _ = stream.write_all(request);
    let mut response = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => response.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => return Err(format!("reading the response: {e}").into()),
        }
    }
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|s| s.get(..3))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Ok((status, text))
}

/// A request head with the token, `Connection: close`, and `extra` header lines.
fn head(method: &str, target: &[u8], extra: &[u8]) -> Vec<u8> {
    let mut r = Vec::new();
    r.extend_from_slice(method.as_bytes());
    r.push(b' ');
    r.extend_from_slice(target);
    r.extend_from_slice(b" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    r.extend_from_slice(format!("Authorization: Bearer {TOKEN}\r\n").as_bytes());
    r.extend_from_slice(extra);
    r
}

/// The JSON body of a raw response.
fn raw_body(response: &str) -> Value {
    let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    serde_json::from_str(body).unwrap_or(Value::Null)
}

// ---------------------------------------------------------------------------------------------
// The token

#[tokio::test]
async fn every_route_but_healthz_and_the_page_needs_the_bearer_token() -> TestResult {
    let db = TestDb::new()?;
    let agent = start(&db, &[])?;
    let marker = "zyxwvmarker private text of a document";
    let (status, body) = call(
        &agent,
        Method::POST,
        "/v1/documents",
        Some(&json!({ "text": marker })),
    )
    .await?;
    assert_eq!(status, 201, "{body}");

    let mut last_differs = TOKEN.to_string();
    last_differs.pop();
    last_differs.push('X');
    let wrong: Vec<(String, Option<String>)> = vec![
        ("no token".into(), None),
        ("a wrong token".into(), Some("Bearer wrong".into())),
        (
            "the last byte differs".into(),
            Some(format!("Bearer {last_differs}")),
        ),
        (
            "a prefix".into(),
            Some(format!("Bearer {}", &TOKEN[..TOKEN.len() - 1])),
        ),
        ("a longer token".into(), Some(format!("Bearer {TOKEN}x"))),
        ("an empty token".into(), Some("Bearer ".into())),
        ("the scheme alone".into(), Some("Bearer".into())),
        (
            "Basic auth".into(),
            Some(format!(
                "Basic {}",
                base64(format!("outpost:{TOKEN}").as_bytes())
            )),
        ),
        (
            "Basic auth, token as user".into(),
            Some(format!("Basic {}", base64(format!("{TOKEN}:").as_bytes()))),
        ),
        ("no scheme".into(), Some(TOKEN.into())),
        ("another scheme".into(), Some(format!("Token {TOKEN}"))),
    ];
    let right = [
        format!("Bearer {TOKEN}"),
        format!("bearer {TOKEN}"),
        format!("BEARER  {TOKEN}"),
    ];

    let mut all = routes(&agent).await?;
    all.push((Method::GET, "/openapi.json".into(), false));
    all.push((Method::GET, "/no/such/route".into(), false));
    all.push((Method::POST, "/v1/no-such".into(), true));
    let http = reqwest::Client::new();
    for (method, path, _) in &all {
        let open = path == "/healthz";
        for (what, header) in &wrong {
            let mut req = http.request(method.clone(), format!("{}{path}", agent.url));
            if let Some(h) = header {
                req = req.header("authorization", h);
            }
            if *method == Method::POST {
                req = req.header("content-type", "application/json").body("{}");
            }
            let resp = req.send().await?;
            let status = resp.status().as_u16();
            let text = resp.text().await?;
            if open {
                assert_eq!(status, 200, "{method} {path} with {what}: {text}");
                continue;
            }
            assert_eq!(status, 401, "{method} {path} with {what}: {text}");
            let body: Value = serde_json::from_str(&text)?;
            assert_eq!(
                body["error"]["code"], "unauthorized",
                "{method} {path}: {text}"
            );
            assert!(
                !text.contains(TOKEN) && !text.contains(&last_differs),
                "{text}"
            );
        }
        for header in &right {
            let mut req = http
                .request(method.clone(), format!("{}{path}", agent.url))
                .header("authorization", header);
            if *method == Method::POST {
                req = req.header("content-type", "application/json").body("{}");
            }
            let status = req.send().await?.status().as_u16();
            assert_ne!(status, 401, "{method} {path} with '{}…'", &header[..7]);
            assert!(status < 500 || status == 503, "{method} {path}: {status}");
        }
    }

    // A method a route does not have: 401 without the token, a JSON 405 with it.
    for (_, path, _) in &all {
        if path.contains("no-such") || path.contains("no/such") {
            continue;
        }
        let (status, _) = agent.call(Method::PATCH, path, None, None).await?;
        assert_eq!(
            status,
            if path == "/healthz" { 405 } else { 401 },
            "PATCH {path}"
        );
        let (status, body) = call(&agent, Method::PATCH, path, None).await?;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (405, Some("method_not_allowed")),
            "PATCH {path}: {body}"
        );
    }

    // The page's files are open, and carry no data: no document text, no token.
    for path in ["/", "/ui/app.js", "/ui/style.css"] {
        let resp = http.get(format!("{}{path}", agent.url)).send().await?;
        assert_eq!(resp.status().as_u16(), 200, "{path}");
        let text = resp.text().await?;
        assert!(
            !text.contains("zyxwvmarker") && !text.contains(TOKEN),
            "{path} carries data"
        );
    }
    // A path that only looks like the page's is not open.
    for path in [
        "/ui/",
        "/ui/../v1/stats",
        "/v1/stats/",
        "//v1/stats",
        "/healthz/../v1/stats",
        "/healthz?x=/v1/stats",
    ] {
        let r = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let (status, text) = raw(&agent, r.as_bytes())?;
        let open = path.starts_with("/healthz?");
        assert!(open || status == 401, "{path} without a token: {text:.300}");
        assert!(
            !text.contains("documents\""),
            "{path} without a token: {text:.300}"
        );
    }
    alive(&agent, "the token checks").await
}

// ---------------------------------------------------------------------------------------------
// Loopback

#[tokio::test]
async fn a_public_address_needs_a_token_and_start_up_says_which_mode() -> TestResult {
    let db = TestDb::new()?;
    // Public, no token (and a blank one): refused, with the reason, before listening.
    for (addr, config) in [
        ("0.0.0.0:0", ""),
        ("[::]:0", ""),
        ("0.0.0.0:0", "[serve]\ntoken = \"   \"\n"),
    ] {
        let log = db.dir().join("refused.log");
        let mut s = Start::new(db.path());
        s.embedder = "hash";
        s.config = config;
        let args = ["--addr", addr];
        s.args = &args;
        let mut child = command(&s, &log)?.spawn()?;
        let status = wait_at_most(&mut child, Duration::from_secs(60))?
            .ok_or("the agent started on a public address without a token")?;
        let stderr = std::fs::read_to_string(&log)?;
        assert_ne!(exit_code(status), 0, "{addr}: {stderr}");
        assert!(
            stderr.contains("refusing to listen") && stderr.contains("without a token"),
            "{addr}: {stderr}"
        );
    }

    // Loopback without a token: it starts and says why no token is needed.
    let mut s = Start::new(db.path());
    s.embedder = "hash";
    let agent = Agent::start(s)?;
    let logs = agent.logs();
    assert!(
        logs.contains("no token is required") && logs.contains("loopback"),
        "start-up does not say that no token is required on loopback: {logs}"
    );
    let (status, _) = agent.get("/v1/stats").await?;
    assert_eq!(status, 200);
    drop(agent);

    // Public with a token: it starts, says a token is required, never prints it, and enforces it.
    let config = config();
    let mut s = Start::new(db.path());
    s.embedder = "hash";
    s.config = &config;
    let args = ["--addr", "0.0.0.0:0"];
    s.args = &args;
    let agent = Agent::start(s)?;
    let logs = agent.logs();
    assert!(logs.contains("a bearer token is required"), "{logs}");
    assert!(!logs.contains(TOKEN), "the token was logged: {logs}");
    let port = agent.url.rsplit(':').next().ok_or("a port")?;
    let local = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/v1/stats"))
        .send()
        .await?;
    assert_eq!(local.status().as_u16(), 401);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Sizes

#[tokio::test]
async fn every_body_over_its_limit_is_a_json_413_and_stores_nothing() -> TestResult {
    let db = TestDb::new()?;
    let agent = start(&db, &[])?;
    let bodies: Vec<(Method, String, bool)> = routes(&agent)
        .await?
        .into_iter()
        .filter(|(m, _, _)| [Method::POST, Method::PUT, Method::PATCH].contains(m))
        .collect();
    assert!(bodies.len() >= 7, "too few body routes: {bodies:?}");
    for (method, path, reads_body) in &bodies {
        let limit = if path == "/v1/documents" {
            UPLOAD_LIMIT
        } else {
            BODY_LIMIT
        };
        // Valid JSON of exactly limit + 1 bytes.
        let mut body = b"{\"text\":\"".to_vec();
        body.resize(limit + 1 - 2, b'a');
        body.extend_from_slice(b"\"}");
        assert_eq!(body.len(), limit + 1);
        // Sent whole, on a raw connection: the agent answers from the declared length, before
        // reading the body, and a client such as reqwest may see its write fail first.
        let mut r = head(
            method.as_str(),
            path.as_bytes(),
            format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        );
        r.extend_from_slice(&body);
        let (status, text) = raw(&agent, &r)?;
        assert_eq!(
            status,
            413,
            "{method} {path} with {} bytes: {text:.300}",
            limit + 1
        );
        assert_eq!(raw_body(&text)["error"]["code"], "too_large", "{text:.300}");

        // The same without a length (chunked): cut at the limit by whatever reads the body.
        if *reads_body {
            let mut r = head(
                method.as_str(),
                path.as_bytes(),
                b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
            );
            let chunk = vec![b' '; 64 * 1024];
            for _ in 0..(limit / chunk.len() + 2) {
                r.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
                r.extend_from_slice(&chunk);
                r.extend_from_slice(b"\r\n");
            }
            r.extend_from_slice(b"0\r\n\r\n");
            let (status, text) = raw(&agent, &r)?;
            assert_eq!(status, 413, "{method} {path} chunked: {text:.300}");
            assert_eq!(raw_body(&text)["error"]["code"], "too_large", "{text:.300}");
        }
        alive(&agent, &format!("an over-limit body to {path}")).await?;
    }
    // A multipart upload over the upload limit.
    let mut form =
        b"--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.txt\"\r\n\
                     Content-Type: text/plain\r\n\r\n"
            .to_vec();
    form.resize(form.len() + UPLOAD_LIMIT + 1, b'a');
    form.extend_from_slice(b"\r\n--XyZ--\r\n");
    let mut r = head(
        "POST",
        b"/v1/documents",
        format!(
            "Content-Type: multipart/form-data; boundary=XyZ\r\nContent-Length: {}\r\n\r\n",
            form.len()
        )
        .as_bytes(),
    );
    r.extend_from_slice(&form);
    let (status, text) = raw(&agent, &r)?;
    assert_eq!(status, 413, "{text:.300}");
    assert_eq!(raw_body(&text)["error"]["code"], "too_large", "{text:.300}");
    assert_eq!(
        documents(&agent).await?,
        0,
        "an over-limit body stored something"
    );

    // Just under the limit is fine (the limit is the limit, not less).
    let mut ok = b"{\"query\":\"tides\",\"filters\":[],\"mode\":\"text\"".to_vec();
    ok.resize(BODY_LIMIT - 1, b' ');
    ok.push(b'}');
    let (status, body) = send(&agent, Method::POST, "/v1/search", "application/json", ok).await?;
    assert_eq!(status, 200, "{body}");
    alive(&agent, "over-limit bodies").await
}

#[tokio::test]
async fn over_long_urls_and_too_many_or_too_large_headers_get_a_4xx() -> TestResult {
    let db = TestDb::new()?;
    let agent = start(&db, &[])?;
    let long_query = format!("/v1/documents?collection={}", "a".repeat(100_000));
    let many: String = (0..500).map(|i| format!("X-Header-{i}: {i}\r\n")).collect();
    let huge = format!("X-Huge: {}\r\n", "h".repeat(1_000_000));
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "a 100 kB query string",
            head("GET", long_query.as_bytes(), b"\r\n"),
        ),
        (
            "a 100 kB path",
            head(
                "GET",
                format!("/v1/documents/{}", "b".repeat(100_000)).as_bytes(),
                b"\r\n",
            ),
        ),
        (
            "500 headers",
            head("GET", b"/v1/stats", format!("{many}\r\n").as_bytes()),
        ),
        (
            "a 1 MB header",
            head("GET", b"/v1/stats", format!("{huge}\r\n").as_bytes()),
        ),
    ];
    for (what, request) in cases {
        let (status, text) = raw(&agent, &request)?;
        assert!((400..500).contains(&status), "{what}: {text:.300}");
        alive(&agent, what).await?;
    }
    Ok(())
}

#[tokio::test]
async fn a_client_sending_its_headers_slowly_is_cut_off_and_holds_no_one_up() -> TestResult {
    let db = TestDb::new()?;
    let agent = start_with(&db, "header_timeout_s = 1\n", &[])?;
    let mut slow = TcpStream::connect(host(&agent))?;
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")?;
    let mut writer = slow.try_clone()?;
    let dripping = std::thread::spawn(move || {
        // One byte every 200 ms for up to 20 s, until the server hangs up.
        for _ in 0..100 {
            if writer.write_all(b"a").is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    });
    let started = Instant::now();
    // Others are served meanwhile.
    for _ in 0..5 {
        let t = Instant::now();
        alive(&agent, "a slow client").await?;
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "a slow client held others up"
        );
    }
    // The slow one is disconnected once its header time (1 s) is up.
    slow.set_read_timeout(Some(Duration::from_secs(20)))?;
    let mut buf = [0u8; 1024];
    match slow.read(&mut buf) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => return Err(format!("the slow client was not disconnected: {e}").into()),
    }
    let waited = started.elapsed();
    assert!(
        waited < Duration::from_secs(10),
        "cut off only after {waited:?}"
    );
    let _ = dripping.join();
    alive(&agent, "a slow client").await?;

    // A client halfway through its headers does not hold up a stop either.
    let mut agent = agent;
    let mut half = TcpStream::connect(host(&agent))?;
    half.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")?;
    let took = agent.stop()?;
    assert!(took < Duration::from_secs(5), "stopping took {took:?}");
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Paths

#[tokio::test]
async fn path_like_names_are_stored_as_text_and_never_opened() -> TestResult {
    let db = TestDb::new()?;
    // A file beside the database that a traversal would reach, and what the folder holds.
    std::fs::write(
        db.dir().join("secret.txt"),
        "qqsecretcontent of a server file",
    )?;
    let agent = start(&db, &[])?;
    let before = listing(db.dir())?;

    let sources = [
        "../../../../etc/passwd",
        "/etc/passwd",
        "..%2f..%2fsecret.txt",
        "%2e%2e/%2e%2e/secret.txt",
        "../secret.txt\u{0}.md",
        "file:///etc/passwd",
    ];
    for (i, source) in sources.iter().enumerate() {
        let text = format!("harmless text number {i}");
        let (status, body) = call(
            &agent,
            Method::POST,
            "/v1/documents",
            Some(&json!({ "text": text, "source": source, "title": source, "collection": source })),
        )
        .await?;
        if (400..500).contains(&status) {
            is_json_4xx(source, status, &body)?;
            continue;
        }
        assert_eq!(status, 201, "{source}: {body}");
        let id = body[0]["id"].as_str().ok_or("an id")?;
        assert_eq!(body[0]["source"], *source, "the source was rewritten");
        let (status, doc) = call(&agent, Method::GET, &format!("/v1/documents/{id}"), None).await?;
        assert_eq!(status, 200, "{doc}");
        let stored = doc.to_string();
        assert!(stored.contains(&text), "{stored}");
        assert!(
            !stored.contains("root:") && !stored.contains("qqsecretcontent"),
            "{source} was read: {stored}"
        );
    }
    // Uploads: the file name is a name; the bytes are what was sent.
    for name in [
        "../../../../etc/passwd",
        "/etc/passwd",
        "..%2F..%2Fsecret.txt",
        "../secret.txt",
        "a\u{0}b.txt",
    ] {
        let form = reqwest::multipart::Form::new().part(
            "file",
            reqwest::multipart::Part::bytes(b"uploaded words only".to_vec()).file_name(name),
        );
        let (status, body) = upload(&agent, form).await?;
        if (400..500).contains(&status) {
            is_json_4xx(name, status, &body)?;
            continue;
        }
        assert_eq!(status, 201, "{name}: {body}");
        let id = body[0]["id"].as_str().ok_or("an id")?;
        let (_, doc) = call(&agent, Method::GET, &format!("/v1/documents/{id}"), None).await?;
        let stored = doc.to_string();
        assert!(stored.contains("uploaded words only"), "{stored}");
        assert!(
            !stored.contains("root:") && !stored.contains("qqsecretcontent"),
            "{name} was read: {stored}"
        );
    }
    // Ids that look like paths are ids that do not exist.
    for target in [
        "/v1/documents/..%2F..%2Fsecret.txt",
        "/v1/documents/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
        "/v1/documents/..%00",
        "/v1/conversations/..%2F..%2Fx/messages",
    ] {
        for method in ["GET", "DELETE"] {
            if method == "DELETE" && target.ends_with("/messages") {
                continue;
            }
            // Not found, or an id refused as malformed: a 4xx JSON error either way.
            let (status, text) = raw(&agent, &head(method, target.as_bytes(), b"\r\n"))?;
            is_json_4xx(&format!("{method} {target}"), status, &raw_body(&text))?;
        }
    }
    // Raw `..` segments in the request line: no route, no file.
    let (status, text) = raw(&agent, &head("GET", b"/ui/../../../../etc/passwd", b"\r\n"))?;
    assert!(
        (400..500).contains(&status) && !text.contains("root:"),
        "{text:.300}"
    );
    // Nothing was written beside the database but the database's own files.
    let after = listing(db.dir())?;
    let new: Vec<_> = after
        .iter()
        .filter(|f| !before.contains(f) && !f.starts_with("x.db"))
        .collect();
    assert!(new.is_empty(), "files appeared: {new:?}");
    alive(&agent, "path-like names").await
}

/// The names in `dir`.
fn listing(dir: &Path) -> TestResult<Vec<String>> {
    let mut names: Vec<String> = std::fs::read_dir(dir)?
        .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<Result<_, _>>()?;
    names.sort();
    Ok(names)
}

#[tokio::test]
async fn a_symlink_out_of_a_watched_folder_is_not_followed() -> TestResult {
    let db = TestDb::new()?;
    let watched = db.dir().join("watched");
    let outside = db.dir().join("outside");
    std::fs::create_dir_all(&watched)?;
    std::fs::create_dir_all(outside.join("folder"))?;
    std::fs::write(
        outside.join("secret.txt"),
        "quokkasecret outside the watched folder",
    )?;
    std::fs::write(
        outside.join("folder/inner.txt"),
        "quokkasecret inner file outside",
    )?;
    // Links present at start-up.
    std::os::unix::fs::symlink(outside.join("secret.txt"), watched.join("early.txt"))?;
    std::os::unix::fs::symlink(outside.join("folder"), watched.join("early-dir"))?;
    std::fs::write(watched.join("first.txt"), "wombatfirst a real file")?;
    let w = watched.to_str().ok_or("utf-8")?;
    let agent = start(&db, &["--watch", w])?;
    wait_for_text(&agent, "wombatfirst").await?;
    // Links made while it runs, then a real file after them.
    std::os::unix::fs::symlink(outside.join("secret.txt"), watched.join("late.txt"))?;
    std::os::unix::fs::symlink(outside.join("folder"), watched.join("late-dir"))?;
    std::fs::write(watched.join("second.txt"), "wombatsecond a real file")?;
    wait_for_text(&agent, "wombatsecond").await?;
    agent
        .until("the queue to drain", Duration::from_secs(30), || async {
            let (_, s) = call(&agent, Method::GET, "/v1/stats", None).await?;
            Ok(s["queued"] == 0)
        })
        .await?;
    let (_, hits) = call(
        &agent,
        Method::POST,
        "/v1/search",
        Some(&json!({ "query": "quokkasecret", "mode": "text" })),
    )
    .await?;
    assert_eq!(
        hits["results"].as_array().map(Vec::len),
        Some(0),
        "a link was followed: {hits}"
    );
    let (_, list) = call(&agent, Method::GET, "/v1/documents", None).await?;
    let sources: Vec<&str> = list["documents"]
        .as_array()
        .ok_or("documents")?
        .iter()
        .filter_map(|d| d["source"].as_str())
        .collect();
    assert_eq!(sources.len(), 2, "{sources:?}");
    assert!(
        sources.iter().all(|s| !s.contains("outside")),
        "{sources:?}"
    );
    alive(&agent, "links in a watched folder").await
}

/// Waits until a text search for `word` finds something.
async fn wait_for_text(agent: &Agent, word: &str) -> TestResult {
    agent
        .until(word, Duration::from_secs(30), || async {
            let (_, hits) = call(
                agent,
                Method::POST,
                "/v1/search",
                Some(&json!({ "query": word, "mode": "text" })),
            )
            .await?;
            Ok(hits["results"].as_array().is_some_and(|r| !r.is_empty()))
        })
        .await
}

// ---------------------------------------------------------------------------------------------
// SQL

#[tokio::test]
async fn sql_metacharacters_are_stored_and_matched_literally() -> TestResult {
    let db = TestDb::new()?;
    let agent = start(&db, &[])?;
    let evil_key = "it's \"odd\"); DROP TABLE chunks;--";
    let evil_value = "'; DROP TABLE documents;--";
    let evil_source = "%' OR 1=1 --";
    let evil_collection = "x'); DROP TABLE collections;--";
    let docs = [
        json!({ "text": "tides one plain", "source": "plain/1", "metadata": { "topic": "ocean" } }),
        json!({ "text": "tides two evil", "source": evil_source,
                "metadata": { "topic": evil_value, evil_key: "v\"'`;", "n": 5 } }),
        json!({ "text": "tides three collection", "source": "plain/3", "collection": evil_collection }),
    ];
    for d in &docs {
        let (status, body) = call(&agent, Method::POST, "/v1/documents", Some(d)).await?;
        assert_eq!(status, 201, "{d}: {body}");
    }
    let search = |filters: Vec<String>| {
        let agent = &agent;
        async move {
            let (status, body) = call(
                agent,
                Method::POST,
                "/v1/search",
                Some(&json!({ "query": "tides", "mode": "text", "k": 10, "filters": filters })),
            )
            .await?;
            if status != 200 {
                return Err(format!("{filters:?}: {status} {body}").into());
            }
            let sources: Vec<String> = body["results"]
                .as_array()
                .ok_or("results")?
                .iter()
                .filter_map(|h| h["source"].as_str().map(String::from))
                .collect();
            TestResult::Ok(sources)
        }
    };
    // Literal matches find exactly the document they name.
    assert_eq!(
        search(vec![format!("topic={evil_value}")]).await?,
        [evil_source]
    );
    assert_eq!(
        search(vec![format!("{evil_key}=v\"'`;")]).await?,
        [evil_source]
    );
    assert_eq!(
        search(vec![format!("source={evil_source}")]).await?,
        [evil_source]
    );
    assert_eq!(
        search(vec![format!("collection={evil_collection}")]).await?,
        ["plain/3"]
    );
    // What an injection would widen matches nothing.
    for f in [
        "topic=' OR '1'='1",
        "topic=ocean' OR 'a'='a",
        "topic='; DROP TABLE documents;--x",
        "source=' OR 1=1 --",
        "source=plain/1' OR '1'='1",
        "n>=5 OR 1=1",
        "n<'1' OR 1=1",
    ] {
        match search(vec![f.to_string()]).await {
            Ok(found) => assert!(found.is_empty(), "{f} matched {found:?}"),
            // A value that is not a number for a number key may be refused; as a 4xx.
            Err(e) => assert!(
                e.to_string().contains("400") || e.to_string().contains("422"),
                "{f}: {e}"
            ),
        }
    }
    // A filter on a key with SQL in it that no document has: refused or empty, never more.
    if let Ok(found) = search(vec!["x\") OR 1=1 --=a".into()]).await {
        assert!(found.is_empty(), "{found:?}");
    }
    // Listing by an evil collection and a conversation title with LIKE wildcards.
    let q = "/v1/documents?collection=x%27%29%3B%20DROP%20TABLE%20collections%3B--";
    let (status, list) = call(&agent, Method::GET, q, None).await?;
    assert_eq!(status, 200, "{list}");
    assert_eq!(
        list["documents"].as_array().map(Vec::len),
        Some(1),
        "{list}"
    );
    let (status, _) = call(
        &agent,
        Method::POST,
        "/v1/conversations",
        Some(&json!({ "title": "a'; DELETE FROM conversations;--" })),
    )
    .await?;
    assert_eq!(status, 201);
    let (status, _) = call(
        &agent,
        Method::POST,
        "/v1/conversations",
        Some(&json!({ "title": "plain" })),
    )
    .await?;
    assert_eq!(status, 201);
    for (title, n) in [
        ("%25", 0),
        ("_", 0),
        ("%27%3B%20DELETE", 1),
        ("%27%20OR%201%3D1%20--", 0),
    ] {
        let (_, found) = call(
            &agent,
            Method::GET,
            &format!("/v1/conversations?title={title}"),
            None,
        )
        .await?;
        assert_eq!(
            found["conversations"].as_array().map(Vec::len),
            Some(n),
            "title={title}: {found}"
        );
    }
    // The database is intact, by another SQLite.
    assert_eq!(python_sqlite(db.path(), "PRAGMA integrity_check")?, "ok");
    assert_eq!(
        python_sqlite(
            db.path(),
            "SELECT count(*) FROM documents WHERE deleted = 0"
        )?,
        "3"
    );
    assert_eq!(
        python_sqlite(db.path(), "SELECT count(*) FROM conversations")?,
        "2"
    );
    assert_eq!(documents(&agent).await?, 3);
    alive(&agent, "SQL metacharacters").await
}

// ---------------------------------------------------------------------------------------------
// Secrets

#[tokio::test]
async fn no_secret_appears_in_any_log_line_or_error_body() -> TestResult {
    let db = TestDb::new()?;
    let url = format!("postgres://outpost:{PASSWORD}@127.0.0.1:1/central");
    let env = [
        ("OUTPOST_CENTRAL_URL", url.as_str()),
        ("OUTPOST_SUPABASE_JWT", JWT),
        ("OUTPOST_LOG", "debug"),
        ("RUST_LOG", "debug"),
    ];
    let config = config();
    let mut s = Start::new(db.path());
    s.config = &config;
    s.embedder = "hash";
    s.env = &env;
    let args = ["--sync-interval", "1"];
    s.args = &args;
    let agent = Agent::start(s)?;
    let mut seen = String::new();
    // Failed syncs, in the background and asked for.
    let (status, body) = call(&agent, Method::POST, "/v1/sync", None).await?;
    assert_eq!(status, 503, "{body}");
    seen.push_str(&body.to_string());
    agent
        .until(
            "a failed background sync",
            Duration::from_secs(30),
            || async {
                let (_, s) = call(&agent, Method::GET, "/v1/sync/status", None).await?;
                Ok(s["central"]["last_error"].is_string())
            },
        )
        .await?;
    for path in [
        "/v1/sync/status",
        "/readyz",
        "/v1/stats",
        "/metrics",
        "/openapi.json",
    ] {
        let (_, body) = call(&agent, Method::GET, path, None).await?;
        seen.push_str(&body.to_string());
    }
    // 401s with near tokens, a token in the query string, bad requests.
    for target in [
        format!("/v1/stats?access_token={TOKEN}"),
        format!("/v1/{TOKEN}"),
    ] {
        let (status, body) = agent.get(&target).await?;
        assert_eq!(status, 401);
        seen.push_str(&body.to_string());
    }
    let (_, body) = agent
        .call(Method::GET, "/v1/stats", None, Some(&format!("{TOKEN}x")))
        .await?;
    seen.push_str(&body.to_string());
    let (_, body) = send(
        &agent,
        Method::POST,
        "/v1/search",
        "application/json",
        b"{not json".to_vec(),
    )
    .await?;
    seen.push_str(&body.to_string());
    let (_, body) = call(&agent, Method::GET, "/v1/documents/nope", None).await?;
    seen.push_str(&body.to_string());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let logs = agent.logs();
    // Debug logging is on: the refused requests are logged, with why, at debug level.
    assert!(
        logs.contains("DEBUG") && logs.contains("wrong token"),
        "debug logging is not on: {logs:.500}"
    );
    seen.push_str(&logs);

    // The CLI: the configuration printed, a one-off sync (password in the authority and as a
    // parameter).
    let query_url =
        format!("postgres://outpost@127.0.0.1:1/central?password={PASSWORD}&connect_timeout=2");
    let rest = [
        ("OUTPOST_SUPABASE_URL", "http://127.0.0.1:1"),
        ("OUTPOST_SUPABASE_ANON_KEY", ANON_KEY),
        ("OUTPOST_SUPABASE_JWT", JWT),
    ];
    let centrals: [&[(&str, &str)]; 3] = [
        &[("OUTPOST_CENTRAL_URL", &url), ("OUTPOST_SUPABASE_JWT", JWT)],
        &[
            ("OUTPOST_CENTRAL_URL", &query_url),
            ("OUTPOST_SUPABASE_JWT", JWT),
        ],
        &rest,
    ];
    for central in centrals {
        for args in [
            vec!["config", "show"],
            vec!["config", "show", "--json"],
            // No retries: a sync to port 1 would otherwise ride out the "outage" for 2 minutes.
            vec!["sync", "--once", "--give-up-after", "0"],
        ] {
            let mut cmd = db.command(&args);
            for k in [
                "OUTPOST_CENTRAL_URL",
                "OUTPOST_CENTRAL_USER",
                "OUTPOST_SUPABASE_URL",
                "OUTPOST_SUPABASE_ANON_KEY",
                "OUTPOST_SUPABASE_JWT",
            ] {
                cmd.env_remove(k);
            }
            let out = cmd
                .envs(central.iter().copied())
                .env("OUTPOST_TOKEN", TOKEN)
                .env("OUTPOST_LOG", "debug")
                .env("RUST_LOG", "debug")
                .env("OUTPOST_CONFIG", db.dir().join("outpost.toml"))
                .output()?;
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            if args[0] == "config" {
                assert!(
                    out.status.success() && text.contains("***"),
                    "{args:?}: {text}"
                );
            } else {
                assert!(!out.status.success(), "a sync to port 1 succeeded: {text}");
            }
            seen.push_str(&text);
        }
    }

    // A language model behind a URL with a password and a key in its query, and an API key:
    // its failure is a 5xx whose message, and whose log line, name the server without them.
    let llm_url = format!("http://llmuser:{PASSWORD}@127.0.0.1:1/v1?api-key={LLM_KEY}");
    let mut s = Start::new(db.path());
    s.config = &config;
    s.embedder = "hash";
    let llm_env = [("OUTPOST_LLM_API_KEY", LLM_KEY), ("OUTPOST_LOG", "debug")];
    s.env = &llm_env;
    let args = ["--llm-url", llm_url.as_str()];
    s.args = &args;
    drop(agent);
    let agent = Agent::start(s)?;
    let (status, body) = call(
        &agent,
        Method::POST,
        "/v1/chat/completions",
        Some(&json!({ "messages": [{ "role": "user", "content": "hi" }], "retrieval": false })),
    )
    .await?;
    assert!(status >= 500, "a model at port 1 answered: {status} {body}");
    assert!(body.to_string().contains("127.0.0.1:1"), "{body}");
    seen.push_str(&body.to_string());
    seen.push_str(&agent.logs());

    let jwt_signature = JWT.rsplit('.').next().ok_or("a signature")?;
    for (what, secret) in [
        ("token", TOKEN),
        ("password", PASSWORD),
        ("JWT", JWT),
        ("JWT signature", jwt_signature),
        ("anon key", ANON_KEY),
        ("language model key", LLM_KEY),
    ] {
        if let Some(at) = seen.find(secret) {
            let from = at.saturating_sub(200);
            return Err(format!(
                "the {what} leaked: …{}…",
                &seen[from..(at + 200).min(seen.len())]
            )
            .into());
        }
    }
    alive(&agent, "secret checks").await
}

// ---------------------------------------------------------------------------------------------
// Nesting and UTF-8

#[tokio::test]
async fn deeply_nested_json_is_a_4xx_on_every_json_route() -> TestResult {
    let db = TestDb::new()?;
    let agent = start(&db, &[])?;
    let json_routes: Vec<(Method, String, bool)> =
        routes(&agent).await?.into_iter().filter(|r| r.2).collect();
    assert!(json_routes.len() >= 6, "{json_routes:?}");
    let arrays = "[".repeat(100_000);
    let objects = "{\"a\":".repeat(40_000);
    let inside = format!(
        "{{\"text\":\"x\",\"query\":\"x\",\"metadata\":{}1{}}}",
        "{\"a\":".repeat(40_000),
        "}".repeat(40_000)
    );
    for (method, path, _) in &json_routes {
        for (what, body) in [
            ("arrays", &arrays),
            ("objects", &objects),
            ("a nested field", &inside),
        ] {
            let (status, err) = send(
                &agent,
                method.clone(),
                path,
                "application/json",
                body.clone().into_bytes(),
            )
            .await?;
            is_json_4xx(&format!("{path} with nested {what}"), status, &err)?;
            alive(&agent, &format!("nested {what} to {path}")).await?;
        }
    }
    assert_eq!(documents(&agent).await?, 0);
    Ok(())
}

#[tokio::test]
async fn invalid_utf8_is_a_4xx_and_stores_nothing() -> TestResult {
    let db = TestDb::new()?;
    let agent = start(&db, &[])?;
    let json_routes: Vec<(Method, String, bool)> =
        routes(&agent).await?.into_iter().filter(|r| r.2).collect();
    for (method, path, _) in &json_routes {
        let mut body = b"{\"text\":\"ab".to_vec();
        body.extend_from_slice(&[0xff, 0xfe, 0xc3]);
        body.extend_from_slice(
            b"\",\"query\":\"x\",\"title\":\"t\",\"role\":\"user\",\"content\":\"c\"}",
        );
        let (status, err) = send(&agent, method.clone(), path, "application/json", body).await?;
        is_json_4xx(&format!("{path}: invalid UTF-8"), status, &err)?;
        let lone = br#"{"text":"a\ud800b","query":"a\udc00","title":"\ud800","role":"user","content":"\ud800"}"#.to_vec();
        let (status, err) = send(&agent, method.clone(), path, "application/json", lone).await?;
        is_json_4xx(&format!("{path}: a lone surrogate"), status, &err)?;
        alive(&agent, &format!("invalid UTF-8 to {path}")).await?;
    }
    // Query strings and paths, percent-encoded and raw.
    for target in [
        &b"/v1/documents?collection=%FF%FE"[..],
        b"/v1/conversations?title=%C3",
        b"/v1/documents/%FF%FE",
        b"/v1/conversations/%C3%28/messages",
        b"/v1/documents/\xff\xfe",
        b"/v1/documents?collection=\xff",
    ] {
        let (status, text) = raw(&agent, &head("GET", target, b"\r\n"))?;
        assert!(
            (400..500).contains(&status),
            "{}: {text:.300}",
            String::from_utf8_lossy(target)
        );
        if target.contains(&b'%') {
            assert!(
                raw_body(&text)["error"]["code"].is_string(),
                "{}: not JSON: {text:.300}",
                String::from_utf8_lossy(target)
            );
        }
        alive(&agent, "invalid UTF-8 in a URL").await?;
    }
    // Header values: a token, a content type.
    let mut r = b"GET /v1/stats HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer \xff\xfe\r\n\r\n".to_vec();
    let (status, text) = raw(&agent, &r)?;
    assert_eq!(status, 401, "{text:.300}");
    r = head(
        "POST",
        b"/v1/documents",
        b"Content-Type: application/\xffjson\r\nContent-Length: 12\r\n\r\n{\"text\":\"a\"}",
    );
    let (status, text) = raw(&agent, &r)?;
    assert!((400..500).contains(&status), "{text:.300}");
    // A text to ingest: an upload that is not UTF-8, a multipart field that is not.
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(vec![b'o', b'k', 0xff, 0xfe, b' ', 0xc3, 0x28])
            .file_name("bad.txt"),
    );
    let (status, err) = upload(&agent, form).await?;
    is_json_4xx("an upload that is not UTF-8", status, &err)?;
    let form = reqwest::multipart::Form::new()
        .part(
            "collection",
            reqwest::multipart::Part::bytes(vec![b'c', 0xff, 0xfe]),
        )
        .part(
            "file",
            reqwest::multipart::Part::bytes(b"fine text".to_vec()).file_name("fine.txt"),
        );
    let (status, body) = upload(&agent, form).await?;
    is_json_4xx("a collection field that is not UTF-8", status, &body)?;
    assert_eq!(documents(&agent).await?, 0, "something was stored");
    assert_eq!(python_sqlite(db.path(), "PRAGMA integrity_check")?, "ok");
    alive(&agent, "invalid UTF-8").await
}
