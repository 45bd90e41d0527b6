//! The `Embedder` trait: how the engine turns text into vectors.
//!
//! The engine never loads a model itself; the `outpost-models` crate implements this trait with
//! candle. The tokenizer is part of the trait because chunk sizes and context budgets must be
//! counted with the same tokenizer the model uses.

use std::fmt;

/// A failure inside an embedding model (tensor error, tokenizer error, device error).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmbedError(pub String);

impl fmt::Display for EmbedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for EmbedError {}

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
    fn tokenizer(&self) -> &tokenizers::Tokenizer;

    /// Embeds a batch of texts.
    ///
    /// # Errors
    /// Returns an [`EmbedError`] if the model fails on this batch.
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError>;
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
pub(crate) fn embed_all(embedder: &dyn Embedder, texts: &[&str]) -> crate::Result<Vec<Vec<f32>>> {
    if texts.is_empty() {
        return Ok(Vec::new());
    }
    let vectors = embedder.embed(texts)?;
    if vectors.len() != texts.len() {
        return Err(crate::Error::Embed(EmbedError(format!(
            "model returned {} vectors for {} texts",
            vectors.len(),
            texts.len()
        ))));
    }
    Ok(vectors)
}
