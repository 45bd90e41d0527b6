//! Sync on bad days: no network, connections cut in the middle of a push, servers that answer
//! nonsense or nothing at all, refused credentials, and random interleavings of edits, clock
//! skew and cut pushes on two devices. Every fault is played on 127.0.0.1: a closed port, the
//! fault proxy (`outpost_sync::faultproxy`) in front of the test Postgres cutting connections,
//! and tiny raw HTTP servers.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{local_only, user, Db, Device, RestApi, TestResult};
use outpost_core::Engine;
use outpost_sync::faultproxy::{Cut, FaultProxy, Faults};
use outpost_sync::{Backoff, Central, Error, SyncOptions};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The tests of this file that use the shared server take turns on it: a pull hands out only
/// rows of transactions older than the oldest one still running anywhere on the server
/// (docs/SYNC.md), so the others' connections cut mid-transaction would hold our pulls back.
static SERVER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Retries that give up quickly: enough to ride over a cut connection, fast to fail when down.
fn quick(mut opts: SyncOptions, give_up_ms: u64) -> SyncOptions {
    opts.backoff = Backoff {
        initial: Duration::from_millis(10),
        max: Duration::from_millis(100),
        give_up_after: Some(Duration::from_millis(give_up_ms)),
    };
    opts
}

async fn sync_with(
    device: &mut Device,
    central: &Central,
    opts: &SyncOptions,
) -> Result<outpost_sync::SyncReport, Error> {
    outpost_sync::sync_once(&device.sync_engine()?, central, opts, &mut |_| {}).await
}

/// What a device holds that sync must not touch when it fails: outbox depth and checksums.
fn snapshot(
    engine: &Engine,
) -> Result<(usize, serde_json::Map<String, Value>), outpost_core::Error> {
    Ok((engine.outbox_depth()?, engine.checksums()?))
}

/// A loopback port nothing listens on.
async fn closed_port() -> std::io::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    Ok(listener.local_addr()?.port())
}

/// `host:port` of a Postgres URL.
fn pg_addr(url: &str) -> Result<SocketAddr, Box<dyn std::error::Error>> {
    let config: tokio_postgres::Config = url.parse()?;
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        _ => return Err("the test server is not reached over TCP".into()),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    Ok(format!("{host}:{port}").parse()?)
}

/// `url` with its `host:port` replaced by `addr`.
fn via(url: &str, addr: SocketAddr) -> Result<String, Box<dyn std::error::Error>> {
    let target = pg_addr(url)?;
    Ok(url.replacen(&target.to_string(), &addr.to_string(), 1))
}

#[tokio::test]
async fn a_slow_link_that_stalls_and_cuts_answers_mid_way_still_converges() -> TestResult {
    if local_only(
        "a_slow_link_that_stalls_and_cuts_answers_mid_way_still_converges",
        "its fault proxy sits on a plaintext loopback connection",
    ) {
        return Ok(());
    }
    let _turn = SERVER.lock().await;
    let db = Db::new(true).await?;
    let u = user();
    let proxy = FaultProxy::start(pg_addr(&db.url)?).await?;
    let central = |timeout| -> Result<Central, Error> {
        Ok(Central::new(outpost_sync::pg::PgTransport::new(
            &via(&db.url, proxy.addr()).map_err(|e| Error::Config(e.to_string()))?,
            &u,
            timeout,
        )?))
    };
    // A phone on a poor link: 50 ms each way, 256 kB/s.
    proxy.set(Faults {
        latency: Duration::from_millis(50),
        bytes_per_sec: Some(256 * 1024),
        ..Faults::default()
    });
    let mut a = Device::new()?;
    for n in 0..12 {
        a.put(
            &format!("notes/{n}.md"),
            &format!("Note {n}.\n\nOn a slow link."),
        )?;
    }
    let mut opts = quick(a.options(), 20_000);
    opts.batch_size = 4;
    let slow = central(Duration::from_secs(10))?;
    let report = sync_with(&mut a, &slow, &opts).await?;
    assert_eq!(report.push_applied, 12, "{report:?}");

    // The link stalls: the call times out, nothing local changes, and once the link is back
    // the next sync goes through.
    a.put("notes/stalled.md", "Written while the link stalled.")?;
    let before = snapshot(&a.engine)?;
    proxy.set(Faults {
        stalled: true,
        ..proxy.faults()
    });
    let mut once = opts.clone();
    once.backoff = Backoff::none();
    let err = sync_with(&mut a, &central(Duration::from_millis(800))?, &once)
        .await
        .expect_err("stalled");
    assert!(err.is_retryable(), "{err}");
    assert_eq!(snapshot(&a.engine)?, before);
    proxy.set(Faults {
        stalled: false,
        ..proxy.faults()
    });

    // Another device bootstraps, the answer of its first connection cut mid-way (the server's
    // greeting and first answers arrive, then the stream ends), and converges on the retry.
    let mut b = Device::new()?;
    proxy.cut_next([Cut::ResponseAfterBytes(600)]);
    common::settle(&db).await?;
    let b_central = central(Duration::from_secs(10))?;
    let b_report = sync_with(&mut b, &b_central, &opts).await?;
    assert!(proxy.cuts() >= 1, "the answer was never cut");
    assert!(b_report.pulled >= 12, "{b_report:?}");
    sync_with(&mut a, &slow, &opts).await?;
    common::settle(&db).await?;
    sync_with(&mut b, &b_central, &opts).await?;
    assert!(a.verify(&slow).await?.equal);
    assert!(b.verify(&b_central).await?.equal);
    assert_eq!(a.engine.checksums()?, b.engine.checksums()?);
    Ok(())
}

/// What a fake Supabase answers to one RPC: a body sent with status 200, or no answer at all.
type Answer = Arc<dyn Fn(&str, &Value) -> Option<String> + Send + Sync>;

fn answer(f: impl Fn(&str, &Value) -> Option<String> + Send + Sync + 'static) -> Answer {
    Arc::new(f)
}

/// A tiny raw HTTP/1.1 server on loopback that answers `POST /rest/v1/rpc/<fn>` as told.
struct FakeSupabase {
    url: String,
    task: tokio::task::JoinHandle<()>,
}

impl FakeSupabase {
    async fn start(answer: Answer) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let task = tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let answer = answer.clone();
                tokio::spawn(async move {
                    let _ = serve(socket, answer).await;
                });
            }
        });
        Ok(Self { url, task })
    }

    fn transport(&self, timeout: Duration) -> Central {
        Central::new(
            outpost_sync::rest::RestTransport::new(
                &self.url,
                common::anon_key(),
                &common::jwt(&user()),
                timeout,
            )
            .expect("transport"),
        )
    }
}

impl Drop for FakeSupabase {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(mut socket: TcpStream, answer: Answer) -> std::io::Result<()> {
    let mut request = Vec::new();
    let mut buf = [0u8; 4096];
    let head_end = loop {
        let n = socket.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        request.extend_from_slice(&buf[..n]);
        if let Some(i) = request.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&request[..head_end]).to_string();
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    while request.len() < head_end + length {
        let n = socket.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        request.extend_from_slice(&buf[..n]);
    }
    let function = head
        .split_whitespace()
        .nth(1)
        .and_then(|path| path.rsplit('/').next())
        .unwrap_or("")
        .to_string();
    let args: Value = serde_json::from_slice(&request[head_end..]).unwrap_or(Value::Null);
    let Some(body) = answer(&function, &args) else {
        // Hang: keep the connection open and never answer.
        tokio::time::sleep(Duration::from_secs(3600)).await;
        return Ok(());
    };
    let response = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    socket.write_all(response.as_bytes()).await?;
    socket.shutdown().await
}

/// `outpost_info()` as the real migration answers it.
fn info() -> Option<String> {
    Some(r#"{"schema_version": 1, "embedding_dims": 384, "migration": "20261122000000_outpost_sync"}"#.into())
}

/// Counts of rows in the central tables that belong to `owner`.
async fn central_counts(db: &Db, owner: &str) -> Result<Vec<i64>, Box<dyn std::error::Error>> {
    let c = db.admin().await?;
    let mut counts = Vec::new();
    for table in [
        "outpost_documents",
        "outpost_document_chunks",
        "outpost_conversations",
        "outpost_messages",
    ] {
        let row = c
            .query_one(
                &format!("SELECT count(*) FROM {table} WHERE owner = $1::text::uuid"),
                &[&owner],
            )
            .await?;
        counts.push(row.get(0));
    }
    Ok(counts)
}

/// The same counts on a device, from its stats: documents with their tombstones, chunks (only
/// live documents have any), and the live conversations and messages (these tests delete none,
/// so those are all of them).
fn local_counts(engine: &Engine) -> Result<Vec<i64>, Box<dyn std::error::Error>> {
    let stats = engine.stats()?;
    let live: usize = stats.collections.iter().map(|c| c.documents).sum();
    let chunks: usize = stats.collections.iter().map(|c| c.chunks).sum();
    let counts = [
        live + stats.deleted_documents,
        chunks,
        stats.conversations,
        stats.messages,
    ];
    Ok(counts
        .iter()
        .map(|&n| i64::try_from(n))
        .collect::<Result<_, _>>()?)
}

#[tokio::test]
async fn edits_made_offline_wait_in_the_outbox_and_converge_once_back_online() -> TestResult {
    let _turn = SERVER.lock().await;
    let db = Db::new(true).await?;
    let u = user();
    let mut a = Device::new()?;
    let mut b = Device::new()?;
    a.put("notes/tides.md", "Tides follow the moon.")?;
    b.put("notes/bees.md", "Bees dance.")?;
    let conv = b.engine.create_conversation("offline chat")?;
    b.engine
        .add_message_with_vector(&conv.id, "user", "is anyone there?", None)?;

    // The central store is unreachable: nothing listens on its port.
    let port = closed_port().await?;
    let down = [
        Central::new(outpost_sync::pg::PgTransport::new(
            &format!("postgres://postgres@127.0.0.1:{port}/postgres"),
            &u,
            Duration::from_secs(2),
        )?),
        Central::new(outpost_sync::rest::RestTransport::new(
            &format!("http://127.0.0.1:{port}"),
            common::anon_key(),
            &common::jwt(&u),
            Duration::from_secs(2),
        )?),
    ];
    for device in [&mut a, &mut b] {
        let opts = quick(device.options(), 300);
        for central in &down {
            let before = snapshot(&device.engine)?;
            let started = Instant::now();
            let err = sync_with(device, central, &opts)
                .await
                .expect_err("offline");
            assert!(err.is_retryable(), "{err}");
            assert!(matches!(err, Error::Offline { .. }), "{err}");
            assert!(started.elapsed() < Duration::from_secs(3));
            assert_eq!(snapshot(&device.engine)?, before);
        }
    }
    assert_eq!((a.engine.outbox_depth()?, b.engine.outbox_depth()?), (1, 3));

    // Back online.
    let central = db.pg(&u);
    a.sync(&central).await?;
    common::settle(&db).await?;
    b.sync(&central).await?;
    common::settle(&db).await?;
    a.sync(&central).await?;
    assert!(a.verify(&central).await?.equal);
    assert!(b.verify(&central).await?.equal);
    assert_eq!(a.engine.checksums()?, b.engine.checksums()?);
    Ok(())
}

#[tokio::test]
async fn a_push_cut_mid_batch_is_resumed_without_duplicates() -> TestResult {
    if local_only(
        "a_push_cut_mid_batch_is_resumed_without_duplicates",
        "its cutting proxy sits on a plaintext loopback connection",
    ) {
        return Ok(());
    }
    let _turn = SERVER.lock().await;
    let db = Db::new(true).await?;
    let u = user();
    let proxy = FaultProxy::start(pg_addr(&db.url)?).await?;
    let through_proxy = Central::new(outpost_sync::pg::PgTransport::new(
        &via(&db.url, proxy.addr())?,
        &u,
        Duration::from_secs(5),
    )?);

    let mut a = Device::new()?;
    for n in 0..8 {
        a.put(
            &format!("notes/{n}.md"),
            &format!("Note number {n}.\n\nIts second paragraph."),
        )?;
    }
    let mut opts = a.options();
    opts.batch_size = 2;

    // First the request of a later batch is cut short, with no retries: the sync fails, and
    // what the server acknowledged before stays acknowledged. The four batches carry about a
    // quarter of the records' JSON each (and a little protocol besides), so the cut falls in
    // the third, whatever size the vectors print at.
    let payload = serde_json::to_string(&a.engine.outbox_batch(8)?.changes)?.len();
    proxy.cut_next([Cut::RequestAfterBytes(payload * 5 / 8)]);
    let mut once = opts.clone();
    once.backoff = Backoff::none();
    let err = sync_with(&mut a, &through_proxy, &once)
        .await
        .expect_err("cut");
    assert!(err.is_retryable(), "{err}");
    let left = a.engine.outbox_depth()?;
    assert!(0 < left && left < 8, "{left} left");

    // Then a batch is committed but its answer is lost (the second COMMIT of the connection:
    // the first is the schema check's), and the retry replays it.
    proxy.cut_next([Cut::AfterCommits(2)]);
    let report = sync_with(&mut a, &through_proxy, &opts).await?;
    assert_eq!(report.push_duplicate, 2, "{report:?}");
    assert_eq!(report.push_applied, left - 2);
    assert_eq!(a.engine.outbox_depth()?, 0);
    assert_eq!((proxy.cuts(), proxy.connections()), (2, 3));

    // Another device pulls through the proxy (a connection of its own), the answer to its first
    // pull lost.
    let mut b = Device::new()?;
    let b_central = Central::new(outpost_sync::pg::PgTransport::new(
        &via(&db.url, proxy.addr())?,
        &u,
        Duration::from_secs(5),
    )?);
    proxy.cut_next([Cut::AfterCommits(2)]);
    common::settle(&db).await?;
    b.sync(&b_central).await?;
    assert_eq!(proxy.cuts(), 3);
    a.sync(&through_proxy).await?;
    assert!(a.verify(&through_proxy).await?.equal);
    assert!(b.verify(&b_central).await?.equal);
    assert_eq!(a.engine.checksums()?, b.engine.checksums()?);
    assert_eq!(central_counts(&db, &u).await?, vec![8, 16, 0, 0]);
    assert_eq!(local_counts(&b.engine)?, vec![8, 16, 0, 0]);
    Ok(())
}

#[tokio::test]
async fn a_server_answering_nonsense_is_reported_and_changes_nothing() -> TestResult {
    let mut writer = Device::new()?;
    writer.put("notes/a.md", "Something worth keeping.")?;
    writer.put("notes/b.md", "Something else.")?;
    let opts = quick(writer.options(), 300);

    // Answers to the schema check and to a push that break the protocol.
    let cases: Vec<(&str, Answer)> = vec![
        (
            "outpost_info",
            answer(|_, _| Some("<html>502 Bad Gateway</html>".into())),
        ),
        (
            "outpost_info",
            answer(|_, _| Some(r#"{"schema_version": "one"}"#.into())),
        ),
        (
            "outpost_push",
            answer(|f, _| {
                if f == "outpost_info" {
                    info()
                } else {
                    Some("not json".into())
                }
            }),
        ),
        (
            "outpost_push",
            answer(|f, _| {
                if f == "outpost_info" {
                    info()
                } else {
                    Some("[]".into())
                }
            }),
        ),
        (
            "outpost_push",
            answer(|f, args| {
                if f == "outpost_info" {
                    return info();
                }
                // One outcome per record, but for ids that were not sent.
                let n = args["changes"].as_array().map_or(0, Vec::len);
                let wrong = json!({ "kind": "document", "id": user(), "outcome": "applied" });
                Some(Value::Array(vec![wrong; n]).to_string())
            }),
        ),
    ];
    for (function, answer) in cases {
        let server = FakeSupabase::start(answer).await?;
        let before = snapshot(&writer.engine)?;
        let err = sync_with(
            &mut writer,
            &server.transport(Duration::from_secs(2)),
            &opts,
        )
        .await
        .expect_err("nonsense");
        assert!(
            matches!(&err, Error::BadResponse { what, .. } if what == function),
            "{err}"
        );
        assert!(err.to_string().contains(function), "{err}");
        assert_eq!(snapshot(&writer.engine)?, before);
    }

    // A device with data and nothing to push (it pulled it from elsewhere), against pulls that
    // break the protocol: nothing applied, no cursor stored.
    let mut reader = Device::new()?;
    let changes = writer.engine.outbox_batch(100)?.changes;
    let model = reader.embedder();
    reader.engine.apply_pulled(
        &changes,
        "cursor:elsewhere",
        "1:1",
        (model.model_id(), model.dims()),
    )?;
    let pulls = [
        r#"{"changes": 5}"#.to_string(),
        json!({ "changes": [{ "kind": "document", "id": user() }], "next_cursor": "9:9", "more": false })
            .to_string(),
        json!({ "changes": [], "next_cursor": "not a cursor", "more": false }).to_string(),
        "[1, 2, 3]".to_string(),
    ];
    for pull in pulls {
        let server = FakeSupabase::start(answer(move |f, _| {
            if f == "outpost_info" {
                info()
            } else {
                Some(pull.clone())
            }
        }))
        .await?;
        let central = server.transport(Duration::from_secs(2));
        let before = snapshot(&reader.engine)?;
        let err = sync_with(&mut reader, &central, &opts)
            .await
            .expect_err("nonsense");
        assert!(
            matches!(&err, Error::BadResponse { what, .. } if what == "outpost_pull"),
            "{err}"
        );
        assert_eq!(snapshot(&reader.engine)?, before);
        let key = outpost_sync::reconcile::cursor_key(&central);
        assert_eq!(reader.engine.sync_state(&key)?, None);
    }
    Ok(())
}

#[tokio::test]
async fn a_server_that_never_answers_times_out_and_changes_nothing() -> TestResult {
    let mut device = Device::new()?;
    device.put("notes/a.md", "Waiting for an answer.")?;
    let opts = quick(device.options(), 1_000);

    // Silent from the start (REST), silent on push only (REST), and a Postgres port that
    // accepts connections but never speaks.
    let silent = FakeSupabase::start(answer(|_, _| None)).await?;
    let silent_push = FakeSupabase::start(answer(
        |f, _| if f == "outpost_info" { info() } else { None },
    ))
    .await?;
    let mute = TcpListener::bind("127.0.0.1:0").await?;
    let mute_addr = mute.local_addr()?;
    let _mute = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = mute.accept().await {
            held.push(socket);
        }
    });
    let timeout = Duration::from_millis(500);
    let cases = [
        (silent.transport(timeout), "outpost_info"),
        (silent_push.transport(timeout), "outpost_push"),
        (
            Central::new(outpost_sync::pg::PgTransport::new(
                &format!("postgres://postgres@{mute_addr}/postgres"),
                &user(),
                timeout,
            )?),
            "connect",
        ),
    ];
    for (central, call) in cases {
        let before = snapshot(&device.engine)?;
        let started = Instant::now();
        let err = sync_with(&mut device, &central, &opts)
            .await
            .expect_err("no answer");
        assert!(
            matches!(&err, Error::Timeout { what, .. } if what == call),
            "{err}"
        );
        assert!(err.is_retryable());
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(snapshot(&device.engine)?, before);
    }
    Ok(())
}

#[tokio::test]
async fn refused_credentials_are_reported_once_and_not_retried() -> TestResult {
    let _turn = SERVER.lock().await;
    let db = Db::new(true).await?;
    let api = db.rest_api().await?;
    let mut device = Device::new()?;
    device.put("notes/a.md", "Private.")?;
    // The default policy: retries for two minutes, but only what retrying can fix.
    let model = device.embedder();
    let opts = SyncOptions::new(model.model_id(), model.dims());

    // A JWT signed with another secret.
    let forged = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({ "sub": user(), "role": "authenticated", "aud": "authenticated",
                 "exp": 4_102_444_800u64 }),
        &jsonwebtoken::EncodingKey::from_secret(b"not-the-project-secret-not-the-project-secret"),
    )?;
    let central = Central::new(outpost_sync::rest::RestTransport::new(
        &api.url,
        common::anon_key(),
        &forged,
        Duration::from_secs(5),
    )?);
    let before = snapshot(&device.engine)?;
    let err = sync_with(&mut device, &central, &opts)
        .await
        .expect_err("forged");
    assert!(matches!(err, Error::Auth { .. }), "{err}");
    assert!(!err.is_retryable());
    if let Some(shim) = &api.shim {
        assert_eq!(shim.requests(), 1);
    }
    assert_eq!(snapshot(&device.engine)?, before);

    // Direct Postgres as a role the server does not know: one connection attempt.
    if local_only(
        "refused_credentials_are_reported_once_and_not_retried (direct Postgres)",
        "its counting proxy sits on a plaintext loopback connection",
    ) {
        return Ok(());
    }
    let proxy = FaultProxy::start(pg_addr(&db.url)?).await?;
    let url = via(&db.url, proxy.addr())?.replacen("postgres@", "nobody@", 1);
    let central = Central::new(outpost_sync::pg::PgTransport::new(
        &url,
        &user(),
        Duration::from_secs(5),
    )?);
    let err = sync_with(&mut device, &central, &opts)
        .await
        .expect_err("unknown role");
    assert!(matches!(err, Error::Auth { .. }), "{err}");
    assert_eq!(proxy.connections(), 1);
    assert_eq!(snapshot(&device.engine)?, before);
    Ok(())
}

/// Like `assert!`, but returns the failure so that the caller can print the run's log first.
macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(format!($($msg)+).into());
        }
    };
}

/// Short texts from a small vocabulary, so that embedding stays fast.
fn text(rng: &mut StdRng) -> String {
    const WORDS: &[&str] = &[
        "tide", "moon", "bee", "dance", "volcano", "magma", "river", "delta", "storm", "cloud",
        "forest", "fern", "glacier", "ice", "desert", "dune",
    ];
    let paragraphs = rng.random_range(1..=2);
    (0..paragraphs)
        .map(|_| {
            let n = rng.random_range(3..=7);
            let words: Vec<&str> = (0..n)
                .map(|_| WORDS[rng.random_range(0..WORDS.len())])
                .collect();
            format!("{}.", words.join(" "))
        })
        .collect::<Vec<_>>()
        .join("\n\n")
}

/// The fixtures the random runs share: one database (each run is its own user there), the
/// REST API, and the cutting proxy (none against a real Supabase project: it sits on a plaintext
/// loopback connection, so those runs sync directly where they would have gone through it).
struct World {
    db: Db,
    api: RestApi,
    proxy: Option<FaultProxy>,
}

/// One random run: two devices, ~30 operations, then a final round of syncs.
async fn random_run(world: &World, seed: u64, log: &mut Vec<String>) -> TestResult {
    let mut rng = StdRng::seed_from_u64(seed);
    let u = user();
    let pg = world.db.pg(&u);
    let rest = world.api.central(&u);
    let cutter = match &world.proxy {
        Some(proxy) => Some((proxy, via(&world.db.url, proxy.addr())?)),
        None => None,
    };
    let mut devices = [Device::new()?, Device::new()?];
    // (home device, source) of every document made.
    let mut docs: Vec<(usize, String)> = Vec::new();

    for step in 0..30 {
        let d = rng.random_range(0..2);
        let name = ["A", "B"][d];
        match rng.random_range(0..100) {
            0..=19 => {
                let source = format!("notes/{seed}-{step}.md");
                devices[d].put(&source, &text(&mut rng))?;
                log.push(format!("{name} puts {source}"));
                docs.push((d, source));
            }
            20..=34 if !docs.is_empty() => {
                let (home, source) = docs[rng.random_range(0..docs.len())].clone();
                devices[home].put(&source, &text(&mut rng))?;
                log.push(format!("{} edits {source}", ["A", "B"][home]));
            }
            35..=44 => {
                let live = devices[d].engine.list_documents(None, false, 1000)?;
                if !live.is_empty() {
                    let doc = &live[rng.random_range(0..live.len())];
                    devices[d].engine.delete_document(&doc.id)?;
                    log.push(format!("{name} deletes {}", doc.source));
                }
            }
            45..=50 => {
                devices[d]
                    .engine
                    .create_conversation(&format!("chat {seed}-{step}"))?;
                log.push(format!("{name} starts chat {seed}-{step}"));
            }
            51..=60 => {
                let convs = devices[d].engine.conversations(None, 100)?;
                if !convs.is_empty() {
                    let conv = &convs[rng.random_range(0..convs.len())];
                    let content = text(&mut rng);
                    let vector = if rng.random_bool(0.3) {
                        Some(devices[d].embedder().embed(&[content.as_str()])?.remove(0))
                    } else {
                        None
                    };
                    devices[d].engine.add_message_with_vector(
                        &conv.id,
                        "user",
                        &content,
                        vector.as_deref(),
                    )?;
                    log.push(format!("{name} says something in '{}'", conv.title));
                }
            }
            61..=67 => {
                let skew = rng.random_range(-3_600_000..=3_600_000);
                devices[d].engine.set_clock_skew_ms(skew);
                log.push(format!("{name}'s clock is off by {skew} ms"));
            }
            _ => {
                let mut opts = [(); 2].map(|_| {
                    let mut o = quick(devices[0].options(), 2_000);
                    o.batch_size = rng.random_range(1..=5);
                    o.pull_page = rng.random_range(1..=5);
                    o
                });
                let sizes = format!("batch {}, page {}", opts[d].batch_size, opts[d].pull_page);
                let how = match rng.random_range(0..4) {
                    2 if cutter.is_none() => 0,
                    how => how,
                };
                let results = match how {
                    0 => vec![sync_with(&mut devices[d], &pg, &opts[d]).await],
                    1 => vec![sync_with(&mut devices[d], &rest, &opts[d]).await],
                    2 => {
                        let (proxy, proxy_url) = cutter.as_ref().expect("a proxy to cut with");
                        let cut = if rng.random_bool(0.5) {
                            Cut::RequestAfterBytes(rng.random_range(100..20_000))
                        } else {
                            Cut::AfterCommits(rng.random_range(1..=3))
                        };
                        log.push(format!("the proxy will cut: {cut:?}"));
                        proxy.cut_next([cut]);
                        let central = Central::new(outpost_sync::pg::PgTransport::new(
                            proxy_url,
                            &u,
                            Duration::from_secs(5),
                        )?);
                        opts[d].backoff.give_up_after = Some(Duration::from_secs(5));
                        vec![sync_with(&mut devices[d], &central, &opts[d]).await]
                    }
                    _ => {
                        // Both at once, their transactions interleaved on the server.
                        let [a, b] = &mut devices;
                        let (oa, ob) = (&opts[0], &opts[1]);
                        let (ra, rb) = tokio::join!(sync_with(a, &pg, oa), sync_with(b, &rest, ob));
                        vec![ra, rb]
                    }
                };
                let what = match how {
                    0 => format!("{name} syncs via postgres ({sizes})"),
                    1 => format!("{name} syncs via REST ({sizes})"),
                    2 => format!("{name} syncs via the proxy ({sizes})"),
                    _ => "A (postgres) and B (REST) sync at once".to_string(),
                };
                for result in results {
                    match result {
                        Ok(r) => {
                            log.push(format!("{what}: pushed {}, pulled {}", r.pushed, r.pulled))
                        }
                        Err(e) => {
                            log.push(format!("{what}: {e}"));
                            ensure!(e.is_retryable(), "a cut may only cost a retry: {e}");
                        }
                    }
                }
            }
        }
    }
    // Leave no cut planned for the next run.
    if let Some(proxy) = &world.proxy {
        proxy.clear_cuts();
    }

    let [a, b] = &mut devices;
    a.sync(&pg).await?;
    common::settle(&world.db).await?;
    b.sync(&pg).await?;
    common::settle(&world.db).await?;
    a.sync(&pg).await?;
    let depths = (a.engine.outbox_depth()?, b.engine.outbox_depth()?);
    ensure!(depths == (0, 0), "outboxes left: {depths:?}");
    let (ca, cb) = (a.engine.checksums()?, b.engine.checksums()?);
    ensure!(ca == cb, "the devices differ:\n  A {ca:?}\n  B {cb:?}");
    let (va, vb) = (a.verify(&pg).await?, b.verify(&pg).await?);
    ensure!(va.equal, "A and the central store differ: {va:?}");
    ensure!(vb.equal, "B and the central store differ: {vb:?}");
    let central = central_counts(&world.db, &u).await?;
    let (la, lb) = (local_counts(&a.engine)?, local_counts(&b.engine)?);
    ensure!(
        central == la && central == lb,
        "rows (documents, chunks, conversations, messages): central {central:?}, A {la:?}, B {lb:?}"
    );
    Ok(())
}

#[tokio::test]
async fn random_interleavings_of_edits_skew_and_cuts_converge() -> TestResult {
    let _turn = SERVER.lock().await;
    let db = Db::new(true).await?;
    let proxy = match common::target() {
        common::Target::Local { .. } => Some(FaultProxy::start(pg_addr(&db.url)?).await?),
        common::Target::Supabase(_) => None,
    };
    let world = World {
        api: db.rest_api().await?,
        proxy,
        db,
    };
    let seeds = 0..20u64;
    for seed in seeds.clone() {
        let mut log = Vec::new();
        if let Err(e) = random_run(&world, seed, &mut log).await {
            eprintln!("seed {seed} failed after:\n  {}", log.join("\n  "));
            return Err(format!("seed {seed}: {e}").into());
        }
        if std::env::var_os("OUTPOST_TEST_LOG").is_some() {
            eprintln!("seed {seed}:\n  {}", log.join("\n  "));
        }
    }
    // The runs did meet the faults they were meant to meet.
    let Some(proxy) = &world.proxy else {
        return Ok(());
    };
    let cuts = proxy.cuts();
    assert!(
        cuts as u64 >= seeds.end / 2,
        "only {cuts} connections were cut"
    );
    eprintln!("{cuts} connections cut in {} runs", seeds.end);
    Ok(())
}
