//! `outpost ask` on the quickstart corpus with the real embedding model and the real SmolLM2
//! GGUF: a streamed answer with numbered sources, `--json`'s answer, citations and timings, the
//! answer for a question the documents do not cover (no model run), and `--conversation`.

mod common;

use std::process::{Command, Output};

use common::{corpus, TestResult, OUTPOST};
use serde_json::Value;

fn outpost(db: &std::path::Path, args: &[&str]) -> TestResult<Output> {
    let out = Command::new(OUTPOST)
        .arg("--db")
        .arg(db)
        .args(args)
        .output()?;
    assert!(
        out.status.success(),
        "outpost {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(out)
}

#[test]
fn ask_answers_from_the_documents_with_their_sources() -> TestResult {
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("q.db");
    Command::new(OUTPOST)
        .arg("--db")
        .arg(&db)
        .arg("ingest")
        .arg(corpus())
        .output()?;

    // The text form: the answer, then the numbered sources.
    let out = outpost(
        &db,
        &["ask", "How do I count varroa mites?", "--max-tokens", "32"],
    )?;
    let text = String::from_utf8(out.stdout)?;
    let (answer, sources) = text.split_once("\nSources:\n").ok_or(text.clone())?;
    assert!(!answer.trim().is_empty());
    assert!(
        sources
            .lines()
            .next()
            .is_some_and(|l| l.starts_with("[1] ")),
        "{sources}"
    );
    assert!(sources.contains("varroa-mite-control.md"), "{sources}");

    // --json: the answer, every citation among the sources, timings and usage.
    let out = outpost(
        &db,
        &[
            "ask",
            "How do I count varroa mites?",
            "--max-tokens",
            "32",
            "--json",
        ],
    )?;
    let r: Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(r["found"], true);
    assert!(
        !r["answer"].as_str().unwrap_or_default().trim().is_empty(),
        "{r}"
    );
    let citations = r["citations"].as_array().ok_or("no citations")?;
    assert!(!citations.is_empty());
    for n in r["cited"].as_array().ok_or("no cited")? {
        assert!(
            citations.iter().any(|c| c["n"] == *n && c["cited"] == true),
            "{r}"
        );
    }
    for c in citations {
        assert!(c["byte_end"].as_u64() > c["byte_start"].as_u64(), "{c}");
        assert!(!c["chunk_ids"].as_array().ok_or("chunk_ids")?.is_empty());
    }
    assert_eq!(r["usage"]["completion_tokens"], 32);
    assert!(r["timings"]["time_to_first_token_ms"].as_f64() > Some(0.0));
    assert!(r["timings"]["tokens_per_s"].as_f64() > Some(0.0));

    // Nothing in the documents: it says so, cites nothing and runs no model.
    let out = outpost(
        &db,
        &[
            "ask",
            "Who won the 1987 Formula One championship?",
            "--json",
        ],
    )?;
    let r: Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(r["found"], false, "{r}");
    assert_eq!(
        r["answer"],
        "I could not find anything about this in your documents."
    );
    assert_eq!(r["citations"], serde_json::json!([]));
    assert_eq!(r["usage"]["completion_tokens"], 0);
    Ok(())
}

#[test]
fn a_conversation_keeps_the_questions_and_answers() -> TestResult {
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("c.db");
    Command::new(OUTPOST)
        .arg("--db")
        .arg(&db)
        .arg("ingest")
        .arg(corpus().join("bread"))
        .output()?;
    let id = String::from_utf8(outpost(&db, &["conv", "new", "baking"])?.stdout)?;
    let id = id.trim();
    for q in ["How do I feed a sourdough starter?", "How often?"] {
        outpost(
            &db,
            &[
                "ask",
                q,
                "--conversation",
                id,
                "--max-tokens",
                "16",
                "--json",
            ],
        )?;
    }
    let out = outpost(&db, &["conv", "show", id, "--json"])?;
    let shown: Value = serde_json::from_slice(&out.stdout)?;
    let messages = shown["messages"].as_array().ok_or(shown.to_string())?;
    let roles: Vec<&str> = messages.iter().filter_map(|m| m["role"].as_str()).collect();
    assert_eq!(roles, ["user", "assistant", "user", "assistant"], "{shown}");
    assert_eq!(messages[2]["content"], "How often?");
    Ok(())
}
