//! The direct-Postgres transport through a connection pooler in transaction mode, as Supabase
//! serves one on port 6543 (Supavisor, or PgBouncer): a server connection belongs to a client for
//! one transaction only, so nothing may outlive a transaction — no named prepared statement, no
//! session `SET`, no advisory session lock.
//!
//! Each test starts a real PgBouncer (Debian's `pgbouncer`, which `scripts/test.sh` installs; or
//! `$OUTPOST_PGBOUNCER`) on loopback in front of the test Postgres with `pool_mode =
//! transaction`, trust authentication and otherwise its defaults: no prepared-statement tracking
//! (`max_prepared_statements = 0` where the setting exists), as Supavisor in transaction mode
//! does not track them either. With a pool of one server connection every client's transactions
//! take turns on the same backend, so whatever one client left behind, the next one sees. A
//! missing `pgbouncer` fails these tests, it never skips them.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{local_only, user, Db, Device, TestResult};
use outpost_sync::pg::PgTransport;
use outpost_sync::Central;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

/// A PgBouncer on a free loopback port in front of the test server, stopped when dropped.
struct PgBouncer {
    child: Child,
    port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl PgBouncer {
    /// Starts PgBouncer in transaction mode with `pool_size` server connections per database and
    /// user, in front of the server of `url` (a superuser URL on TCP).
    async fn start(url: &str, pool_size: u32) -> Result<Self, Box<dyn std::error::Error>> {
        let binary = binary()?;
        let server = pg_addr(url)?;
        let dir = tempfile::tempdir()?;
        let users = dir.path().join("userlist.txt");
        std::fs::write(&users, "\"postgres\" \"\"\n")?;
        let mut settings = vec![
            "listen_addr = 127.0.0.1".to_string(),
            "unix_socket_dir =".into(),
            "auth_type = trust".into(),
            format!("auth_file = {}", users.display()),
            "admin_users = postgres".into(),
            "pool_mode = transaction".into(),
            format!("default_pool_size = {pool_size}"),
            "max_client_conn = 100".into(),
        ];
        if version(&binary)? >= (1, 21) {
            // Newer PgBouncers can track named statements (1.22 does by default); Supavisor in
            // transaction mode does not, and neither does the pooler played here.
            settings.push("max_prepared_statements = 0".into());
        }
        if is_root()? {
            // PgBouncer refuses to run as root: it reads its files, then becomes this user.
            let pg_user = std::env::var("OUTPOST_PG_USER").unwrap_or_else(|_| "postgres".into());
            settings.push(format!("user = {pg_user}"));
        }
        let log = dir.path().join("pgbouncer.log");
        for attempt in 1..=5 {
            let port = free_port()?;
            let config = dir.path().join("pgbouncer.ini");
            std::fs::write(
                &config,
                format!(
                    "[databases]\n* = host={} port={}\n\n[pgbouncer]\nlisten_port = {port}\n{}\n",
                    server.ip(),
                    server.port(),
                    settings.join("\n")
                ),
            )?;
            // It logs to stderr when it has no logfile.
            let mut child = Command::new(&binary)
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log)?)
                .spawn()
                .map_err(|e| format!("cannot run {}: {e}", binary.display()))?;
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                if child.try_wait()?.is_some() {
                    break;
                }
                if tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .is_ok()
                {
                    return Ok(Self {
                        child,
                        port,
                        log,
                        _dir: dir,
                    });
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let said = std::fs::read_to_string(&log).unwrap_or_default();
            // Another process may have taken the port between its choice and the bind.
            if attempt == 5 || !said.contains("in use") {
                return Err(format!("pgbouncer did not start:\n{said}").into());
            }
        }
        unreachable!("every attempt returns")
    }

    /// `url` (a URL of the test server) with PgBouncer in its place.
    fn url(&self, url: &str) -> Result<String, Box<dyn std::error::Error>> {
        let server = pg_addr(url)?;
        Ok(url.replacen(&server.to_string(), &format!("127.0.0.1:{}", self.port), 1))
    }

    /// A plain client of `url` through the pooler, without TLS.
    async fn client(&self, url: &str) -> Result<Client, Box<dyn std::error::Error>> {
        let (client, conn) = tokio_postgres::connect(&self.url(url)?, NoTls).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(client)
    }

    /// A direct-Postgres transport through the pooler, acting as `user`.
    fn transport(&self, db: &Db, user: &str) -> Result<PgTransport, Box<dyn std::error::Error>> {
        Ok(PgTransport::new(
            &self.url(&db.url)?,
            user,
            Duration::from_secs(10),
        )?)
    }

    /// The central store through the pooler, as `user`.
    fn central(&self, db: &Db, user: &str) -> Result<Central, Box<dyn std::error::Error>> {
        Ok(Central::new(self.transport(db, user)?))
    }

    /// Rows of an admin console command (`SHOW CLIENTS`, ...) whose `database` is `db`'s, as
    /// maps of column name to value.
    async fn show(
        &self,
        db: &Db,
        what: &str,
    ) -> Result<Vec<std::collections::BTreeMap<String, String>>, Box<dyn std::error::Error>> {
        let console = self.client(&with_db(&db.url, "pgbouncer")?).await?;
        let name = db_name(&db.url)?;
        let mut rows = Vec::new();
        // The console speaks the simple query protocol only.
        for message in console.simple_query(&format!("SHOW {what}")).await? {
            if let SimpleQueryMessage::Row(row) = message {
                let map: std::collections::BTreeMap<String, String> = row
                    .columns()
                    .iter()
                    .enumerate()
                    .map(|(i, c)| (c.name().to_string(), row.get(i).unwrap_or("").to_string()))
                    .collect();
                if map.get("database").map(String::as_str) == Some(name.as_str()) {
                    rows.push(map);
                }
            }
        }
        Ok(rows)
    }

    /// What PgBouncer logged so far, for failure messages.
    fn said(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `pgbouncer` binary: `$OUTPOST_PGBOUNCER`, else on PATH or in the sbin directories that
/// Debian installs it to (often not on a user's PATH).
fn binary() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os("OUTPOST_PGBOUNCER").filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        if !path.is_file() {
            return Err(format!(
                "OUTPOST_PGBOUNCER={} is not a file",
                path.display()
            ));
        }
        return Ok(path);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/usr/local/sbin".into()])
        .map(|dir| dir.join("pgbouncer"))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            "pgbouncer is not installed: scripts/test.sh installs it (apt-get install pgbouncer), \
             or set OUTPOST_PGBOUNCER to its path"
                .to_string()
        })
}

/// `(major, minor)` of `pgbouncer --version` (`PgBouncer 1.18.0`).
fn version(binary: &Path) -> Result<(u32, u32), Box<dyn std::error::Error>> {
    let out = Command::new(binary).arg("--version").output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let parse = || {
        let v = text.lines().next()?.strip_prefix("PgBouncer ")?;
        let mut parts = v.split('.').map(|p| p.trim().parse::<u32>().ok());
        Some((parts.next()??, parts.next()??))
    };
    parse().ok_or_else(|| format!("unexpected `pgbouncer --version`: {text}").into())
}

fn is_root() -> Result<bool, Box<dyn std::error::Error>> {
    let out = Command::new("id").arg("-u").output()?;
    Ok(String::from_utf8_lossy(&out.stdout).trim() == "0")
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
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

fn db_name(url: &str) -> Result<String, Box<dyn std::error::Error>> {
    let config: tokio_postgres::Config = url.parse()?;
    Ok(config
        .get_dbname()
        .ok_or("no database in the URL")?
        .to_string())
}

fn with_db(url: &str, db: &str) -> Result<String, Box<dyn std::error::Error>> {
    let name = db_name(url)?;
    Ok(url.replacen(&format!("/{name}"), &format!("/{db}"), 1))
}

/// The first column of the first row of `sql`, run with the simple query protocol (which
/// prepares nothing).
async fn simple_scalar(client: &Client, sql: &str) -> Result<String, Box<dyn std::error::Error>> {
    for message in client.simple_query(sql).await? {
        if let SimpleQueryMessage::Row(row) = message {
            return Ok(row.get(0).unwrap_or("").to_string());
        }
    }
    Err(format!("no row from {sql}").into())
}

#[tokio::test]
async fn two_devices_converge_through_a_transaction_pooler() -> TestResult {
    if local_only(
        "two_devices_converge_through_a_transaction_pooler",
        "it puts a local PgBouncer in front of a plaintext loopback Postgres",
    ) {
        return Ok(());
    }
    let db = Db::new(true).await?;
    let pooler = PgBouncer::start(&db.url, 1).await?;
    // One user on two devices, each with a connection of its own to the pooler (two gateways).
    let owner = user();
    let (central_a, central_b) = (pooler.central(&db, &owner)?, pooler.central(&db, &owner)?);
    let mut a = Device::new()?;
    let mut b = Device::new()?;
    let doc = a.put(
        "notes/tides.md",
        "Tides are caused by the moon.\n\nSpring tides are the strongest.",
    )?;
    b.put("notes/bees.md", "Bees communicate by dancing.")?;
    let conv = b.engine.create_conversation("chat")?;
    b.engine
        .add_message_with_vector(&conv.id, "user", "what causes tides?", None)?;

    a.sync(&central_a).await?;
    b.sync(&central_b).await?;
    // Pulls see only rows older than every running transaction (docs/SYNC.md).
    common::settle(&db).await?;
    a.sync(&central_a).await?;

    assert_eq!(a.engine.outbox_depth()?, 0);
    assert_eq!(b.engine.outbox_depth()?, 0);
    assert!(a.verify(&central_a).await?.equal);
    assert!(b.verify(&central_b).await?.equal);
    assert_eq!(a.engine.checksums()?, b.engine.checksums()?);
    assert_eq!(b.engine.get_document(&doc)?.chunks.len(), 2);
    assert_eq!(b.engine.stats()?.collections[0].chunks, 3);

    // It all went through the pooler: both devices' connections shared its one backend.
    let clients = pooler.show(&db, "CLIENTS").await?;
    let servers = pooler.show(&db, "SERVERS").await?;
    assert!(
        clients.len() >= 2 && servers.len() == 1,
        "clients {clients:?}, servers {servers:?}\n{}",
        pooler.said()
    );
    Ok(())
}

#[tokio::test]
async fn a_transport_call_leaves_nothing_behind_on_the_pooled_connection() -> TestResult {
    if local_only(
        "a_transport_call_leaves_nothing_behind_on_the_pooled_connection",
        "it puts a local PgBouncer in front of a plaintext loopback Postgres",
    ) {
        return Ok(());
    }
    let db = Db::new(true).await?;
    let pooler = PgBouncer::start(&db.url, 1).await?;
    let owner = user();
    let mut device = Device::new()?;
    device.put("notes/a.md", "Alpha.\n\nBeta.")?;
    device.sync(&pooler.central(&db, &owner)?).await?;
    // A call that fails on the server rolls back and leaves the connection usable.
    let transport = pooler.transport(&db, &owner)?;
    let malformed = serde_json::json!({ "changes": [{ "kind": "document", "id": "not-a-uuid" }] });
    assert!(transport.call("outpost_push", malformed).await.is_err());
    let info = transport
        .call("outpost_info", serde_json::json!({}))
        .await?;
    assert!(info["schema_version"].as_i64() >= Some(1), "{info}");

    // The next client of the one backend sees a fresh session: the transport's role, claims
    // and timeout were transaction-local, and it prepared no named statement there.
    let next = pooler.client(&db.url).await?;
    let session = simple_scalar(
        &next,
        "SELECT concat_ws('|', current_user, coalesce(current_setting('request.jwt.claims', true), ''), \
         current_setting('statement_timeout'), (SELECT count(*) FROM pg_prepared_statements))",
    )
    .await?;
    assert_eq!(session, "postgres||0|0");
    assert_eq!(pooler.show(&db, "SERVERS").await?.len(), 1);
    Ok(())
}

#[tokio::test]
async fn the_pooler_loses_named_prepared_statements_between_transactions() -> TestResult {
    if local_only(
        "the_pooler_loses_named_prepared_statements_between_transactions",
        "it puts a local PgBouncer in front of a plaintext loopback Postgres",
    ) {
        return Ok(());
    }
    // Why the transport uses unnamed statements only: what a client prepares in one transaction
    // lives on the backend that transaction ran on, and its next transaction may get another.
    let db = Db::new(true).await?;
    let pooler = PgBouncer::start(&db.url, 2).await?;
    let (first, second) = (pooler.client(&db.url).await?, pooler.client(&db.url).await?);
    let statement = first.prepare("SELECT outpost_info()::text").await?;
    // The other client holds the backend the statement was prepared on...
    second.batch_execute("BEGIN").await?;
    simple_scalar(&second, "SELECT 1").await?;
    // ...so running it lands on a backend that never saw it.
    let err = first
        .query(&statement, &[])
        .await
        .expect_err("a named statement survived the switch of backend");
    assert_eq!(
        err.code(),
        Some(&SqlState::INVALID_SQL_STATEMENT_NAME),
        "{err}"
    );
    second.batch_execute("ROLLBACK").await?;
    Ok(())
}
