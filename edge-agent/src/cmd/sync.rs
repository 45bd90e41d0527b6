//! `outpost login`, `logout`, `sync`, `sync status`, `backfill`, `bootstrap` and `verify`.
//!
//! The session `login` stores lives in `$OUTPOST_HOME/session.json` (`outpost_sync::session`);
//! the sync commands use it when no `OUTPOST_SUPABASE_JWT` is set. Tokens are never printed.

use std::io::{BufRead as _, IsTerminal};
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use outpost_core::Embedder;
use outpost_sync::session::now_s;
use outpost_sync::{
    AuthClient, Backoff, Central, CentralConfig, Session, SessionInfo, SessionStore, Step,
    SyncOptions, SyncReport,
};

use super::open::{engine, load_embedder, open_store};
use crate::cli::{CentralArgs, CentralJob, Cli, LoginArgs, LogoutArgs, SyncArgs, SyncCommand};
use crate::output::{outln, print_json};

/// Where the session is kept: the Outpost home (`$OUTPOST_HOME`).
fn session_store() -> SessionStore {
    SessionStore::new(outpost_models::outpost_home())
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

fn central(args: &CentralArgs) -> Result<(CentralConfig, Central)> {
    let config =
        CentralConfig::resolve_with_session(args.central.as_deref(), Some(&session_store()))?;
    let central = config.open(Duration::from_secs(args.timeout.max(1)))?;
    Ok((config, central))
}

fn bar(json: bool, template: &str) -> ProgressBar {
    let bar = if std::io::stderr().is_terminal() && !json {
        ProgressBar::new(0)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template(template)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar
}

fn on_step(bar: &ProgressBar) -> impl FnMut(Step) + '_ {
    move |step| match step {
        Step::Pushed { done, total } => {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
            bar.set_message("pushed");
        }
        Step::Pulled { done } => {
            bar.set_position(done as u64);
            bar.set_length(done as u64);
            bar.set_message("pulled");
        }
    }
}

fn print_report(what: &str, report: &SyncReport, reembedded: usize, json: bool) -> Result<()> {
    if json {
        let mut v = serde_json::to_value(report)?;
        v["reembedded"] = json!(reembedded);
        return print_json(&v);
    }
    outln!(
        "{what}: pushed {} records ({} chunks: {} applied, {} already there, {} superseded) in {:.2} s; \
         pulled {} records ({} chunks: {} applied, {} older than ours) in {:.2} s",
        report.pushed,
        report.pushed_chunks,
        report.push_applied,
        report.push_duplicate,
        report.push_stale,
        report.push_seconds,
        report.pulled,
        report.pulled_chunks,
        report.pull_applied,
        report.pull_skipped,
        report.pull_seconds,
    )?;
    if reembedded > 0 {
        outln!("embedded {reembedded} pulled documents with the local model")?;
    }
    Ok(())
}

fn options(args: &CentralArgs, model: &dyn Embedder) -> SyncOptions {
    let mut o = SyncOptions::new(model.model_id(), model.dims());
    o.batch_size = args.batch_size.max(1);
    o.batch_bytes = args.batch_bytes.max(1);
    o.pull_page = args.pull_page.max(1);
    o.backoff = args.backoff();
    o
}

/// `outpost sync [status]`.
pub fn sync(cli: &Cli, args: &SyncArgs) -> Result<i32> {
    if let Some(SyncCommand::Status { json }) = &args.command {
        return status(cli, *json);
    }
    let (store, model) = engine(cli)?;
    let (config, central) = central(&args.central)?;
    tracing::info!(central = %config.describe(), "sync");
    let opts = options(&args.central, model.as_ref());
    let rt = runtime()?;
    rt.block_on(async {
        loop {
            let result = outpost_sync::sync_once(&store, &central, &opts, &mut |_| {}).await;
            match result {
                Ok(report) => {
                    let n = store.reembed_pending(&|| false)?;
                    print_report("sync", &report, n, args.json)?;
                }
                Err(e) if args.once || !e.is_retryable() => {
                    return Err(
                        anyhow::Error::new(e).context(format!("sync with {}", config.describe()))
                    );
                }
                Err(e) => tracing::warn!(error = %e, "sync round failed; will try again"),
            }
            if args.once {
                return Ok(0);
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(args.interval.max(1))) => {}
                _ = tokio::signal::ctrl_c() => return Ok(0),
            }
        }
    })
}

/// One line about a session: who, and when its access token expires.
fn describe_session(info: &SessionInfo) -> String {
    let who = info.email.as_deref().unwrap_or("(no email)");
    if let Some(code) = &info.signed_out {
        return format!(
            "{who} ({}) signed out ({code}): run outpost login",
            info.user_id
        );
    }
    let left = info.access_token_expires_in_s;
    let when = if left >= 0 {
        format!("access token expires in {left} s, refreshed before then")
    } else {
        format!(
            "access token expired {} s ago, refreshed at the next sync",
            -left
        )
    };
    format!("{who} ({}) at {}; {when}", info.user_id, info.url)
}

fn read_stdin_line(what: &str) -> Result<String> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .with_context(|| format!("reading the {what} from standard input"))?;
    let line = line.trim_end_matches(['\r', '\n']).to_string();
    if line.is_empty() {
        bail!("no {what} on standard input");
    }
    Ok(line)
}

/// `outpost login`.
pub fn login(args: &LoginArgs) -> Result<i32> {
    let url = args
        .url
        .clone()
        .filter(|u| !u.trim().is_empty())
        .context("the Supabase project URL is needed: --url or OUTPOST_SUPABASE_URL")?;
    let key = args
        .anon_key
        .clone()
        .filter(|k| !k.trim().is_empty())
        .context(
        "the project's anon or publishable key is needed: --anon-key or OUTPOST_SUPABASE_ANON_KEY",
    )?;
    let auth = AuthClient::new(&url, &key, Duration::from_secs(args.timeout.max(1)))?;
    let secret = if args.refresh_token_stdin {
        read_stdin_line("refresh token")?
    } else if args.password_stdin || !std::io::stdin().is_terminal() {
        read_stdin_line("password")?
    } else {
        let email = args.email.as_deref().unwrap_or_default();
        rpassword::prompt_password(format!("Password for {email}: "))
            .context("reading the password")?
    };
    let store = session_store();
    let rt = runtime()?;
    // Under the lock: an agent refreshing the old session meanwhile must not overwrite this one.
    let lock = store.lock()?;
    let answer = rt.block_on(async {
        match &args.email {
            Some(email) if !args.refresh_token_stdin => {
                auth.sign_in_with_password(email, &secret).await
            }
            _ => auth.refresh(&secret).await,
        }
    });
    let answer = answer.with_context(|| format!("signing in to {}", auth.url()))?;
    let session = Session::from_response(auth.url(), &answer, now_s());
    lock.save(&session)?;
    drop(lock);
    let info = session.info(now_s());
    if args.json {
        let mut v = serde_json::to_value(&info)?;
        v["path"] = json!(store.path());
        print_json(&v)?;
    } else {
        outln!("signed in as {}", describe_session(&info))?;
        outln!("session saved in {}", store.path().display())?;
    }
    Ok(0)
}

/// `outpost logout`: end the session on the server (best effort), then delete it here.
pub fn logout(args: &LogoutArgs) -> Result<i32> {
    let store = session_store();
    let lock = store.lock()?;
    let Some(session) = lock.load()? else {
        if args.json {
            print_json(&json!({ "signed_out": false, "server": "no session" }))?;
        } else {
            outln!("not signed in")?;
        }
        return Ok(0);
    };
    let key = args.anon_key.clone().filter(|k| !k.trim().is_empty());
    let server = match (&key, session.signed_out.is_some()) {
        (_, true) => "already ended".to_string(),
        (None, false) => {
            "not told (no OUTPOST_SUPABASE_ANON_KEY); the session ends when its refresh token expires"
                .to_string()
        }
        (Some(key), false) => {
            let timeout = Duration::from_secs(args.timeout.max(1));
            let rt = runtime()?;
            let result = rt.block_on(async {
                let auth = AuthClient::new(&session.url, key, timeout)?.with_retry(Backoff::none());
                // As supabase-js: an expired access token is refreshed first, since logout
                // needs a valid one.
                let access = if session.needs_refresh(now_s()) {
                    auth.refresh(&session.refresh_token).await?.access_token
                } else {
                    session.access_token.clone()
                };
                auth.logout(&access).await
            });
            match result {
                Ok(()) => "session ended".to_string(),
                Err(e) => {
                    tracing::warn!(error = %e, "could not end the session on the server");
                    format!("not reached ({e})")
                }
            }
        }
    };
    lock.remove()?;
    if args.json {
        print_json(&json!({ "signed_out": true, "server": server }))?;
    } else {
        outln!(
            "signed out {}; server: {server}",
            session.email.as_deref().unwrap_or(&session.user_id)
        )?;
    }
    Ok(0)
}

fn status(cli: &Cli, json: bool) -> Result<i32> {
    let store = open_store(cli)?;
    let s = outpost_sync::status(&store)?;
    let sessions = session_store();
    let config = CentralConfig::resolve_with_session(None, Some(&sessions));
    let uses_session = matches!(config, Ok(CentralConfig::RestSession { .. }));
    let central = config
        .map(|c| c.describe())
        .unwrap_or_else(|_| "not configured".into());
    let session = match sessions.load() {
        Ok(session) => session.map(|s| s.info(now_s())),
        Err(e) => {
            tracing::warn!(error = %e, "the session file cannot be read");
            None
        }
    };
    // A stored session that sync does not use (a fixed JWT or direct Postgres wins).
    let unused = session.is_some() && !uses_session;
    if json {
        let mut v = serde_json::to_value(&s)?;
        v["central"] = json!(central);
        v["session"] = serde_json::to_value(&session)?;
        v["session_used"] = json!(uses_session);
        print_json(&v)?;
        return Ok(0);
    }
    let when = |ms: Option<i64>| match ms {
        Some(ms) => format!(
            "{:.0} s ago",
            outpost_sync::reconcile::age(ms).as_secs_f64()
        ),
        None => "never".into(),
    };
    outln!("device        {}", s.device_id)?;
    outln!("central       {central}")?;
    match &session {
        Some(info) if unused => outln!(
            "signed in     {} (not used: OUTPOST_SUPABASE_JWT or --central wins)",
            describe_session(info)
        )?,
        Some(info) => outln!("signed in     {}", describe_session(info))?,
        None => outln!("signed in     no (outpost login)")?,
    }
    outln!("outbox        {} changes waiting", s.outbox_depth)?;
    outln!(
        "lag           {:.1} s (oldest unpushed change)",
        s.lag_ms as f64 / 1000.0
    )?;
    outln!("last push     {}", when(s.last_push_ms))?;
    outln!("last pull     {}", when(s.last_pull_ms))?;
    if s.pending_reembed > 0 {
        outln!("to embed      {} pulled documents", s.pending_reembed)?;
    }
    for p in &s.parked {
        outln!(
            "set aside     {} {}: {} (tried again {}, or when edited)",
            p.kind,
            p.id,
            p.reason,
            when(Some(p.retry_after_ms))
        )?;
    }
    Ok(0)
}

/// `outpost backfill`: queue everything, then push it.
pub fn backfill(cli: &Cli, job: &CentralJob) -> Result<i32> {
    let store = open_store(cli)?;
    let model = load_embedder(cli)?;
    let (config, central) = central(&job.central)?;
    let opts = options(&job.central, model.as_ref());
    let queued = store.enqueue_all()?;
    tracing::info!(queued, central = %config.describe(), "backfill");
    let bar = bar(
        job.json,
        "{spinner} [{bar:30}] {pos}/{len} records {msg} ({per_sec}, eta {eta})",
    );
    let rt = runtime()?;
    let report = rt.block_on(async {
        outpost_sync::check(&central, &opts).await?;
        let mut report = SyncReport::default();
        outpost_sync::push(&store, &central, &opts, &mut report, &mut on_step(&bar)).await?;
        Ok::<_, outpost_sync::Error>(report)
    });
    bar.finish_and_clear();
    let report = report.with_context(|| format!("backfill to {}", config.describe()))?;
    print_report("backfill", &report, 0, job.json)?;
    Ok(0)
}

/// `outpost bootstrap`: pull everything from the start.
pub fn bootstrap(cli: &Cli, job: &CentralJob) -> Result<i32> {
    let (store, model) = engine(cli)?;
    let (config, central) = central(&job.central)?;
    let opts = options(&job.central, model.as_ref());
    store.set_sync_state(&outpost_sync::reconcile::cursor_key(&central), "")?;
    let bar = bar(job.json, "{spinner} {pos} records {msg} ({per_sec})");
    let rt = runtime()?;
    let report = rt.block_on(async {
        outpost_sync::check(&central, &opts).await?;
        let mut report = SyncReport::default();
        outpost_sync::pull(&store, &central, &opts, &mut report, &mut on_step(&bar)).await?;
        Ok::<_, outpost_sync::Error>(report)
    });
    bar.finish_and_clear();
    let report = report.with_context(|| format!("bootstrap from {}", config.describe()))?;
    let n = store.reembed_pending(&|| false)?;
    print_report("bootstrap", &report, n, job.json)?;
    Ok(0)
}

/// `outpost verify --local`: exit status 1 when the database or a derived index has a problem.
pub fn verify_local(cli: &Cli, json: bool) -> Result<i32> {
    let engine = open_store(cli)?;
    let problems = engine.check()?;
    if json {
        print_json(&serde_json::json!({ "ok": problems.is_empty(), "problems": problems }))?;
    } else if problems.is_empty() {
        outln!(
            "{}: database and derived indexes are sound",
            engine.path().display()
        )?;
    } else {
        for p in &problems {
            outln!("{p}")?;
        }
        outln!("{}: {} problem(s)", engine.path().display(), problems.len())?;
    }
    Ok(i32::from(!problems.is_empty()))
}

/// `outpost verify`: exit status 1 when the replicas differ.
pub fn verify(cli: &Cli, job: &CentralJob) -> Result<i32> {
    let store = open_store(cli)?;
    let (config, central) = central(&job.central)?;
    let rt = runtime()?;
    let report = rt
        .block_on(outpost_sync::verify(
            &store,
            &central,
            &job.central.backoff(),
        ))
        .with_context(|| format!("verify against {}", config.describe()))?;
    if job.json {
        print_json(&serde_json::to_value(&report)?)?;
    } else {
        for row in &report.collections {
            let count =
                |v: &serde_json::Value, k: &str| v.get(k).and_then(|x| x.as_u64()).unwrap_or(0);
            let (l, c) = (&row.local, &row.central);
            if row.collection == "_conversations" {
                outln!(
                    "{:<24} {}  conversations {}/{}  messages {}/{}",
                    "(conversations)",
                    if row.equal { "equal  " } else { "DIFFERS" },
                    count(l, "conversations"),
                    count(c, "conversations"),
                    count(l, "messages"),
                    count(c, "messages"),
                )?;
            } else {
                outln!(
                    "{:<24} {}  documents {}/{}  tombstones {}/{}  chunks {}/{}  (local/central)",
                    row.collection,
                    if row.equal { "equal  " } else { "DIFFERS" },
                    count(l, "documents"),
                    count(c, "documents"),
                    count(l, "tombstones"),
                    count(c, "tombstones"),
                    count(l, "chunks"),
                    count(c, "chunks"),
                )?;
            }
        }
        outln!(
            "{}",
            if report.equal {
                "replicas are identical"
            } else {
                "replicas differ"
            }
        )?;
    }
    if !report.equal {
        return Ok(1);
    }
    Ok(0)
}
