//! `outpost bench sync`: push and pull rates of 384-d chunk rows against a central Postgres, by
//! direct Postgres and by REST (through the loopback test shim — no PostgREST is installable
//! here), against `COPY` of the same rows into a table with the same indexes (the ceiling), in
//! the same run; and the time to bootstrap a fresh device. Each run is made with every form of
//! vectors the server offers (JSON numbers, and base64 from schema version 2), and reports the
//! bytes per chunk row that its pushes and pulls moved (compact JSON of the calls' arguments and
//! answers, counted by `Central::measure_wire`).

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use bytes::Bytes;
use futures_util::SinkExt;
use serde::Serialize;
use serde_json::{json, Map, Value};

use outpost_core::{Engine, NewChunk, NewDocument};
use outpost_sync::central::VectorFormat;
use outpost_sync::faultproxy::{FaultProxy, Faults};
use outpost_sync::{Backoff, Central, SyncOptions, SyncReport};

use super::synth::{synthetic_model, Synth};
use crate::cli::BenchSyncArgs;
use crate::output::{outln, print_json};

const DIMS: usize = 384;
const CHUNKS_PER_DOC: usize = 10;
const WORDS: usize = 40;
const MODEL: &str = "bench-synthetic-384";
const SECRET: &str = "outpost-bench-jwt-secret-at-least-32-characters";
const ANON: &str = "outpost-bench-anon-key";

#[derive(Debug, Serialize)]
struct Row {
    transport: String,
    rtt_ms: u64,
    vectors: VectorFormat,
    batch: usize,
    chunks: usize,
    push_seconds: f64,
    push_rows_per_s: f64,
    pull_seconds: f64,
    pull_rows_per_s: f64,
    push_vs_copy: f64,
    pull_vs_copy: f64,
    /// Bytes of `outpost_push` arguments and answers per chunk row.
    push_bytes_per_chunk: f64,
    /// Bytes of `outpost_pull` arguments and answers per chunk row.
    pull_bytes_per_chunk: f64,
}

/// What one push and pull moved.
struct Run {
    push: SyncReport,
    pull: SyncReport,
    push_bytes: u64,
    pull_bytes: u64,
}

/// A device holding `chunks` synthetic chunk rows, all queued for push.
fn build_device(dir: &std::path::Path, chunks: usize, seed: u64) -> Result<Engine> {
    let engine = device(&dir.join("bench.db"))?;
    let coll = engine.ensure_collection("bench")?;
    let mut synth = Synth::new(seed, DIMS)?;
    let docs = chunks.div_ceil(CHUNKS_PER_DOC);
    for d in 0..docs {
        let n = CHUNKS_PER_DOC.min(chunks - d * CHUNKS_PER_DOC);
        let chunks: Vec<NewChunk> = (0..n)
            .map(|_| {
                let text = synth.text(WORDS);
                NewChunk {
                    token_count: WORDS,
                    byte_end: text.len(),
                    text,
                    embedding: synth.vector(),
                    ..Default::default()
                }
            })
            .collect();
        let doc = NewDocument {
            source: format!("bench://{d}"),
            title: format!("doc {d}"),
            content_hash: format!("{seed}-{d}"),
            metadata: Map::new(),
        };
        engine.put_embedded(&coll, &doc, &chunks)?;
    }
    Ok(engine)
}

async fn admin(url: &str) -> Result<tokio_postgres::Client> {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .with_context(|| "connecting to the bench central (superuser URL, no TLS)")?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

/// COPY the device's chunk rows into a scratch table shaped and indexed like the central one;
/// returns the seconds for the chunks.
async fn copy_ceiling(url: &str, device: &Engine) -> Result<f64> {
    let client = admin(url).await?;
    client
        .batch_execute(
            "DROP TABLE IF EXISTS outpost_bench_copy;
             CREATE TABLE outpost_bench_copy (LIKE public.outpost_document_chunks
                 INCLUDING DEFAULTS INCLUDING GENERATED INCLUDING INDEXES);",
        )
        .await?;
    // The same rows as the push sends, as COPY text.
    let owner = uuid::Uuid::now_v7().to_string();
    let mut lines = Vec::new();
    let batch = device.outbox_batch(usize::MAX >> 1)?;
    let esc = |s: &str| {
        s.replace('\\', "\\\\")
            .replace('\t', "\\t")
            .replace('\n', "\\n")
            .replace('\r', "\\r")
    };
    for change in &batch.changes {
        if let outpost_core::Change::Document(d) = change {
            for c in &d.chunks {
                let v: Vec<String> = c.embedding.iter().map(|x| x.to_string()).collect();
                lines.push(format!(
                    "{owner}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t[{}]\n",
                    c.id,
                    d.id,
                    c.ordinal,
                    esc(&c.text),
                    c.token_count,
                    c.byte_start,
                    c.byte_end,
                    esc(&Value::Object(c.metadata.clone()).to_string()),
                    c.model,
                    v.join(",")
                ));
            }
        }
    }
    let started = Instant::now();
    let sink = client
        .copy_in(
            "COPY outpost_bench_copy (owner, id, document_id, ordinal, content, token_count, \
             byte_start, byte_end, metadata, model, embedding) FROM STDIN",
        )
        .await?;
    futures_util::pin_mut!(sink);
    for chunk in lines.chunks(1000) {
        sink.send(Bytes::from(chunk.concat())).await?;
    }
    sink.as_mut().finish().await?;
    let seconds = started.elapsed().as_secs_f64();
    client
        .batch_execute("DROP TABLE outpost_bench_copy")
        .await?;
    Ok(seconds)
}

/// Empties the central tables, so that every run (and COPY) starts from the same empty indexes:
/// HNSW inserts get slower as the graph grows.
async fn truncate(url: &str) -> Result<()> {
    admin(url)
        .await?
        .batch_execute(
            "TRUNCATE public.outpost_document_chunks, public.outpost_documents,
                      public.outpost_conversations, public.outpost_messages",
        )
        .await?;
    Ok(())
}

/// A fault proxy adding `rtt_ms` / 2 each way in front of `host:port` (none for 0), and the
/// address to reach it at instead.
async fn link(host_port: &str, rtt_ms: u64) -> Result<(Option<FaultProxy>, String)> {
    if rtt_ms == 0 {
        return Ok((None, host_port.to_string()));
    }
    let target = tokio::net::lookup_host(host_port)
        .await?
        .next()
        .context("the central store's host has no address")?;
    let proxy = FaultProxy::start(target).await?;
    proxy.set(Faults {
        latency: Duration::from_micros(rtt_ms * 500),
        ..Faults::default()
    });
    let addr = proxy.addr().to_string();
    Ok((Some(proxy), addr))
}

/// The `host:port` of a URL (`scheme://[user@]host:port/...`).
fn host_port(url: &str) -> Result<String> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    let hp = rest.split(['/', '?']).next().unwrap_or(rest);
    anyhow::ensure!(hp.contains(':'), "{url} names no port");
    Ok(hp.to_string())
}

#[allow(clippy::too_many_arguments)]
async fn one(
    transport: &str,
    vectors: VectorFormat,
    central_url: &str,
    shim_url: &str,
    chunks: usize,
    batch: usize,
    seed: u64,
    rtt_ms: u64,
) -> Result<Run> {
    let user = uuid::Uuid::now_v7().to_string();
    let direct = if transport == "pg" {
        central_url
    } else {
        shim_url
    };
    let hp = host_port(direct)?;
    let (_proxy, via) = link(&hp, rtt_ms).await?;
    let url = direct.replacen(&hp, &via, 1);
    let central = match transport {
        "pg" => Central::Postgres(outpost_sync::pg::PgTransport::new(
            &url,
            &user,
            Duration::from_secs(300),
        )?),
        _ => Central::Rest(outpost_sync::rest::RestTransport::new(
            &url,
            ANON,
            &outpost_sync::shim::sign_jwt(&user, SECRET)?,
            Duration::from_secs(300),
        )?),
    }
    .with_vector_format(vectors)
    .measure_wire();
    let mut opts = SyncOptions::new(MODEL, DIMS);
    opts.batch_size = batch;
    opts.backoff = Backoff::none();
    let dir = tempfile::tempdir()?;
    let a = build_device(dir.path(), chunks, seed)?;
    truncate(central_url).await?;
    let mut pushed = SyncReport::default();
    outpost_sync::push(&a, &central, &opts, &mut pushed, &mut |_| {}).await?;
    // A fresh device pulls everything: the bootstrap.
    let other = tempfile::tempdir()?;
    let b = device(&other.path().join("b.db"))?;
    let mut pulled = SyncReport::default();
    outpost_sync::pull(&b, &central, &opts, &mut pulled, &mut |_| {}).await?;
    anyhow::ensure!(
        pulled.pulled_chunks == chunks && pushed.pushed_chunks == chunks,
        "pushed {} and pulled {} chunk rows of {chunks}",
        pushed.pushed_chunks,
        pulled.pulled_chunks
    );
    let bytes = |function: &str| {
        let w = central.wire_bytes(function);
        w.sent + w.received
    };
    Ok(Run {
        push: pushed,
        pull: pulled,
        push_bytes: bytes("outpost_push"),
        pull_bytes: bytes("outpost_pull"),
    })
}

/// Runs the bench.
pub fn run(args: &BenchSyncArgs) -> Result<i32> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let probe = Central::Postgres(outpost_sync::pg::PgTransport::new(
            &args.central,
            &uuid::Uuid::now_v7().to_string(),
            Duration::from_secs(30),
        )?);
        let info = probe.check(MODEL, DIMS).await?;
        let formats: Vec<VectorFormat> = match info.best_vector_format() {
            VectorFormat::Json => vec![VectorFormat::Json],
            VectorFormat::Base64 => vec![VectorFormat::Json, VectorFormat::Base64],
        };
        let shim =
            outpost_sync::shim::Shim::start(&args.central, ANON, SECRET).await?;
        let dir = tempfile::tempdir()?;
        let copy_device = build_device(dir.path(), args.chunks, 7)?;
        let copy_seconds = copy_ceiling(&args.central, &copy_device).await?;
        let copy_rate = args.chunks as f64 / copy_seconds;
        let transports: Vec<&str> = match args.transport.as_str() {
            "both" => vec!["pg", "rest"],
            t => vec![t],
        };
        let mut rows = Vec::new();
        for &rtt_ms in &args.rtt_ms {
        for (i, t) in transports.iter().enumerate() {
            for (j, &batch) in args.batch.iter().enumerate() {
              for &vectors in &formats {
                let run = one(
                    t,
                    vectors,
                    &args.central,
                    &shim.url,
                    args.chunks,
                    batch.max(1),
                    (i * 100 + j) as u64,
                    rtt_ms,
                )
                .await?;
                let (push, pull) = (&run.push, &run.pull);
                let push_rate = args.chunks as f64 / push.push_seconds;
                let pull_rate = args.chunks as f64 / pull.pull_seconds;
                let row = Row {
                    transport: t.to_string(),
                    rtt_ms,
                    vectors,
                    batch,
                    chunks: args.chunks,
                    push_seconds: push.push_seconds,
                    push_rows_per_s: push_rate,
                    pull_seconds: pull.pull_seconds,
                    pull_rows_per_s: pull_rate,
                    push_vs_copy: push_rate / copy_rate,
                    pull_vs_copy: pull_rate / copy_rate,
                    push_bytes_per_chunk: run.push_bytes as f64 / args.chunks as f64,
                    pull_bytes_per_chunk: run.pull_bytes as f64 / args.chunks as f64,
                };
                if !args.json {
                    eprintln!(
                        "{:<5} {:>3} ms {:<6} batch {:>4}: push {:>8.0} rows/s ({:.2} s, {:.2}× COPY, {:.0} B/chunk)  pull+apply {:>8.0} rows/s ({:.2} s, {:.2}× COPY, {:.0} B/chunk)",
                        row.transport, row.rtt_ms, row.vectors.as_str(), row.batch, row.push_rows_per_s, row.push_seconds,
                        row.push_vs_copy, row.push_bytes_per_chunk, row.pull_rows_per_s, row.pull_seconds,
                        row.pull_vs_copy, row.pull_bytes_per_chunk
                    );
                }
                rows.push(row);
              }
            }
        }
        }
        if args.json {
            print_json(&json!({
                "chunks": args.chunks, "dims": DIMS, "chunks_per_document": CHUNKS_PER_DOC,
                "copy_seconds": copy_seconds, "copy_rows_per_s": copy_rate, "results": rows,
            }))?;
        } else {
            outln!(
                "COPY ceiling: {:.0} rows/s ({:.2} s for {} chunk rows of {DIMS}-d)",
                copy_rate, copy_seconds, args.chunks
            )?;
        }
        Ok(0)
    })
}

/// A device's engine over the database at `path` (one connection), whose model is the stand-in
/// for the bench's synthetic vectors ([`MODEL`], [`DIMS`]): nothing is embedded.
fn device(path: &std::path::Path) -> Result<Engine> {
    Ok(Engine::open_single(path, synthetic_model(MODEL, DIMS))?)
}
