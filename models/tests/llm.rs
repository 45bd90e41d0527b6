//! The chat model on the real SmolLM2-135M-Instruct GGUF.

use std::path::PathBuf;

use outpost_core::{ChatMessage, GenerateOptions, Generator};
use outpost_models::LlamaGenerator;

type TestResult<T = ()> = Result<T, Box<dyn std::error::Error>>;

fn gguf() -> PathBuf {
    outpost_models::models_root()
        .join("SmolLM2-135M-Instruct")
        .join("SmolLM2-135M-Instruct.Q4_1.gguf")
}

#[test]
fn it_answers() -> TestResult {
    let t = std::time::Instant::now();
    let g = LlamaGenerator::open(&gguf(), &candle_core::Device::Cpu, 2048, None)?;
    eprintln!("load {:?}", t.elapsed());
    let msgs = [ChatMessage::new("user", "What is the capital of France?")];
    let mut out = String::new();
    let r = g.generate(
        &msgs,
        &GenerateOptions {
            max_tokens: 64,
            ..Default::default()
        },
        &mut |p| {
            out.push_str(p);
            true
        },
    )?;
    eprintln!("{r:?}");
    eprintln!(
        "tok/s {}",
        r.completion_tokens as f64 / ((r.total_ms - r.first_token_ms) / 1e3)
    );
    let ids = g.encode(&g.render(&msgs)?)?;
    eprintln!("{:?}", &ids[..20.min(ids.len())]);
    let (p, f, gm) = g.bench(&vec![ids[5]; 400], 64)?;
    eprintln!(
        "prompt 400 in {p} ms: {} tok/s; gen 64 in {gm} ms: {} tok/s; first {f}",
        400.0 / p * 1e3,
        64.0 / gm * 1e3
    );
    assert_eq!(out, r.text);
    Ok(())
}
