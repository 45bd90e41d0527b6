//! A central store of a test's own on the real PostgreSQL + pgvector that `scripts/test.sh`
//! starts (`OUTPOST_TEST_PG_URL`): a fresh database with Supabase's roles and `auth` schema
//! emulated and every migration of `migrations/supabase` applied, in order.

use std::net::SocketAddr;
use std::process::Command;

use super::{TestDb, TestResult};

/// A fresh central database.
pub struct Central {
    /// Its superuser URL.
    pub url: String,
    /// Its name.
    pub name: String,
    /// The server's address, for a proxy to stand in front of.
    pub addr: SocketAddr,
}

/// A connection, its driver running in the background.
pub async fn connect(url: &str) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

impl Central {
    /// Creates and migrates a database named after `prefix` and a fresh id.
    pub async fn new(prefix: &str) -> TestResult<Self> {
        let server = std::env::var("OUTPOST_TEST_PG_URL").map_err(|_| {
            "OUTPOST_TEST_PG_URL is not set: this test needs the real PostgreSQL + pgvector that scripts/test.sh starts (or: scripts/pg.sh start DIR)"
        })?;
        let name = format!("{prefix}_{}", uuid::Uuid::now_v7().simple());
        connect(&server)
            .await?
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await?;
        let (base, _) = server.rsplit_once('/').ok_or("a URL with a database")?;
        let url = format!("{base}/{name}");
        let db = connect(&url).await?;
        db.batch_execute(include_str!(
            "../../../sync/tests/sql/supabase_auth_emulation.sql"
        ))
        .await?;
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../migrations/supabase");
        let mut migrations: Vec<_> = std::fs::read_dir(dir)?
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<_, _>>()?;
        migrations.retain(|p| p.extension().is_some_and(|x| x == "sql"));
        migrations.sort();
        for m in migrations {
            db.batch_execute(&std::fs::read_to_string(&m)?).await?;
        }
        let config: tokio_postgres::Config = url.parse()?;
        let host = match config.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
            _ => "127.0.0.1".into(),
        };
        let port = config.get_ports().first().copied().unwrap_or(5432);
        let addr = tokio::net::lookup_host((host.as_str(), port))
            .await?
            .next()
            .ok_or("the central host has no address")?;
        Ok(Self { url, name, addr })
    }

    /// The URL of this database as a device reaches it through `proxy` (loopback).
    pub fn via(&self, proxy: SocketAddr) -> String {
        format!("postgres://postgres@{proxy}/{}", self.name)
    }

    /// The first column of the first row of `sql`, as text.
    pub async fn scalar(&self, sql: &str) -> TestResult<i64> {
        Ok(connect(&self.url).await?.query_one(sql, &[]).await?.get(0))
    }
}

/// `outpost --embedder hash --db DB ARGS` syncing with the central store at `url` (direct
/// Postgres) as `user`, whatever central store the test's environment names.
pub fn outpost_as(db: &TestDb, url: &str, user: &str, args: &[&str]) -> Command {
    let mut cmd = db.command(&[&["--embedder", "hash"], args].concat());
    cmd.env("OUTPOST_CENTRAL_URL", url)
        .env("OUTPOST_CENTRAL_USER", user)
        .env_remove("OUTPOST_SUPABASE_URL");
    cmd
}
