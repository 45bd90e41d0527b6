//! The scenarios of `cross/scripts/ffi-memory.py` in a native host: the app's own code calls the
//! library's exported `Engine` in-process, as the Kotlin and Swift bindings do, without an
//! interpreter's memory beside it. Prints one scenario's steps as JSON lines
//! `["step", rss_mib, peak_mib]`, as the script's Python scenarios do.
//!
//! ```sh
//! cargo build --profile mobile -p outpost-ffi --no-default-features --example memory
//! python3 cross/scripts/ffi-memory.py --native target/mobile/examples/memory
//! ```

use outpost_ffi::{Engine, EngineConfig};

/// (VmRSS, VmHWM) of this process in MiB.
fn memory() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
            .map_or(f64::NAN, |kib| kib / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, scenario, db] = args.as_slice() else {
        return Err("usage: memory work|search-only DATABASE".into());
    };
    let mut steps = vec![("process alone".to_owned(), memory())];
    let engine = Engine::open(
        db.clone(),
        EngineConfig {
            model_dir: None,
            collection: None,
            use_gpu: false,
            readers: 2,
            preload_model: false,
        },
    )?;
    steps.push(("engine open (model not loaded)".into(), memory()));
    let search = |q: &str, mode: &str| engine.search(q.into(), 10, mode.into(), Vec::new());
    if scenario == "work" {
        for i in 0..50 {
            let text =
                format!("Note {i} about glaciers, rivers and the tides of the northern sea.");
            engine.ingest_text(text, None, None, None)?;
        }
        steps.push(("after 50 ingests".into(), memory()));
        for _ in 0..20 {
            search("how do tides work", "hybrid")?;
        }
        steps.push(("after 20 hybrid searches".into(), memory()));
    } else {
        engine.stats()?;
        search("tides", "text")?;
        if engine.model_loaded() {
            return Err("a text-index search loaded the model".into());
        }
        steps.push(("after a text-index search".into(), memory()));
        search("how do tides work", "hybrid")?;
        steps.push(("after the first text query (model loaded)".into(), memory()));
    }
    let rows: Vec<(String, f64, f64)> = steps.into_iter().map(|(s, (r, h))| (s, r, h)).collect();
    println!("{}", serde_json::to_string(&rows)?);
    Ok(())
}
