//! The agent's OpenAI-compatible API through the official `openai` Python SDK: the quickstart
//! corpus ingested with the CLI, the agent started on it with a token and its language model,
//! and `edge-agent/tests/openai/test_openai_sdk.py` run against it as a user's app would call it
//! (models, chat completions plain and streamed with their `sources`, embeddings in each
//! encoding, and the SDK's exceptions for the agent's errors).
//!
//! The SDK is pinned by `edge-agent/tests/openai/requirements.txt` and installed by
//! `scripts/test.sh` into a venv whose Python is `$OUTPOST_OPENAI_PYTHON`; without it this test
//! fails rather than skips.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::agent::{Agent, Start};
use common::{exit_code, require_model, wait_at_most, TestDb, TestResult};

/// The bearer token the agent is started with.
const TOKEN: &str = "openai-sdk-test-token";

/// How many tests the Python suite holds: all must run, none skipped.
const TESTS: usize = 20;

/// The longest the suite may take (generation runs on the CPU) before it is killed.
const LIMIT: Duration = Duration::from_secs(20 * 60);

/// The folder of the Python suite and its requirements.
fn suite() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/openai")
}

/// The pinned SDK version, from `requirements.txt` (`openai==X.Y.Z`).
fn pinned_version() -> TestResult<String> {
    let requirements = std::fs::read_to_string(suite().join("requirements.txt"))?;
    requirements
        .lines()
        .find_map(|l| l.trim().strip_prefix("openai=="))
        .map(|v| v.trim().to_string())
        .ok_or_else(|| "requirements.txt pins no `openai==VERSION`".into())
}

/// The Python of the venv holding the pinned SDK: `$OUTPOST_OPENAI_PYTHON`, checked.
fn python() -> TestResult<PathBuf> {
    let version = pinned_version()?;
    let how = format!(
        "run scripts/test.sh, which installs openai=={version} \
         (edge-agent/tests/openai/requirements.txt) into .cache/openai-{version} and sets \
         OUTPOST_OPENAI_PYTHON to its bin/python"
    );
    let python = std::env::var_os("OUTPOST_OPENAI_PYTHON")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .ok_or_else(|| format!("OUTPOST_OPENAI_PYTHON is not set: {how}"))?;
    if !python.is_file() {
        return Err(format!(
            "OUTPOST_OPENAI_PYTHON ({}) does not exist: {how}",
            python.display()
        )
        .into());
    }
    let out = Command::new(&python)
        .args(["-c", "import openai; print(openai.__version__)"])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}: {how}", python.display()))?;
    let found = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if !out.status.success() || found != version {
        return Err(format!(
            "{} has openai {found:?}, not the pinned {version}: {how}\n{}",
            python.display(),
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    Ok(python)
}

#[test]
fn the_openai_python_sdk_uses_the_agent_as_a_user_would() -> TestResult {
    require_model();
    let python = python()?;

    let db = TestDb::new()?;
    let corpus = std::fs::canonicalize(common::corpus())?;
    let (code, _, stderr) = db.run(&["ingest", common::arg(&corpus)])?;
    assert_eq!(code, 0, "ingest of the quickstart corpus failed: {stderr}");
    assert!(db.documents()? > 0, "the corpus ingested no document");

    let agent = Agent::start(Start {
        env: &[("OUTPOST_TOKEN", TOKEN)],
        ..Start::new(db.path())
    })?;

    // The suite's output goes to a file (no pipe to fill), and it is killed past LIMIT.
    let log_path = db.dir().join("openai-sdk.log");
    let log = std::fs::File::create(&log_path)?;
    let mut cmd = Command::new(&python);
    cmd.args(["-m", "unittest", "-v", "test_openai_sdk"])
        .current_dir(suite())
        .env("OUTPOST_AGENT_URL", &agent.url)
        .env("OUTPOST_AGENT_TOKEN", TOKEN)
        .env("OUTPOST_CORPUS", &corpus)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("PYTHONUNBUFFERED", "1")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    // The SDK reads these; the test's own settings must win.
    for k in [
        "OPENAI_API_KEY",
        "OPENAI_BASE_URL",
        "OPENAI_ORG_ID",
        "OPENAI_PROJECT_ID",
        "OPENAI_WEBHOOK_SECRET",
        "OPENAI_LOG",
    ] {
        cmd.env_remove(k);
    }
    let mut child = cmd.spawn()?;
    let status = wait_at_most(&mut child, LIMIT)?;
    let output = std::fs::read_to_string(&log_path)?;
    // The whole output, readable (an error's text is printed escaped), then what went wrong.
    let fail = |what: String| -> TestResult {
        eprintln!(
            "--- python -m unittest -v test_openai_sdk ---\n{output}\n--- agent log ---\n{}",
            agent.logs()
        );
        Err(format!("{what}: its output and the agent's log are above").into())
    };
    let Some(status) = status else {
        return fail(format!("the suite did not finish within {LIMIT:?}"));
    };
    if !status.success() {
        return fail(format!(
            "the openai SDK suite failed (exit code {})",
            exit_code(status)
        ));
    }
    let ran = output.lines().find_map(|l| {
        l.strip_prefix("Ran ")?
            .split(' ')
            .next()?
            .parse::<usize>()
            .ok()
    });
    if ran != Some(TESTS) || output.contains("skipped") {
        return fail(format!(
            "expected {TESTS} tests run and none skipped, got {ran:?}"
        ));
    }
    Ok(())
}
