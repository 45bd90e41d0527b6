//! Shared helpers for the end-to-end tests: run the `outpost` binary against a database in a
//! temporary directory, read its JSON output, and make sure the real embedding model is there.

// Each test binary uses its own subset of these helpers.
#![allow(dead_code)]

use std::error::Error;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};

pub mod agent;
pub mod central;

use serde_json::Value;

/// What the tests return.
pub type TestResult<T = ()> = Result<T, Box<dyn Error>>;

/// The `outpost` binary under test.
pub const OUTPOST: &str = env!("CARGO_BIN_EXE_outpost");

/// The name of the model the CLI embeds with by default.
pub const MODEL: &str = "all-MiniLM-L6-v2";

/// The repository's example corpus.
pub fn corpus() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/corpus"))
}

/// A fixture file of the core crate's tests (`core/tests/fixtures/NAME`).
pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../core/tests/fixtures"
    ))
    .join(name)
}

/// A path as a command-line argument (test paths are always UTF-8).
pub fn arg(path: &Path) -> &str {
    path.to_str().expect("test paths are UTF-8")
}

/// The exit code of a finished process; a process killed by a signal gets 128 + the signal
/// number, as a shell reports it.
pub fn exit_code(status: ExitStatus) -> i32 {
    match (status.code(), status.signal()) {
        (Some(code), _) => code,
        (None, Some(signal)) => 128 + signal,
        (None, None) => -1,
    }
}

/// Waits for `child` to finish, at most `limit`: its status, or `None` if it was still running
/// and has been killed.
pub fn wait_at_most(
    child: &mut std::process::Child,
    limit: std::time::Duration,
) -> TestResult<Option<ExitStatus>> {
    let started = std::time::Instant::now();
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            return Ok(None);
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// The `outpost` command with `--db DB` and then `args`, inheriting the test's environment
/// (`OUTPOST_HOME`, `OUTPOST_MODEL_DIR` ...) except a crash-test failpoint.
pub fn outpost_command(db: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(OUTPOST);
    cmd.arg("--db")
        .arg(db)
        .args(args)
        .env_remove("OUTPOST_FAILPOINT")
        .stdin(Stdio::null());
    cmd
}

/// Runs `outpost --db DB ARGS...` to the end: `(exit code, stdout, stderr)`.
pub fn outpost(db: &Path, args: &[&str]) -> TestResult<(i32, String, String)> {
    let out = outpost_command(db, args).output()?;
    Ok((
        exit_code(out.status),
        String::from_utf8(out.stdout)?,
        String::from_utf8(out.stderr)?,
    ))
}

/// A database file `x.db` in a temporary directory of its own, removed when dropped.
pub struct TestDb {
    dir: tempfile::TempDir,
    path: PathBuf,
}

impl TestDb {
    /// A fresh temporary directory; the database file does not exist until a command opens it.
    pub fn new() -> TestResult<Self> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("x.db");
        Ok(Self { dir, path })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The temporary directory holding it, free for the test's own files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The `outpost` command on this database, for a test that manages the process itself.
    pub fn command(&self, args: &[&str]) -> Command {
        outpost_command(&self.path, args)
    }

    /// Runs `outpost --db x.db ARGS...`: `(exit code, stdout, stderr)`.
    pub fn run(&self, args: &[&str]) -> TestResult<(i32, String, String)> {
        outpost(&self.path, args)
    }

    /// Runs a command that must succeed and print JSON (so `args` holds `--json`); its output.
    pub fn json(&self, args: &[&str]) -> TestResult<Value> {
        let (code, stdout, stderr) = self.run(args)?;
        if code != 0 {
            return Err(
                format!("`outpost {}` exited with {code}: {stderr}", args.join(" ")).into(),
            );
        }
        Ok(serde_json::from_str(&stdout)?)
    }

    /// Runs a command that must fail (exit code other than 0); what it printed, stdout then
    /// stderr, for the test to look for the error message in.
    pub fn fails(&self, args: &[&str]) -> TestResult<String> {
        let (code, stdout, stderr) = self.run(args)?;
        if code == 0 {
            return Err(format!(
                "`outpost {}` succeeded but should fail: {stdout}",
                args.join(" ")
            )
            .into());
        }
        Ok(format!("{stdout}{stderr}"))
    }

    /// Live documents in the database, summed over collections, from `outpost stats --json`.
    pub fn documents(&self) -> TestResult<u64> {
        self.count("documents")
    }

    /// Chunks in the database, summed over collections, from `outpost stats --json`.
    pub fn chunks(&self) -> TestResult<u64> {
        self.count("chunks")
    }

    fn count(&self, field: &str) -> TestResult<u64> {
        let stats = self.json(&["stats", "--json"])?;
        let collections = stats["collections"]
            .as_array()
            .ok_or("stats --json has no collections array")?;
        Ok(collections
            .iter()
            .map(|c| c[field].as_u64().unwrap_or(0))
            .sum())
    }
}

/// Asserts that the real embedding model is installed where the CLI looks for it:
/// `OUTPOST_MODEL_DIR`, or the model cache under `OUTPOST_HOME`.
///
/// # Panics
/// If it is missing, with how to get it.
pub fn require_model() {
    const HOW: &str = "run scripts/test.sh or `outpost models fetch`; set OUTPOST_HOME to the \
                       directory the model was fetched into (or OUTPOST_MODEL_DIR to the model \
                       directory itself)";
    if let Some(dir) = std::env::var_os("OUTPOST_MODEL_DIR").filter(|d| !d.is_empty()) {
        let weights = Path::new(&dir).join("model.safetensors");
        assert!(
            weights.is_file(),
            "the embedding model is not at OUTPOST_MODEL_DIR ({} is missing): {HOW}",
            weights.display()
        );
        return;
    }
    // Ask the binary itself, so the test looks exactly where the CLI will.
    let out = Command::new(OUTPOST)
        .args(["models", "list", "--json"])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {OUTPOST}: {e}"));
    assert!(
        out.status.success(),
        "`outpost models list` failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("`outpost models list --json` printed no JSON: {e}"));
    let model = list["models"]
        .as_array()
        .and_then(|models| models.iter().find(|m| m["name"] == MODEL))
        .unwrap_or_else(|| panic!("`outpost models list --json` does not know {MODEL}"));
    assert!(
        model["present"] == true,
        "the {MODEL} model needed by these tests is not installed at {} (OUTPOST_HOME={:?}): {HOW}",
        model["path"].as_str().unwrap_or("?"),
        std::env::var_os("OUTPOST_HOME").unwrap_or_default(),
    );
}

/// Runs one SQL statement on the database file with Python's `sqlite3` module (an independent
/// SQLite, outside the code under test) and returns the first column of its first row, as
/// Python prints it (empty if no row).
pub fn python_sqlite(db: &Path, sql: &str) -> TestResult<String> {
    const SCRIPT: &str = "import sqlite3, sys\n\
                          c = sqlite3.connect(sys.argv[1])\n\
                          rows = c.execute(sys.argv[2]).fetchall()\n\
                          c.commit()\n\
                          c.close()\n\
                          print(rows[0][0] if rows else '')";
    let out = Command::new("python3")
        .args(["-c", SCRIPT])
        .arg(db)
        .arg(sql)
        .output()
        .map_err(|e| format!("python3 (with its sqlite3 module) is needed by this test: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "python3 sqlite3 `{sql}` on {} failed: {}",
            db.display(),
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    Ok(String::from_utf8(out.stdout)?.trim().to_string())
}

/// The source under which `outpost ingest` stores a file: its canonical absolute path.
pub fn source_of(file: &Path) -> TestResult<String> {
    Ok(std::fs::canonicalize(file)?.display().to_string())
}
