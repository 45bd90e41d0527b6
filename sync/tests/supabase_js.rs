//! An app's view of the central store through the real Supabase client: supabase-js (pinned in
//! `sync/tests/supabase-js/package.json`, run by Node) against the stand-in
//! (`outpost_sync::shim`). Two users' devices sync real documents through the REST transport;
//! then `sync/tests/supabase-js/client.test.cjs` signs in as each user with the project's anon
//! key and with a publishable key, calls `match_chunks` and `hybrid_search`, reads the synced
//! tables, and refreshes its session, checking that each user sees only its own rows.
//!
//! The packages come from `npm ci` of that package.json and its lock into
//! `$OUTPOST_SUPABASE_JS` (`scripts/test.sh` does it; default `.cache/supabase-js`). This test
//! needs the local target: it creates the users it signs in as.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{local_only, Db, Device, TestResult};
use outpost_sync::shim::{Shim, ShimConfig};
use serde_json::{json, Value};

/// A publishable key of the stand-in project, accepted beside the legacy anon key.
const PUBLISHABLE_KEY: &str = "sb_publishable_outpost-test-publishable-key";

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// An HS256 token with `claims`, signed with the local target's JWT secret.
fn hs256(claims: &Value) -> Result<String, Box<dyn std::error::Error>> {
    Ok(jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(common::jwt_secret().as_bytes()),
    )?)
}

/// Where `npm ci` put supabase-js: `$OUTPOST_SUPABASE_JS`, else `.cache/supabase-js`.
fn packages() -> Result<std::path::PathBuf, Box<dyn std::error::Error>> {
    let dir = std::env::var_os("OUTPOST_SUPABASE_JS")
        .filter(|d| !d.is_empty())
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../.cache/supabase-js")
        });
    if !dir.join("node_modules/@supabase/supabase-js").is_dir() {
        return Err(format!(
            "supabase-js is not installed in {}: run scripts/test.sh (or `npm ci` there with \
             sync/tests/supabase-js/package.json and package-lock.json)",
            dir.display()
        )
        .into());
    }
    Ok(dir)
}

/// One user of the project: signed in, a device of theirs synced, and what the central
/// tables hold for them (read as an administrator, past row-level security).
async fn user_with_synced_notes(
    db: &Db,
    shim: &Shim,
    anon_key: &str,
    email: &str,
    notes: &[(&str, &str)],
) -> Result<Value, Box<dyn std::error::Error>> {
    let password = format!("pw-{email}");
    let id = db.create_user(email, &password).await?;
    let session: Value = reqwest::Client::new()
        .post(format!("{}/auth/v1/token?grant_type=password", shim.url))
        .header("apikey", anon_key)
        .json(&json!({ "email": email, "password": password }))
        .send()
        .await?
        .json()
        .await?;
    let access_token = session["access_token"].as_str().ok_or("no access token")?;
    let central = outpost_sync::Central::new(outpost_sync::rest::RestTransport::new(
        &shim.url,
        anon_key,
        access_token,
        Duration::from_secs(10),
    )?);
    let mut device = Device::new()?;
    for (source, text) in notes {
        device.put(source, text)?;
    }
    device.sync(&central).await?;
    let count = |table: &str| format!("select count(*) from public.{table} where owner = '{id}'");
    Ok(json!({
        "id": id,
        "email": email,
        "password": password,
        "documents": db.scalar(&count("outpost_documents")).await?.parse::<u64>()?,
        "chunks": db.scalar(&count("outpost_document_chunks")).await?.parse::<u64>()?,
    }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn supabase_js_sees_only_its_users_rows_and_refreshes_its_session() -> TestResult {
    if local_only("supabase_js", "it creates the users it signs in as") {
        return Ok(());
    }
    let packages = packages()?;
    let db = Db::new(true).await?;
    // A project's legacy anon key is a JWT of the `anon` role signed with the JWT secret
    // (supabase.com/docs/guides/api/api-keys): supabase-js sends it as the bearer until a user
    // signs in, so the stand-in must verify it.
    let anon_key = hs256(&json!({ "iss": "supabase", "role": "anon", "iat": now(),
                                  "exp": now() + 3600 }))?;
    let mut config = ShimConfig::new(&db.url, &anon_key, common::jwt_secret());
    config.anon_keys.push(PUBLISHABLE_KEY.to_string());
    let shim = Shim::start_with(config).await?;

    let ada = user_with_synced_notes(
        &db,
        &shim,
        &anon_key,
        "ada@example.com",
        &[
            (
                "notes/otters.md",
                "Otters hold hands while they sleep.\n\nA group of otters is a raft.",
            ),
            ("notes/owls.md", "Owls cannot move their eyes."),
        ],
    )
    .await?;
    let bob = user_with_synced_notes(
        &db,
        &shim,
        &anon_key,
        "bob@example.com",
        &[(
            "notes/bob-otters.md",
            "Bob's otters sleep holding hands too.",
        )],
    )
    .await?;
    // Both users' rows are there: what each must not see is real.
    assert_eq!(
        (ada["documents"].as_u64(), ada["chunks"].as_u64()),
        (Some(2), Some(3))
    );
    assert_eq!(
        (bob["documents"].as_u64(), bob["chunks"].as_u64()),
        (Some(1), Some(1))
    );

    let query = "otters sleep holding hands";
    let embedding = common::hash_embedder().embed(&[query])?.remove(0);
    let fixture = json!({
        "url": shim.url,
        "anonKey": anon_key,
        "publishableKey": PUBLISHABLE_KEY,
        "users": [ada, bob],
        "query": query,
        "queryEmbedding": embedding,
        // Expired past PostgREST's 30 s skew, well signed: PGRST303.
        "expiredToken": hs256(&json!({ "sub": ada["id"], "role": "authenticated",
                                       "aud": "authenticated", "exp": now() - 120 }))?,
    });
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/supabase-js/client.test.cjs");
    // Node runs on a blocking thread while the stand-in serves it from the runtime's workers;
    // `--test-timeout` bounds each of its tests, and TAP's summary is checked below.
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new("node")
            .args(["--test", "--test-reporter=tap", "--test-timeout=60000"])
            .arg(&script)
            .env("NODE_PATH", packages.join("node_modules"))
            .env("OUTPOST_SUPABASE_JS_FIXTURE", fixture.to_string())
            .output()
    })
    .await??;
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "node --test failed:\n{log}");
    // node:test reports each test; none may be skipped or missing.
    assert!(log.contains("# fail 0"), "{log}");
    assert!(log.contains("# pass 5"), "{log}");
    Ok(())
}
