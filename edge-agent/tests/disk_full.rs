//! A full disk (issue 23): ingest, import, an index save and a sync pull that run out of space
//! fail with a "disk full" error naming the file, leave the database consistent (SQLite's
//! integrity check from an independent SQLite, and `outpost verify --local`), and succeed when
//! run again once space is freed, adding nothing twice.
//!
//! The small disk is a real filesystem with a size limit: a tmpfs mounted for the test (as root,
//! or through `sudo -n`), filled with a ballast file until a few hundred KiB are left, so that
//! SQLite and the index writers meet a real `ENOSPC` part-way through. Freeing space is deleting
//! the ballast. The agent answers a write on a full disk with 507 and keeps serving. The vectors
//! do not matter here, so the devices embed with `--embedder hash`.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::agent::{Agent, Start};
use common::central::Central;
use common::{arg, outpost, outpost_command, python_sqlite, TestResult};

/// A tmpfs of its own, mounted on a fresh temporary folder and unmounted when dropped.
struct SmallDisk {
    dir: tempfile::TempDir,
}

/// `cmd` as root: directly when the tests run as root (CI), else through `sudo -n`.
fn as_root(cmd: &[&str]) -> Command {
    // `id -u` prints 0 for root.
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    let mut c = if root {
        Command::new(cmd[0])
    } else {
        let mut c = Command::new("sudo");
        c.args(["-n", cmd[0]]);
        c
    };
    c.args(&cmd[1..]);
    c
}

impl SmallDisk {
    /// A `mib`-MiB tmpfs at `at` (a fresh folder when `None`).
    fn mount(mib: u64, at: Option<&Path>) -> TestResult<Self> {
        let dir = tempfile::tempdir()?;
        let target = at.map_or_else(|| dir.path().to_path_buf(), Path::to_path_buf);
        std::fs::create_dir_all(&target)?;
        let out = as_root(&[
            "mount",
            "-t",
            "tmpfs",
            "-o",
            &format!("size={mib}m,mode=0777"),
            "outpost-small-disk",
            arg(&target),
        ])
        .output()?;
        if !out.status.success() {
            return Err(format!(
                "mounting a {mib} MiB tmpfs on {} failed (this test needs root or passwordless \
                 sudo to make a small disk): {}",
                target.display(),
                String::from_utf8_lossy(&out.stderr)
            )
            .into());
        }
        // The folder now holds the mount; when `at` is given, `dir` only keeps the ballast's
        // name unique.
        let disk = Self { dir };
        if at.is_some() {
            std::fs::write(disk.dir.path().join("mounted-at"), arg(&target))?;
        }
        Ok(disk)
    }

    /// Where the filesystem is mounted.
    fn root(&self) -> PathBuf {
        std::fs::read_to_string(self.dir.path().join("mounted-at"))
            .map_or_else(|_| self.dir.path().to_path_buf(), PathBuf::from)
    }

    fn ballast(&self) -> PathBuf {
        self.root().join("ballast")
    }

    /// Fills the disk with the ballast until only `leave` bytes are free.
    fn fill(&self, leave: u64) -> TestResult {
        let mut f = std::fs::File::create(self.ballast())?;
        let block = vec![0x5a_u8; 64 * 1024];
        let mut written = 0u64;
        loop {
            match f.write(&block) {
                Ok(0) => break,
                Ok(n) => written += n as u64,
                Err(e) if e.raw_os_error() == Some(28) => break, // ENOSPC
                Err(e) => return Err(e.into()),
            }
        }
        f.set_len(written.saturating_sub(leave))?;
        f.sync_all()?;
        Ok(())
    }

    /// Deletes the ballast: the disk has room again.
    fn free(&self) -> TestResult {
        std::fs::remove_file(self.ballast())?;
        Ok(())
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = as_root(&["umount", "-l", arg(&self.root())]).status();
    }
}

/// Notes of a few chunks each, different enough that none is skipped as unchanged.
fn write_notes(dir: &Path, first: usize, count: usize) -> TestResult {
    std::fs::create_dir_all(dir)?;
    let mut x = 0x2545_f491_4f6c_dd1d_u64 ^ first as u64;
    for n in first..first + count {
        let mut text = format!("# Note {n}\n\n");
        for w in 0..1_500 {
            // xorshift: words that repeat rarely, so the full-text index grows too.
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            text.push_str(&format!("w{:x} ", x % 100_000));
            if w % 120 == 119 {
                text.push_str("\n\n");
            }
        }
        std::fs::write(dir.join(format!("note-{n:04}.md")), text)?;
    }
    Ok(())
}

/// `outpost --embedder hash --db DB ARGS`: `(exit code, stdout, stderr)`.
fn hash(db: &Path, args: &[&str]) -> TestResult<(i32, String, String)> {
    outpost(db, &[&["--embedder", "hash"], args].concat())
}

/// The live documents and the sources stored more than once.
fn documents(db: &Path) -> TestResult<(u64, u64)> {
    let live = python_sqlite(db, "SELECT count(*) FROM documents WHERE deleted = 0")?;
    let dup = python_sqlite(
        db,
        "SELECT count(*) FROM (SELECT source FROM documents GROUP BY collection_id, source \
         HAVING count(*) > 1)",
    )?;
    Ok((live.parse()?, dup.parse()?))
}

/// SQLite (Python's, not ours) and `outpost verify --local` both find the database sound.
fn assert_consistent(db: &Path) -> TestResult {
    assert_eq!(python_sqlite(db, "PRAGMA integrity_check")?, "ok");
    let (code, out, err) = outpost(db, &["verify", "--local"])?;
    assert_eq!(code, 0, "outpost verify --local: {out}{err}");
    Ok(())
}

/// A run that ran out of space: it failed, saying "disk full" and naming `file`.
fn assert_disk_full(run: &(i32, String, String), file: &str) {
    let (code, out, err) = run;
    assert_ne!(
        *code, 0,
        "the command should fail on a full disk: {out}{err}"
    );
    assert!(
        err.contains("disk full") && err.contains(file),
        "the error should say 'disk full' and name {file}: {err}"
    );
}

/// No temporary index file left taking space.
fn assert_no_temporary_files(dir: &Path) -> TestResult {
    if dir.is_dir() {
        for e in std::fs::read_dir(dir)? {
            let name = e?.file_name().to_string_lossy().to_string();
            assert!(!name.contains(".tmp-"), "a temporary file was left: {name}");
        }
    }
    Ok(())
}

#[test]
fn an_ingest_that_fills_the_disk_fails_cleanly_and_finishes_when_space_is_freed() -> TestResult {
    let disk = SmallDisk::mount(24, None)?;
    let db = disk.root().join("notes.db");
    let corpus = tempfile::tempdir()?;
    write_notes(&corpus.path().join("first"), 0, 10)?;
    write_notes(&corpus.path().join("more"), 10, 150)?;
    let run = hash(&db, &["ingest", arg(&corpus.path().join("first"))])?;
    assert_eq!(run.0, 0, "{run:?}");

    disk.fill(256 * 1024)?;
    let run = hash(&db, &["ingest", arg(corpus.path())])?;
    assert_disk_full(&run, arg(&db));

    disk.free()?;
    assert_consistent(&db)?;
    let (stored, dup) = documents(&db)?;
    assert!(
        (10..160).contains(&stored),
        "{stored} documents after the failed run"
    );
    assert_eq!(dup, 0);
    assert_no_temporary_files(&PathBuf::from(format!("{}.ann", db.display())))?;

    let run = hash(&db, &["ingest", arg(corpus.path())])?;
    assert_eq!(run.0, 0, "the rerun: {run:?}");
    assert_eq!(documents(&db)?, (160, 0));
    assert_consistent(&db)
}

#[test]
fn an_import_that_fills_the_disk_fails_cleanly_and_finishes_when_space_is_freed() -> TestResult {
    let disk = SmallDisk::mount(24, None)?;
    let db = disk.root().join("import.db");
    let dump = tempfile::tempdir()?;
    let jsonl = dump.path().join("dump.jsonl");
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&jsonl)?);
        let notes = dump.path().join("notes");
        write_notes(&notes, 0, 120)?;
        for n in 0..120 {
            let text = std::fs::read_to_string(notes.join(format!("note-{n:04}.md")))?;
            let record = serde_json::json!({ "id": format!("rec-{n}"), "text": text });
            writeln!(f, "{record}")?;
        }
    }
    disk.fill(256 * 1024)?;
    let run = hash(&db, &["import", "jsonl", arg(&jsonl)])?;
    assert_disk_full(&run, arg(&db));

    disk.free()?;
    assert_consistent(&db)?;
    let run = hash(&db, &["import", "jsonl", arg(&jsonl)])?;
    assert_eq!(run.0, 0, "the rerun: {run:?}");
    assert_eq!(documents(&db)?, (120, 0));
    assert_consistent(&db)
}

#[test]
fn an_index_save_on_a_full_disk_names_the_file_and_leaves_no_half_file() -> TestResult {
    // The database has room; only its derived indexes' folder is on the small disk.
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("x.db");
    let ann = dir.path().join("x.db.ann");
    let disk = SmallDisk::mount(4, Some(&ann))?;
    let corpus = dir.path().join("notes");
    write_notes(&corpus, 0, 60)?;
    disk.fill(0)?;
    let run = hash(&db, &["ingest", arg(&corpus)])?;
    assert_disk_full(&run, arg(&ann));
    assert_no_temporary_files(&ann)?;
    // Everything was stored; the indexes are derived, and searches build them in memory.
    assert_eq!(documents(&db)?, (60, 0));
    let (code, out, err) = hash(&db, &["search", "w1a note", "--mode", "hybrid", "--json"])?;
    assert_eq!(code, 0, "{out}{err}");

    disk.free()?;
    let run = hash(&db, &["ingest", arg(&corpus)])?;
    assert_eq!(run.0, 0, "the rerun: {run:?}");
    let saved: Vec<String> = std::fs::read_dir(&ann)?
        .map(|e| e.map(|e| e.file_name().to_string_lossy().to_string()))
        .collect::<Result<_, _>>()?;
    for suffix in [".usearch", ".vectors", ".lex"] {
        assert!(
            saved.iter().any(|n| n.ends_with(suffix)),
            "no {suffix} file saved: {saved:?}"
        );
    }
    assert_no_temporary_files(&ann)?;
    assert_consistent(&db)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_pull_that_fills_the_disk_resumes_when_space_is_freed() -> TestResult {
    let central = Central::new("diskfull").await?;
    let user = uuid::Uuid::now_v7().to_string();
    let sync = |db: &Path, args: &[&str]| -> TestResult<(i32, String, String)> {
        let out = outpost_command(db, &[&["--embedder", "hash"], args].concat())
            .env("OUTPOST_CENTRAL_URL", &central.url)
            .env("OUTPOST_CENTRAL_USER", &user)
            .env_remove("OUTPOST_SUPABASE_URL")
            .output()?;
        Ok((
            common::exit_code(out.status),
            String::from_utf8(out.stdout)?,
            String::from_utf8(out.stderr)?,
        ))
    };
    // Device A writes on a roomy disk and pushes.
    let a = tempfile::tempdir()?;
    let db_a = a.path().join("a.db");
    write_notes(&a.path().join("notes"), 0, 120)?;
    assert_eq!(hash(&db_a, &["ingest", arg(&a.path().join("notes"))])?.0, 0);
    let run = sync(&db_a, &["sync", "--once"])?;
    assert_eq!(run.0, 0, "{run:?}");

    // Device B pulls onto a nearly full disk.
    let disk = SmallDisk::mount(24, None)?;
    let db_b = disk.root().join("b.db");
    assert_eq!(hash(&db_b, &["init"])?.0, 0);
    disk.fill(256 * 1024)?;
    let run = sync(&db_b, &["sync", "--once"])?;
    assert_disk_full(&run, arg(&db_b));

    disk.free()?;
    assert_consistent(&db_b)?;
    let run = sync(&db_b, &["sync", "--once"])?;
    assert_eq!(run.0, 0, "the rerun: {run:?}");
    assert_eq!(documents(&db_b)?, (120, 0));
    assert_consistent(&db_b)?;
    let run = sync(&db_b, &["verify"])?;
    assert_eq!(
        run.0, 0,
        "outpost verify against the central store: {run:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_answers_507_on_a_full_disk_and_keeps_serving() -> TestResult {
    let disk = SmallDisk::mount(24, None)?;
    let db = disk.root().join("agent.db");
    let agent = Agent::start(Start {
        embedder: "hash",
        ..Start::new(&db)
    })?;
    let note = |n: usize| {
        serde_json::json!({
            "text": format!("Note {n}: {}", "glacier moraine cirque ".repeat(4_000)),
            "source": format!("notes/{n}"),
        })
    };
    let (status, body) = agent.post("/v1/documents", &note(0)).await?;
    assert_eq!(status, 201, "{body}");

    disk.fill(64 * 1024)?;
    let mut refused = None;
    for n in 1..40 {
        let (status, body) = agent.post("/v1/documents", &note(n)).await?;
        if status != 201 {
            refused = Some((n, status, body));
            break;
        }
    }
    let (n, status, body) = refused.ok_or("40 large notes fitted in 64 KiB")?;
    assert_eq!(status, 507, "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("disk full"), "{body}");
    // Still serving reads.
    let (status, _) = agent.get("/healthz").await?;
    assert_eq!(status, 200);
    let (status, found) = agent
        .post(
            "/v1/search",
            &serde_json::json!({ "query": "glacier", "mode": "text" }),
        )
        .await?;
    assert_eq!(status, 200, "{found}");

    disk.free()?;
    let (status, body) = agent.post("/v1/documents", &note(n)).await?;
    assert_eq!(status, 201, "the same write once space is freed: {body}");
    drop(agent);
    assert_eq!(documents(&db)?, (n as u64 + 1, 0));
    assert_consistent(&db)
}
