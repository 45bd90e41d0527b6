//! `outpost ask`'s answers are grounded: on a slice of SciFact's test split (four judged
//! questions, their relevant abstracts and 100 others), every citation of every answer names a
//! passage that was in the model's prompt, and the report says how often the first citation is
//! a relevant abstract. The real embedding model and the real SmolLM2 GGUF answer.

mod common;

use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;
use std::process::Command;

use common::{TestResult, OUTPOST};
use serde_json::Value;

const SCIFACT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/data/scifact");

/// Writes a BEIR folder holding the first `n` judged test queries, their relevant documents and
/// `others` more documents.
fn slice(out: &Path, n: usize, others: usize) -> TestResult<usize> {
    let src = Path::new(SCIFACT);
    let qrels = std::fs::read_to_string(src.join("qrels/test.tsv")).map_err(|e| {
        format!(
            "{}: {e} (SciFact must be in ../shared/data/scifact)",
            src.display()
        )
    })?;
    let mut ids: Vec<String> = Vec::new();
    let mut kept = String::from("query-id\tcorpus-id\tscore\n");
    let mut relevant = BTreeSet::new();
    for line in qrels.lines().skip(1) {
        let f: Vec<&str> = line.split('\t').collect();
        if f.len() != 3 {
            continue;
        }
        if !ids.iter().any(|q| q == f[0]) {
            if ids.len() == n {
                continue;
            }
            ids.push(f[0].to_owned());
        }
        kept.push_str(line);
        kept.push('\n');
        relevant.insert(f[1].to_owned());
    }
    std::fs::create_dir_all(out.join("qrels"))?;
    std::fs::write(out.join("qrels/test.tsv"), kept)?;
    let mut queries = std::fs::File::create(out.join("queries.jsonl"))?;
    for line in std::fs::read_to_string(src.join("queries.jsonl"))?.lines() {
        let v: Value = serde_json::from_str(line)?;
        if ids.iter().any(|q| Some(q.as_str()) == v["_id"].as_str()) {
            writeln!(queries, "{line}")?;
        }
    }
    let mut corpus = std::fs::File::create(out.join("corpus.jsonl"))?;
    let mut extra = 0;
    for line in std::fs::read_to_string(src.join("corpus.jsonl"))?.lines() {
        let v: Value = serde_json::from_str(line)?;
        let id = v["_id"].as_str().unwrap_or_default();
        if relevant.contains(id) || extra < others {
            if !relevant.contains(id) {
                extra += 1;
            }
            writeln!(corpus, "{line}")?;
        }
    }
    Ok(ids.len())
}

#[test]
fn every_citation_names_a_passage_the_model_was_given() -> TestResult {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("scifact");
    let questions = slice(&data, 4, 100)?;
    assert_eq!(questions, 4);
    let out = Command::new(OUTPOST)
        .args(["eval", "grounding"])
        .arg(&data)
        .args(["--max-tokens", "32", "--json", "--index"])
        .arg(dir.path().join("index.db"))
        .output()?;
    assert!(
        out.status.success(),
        "eval grounding failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_slice(&out.stdout)?;
    eprintln!("{r}");
    assert_eq!(r["queries"], 4);
    // Each question has its abstracts in the corpus: retrieval finds them relevant enough.
    assert!(r["answered"].as_u64() >= Some(3), "{r}");
    assert_eq!(
        r["ungrounded"], 0,
        "a citation named a passage the prompt did not hold: {r}"
    );
    let cited = r["cited"].as_u64().unwrap_or(0);
    assert!(cited >= 1, "no answer cited a source: {r}");
    assert_eq!(
        r["model_cited"].as_u64().unwrap_or(0) + r["similarity_cited"].as_u64().unwrap_or(0),
        cited,
        "{r}"
    );
    let rate = r["cited_relevant_rate"].as_f64().ok_or("no rate")?;
    assert!((0.0..=1.0).contains(&rate));
    Ok(())
}
