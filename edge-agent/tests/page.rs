//! The agent's web page in a real browser: the quickstart corpus ingested with the CLI, the
//! agent started on it with a token and its language model, and
//! `edge-agent/tests/page/page.mjs` driving Debian's chromium through playwright-core as a user
//! would: the token prompt, a search, a question whose answer streams in with its sources, a
//! source opened from a citation or the source list. The screenshot of the answered page is
//! kept as `target/test-artifacts/page-answer.png`.
//!
//! playwright-core is pinned by `edge-agent/tests/page/package.json` and its lock and installed
//! by `scripts/test.sh` (`npm ci`) into `$OUTPOST_PLAYWRIGHT` (default
//! `.cache/playwright-VERSION`); the browser is Debian's `chromium` (`$OUTPOST_CHROMIUM`,
//! default `/usr/bin/chromium`). Without either this test fails rather than skips.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::agent::{Agent, Start};
use common::{exit_code, require_model, wait_at_most, TestDb, TestResult};

/// The bearer token the agent is started with.
const TOKEN: &str = "page-test-token";

/// What the page is asked: the corpus has notes on varroa mites.
const QUESTION: &str = "How do beekeepers check their hives for varroa mites?";

/// The longest answer asked for: enough to stream and cite, short enough for a debug build's
/// generation on the CPU.
const MAX_TOKENS: &str = "64";

/// The longest the browser run may take (generation runs on the CPU) before it is killed.
const LIMIT: Duration = Duration::from_secs(10 * 60);

/// The folder of the browser script and its package.
fn package() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/page")
}

/// The pinned playwright-core version, from `package.json`.
fn pinned_version() -> TestResult<String> {
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(package().join("package.json"))?)?;
    json["dependencies"]["playwright-core"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| "edge-agent/tests/page/package.json pins no playwright-core".into())
}

/// Where `npm ci` installed the package: `$OUTPOST_PLAYWRIGHT`, else
/// `.cache/playwright-VERSION`; checked to hold the pinned version.
fn playwright() -> TestResult<PathBuf> {
    let version = pinned_version()?;
    let dir = std::env::var_os("OUTPOST_PLAYWRIGHT")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../.cache/playwright-{version}"))
        });
    let how = format!(
        "run scripts/test.sh, which runs `npm ci` of edge-agent/tests/page/package.json and \
         package-lock.json (playwright-core {version}) into .cache/playwright-{version}, or do \
         that into a folder of your own and set OUTPOST_PLAYWRIGHT to it"
    );
    let manifest = dir.join("node_modules/playwright-core/package.json");
    let installed: serde_json::Value = match std::fs::read_to_string(&manifest) {
        Ok(text) => serde_json::from_str(&text)?,
        Err(_) => {
            return Err(format!(
                "playwright-core is not installed in {}: {how}",
                dir.display()
            )
            .into())
        }
    };
    if installed["version"].as_str() != Some(version.as_str()) {
        return Err(format!(
            "{} has playwright-core {}, not the pinned {version}: {how}",
            dir.display(),
            installed["version"]
        )
        .into());
    }
    Ok(dir)
}

/// The browser: `$OUTPOST_CHROMIUM`, else Debian's `/usr/bin/chromium`.
fn chromium() -> TestResult<PathBuf> {
    let path = std::env::var_os("OUTPOST_CHROMIUM")
        .filter(|p| !p.is_empty())
        .map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from);
    if !path.is_file() {
        return Err(format!(
            "no chromium at {}: install Debian's chromium (`apt-get install chromium`; \
             scripts/test.sh does it) or set OUTPOST_CHROMIUM to a Chromium binary",
            path.display()
        )
        .into());
    }
    Ok(path)
}

/// `target/test-artifacts`, beside the binary under test (`target/debug/outpost`).
fn artifacts() -> TestResult<PathBuf> {
    let target = Path::new(common::OUTPOST)
        .parent()
        .and_then(Path::parent)
        .ok_or("the outpost binary has no target folder")?;
    let dir = target.join("test-artifacts");
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

#[test]
fn the_page_streams_an_answer_with_sources_in_chromium() -> TestResult {
    require_model();
    let chromium = chromium()?;
    let playwright = playwright()?;
    let node = Command::new("node")
        .arg("--version")
        .output()
        .map_err(|e| format!("node is needed to run the browser script: {e}"))?;
    assert!(node.status.success(), "`node --version` failed");
    let screenshot = artifacts()?.join("page-answer.png");
    let _ = std::fs::remove_file(&screenshot);

    let db = TestDb::new()?;
    let corpus = std::fs::canonicalize(common::corpus())?;
    let (code, _, stderr) = db.run(&["ingest", common::arg(&corpus)])?;
    assert_eq!(code, 0, "ingest of the quickstart corpus failed: {stderr}");
    assert!(db.documents()? > 0, "the corpus ingested no document");

    let agent = Agent::start(Start {
        env: &[("OUTPOST_TOKEN", TOKEN)],
        ..Start::new(db.path())
    })?;

    // The script's output goes to a file (no pipe to fill), and it is killed past LIMIT.
    let log_path = db.dir().join("page.log");
    let log = std::fs::File::create(&log_path)?;
    let mut child = Command::new("node")
        .arg(package().join("page.mjs"))
        .arg(&agent.url)
        .arg(&screenshot)
        .env("OUTPOST_PLAYWRIGHT", &playwright)
        .env("NODE_PATH", playwright.join("node_modules"))
        .env("OUTPOST_CHROMIUM", &chromium)
        .env("OUTPOST_PAGE_TOKEN", TOKEN)
        .env("OUTPOST_PAGE_QUESTION", QUESTION)
        .env("OUTPOST_PAGE_MAX_TOKENS", MAX_TOKENS)
        .env(
            "OUTPOST_PAGE_TIMEOUT_MS",
            (LIMIT.as_millis() / 2).to_string(),
        )
        .current_dir(db.dir())
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()?;
    let status = wait_at_most(&mut child, LIMIT)?;
    let output = std::fs::read_to_string(&log_path)?;
    // The whole output, readable (an error's text is printed escaped), then what went wrong.
    let fail = |what: String| -> TestResult {
        eprintln!(
            "--- node page.mjs ---\n{output}\n--- agent log ---\n{}",
            agent.logs()
        );
        Err(format!("{what}: its output and the agent's log are above").into())
    };
    let Some(status) = status else {
        return fail(format!("the browser run did not finish within {LIMIT:?}"));
    };
    if !status.success() || !output.contains("page ok: ") {
        return fail(format!(
            "the page test failed (exit code {})",
            exit_code(status)
        ));
    }
    if !screenshot.is_file() {
        return fail(format!("no screenshot at {}", screenshot.display()));
    }
    println!("{output}screenshot: {}", screenshot.display());
    Ok(())
}
