//! `kill -9` in the middle of a sync: an `outpost sync` process killed mid-push, and an
//! `outpost bootstrap` killed mid-pull, each on a slow link (the fault proxy,
//! `outpost_sync::faultproxy`, in front of the real PostgreSQL that `scripts/test.sh` starts).
//! The rerun resumes: in the end every document is on the central store and on the device
//! exactly once, the outbox is empty, `outpost verify` finds the replicas equal and SQLite's own
//! integrity check passes. What is synced does not need to mean anything, so the devices embed
//! with `--embedder hash`.

mod common;

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use outpost_sync::faultproxy::{FaultProxy, Faults};
use serde_json::Value;

use common::central::{outpost_as, Central};
use common::{arg, exit_code, python_sqlite, TestDb, TestResult};

const FILES: usize = 120;

/// A device that ingested `FILES` notes of a few chunks each (the files are gone afterwards:
/// sync reads only the database).
fn device_with_notes() -> TestResult<TestDb> {
    let db = TestDb::new()?;
    let folder = tempfile::tempdir()?;
    for f in 0..FILES {
        let text: String = (0..6)
            .map(|p| format!("Paragraph {p} of note {f}: moraines, meltwater and the ice.\n\n"))
            .collect();
        std::fs::write(folder.path().join(format!("n{f:03}.md")), text)?;
    }
    let out = db
        .command(&["--embedder", "hash", "ingest", arg(folder.path())])
        .output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(db)
}

/// `outpost --embedder hash --db DB ARGS` against `url` as `user`, not yet waited for.
fn spawn(db: &TestDb, url: &str, user: &str, args: &[&str]) -> TestResult<Child> {
    Ok(outpost_as(db, url, user, args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?)
}

/// Runs `outpost --embedder hash ARGS` against `url` as `user` to its end; must succeed.
fn run(db: &TestDb, url: &str, user: &str, args: &[&str]) -> TestResult<String> {
    let out = spawn(db, url, user, args)?.wait_with_output()?;
    let stderr = String::from_utf8(out.stderr)?;
    if !out.status.success() {
        return Err(format!("`outpost {}` failed: {stderr}", args.join(" ")).into());
    }
    Ok(stderr)
}

/// Waits until `done` holds (checked every 50 ms), then kills `child` with SIGKILL; fails if
/// the child ended first (the kill would have tested nothing).
async fn kill_when(
    child: &mut Child,
    what: &str,
    mut done: impl AsyncFnMut() -> TestResult<bool>,
) -> TestResult {
    let started = Instant::now();
    while !done().await? {
        if let Some(status) = child.try_wait()? {
            return Err(format!(
                "the process ended ({}) before {what}: the kill came too late",
                exit_code(status)
            )
            .into());
        }
        if started.elapsed() > Duration::from_secs(120) {
            return Err(format!("{what} never happened").into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    child.kill()?;
    let status = child.wait()?;
    assert_eq!(exit_code(status), 128 + 9, "killed by SIGKILL");
    Ok(())
}

/// Live documents in the device's database, read by an independent SQLite.
fn local_documents(db: &TestDb) -> TestResult<i64> {
    Ok(python_sqlite(
        db.path(),
        "SELECT count(*) FROM documents WHERE deleted = 0",
    )?
    .parse()?)
}

async fn central_documents(central: &Central, user: &str) -> TestResult<i64> {
    central
        .scalar(&format!(
            "SELECT count(*) FROM outpost_documents WHERE owner = '{user}'::uuid AND NOT deleted"
        ))
        .await
}

/// Everything that must hold of a device once a sync has finished after the kill.
async fn converged(db: &TestDb, central: &Central, url: &str, user: &str) -> TestResult {
    assert_eq!(local_documents(db)?, FILES as i64);
    assert_eq!(
        python_sqlite(db.path(), "SELECT count(DISTINCT source) FROM documents")?,
        FILES.to_string(),
        "a document is stored twice"
    );
    assert_eq!(python_sqlite(db.path(), "PRAGMA integrity_check")?, "ok");
    assert_eq!(central_documents(central, user).await?, FILES as i64);
    assert_eq!(
        central
            .scalar(&format!(
                "SELECT count(DISTINCT source) FROM outpost_documents WHERE owner = '{user}'::uuid"
            ))
            .await?,
        FILES as i64,
        "a document is on the central store twice"
    );
    let status: Value = db.json(&["sync", "status", "--json"])?;
    assert_eq!(status["outbox_depth"], 0, "{status}");
    let out = spawn(db, url, user, &["verify", "--json"])?.wait_with_output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let verify: Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(verify["equal"], true, "{verify}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_killed_mid_push_resumes_without_loss_or_duplicates() -> TestResult {
    let central = Central::new("kill_push").await?;
    let proxy = FaultProxy::start(central.addr).await?;
    let url = central.via(proxy.addr());
    let user = uuid::Uuid::now_v7().to_string();
    let db = device_with_notes()?;

    // A slow link, and small batches: the push commits batch after batch, and is killed
    // after the first ones are on the server.
    proxy.set(Faults {
        bytes_per_sec: Some(64 * 1024),
        ..Faults::default()
    });
    let mut sync = spawn(&db, &url, &user, &["sync", "--once", "--batch-size", "10"])?;
    kill_when(&mut sync, "the first batches were pushed", async || {
        Ok(central_documents(&central, &user).await? >= 10)
    })
    .await?;
    let pushed = central_documents(&central, &user).await?;
    assert!(
        pushed < FILES as i64,
        "all {pushed} were pushed before the kill"
    );

    // The rerun pushes the rest (what was committed but not acknowledged comes back as a
    // duplicate) and nothing twice.
    proxy.set(Faults::default());
    run(&db, &url, &user, &["sync", "--once"])?;
    converged(&db, &central, &url, &user).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bootstrap_killed_mid_pull_resumes_without_loss_or_duplicates() -> TestResult {
    let central = Central::new("kill_pull").await?;
    let proxy = FaultProxy::start(central.addr).await?;
    let url = central.via(proxy.addr());
    let user = uuid::Uuid::now_v7().to_string();

    // One device puts everything on the central store.
    let first = device_with_notes()?;
    run(&first, &url, &user, &["sync", "--once"])?;
    assert_eq!(central_documents(&central, &user).await?, FILES as i64);

    // A new device bootstraps in small pages over a slow link and is killed once some pages
    // are stored.
    let second = TestDb::new()?;
    let (code, _, stderr) = second.run(&["init"])?;
    assert_eq!(code, 0, "{stderr}");
    proxy.set(Faults {
        bytes_per_sec: Some(64 * 1024),
        ..Faults::default()
    });
    let mut bootstrap = spawn(&second, &url, &user, &["bootstrap", "--pull-page", "10"])?;
    kill_when(&mut bootstrap, "the first pages were stored", async || {
        Ok(second.path().exists() && local_documents(&second).unwrap_or(0) >= 10)
    })
    .await?;
    let pulled = local_documents(&second)?;
    assert!(
        pulled < FILES as i64,
        "all {pulled} were pulled before the kill"
    );

    // A sync resumes from the stored cursor.
    proxy.set(Faults::default());
    run(&second, &url, &user, &["sync", "--once"])?;
    converged(&second, &central, &url, &user).await
}
