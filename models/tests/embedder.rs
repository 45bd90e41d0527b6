//! Tests of [`BertEmbedder`] against the real all-MiniLM-L6-v2 model.
//!
//! The model directory is the one `outpost models fetch` installs (what `scripts/test.sh` runs
//! first), found as every user finds it: [`outpost_models::resolve_model_dir`], i.e.
//! `$OUTPOST_MODEL_DIR`, else `$OUTPOST_HOME/models/all-MiniLM-L6-v2`. A missing model fails the
//! tests rather than skipping them, so a green run always means the model was exercised.

use std::error::Error as StdError;
use std::path::PathBuf;

use candle_core::Device;
use outpost_core::Embedder;
use outpost_models::{BertEmbedder, Error, LazyBertEmbedder, Pooling};

type TestResult = Result<(), Box<dyn StdError>>;

fn model_dir() -> Result<PathBuf, String> {
    outpost_models::resolve_model_dir(None).map_err(|e| {
        format!(
            "test model not found ({e}); run scripts/test.sh or `outpost models fetch` with the \
             same OUTPOST_HOME"
        )
    })
}

fn load() -> Result<BertEmbedder, Box<dyn StdError>> {
    Ok(BertEmbedder::load(&model_dir()?, &Device::Cpu)?)
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn norm(a: &[f32]) -> f32 {
    dot(a, a).sqrt()
}

fn long_text(words: usize) -> String {
    let vocab = [
        "river", "mountain", "engine", "quietly", "harbour", "signal", "orange", "protocol",
    ];
    (0..words)
        .map(|i| vocab[i % vocab.len()])
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn embedder_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<BertEmbedder>();
}

#[test]
fn reports_model_facts() -> TestResult {
    let model = load()?;
    assert_eq!(model.dims(), 384);
    assert_eq!(model.max_tokens(), 256);
    assert_eq!(model.pooling(), Pooling::Mean);
    // A fetched model records its id in outpost-model.json.
    assert_eq!(model.model_id(), "sentence-transformers/all-MiniLM-L6-v2");
    let vectors = model.embed(&["hello world"])?;
    assert_eq!(vectors.len(), 1);
    assert_eq!(vectors[0].len(), 384);
    Ok(())
}

#[test]
fn model_id_without_a_marker_comes_from_the_directory_name() -> TestResult {
    // A model directory copied by hand (no outpost-model.json) is named after its folder.
    let src = model_dir()?;
    let root = tempfile::tempdir()?;
    let dir = root.path().join("my-minilm");
    std::fs::create_dir(&dir)?;
    for file in ["config.json", "tokenizer.json", "sentence_bert_config.json"] {
        std::fs::copy(src.join(file), dir.join(file))?;
    }
    std::os::unix::fs::symlink(
        src.join("model.safetensors").canonicalize()?,
        dir.join("model.safetensors"),
    )?;
    let model = BertEmbedder::load(&dir, &Device::Cpu)?;
    assert_eq!(model.model_id(), "sentence-transformers/my-minilm");
    Ok(())
}

#[test]
fn vectors_are_unit_length() -> TestResult {
    let model = load()?;
    let texts = [
        "short",
        "A somewhat longer sentence about the weather in the mountains.",
        "Rust is a systems programming language.",
    ];
    for v in model.embed(&texts)? {
        assert!((norm(&v) - 1.0).abs() < 1e-4, "norm was {}", norm(&v));
        assert!(v.iter().all(|x| x.is_finite()));
    }
    Ok(())
}

#[test]
fn batch_preserves_order_and_matches_single() -> TestResult {
    let model = load()?;
    // More than one sub-batch, with lengths deliberately out of order.
    let texts: Vec<String> = (0..45)
        .map(|i| match i % 3 {
            0 => format!("Item {i}: {}", long_text(5 + (i * 7) % 60)),
            1 => format!("Question {i}: how do I reset my password?"),
            _ => format!("{i}"),
        })
        .collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let batch = model.embed(&refs)?;
    assert_eq!(batch.len(), texts.len());
    for (text, from_batch) in refs.iter().zip(&batch) {
        let single = model.embed(&[*text])?;
        let cos = dot(&single[0], from_batch);
        assert!(cos > 0.9999, "cosine {cos} for {text:?}");
    }
    Ok(())
}

#[test]
fn long_input_is_truncated_and_counted() -> TestResult {
    let model = load()?;
    assert_eq!(model.truncated_count(), 0);
    model.embed(&["a short text"])?;
    assert_eq!(model.truncated_count(), 0);

    let long = long_text(2000);
    let vectors = model.embed(&[long.as_str(), "another short text"])?;
    assert_eq!(model.truncated_count(), 1);
    assert!((norm(&vectors[0]) - 1.0).abs() < 1e-4);

    // Only the first 256 tokens are read, so anything after them changes nothing.
    let longer = format!("{long} completely different ending about volcanoes");
    let again = model.embed(&[longer.as_str()])?;
    assert_eq!(model.truncated_count(), 2);
    assert!(dot(&vectors[0], &again[0]) > 0.9999);
    Ok(())
}

#[test]
fn close_sentences_score_higher_than_unrelated() -> TestResult {
    let model = load()?;
    let v = model.embed(&[
        "A man is eating food.",
        "A man is eating a piece of bread.",
        "The stock market fell sharply on Tuesday.",
        "How do I reset my router?",
        "Steps to restart a wifi router",
    ])?;
    let food = dot(&v[0], &v[1]);
    // sentence-transformers' own documentation reports 0.7553 for this pair with
    // all-MiniLM-L6-v2, which pins pooling and normalisation to the reference implementation.
    assert!((food - 0.7553).abs() < 2e-3, "food pair cosine {food}");
    let unrelated = dot(&v[0], &v[2]);
    assert!(food > unrelated + 0.3, "{food} vs {unrelated}");
    let router = dot(&v[3], &v[4]);
    assert!(router > dot(&v[3], &v[2]) + 0.3);
    assert!(router > dot(&v[3], &v[0]) + 0.3);
    Ok(())
}

#[test]
fn empty_input_and_empty_batch() -> TestResult {
    let model = load()?;
    let v = model.embed(&["", "not empty"])?;
    assert_eq!(v.len(), 2);
    assert_eq!(v[0].len(), 384);
    assert!((norm(&v[0]) - 1.0).abs() < 1e-4);
    assert!(model.embed(&[])?.is_empty());
    Ok(())
}

#[test]
fn tokenizer_counts_every_token() -> TestResult {
    let model = load()?;
    let text = long_text(2000);
    let counted = outpost_core::embed::count_tokens(model.tokenizer()?, &text);
    assert!(counted > 256, "counted only {counted} tokens");
    assert!(counted >= 2000);
    let with_special = model
        .tokenizer()?
        .encode(text.as_str(), true)
        .map_err(|e| e.to_string())?;
    assert_eq!(with_special.len(), counted + 2);
    // No padding either: a short text is not padded to the shipped fixed 128.
    assert_eq!(
        outpost_core::embed::count_tokens(model.tokenizer()?, "hello world"),
        2
    );
    Ok(())
}

#[test]
fn missing_files_are_named() -> TestResult {
    let src = model_dir()?;
    let dir = tempfile::tempdir()?;
    let err = BertEmbedder::load(dir.path(), &Device::Cpu)
        .err()
        .ok_or("loading an empty directory succeeded")?;
    assert!(matches!(err, Error::MissingModelFile { .. }));
    assert!(err.to_string().contains("config.json"), "{err}");

    std::fs::copy(src.join("config.json"), dir.path().join("config.json"))?;
    std::fs::copy(
        src.join("tokenizer.json"),
        dir.path().join("tokenizer.json"),
    )?;
    let err = BertEmbedder::load(dir.path(), &Device::Cpu)
        .err()
        .ok_or("loading without weights succeeded")?;
    let msg = err.to_string();
    assert!(msg.contains("model.safetensors"), "{msg}");
    assert!(msg.contains("outpost models fetch"), "{msg}");
    assert!(msg.contains("--model-dir"), "{msg}");
    Ok(())
}

#[test]
fn bad_config_names_the_file() -> TestResult {
    let src = model_dir()?;
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("config.json"), "{ not json")?;
    std::fs::copy(
        src.join("tokenizer.json"),
        dir.path().join("tokenizer.json"),
    )?;
    std::fs::write(dir.path().join("model.safetensors"), b"")?;
    let err = BertEmbedder::load(dir.path(), &Device::Cpu)
        .err()
        .ok_or("loading a bad config succeeded")?;
    assert!(matches!(err, Error::BadConfig { .. }), "{err}");
    assert!(err.to_string().contains("config.json"));
    Ok(())
}

/// A copy of the model directory (weights linked, not copied) with `pooling` as its pooling
/// configuration.
fn model_with_pooling(pooling: &str) -> Result<tempfile::TempDir, Box<dyn StdError>> {
    let src = model_dir()?;
    let dir = tempfile::tempdir()?;
    for file in ["config.json", "tokenizer.json", "sentence_bert_config.json"] {
        std::fs::copy(src.join(file), dir.path().join(file))?;
    }
    std::os::unix::fs::symlink(
        src.join("model.safetensors").canonicalize()?,
        dir.path().join("model.safetensors"),
    )?;
    std::fs::create_dir(dir.path().join("1_Pooling"))?;
    std::fs::write(dir.path().join("1_Pooling/config.json"), pooling)?;
    Ok(dir)
}

#[test]
fn cls_pooling_from_config() -> TestResult {
    let dir = model_with_pooling(
        r#"{"pooling_mode_cls_token": true, "pooling_mode_mean_tokens": false}"#,
    )?;
    let cls = BertEmbedder::load(dir.path(), &Device::Cpu)?;
    assert_eq!(cls.pooling(), Pooling::Cls);
    let mean = load()?;
    let text = ["The quick brown fox jumps over the lazy dog."];
    let a = cls.embed(&text)?;
    let b = mean.embed(&text)?;
    assert!((norm(&a[0]) - 1.0).abs() < 1e-4);
    assert!(
        dot(&a[0], &b[0]) < 0.999,
        "CLS pooling gave the mean-pooled vector"
    );
    Ok(())
}

#[test]
fn unsupported_pooling_is_an_error() -> TestResult {
    let dir = model_with_pooling(r#"{"pooling_mode_max_tokens": true}"#)?;
    let err = BertEmbedder::load(dir.path(), &Device::Cpu)
        .err()
        .ok_or("max pooling was accepted")?;
    assert!(matches!(err, Error::UnsupportedModel { .. }), "{err}");
    assert!(err.to_string().contains("1_Pooling"), "{err}");
    Ok(())
}

/// A copy of the model directory (weights linked, not copied) whose `config.json` is edited.
fn model_with_config(
    edit: impl Fn(&mut serde_json::Value),
) -> Result<tempfile::TempDir, Box<dyn StdError>> {
    let src = model_dir()?;
    let dir = tempfile::tempdir()?;
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(src.join("config.json"))?)?;
    edit(&mut config);
    std::fs::write(dir.path().join("config.json"), config.to_string())?;
    std::fs::copy(
        src.join("tokenizer.json"),
        dir.path().join("tokenizer.json"),
    )?;
    std::os::unix::fs::symlink(
        src.join("model.safetensors").canonicalize()?,
        dir.path().join("model.safetensors"),
    )?;
    Ok(dir)
}

fn load_error(dir: &std::path::Path) -> String {
    match BertEmbedder::load(dir, &Device::Cpu) {
        Ok(_) => "loaded".into(),
        Err(e) => e.to_string(),
    }
}

#[test]
fn truncated_or_corrupt_weights_are_named_errors() -> TestResult {
    let src = model_dir()?;
    let dir = model_with_config(|_| {})?;
    let weights = dir.path().join("model.safetensors");
    std::fs::remove_file(&weights)?;
    let full = std::fs::read(src.join("model.safetensors"))?;
    std::fs::write(&weights, &full[..full.len() / 3])?;
    let e = load_error(dir.path());
    assert!(
        e.contains("cannot load the weights") && e.contains("model.safetensors"),
        "{e}"
    );
    std::fs::write(&weights, b"this is not a safetensors file")?;
    let e = load_error(dir.path());
    assert!(
        e.contains("cannot load the weights") && e.contains("model.safetensors"),
        "{e}"
    );
    Ok(())
}

#[test]
fn a_tokenizer_of_another_model_is_refused() -> TestResult {
    let dir = model_with_config(|c| c["vocab_size"] = 1000.into())?;
    let e = load_error(dir.path());
    assert!(
        e.contains("tokenizer has 30522 tokens") && e.contains("vocab_size is 1000"),
        "{e}"
    );
    Ok(())
}

#[test]
fn a_model_that_is_not_bert_is_refused() -> TestResult {
    let dir = model_with_config(|c| {
        c["model_type"] = "gpt2".into();
        c["architectures"] = serde_json::json!(["GPT2LMHeadModel"]);
    })?;
    let e = load_error(dir.path());
    assert!(
        e.contains("not a BERT encoder") && e.contains("config.json"),
        "{e}"
    );
    Ok(())
}

#[test]
fn weights_of_another_size_are_refused() -> TestResult {
    let dir = model_with_config(|c| c["hidden_size"] = 768.into())?;
    let e = load_error(dir.path());
    assert!(e.contains("cannot load the weights"), "{e}");
    Ok(())
}

#[test]
fn a_lazy_model_loads_at_first_use_and_embeds_as_the_eager_one() -> TestResult {
    let lazy = LazyBertEmbedder::open(&model_dir()?, &Device::Cpu)?;
    let eager = load()?;
    // What the engine asks at open is known without loading.
    assert_eq!(
        (lazy.model_id(), lazy.dims(), lazy.max_tokens()),
        (eager.model_id(), eager.dims(), eager.max_tokens())
    );
    assert!(!lazy.is_loaded());
    let text = ["Glaciers carve valleys as they move."];
    assert_eq!(lazy.embed(&text)?, eager.embed(&text)?);
    assert!(lazy.is_loaded());
    Ok(())
}

#[test]
fn a_lazy_model_reports_bad_weights_at_first_use_and_retries() -> TestResult {
    let src = model_dir()?;
    let dir = model_with_config(|_| {})?;
    let weights = dir.path().join("model.safetensors");
    std::fs::remove_file(&weights)?;
    std::fs::write(&weights, b"this is not a safetensors file")?;
    // Opening reads the configuration only: the weights are not looked at yet.
    let lazy = LazyBertEmbedder::open(dir.path(), &Device::Cpu)?;
    let err = lazy
        .embed(&["a text"])
        .err()
        .ok_or("corrupt weights embedded")?;
    assert!(
        err.to_string().contains("cannot load the weights")
            && err.to_string().contains("model.safetensors"),
        "{err}"
    );
    assert!(lazy.tokenizer().is_err());
    assert!(!lazy.is_loaded());
    // Repaired, the next call loads it.
    std::fs::remove_file(&weights)?;
    std::os::unix::fs::symlink(src.join("model.safetensors").canonicalize()?, &weights)?;
    assert_eq!(lazy.embed(&["a text"])?.len(), 1);
    Ok(())
}

#[test]
fn a_lazy_model_refuses_another_model_put_in_its_place() -> TestResult {
    let dir = model_with_config(|_| {})?;
    let lazy = LazyBertEmbedder::open(dir.path(), &Device::Cpu)?;
    std::fs::write(
        dir.path().join("outpost-model.json"),
        r#"{"model_id": "someone/another-model"}"#,
    )?;
    let err = lazy
        .embed(&["a text"])
        .err()
        .ok_or("another model embedded")?;
    assert!(
        err.to_string().contains("changed since it was opened"),
        "{err}"
    );
    Ok(())
}
