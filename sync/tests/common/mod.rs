//! Test harness for sync: a fresh database per test on the real PostgreSQL + pgvector that
//! `scripts/test.sh` starts (`OUTPOST_TEST_PG_URL`), Supabase's auth emulated as Supabase
//! defines it, devices with real SQLite stores and the real embedding model, and the REST shim.
#![allow(dead_code)]

pub mod shim;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use outpost_core::{Collection, NewChunk, NewDocument, Store};
use outpost_models::BertEmbedder;
use outpost_sync::{Backoff, Central, SyncOptions};

pub type TestResult = Result<(), Box<dyn std::error::Error>>;

/// Secret the test JWTs are signed with (the shim verifies them like PostgREST would).
pub const JWT_SECRET: &str = "outpost-test-jwt-secret-with-at-least-32-chars";
/// The anon key the shim expects.
pub const ANON_KEY: &str = "outpost-test-anon-key";

const EMULATION: &str = include_str!("../sql/supabase_auth_emulation.sql");
const MIGRATION: &str =
    include_str!("../../../migrations/supabase/20261122000000_outpost_sync.sql");

/// The real all-MiniLM-L6-v2.
pub fn model() -> Arc<BertEmbedder> {
    static MODEL: OnceLock<Arc<BertEmbedder>> = OnceLock::new();
    MODEL
        .get_or_init(|| {
            let dir = outpost_models::resolve_model_dir(None).unwrap_or_else(|e| {
                panic!("the real model is needed for this test: {e}; run scripts/test.sh")
            });
            let device = outpost_models::select_device(false);
            Arc::new(BertEmbedder::load(&dir, &device).expect("loading the model"))
        })
        .clone()
}

pub fn model_id() -> String {
    use outpost_core::Embedder;
    model().model_id().to_string()
}

/// The superuser URL of the test server.
pub fn server_url() -> String {
    std::env::var("OUTPOST_TEST_PG_URL").unwrap_or_else(|_| {
        panic!("OUTPOST_TEST_PG_URL is not set: sync tests need the real PostgreSQL + pgvector that scripts/test.sh starts (or: scripts/pg.sh start DIR)")
    })
}

fn with_db(url: &str, db: &str) -> String {
    let (base, _) = url.rsplit_once('/').expect("URL with a database");
    format!("{base}/{db}")
}

pub async fn admin(url: &str) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

/// A fresh database on the test server.
pub struct Db {
    /// Superuser URL of this database.
    pub url: String,
}

impl Db {
    /// A new empty database; `migrate` installs the emulation and the central schema.
    pub async fn new(migrate: bool) -> Result<Self, Box<dyn std::error::Error>> {
        let server = server_url();
        let name = format!("t_{}", uuid::Uuid::now_v7().simple());
        admin(&server)
            .await?
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await?;
        let db = Self {
            url: with_db(&server, &name),
        };
        let c = admin(&db.url).await?;
        c.batch_execute(EMULATION).await?;
        if migrate {
            c.batch_execute(MIGRATION).await?;
        }
        Ok(db)
    }

    pub async fn admin(&self) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
        admin(&self.url).await
    }

    /// A direct-Postgres transport acting as `user`.
    pub fn pg(&self, user: &str) -> Central {
        Central::Postgres(
            outpost_sync::pg::PgTransport::new(&self.url, user, Duration::from_secs(10))
                .expect("transport"),
        )
    }

    /// Runs `sql` and returns the first column of the first row as text.
    pub async fn scalar(&self, sql: &str) -> Result<String, Box<dyn std::error::Error>> {
        let c = self.admin().await?;
        let row = c.query_one(&format!("SELECT ({sql})::text"), &[]).await?;
        Ok(row.get::<_, Option<String>>(0).unwrap_or_default())
    }
}

/// A new user id.
pub fn user() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// A JWT for `user`, signed as Supabase signs them.
pub fn jwt(user: &str) -> String {
    outpost_sync::shim::sign_jwt(user, JWT_SECRET).expect("jwt")
}

/// A REST transport to `url` (the shim) as `user`.
pub fn rest(url: &str, user: &str) -> Central {
    Central::Rest(
        outpost_sync::rest::RestTransport::new(url, ANON_KEY, &jwt(user), Duration::from_secs(10))
            .expect("transport"),
    )
}

/// A device: its own SQLite file.
pub struct Device {
    pub store: Store,
    _dir: tempfile::TempDir,
}

impl Device {
    pub fn new() -> Result<Self, Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let store = Store::open(dir.path().join("outpost.db"))?;
        Ok(Self { store, _dir: dir })
    }

    pub fn collection(&mut self, name: &str) -> Result<Collection, outpost_core::Error> {
        use outpost_core::Embedder;
        let m = model();
        self.store.ensure_collection(name, m.model_id(), m.dims())
    }

    /// Stores `text` as the document at `source`, chunked by paragraph and embedded for real.
    pub fn put(&mut self, source: &str, text: &str) -> Result<String, Box<dyn std::error::Error>> {
        use outpost_core::Embedder;
        let c = self.collection("notes")?;
        let paragraphs: Vec<&str> = text
            .split("\n\n")
            .filter(|p| !p.trim().is_empty())
            .collect();
        let vectors = model().embed(&paragraphs)?;
        let mut offset = 0;
        let chunks = paragraphs
            .iter()
            .zip(vectors)
            .map(|(p, v)| {
                let start = text[offset..].find(p).map(|i| i + offset).unwrap_or(offset);
                offset = start + p.len();
                NewChunk {
                    text: p.to_string(),
                    token_count: p.split_whitespace().count(),
                    byte_start: start,
                    byte_end: start + p.len(),
                    embedding: v,
                    ..Default::default()
                }
            })
            .collect::<Vec<_>>();
        let mut metadata = serde_json::Map::new();
        metadata.insert("source".into(), source.into());
        let doc = NewDocument {
            source: source.into(),
            title: source.into(),
            content_hash: format!(
                "{:x}",
                text.len() * 31 + text.bytes().map(usize::from).sum::<usize>()
            ),
            metadata,
        };
        Ok(self.store.put_document(&c, &doc, &chunks)?.0)
    }

    pub fn options(&self) -> SyncOptions {
        use outpost_core::Embedder;
        let mut o = SyncOptions::new(model().model_id(), model().dims());
        o.backoff = Backoff {
            initial: Duration::from_millis(20),
            max: Duration::from_millis(200),
            give_up_after: Some(Duration::from_secs(5)),
        };
        o
    }

    pub async fn sync(
        &mut self,
        central: &Central,
    ) -> Result<outpost_sync::SyncReport, outpost_sync::Error> {
        let opts = self.options();
        outpost_sync::sync_once(&mut self.store, central, &opts, &mut |_| {}).await
    }

    pub async fn verify(
        &self,
        central: &Central,
    ) -> Result<outpost_sync::VerifyReport, outpost_sync::Error> {
        outpost_sync::verify(&self.store, central, &Backoff::none()).await
    }
}

/// Waits until every transaction running on the server right now has ended.
///
/// A pull hands out only rows of transactions older than the oldest one still running anywhere
/// on the server (docs/SYNC.md), so while other work runs on the same server (another test, a
/// benchmark) a row pushed a moment ago may not be handed out yet. A test that expects a pull to
/// bring everything pushed so far settles first.
pub async fn settle(db: &Db) -> TestResult {
    let c = db.admin().await?;
    let next = "SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint";
    let oldest_running = "SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint";
    let horizon: i64 = c.query_one(next, &[]).await?.get(0);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while c.query_one(oldest_running, &[]).await?.get::<_, i64>(0) < horizon {
        if std::time::Instant::now() > deadline {
            return Err("a transaction on the test server has been running for a minute".into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}
