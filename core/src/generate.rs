//! The `Generator` trait: how the engine has a language model answer.
//!
//! As with embeddings, the engine loads no model itself: `outpost-models` implements this trait
//! with candle's quantized llama over a GGUF file, and with any OpenAI-compatible server. The
//! engine builds the messages (sources, conversation, question) and reads the answer's citations.

use serde::{Deserialize, Serialize};

pub use crate::error::GenerateError;

/// One message of a chat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The text.
    pub content: String,
}

impl ChatMessage {
    /// A message with `role` and `content`.
    pub fn new(role: &str, content: impl Into<String>) -> Self {
        Self {
            role: role.to_owned(),
            content: content.into(),
        }
    }
}

/// How to sample an answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenerateOptions {
    /// Most tokens to generate.
    pub max_tokens: usize,
    /// 0 for greedy decoding (the default), else the softmax temperature.
    pub temperature: f64,
    /// Nucleus sampling: keep the smallest set of tokens whose probability reaches this.
    pub top_p: Option<f64>,
    /// Seed of the sampler (with a temperature above 0).
    pub seed: u64,
    /// Texts that end the answer where they appear (not included in it).
    pub stop: Vec<String>,
    /// Divides the logit of a token the answer already holds among its last 64 tokens (1: off).
    /// Small models loop without it; the prompt's tokens are not penalised, so quoting the
    /// sources is not.
    pub repeat_penalty: f64,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        Self {
            max_tokens: 512,
            temperature: 0.0,
            top_p: None,
            seed: 299_792_458,
            stop: Vec::new(),
            repeat_penalty: 1.1,
        }
    }
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// The model ended its answer, or a stop sequence appeared.
    Stop,
    /// `max_tokens` were generated.
    Length,
    /// The caller stopped it (a disconnected client, a cancelled call).
    Cancelled,
}

impl FinishReason {
    /// The OpenAI API's name for it (`stop`, `length`; a cancelled answer is never sent).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stop => "stop",
            Self::Length => "length",
            Self::Cancelled => "cancelled",
        }
    }
}

/// What a generation produced, with its timings.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Generation {
    /// The answer (stop sequence excluded).
    pub text: String,
    /// Tokens of the prompt.
    pub prompt_tokens: usize,
    /// Of those, tokens whose keys and values were reused from the previous generation.
    pub cached_tokens: usize,
    /// Tokens generated.
    pub completion_tokens: usize,
    /// Why it ended.
    pub finish_reason: FinishReason,
    /// Milliseconds to read the prompt (the tokens not reused).
    pub prompt_ms: f64,
    /// Milliseconds from the call to the first generated token.
    pub first_token_ms: f64,
    /// Milliseconds of the whole call.
    pub total_ms: f64,
}

/// A chat model.
pub trait Generator: Send + Sync {
    /// Identifier of the model (what `/v1/models` lists).
    fn model_id(&self) -> &str;

    /// Tokens the model attends to: prompt and answer together.
    fn context_window(&self) -> usize;

    /// Tokens `messages` take once rendered with the model's chat template.
    ///
    /// # Errors
    /// A [`GenerateError`] if the template or tokenizer fails.
    fn count_tokens(&self, messages: &[ChatMessage]) -> Result<usize, GenerateError>;

    /// Answers `messages`, handing each piece of text to `on_text` as it is generated; the
    /// answer stops (as [`FinishReason::Cancelled`]) when `on_text` returns `false`. `on_text`
    /// is also called with an empty piece while the prompt is read, so a caller can stop
    /// early.
    ///
    /// # Errors
    /// [`GenerateError::PromptTooLong`], [`GenerateError::Invalid`], [`GenerateError::Failed`].
    fn generate(
        &self,
        messages: &[ChatMessage],
        opts: &GenerateOptions,
        on_text: &mut dyn FnMut(&str) -> bool,
    ) -> Result<Generation, GenerateError>;
}
