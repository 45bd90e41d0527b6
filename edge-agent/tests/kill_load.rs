//! `kill -9` under load (issue 23): the agent watches a folder, serves HTTP clients that
//! ingest, edit, search and build contexts, and syncs with the real PostgreSQL that
//! `scripts/test.sh` starts, all at once — and is killed at a random moment,
//! `OUTPOST_KILLS` times (12 by default; docs/RELIABILITY.md records runs of 60 and 150),
//! restarting each time. In the end:
//!
//! - every write the agent acknowledged (a 201) is there, once, locally and on the central
//!   store, in its last acknowledged version or in a later one that was sent but not
//!   acknowledged (a write the kill cut short may land or not, never half);
//! - every file put in the watched folder is there once;
//! - SQLite's integrity check passes, `outpost verify --local` (the derived indexes loaded or
//!   rebuilt, then checked against SQLite) is clean, and `outpost verify` finds the central
//!   store equal to the device;
//! - no client ever got an answer other than success or documented back-pressure (429 / 503
//!   with `Retry-After`); refused connections while the agent is down are expected.
//!
//! The schedule (how long each round runs, what each client sends) comes from a seed:
//! `OUTPOST_KILL_SEED` replays a failing run's seed, which every failure message names. The
//! vectors do not matter here, so the agent embeds with `--embedder hash`.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use common::agent::{Agent, Start};
use common::central::{connect, Central};
use common::{arg, outpost_command, python_sqlite, TestDb, TestResult};

/// HTTP clients at once.
const CLIENTS: usize = 6;

/// A small, seedable generator (xorshift64*): the schedule must replay from its seed.
#[derive(Clone)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn fork(&mut self) -> Self {
        Self(self.next() | 1)
    }
}

/// What the clients learned about one source: the version the agent last acknowledged, and
/// every version sent, in order.
#[derive(Default, Debug)]
struct Writes {
    acknowledged: Option<u32>,
    sent: Vec<u32>,
}

impl Writes {
    /// The titles the source may end with: its last acknowledged version, or one sent after
    /// it whose answer the kill cut off (and, if none was acknowledged, none at all).
    fn allowed(&self, source: &str) -> BTreeSet<Option<String>> {
        let from = self
            .acknowledged
            .and_then(|a| self.sent.iter().position(|v| *v == a))
            .unwrap_or(0);
        let mut ok: BTreeSet<Option<String>> = self.sent[from..]
            .iter()
            .map(|v| Some(title(source, *v)))
            .collect();
        if self.acknowledged.is_none() {
            ok.insert(None);
        }
        ok
    }
}

fn title(source: &str, version: u32) -> String {
    format!("{source} v{version}")
}

/// One HTTP client's loop until `stop`: writes (new sources and new versions of its own
/// earlier ones), searches and contexts. Each client owns its sources, so versions are ordered.
async fn client(
    url: String,
    id: usize,
    round: usize,
    mut rng: Rng,
    stop: Arc<AtomicBool>,
    writes: Arc<std::sync::Mutex<BTreeMap<String, Writes>>>,
) -> Result<(), String> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .map_err(|e| e.to_string())?;
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let pick = rng.below(10);
        let (path, body, source) = if pick < 5 {
            // A write: a new source, or the next version of one of this client's own.
            let own: Vec<String> = writes
                .lock()
                .map_err(|e| e.to_string())?
                .keys()
                .filter(|s| s.starts_with(&format!("http/c{id}/")))
                .cloned()
                .collect();
            let source = if own.is_empty() || rng.below(3) == 0 {
                format!("http/c{id}/r{round}-{n}")
            } else {
                own[rng.below(own.len() as u64) as usize].clone()
            };
            let version = {
                let mut all = writes.lock().map_err(|e| e.to_string())?;
                let w = all.entry(source.clone()).or_default();
                let v = w.sent.last().map_or(1, |v| v + 1);
                w.sent.push(v);
                v
            };
            let body = json!({
                "source": source,
                "title": title(&source, version),
                "text": format!("Round {round} client {id} version {version}: {}",
                                "moraine cirque meltwater ".repeat(1 + rng.below(60) as usize)),
            });
            ("/v1/documents", body, Some((source, version)))
        } else if pick < 8 {
            let body = json!({ "query": "meltwater moraine", "k": 5 });
            ("/v1/search", body, None)
        } else if pick < 9 {
            (
                "/v1/context",
                json!({ "query": "cirque", "budget": 256 }),
                None,
            )
        } else {
            ("/v1/sync", json!({}), None)
        };
        let resp = match http.post(format!("{url}{path}")).json(&body).send().await {
            Ok(r) => r,
            // The agent was killed (or is not up yet): the write is unacknowledged.
            Err(_) => continue,
        };
        let status = resp.status().as_u16();
        let retry_after = resp.headers().contains_key("retry-after");
        let Ok(text) = resp.text().await else {
            continue;
        };
        match (status, source) {
            (201, Some((source, version))) => {
                let mut all = writes.lock().map_err(|e| e.to_string())?;
                let w = all.entry(source).or_default();
                w.acknowledged = Some(w.acknowledged.map_or(version, |a| a.max(version)));
            }
            (200 | 201, _) => {}
            // Back-pressure, or the central store briefly out of reach: both say when to retry.
            (429 | 503, _) if retry_after => {}
            _ => return Err(format!("{path} answered {status}: {text}")),
        }
    }
    Ok(())
}

/// A file for the watched folder, written elsewhere and renamed in (as editors save).
fn drop_file(dir: &std::path::Path, spool: &std::path::Path, name: &str) -> TestResult {
    let tmp = spool.join(name);
    std::fs::write(&tmp, format!("{name}: glaciers, moraines and cirques.\n"))?;
    std::fs::rename(&tmp, dir.join(name))?;
    Ok(())
}

/// Local documents (live ones) by source: `(count, title)`.
fn local_documents(db: &std::path::Path) -> TestResult<BTreeMap<String, (u64, String)>> {
    let rows = python_sqlite(
        db,
        "SELECT coalesce(json_group_array(json_array(source, n, title)), '[]') FROM \
         (SELECT source, count(*) AS n, max(title) AS title FROM documents WHERE deleted = 0 \
          GROUP BY source)",
    )?;
    let rows: Vec<(String, u64, String)> = serde_json::from_str(&rows)?;
    Ok(rows.into_iter().map(|(s, n, t)| (s, (n, t))).collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_at_random_moments_under_load_loses_no_acknowledged_write() -> TestResult {
    let seed: u64 = match std::env::var("OUTPOST_KILL_SEED") {
        Ok(s) => s.parse()?,
        Err(_) => {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .as_nanos() as u64
                | 1
        }
    };
    let kills: usize = std::env::var("OUTPOST_KILLS").map_or(Ok(12), |s| s.parse())?;
    let result = run(seed, kills).await;
    result.map_err(|e| {
        format!("kill-under-load run with OUTPOST_KILL_SEED={seed} failed: {e}").into()
    })
}

async fn run(seed: u64, kills: usize) -> TestResult {
    let mut rng = Rng(seed);
    let central = Central::new("killload").await?;
    let user = uuid::Uuid::now_v7().to_string();
    let db = TestDb::new()?;
    let watched = tempfile::tempdir()?;
    let dir = std::fs::canonicalize(watched.path())?;
    let spool = tempfile::tempdir()?;
    let args = ["--watch", arg(&dir), "--sync-interval", "1"];
    let env = [
        ("OUTPOST_CENTRAL_URL", central.url.as_str()),
        ("OUTPOST_CENTRAL_USER", user.as_str()),
    ];
    let start = || Start {
        args: &args,
        config: "[watch]\ndebounce_ms = 50\n\n[sync]\ntimeout_s = 5\n",
        env: &env,
        embedder: "hash",
        ..Start::new(db.path())
    };
    let writes: Arc<std::sync::Mutex<BTreeMap<String, Writes>>> = Arc::default();
    let mut files = Vec::new();
    let mut killed_while = BTreeMap::<&str, usize>::new();

    for round in 0..kills {
        let mut agent = Agent::start(start())?;
        // Most rounds run under load for a while; some are killed while starting up.
        let (millis, when) = match rng.below(8) {
            0 => (rng.below(30), "starting"),
            _ => (100 + rng.below(1_400), "under load"),
        };
        *killed_while.entry(when).or_default() += 1;
        let stop = Arc::new(AtomicBool::new(false));
        let clients: Vec<_> = (0..CLIENTS)
            .map(|id| {
                tokio::spawn(client(
                    agent.url.clone(),
                    id,
                    round,
                    rng.fork(),
                    stop.clone(),
                    writes.clone(),
                ))
            })
            .collect();
        // The folder gets files meanwhile.
        let mut left = millis;
        while left > 0 {
            let step = left.min(50 + rng.below(200));
            tokio::time::sleep(Duration::from_millis(step)).await;
            left -= step;
            let name = format!("f{round:03}-{}.md", files.len());
            drop_file(&dir, spool.path(), &name)?;
            files.push(name);
        }
        // The clients stop starting requests; those in flight are cut by the kill.
        stop.store(true, Ordering::Relaxed);
        agent.kill9()?;
        for c in clients {
            c.await?.map_err(|e| format!("round {round}: {e}"))?;
        }
        let log = agent.logs();
        assert!(
            !log.contains("panicked"),
            "round {round}: the agent panicked: {log}"
        );
        // Each restart opens a database the kill left mid-write.
        let check = python_sqlite(db.path(), "PRAGMA quick_check")?;
        assert_eq!(check, "ok", "round {round}: {check}");
    }

    // A last, undisturbed run: the folder settles and the outbox drains.
    let mut agent = Agent::start(start())?;
    let expected_files = files.len() as f64;
    agent
        .until(
            "the watched folder to be indexed and everything synced",
            Duration::from_secs(120),
            || async {
                let (_, status) = agent.get("/v1/sync/status").await?;
                let m = agent.metrics().await?;
                let queued = common::agent::metric(&m, "outpost_work_queue_depth", "");
                let docs = local_documents(db.path())?;
                let in_folder = docs.keys().filter(|s| s.starts_with(arg(&dir))).count();
                Ok(status["outbox_depth"] == 0
                    && queued == 0.0
                    && in_folder as f64 == expected_files)
            },
        )
        .await?;
    agent.stop()?;

    // Locally: every acknowledged write once, in an allowed version; every file once.
    let local = local_documents(db.path())?;
    let writes = std::mem::take(&mut *writes.lock().map_err(|e| e.to_string())?);
    let mut acknowledged = 0;
    for (source, w) in &writes {
        let found = local.get(source).map(|(n, t)| (*n, t.clone()));
        if w.acknowledged.is_some() {
            acknowledged += 1;
        }
        let allowed = w.allowed(source);
        match found {
            Some((1, t)) if allowed.contains(&Some(t.clone())) => {}
            None if allowed.contains(&None) => {}
            other => {
                return Err(format!(
                    "{source}: found {other:?}, expected one of {allowed:?} ({w:?})"
                )
                .into())
            }
        }
    }
    for f in &files {
        let source = dir.join(f).display().to_string();
        assert_eq!(local.get(&source).map(|x| x.0), Some(1), "{source}");
    }
    assert!(
        acknowledged > 0,
        "no write was acknowledged in {kills} rounds"
    );

    // Centrally: the same documents, once each, with the same titles.
    let pg = connect(&central.url).await?;
    let rows = pg
        .query(
            "SELECT source, count(*), max(title) FROM outpost_documents \
             WHERE owner = $1::text::uuid AND NOT deleted GROUP BY source",
            &[&user],
        )
        .await?;
    let remote: BTreeMap<String, (u64, String)> = rows
        .iter()
        .map(|r| (r.get(0), (r.get::<_, i64>(1) as u64, r.get(2))))
        .collect();
    assert_eq!(remote, local, "the central store differs from the device");

    // Consistent files and indexes, and replicas equal by checksum.
    assert_eq!(python_sqlite(db.path(), "PRAGMA integrity_check")?, "ok");
    let out = outpost_command(db.path(), &["verify", "--local"]).output()?;
    assert!(
        out.status.success(),
        "verify --local: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = outpost_command(db.path(), &["--embedder", "hash", "verify"])
        .env("OUTPOST_CENTRAL_URL", &central.url)
        .env("OUTPOST_CENTRAL_USER", &user)
        .env_remove("OUTPOST_SUPABASE_URL")
        .output()?;
    assert!(
        out.status.success(),
        "verify: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!(
        "kill-under-load: seed {seed}: {kills} kills ({killed_while:?}), {} sources written \
         ({acknowledged} acknowledged), {} files, all present once locally and centrally",
        writes.len(),
        files.len()
    );
    Ok(())
}

#[test]
fn allowed_versions_follow_the_last_acknowledged_one() {
    let w = Writes {
        acknowledged: Some(2),
        sent: vec![1, 2, 3],
    };
    let allowed = w.allowed("s");
    assert_eq!(
        allowed,
        BTreeSet::from([Some("s v2".to_string()), Some("s v3".to_string())])
    );
    let unacknowledged = Writes {
        acknowledged: None,
        sent: vec![1],
    };
    assert!(unacknowledged.allowed("s").contains(&None));
}
