//! `LlamaGenerator`: a chat model from a local GGUF file (a llama-family model with its
//! tokenizer and chat template inside), implementing core's `Generator` with candle.
//!
//! - The tokenizer is built from the GGUF's own vocabulary and merges (candle's
//!   `TokenizerFromGguf`, with llama.cpp's digit split for SmolLM's pre-tokenizer), and the
//!   prompt is rendered with the GGUF's Jinja chat template (minijinja), as llama.cpp does.
//! - One sequence's KV cache is kept between calls: a prompt that starts with the tokens of the
//!   previous call (the next turn of a conversation) reads only its new tokens.
//! - Greedy by default; temperature, top-p and a seed through candle's `LogitsProcessor`; stop
//!   sequences are held back until they can no longer begin in the text, so none is streamed.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use candle_core::quantized::gguf_file;
use candle_core::quantized::tokenizer::TokenizerFromGguf;
use candle_core::Device;
use candle_transformers::generation::{LogitsProcessor, Sampling};
use outpost_core::{
    ChatMessage, FinishReason, GenerateError, GenerateOptions, Generation, Generator,
};
use tokenizers::Tokenizer;

use crate::error::{Error, Result};
use crate::llama_model::LlamaModel;

/// Tokens of the answer the repeat penalty looks back over (llama.cpp's default).
const REPEAT_WINDOW: usize = 64;

/// Tokens read per forward pass while reading a prompt; a cached prefix is reused in whole
/// batches.
const PROMPT_BATCH: usize = 256;

/// The window used when none is asked for: the model's own, capped here because on a CPU a
/// longer prompt costs seconds before the first token.
pub const DEFAULT_WINDOW: usize = 4096;

/// Texts that end a turn in the chat formats llama-family models use.
const END_OF_TURN: &[&str] = &[
    "<|im_end|>",
    "<|eot_id|>",
    "<|end|>",
    "<|endoftext|>",
    "</s>",
];

struct Session {
    model: LlamaModel,
    /// The tokens whose keys and values the model's cache holds.
    tokens: Vec<u32>,
}

/// A GGUF chat model on the CPU (or a CUDA GPU with the `cuda` feature).
pub struct LlamaGenerator {
    model_id: String,
    path: PathBuf,
    window: usize,
    tokenizer: Tokenizer,
    template: minijinja::Environment<'static>,
    bos: String,
    eos: String,
    add_bos: Option<u32>,
    stop_ids: Vec<u32>,
    session: Mutex<Session>,
}

impl std::fmt::Debug for LlamaGenerator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlamaGenerator")
            .field("model_id", &self.model_id)
            .field("path", &self.path)
            .field("window", &self.window)
            .finish_non_exhaustive()
    }
}

fn bad(path: &Path, what: impl std::fmt::Display) -> Error {
    Error::BadGguf {
        path: path.to_path_buf(),
        reason: what.to_string(),
    }
}

impl LlamaGenerator {
    /// Loads the GGUF file at `path` on `device`, with a window of at most `window` tokens
    /// (the model's own if smaller). `model_id` names it (`None`: [`model_id_for`]).
    ///
    /// # Errors
    /// [`Error::Io`] for an unreadable file, [`Error::BadGguf`] for a file that is not GGUF, a
    /// model that is not llama-family, or a tokenizer or chat template it lacks.
    pub fn open(
        path: &Path,
        device: &Device,
        window: usize,
        model_id: Option<&str>,
    ) -> Result<Self> {
        let file = File::open(path).map_err(Error::io(path))?;
        let mut reader = BufReader::new(file);
        let content = gguf_file::Content::read(&mut reader).map_err(|e| bad(path, e))?;
        let text = |key: &str| -> Option<String> {
            content
                .metadata
                .get(key)
                .and_then(|v| v.to_string().ok())
                .cloned()
        };
        let arch = text("general.architecture").unwrap_or_default();
        if !matches!(arch.as_str(), "llama" | "mistral" | "granite") {
            return Err(bad(
                path,
                format!("architecture `{arch}` is not llama-family (llama, mistral)"),
            ));
        }
        let mut tokenizer = Tokenizer::from_gguf(&content).map_err(|e| bad(path, e))?;
        if text("tokenizer.ggml.pre").as_deref() == Some("smollm") {
            // llama.cpp splits SmolLM's digits one by one before the GPT-2 byte-level split.
            use tokenizers::pre_tokenizers::{
                byte_level::ByteLevel, digits::Digits, sequence::Sequence,
            };
            tokenizer.with_pre_tokenizer(Some(Sequence::new(vec![
                Digits::new(true).into(),
                ByteLevel::new(false, true, true).into(),
            ])));
        }
        let source = text("tokenizer.chat_template")
            .ok_or_else(|| bad(path, "no chat template (tokenizer.chat_template)"))?;
        let mut env = minijinja::Environment::new();
        minijinja_contrib::add_to_environment(&mut env);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function(
            "raise_exception",
            |msg: String| -> std::result::Result<String, minijinja::Error> {
                Err(minijinja::Error::new(
                    minijinja::ErrorKind::InvalidOperation,
                    msg,
                ))
            },
        );
        env.add_template_owned("chat", source)
            .map_err(|e| bad(path, format!("chat template: {e}")))?;

        let token_text = |key: &str| -> Option<(u32, String)> {
            let id = content.metadata.get(key)?.to_u32().ok()?;
            Some((id, tokenizer.id_to_token(id)?))
        };
        let bos = token_text("tokenizer.ggml.bos_token_id");
        let eos = token_text("tokenizer.ggml.eos_token_id");
        let add_bos = content
            .metadata
            .get("tokenizer.ggml.add_bos_token")
            .and_then(|v| v.to_bool().ok())
            .unwrap_or(false);
        let mut stop_ids: Vec<u32> = END_OF_TURN
            .iter()
            .filter_map(|t| tokenizer.token_to_id(t))
            .collect();
        if let Some((id, _)) = &eos {
            stop_ids.push(*id);
        }
        stop_ids.sort_unstable();
        stop_ids.dedup();

        let model = LlamaModel::load(&content, &mut reader, device).map_err(|e| bad(path, e))?;
        let window = window.min(model.config().context_length).max(64);
        let model_id = model_id.map_or_else(|| model_id_for(path), str::to_owned);
        Ok(Self {
            model_id,
            path: path.to_path_buf(),
            window,
            tokenizer,
            template: env,
            bos: bos.as_ref().map(|b| b.1.clone()).unwrap_or_default(),
            eos: eos.as_ref().map(|e| e.1.clone()).unwrap_or_default(),
            add_bos: if add_bos { bos.map(|b| b.0) } else { None },
            stop_ids,
            session: Mutex::new(Session {
                model,
                tokens: Vec::new(),
            }),
        })
    }

    /// The GGUF file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The model's tokenizer.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// The prompt `messages` render to with the model's chat template, ready for the answer.
    ///
    /// # Errors
    /// [`GenerateError::Invalid`] for a role the template refuses or a template error.
    pub fn render(&self, messages: &[ChatMessage]) -> std::result::Result<String, GenerateError> {
        for m in messages {
            if !matches!(m.role.as_str(), "system" | "user" | "assistant") {
                return Err(GenerateError::Invalid(format!(
                    "role `{}`: a message's role is system, user or assistant",
                    m.role
                )));
            }
        }
        let template = self
            .template
            .get_template("chat")
            .map_err(|e| GenerateError::Failed(e.to_string()))?;
        template
            .render(minijinja::context! {
                messages => messages,
                add_generation_prompt => true,
                bos_token => self.bos,
                eos_token => self.eos,
            })
            .map_err(|e| GenerateError::Invalid(format!("the model's chat template: {e}")))
    }

    /// The tokens of a rendered prompt (special tokens read as such).
    ///
    /// # Errors
    /// [`GenerateError::Failed`] if the tokenizer fails.
    pub fn encode(&self, prompt: &str) -> std::result::Result<Vec<u32>, GenerateError> {
        let enc = self
            .tokenizer
            .encode_fast(prompt, false)
            .map_err(|e| GenerateError::Failed(format!("tokenizer: {e}")))?;
        let mut ids = Vec::with_capacity(enc.len() + 1);
        if let Some(bos) = self.add_bos {
            if enc.get_ids().first() != Some(&bos) {
                ids.push(bos);
            }
        }
        ids.extend_from_slice(enc.get_ids());
        Ok(ids)
    }

    fn session(&self) -> MutexGuard<'_, Session> {
        // A panic mid-generation leaves a cache that may not match its tokens: forget both.
        self.session.lock().unwrap_or_else(|poisoned| {
            let mut s = poisoned.into_inner();
            s.tokens.clear();
            let _ = s.model.truncate(0);
            s
        })
    }

    /// Runs prompt tokens `ids` from scratch, then `n` greedy steps, ignoring end-of-turn, and
    /// returns (prompt milliseconds, milliseconds of the `n` steps): what `outpost bench llm`
    /// measures, the same work as llama.cpp's benchmark side.
    ///
    /// # Errors
    /// [`GenerateError::Failed`] if the model fails.
    pub fn bench(
        &self,
        ids: &[u32],
        n: usize,
    ) -> std::result::Result<(f64, f64, f64), GenerateError> {
        let mut s = self.session();
        s.tokens.clear();
        s.model.truncate(0).map_err(failed)?;
        let t = Instant::now();
        let mut logits = None;
        for chunk in ids.chunks(PROMPT_BATCH) {
            logits = Some(s.model.forward(chunk).map_err(failed)?);
        }
        let prompt_ms = t.elapsed().as_secs_f64() * 1e3;
        let logits = logits.ok_or_else(|| GenerateError::Invalid("an empty prompt".into()))?;
        let mut next = crate::llama_model::argmax(&logits).map_err(failed)?;
        let first_ms = t.elapsed().as_secs_f64() * 1e3;
        let t = Instant::now();
        for _ in 0..n {
            let logits = s.model.forward(&[next]).map_err(failed)?;
            next = crate::llama_model::argmax(&logits).map_err(failed)?;
        }
        let gen_ms = t.elapsed().as_secs_f64() * 1e3;
        s.model.truncate(0).map_err(failed)?;
        Ok((prompt_ms, first_ms, gen_ms))
    }
}

fn failed(e: impl std::fmt::Display) -> GenerateError {
    GenerateError::Failed(format!("language model: {e}"))
}

/// The id of the GGUF at `path`, read without loading it: the `model_id` of the
/// `outpost-model.json` beside a fetched model, else the file name without `.gguf`.
pub fn model_id_for(path: &Path) -> String {
    marker_id(path).unwrap_or_else(|| {
        path.file_stem()
            .map_or_else(|| "gguf".into(), |s| s.to_string_lossy().into_owned())
    })
}

/// The model id in `outpost-model.json` beside a fetched GGUF.
fn marker_id(path: &Path) -> Option<String> {
    let marker = path.parent()?.join("outpost-model.json");
    let text = std::fs::read_to_string(marker).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v.get("model_id")?.as_str().map(str::to_owned)
}

/// Text decoded so far and how much of it was handed out.
struct Stream<'a> {
    tokenizer: &'a Tokenizer,
    ids: Vec<u32>,
    text: String,
    sent: usize,
    stop: &'a [String],
    hold: usize,
}

impl<'a> Stream<'a> {
    fn new(tokenizer: &'a Tokenizer, stop: &'a [String]) -> Self {
        let hold = stop
            .iter()
            .map(String::len)
            .max()
            .unwrap_or(0)
            .saturating_sub(1);
        Self {
            tokenizer,
            ids: Vec::new(),
            text: String::new(),
            sent: 0,
            stop,
            hold,
        }
    }

    /// Adds a token; returns the text that can be handed out now, and whether a stop sequence
    /// ended the answer.
    fn push(&mut self, id: u32) -> std::result::Result<(String, bool), GenerateError> {
        self.ids.push(id);
        let text = self
            .tokenizer
            .decode(&self.ids, true)
            .map_err(|e| GenerateError::Failed(format!("tokenizer: {e}")))?;
        // A character whose bytes span tokens decodes as U+FFFD until it is whole.
        if text.ends_with('\u{FFFD}') {
            return Ok((String::new(), false));
        }
        self.text = text;
        let from = self.sent.saturating_sub(self.hold);
        if let Some(at) = self
            .stop
            .iter()
            .filter(|s| !s.is_empty())
            .filter_map(|s| {
                self.text
                    .get(from..)
                    .and_then(|t| t.find(s.as_str()))
                    .map(|i| from + i)
            })
            .min()
        {
            self.text.truncate(at);
            return Ok((self.take(self.text.len()), true));
        }
        let mut end = self.text.len().saturating_sub(self.hold);
        while !self.text.is_char_boundary(end) {
            end -= 1;
        }
        Ok((self.take(end), false))
    }

    fn take(&mut self, end: usize) -> String {
        if end <= self.sent {
            return String::new();
        }
        let piece = self.text[self.sent..end].to_owned();
        self.sent = end;
        piece
    }
}

impl Generator for LlamaGenerator {
    fn model_id(&self) -> &str {
        &self.model_id
    }

    fn context_window(&self) -> usize {
        self.window
    }

    fn count_tokens(&self, messages: &[ChatMessage]) -> std::result::Result<usize, GenerateError> {
        Ok(self.encode(&self.render(messages)?)?.len())
    }

    fn generate(
        &self,
        messages: &[ChatMessage],
        opts: &GenerateOptions,
        on_text: &mut dyn FnMut(&str) -> bool,
    ) -> std::result::Result<Generation, GenerateError> {
        let started = Instant::now();
        if opts.max_tokens == 0 {
            return Err(GenerateError::Invalid(
                "max_tokens must be at least 1".into(),
            ));
        }
        if !(0.0..=100.0).contains(&opts.temperature) {
            return Err(GenerateError::Invalid(format!(
                "temperature {} is out of range: 0 to 100",
                opts.temperature
            )));
        }
        let prompt = self.encode(&self.render(messages)?)?;
        let limit = self.window.saturating_sub(opts.max_tokens);
        if prompt.len() > limit {
            return Err(GenerateError::PromptTooLong {
                tokens: prompt.len(),
                limit,
            });
        }
        let sampling = match (opts.temperature, opts.top_p) {
            (t, _) if t <= 0.0 => Sampling::ArgMax,
            (t, Some(p)) if p < 1.0 => Sampling::TopP { p, temperature: t },
            (t, _) => Sampling::All { temperature: t },
        };
        let mut sampler = LogitsProcessor::from_sampling(opts.seed, sampling);

        let mut s = self.session();
        // Reuse the cached keys and values of the longest common prefix, cut back to a batch
        // boundary: every batch after it is then read exactly as a fresh run reads it (same
        // boundaries, same kernels), so the same request gives the same answer whatever was
        // cached. At least one token is run, whose logits give the first answer token.
        let common = s
            .tokens
            .iter()
            .zip(&prompt)
            .take_while(|(a, b)| a == b)
            .count()
            .min(prompt.len() - 1)
            / PROMPT_BATCH
            * PROMPT_BATCH;
        s.model.truncate(common).map_err(failed)?;
        s.tokens.truncate(common);
        let mut logits = None;
        // Batches start at multiples of PROMPT_BATCH, whatever was cached, so a position is
        // computed in the same batch shape with and without a cached prefix.
        let mut batches: Vec<&[u32]> = Vec::new();
        let mut at = common;
        while at < prompt.len() {
            let end = ((at / PROMPT_BATCH + 1) * PROMPT_BATCH).min(prompt.len());
            batches.push(&prompt[at..end]);
            at = end;
        }
        for chunk in batches {
            if !on_text("") {
                s.tokens.clear();
                s.model.truncate(0).map_err(failed)?;
                return Ok(Generation {
                    text: String::new(),
                    prompt_tokens: prompt.len(),
                    cached_tokens: common,
                    completion_tokens: 0,
                    finish_reason: FinishReason::Cancelled,
                    prompt_ms: started.elapsed().as_secs_f64() * 1e3,
                    first_token_ms: 0.0,
                    total_ms: started.elapsed().as_secs_f64() * 1e3,
                });
            }
            logits = Some(s.model.forward(chunk).map_err(failed)?);
            s.tokens.extend_from_slice(chunk);
        }
        let prompt_ms = started.elapsed().as_secs_f64() * 1e3;
        let mut logits = logits.ok_or_else(|| GenerateError::Invalid("an empty prompt".into()))?;

        let mut stream = Stream::new(&self.tokenizer, &opts.stop);
        let mut first_token_ms = 0.0;
        let mut generated = 0;
        let mut answer_ids: Vec<u32> = Vec::new();
        let finish = loop {
            if opts.repeat_penalty != 1.0 && !answer_ids.is_empty() {
                let recent = &answer_ids[answer_ids.len().saturating_sub(REPEAT_WINDOW)..];
                logits = candle_transformers::utils::apply_repeat_penalty(
                    &logits,
                    opts.repeat_penalty as f32,
                    recent,
                )
                .map_err(failed)?;
            }
            let next = sampler.sample(&logits).map_err(failed)?;
            answer_ids.push(next);
            if generated == 0 {
                first_token_ms = started.elapsed().as_secs_f64() * 1e3;
            }
            if self.stop_ids.contains(&next) {
                break FinishReason::Stop;
            }
            generated += 1;
            let (piece, stopped) = stream.push(next)?;
            if !piece.is_empty() && !on_text(&piece) {
                break FinishReason::Cancelled;
            }
            if stopped {
                break FinishReason::Stop;
            }
            if generated >= opts.max_tokens {
                break FinishReason::Length;
            }
            logits = s.model.forward(&[next]).map_err(failed)?;
            s.tokens.push(next);
        };
        if finish != FinishReason::Cancelled {
            let rest = stream.take(stream.text.len());
            if !rest.is_empty() {
                on_text(&rest);
            }
        }
        let text = stream.text[..stream.sent].to_owned();
        Ok(Generation {
            text,
            prompt_tokens: prompt.len(),
            cached_tokens: common,
            completion_tokens: generated,
            finish_reason: finish,
            prompt_ms,
            first_token_ms,
            total_ms: started.elapsed().as_secs_f64() * 1e3,
        })
    }
}
