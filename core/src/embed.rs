//! The `Embedder` trait: how the engine turns text into vectors.
//!
//! The engine never loads a model itself; the `outpost-models` crate implements this trait with
//! candle. The tokenizer is part of the trait because chunk sizes and context budgets must be
//! counted with the same tokenizer the model uses.

use std::fmt;

pub use crate::error::EmbedError;
use crate::error::{Error, Result};

/// A sentence-embedding model.
///
/// Implementations must be deterministic for a given input and return one L2-normalised vector of
/// exactly [`Embedder::dims`] values per input text, in input order.
pub trait Embedder: Send + Sync {
    /// Stable identifier of the model, recorded with every collection that it embeds
    /// (e.g. `sentence-transformers/all-MiniLM-L6-v2`).
    fn model_id(&self) -> &str;

    /// Dimension of the vectors this model produces.
    fn dims(&self) -> usize;

    /// The most tokens (special tokens included) the model reads from one input; longer inputs
    /// are truncated by the model.
    fn max_tokens(&self) -> usize;

    /// The model's tokenizer with truncation and padding turned off, so that it counts every
    /// token of a text. Used to size chunks and to keep RAG context within a token budget.
    ///
    /// # Errors
    /// Returns an [`EmbedError`] if a model that loads on first use cannot load its tokenizer.
    fn tokenizer(&self) -> std::result::Result<&tokenizers::Tokenizer, EmbedError>;

    /// Embeds a batch of texts.
    ///
    /// # Errors
    /// Returns an [`EmbedError`] if the model fails on this batch.
    fn embed(&self, texts: &[&str]) -> std::result::Result<Vec<Vec<f32>>, EmbedError>;

    /// How many inputs, since loading, were longer than [`Embedder::max_tokens`] and were
    /// truncated before embedding (0 for a model that never truncates).
    fn truncated_count(&self) -> u64 {
        0
    }
}

/// Counts the tokens of `text` with `tokenizer`, without special tokens.
pub fn count_tokens(tokenizer: &tokenizers::Tokenizer, text: &str) -> usize {
    tokenizer
        .encode_fast(text, false)
        .map(|e| e.len())
        // A tokenizer that cannot encode the text cannot be trusted to count it either: count
        // bytes, which never undercounts a WordPiece or BPE tokenisation.
        .unwrap_or(text.len())
}

/// Embeds `texts` in one call (none for no texts), checking that the model gave one vector per
/// text.
pub(crate) fn embed_all(embedder: &dyn Embedder, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
    if texts.is_empty() {
        return Ok(Vec::new());
    }
    let vectors = embedder.embed(texts)?;
    if vectors.len() != texts.len() {
        return Err(Error::Embed(EmbedError(format!(
            "model returned {} vectors for {} texts",
            vectors.len(),
            texts.len()
        ))));
    }
    Ok(vectors)
}

/// A deterministic embedder for tests and examples: no model, no files, the same vectors on
/// every machine.
///
/// Each lowercased word of a text, and each of its character trigrams at half weight, is hashed
/// (FNV-1a) to a dimension and a sign; the sums are L2-normalised. Texts that share words are
/// therefore near each other, which is enough for tests of search, sync and agent logic; tests
/// of real embeddings use the real model. Its tokenizer splits on whitespace and punctuation,
/// one token per word.
pub struct HashEmbedder {
    dims: usize,
    model_id: String,
    tokenizer: tokenizers::Tokenizer,
}

impl HashEmbedder {
    /// An embedder of `dims`-dimensional vectors, with model id `test/hash-<dims>`.
    ///
    /// # Panics
    /// If `dims` is 0.
    #[must_use]
    pub fn new(dims: usize) -> Self {
        assert!(dims > 0, "a HashEmbedder needs at least one dimension");
        // A word-level tokenizer with an empty vocabulary: every word is one (unknown) token.
        const TOKENIZER: &str = r#"{"version":"1.0","truncation":null,"padding":null,
            "added_tokens":[],"normalizer":null,"pre_tokenizer":{"type":"Whitespace"},
            "post_processor":null,"decoder":null,
            "model":{"type":"WordLevel","vocab":{"[UNK]":0},"unk_token":"[UNK]"}}"#;
        #[allow(clippy::expect_used)]
        let tokenizer = TOKENIZER
            .parse::<tokenizers::Tokenizer>()
            .expect("the built-in tokenizer definition parses");
        Self {
            dims,
            model_id: format!("test/hash-{dims}"),
            tokenizer,
        }
    }

    fn vector(&self, text: &str) -> Vec<f32> {
        let mut v = vec![0f32; self.dims];
        let mut add = |feature: &[u8], weight: f32| {
            let h = fnv1a(feature);
            let slot = (h % self.dims as u64) as usize;
            v[slot] += if h >> 63 == 0 { weight } else { -weight };
        };
        for word in text
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
        {
            let word = word.to_lowercase();
            add(word.as_bytes(), 1.0);
            let padded: Vec<char> = format!("^{word}$").chars().collect();
            for tri in padded.windows(3) {
                add(tri.iter().collect::<String>().as_bytes(), 0.5);
            }
        }
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        if norm > 0.0 {
            v.iter_mut().for_each(|x| *x /= norm);
        } else {
            // A text without words still gets a unit vector.
            v[0] = 1.0;
        }
        v
    }
}

/// What embedding says in an engine opened without a model.
pub(crate) const NO_MODEL: &str =
    "this engine was opened without a model: open it with one to embed";

/// The embedder of an engine opened without a model: every embedding fails, saying so.
pub(crate) struct NoModel(HashEmbedder);

impl Default for NoModel {
    fn default() -> Self {
        Self(HashEmbedder::new(1))
    }
}

impl Embedder for NoModel {
    fn model_id(&self) -> &str {
        "(no model)"
    }

    fn dims(&self) -> usize {
        0
    }

    fn max_tokens(&self) -> usize {
        self.0.max_tokens()
    }

    fn tokenizer(&self) -> std::result::Result<&tokenizers::Tokenizer, EmbedError> {
        self.0.tokenizer()
    }

    fn embed(&self, _: &[&str]) -> std::result::Result<Vec<Vec<f32>>, EmbedError> {
        Err(EmbedError(NO_MODEL.into()))
    }
}

impl fmt::Debug for HashEmbedder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HashEmbedder")
            .field("dims", &self.dims)
            .finish()
    }
}

/// 64-bit FNV-1a: small, fixed, the same on every platform.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

impl Embedder for HashEmbedder {
    fn model_id(&self) -> &str {
        &self.model_id
    }

    fn dims(&self) -> usize {
        self.dims
    }

    fn max_tokens(&self) -> usize {
        512
    }

    fn tokenizer(&self) -> std::result::Result<&tokenizers::Tokenizer, EmbedError> {
        Ok(&self.tokenizer)
    }

    fn embed(&self, texts: &[&str]) -> std::result::Result<Vec<Vec<f32>>, EmbedError> {
        Ok(texts.iter().map(|t| self.vector(t)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_vectors_are_deterministic_unit_and_closer_for_shared_words(
    ) -> std::result::Result<(), EmbedError> {
        let e = HashEmbedder::new(64);
        let v = e.embed(&[
            "rivers and deltas",
            "rivers and deltas",
            "quantum chromodynamics",
            "",
        ])?;
        assert_eq!(v[0], v[1]);
        for x in &v {
            assert_eq!(x.len(), 64);
            let n: f32 = x.iter().map(|a| a * a).sum();
            assert!((n - 1.0).abs() < 1e-5);
        }
        let near = e.embed(&["deltas of rivers"])?.remove(0);
        let cos = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>();
        assert!(cos(&v[0], &near) > cos(&v[2], &near));
        // A fixed value, so that a change of the hashing is seen (vectors stored in test
        // fixtures depend on it).
        assert_eq!(fnv1a(b"outpost"), 0x3add_4f13_fe55_bd51);
        assert_eq!(
            count_tokens(e.tokenizer()?, "three short words, and punctuation"),
            6
        );
        Ok(())
    }
}
