//! Chunking by tokens with overlap, with the model's own tokenizer (`text-splitter`).
//!
//! Chunks are slices of the extracted text, so each one carries an exact byte span; Markdown is
//! split along its structure (headings, lists, code blocks) before sentences and words.

use serde::Serialize;
use text_splitter::{ChunkConfig, MarkdownSplitter, TextSplitter};
use tokenizers::Tokenizer;

use crate::embed::count_tokens;
use crate::error::{Error, Result};
use crate::model::NewChunk;

/// Chunk size and overlap, in tokens of the model's tokenizer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ChunkParams {
    /// Most tokens in one chunk (without the model's special tokens).
    pub max_tokens: usize,
    /// Tokens shared by consecutive chunks.
    pub overlap: usize,
}

impl Default for ChunkParams {
    /// 200 tokens with 32 of overlap: inside all-MiniLM-L6-v2's 256-token window with room for
    /// its two special tokens.
    fn default() -> Self {
        Self {
            max_tokens: 200,
            overlap: 32,
        }
    }
}

impl ChunkParams {
    /// Checks the parameters against the model's window.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if the overlap is not below the size, or a chunk would not fit
    /// the model's window (`model_max_tokens` includes two special tokens).
    pub fn validate(&self, model_max_tokens: usize) -> Result<()> {
        if self.max_tokens == 0 {
            return Err(Error::invalid("max_tokens", "must be at least 1"));
        }
        if self.overlap >= self.max_tokens {
            return Err(Error::invalid(
                "overlap",
                format!(
                    "{} must be below the chunk size {}",
                    self.overlap, self.max_tokens
                ),
            ));
        }
        if self.max_tokens + 2 > model_max_tokens {
            return Err(Error::invalid(
                "max_tokens",
                format!(
                    "{} tokens do not fit the model's window of {model_max_tokens} (2 go to special tokens)",
                    self.max_tokens
                ),
            ));
        }
        Ok(())
    }
}

/// One chunk of a text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk<'a> {
    /// The chunk, a slice of the input.
    pub text: &'a str,
    /// Byte offset of `text` in the input.
    pub byte_start: usize,
    /// Tokens in `text`.
    pub tokens: usize,
}

/// Splits `text` into chunks of at most `params.max_tokens` tokens.
///
/// # Errors
/// [`Error::InvalidArgument`] for unusable parameters.
pub fn chunk<'a>(
    tokenizer: &Tokenizer,
    text: &'a str,
    markdown: bool,
    params: ChunkParams,
) -> Result<Vec<Chunk<'a>>> {
    let config = ChunkConfig::new(params.max_tokens)
        .with_sizer(tokenizer)
        .with_overlap(params.overlap)
        .map_err(|e| Error::invalid("overlap", e.to_string()))?;
    let spans: Vec<(usize, &str)> = if markdown {
        MarkdownSplitter::new(config).chunk_indices(text).collect()
    } else {
        TextSplitter::new(config).chunk_indices(text).collect()
    };
    Ok(spans
        .into_iter()
        .filter(|(_, t)| !t.trim().is_empty())
        .map(|(byte_start, text)| Chunk {
            text,
            byte_start,
            tokens: count_tokens(tokenizer, text),
        })
        .collect())
}

impl From<Chunk<'_>> for NewChunk {
    /// A chunk of a document's text, without metadata and not yet embedded.
    fn from(c: Chunk<'_>) -> Self {
        Self {
            text: c.text.to_string(),
            token_count: c.tokens,
            byte_start: c.byte_start,
            byte_end: c.byte_start + c.text.len(),
            metadata: serde_json::Map::new(),
            embedding: Vec::new(),
        }
    }
}
