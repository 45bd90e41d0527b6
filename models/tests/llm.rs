//! The chat model on the real SmolLM2-135M-Instruct GGUF (fetched by `outpost models fetch
//! --llm` into `$OUTPOST_HOME`): tokenizer parity with llama.cpp, streaming, stop sequences,
//! cancellation, the KV cache reused by the next turn, and the errors of bad input.

use std::path::PathBuf;

use outpost_core::{ChatMessage, FinishReason, GenerateError, GenerateOptions, Generator};
use outpost_models::LlamaGenerator;

type TestResult<T = ()> = Result<T, Box<dyn std::error::Error>>;

fn gguf() -> TestResult<PathBuf> {
    Ok(outpost_models::resolve_llm(None)?)
}

fn open(window: usize) -> TestResult<LlamaGenerator> {
    Ok(LlamaGenerator::open(
        &gguf()?,
        &candle_core::Device::Cpu,
        window,
        None,
    )?)
}

fn opts(max_tokens: usize) -> GenerateOptions {
    GenerateOptions {
        max_tokens,
        ..Default::default()
    }
}

#[test]
fn the_tokenizer_reads_text_as_llama_cpp_does() -> TestResult {
    let g = open(512)?;
    // Token ids llama.cpp (llama-cpp-python 0.3.36) gives for the same texts and GGUF, special
    // tokens parsed: digits one by one (SmolLM's pre-tokenizer), accents, the chat markers.
    let cases: [(&str, &[u32]); 2] = [
        (
            "<|im_start|>user\nIn 2024, 1,250 bees flew 3.5 km — naïve café!<|im_end|>\n",
            &[
                1, 4093, 198, 788, 216, 34, 32, 34, 36, 28, 216, 33, 28, 34, 37, 32, 9356, 18927,
                216, 35, 30, 37, 6381, 1841, 15486, 46494, 37366, 17, 2, 198,
            ],
        ),
        (
            "  spaces\tand\nnewlines  ",
            &[216, 5600, 197, 397, 198, 2241, 5110, 256],
        ),
    ];
    for (text, ids) in cases {
        assert_eq!(g.encode(text)?, ids, "{text:?}");
    }
    // The chat template renders as the model's Jinja template says.
    let prompt = g.render(&[ChatMessage::new("user", "Hi")])?;
    assert_eq!(
        prompt,
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging \
         Face<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    );
    Ok(())
}

#[test]
fn an_answer_streams_what_it_returns_and_stops_at_max_tokens() -> TestResult {
    let g = open(512)?;
    let msgs = [ChatMessage::new("user", "Name three colours.")];
    let mut streamed = String::new();
    let mut pieces = 0;
    let r = g.generate(&msgs, &opts(12), &mut |p| {
        if !p.is_empty() {
            pieces += 1;
            streamed.push_str(p);
        }
        true
    })?;
    assert_eq!(streamed, r.text);
    assert!(pieces > 1, "the answer came in one piece");
    assert_eq!(r.finish_reason, FinishReason::Length);
    assert_eq!(r.completion_tokens, 12);
    assert_eq!(r.prompt_tokens, g.count_tokens(&msgs)?);
    Ok(())
}

#[test]
fn a_stop_sequence_ends_the_answer_and_is_never_streamed() -> TestResult {
    let g = open(512)?;
    let msgs = [ChatMessage::new("user", "Count from one to ten in words.")];
    let full = g.generate(&msgs, &opts(24), &mut |_| true)?;
    // A stop text from the middle of the greedy answer.
    let words: Vec<&str> = full.text.split_whitespace().collect();
    assert!(words.len() > 4, "{:?}", full.text);
    let stop = words[3].to_owned();
    let mut streamed = String::new();
    let cut = g.generate(
        &msgs,
        &GenerateOptions {
            stop: vec![stop.clone()],
            ..opts(24)
        },
        &mut |p| {
            streamed.push_str(p);
            true
        },
    )?;
    assert_eq!(cut.finish_reason, FinishReason::Stop);
    assert!(!cut.text.contains(&stop), "{:?} holds {stop:?}", cut.text);
    assert_eq!(streamed, cut.text);
    assert!(
        full.text.starts_with(cut.text.trim_end()),
        "{:?} vs {:?}",
        cut.text,
        full.text
    );
    Ok(())
}

#[test]
fn a_caller_that_stops_listening_stops_the_model() -> TestResult {
    let g = open(512)?;
    let msgs = [ChatMessage::new("user", "Tell me a long story.")];
    let mut pieces = 0;
    let r = g.generate(&msgs, &opts(200), &mut |p| {
        if !p.is_empty() {
            pieces += 1;
        }
        pieces < 3
    })?;
    assert_eq!(r.finish_reason, FinishReason::Cancelled);
    assert!(
        r.completion_tokens <= 4,
        "{} tokens after cancelling",
        r.completion_tokens
    );
    Ok(())
}

#[test]
fn the_next_turn_of_a_conversation_reuses_the_cache() -> TestResult {
    let g = open(2048)?;
    let notes = "Honey bees live in colonies of one queen, thousands of workers and some drones. \
                 Workers forage for nectar and pollen and tell each other where flowers are. "
        .repeat(8);
    let mut msgs = vec![ChatMessage::new("user", format!("{notes}\nWhat is a bee?"))];
    let first = g.generate(&msgs, &opts(16), &mut |_| true)?;
    assert_eq!(first.cached_tokens, 0);
    assert!(first.prompt_tokens > 256, "{}", first.prompt_tokens);
    // The same request again gives the same answer, though most of it is now cached.
    let again = g.generate(&msgs, &opts(16), &mut |_| true)?;
    assert!(again.cached_tokens > 0);
    assert_eq!(again.text, first.text);
    msgs.push(ChatMessage::new("assistant", first.text.clone()));
    msgs.push(ChatMessage::new("user", "And a wasp?"));
    let second = g.generate(&msgs, &opts(8), &mut |_| true)?;
    // What the first turn read is reused, in whole batches of 256 tokens.
    assert!(
        second.cached_tokens >= first.prompt_tokens / 256 * 256,
        "{} reused of the first turn's {}",
        second.cached_tokens,
        first.prompt_tokens
    );
    // Another conversation shares only the system prompt.
    let other = g.generate(&[ChatMessage::new("user", "Hello")], &opts(4), &mut |_| {
        true
    })?;
    assert!(other.cached_tokens < first.prompt_tokens);
    Ok(())
}

#[test]
fn bad_requests_and_bad_files_are_refused_naming_what() -> TestResult {
    let g = open(128)?;
    let long = ChatMessage::new("user", "bees ".repeat(400));
    match g.generate(&[long], &opts(16), &mut |_| true) {
        Err(GenerateError::PromptTooLong { tokens, limit }) => {
            assert!(tokens > 400);
            assert_eq!(limit, 128 - 16);
        }
        other => panic!("expected PromptTooLong, got {other:?}"),
    }
    match g.generate(&[ChatMessage::new("tool", "x")], &opts(4), &mut |_| true) {
        Err(GenerateError::Invalid(m)) => assert!(m.contains("tool"), "{m}"),
        other => panic!("expected Invalid, got {other:?}"),
    }
    let dir = tempfile::tempdir()?;
    let bad = dir.path().join("notes.gguf");
    std::fs::write(&bad, b"this is not a GGUF file at all")?;
    let err = LlamaGenerator::open(&bad, &candle_core::Device::Cpu, 512, None)
        .err()
        .ok_or("a text file loaded as a model")?;
    assert!(err.to_string().contains("notes.gguf"), "{err}");
    assert!(
        matches!(err, outpost_models::Error::BadGguf { .. }),
        "{err:?}"
    );
    let missing = LlamaGenerator::open(
        &dir.path().join("none.gguf"),
        &candle_core::Device::Cpu,
        512,
        None,
    )
    .err()
    .ok_or("a missing file loaded")?;
    assert!(missing.to_string().contains("none.gguf"), "{missing}");
    Ok(())
}
