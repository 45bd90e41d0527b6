//! The sync soak (issue 19's "done when"): two agents, two devices of one user, sync in the
//! background for `OUTPOST_SOAK_SECS` seconds (60 by default, as `scripts/test.sh` runs it; the
//! 10-minute run is recorded in docs/SYNC.md) through the Supabase stand-in in front of the real
//! Postgres, with:
//!
//! - 30-second access tokens (each device signed in once, with `outpost login`);
//! - the `authenticated` role's `statement_timeout` at 8 s, as Supabase sets it;
//! - the fault proxy between the devices and the stand-in, cycling through latency with a
//!   bandwidth cap, requests and answers cut mid-way, a stalled link, a severed one and a
//!   refusing one;
//! - both devices writing, editing and deleting notes all along, and device A holding a
//!   5,000-chunk document from the start (pushed in staged parts).
//!
//! Then, the faults lifted, everything converges: both devices and the central store hold the
//! same documents (`outpost verify` clean on both), every note is there once in its last
//! version or as a tombstone, the large document whole on B, nothing left staged, and neither
//! device lost its session (still the one session each began with, its refresh token rotated
//! many times).

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use outpost_sync::faultproxy::{Cut, FaultProxy, Faults};
use serde_json::{json, Value};
use tokio::sync::Mutex;

use common::agent::{Agent, Start};
use common::central::Central;
use common::{outpost_command, TestDb, TestResult};

const KEY: &str = "sb_publishable_soak";
const SECRET: &str = "outpost-soak-test-secret-with-32-chars!";
const EMAIL: &str = "soak@example.com";
const PASSWORD: &str = "soak-password";
/// Chunks of the large document: 5,000 paragraphs of 40 words, one chunk each at 50 tokens.
const LARGE_CHUNKS: u64 = 5_000;

/// A small deterministic generator (xorshift), so that a failing run can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// What a device's notes should be at the end: source → last text, or `None` once deleted.
type Expected = BTreeMap<String, Option<String>>;

/// One device: its database, its own `OUTPOST_HOME` (and so its own session), its agent.
struct Device {
    name: &'static str,
    db: TestDb,
    home: tempfile::TempDir,
}

impl Device {
    fn new(name: &'static str) -> TestResult<Self> {
        Ok(Self {
            name,
            db: TestDb::new()?,
            home: tempfile::tempdir()?,
        })
    }

    /// `outpost ARGS` on this device as the user, through `url`: (exit code, stdout, stderr).
    fn run(&self, url: &str, args: &[&str], stdin: &str) -> TestResult<(i32, String, String)> {
        use std::io::Write as _;
        let mut child = outpost_command(self.db.path(), args)
            .env("OUTPOST_HOME", self.home.path())
            .env("OUTPOST_SUPABASE_URL", url)
            .env("OUTPOST_SUPABASE_ANON_KEY", KEY)
            .env("OUTPOST_EMBEDDER", "hash")
            .env_remove("OUTPOST_SUPABASE_JWT")
            .env_remove("OUTPOST_CENTRAL_URL")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()?;
        child
            .stdin
            .take()
            .ok_or("no stdin")?
            .write_all(stdin.as_bytes())?;
        let out = child.wait_with_output()?;
        Ok((
            common::exit_code(out.status),
            String::from_utf8(out.stdout)?,
            String::from_utf8(out.stderr)?,
        ))
    }

    fn agent(&self, url: &str) -> TestResult<Agent> {
        let home = self.home.path().to_str().ok_or("a UTF-8 path")?;
        Agent::start(Start {
            args: &["--sync-interval", "2"],
            config: "[sync]\ntimeout_s = 30\n",
            env: &[
                ("OUTPOST_HOME", home),
                ("OUTPOST_SUPABASE_URL", url),
                ("OUTPOST_SUPABASE_ANON_KEY", KEY),
            ],
            embedder: "hash",
            ..Start::new(self.db.path())
        })
    }
}

/// The faults of one phase of `n`, cycling: the proxy is never clean for long.
fn phase(proxy: &FaultProxy, n: u64, rng: &mut Rng) {
    let slow = Faults {
        latency: Duration::from_millis(25),
        bytes_per_sec: Some(4 * 1024 * 1024),
        ..Faults::default()
    };
    proxy.clear_cuts();
    match n % 5 {
        // A slow link (50 ms round trips, 4 MiB/s each way).
        0 => proxy.set(slow),
        // Requests and answers cut part-way: the open connections dropped, so that the next
        // ones (which the cuts break) come at once.
        1 => {
            proxy.set(slow);
            proxy.sever();
            proxy.cut_next([
                Cut::RequestAfterBytes(1 + rng.below(64 * 1024) as usize),
                Cut::ResponseAfterBytes(1 + rng.below(16 * 1024) as usize),
                Cut::RequestAfterBytes(1 + rng.below(2 * 1024 * 1024) as usize),
                Cut::ResponseAfterBytes(1 + rng.below(4 * 1024 * 1024) as usize),
            ]);
        }
        // A link that stops moving bytes, connections left open.
        2 => proxy.set(Faults {
            stalled: true,
            ..slow
        }),
        // A link that goes away: open connections dropped.
        3 => {
            proxy.set(slow);
            proxy.sever();
        }
        // The server unreachable.
        _ => {
            proxy.set(Faults {
                refuse: true,
                ..slow
            });
            proxy.sever();
        }
    }
}

/// Writes, edits and deletes notes on `agent` until `until`, recording what should remain.
async fn write_notes(
    device: &'static str,
    agent: &Agent,
    until: Instant,
    seed: u64,
    expected: Arc<Mutex<Expected>>,
) -> TestResult<usize> {
    let mut rng = Rng(seed);
    let mut ids: BTreeMap<String, String> = BTreeMap::new();
    let mut writes = 0;
    while Instant::now() < until {
        let n = rng.below(40);
        let source = format!("soak/{device}/{n}");
        let live = ids.get(&source).cloned();
        if let (Some(id), 0) = (&live, rng.below(4)) {
            let (status, v) = agent
                .call(
                    reqwest::Method::DELETE,
                    &format!("/v1/documents/{id}"),
                    None,
                    None,
                )
                .await?;
            if status != 200 {
                return Err(format!("delete {source}: {status} {v}").into());
            }
            ids.remove(&source);
            expected.lock().await.insert(source, None);
        } else {
            let text = format!(
                "Note {n} of {device}, version {} ({} words of field notes on rivers).",
                rng.next(),
                rng.below(100)
            );
            let (status, v) = agent
                .post(
                    "/v1/documents",
                    &json!({ "text": text, "source": source, "collection": "soak" }),
                )
                .await?;
            if !(status == 200 || status == 201) {
                return Err(format!("write {source}: {status} {v}").into());
            }
            let id = v[0]["id"].as_str().ok_or("no id")?.to_string();
            ids.insert(source.clone(), id);
            expected.lock().await.insert(source, Some(text));
        }
        writes += 1;
        tokio::time::sleep(Duration::from_millis(150 + rng.below(300))).await;
    }
    Ok(writes)
}

/// The `host:port` of an `http://host:port` URL.
fn addr_of(url: &str) -> TestResult<SocketAddr> {
    Ok(url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_agents_converge_after_minutes_of_faults_short_sessions_and_a_5000_chunk_document(
) -> TestResult {
    let secs: u64 = std::env::var("OUTPOST_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let started = Instant::now();

    // The central store: Postgres with Supabase's roles, the `authenticated` role's 8 s.
    let central = Central::new("soak").await?;
    let admin = common::central::connect(&central.url).await?;
    admin
        .batch_execute(&format!(
            "alter role authenticated in database {} set statement_timeout = '8s'",
            central.name
        ))
        .await?;
    let mut config = outpost_sync::shim::ShimConfig::new(&central.url, KEY, SECRET);
    config.access_ttl = Duration::from_secs(30);
    let shim = outpost_sync::shim::Shim::start_with(config).await?;
    let user = outpost_sync::shim::create_user(&central.url, EMAIL, PASSWORD).await?;
    let proxy = FaultProxy::start(addr_of(&shim.url)?).await?;
    let url = format!("http://{}", proxy.addr());

    // Device A holds the large document before it starts; each device signs in once.
    let (a, b) = (Device::new("a")?, Device::new("b")?);
    let large = a.db.dir().join("large.md");
    let mut rng = Rng(0x5eed_1234_abcd_0042);
    let words = [
        "river", "delta", "glacier", "valley", "basin", "sediment", "flood", "meander",
    ];
    let text: Vec<String> = (0..LARGE_CHUNKS)
        .map(|p| {
            let line: Vec<&str> = (0..40)
                .map(|_| words[rng.below(words.len() as u64) as usize])
                .collect();
            format!("Paragraph {p}: {}.", line.join(" "))
        })
        .collect();
    std::fs::write(&large, text.join("\n\n"))?;
    let large_path = large.to_str().ok_or("a UTF-8 path")?;
    let (code, _, err) = a.run(
        &url,
        &[
            "ingest",
            "--collection",
            "large",
            "--chunk-tokens",
            "50",
            large_path,
        ],
        "",
    )?;
    assert_eq!(code, 0, "{err}");
    assert_eq!(a.db.chunks()?, LARGE_CHUNKS);
    for d in [&a, &b] {
        let (code, _, err) = d.run(
            &url,
            &["login", "--email", EMAIL, "--password-stdin"],
            &format!("{PASSWORD}\n"),
        )?;
        assert_eq!(code, 0, "{} login: {err}", d.name);
    }
    let agent_a = a.agent(&url)?;
    let agent_b = b.agent(&url)?;

    // Minutes of writes on both, through a proxy that keeps failing.
    let until = Instant::now() + Duration::from_secs(secs);
    let expected = Arc::new(Mutex::new(Expected::new()));
    let faults = async {
        let mut rng = Rng(0xfa17_5eed);
        let mut n = 0;
        while Instant::now() < until {
            phase(&proxy, n, &mut rng);
            n += 1;
            tokio::time::sleep(Duration::from_millis(2_000 + rng.below(4_000))).await;
        }
        n
    };
    let (phases, writes_a, writes_b) = tokio::join!(
        faults,
        write_notes("a", &agent_a, until, 0xa11ce, expected.clone()),
        write_notes("b", &agent_b, until, 0xb0b, expected.clone()),
    );
    let (writes_a, writes_b) = (writes_a?, writes_b?);

    // The faults lifted: rounds on both until both outboxes are empty and B has caught up.
    proxy.clear_cuts();
    proxy.set(Faults::default());
    let wait = Duration::from_secs(300);
    let deadline = Instant::now() + wait;
    loop {
        let mut settled = true;
        for agent in [&agent_a, &agent_b, &agent_a] {
            let (status, report) = agent.post("/v1/sync", &json!({})).await?;
            let (_, sync) = agent.get("/v1/sync/status").await?;
            settled &= status == 200
                && sync["outbox_depth"] == 0
                && sync["parked"].as_array().is_some_and(Vec::is_empty)
                && report["pulled"] == 0
                && report["pushed"] == 0;
        }
        if settled {
            break;
        }
        if Instant::now() > deadline {
            let (_, a_status) = agent_a.get("/v1/sync/status").await?;
            let (_, b_status) = agent_b.get("/v1/sync/status").await?;
            return Err(format!(
                "no convergence within {wait:?}: A {a_status}, B {b_status}; A's log:\n{}",
                agent_a.logs()
            )
            .into());
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }

    let converging = until.elapsed();

    // `outpost verify` is clean on both devices.
    for d in [&a, &b] {
        let (code, out, err) = d.run(&url, &["verify", "--json"], "")?;
        assert_eq!(code, 0, "{} verify: {out}{err}", d.name);
        let v: Value = serde_json::from_str(&out)?;
        assert_eq!(v["equal"], true, "{} verify: {v}", d.name);
    }

    // Every note once on the central store, in its last version or deleted.
    let expected = expected.lock().await.clone();
    let rows = admin
        .query(
            "select d.source, d.deleted, string_agg(c.content, ' ' order by c.ordinal), count(*) over (partition by d.source)
               from public.outpost_documents d
               left join public.outpost_document_chunks c on c.owner = d.owner and c.document_id = d.id
              where d.owner = $1::text::uuid and d.collection = 'soak'
              group by d.source, d.deleted",
            &[&user],
        )
        .await?;
    let mut central_notes = Expected::new();
    for row in rows {
        let (source, deleted, text, copies): (String, bool, Option<String>, i64) =
            (row.get(0), row.get(1), row.get(2), row.get(3));
        assert_eq!(copies, 1, "{source} is on the central store {copies} times");
        central_notes.insert(source, if deleted { None } else { text });
    }
    assert_eq!(
        central_notes.len(),
        expected.len(),
        "notes written vs on the central store"
    );
    for (source, want) in &expected {
        assert_eq!(
            central_notes.get(source),
            Some(want),
            "{source} on the central store"
        );
    }

    // The large document whole on the central store and on B; nothing left staged.
    let chunks_of = |collection: &'static str| {
        let admin = &admin;
        let user = &user;
        async move {
            let row = admin
                .query_one(
                    "select count(*) from public.outpost_document_chunks c
                       join public.outpost_documents d on d.owner = c.owner and d.id = c.document_id
                      where d.owner = $1::text::uuid and d.collection = $2",
                    &[user, &collection],
                )
                .await?;
            Ok::<i64, tokio_postgres::Error>(row.get(0))
        }
    };
    assert_eq!(chunks_of("large").await?, LARGE_CHUNKS as i64);
    let staged: i64 = admin
        .query_one("select count(*) from public.outpost_staged_chunks", &[])
        .await?
        .get(0);
    assert_eq!(staged, 0, "staged chunks left behind");
    let (_, b_large) = agent_b.get("/v1/documents?collection=large").await?;
    let b_large = b_large["documents"].as_array().ok_or("no documents")?;
    assert_eq!(b_large.len(), 1);
    assert_eq!(b_large[0]["chunks"].as_u64(), Some(LARGE_CHUNKS));

    // Never signed out: each device still has the one session its login began, refreshed
    // along the way (each refresh rotates the session's refresh token).
    let sessions: i64 = admin
        .query_one(
            "select count(*) from auth.sessions where user_id = $1::text::uuid",
            &[&user],
        )
        .await?
        .get(0);
    assert_eq!(sessions, 2, "one session per device: no new login");
    let rotated: i64 = admin
        .query_one(
            "select count(*) from auth.refresh_tokens t join auth.sessions s on s.id = t.session_id
              where s.user_id = $1::text::uuid and t.revoked",
            &[&user],
        )
        .await?
        .get(0);
    let lifetimes = (started.elapsed().as_secs() / 30) as i64;
    assert!(
        rotated >= lifetimes,
        "{rotated} refreshes over {lifetimes} token lifetimes"
    );
    for (name, agent) in [("a", &agent_a), ("b", &agent_b)] {
        let (_, status) = agent.get("/v1/sync/status").await?;
        assert!(
            status["central"]["session"].is_object(),
            "{name} has no session: {status}"
        );
        assert!(
            !agent.logs().contains("signed out"),
            "{name} was signed out:\n{}",
            agent.logs()
        );
    }
    println!(
        "soak: {secs} s, {phases} fault phases, {} connections ({} cut), {} MB up, {} MB down, {writes_a}+{writes_b} writes, {} notes, {LARGE_CHUNKS}-chunk document, {rotated} token refreshes, converged after {:.0} s",
        proxy.connections(),
        proxy.cuts(),
        proxy.bytes().0 / 1_000_000,
        proxy.bytes().1 / 1_000_000,
        expected.len(),
        converging.as_secs_f64()
    );
    Ok(())
}
