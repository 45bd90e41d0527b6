//! Test harness for sync: devices with real SQLite databases behind an `Engine`, and the
//! central store they sync with. Devices embed with the deterministic test embedder
//! (`HashEmbedder`, 384-d like the central store), since these tests check sync, not embedding
//! quality; a test of real embeddings makes its device with the real model ([`Device::with_model`]).
//! The central store is one of two targets:
//!
//! - **local** (the default): a fresh database per test on the real PostgreSQL + pgvector that
//!   `scripts/test.sh` starts (`OUTPOST_TEST_PG_URL`, a superuser URL), Supabase's auth emulated
//!   as Supabase defines it (`sql/supabase_auth_emulation.sql`), and the REST API played by the
//!   test shim (`outpost_sync::shim`), since no PostgREST can be installed here;
//! - **a real Supabase project**, when `OUTPOST_TEST_SUPABASE_URL`, `_ANON_KEY`, `_JWT_SECRET`
//!   and `_DB_URL` are set (see [`Supabase`]): the same tests run against its REST API and its
//!   Postgres, each test as fresh users (row-level security keeps them apart in the one shared
//!   database). The few tests that need what a project does not give — a database of their own
//!   (schema missing or outdated), a superuser setting, a loopback proxy on a plaintext
//!   connection — say so on stderr and pass without running ([`local_only`]).
#![allow(dead_code)]

pub mod shim;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use outpost_core::{Collection, Embedder, Engine, HashEmbedder, NewChunk, NewDocument};
use outpost_models::BertEmbedder;
use outpost_sync::{Backoff, Central, SyncOptions};

pub type TestResult = Result<(), Box<dyn std::error::Error>>;

/// Secret the local target's JWTs are signed with (the shim verifies them like PostgREST would).
const LOCAL_JWT_SECRET: &str = "outpost-test-jwt-secret-with-at-least-32-chars";
/// The anon key the local target's shim expects.
const LOCAL_ANON_KEY: &str = "outpost-test-anon-key";

const EMULATION: &str = include_str!("../sql/supabase_auth_emulation.sql");
/// The central migrations (`migrations/supabase/`), oldest first, as `supabase db push` applies
/// them: a test database gets them all, unless it plays an older server ([`Db::at_version`]).
pub const MIGRATIONS: &[&str] = &[
    include_str!("../../../migrations/supabase/20261122000000_outpost_sync.sql"),
    include_str!("../../../migrations/supabase/20261205000000_outpost_vectors_base64.sql"),
    include_str!("../../../migrations/supabase/20261206000000_outpost_staged_push.sql"),
];

/// A real Supabase project to run the tests against, from the environment:
///
/// - `OUTPOST_TEST_SUPABASE_URL` — `https://<ref>.supabase.co`;
/// - `OUTPOST_TEST_SUPABASE_ANON_KEY` — the project's anon key;
/// - `OUTPOST_TEST_SUPABASE_JWT_SECRET` — the project's JWT secret, to sign tokens for fresh test
///   users (their `sub` is a new UUID per test; nothing refers to `auth.users`);
/// - `OUTPOST_TEST_SUPABASE_DB_URL` — its Postgres connection string as the `postgres` role
///   (direct or through the pooler in transaction mode), for the direct transport and for the
///   checks a test makes as an administrator.
///
/// The central migration must be applied to the project first (`supabase db push`, or `psql -f`
/// of the migration); a test project is best, since the tests leave their rows behind.
#[derive(Debug, Clone)]
pub struct Supabase {
    pub url: String,
    pub anon_key: String,
    pub jwt_secret: String,
    pub db_url: String,
}

/// The central store the tests run against.
#[derive(Debug, Clone)]
pub enum Target {
    /// Databases made per test on the local server at this superuser URL.
    Local {
        server: String,
    },
    Supabase(Supabase),
}

/// The target named by the environment (see the module docs).
pub fn target() -> &'static Target {
    static TARGET: OnceLock<Target> = OnceLock::new();
    TARGET.get_or_init(|| {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        if let Some(url) = var("OUTPOST_TEST_SUPABASE_URL") {
            let need = |name: &str| {
                var(name).unwrap_or_else(|| {
                    panic!("OUTPOST_TEST_SUPABASE_URL is set, so {name} must be set too")
                })
            };
            return Target::Supabase(Supabase {
                url: url.trim_end_matches('/').to_string(),
                anon_key: need("OUTPOST_TEST_SUPABASE_ANON_KEY"),
                jwt_secret: need("OUTPOST_TEST_SUPABASE_JWT_SECRET"),
                db_url: need("OUTPOST_TEST_SUPABASE_DB_URL"),
            });
        }
        let server = var("OUTPOST_TEST_PG_URL").unwrap_or_else(|| {
            panic!("OUTPOST_TEST_PG_URL is not set: sync tests need the real PostgreSQL + pgvector that scripts/test.sh starts (or: scripts/pg.sh start DIR), or a real Supabase project (OUTPOST_TEST_SUPABASE_*)")
        });
        Target::Local { server }
    })
}

/// True (after saying so on stderr) when the tests run against a real Supabase project and the
/// calling test cannot: it returns early, passing without having run.
pub fn local_only(test: &str, why: &str) -> bool {
    let skip = matches!(target(), Target::Supabase(_));
    if skip {
        eprintln!("{test}: not run against a real Supabase project: {why}");
    }
    skip
}

/// The anon key the REST API expects.
pub fn anon_key() -> &'static str {
    match target() {
        Target::Local { .. } => LOCAL_ANON_KEY,
        Target::Supabase(s) => &s.anon_key,
    }
}

/// The secret user JWTs are signed with.
pub fn jwt_secret() -> &'static str {
    match target() {
        Target::Local { .. } => LOCAL_JWT_SECRET,
        Target::Supabase(s) => &s.jwt_secret,
    }
}

/// The size of the central store's vectors (`outpost_info().embedding_dims`).
pub const CENTRAL_DIMS: usize = 384;

/// The test embedder the devices use unless a test needs real embeddings: deterministic
/// vectors of the central store's size from the words of a text, no model files.
pub fn hash_embedder() -> Arc<dyn Embedder> {
    Arc::new(HashEmbedder::new(CENTRAL_DIMS))
}

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

fn with_db(url: &str, db: &str) -> String {
    let (base, _) = url.rsplit_once('/').expect("URL with a database");
    format!("{base}/{db}")
}

/// An administrator's connection: TLS where the server offers it (`sslmode=prefer` unless the
/// URL says otherwise), as the direct transport connects.
pub async fn admin(url: &str) -> Result<tokio_postgres::Client, Box<dyn std::error::Error>> {
    let config: tokio_postgres::Config = url.parse()?;
    let (client, conn) = config.connect(outpost_sync::pg::tls_connector()?).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

/// The central database of one test: a fresh database on the local server, or the Supabase
/// project's (shared by every test, each acting as users of its own).
pub struct Db {
    /// An administrator's URL of this database (superuser locally; `postgres` on Supabase).
    pub url: String,
}

impl Db {
    /// The test's central database; locally a new one, with the emulation of Supabase's auth
    /// and, if `migrate`, the central schema. On Supabase the project's database, which must be
    /// migrated already: a test that needs an unmigrated one is [`local_only`].
    pub async fn new(migrate: bool) -> Result<Self, Box<dyn std::error::Error>> {
        Self::at_version(if migrate { MIGRATIONS.len() } else { 0 }).await
    }

    /// The test's central database with only the first `migrations` of [`MIGRATIONS`] applied
    /// (locally; a Supabase project has them all, so a test of an older server is
    /// [`local_only`]).
    pub async fn at_version(migrations: usize) -> Result<Self, Box<dyn std::error::Error>> {
        let server = match target() {
            Target::Supabase(s) => {
                assert!(
                    migrations == MIGRATIONS.len(),
                    "a Supabase project cannot give a test a database not fully migrated"
                );
                return Ok(Self {
                    url: s.db_url.clone(),
                });
            }
            Target::Local { server } => server,
        };
        let name = format!("t_{}", uuid::Uuid::now_v7().simple());
        admin(server)
            .await?
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await?;
        let db = Self {
            url: with_db(server, &name),
        };
        let c = admin(&db.url).await?;
        c.batch_execute(EMULATION).await?;
        for migration in &MIGRATIONS[..migrations] {
            c.batch_execute(migration).await?;
        }
        Ok(db)
    }

    pub async fn admin(&self) -> Result<tokio_postgres::Client, Box<dyn std::error::Error>> {
        admin(&self.url).await
    }

    /// The REST API in front of this database: the project's, or locally a shim started for it
    /// (which serves as long as the returned value lives).
    pub async fn rest_api(&self) -> std::io::Result<RestApi> {
        Ok(match target() {
            Target::Supabase(s) => RestApi {
                url: s.url.clone(),
                shim: None,
            },
            Target::Local { .. } => {
                let shim = shim::Shim::start(&self.url).await?;
                RestApi {
                    url: shim.url.clone(),
                    shim: Some(shim),
                }
            }
        })
    }

    /// A direct-Postgres transport acting as `user`.
    pub fn pg(&self, user: &str) -> Central {
        Central::new(
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
    outpost_sync::shim::sign_jwt(user, jwt_secret()).expect("jwt")
}

/// The REST API a test talks to: `url` (`/rest/v1/...` below it), and the shim serving it
/// locally.
pub struct RestApi {
    pub url: String,
    pub shim: Option<shim::Shim>,
}

impl RestApi {
    /// A REST transport as `user`.
    pub fn central(&self, user: &str) -> Central {
        rest(&self.url, user)
    }
}

/// A REST transport to `url` as `user`.
pub fn rest(url: &str, user: &str) -> Central {
    Central::new(
        outpost_sync::rest::RestTransport::new(
            url,
            anon_key(),
            &jwt(user),
            Duration::from_secs(10),
        )
        .expect("transport"),
    )
}

/// A device: its own SQLite file, written through an engine of one connection (the device's
/// app), with the test embedder unless made with another.
pub struct Device {
    /// The engine the device's own edits go through; its clock may be skewed
    /// ([`Engine::set_clock_skew_ms`]), the sync engine's never is.
    pub engine: Engine,
    embedder: Arc<dyn Embedder>,
    _dir: tempfile::TempDir,
}

impl Device {
    /// A device embedding with the test embedder ([`hash_embedder`]).
    pub fn new() -> Result<Self, Box<dyn std::error::Error>> {
        Self::with_embedder(hash_embedder())
    }

    /// A device embedding with the real model, for tests that check real embeddings.
    pub fn with_model() -> Result<Self, Box<dyn std::error::Error>> {
        Self::with_embedder(model())
    }

    /// A device embedding with `embedder`.
    pub fn with_embedder(embedder: Arc<dyn Embedder>) -> Result<Self, Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let engine = Engine::open_single(dir.path().join("outpost.db"), embedder.clone())?;
        Ok(Self {
            engine,
            embedder,
            _dir: dir,
        })
    }

    /// The device's embedder.
    pub fn embedder(&self) -> &dyn Embedder {
        self.embedder.as_ref()
    }

    /// The engine that sync runs on: a connection of its own to this device's database, as
    /// in the agent, with the device's embedder.
    pub fn sync_engine(&self) -> Result<Engine, outpost_core::Error> {
        Engine::open_single(self.engine.path(), self.embedder.clone())
    }

    pub fn collection(&mut self, name: &str) -> Result<Collection, outpost_core::Error> {
        self.engine.ensure_collection(name)
    }

    /// Stores `text` as the document at `source`, chunked by paragraph and embedded with the
    /// device's embedder.
    pub fn put(&mut self, source: &str, text: &str) -> Result<String, Box<dyn std::error::Error>> {
        let c = self.collection("notes")?;
        let paragraphs: Vec<&str> = text
            .split("\n\n")
            .filter(|p| !p.trim().is_empty())
            .collect();
        let vectors = self.embedder.embed(&paragraphs)?;
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
        Ok(self.engine.put_embedded(&c, &doc, &chunks)?.0)
    }

    pub fn options(&self) -> SyncOptions {
        let mut o = SyncOptions::new(self.embedder.model_id(), self.embedder.dims());
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
        outpost_sync::sync_once(&self.sync_engine()?, central, &opts, &mut |_| {}).await
    }

    pub async fn verify(
        &self,
        central: &Central,
    ) -> Result<outpost_sync::VerifyReport, outpost_sync::Error> {
        outpost_sync::verify(&self.sync_engine()?, central, &Backoff::none()).await
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

/// The stand-in's side of this database (local target): its configuration and its users.
impl Db {
    /// The configuration of a stand-in (`outpost_sync::shim`) for this database, with the
    /// local target's anon key and JWT secret and Supabase's defaults otherwise; a test changes
    /// what it needs and starts it with `Shim::start_with`.
    pub fn standin_config(&self) -> outpost_sync::shim::ShimConfig {
        outpost_sync::shim::ShimConfig::new(&self.url, LOCAL_ANON_KEY, LOCAL_JWT_SECRET)
    }

    /// A confirmed user of the emulated Supabase Auth (`auth.users`) with `email` and
    /// `password`, as the admin API makes one; returns its id.
    pub async fn create_user(
        &self,
        email: &str,
        password: &str,
    ) -> Result<String, Box<dyn std::error::Error>> {
        Ok(outpost_sync::shim::create_user(&self.url, email, password).await?)
    }
}
