//! Parity of [`BertEmbedder`] with sentence-transformers (PyTorch, CPU).
//!
//! The model runs on the CPU, or on CUDA device 0 when the crate is built with the `cuda`
//! feature; then a missing GPU fails the test instead of quietly testing the CPU again.
//!
//! The reference is `tests/fixtures/parity_minilm.json`, written by
//! `scripts/parity/make_reference.py` (see `scripts/parity/README.md` to regenerate it). The
//! checks:
//!
//! * every reference text embeds to a vector with cosine ≥ 0.9999 to the reference vector;
//! * with `--quantize int8` (on the CPU), cosine ≥ 0.99 instead;
//! * a text's vector is the same alone as packed into one pass with the others;
//! * for the first 20 SciFact queries (file order) over the first 500 SciFact documents (file
//!   order), each query's top-10 neighbour set by cosine equals the reference set. A document is
//!   embedded as `title + " " + text`, the same join the script uses.
//!
//! The model comes from [`outpost_models::resolve_model_dir`] (`$OUTPOST_MODEL_DIR`, else
//! `$OUTPOST_HOME/models/all-MiniLM-L6-v2`) and SciFact from `../shared/data/scifact` beside the
//! repository; either missing fails the tests rather than skipping them.

use std::collections::BTreeSet;
use std::error::Error as StdError;
use std::path::{Path, PathBuf};

use candle_core::Device;
use outpost_core::Embedder;
use outpost_models::{BertEmbedder, Quantize};
use serde::Deserialize;

type TestResult = Result<(), Box<dyn StdError>>;

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/parity_minilm.json"
);
const SCIFACT_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/data/scifact");

/// Least cosine to the reference accepted for any text.
const MIN_COSINE: f32 = 0.9999;
/// Neighbours compared per query.
const TOP_K: usize = 10;
/// Documents embedded per `embed_texts` call.
const DOC_BATCH: usize = 64;

#[derive(Deserialize)]
struct Fixture {
    model: String,
    max_seq_length: usize,
    texts: Vec<RefText>,
    scifact: RefSciFact,
}

#[derive(Deserialize)]
struct RefText {
    text: String,
    embedding: Vec<f32>,
}

#[derive(Deserialize)]
struct RefSciFact {
    docs: usize,
    queries: Vec<RefQuery>,
}

#[derive(Deserialize)]
struct RefQuery {
    id: String,
    top10: Vec<String>,
    scores: Vec<f32>,
    score11: f32,
}

#[derive(Deserialize)]
struct Doc {
    #[serde(rename = "_id")]
    id: String,
    #[serde(default)]
    title: String,
    text: String,
}

#[derive(Deserialize)]
struct Query {
    #[serde(rename = "_id")]
    id: String,
    text: String,
}

fn load_fixture() -> Result<Fixture, Box<dyn StdError>> {
    let text = std::fs::read_to_string(FIXTURE)
        .map_err(|e| format!("cannot read the parity fixture {FIXTURE}: {e}"))?;
    let fixture: Fixture = serde_json::from_str(&text)
        .map_err(|e| format!("cannot parse the parity fixture {FIXTURE}: {e}"))?;
    Ok(fixture)
}

fn load_model(fixture: &Fixture) -> Result<BertEmbedder, Box<dyn StdError>> {
    let dir = outpost_models::resolve_model_dir(None).map_err(|e| {
        format!(
            "parity test model not found ({e}); set OUTPOST_HOME (scripts/test.sh fetches \
             {} into $OUTPOST_HOME/models) or OUTPOST_MODEL_DIR",
            fixture.model
        )
    })?;
    let model = BertEmbedder::load(&dir, &test_device()?)?;
    assert_eq!(
        model.max_tokens(),
        fixture.max_seq_length,
        "model in {} reads a different max_seq_length than the reference",
        dir.display()
    );
    Ok(model)
}

/// The device under test: CUDA device 0 with the `cuda` feature, else the CPU.
fn test_device() -> Result<Device, Box<dyn StdError>> {
    #[cfg(feature = "cuda")]
    return Device::new_cuda(0)
        .map_err(|e| format!("built with `cuda` but CUDA device 0 cannot be opened: {e}").into());
    #[cfg(not(feature = "cuda"))]
    Ok(Device::Cpu)
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    dot(a, b) / (dot(a, a).sqrt() * dot(b, b).sqrt())
}

/// The first `limit` records of a JSON-lines file, in file order.
fn read_jsonl<T: serde::de::DeserializeOwned>(
    path: &Path,
    limit: usize,
) -> Result<Vec<T>, Box<dyn StdError>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        format!(
            "SciFact not found: cannot read {} ({e}); the parity test needs BEIR SciFact in \
             ../shared/data/scifact beside the repository",
            path.display()
        )
    })?;
    let rows = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .take(limit)
        .map(serde_json::from_str)
        .collect::<Result<Vec<T>, _>>()
        .map_err(|e| format!("bad JSON line in {}: {e}", path.display()))?;
    if rows.len() < limit {
        return Err(format!(
            "{} has only {} records, the parity test needs {limit}",
            path.display(),
            rows.len()
        )
        .into());
    }
    Ok(rows)
}

/// Document indices by descending score; ties keep corpus order (as the script's stable sort).
fn ranking(scores: &[f32]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    order
}

#[test]
fn texts_match_sentence_transformers() -> TestResult {
    let fixture = load_fixture()?;
    assert!(
        fixture.texts.len() >= 50,
        "fixture has {} texts",
        fixture.texts.len()
    );
    let model = load_model(&fixture)?;
    let texts: Vec<&str> = fixture.texts.iter().map(|t| t.text.as_str()).collect();
    let vectors = model.embed_texts(&texts)?;
    assert_eq!(vectors.len(), texts.len());

    let mut failures = Vec::new();
    let mut worst = (f32::INFINITY, "");
    for (reference, got) in fixture.texts.iter().zip(&vectors) {
        assert_eq!(
            got.len(),
            reference.embedding.len(),
            "dimension differs for {:?}",
            reference.text
        );
        let cos = cosine(got, &reference.embedding);
        if cos.is_nan() || cos < MIN_COSINE {
            failures.push(format!("  {cos:.6} for {:?}", reference.text));
        }
        if cos < worst.0 || cos.is_nan() {
            worst = (cos, reference.text.as_str());
        }
    }
    eprintln!(
        "parity: {} texts, minimum cosine {:.7} for {:?}",
        texts.len(),
        worst.0,
        worst.1
    );
    assert!(
        failures.is_empty(),
        "{} of {} texts have cosine < {MIN_COSINE} to the sentence-transformers reference; \
         minimum {:.6} for {:?}:\n{}",
        failures.len(),
        texts.len(),
        worst.0,
        worst.1,
        failures.join("\n")
    );
    Ok(())
}

/// Least cosine to the reference accepted for any text with `--quantize int8`.
const MIN_COSINE_INT8: f32 = 0.99;

#[test]
fn int8_texts_stay_close_to_sentence_transformers() -> TestResult {
    let fixture = load_fixture()?;
    let dir = outpost_models::resolve_model_dir(None)?;
    // int8 is a CPU path whatever the build.
    let model = BertEmbedder::load_with(&dir, &Device::Cpu, Quantize::Int8)?;
    let texts: Vec<&str> = fixture.texts.iter().map(|t| t.text.as_str()).collect();
    let vectors = model.embed_texts(&texts)?;
    let (worst, text) = fixture
        .texts
        .iter()
        .zip(&vectors)
        .map(|(r, v)| (cosine(v, &r.embedding), r.text.as_str()))
        .fold((f32::INFINITY, ""), |w, c| {
            if c.0 < w.0 || c.0.is_nan() {
                c
            } else {
                w
            }
        });
    eprintln!(
        "int8 parity: {} texts, minimum cosine {worst:.6} for {text:?}",
        texts.len()
    );
    assert!(
        worst >= MIN_COSINE_INT8,
        "int8: cosine {worst} < {MIN_COSINE_INT8} for {text:?}"
    );
    Ok(())
}

#[test]
fn a_text_embeds_the_same_alone_and_packed_with_others() -> TestResult {
    // On the CPU, texts share a forward pass end to end without padding: attention must stay
    // within each text, so a text's vector cannot depend on its neighbours in the pass.
    let fixture = load_fixture()?;
    let model = load_model(&fixture)?;
    let texts: Vec<&str> = fixture.texts.iter().map(|t| t.text.as_str()).collect();
    let together = model.embed_texts(&texts)?;
    let reversed: Vec<&str> = texts.iter().rev().copied().collect();
    let backwards = model.embed_texts(&reversed)?;
    for (i, text) in texts.iter().enumerate() {
        let alone = model.embed_texts(&[text])?;
        for (how, v) in [
            ("with the others", &together[i]),
            ("in reverse order", &backwards[texts.len() - 1 - i]),
        ] {
            let cos = cosine(&alone[0], v);
            assert!(
                cos >= 0.999_999,
                "{text:?}: cosine {cos} between alone and {how}"
            );
        }
    }
    Ok(())
}

#[test]
fn scifact_neighbours_match_sentence_transformers() -> TestResult {
    let fixture = load_fixture()?;
    let reference = &fixture.scifact;
    assert_eq!(reference.queries.len(), 20, "fixture query count");
    let model = load_model(&fixture)?;

    let dir = PathBuf::from(SCIFACT_DIR);
    let docs: Vec<Doc> = read_jsonl(&dir.join("corpus.jsonl"), reference.docs)?;
    let queries: Vec<Query> = read_jsonl(&dir.join("queries.jsonl"), reference.queries.len())?;

    // Same join as scripts/parity/make_reference.py: title, one space, text.
    let doc_texts: Vec<String> = docs
        .iter()
        .map(|d| format!("{} {}", d.title, d.text))
        .collect();
    let mut doc_vectors = Vec::with_capacity(docs.len());
    for batch in doc_texts.chunks(DOC_BATCH) {
        let refs: Vec<&str> = batch.iter().map(String::as_str).collect();
        doc_vectors.extend(model.embed_texts(&refs)?);
    }
    let query_texts: Vec<&str> = queries.iter().map(|q| q.text.as_str()).collect();
    let query_vectors = model.embed_texts(&query_texts)?;

    let mut failures = Vec::new();
    let mut closest_margin = (f32::INFINITY, "");
    for ((query, vector), expected) in queries.iter().zip(&query_vectors).zip(&reference.queries) {
        assert_eq!(
            query.id, expected.id,
            "queries.jsonl order differs from the fixture"
        );
        let scores: Vec<f32> = doc_vectors.iter().map(|d| dot(vector, d)).collect();
        let order = ranking(&scores);
        let got: BTreeSet<&str> = order[..TOP_K]
            .iter()
            .map(|&i| docs[i].id.as_str())
            .collect();
        let want: BTreeSet<&str> = expected.top10.iter().map(String::as_str).collect();
        let margin = scores[order[TOP_K - 1]] - scores[order[TOP_K]];
        if margin < closest_margin.0 {
            closest_margin = (margin, expected.id.as_str());
        }
        if got != want {
            let score_of = |id: &str| {
                docs.iter().position(|d| d.id == id).map_or_else(
                    || format!("not among the first {} docs", docs.len()),
                    |i| format!("{:.6}", scores[i]),
                )
            };
            let only_candle: Vec<String> = got
                .difference(&want)
                .map(|id| format!("{id} ({})", score_of(id)))
                .collect();
            let only_reference: Vec<String> = want
                .difference(&got)
                .map(|id| format!("{id} (candle {})", score_of(id)))
                .collect();
            failures.push(format!(
                "  query {}: only in candle top-10 {only_candle:?}, only in reference top-10 \
                 {only_reference:?}; candle scores at ranks 10/11: {:.6}/{:.6}, reference: \
                 {:.6}/{:.6}\n    candle top-10 {:?}\n    reference top-10 {:?}",
                query.id,
                scores[order[TOP_K - 1]],
                scores[order[TOP_K]],
                expected.scores.last().copied().unwrap_or(f32::NAN),
                expected.score11,
                order[..TOP_K]
                    .iter()
                    .map(|&i| docs[i].id.as_str())
                    .collect::<Vec<_>>(),
                expected.top10,
            ));
        }
    }
    eprintln!(
        "parity: {} queries over {} docs, closest rank-10/11 margin {:.6} (query {})",
        queries.len(),
        docs.len(),
        closest_margin.0,
        closest_margin.1
    );
    assert!(
        failures.is_empty(),
        "{} of {} SciFact queries have a different top-{TOP_K} set than sentence-transformers:\n{}",
        failures.len(),
        queries.len(),
        failures.join("\n")
    );
    Ok(())
}
