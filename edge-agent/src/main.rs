//! `outpost`: the command line of the embedded RAG engine.
//!
//! Every command opens the database (`--db`, `OUTPOST_DB`), does one job and exits; `--json`
//! switches a command's output to one JSON document on stdout. The embedding model is loaded
//! only by commands that embed (ingest, vector and hybrid search, context, messages).

mod agent;
mod bench;
mod bench_http;
mod bench_sync;
mod cli;
mod eval;
mod sync_cmd;
mod transfer;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context as _, Result};
use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use cli::{Cli, Command, ConfigCommand, ConvCommand, DocsCommand, ModelsCommand};
use outpost_core::{
    ContextOptions, Engine, Filter, IngestOptions, Progress, RrfParams, SearchMode, SearchOptions,
    Store,
};

// Embedding allocates and frees tens of megabytes per layer. The system allocator (and mimalloc
// by default) hands such blocks back to the kernel on free, and the kernel zeroes fresh pages on
// the next allocation: a quarter of embedding time went to `clear_page`. mimalloc with purging
// off (`MIMALLOC_PURGE_DELAY=-1`) keeps them for reuse.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc reads its options once, before `main`: to turn purging off, run again with the
/// option in the environment (unless the user set it). Setting it later with `mi_option_set`
/// was measured to keep most of the cost. `RAYON_NUM_THREADS` is pinned at the same time:
/// without it candle looks the core count up in /proc on every matrix product.
fn reexec_with_allocator_options() {
    use std::os::unix::process::CommandExt;
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
        return;
    }
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let mut cmd = std::process::Command::new(exe);
    cmd.args(std::env::args_os().skip(1))
        .env("MIMALLOC_PURGE_DELAY", "-1");
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        cmd.env("RAYON_NUM_THREADS", cores.to_string());
    }
    // `exec` returns only if it failed; then carry on with the default options.
    let _ = cmd.exec();
}

fn main() {
    reexec_with_allocator_options();
    let cli = Cli::parse();
    // The agent reads its log format (and everything else) from its configuration too.
    let agent_config = match &cli.command {
        Command::Serve(args) => match agent::config::Config::load(
            args.config.as_deref(),
            agent_overrides(&cli, Some(args)),
        ) {
            Ok(c) => Some(c),
            Err(e) => {
                eprintln!("error: {e:#}");
                std::process::exit(1);
            }
        },
        _ => None,
    };
    let (format, default_level) = match &agent_config {
        Some(c) => (c.log_format.clone(), "info"),
        None => (cli.log_format.clone(), "warn"),
    };
    init_tracing(
        cli.verbose,
        format.as_deref().unwrap_or("text"),
        default_level,
    );
    let result = match agent_config {
        Some(config) => serve(&cli, config),
        None => run(cli),
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(1);
        }
    }
}

fn init_tracing(verbose: u8, format: &str, default_level: &str) {
    let level = match verbose {
        0 => default_level,
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("OUTPOST_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// `<user data dir>/outpost/outpost.db`.
fn default_db() -> PathBuf {
    dirs::data_dir()
        .unwrap_or_else(|| PathBuf::from("."))
        .join("outpost")
        .join("outpost.db")
}

/// The database path: `--db`, `OUTPOST_DB`, or [`default_db`].
fn db_path(cli: &Cli) -> PathBuf {
    cli.db.clone().unwrap_or_else(default_db)
}

/// The agent settings the command line gives.
fn agent_overrides(cli: &Cli, args: Option<&cli::ServeArgs>) -> agent::config::Overrides {
    let mut o = agent::config::Overrides {
        db: cli.db.clone(),
        model_dir: cli.model_dir.clone(),
        cpu: cli.cpu,
        log_format: cli.log_format.clone(),
        ..Default::default()
    };
    if let Some(a) = args {
        o.addr.clone_from(&a.addr);
        o.watch.clone_from(&a.watch);
        o.collection.clone_from(&a.collection);
        o.sync_interval = a.sync_interval;
    }
    o
}

/// `outpost serve`.
fn serve(cli: &Cli, config: agent::config::Config) -> Result<i32> {
    let db = config.db.clone().unwrap_or_else(default_db);
    if let Some(parent) = db.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    let dir = outpost_models::resolve_model_dir(config.model_dir.as_deref())?;
    let device = outpost_models::select_device(!(config.cpu || cli.cpu));
    let model = outpost_models::BertEmbedder::load(&dir, &device)
        .with_context(|| format!("loading model from {}", dir.display()))?;
    agent::run(config, db, Arc::new(model))
}

fn open_store(cli: &Cli) -> Result<Store> {
    // Store errors name the file already.
    Ok(Store::open(db_path(cli))?)
}

fn load_embedder(cli: &Cli) -> Result<Arc<outpost_models::BertEmbedder>> {
    let dir = outpost_models::resolve_model_dir(cli.model_dir.as_deref())?;
    let device = outpost_models::select_device(!cli.cpu);
    let model = outpost_models::BertEmbedder::load(&dir, &device)
        .with_context(|| format!("loading model from {}", dir.display()))?;
    Ok(Arc::new(model))
}

fn engine(cli: &Cli) -> Result<(Engine, Arc<outpost_models::BertEmbedder>)> {
    let store = open_store(cli)?;
    let model = load_embedder(cli)?;
    Ok((Engine::new(store, model.clone()), model))
}

fn parse_filters(raw: &[String]) -> Result<Vec<Filter>> {
    Ok(raw
        .iter()
        .map(|f| f.parse::<Filter>())
        .collect::<Result<Vec<_>, _>>()?)
}

fn print_json(value: &serde_json::Value) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// One line of a chunk, whitespace collapsed, at most `max` characters.
fn snippet(text: &str, max: usize) -> String {
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() <= max {
        flat
    } else {
        let cut: String = flat.chars().take(max).collect();
        format!("{cut}…")
    }
}

fn run(cli: Cli) -> Result<i32> {
    match &cli.command {
        Command::Init => {
            let store = open_store(&cli)?;
            println!(
                "initialised {} (schema version {})",
                store.path().display(),
                store.schema_version()?
            );
            Ok(0)
        }
        Command::Ingest(args) => {
            let (mut engine, model) = engine(&cli)?;
            let opts = IngestOptions {
                collection: args.collection.clone(),
                max_file_size: args.max_file_size,
                chunking: outpost_core::ChunkParams {
                    max_tokens: args.chunk_tokens,
                    overlap: args.chunk_overlap,
                },
                batch_size: args.batch,
                include_hidden: args.hidden,
            };
            let bar = if std::io::stderr().is_terminal() && !args.json {
                ProgressBar::new(0)
            } else {
                ProgressBar::hidden()
            };
            bar.set_style(
                ProgressStyle::with_template("{spinner} [{bar:30}] {pos}/{len} files {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
            );
            let started = Instant::now();
            let mut on_progress = |p: Progress<'_>| match p {
                Progress::Files(n) => bar.set_length(n),
                Progress::Start(path) => bar.set_message(
                    path.file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                ),
                Progress::Embedded(done, total) if total > 1 => {
                    bar.set_message(format!("{done}/{total} chunks"));
                }
                Progress::Embedded(..) => {}
                Progress::Done(_) => bar.inc(1),
            };
            let report = engine.ingest(&args.paths, &opts, &mut on_progress)?;
            bar.set_message("updating the search indexes");
            // The batch job pays for the index, so that the next search starts warm.
            let indexing = Instant::now();
            engine.store().refresh_vector_indexes()?;
            let index_secs = indexing.elapsed().as_secs_f64();
            bar.finish_and_clear();
            let secs = started.elapsed().as_secs_f64();
            let truncated = model.truncated_count();
            if args.json {
                let mut v = serde_json::to_value(&report)?;
                v["seconds"] = json!(secs);
                // The vector indexes and the text index (the name predates the latter).
                v["vector_index_seconds"] = json!(index_secs);
                v["truncated_inputs"] = json!(truncated);
                print_json(&v)?;
            } else {
                println!(
                    "{} added, {} updated, {} unchanged, {} removed, {} failed; {} chunks embedded in {:.1}s ({:.2}s of it updating the search indexes)",
                    report.added,
                    report.updated,
                    report.unchanged,
                    report.removed,
                    report.failed,
                    report.chunks,
                    secs,
                    index_secs
                );
                for f in &report.failures {
                    println!("  failed: {}: {}", f.path, f.reason);
                }
            }
            Ok(if report.failed > 0 { 2 } else { 0 })
        }
        Command::Search(args) => {
            let mode: SearchMode = args.mode.parse()?;
            let opts = SearchOptions {
                k: args.k,
                mode,
                filters: parse_filters(&args.filter)?,
                rrf: RrfParams {
                    k: args.rrf_k,
                    vector_weight: args.vector_weight,
                    text_weight: args.text_weight,
                },
            };
            let query = args.query.join(" ");
            let hits = if mode == SearchMode::Text {
                // Full-text search needs no model; don't load one.
                let store = open_store(&cli)?;
                let req = outpost_core::SearchRequest {
                    mode,
                    filters: &opts.filters,
                    rrf: opts.rrf,
                    ..outpost_core::SearchRequest::new(&query, opts.k)
                };
                store.search(&req)?
            } else {
                engine(&cli)?.0.search(&query, &opts)?
            };
            if args.json {
                let results: Vec<_> = hits
                    .iter()
                    .map(|h| {
                        json!({
                            "chunk_id": h.chunk_id, "document_id": h.document_id, "title": h.title,
                            "source": h.source, "text": h.text, "score": h.score,
                            "collection": h.collection, "byte_start": h.byte_start, "byte_end": h.byte_end,
                        })
                    })
                    .collect();
                print_json(&json!({ "query": query, "mode": mode, "results": results }))?;
            } else if hits.is_empty() {
                println!("no results");
            } else {
                for (i, h) in hits.iter().enumerate() {
                    println!("{:>2}. {:.4}  {} — {}", i + 1, h.score, h.title, h.source);
                    println!("    {}", snippet(&h.text, 160));
                }
            }
            Ok(0)
        }
        Command::Context(args) => {
            let (engine, _) = engine(&cli)?;
            let opts = ContextOptions {
                budget: args.budget,
                candidates: args.candidates,
                search: SearchOptions {
                    mode: args.mode.parse()?,
                    filters: parse_filters(&args.filter)?,
                    ..Default::default()
                },
                conversation_id: args.conversation.clone(),
                ..Default::default()
            };
            let ctx = engine.context(&args.query.join(" "), &opts)?;
            if args.json {
                print_json(&serde_json::to_value(&ctx)?)?;
            } else {
                println!("{}", ctx.text);
                eprintln!("({} of {} tokens)", ctx.tokens, ctx.budget);
            }
            Ok(0)
        }
        Command::Docs(cmd) => docs(&cli, cmd),
        Command::Stats { json } => {
            let store = open_store(&cli)?;
            let stats = store.stats()?;
            if *json {
                print_json(&serde_json::to_value(&stats)?)?;
            } else {
                println!(
                    "database: {} (schema v{}, {} bytes)",
                    stats.path.display(),
                    stats.schema_version,
                    stats.size_bytes
                );
                for c in &stats.collections {
                    println!(
                        "collection {}: {} documents, {} chunks, {} tokens; model {} ({}-d)",
                        c.collection.name,
                        c.documents,
                        c.chunks,
                        c.tokens,
                        c.collection.model_id,
                        c.collection.dims
                    );
                }
                println!(
                    "{} deleted documents, {} conversations, {} messages",
                    stats.deleted_documents, stats.conversations, stats.messages
                );
            }
            Ok(0)
        }
        Command::Conv(cmd) => conv(&cli, cmd),
        Command::Models(cmd) => models(cmd),
        Command::Embed(args) => {
            let model = load_embedder(&cli)?;
            let texts: Vec<&str> = args.texts.iter().map(String::as_str).collect();
            let vectors = outpost_core::Embedder::embed(model.as_ref(), &texts)?;
            let model_id = outpost_core::Embedder::model_id(model.as_ref());
            let dims = outpost_core::Embedder::dims(model.as_ref());
            if args.json {
                println!(
                    "{}",
                    serde_json::to_string(
                        &json!({ "model": model_id, "dims": dims, "vectors": vectors })
                    )?
                );
            } else {
                for (t, v) in texts.iter().zip(&vectors) {
                    let head: Vec<String> = v.iter().take(6).map(|x| format!("{x:.4}")).collect();
                    println!(
                        "{} [{} …] ({dims}-d, {model_id})",
                        snippet(t, 40),
                        head.join(", ")
                    );
                }
            }
            if model.truncated_count() > 0 {
                eprintln!(
                    "note: {} text(s) longer than {} tokens were truncated",
                    model.truncated_count(),
                    model.max_seq_length()
                );
            }
            Ok(0)
        }
        Command::Bench(cmd) => bench::run(cmd, &|| load_embedder(&cli)),
        Command::Eval(cli::EvalCommand::Beir(args)) => eval::beir(args, load_embedder(&cli)?),
        Command::Import(cmd) => transfer::import(&cli, cmd),
        Command::Export(cmd) => transfer::export(&cli, cmd),
        Command::Sync(args) => sync_cmd::sync(&cli, args),
        Command::Backfill(job) => sync_cmd::backfill(&cli, job),
        Command::Bootstrap(job) => sync_cmd::bootstrap(&cli, job),
        Command::Verify(job) => sync_cmd::verify(&cli, job),
        Command::Serve(_) => unreachable!("served from main"),
        Command::Config(ConfigCommand::Show { config, json }) => {
            let c = agent::config::Config::load(config.as_deref(), agent_overrides(&cli, None))?;
            let masked = c.masked();
            if *json {
                print_json(&serde_json::to_value(&masked)?)?;
            } else {
                print!("{}", toml::to_string_pretty(&masked)?);
            }
            Ok(0)
        }
    }
}

fn docs(cli: &Cli, cmd: &DocsCommand) -> Result<i32> {
    let mut store = open_store(cli)?;
    match cmd {
        DocsCommand::List {
            collection,
            all,
            limit,
            json,
        } => {
            let docs = store.list_documents(collection.as_deref(), *all, *limit)?;
            if *json {
                print_json(&json!({ "documents": docs }))?;
            } else {
                for d in &docs {
                    let mark = if d.deleted { " (deleted)" } else { "" };
                    println!(
                        "{}  {:>4} chunks  {} — {}{}",
                        d.id, d.chunks, d.title, d.source, mark
                    );
                }
                if docs.is_empty() {
                    println!("no documents");
                }
            }
        }
        DocsCommand::Show { id, json } => {
            let d = store.get_document(id)?;
            if *json {
                print_json(&serde_json::to_value(&d)?)?;
            } else {
                println!("id:         {}", d.summary.id);
                println!("title:      {}", d.summary.title);
                println!("source:     {}", d.summary.source);
                println!("collection: {}", d.summary.collection);
                println!("metadata:   {}", d.metadata);
                println!(
                    "revision:   {}{}",
                    d.rev,
                    if d.summary.deleted { " (deleted)" } else { "" }
                );
                for c in &d.chunks {
                    println!(
                        "--- chunk {} ({} tokens, bytes {}..{})",
                        c.ordinal, c.token_count, c.byte_start, c.byte_end
                    );
                    println!("{}", c.text);
                }
            }
        }
        DocsCommand::Rm { id } => {
            let d = store.delete_document(id)?;
            println!("deleted {} ({})", d.id, d.source);
        }
    }
    Ok(0)
}

fn conv(cli: &Cli, cmd: &ConvCommand) -> Result<i32> {
    match cmd {
        ConvCommand::New { title, json } => {
            let mut store = open_store(cli)?;
            let c = store.create_conversation(title)?;
            if *json {
                print_json(&serde_json::to_value(&c)?)?;
            } else {
                println!("{}", c.id);
            }
        }
        ConvCommand::List { title, json } => {
            let store = open_store(cli)?;
            let list = store.conversations(title.as_deref(), 1000)?;
            if *json {
                print_json(&json!({ "conversations": list }))?;
            } else {
                for c in &list {
                    println!("{}  {:>4} messages  {}", c.id, c.messages, c.title);
                }
            }
        }
        ConvCommand::Add { id, role, text } => {
            let (mut engine, _) = engine(cli)?;
            let m = engine.add_message(id, role, &text.join(" "))?;
            println!("{} #{}", m.id, m.seq);
        }
        ConvCommand::Show { id, n, json } => {
            let store = open_store(cli)?;
            let msgs = store.recent_messages(id, *n)?;
            if *json {
                print_json(&json!({ "messages": msgs }))?;
            } else {
                for m in &msgs {
                    println!("#{} {}: {}", m.seq, m.role, m.content);
                }
            }
        }
    }
    Ok(0)
}

fn models(cmd: &ModelsCommand) -> Result<i32> {
    let root = outpost_models::files::models_root();
    match cmd {
        ModelsCommand::Fetch { name } => {
            let name = name.as_deref().unwrap_or(outpost_models::DEFAULT_MODEL);
            eprintln!("fetching {name} into {}", root.display());
            let dir = outpost_models::fetch(name, &root)?;
            println!("{}", dir.display());
        }
        ModelsCommand::List { json } => {
            let list = outpost_models::files::list(&root);
            if *json {
                let models: Vec<_> = list
                    .iter()
                    .map(|m| {
                        json!({ "name": m.name, "model_id": m.model_id, "path": m.path,
                                "present": m.present, "known": m.known })
                    })
                    .collect();
                print_json(&json!({ "root": root, "models": models }))?;
            } else {
                for m in &list {
                    let state = if m.present {
                        "installed"
                    } else {
                        "not fetched"
                    };
                    println!("{:<24} {:<12} {}", m.name, state, m.path.display());
                }
            }
        }
    }
    Ok(0)
}
