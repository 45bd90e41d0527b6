//! `outpost`: the command line of the embedded RAG engine.
//!
//! The commands, the agent and the benchmarks are the `outpost` library (`src/lib.rs`); this
//! binary adds what only a process of its own may set: the allocator and its options.

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
    std::process::exit(outpost::main());
}
