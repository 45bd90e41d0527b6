//! `outpost`: the command line of the embedded RAG engine.
//!
//! Every command opens the database (`--db`, `OUTPOST_DB`), does one job and exits; `--json`
//! switches a command's output to one JSON document on stdout. The embedding model is loaded
//! only by commands that embed (ingest, vector and hybrid search, context, messages).
//!
//! This file parses the arguments (`cli`) and hands them to `cmd`, one module per group of
//! commands; below `cmd` are the HTTP agent (`agent`) and the benchmarks (`bench`), and below
//! those what they share: `beir` (BEIR datasets) and `output` (stdout). Modules import only
//! downwards.

mod agent;
mod beir;
mod bench;
mod cli;
mod cmd;
mod output;

use clap::Parser;

use cli::Cli;

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
    let result = cmd::run(cli).and_then(|code| {
        output::flush()?;
        Ok(code)
    });
    match result {
        Ok(code) => std::process::exit(code),
        // The reader of stdout has gone (`outpost search … | head`): it has what it wanted, so
        // the command ends there, quietly and successfully, as ripgrep does.
        Err(e) if output::is_broken_pipe(&e) => std::process::exit(0),
        Err(e) => {
            eprintln!("error: {e:#}{}", flag_hint(&e));
            std::process::exit(1);
        }
    }
}

/// The command-line flag behind a library argument that was refused: core names its own
/// arguments (`mode`, `filter`, `max_tokens` ...), which the user knows by their flags.
fn flag_hint(e: &anyhow::Error) -> String {
    let Some(outpost_core::Error::InvalidArgument { name, .. }) = e.downcast_ref() else {
        return String::new();
    };
    let flag = match name.as_str() {
        "k" => "-k",
        "mode" => "--mode",
        "filter" => "--filter",
        "budget" => "--budget",
        "collection" => "--collection",
        "max_tokens" => "--chunk-tokens",
        "overlap" => "--chunk-overlap",
        "table" => "--table",
        _ => return String::new(),
    };
    format!(" (see {flag})")
}
