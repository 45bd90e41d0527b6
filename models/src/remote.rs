//! `OpenAiGenerator` (feature `remote`): generation by any OpenAI-compatible server (llama.cpp's
//! server, Ollama, vLLM, a cloud API) through `POST {url}/chat/completions` with streaming,
//! while retrieval stays on the device. Only `outpost ask --llm-url` and the agent's
//! `--llm-url` use it; nothing is sent anywhere unless a URL is given.

use std::io::{BufRead, BufReader};
use std::time::{Duration, Instant};

use outpost_core::{
    ChatMessage, FinishReason, GenerateError, GenerateOptions, Generation, Generator,
};
use serde_json::{json, Value};

/// `url` fit to print: a password in it masked (`https://user:***@host/v1`) and a query, which
/// some services take a key in, left out (`?…`).
fn shown_url(url: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, _)) => (base, "?…"),
        None => (url, ""),
    };
    let base = match (base.find("://"), base.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let user = base[scheme + 3..at].split(':').next().unwrap_or("");
            format!("{}{user}:***{}", &base[..scheme + 3], &base[at..])
        }
        _ => base.to_owned(),
    };
    format!("{base}{query}")
}

/// A chat model behind an OpenAI-compatible HTTP API.
pub struct OpenAiGenerator {
    url: String,
    /// `url` as messages and logs show it: no password, no query (see [`shown_url`]).
    shown: String,
    model: String,
    api_key: Option<String>,
    window: usize,
    client: reqwest::blocking::Client,
}

impl std::fmt::Debug for OpenAiGenerator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key is a secret: never printed.
        f.debug_struct("OpenAiGenerator")
            .field("url", &self.shown)
            .field("model", &self.model)
            .field("window", &self.window)
            .finish_non_exhaustive()
    }
}

impl OpenAiGenerator {
    /// A client of the server at `url` (its `/v1` base, e.g. `http://127.0.0.1:8080/v1`),
    /// asking for `model`, with a window of `window` tokens.
    ///
    /// # Errors
    /// [`GenerateError::Invalid`] for a URL that is not http(s), [`GenerateError::Failed`] if
    /// the HTTP client cannot be built.
    pub fn new(
        url: &str,
        model: &str,
        api_key: Option<String>,
        window: usize,
    ) -> Result<Self, GenerateError> {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(GenerateError::Invalid(format!(
                "{}: the language model's URL must start with http:// or https://",
                shown_url(url)
            )));
        }
        let client = reqwest::blocking::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            // An answer streams for as long as it takes.
            .timeout(None)
            .build()
            .map_err(|e| GenerateError::Failed(format!("HTTP client: {e}")))?;
        let url = url.trim_end_matches('/');
        Ok(Self {
            url: url.to_owned(),
            shown: shown_url(url),
            model: model.to_owned(),
            api_key,
            window,
            client,
        })
    }
}

/// Tokens of a text, estimated without the server's tokenizer: a byte per 3 overcounts every
/// common tokenizer on English, so the prompt is never cut too short for the window.
fn estimate(text: &str) -> usize {
    text.len().div_ceil(3)
}

impl Generator for OpenAiGenerator {
    fn model_id(&self) -> &str {
        &self.model
    }

    fn context_window(&self) -> usize {
        self.window
    }

    fn count_tokens(&self, messages: &[ChatMessage]) -> Result<usize, GenerateError> {
        Ok(messages.iter().map(|m| estimate(&m.content) + 8).sum())
    }

    fn generate(
        &self,
        messages: &[ChatMessage],
        opts: &GenerateOptions,
        on_text: &mut dyn FnMut(&str) -> bool,
    ) -> Result<Generation, GenerateError> {
        let started = Instant::now();
        let mut body = json!({
            "model": self.model,
            "messages": messages,
            "stream": true,
            "max_tokens": opts.max_tokens,
            "temperature": opts.temperature,
            "seed": opts.seed,
        });
        if let Some(p) = opts.top_p {
            body["top_p"] = json!(p);
        }
        if !opts.stop.is_empty() {
            body["stop"] = json!(opts.stop);
        }
        let mut request = self
            .client
            .post(format!("{}/chat/completions", self.url))
            .json(&body);
        // What messages name: without the URL's password or query, which may hold a key.
        let endpoint = format!("{}/chat/completions", self.shown);
        if let Some(key) = &self.api_key {
            request = request.bearer_auth(key);
        }
        let response = request
            .send()
            .map_err(|e| GenerateError::Failed(format!("{endpoint}: {}", e.without_url())))?;
        let status = response.status();
        if !status.is_success() {
            let text = response.text().unwrap_or_default();
            let text: String = text.chars().take(500).collect();
            return Err(GenerateError::Failed(format!(
                "{endpoint} answered {status}: {text}"
            )));
        }
        let mut text = String::new();
        let mut finish = None;
        let mut first_token_ms = 0.0;
        let mut completion_tokens = 0;
        let mut prompt_tokens = None;
        for line in BufReader::new(response).lines() {
            let line = line.map_err(|e| GenerateError::Failed(format!("{endpoint}: {e}")))?;
            let Some(data) = line.strip_prefix("data:") else {
                continue;
            };
            let data = data.trim();
            if data == "[DONE]" {
                break;
            }
            let chunk: Value = serde_json::from_str(data).map_err(|e| {
                GenerateError::Failed(format!(
                    "{endpoint} sent an event that is not JSON ({e}): {data:.200}"
                ))
            })?;
            if let Some(err) = chunk.get("error") {
                return Err(GenerateError::Failed(format!("{endpoint}: {err}")));
            }
            if let Some(usage) = chunk.get("usage").filter(|u| !u.is_null()) {
                prompt_tokens = usage["prompt_tokens"].as_u64().map(|n| n as usize);
                if let Some(n) = usage["completion_tokens"].as_u64() {
                    completion_tokens = n as usize;
                }
            }
            let Some(choice) = chunk["choices"].get(0) else {
                continue;
            };
            if let Some(piece) = choice["delta"]["content"]
                .as_str()
                .filter(|p| !p.is_empty())
            {
                if text.is_empty() {
                    first_token_ms = started.elapsed().as_secs_f64() * 1e3;
                }
                text.push_str(piece);
                completion_tokens += 1;
                if !on_text(piece) {
                    finish = Some(FinishReason::Cancelled);
                    break;
                }
            }
            match choice["finish_reason"].as_str() {
                Some("length") => finish = Some(FinishReason::Length),
                Some(_) => finish = Some(FinishReason::Stop),
                None => {}
            }
        }
        Ok(Generation {
            text,
            prompt_tokens: prompt_tokens
                .unwrap_or_else(|| self.count_tokens(messages).unwrap_or(0)),
            cached_tokens: 0,
            completion_tokens,
            finish_reason: finish.unwrap_or(FinishReason::Stop),
            prompt_ms: first_token_ms,
            first_token_ms,
            total_ms: started.elapsed().as_secs_f64() * 1e3,
        })
    }
}
