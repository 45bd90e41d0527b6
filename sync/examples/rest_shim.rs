//! Runs the REST test shim (`outpost_sync::shim`: a loopback stand-in for PostgREST, not a server
//! to deploy) in the foreground, so that something outside a test binary can call it:
//!
//! ```sh
//! cargo run -p outpost-sync --features shim --example rest_shim -- DB_URL ANON_KEY JWT_SECRET
//! ```
//!
//! prints `http://127.0.0.1:<port>` on one line and serves until it is killed.
//! `sync/tests/supabase-mode.sh` uses it to play a Supabase project's REST API.

use std::io::Write as _;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [db_url, anon_key, jwt_secret] = args.as_slice() else {
        return Err("usage: rest_shim DB_URL ANON_KEY JWT_SECRET".into());
    };
    let shim = outpost_sync::shim::Shim::start(db_url, anon_key, jwt_secret).await?;
    let mut out = std::io::stdout();
    writeln!(out, "{}", shim.url)?;
    out.flush()?;
    tokio::signal::ctrl_c().await?;
    Ok(())
}
