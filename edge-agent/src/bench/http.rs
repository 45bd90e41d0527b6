//! `outpost bench http`: a bounded load test of the agent on loopback. It starts a fresh
//! `outpost serve` (this binary, its own temporary database, the default model; with
//! `--central`, syncing there in the background), ingests a seed corpus through the API, then
//! runs `--clients` concurrent clients for `--seconds`, each sending a `--mix` of searches
//! (hybrid, k = 10), contexts, writes (new documents, or edits of an `--edit-pool` of them) and
//! syncs. It reports the rate and latency percentiles of each kind, the answers that were
//! documented back-pressure (429 / 503 with `Retry-After`), every other error, the agent's
//! resident memory sampled each second (after `--warm-up`, at the end, peak), and whether the
//! database was sound after the agent stopped. Clients and agent share the machine's cores.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use rand::{Rng, SeedableRng};
use serde_json::json;

use super::report::percentile;
use crate::cli::BenchHttpArgs;
use crate::output::{outln, print_json};

const WORDS: &[&str] = &[
    "tide", "moon", "glacier", "valley", "river", "delta", "storm", "cloud", "forest", "fern",
    "desert", "dune", "volcano", "magma", "bee", "flower", "battery", "solar", "panel", "cabin",
    "fridge", "winter", "harvest", "orchard", "bread", "yeast", "starter", "kiln", "clay", "glaze",
];

/// The kinds of request a client sends, in the order `--mix` names them.
const KINDS: [&str; 4] = ["search", "context", "ingest", "sync"];

fn sentence(rng: &mut impl Rng, words: usize) -> String {
    (0..words)
        .map(|_| WORDS[rng.random_range(0..WORDS.len())])
        .collect::<Vec<_>>()
        .join(" ")
}

/// A `/proc/PID/status` field in bytes (`VmHWM`, `VmRSS`).
fn status_bytes(pid: u32, field: &str) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| {
            v.trim_start_matches(':')
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .map(|kb| kb * 1024)
}

/// `--mix`: weights by kind, e.g. `search=10,context=4,ingest=5,sync=1`.
fn parse_mix(mix: &str) -> Result<[u32; 4]> {
    let mut weights = [0u32; 4];
    for part in mix.split(',').filter(|p| !p.trim().is_empty()) {
        let (kind, weight) = part
            .split_once('=')
            .with_context(|| format!("--mix: '{part}' is not KIND=WEIGHT"))?;
        let i = KINDS
            .iter()
            .position(|k| *k == kind.trim())
            .with_context(|| format!("--mix: unknown kind '{kind}' (one of {KINDS:?})"))?;
        weights[i] = weight
            .trim()
            .parse()
            .with_context(|| format!("--mix: weight of {kind}"))?;
    }
    if weights.iter().all(|w| *w == 0) {
        bail!("--mix: every weight is 0");
    }
    Ok(weights)
}

#[derive(Default)]
struct Tally {
    /// Milliseconds of each successful request, by kind.
    ms: BTreeMap<&'static str, Vec<f64>>,
    /// 429 / 503 answers with `Retry-After`.
    back_pressure: u64,
    errors: Vec<String>,
}

/// What the load did to the agent.
struct Observed {
    tally: Tally,
    elapsed: f64,
    /// Resident memory, once a second.
    rss: Vec<u64>,
}

/// Runs the bench.
pub fn run(args: &BenchHttpArgs) -> Result<i32> {
    let weights = parse_mix(&args.mix)?;
    if weights[3] > 0 && args.central.is_none() {
        bail!("--mix has syncs: name the central store with --central");
    }
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("bench.db");
    let exe = std::env::current_exe()?;
    std::fs::write(dir.path().join("none.toml"), "")?;
    let mut cmd = Command::new(exe);
    cmd.arg("--db")
        .arg(&db)
        .args(["serve", "--addr", "127.0.0.1:0", "--sync-interval"])
        .arg(if args.central.is_some() { "2" } else { "0" })
        .env("OUTPOST_CONFIG", dir.path().join("none.toml"))
        .env_remove("OUTPOST_TOKEN")
        .env_remove("OUTPOST_WATCH")
        .env_remove("OUTPOST_CENTRAL_URL")
        .env_remove("OUTPOST_SUPABASE_URL")
        .env("OUTPOST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped());
    if let Some(central) = &args.central {
        let user = args
            .central_user
            .clone()
            .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
        cmd.env("OUTPOST_CENTRAL_URL", central)
            .env("OUTPOST_CENTRAL_USER", user);
    }
    let mut child = cmd.spawn().context("starting outpost serve")?;
    let stdout = child.stdout.take().context("no stdout")?;
    let mut first = String::new();
    BufReader::new(stdout).read_line(&mut first)?;
    let Some(url) = first
        .trim()
        .strip_prefix("listening on ")
        .map(str::to_string)
    else {
        let _ = child.kill();
        bail!("the agent did not start: {first}");
    };
    let pid = child.id();
    let result = load(args, weights, &url, pid);
    // SIGTERM, as an operator would stop it.
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let peak = status_bytes(pid, "VmHWM");
    let stopped = child.wait()?;
    let observed = result?;
    // What the load left behind, checked with the agent gone.
    let problems = outpost_core::Engine::open_without_model(&db)?.check()?;
    report(args, &observed, peak, stopped.success(), &problems)
}

fn load(args: &BenchHttpArgs, weights: [u32; 4], url: &str, pid: u32) -> Result<Observed> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let http = reqwest::Client::new();
        // The seed corpus, in parallel.
        let bar = if std::io::IsTerminal::is_terminal(&std::io::stderr()) && !args.json {
            indicatif::ProgressBar::new(args.docs as u64)
        } else {
            indicatif::ProgressBar::hidden()
        };
        bar.set_message("seeding");
        let mut rng = rand::rngs::StdRng::seed_from_u64(0);
        let docs: Vec<String> = (0..args.docs)
            .map(|_| {
                (0..3)
                    .map(|_| format!("{}.", sentence(&mut rng, 12)))
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect();
        for chunk in docs.chunks(16) {
            let posts: Vec<_> = chunk
                .iter()
                .map(|text| {
                    let request = http
                        .post(format!("{url}/v1/documents"))
                        .json(&json!({ "text": text }));
                    tokio::spawn(async move { request.send().await })
                })
                .collect();
            for post in posts {
                let r = post.await??;
                anyhow::ensure!(r.status().is_success(), "seeding: {}", r.status());
                bar.inc(1);
            }
        }
        bar.finish_and_clear();

        let tally = Arc::new(Mutex::new(Tally::default()));
        let started = Instant::now();
        let deadline = started + Duration::from_secs(args.seconds);
        let clients: Vec<_> = (0..args.clients.max(1))
            .map(|c| {
                let (http, url, tally) = (http.clone(), url.to_string(), tally.clone());
                let pool = args.edit_pool;
                tokio::spawn(async move {
                    let mut rng = rand::rngs::StdRng::seed_from_u64(c as u64 + 1);
                    while Instant::now() < deadline {
                        let kind = pick(&mut rng, weights);
                        let (path, body) = request(&mut rng, kind, pool);
                        let t = Instant::now();
                        let response = http.post(format!("{url}{path}")).json(&body).send().await;
                        let ms = t.elapsed().as_secs_f64() * 1e3;
                        let mut tally = tally
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner);
                        match response {
                            Ok(r) if r.status().is_success() => {
                                tally.ms.entry(kind).or_default().push(ms);
                            }
                            Ok(r)
                                if matches!(r.status().as_u16(), 429 | 503)
                                    && r.headers().contains_key("retry-after") =>
                            {
                                tally.back_pressure += 1;
                            }
                            Ok(r) => tally.errors.push(format!("{path}: HTTP {}", r.status())),
                            Err(e) => tally.errors.push(format!("{path}: {e}")),
                        }
                    }
                })
            })
            .collect();
        // The agent's resident memory, once a second while the clients run.
        let done = Arc::new(AtomicBool::new(false));
        let sampler = {
            let done = done.clone();
            tokio::spawn(async move {
                let mut rss = Vec::new();
                while !done.load(Ordering::Relaxed) {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    rss.extend(status_bytes(pid, "VmRSS"));
                }
                rss
            })
        };
        for c in clients {
            c.await?;
        }
        let elapsed = started.elapsed().as_secs_f64();
        done.store(true, Ordering::Relaxed);
        let rss = sampler.await?;
        let tally = std::mem::take(
            &mut *tally
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        Ok(Observed {
            tally,
            elapsed,
            rss,
        })
    })
}

/// A kind of request, drawn by `weights`.
fn pick(rng: &mut impl Rng, weights: [u32; 4]) -> &'static str {
    let mut r = rng.random_range(0..weights.iter().sum::<u32>());
    for (kind, w) in KINDS.iter().zip(weights) {
        if r < w {
            return kind;
        }
        r -= w;
    }
    KINDS[0]
}

/// The path and body of a request of `kind`. Writes edit one of `pool` documents (by source)
/// when `pool` > 0, so that the data stays the same size however long the load runs.
fn request(rng: &mut impl Rng, kind: &str, pool: usize) -> (&'static str, serde_json::Value) {
    match kind {
        "context" => (
            "/v1/context",
            json!({ "query": sentence(rng, 4), "budget": 512 }),
        ),
        "ingest" => {
            let text = format!("{}.", sentence(rng, 30));
            let body = if pool > 0 {
                json!({ "text": text, "source": format!("bench/{}", rng.random_range(0..pool)) })
            } else {
                json!({ "text": text })
            };
            ("/v1/documents", body)
        }
        "sync" => ("/v1/sync", json!({})),
        _ => ("/v1/search", json!({ "query": sentence(rng, 4), "k": 10 })),
    }
}

fn median(v: &[u64]) -> u64 {
    let mut v = v.to_vec();
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or(0)
}

fn report(
    args: &BenchHttpArgs,
    observed: &Observed,
    peak: Option<u64>,
    stopped_cleanly: bool,
    problems: &[String],
) -> Result<i32> {
    let Observed {
        tally,
        elapsed,
        rss,
    } = observed;
    // Resident memory once warm: the median of the ten seconds after the warm-up, against the
    // median of the last ten seconds.
    let warm = (args.warm_up as usize).min(rss.len().saturating_sub(1));
    let window = 10.min(rss.len().saturating_sub(warm)).max(1);
    let after_warm_up = median(&rss[warm.min(rss.len())..(warm + window).min(rss.len())]);
    let at_end = median(&rss[rss.len().saturating_sub(window)..]);
    let mib = |b: u64| b as f64 / f64::from(1 << 20);
    let mut kinds = serde_json::Map::new();
    let mut total = 0;
    for (kind, ms) in &tally.ms {
        let mut s = ms.clone();
        s.sort_by(f64::total_cmp);
        total += s.len();
        kinds.insert(
            (*kind).to_string(),
            json!({ "requests": s.len(), "per_s": s.len() as f64 / elapsed,
                    "p50_ms": percentile(&s, 0.50), "p99_ms": percentile(&s, 0.99) }),
        );
    }
    let summary = json!({
        "clients": args.clients, "seconds": elapsed, "seed_documents": args.docs,
        "mix": args.mix, "edit_pool": args.edit_pool, "requests": total,
        "requests_per_s": total as f64 / elapsed, "by_kind": kinds,
        "back_pressure": tally.back_pressure,
        "errors": tally.errors.len(), "first_errors": tally.errors.iter().take(5).collect::<Vec<_>>(),
        "agent_peak_rss_bytes": peak,
        "agent_rss_mib_after_warm_up": mib(after_warm_up),
        "agent_rss_mib_at_end": mib(at_end),
        "agent_rss_mib_each_second": rss.iter().map(|b| (mib(*b) * 10.0).round() / 10.0).collect::<Vec<_>>(),
        "agent_stopped_cleanly": stopped_cleanly,
        "database_problems": problems,
    });
    if args.json {
        print_json(&summary)?;
    } else {
        outln!(
            "{} clients, {elapsed:.1} s, {} seed documents, mix {}",
            args.clients,
            args.docs,
            args.mix
        )?;
        for (kind, ms) in &tally.ms {
            let mut s = ms.clone();
            s.sort_by(f64::total_cmp);
            outln!(
                "{kind:<8} {} requests, {:.1}/s, p50 {:.1} ms, p99 {:.1} ms",
                s.len(),
                s.len() as f64 / elapsed,
                percentile(&s, 0.50),
                percentile(&s, 0.99)
            )?;
        }
        outln!(
            "back-pressure (429/503 with Retry-After): {}",
            tally.back_pressure
        )?;
        outln!("errors: {}", tally.errors.len())?;
        for e in tally.errors.iter().take(5) {
            outln!("  {e}")?;
        }
        outln!(
            "agent resident memory: {:.0} MiB after warm-up, {:.0} MiB at the end, peak {} MiB",
            mib(after_warm_up),
            mib(at_end),
            peak.map_or(0, |p| p >> 20)
        )?;
        outln!(
            "agent stopped {}; database {}",
            if stopped_cleanly {
                "cleanly"
            } else {
                "with an error"
            },
            if problems.is_empty() {
                "sound".to_string()
            } else {
                problems.join("; ")
            }
        )?;
    }
    let ok = tally.errors.is_empty() && stopped_cleanly && problems.is_empty();
    Ok(i32::from(!ok))
}
