//! The agent under test: the real `outpost serve` binary on a free loopback port, with a
//! database and a configuration file of its own, and a small HTTP client for it.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{TestResult, OUTPOST};

/// Settings the tests' environment must not leak into an agent.
const ISOLATE: &[&str] = &[
    "OUTPOST_TOKEN",
    "OUTPOST_ADDR",
    "OUTPOST_WATCH",
    "OUTPOST_SYNC_INTERVAL",
    "OUTPOST_LOG_FORMAT",
    "OUTPOST_CENTRAL_URL",
    "OUTPOST_CENTRAL_USER",
    "OUTPOST_SUPABASE_URL",
    "OUTPOST_SUPABASE_ANON_KEY",
    "OUTPOST_SUPABASE_JWT",
    "OUTPOST_FAILPOINT",
    "OUTPOST_LOG",
    "OUTPOST_EMBEDDER",
];

/// A running agent; killed when dropped.
pub struct Agent {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    child: Child,
    log: PathBuf,
    http: reqwest::Client,
}

/// How to start one.
pub struct Start<'a> {
    /// The database file.
    pub db: &'a Path,
    /// Contents of the configuration file (TOML).
    pub config: &'a str,
    /// Extra arguments after `serve`.
    pub args: &'a [&'a str],
    /// Extra environment.
    pub env: &'a [(&'a str, &'a str)],
    /// `--embedder`: `minilm` (the real model) or `hash` (no model: for tests of the agent's
    /// logic that do not depend on what the vectors mean).
    pub embedder: &'a str,
}

impl<'a> Start<'a> {
    /// Defaults: no configuration, no extra arguments, the real model.
    pub fn new(db: &'a Path) -> Self {
        Self {
            db,
            config: "",
            args: &[],
            env: &[],
            embedder: "minilm",
        }
    }
}

/// The `outpost serve` command for `start`, its log going to `log`.
pub fn command(start: &Start<'_>, log: &Path) -> TestResult<Command> {
    let dir = start.db.parent().ok_or("the database needs a folder")?;
    let config = dir.join("outpost.toml");
    std::fs::write(&config, start.config)?;
    let mut cmd = Command::new(OUTPOST);
    cmd.arg("--db")
        .arg(start.db)
        .args(["--embedder", start.embedder, "serve"]);
    if !start.args.contains(&"--addr") {
        cmd.args(["--addr", "127.0.0.1:0"]);
    }
    cmd.args(start.args)
        .env("OUTPOST_CONFIG", &config)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log)?);
    for k in ISOLATE {
        cmd.env_remove(k);
    }
    for (k, v) in start.env {
        cmd.env(k, v);
    }
    Ok(cmd)
}

impl Agent {
    /// Starts an agent and waits until it listens (it prints `listening on URL`).
    pub fn start(start: Start<'_>) -> TestResult<Self> {
        let log = start.db.with_extension(format!("{}.log", rand_suffix()));
        let mut child = command(&start, &log)?.spawn()?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = tx.send(line);
            }
            // Keep draining so the agent never blocks on a full pipe.
            for _ in lines {}
        });
        let line = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "the agent did not start: {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                )
                .into());
            }
        };
        let url = line
            .strip_prefix("listening on ")
            .ok_or_else(|| format!("unexpected first line: {line}"))?
            .to_string();
        Ok(Self {
            url,
            child,
            log,
            http: reqwest::Client::new(),
        })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What the agent logged so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, and how long the agent took to exit (its exit code must be 0).
    pub fn stop(&mut self) -> TestResult<Duration> {
        let started = Instant::now();
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()?;
        if !status.success() {
            return Err("kill -TERM failed".into());
        }
        loop {
            if let Some(status) = self.child.try_wait()? {
                if !status.success() {
                    return Err(format!("the agent exited with {status}: {}", self.logs()).into());
                }
                return Ok(started.elapsed());
            }
            if started.elapsed() > Duration::from_secs(30) {
                return Err("the agent did not stop within 30 s".into());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGKILL: no chance to clean up.
    pub fn kill9(&mut self) -> TestResult {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }

    /// Peak resident memory of the agent so far, in bytes (`VmHWM`).
    pub fn peak_rss(&self) -> TestResult<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))?;
        let kb: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .ok_or("no VmHWM")?;
        Ok(kb * 1024)
    }

    /// A request with an optional JSON body and bearer token: `(status, body as JSON or text)`.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
        token: Option<&str>,
    ) -> TestResult<(u16, Value)> {
        let mut req = self.http.request(method, format!("{}{path}", self.url));
        if let Some(b) = body {
            req = req.json(b);
        }
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        answer(req.send().await?).await
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> TestResult<(u16, Value)> {
        self.call(reqwest::Method::GET, path, None, None).await
    }

    /// `POST path` with a JSON body.
    pub async fn post(&self, path: &str, body: &Value) -> TestResult<(u16, Value)> {
        self.call(reqwest::Method::POST, path, Some(body), None)
            .await
    }

    /// `POST path` with a raw body and content type.
    pub async fn post_raw(
        &self,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> TestResult<(u16, Value)> {
        let resp = self
            .http
            .post(format!("{}{path}", self.url))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await?;
        answer(resp).await
    }

    /// The metrics text.
    pub async fn metrics(&self) -> TestResult<String> {
        Ok(self
            .http
            .get(format!("{}/metrics", self.url))
            .send()
            .await?
            .text()
            .await?)
    }

    /// Waits until `check` holds (polling every 50 ms), or fails after `timeout`.
    pub async fn until<F, Fut>(&self, what: &str, timeout: Duration, mut check: F) -> TestResult
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = TestResult<bool>>,
    {
        let started = Instant::now();
        loop {
            if check().await? {
                return Ok(());
            }
            if started.elapsed() > timeout {
                return Err(
                    format!("timed out waiting for {what}; agent log:\n{}", self.logs()).into(),
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A response's status and body: its JSON, or its text as a JSON string.
pub async fn answer(resp: reqwest::Response) -> TestResult<(u16, Value)> {
    let status = resp.status().as_u16();
    let text = resp.text().await?;
    Ok((
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    ))
}

/// A metric's value (the sum over its label sets that contain `labels`), 0 if absent.
pub fn metric(text: &str, name: &str, labels: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (key, value) = l.rsplit_once(' ')?;
            let (metric, rest) = key.split_once('{').unwrap_or((key, ""));
            (metric == name && rest.contains(labels)).then(|| value.parse::<f64>().ok())?
        })
        .sum()
}

fn rand_suffix() -> String {
    format!(
        "{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0)
    )
}
