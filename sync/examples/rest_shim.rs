//! Runs the stand-in (`outpost_sync::shim`: a loopback stand-in for Supabase's API gateway, Auth
//! token endpoint and PostgREST, not a server to deploy) in the foreground, so that something
//! outside a test binary can call it:
//!
//! ```sh
//! cargo run -p outpost-sync --features shim --example rest_shim -- DB_URL ANON_KEY JWT_SECRET
//! ```
//!
//! prints `http://127.0.0.1:<port>` on one line and serves until it is killed.
//! `sync/tests/supabase-mode.sh` uses it to play a Supabase project's REST API. Optional
//! settings (Supabase's defaults otherwise): `OUTPOST_SHIM_ACCESS_TTL_S` (access-token lifetime),
//! `OUTPOST_SHIM_REUSE_INTERVAL_S` (refresh-token reuse interval), `OUTPOST_SHIM_MAX_BODY_BYTES`
//! (request-body limit), `OUTPOST_SHIM_PUBLISHABLE_KEY` (an `sb_publishable_…` key accepted
//! beside ANON_KEY), `OUTPOST_SHIM_JWT_CLOCK_SKEW_S` (the skew allowed on `exp`; PostgREST's
//! 30 s otherwise), `OUTPOST_SHIM_CREATE_USER` (`EMAIL:PASSWORD`: a user created before the URL
//! is printed, to sign in as).

use std::io::Write as _;
use std::time::Duration;

fn env_number(name: &str) -> Result<Option<u64>, Box<dyn std::error::Error>> {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => Ok(Some(v.parse().map_err(|e| format!("{name}={v}: {e}"))?)),
        _ => Ok(None),
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [db_url, anon_key, jwt_secret] = args.as_slice() else {
        return Err("usage: rest_shim DB_URL ANON_KEY JWT_SECRET".into());
    };
    let mut config = outpost_sync::shim::ShimConfig::new(db_url, anon_key, jwt_secret);
    if let Some(s) = env_number("OUTPOST_SHIM_ACCESS_TTL_S")? {
        config.access_ttl = Duration::from_secs(s);
    }
    if let Some(s) = env_number("OUTPOST_SHIM_REUSE_INTERVAL_S")? {
        config.reuse_interval = Duration::from_secs(s);
    }
    if let Some(b) = env_number("OUTPOST_SHIM_MAX_BODY_BYTES")? {
        config.max_body_bytes = usize::try_from(b)?;
    }
    if let Ok(key) = std::env::var("OUTPOST_SHIM_PUBLISHABLE_KEY") {
        if !key.is_empty() {
            config.anon_keys.push(key);
        }
    }
    if let Some(s) = env_number("OUTPOST_SHIM_JWT_CLOCK_SKEW_S")? {
        config.jwt_clock_skew = Duration::from_secs(s);
    }
    if let Ok(user) = std::env::var("OUTPOST_SHIM_CREATE_USER") {
        if !user.is_empty() {
            let (email, password) = user
                .split_once(':')
                .ok_or("OUTPOST_SHIM_CREATE_USER takes EMAIL:PASSWORD")?;
            outpost_sync::shim::create_user(db_url, email, password).await?;
        }
    }
    let shim = outpost_sync::shim::Shim::start_with(config).await?;
    let mut out = std::io::stdout();
    writeln!(out, "{}", shim.url)?;
    out.flush()?;
    tokio::signal::ctrl_c().await?;
    Ok(())
}
