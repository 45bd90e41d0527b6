//! The agent's configuration: a TOML file (`--config`, `OUTPOST_CONFIG`, or
//! `<user config dir>/outpost/outpost.toml` if it exists), `OUTPOST_*` environment variables
//! over it, command-line flags over those. `outpost config show` prints the result with secrets
//! masked.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use serde::{Deserialize, Serialize};

use outpost_sync::CentralSettings;

/// Everything the agent can be told.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Database file (`OUTPOST_DB`, `--db`).
    pub db: Option<PathBuf>,
    /// Embedding model directory (`OUTPOST_MODEL_DIR`, `--model-dir`).
    pub model_dir: Option<PathBuf>,
    /// Embed on the CPU even where a GPU is available (`--cpu`).
    pub cpu: bool,
    /// Log format, `text` or `json` (`OUTPOST_LOG_FORMAT`, `--log-format`).
    pub log_format: Option<String>,
    /// The HTTP API.
    pub serve: Serve,
    /// Watched folders.
    pub watch: Watch,
    /// Background sync.
    pub sync: Sync,
}

/// `[serve]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Serve {
    /// Address to listen on (`OUTPOST_ADDR`, `--addr`). Anything but loopback needs a token.
    pub addr: String,
    /// Bearer token every request but `/healthz` must carry (`OUTPOST_TOKEN`). Required off
    /// loopback.
    pub token: Option<String>,
    /// Largest JSON request body, in bytes.
    pub max_body_bytes: usize,
    /// Largest file upload (`POST /v1/documents`, multipart), in bytes.
    pub max_upload_bytes: usize,
    /// Database connections serving reads (search, context, listings) in parallel.
    pub readers: usize,
    /// Largest `k` a search may ask for.
    pub max_k: usize,
    /// Most tokens one chat completion may generate.
    pub max_output_tokens: usize,
    /// Chat requests that may wait while the model answers another; one more is refused
    /// with 429.
    pub llm_queue: usize,
    /// Seconds a client has to send a request's headers; a slower one is disconnected.
    pub header_timeout_s: u64,
    /// Requests the agent works on at once (`/healthz` aside); one more is refused at once
    /// with 503 and `Retry-After` rather than queued without bound.
    pub max_in_flight: usize,
}

impl Default for Serve {
    fn default() -> Self {
        Self {
            addr: "127.0.0.1:7878".into(),
            token: None,
            max_body_bytes: 1024 * 1024,
            max_upload_bytes: 50 * 1024 * 1024,
            readers: 2,
            max_k: 1000,
            max_output_tokens: 1024,
            llm_queue: 4,
            header_timeout_s: 30,
            max_in_flight: 256,
        }
    }
}

/// `[watch]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Watch {
    /// Folders to watch (recursively) and keep indexed (`OUTPOST_WATCH`, a path list;
    /// `--watch DIR`, repeatable).
    pub dirs: Vec<PathBuf>,
    /// Collection their files go to (`--collection`).
    pub collection: String,
    /// File-name patterns (globs) never indexed: editors' temporary and backup files.
    pub ignore: Vec<String>,
    /// Index hidden files and folders (names starting with '.').
    pub include_hidden: bool,
    /// Quiet time before a burst of file events is acted on, in milliseconds.
    pub debounce_ms: u64,
    /// Files larger than this are refused, in bytes.
    pub max_file_size: u64,
}

impl Default for Watch {
    fn default() -> Self {
        Self {
            dirs: Vec::new(),
            collection: outpost_core::DEFAULT_COLLECTION.into(),
            ignore: [
                "*.tmp",
                "*.temp",
                "*.swp",
                "*.swx",
                "*~",
                ".#*",
                "#*#",
                "*.part",
                "*.crdownload",
                "~$*",
            ]
            .map(String::from)
            .to_vec(),
            include_hidden: false,
            debounce_ms: 300,
            max_file_size: 50 * 1024 * 1024,
        }
    }
}

/// `[sync]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Sync {
    /// Seconds between background syncs (`OUTPOST_SYNC_INTERVAL`, `--sync-interval`); 0 turns
    /// the periodic sync off (`POST /v1/sync` still syncs).
    pub interval_s: u64,
    /// Seconds to wait for any one call to the central store.
    pub timeout_s: u64,
    /// Records per push call.
    pub batch_size: usize,
    /// The central store (`[sync.central]`, or the `OUTPOST_CENTRAL_*` / `OUTPOST_SUPABASE_*`
    /// variables). None: sync is off.
    pub central: CentralSettings,
}

impl Default for Sync {
    fn default() -> Self {
        Self {
            interval_s: 30,
            timeout_s: 30,
            batch_size: 100,
            central: CentralSettings::default(),
        }
    }
}

/// What the command line adds (flags win over the environment and the file).
#[derive(Debug, Default)]
pub struct Overrides {
    pub db: Option<PathBuf>,
    pub model_dir: Option<PathBuf>,
    pub cpu: bool,
    pub log_format: Option<String>,
    pub addr: Option<String>,
    pub watch: Vec<PathBuf>,
    pub collection: Option<String>,
    pub sync_interval: Option<u64>,
}

/// The default configuration file, `<user config dir>/outpost/outpost.toml`.
pub fn default_path() -> Option<PathBuf> {
    dirs::config_dir().map(|d| d.join("outpost").join("outpost.toml"))
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

impl Config {
    /// Reads `path` (an explicit file must exist; the default one may not).
    ///
    /// # Errors
    /// An unreadable or invalid file, named with the problem's line.
    pub fn from_file(path: Option<&Path>) -> Result<Self> {
        let (path, explicit) = match path {
            Some(p) => (p.to_path_buf(), true),
            None => match env("OUTPOST_CONFIG")
                .map(PathBuf::from)
                .or_else(default_path)
            {
                Some(p) => (p, env("OUTPOST_CONFIG").is_some()),
                None => return Ok(Self::default()),
            },
        };
        if !explicit && !path.exists() {
            return Ok(Self::default());
        }
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading the configuration {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("configuration {}", path.display()))
    }

    /// The file, then the environment, then the flags; checked.
    ///
    /// # Errors
    /// As [`Config::from_file`], and settings that cannot work (see [`Config::check`]).
    pub fn load(path: Option<&Path>, flags: Overrides) -> Result<Self> {
        let mut c = Self::from_file(path)?;
        // The environment.
        if let Some(v) = env("OUTPOST_ADDR") {
            c.serve.addr = v;
        }
        if let Some(v) = env("OUTPOST_TOKEN") {
            c.serve.token = Some(v);
        }
        if let Some(v) = std::env::var_os("OUTPOST_WATCH").filter(|v| !v.is_empty()) {
            c.watch.dirs = std::env::split_paths(&v).collect();
        }
        if let Some(v) = env("OUTPOST_SYNC_INTERVAL") {
            c.sync.interval_s = v.parse().with_context(|| {
                format!("OUTPOST_SYNC_INTERVAL '{v}' is not a number of seconds")
            })?;
        }
        if let Some(v) = env("OUTPOST_LOG_FORMAT") {
            c.log_format = Some(v);
        }
        c.sync.central = std::mem::take(&mut c.sync.central).overlay(CentralSettings::from_env());
        // The flags (`--db` and `--model-dir` also carry OUTPOST_DB / OUTPOST_MODEL_DIR).
        if flags.db.is_some() {
            c.db = flags.db;
        }
        if flags.model_dir.is_some() {
            c.model_dir = flags.model_dir;
        }
        c.cpu |= flags.cpu;
        if flags.log_format.is_some() {
            c.log_format = flags.log_format;
        }
        if let Some(v) = flags.addr {
            c.serve.addr = v;
        }
        if !flags.watch.is_empty() {
            c.watch.dirs = flags.watch;
        }
        if let Some(v) = flags.collection {
            c.watch.collection = v;
        }
        if let Some(v) = flags.sync_interval {
            c.sync.interval_s = v;
        }
        c.check()?;
        Ok(c)
    }

    /// The listening address, refusing a non-loopback one without a token.
    ///
    /// # Errors
    /// An address that does not parse, or a public one without a token.
    pub fn addr(&self) -> Result<SocketAddr> {
        let addr: SocketAddr = self.serve.addr.parse().with_context(|| {
            format!(
                "serve.addr '{}' is not an IP address and port (e.g. 127.0.0.1:7878)",
                self.serve.addr
            )
        })?;
        if !addr.ip().is_loopback() && self.token().is_none() {
            bail!(
                "refusing to listen on {addr} without a token: anything but loopback needs one \
                 (set OUTPOST_TOKEN or serve.token)"
            );
        }
        Ok(addr)
    }

    /// The token, if one is set and not blank.
    pub fn token(&self) -> Option<&str> {
        self.serve.token.as_deref().filter(|t| !t.trim().is_empty())
    }

    /// Checks what can be checked before starting.
    ///
    /// # Errors
    /// The first setting that cannot work.
    pub fn check(&self) -> Result<()> {
        self.addr()?;
        if let Some(f) = &self.log_format {
            if f != "text" && f != "json" {
                bail!("log_format '{f}' is not text or json");
            }
        }
        if self.serve.readers == 0 || self.serve.max_k == 0 || self.serve.max_in_flight == 0 {
            bail!("serve.readers, serve.max_k and serve.max_in_flight must be at least 1");
        }
        for pattern in &self.watch.ignore {
            globset::Glob::new(pattern)
                .with_context(|| format!("watch.ignore pattern '{pattern}'"))?;
        }
        if !self.sync.central.is_empty() {
            let session = outpost_sync::SessionStore::new(outpost_models::outpost_home());
            outpost_sync::CentralConfig::from_settings_with_session(
                &self.sync.central,
                Some(&session),
            )
            .context("sync.central")?;
        }
        Ok(())
    }

    /// The configuration with secrets masked, for printing.
    pub fn masked(&self) -> Self {
        let mut c = self.clone();
        if c.serve.token.is_some() {
            c.serve.token = Some("***".into());
        }
        c.sync.central = c.sync.central.masked();
        c
    }
}
