//! RAG context with the real tokenizer: never over budget, numbered citations, conversation
//! memory.

mod common;

use outpost_core::{count_tokens, ContextOptions, Engine, IngestOptions, Store};

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn corpus_engine(dir: &tempfile::TempDir) -> Result<Engine, Box<dyn std::error::Error>> {
    let engine = Engine::new(Store::open(dir.path().join("o.db"))?, common::model());
    engine.ingest(&[common::corpus()], &IngestOptions::default(), &mut |_| {})?;
    Ok(engine)
}

#[test]
fn the_context_never_exceeds_the_budget() -> TestResult {
    let dir = tempfile::tempdir()?;
    let engine = corpus_engine(&dir)?;
    let tokenizer = engine.embedder().tokenizer()?;
    let queries = [
        "how do I keep a sourdough starter alive",
        "battery bank for a fridge",
        "varroa",
        "?? 🐝 émigré",
    ];
    for q in queries {
        for budget in [1, 5, 16, 24, 40, 64, 100, 150, 256, 400, 700, 1500, 4000] {
            let ctx = engine.context(
                q,
                &ContextOptions {
                    budget,
                    ..Default::default()
                },
            )?;
            let counted = count_tokens(tokenizer, &ctx.text);
            assert!(counted <= budget, "{q} / {budget}: {counted} tokens");
            assert_eq!(counted, ctx.tokens);
            for c in &ctx.citations {
                let line = format!("[{}] {} — {}", c.n, c.title, c.source);
                assert!(ctx.text.contains(&line), "citation line {line:?} missing");
            }
            if budget >= 400 {
                assert!(
                    ctx.citations.len() >= 2,
                    "{q} / {budget}: {} citations",
                    ctx.citations.len()
                );
            }
        }
    }
    Ok(())
}

#[test]
fn adjacent_chunks_are_merged_and_the_best_passage_comes_first() -> TestResult {
    let dir = tempfile::tempdir()?;
    let engine = corpus_engine(&dir)?;
    let ctx = engine.context(
        "wiring plan, voltage drop and class T fuses for a cabin solar installation",
        &ContextOptions {
            budget: 2000,
            candidates: 30,
            ..Default::default()
        },
    )?;
    let first = &ctx.citations[0];
    assert!(
        first.source.ends_with("cabin-solar-installation-guide.md"),
        "{first:?}"
    );
    assert!(ctx.text.starts_with("[1] "));
    // Consecutive chunks of the long guide come back as one passage with one citation.
    assert!(
        ctx.citations.iter().any(|c| c.chunk_ids.len() > 1),
        "{:?}",
        ctx.citations
    );
    let mut sources: Vec<(&str, usize)> = ctx
        .citations
        .iter()
        .map(|c| (c.document_id.as_str(), c.byte_start))
        .collect();
    let before = sources.len();
    sources.dedup();
    assert_eq!(sources.len(), before, "no passage is cited twice");
    Ok(())
}

#[test]
fn a_conversation_turn_combines_recent_and_recalled_messages_with_sources() -> TestResult {
    let dir = tempfile::tempdir()?;
    let engine = corpus_engine(&dir)?;
    let conv = engine.create_conversation("cabin planning")?;
    let turns = [
        ("user", "My cabin fridge uses about 800 Wh a day."),
        ("assistant", "Then plan for three days of autonomy."),
        ("user", "Unrelated: what flour should I buy for bread?"),
        (
            "assistant",
            "A strong bread flour with 12 to 13 percent protein.",
        ),
        ("user", "And which proofing basket size?"),
        ("assistant", "A 1 kg banneton suits a 900 g loaf."),
    ];
    for (role, text) in turns {
        engine.add_message(&conv.id, role, text)?;
    }
    let opts = ContextOptions {
        budget: 600,
        conversation_id: Some(conv.id.clone()),
        recent_messages: 2,
        recalled_messages: 1,
        ..Default::default()
    };
    let ctx = engine.context("how big a battery bank does that fridge need?", &opts)?;
    assert!(ctx.tokens <= 600);
    assert_eq!(
        ctx.recent_messages
            .iter()
            .map(|m| m.seq)
            .collect::<Vec<_>>(),
        vec![5, 6]
    );
    assert_eq!(ctx.recalled_messages.len(), 1);
    assert_eq!(
        ctx.recalled_messages[0].seq, 1,
        "the fridge message is the closest earlier one"
    );
    assert!(
        ctx.text
            .starts_with("Conversation:\nuser: And which proofing basket size?"),
        "{}",
        ctx.text
    );
    assert!(ctx
        .text
        .contains("Earlier in this conversation:\nuser: My cabin fridge uses about 800 Wh a day."));
    assert!(ctx.text.contains("Sources:\n[1] "));
    assert!(
        ctx.citations[0].source.contains("battery-bank-sizing"),
        "{:?}",
        ctx.citations[0]
    );
    // Unknown conversations and empty input are errors, not empty contexts.
    let bad = ContextOptions {
        conversation_id: Some("0000-none".into()),
        ..Default::default()
    };
    assert!(engine.context("fridge", &bad).is_err());
    assert!(engine.context("  ", &ContextOptions::default()).is_err());
    assert!(engine
        .context(
            "fridge",
            &ContextOptions {
                budget: 0,
                ..Default::default()
            }
        )
        .is_err());
    Ok(())
}
