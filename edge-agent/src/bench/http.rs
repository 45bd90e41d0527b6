//! `outpost bench http`: a bounded load test of the agent on loopback. It starts a fresh
//! `outpost serve` (this binary, its own temporary database, the default model), ingests a seed
//! corpus through the API, then runs `--clients` concurrent clients for `--seconds`, each
//! sending searches (hybrid, k = 10) and, for `--ingest-share` of its requests, ingests; and
//! reports search QPS and latency percentiles, ingest rate, errors, and the agent's peak
//! resident memory. Clients and agent share the machine's cores.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
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

fn sentence(rng: &mut impl Rng, words: usize) -> String {
    (0..words)
        .map(|_| WORDS[rng.random_range(0..WORDS.len())])
        .collect::<Vec<_>>()
        .join(" ")
}

/// Peak resident memory of a process, in bytes.
fn peak_rss(pid: u32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
}

#[derive(Default)]
struct Tally {
    search_ms: Vec<f64>,
    ingest_ms: Vec<f64>,
    errors: Vec<String>,
}

/// Runs the bench.
pub fn run(args: &BenchHttpArgs) -> Result<i32> {
    let dir = tempfile::tempdir()?;
    let exe = std::env::current_exe()?;
    std::fs::write(dir.path().join("none.toml"), "")?;
    let mut child = Command::new(exe)
        .arg("--db")
        .arg(dir.path().join("bench.db"))
        .args(["serve", "--addr", "127.0.0.1:0", "--sync-interval", "0"])
        .env("OUTPOST_CONFIG", dir.path().join("none.toml"))
        .env_remove("OUTPOST_TOKEN")
        .env_remove("OUTPOST_WATCH")
        .env_remove("OUTPOST_CENTRAL_URL")
        .env_remove("OUTPOST_SUPABASE_URL")
        .env("OUTPOST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .context("starting outpost serve")?;
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
    let result = load(args, &url);
    // SIGTERM, as an operator would stop it.
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let peak = peak_rss(pid);
    let _ = child.wait();
    let (tally, elapsed) = result?;
    report(args, &tally, elapsed, peak)
}

fn load(args: &BenchHttpArgs, url: &str) -> Result<(Tally, f64)> {
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
                let share = args.ingest_share;
                tokio::spawn(async move {
                    let mut rng = rand::rngs::StdRng::seed_from_u64(c as u64 + 1);
                    while Instant::now() < deadline {
                        let ingest = rng.random_bool(share.clamp(0.0, 1.0));
                        let t = Instant::now();
                        let response = if ingest {
                            let text = format!("{}.", sentence(&mut rng, 30));
                            http.post(format!("{url}/v1/documents"))
                                .json(&json!({ "text": text }))
                                .send()
                                .await
                        } else {
                            let query = sentence(&mut rng, 4);
                            http.post(format!("{url}/v1/search"))
                                .json(&json!({ "query": query, "k": 10 }))
                                .send()
                                .await
                        };
                        let ms = t.elapsed().as_secs_f64() * 1e3;
                        let mut tally = tally
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner);
                        match response {
                            Ok(r) if r.status().is_success() => {
                                if ingest {
                                    tally.ingest_ms.push(ms);
                                } else {
                                    tally.search_ms.push(ms);
                                }
                            }
                            Ok(r) => tally.errors.push(format!("HTTP {}", r.status())),
                            Err(e) => tally.errors.push(e.to_string()),
                        }
                    }
                })
            })
            .collect();
        for c in clients {
            c.await?;
        }
        let elapsed = started.elapsed().as_secs_f64();
        let tally = std::mem::take(
            &mut *tally
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        Ok((tally, elapsed))
    })
}

fn report(args: &BenchHttpArgs, tally: &Tally, elapsed: f64, peak: Option<u64>) -> Result<i32> {
    let stats = |v: &[f64]| {
        let mut s = v.to_vec();
        s.sort_by(f64::total_cmp);
        (percentile(&s, 0.50), percentile(&s, 0.99))
    };
    let (s50, s99) = stats(&tally.search_ms);
    let (i50, i99) = stats(&tally.ingest_ms);
    let search_qps = tally.search_ms.len() as f64 / elapsed;
    let ingest_rate = tally.ingest_ms.len() as f64 / elapsed;
    if args.json {
        print_json(&json!({
            "clients": args.clients, "seconds": elapsed, "seed_documents": args.docs,
            "searches": tally.search_ms.len(), "search_qps": search_qps,
            "search_p50_ms": s50, "search_p99_ms": s99,
            "ingests": tally.ingest_ms.len(), "ingests_per_s": ingest_rate,
            "ingest_p50_ms": i50, "ingest_p99_ms": i99,
            "errors": tally.errors.len(), "first_errors": tally.errors.iter().take(5).collect::<Vec<_>>(),
            "agent_peak_rss_bytes": peak,
        }))?;
    } else {
        outln!(
            "{} clients, {elapsed:.1} s, {} seed documents",
            args.clients,
            args.docs
        )?;
        outln!(
            "search: {} requests, {search_qps:.1} QPS, p50 {s50:.1} ms, p99 {s99:.1} ms",
            tally.search_ms.len()
        )?;
        outln!(
            "ingest: {} requests, {ingest_rate:.1}/s, p50 {i50:.1} ms, p99 {i99:.1} ms",
            tally.ingest_ms.len()
        )?;
        outln!("errors: {}", tally.errors.len())?;
        for e in tally.errors.iter().take(5) {
            outln!("  {e}")?;
        }
        if let Some(p) = peak {
            outln!("agent peak resident memory: {} MiB", p >> 20)?;
        }
    }
    Ok(if tally.errors.is_empty() { 0 } else { 1 })
}
