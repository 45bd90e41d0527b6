//! The OpenAI-compatible part of the API: `POST /v1/chat/completions` (plain and streamed as
//! server-sent events; retrieval on by default, with the sources in an extra `sources` field),
//! `POST /v1/embeddings` and `GET /v1/models`, as the official SDKs call them.
//!
//! With retrieval, the last message must be the user's question: it is answered by
//! `Engine::ask` from the documents, the earlier messages are the conversation so far. A
//! client that disconnects stops the generation (the stream's receiver is gone, or the
//! request's future is dropped).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde_json::{json, Value};

use outpost_core::{
    AskEvent, AskOptions, ChatMessage, Citation, ContextOptions, FinishReason, GenerateOptions,
    Generator, SearchMode, SearchOptions,
};

use super::api::{ApiError, Json};
use super::llm::SlotError;
use super::state::AppState;

/// Most messages in one request.
const MAX_MESSAGES: usize = 256;

/// A request refused, naming the field (`param`) as OpenAI's errors do.
fn invalid(param: &str, message: impl Into<String>) -> ApiError {
    ApiError::bad_request(message).with_param(param)
}

/// The request's options, checked.
struct ChatRequest {
    messages: Vec<ChatMessage>,
    stream: bool,
    generate: GenerateOptions,
    retrieval: bool,
    search: SearchOptions,
    min_relevance: f64,
}

fn text_content(v: &Value, i: usize) -> Result<String, ApiError> {
    match v {
        Value::String(s) => Ok(s.clone()),
        // Content parts: only text parts can be read.
        Value::Array(parts) => {
            let mut out = String::new();
            for p in parts {
                match (p["type"].as_str(), p["text"].as_str()) {
                    (Some("text"), Some(t)) => out.push_str(t),
                    _ => {
                        return Err(invalid(
                            &format!("messages[{i}].content"),
                            "only text content parts are supported",
                        ))
                    }
                }
            }
            Ok(out)
        }
        Value::Null => Ok(String::new()),
        _ => Err(invalid(
            &format!("messages[{i}].content"),
            "content must be a string or a list of text parts",
        )),
    }
}

fn parse(state: &AppState, body: &Value, model_id: &str) -> Result<ChatRequest, ApiError> {
    let Some(obj) = body.as_object() else {
        return Err(invalid("body", "the body must be a JSON object"));
    };
    if let Some(m) = obj.get("model").filter(|m| !m.is_null()) {
        let m = m
            .as_str()
            .ok_or_else(|| invalid("model", "model must be a string"))?;
        if !m.is_empty() && m != model_id && m != "outpost" {
            return Err(ApiError::not_found(format!(
                "model `{m}` does not exist here; GET /v1/models lists `{model_id}`"
            ))
            .with_param("model"));
        }
    }
    let raw = obj
        .get("messages")
        .and_then(Value::as_array)
        .ok_or_else(|| invalid("messages", "messages must be a list of {role, content}"))?;
    if raw.is_empty() {
        return Err(invalid(
            "messages",
            "messages is empty: give at least one user message",
        ));
    }
    if raw.len() > MAX_MESSAGES {
        return Err(invalid(
            "messages",
            format!("at most {MAX_MESSAGES} messages"),
        ));
    }
    let mut messages = Vec::with_capacity(raw.len());
    for (i, m) in raw.iter().enumerate() {
        let role = m["role"].as_str().unwrap_or_default();
        let role = match role {
            "system" | "developer" => "system",
            "user" => "user",
            "assistant" => "assistant",
            other => {
                return Err(invalid(
                    &format!("messages[{i}].role"),
                    format!("role `{other}`: a message's role is system, user or assistant"),
                ))
            }
        };
        messages.push(ChatMessage::new(role, text_content(&m["content"], i)?));
    }
    if obj.get("n").and_then(Value::as_u64).is_some_and(|n| n != 1) {
        return Err(invalid("n", "only n = 1 is supported"));
    }
    let max_output = state.config.serve.max_output_tokens;
    let max_tokens = match obj
        .get("max_completion_tokens")
        .filter(|v| !v.is_null())
        .or_else(|| obj.get("max_tokens").filter(|v| !v.is_null()))
    {
        None => 256.min(max_output),
        Some(v) => match v.as_u64() {
            Some(n) if n >= 1 && n as usize <= max_output => n as usize,
            _ => {
                return Err(invalid(
                    "max_tokens",
                    format!("max_tokens must be 1 to {max_output}"),
                ))
            }
        },
    };
    let number = |name: &str, lo: f64, hi: f64| -> Result<Option<f64>, ApiError> {
        match obj.get(name).filter(|v| !v.is_null()) {
            None => Ok(None),
            Some(v) => match v.as_f64() {
                Some(x) if (lo..=hi).contains(&x) => Ok(Some(x)),
                _ => Err(invalid(
                    name,
                    format!("{name} must be a number from {lo} to {hi}"),
                )),
            },
        }
    };
    let temperature = number("temperature", 0.0, 2.0)?.unwrap_or(0.0);
    // llama.cpp's server takes the same extra field.
    let repeat_penalty = number("repeat_penalty", 0.5, 2.0)?.unwrap_or(1.1);
    let top_p = number("top_p", 0.0, 1.0)?;
    let min_relevance = number("min_relevance", -1.0, 1.0)?.unwrap_or(0.25);
    let seed = match obj.get("seed").filter(|v| !v.is_null()) {
        None => GenerateOptions::default().seed,
        Some(v) => v
            .as_i64()
            .map(|s| s as u64)
            .ok_or_else(|| invalid("seed", "seed must be an integer"))?,
    };
    let stop: Vec<String> = match obj.get("stop") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) if a.len() <= 4 && a.iter().all(Value::is_string) => a
            .iter()
            .filter_map(|s| s.as_str().map(str::to_owned))
            .collect(),
        Some(_) => return Err(invalid("stop", "stop must be a string or up to 4 strings")),
    };
    let stream = match obj.get("stream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(invalid("stream", "stream must be true or false")),
    };
    let retrieval = match obj.get("retrieval") {
        None | Some(Value::Null) => true,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(invalid("retrieval", "retrieval must be true or false")),
    };
    let mode: SearchMode = match obj.get("mode").and_then(Value::as_str) {
        None => SearchMode::Hybrid,
        Some(m) => m
            .parse()
            .map_err(|e: outpost_core::Error| invalid("mode", e.to_string()))?,
    };
    let mut filters = Vec::new();
    if let Some(c) = obj.get("collection").filter(|v| !v.is_null()) {
        let c = c
            .as_str()
            .ok_or_else(|| invalid("collection", "collection must be a string"))?;
        filters.push(
            format!("collection={c}")
                .parse()
                .map_err(|e: outpost_core::Error| invalid("collection", e.to_string()))?,
        );
    }
    let k = match obj.get("k").filter(|v| !v.is_null()) {
        None => 12,
        Some(v) => match v.as_u64() {
            Some(k) if (1..=100).contains(&k) => k as usize,
            _ => return Err(invalid("k", "k must be 1 to 100")),
        },
    };
    if retrieval && messages.last().is_none_or(|m| m.role != "user") {
        return Err(invalid(
            "messages",
            "with retrieval, the last message must be the user's question",
        ));
    }
    Ok(ChatRequest {
        messages,
        stream,
        generate: GenerateOptions {
            max_tokens,
            temperature,
            top_p,
            seed,
            stop,
            repeat_penalty,
        },
        retrieval,
        search: SearchOptions {
            k,
            mode,
            filters,
            ..Default::default()
        },
        min_relevance,
    })
}

/// What a generation sends to its response as it goes.
enum Event {
    Sources(Vec<Citation>),
    Text(String),
}

/// The end of a generation.
struct Done {
    text: String,
    sources: Vec<Citation>,
    cited: Vec<usize>,
    finish: FinishReason,
    prompt_tokens: usize,
    completion_tokens: usize,
    cached_tokens: usize,
}

fn source_json(c: &Citation, cited: &[usize]) -> Value {
    json!({ "n": c.n, "document_id": c.document_id, "title": c.title, "source": c.source,
            "chunk_ids": c.chunk_ids, "byte_start": c.byte_start, "byte_end": c.byte_end,
            "text": c.text, "cited": cited.contains(&c.n) })
}

/// Runs one generation (on the caller's blocking thread), sending its events to `send`.
fn generate(
    engine: &outpost_core::Engine,
    llm: &super::llm::Llm,
    model: &dyn Generator,
    req: ChatRequest,
    send: &mut dyn FnMut(Event) -> bool,
) -> outpost_core::Result<Done> {
    if !req.retrieval {
        if !send(Event::Sources(Vec::new())) {
            return Ok(cancelled());
        }
        let g = model.generate(&req.messages, &req.generate, &mut |piece| {
            piece.is_empty() || send(Event::Text(piece.to_owned()))
        })?;
        return Ok(Done {
            text: g.text,
            sources: Vec::new(),
            cited: Vec::new(),
            finish: g.finish_reason,
            prompt_tokens: g.prompt_tokens,
            completion_tokens: g.completion_tokens,
            cached_tokens: g.cached_tokens,
        });
    }
    let mut history = req.messages;
    let question = history.pop().map(|m| m.content).unwrap_or_default();
    // Turns this agent answered go back to the model as it saw them (with their sources), so
    // the prompt starts with the tokens of the previous one and its cache is reused.
    for i in 0..history.len().saturating_sub(1) {
        if history[i].role == "user" && history[i + 1].role == "assistant" {
            if let Some(full) = llm.recall(&history[i].content, &history[i + 1].content) {
                history[i].content = full;
            }
        }
    }
    let opts = AskOptions {
        context: ContextOptions {
            budget: 1024,
            candidates: req.search.k,
            search: req.search,
            ..Default::default()
        },
        generate: req.generate,
        min_relevance: req.min_relevance,
        history,
        remember: false,
    };
    let answer = engine.ask(&question, &opts, model, &mut |event| match event {
        AskEvent::Sources(s) => send(Event::Sources(s.to_vec())),
        AskEvent::Text(t) => t.is_empty() || send(Event::Text(t.to_owned())),
    })?;
    let g = answer.generation.as_ref();
    let finish = g.map_or(FinishReason::Stop, |g| g.finish_reason);
    if finish != FinishReason::Cancelled && g.is_some() {
        llm.remember(&question, &answer.text, answer.user_message.clone());
    }
    Ok(Done {
        prompt_tokens: g.map_or(0, |g| g.prompt_tokens),
        completion_tokens: g.map_or(0, |g| g.completion_tokens),
        cached_tokens: g.map_or(0, |g| g.cached_tokens),
        text: answer.text,
        sources: answer.sources,
        cited: answer.cited,
        finish,
    })
}

fn cancelled() -> Done {
    Done {
        text: String::new(),
        sources: Vec::new(),
        cited: Vec::new(),
        finish: FinishReason::Cancelled,
        prompt_tokens: 0,
        completion_tokens: 0,
        cached_tokens: 0,
    }
}

/// Sets its flag when dropped: the request's future was dropped (the client went away).
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn usage(d: &Done) -> Value {
    json!({ "prompt_tokens": d.prompt_tokens, "completion_tokens": d.completion_tokens,
            "total_tokens": d.prompt_tokens + d.completion_tokens,
            "prompt_tokens_details": { "cached_tokens": d.cached_tokens } })
}

/// `POST /v1/chat/completions`.
#[utoipa::path(post, path = "/v1/chat/completions", tag = "openai",
    request_body(content = Object, description = "An OpenAI chat completion request (messages, stream, max_tokens, temperature, top_p, seed, stop) with the extra fields retrieval (default true), collection, mode, k and min_relevance."),
    responses((status = 200, description = "A chat.completion, or with stream a text/event-stream of chat.completion.chunk events; both carry `sources`."),
              (status = 400, body = super::api::ErrorBody), (status = 404, body = super::api::ErrorBody),
              (status = 413, body = super::api::ErrorBody), (status = 429, body = super::api::ErrorBody),
              (status = 503, body = super::api::ErrorBody)))]
pub async fn chat_completions(
    State(state): State<AppState>,
    Json(body): Json<Value>,
) -> Result<Response, ApiError> {
    let Some(model_id) = state.llm.id.clone() else {
        return Err(ApiError::unavailable(
            "no language model: run `outpost models fetch --llm`, or start the agent with \
             --llm-model FILE.gguf or --llm-url URL",
        ));
    };
    let req = parse(&state, &body, &model_id)?;
    let slot = state.llm.slot().await.map_err(|e| match e {
        SlotError::Full { .. } => ApiError::too_many(e.to_string()),
    })?;
    let model = state
        .llm
        .model()
        .await
        .map_err(|e| ApiError::unavailable(format!("the language model cannot load: {e:#}")))?;
    // A prompt the window cannot hold is refused before anything streams (with retrieval, the
    // sources are fitted later; the rest of the prompt must leave them room).
    let fixed = if req.retrieval {
        let mut m = vec![ChatMessage::new(
            "system",
            outpost_core::rag::answer::SYSTEM_PROMPT,
        )];
        m.extend(req.messages.iter().cloned());
        m
    } else {
        req.messages.clone()
    };
    let tokens = model
        .count_tokens(&fixed)
        .map_err(|e| ApiError::from(outpost_core::Error::from(e)))?;
    let room = model
        .context_window()
        .saturating_sub(req.generate.max_tokens + if req.retrieval { 64 } else { 0 });
    if tokens > room {
        return Err(ApiError::from(outpost_core::Error::from(
            outpost_core::GenerateError::PromptTooLong {
                tokens,
                limit: room,
            },
        )));
    }
    let id = format!("chatcmpl-{}", uuid::Uuid::now_v7().simple());
    let created = now();
    let stream = req.stream;
    let cancel = Arc::new(AtomicBool::new(false));
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Event>();
    let llm = state.llm.clone();
    let flag = cancel.clone();
    let engines = state.engines.clone();
    let work = async move {
        engines
            .read(move |engine| {
                let _slot = slot;
                let mut send = |e: Event| !flag.load(Ordering::SeqCst) && tx.send(e).is_ok();
                let done = generate(engine, &llm, model.as_ref(), req, &mut send);
                if let Ok(d) = &done {
                    if d.finish == FinishReason::Cancelled {
                        tracing::info!(
                            tokens = d.completion_tokens,
                            "generation stopped: the client went away"
                        );
                    }
                }
                done
            })
            .await
    };
    if !stream {
        let _guard = CancelOnDrop(cancel);
        let done = work.await??;
        let sources: Vec<Value> = done
            .sources
            .iter()
            .map(|c| source_json(c, &done.cited))
            .collect();
        let body = json!({
            "id": id, "object": "chat.completion", "created": created, "model": model_id,
            "choices": [{ "index": 0, "message": { "role": "assistant", "content": done.text },
                          "logprobs": null, "finish_reason": done.finish.as_str() }],
            "usage": usage(&done),
            "sources": sources,
        });
        return Ok(axum::Json(body).into_response());
    }
    // The response streams from here; the generation's end comes through `work`.
    let (frames_tx, frames_rx) = tokio::sync::mpsc::channel::<String>(64);
    let chunk = move |delta: Value, finish: Option<&str>, extra: &[(&str, Value)]| {
        let mut c = json!({ "id": id, "object": "chat.completion.chunk", "created": created,
                            "model": model_id,
                            "choices": [{ "index": 0, "delta": delta, "logprobs": null,
                                          "finish_reason": finish }] });
        for (k, v) in extra {
            c[*k] = v.clone();
        }
        format!("data: {c}\n\n")
    };
    // The generation runs beside the stream, which forwards its events as they come.
    let work = tokio::spawn(work);
    tokio::spawn(async move {
        let mut rx = rx;
        // Dropped when the client goes: generation stops at its next token.
        let _guard = CancelOnDrop(cancel);
        while let Some(event) = rx.recv().await {
            let frame = match event {
                Event::Sources(s) => {
                    let s: Vec<Value> = s.iter().map(|c| source_json(c, &[])).collect();
                    chunk(
                        json!({ "role": "assistant", "content": "" }),
                        None,
                        &[("sources", json!(s))],
                    )
                }
                Event::Text(t) => chunk(json!({ "content": t }), None, &[]),
            };
            if frames_tx.send(frame).await.is_err() {
                return;
            }
        }
        let last = match work.await {
            Ok(Ok(Ok(done))) => {
                let s: Vec<Value> = done
                    .sources
                    .iter()
                    .map(|c| source_json(c, &done.cited))
                    .collect();
                // The usage rides on the last chunk (as with stream_options.include_usage).
                chunk(
                    json!({}),
                    Some(done.finish.as_str()),
                    &[("sources", json!(s)), ("usage", usage(&done))],
                )
            }
            Ok(Ok(Err(e))) => error_event(&e.to_string()),
            Ok(Err(e)) => error_event(&e.to_string()),
            Err(e) => error_event(&e.to_string()),
        };
        let _ = frames_tx.send(last).await;
        let _ = frames_tx.send("data: [DONE]\n\n".to_owned()).await;
    });
    let body = futures_util::stream::unfold(frames_rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|f| (Ok::<_, std::convert::Infallible>(f), rx))
    });
    let mut response = Response::new(Body::from_stream(body));
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    *response.status_mut() = StatusCode::OK;
    Ok(response)
}

/// An error after the stream began: an event with an OpenAI error body (the status is sent).
fn error_event(message: &str) -> String {
    let e = json!({ "error": { "message": message, "type": "server_error", "param": null,
                               "code": "internal" } });
    format!("data: {e}\n\n")
}

/// `POST /v1/embeddings`.
#[utoipa::path(post, path = "/v1/embeddings", tag = "openai",
    request_body(content = Object, description = "{input: string | [string], model?, encoding_format?: float | base64}"),
    responses((status = 200, description = "An OpenAI embedding list."), (status = 400, body = super::api::ErrorBody)))]
pub async fn embeddings(
    State(state): State<AppState>,
    Json(body): Json<Value>,
) -> Result<Response, ApiError> {
    let model_id = state.engines.embedder().model_id().to_owned();
    let texts: Vec<String> = match body.get("input") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) if !a.is_empty() && a.iter().all(Value::is_string) => a
            .iter()
            .filter_map(|s| s.as_str().map(str::to_owned))
            .collect(),
        Some(Value::Array(a)) if a.is_empty() => return Err(invalid("input", "input is empty")),
        _ => {
            return Err(invalid(
                "input",
                "input must be a string or a list of strings (token arrays are not accepted)",
            ))
        }
    };
    if texts.len() > 2048 {
        return Err(invalid("input", "at most 2048 inputs per request"));
    }
    if let Some(m) = body.get("model").and_then(Value::as_str) {
        if !m.is_empty() && m != model_id && m != "outpost" {
            return Err(ApiError::not_found(format!(
                "model `{m}` does not exist here; the embedding model is `{model_id}`"
            ))
            .with_param("model"));
        }
    }
    let base64 = match body.get("encoding_format").and_then(Value::as_str) {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return Err(invalid(
                "encoding_format",
                format!("encoding_format `{other}`: float or base64"),
            ))
        }
    };
    let (vectors, tokens) = state
        .engines
        .read(move |engine| {
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            let vectors = engine.embedder().embed(&refs)?;
            let tokens: usize = match engine.embedder().tokenizer() {
                Ok(t) => refs
                    .iter()
                    .map(|s| outpost_core::count_tokens(t, s) + 2)
                    .sum(),
                Err(_) => 0,
            };
            Ok::<_, outpost_core::Error>((vectors, tokens))
        })
        .await??;
    let data: Vec<Value> = vectors
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let embedding = if base64 {
                let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                json!(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(v)
            };
            json!({ "object": "embedding", "index": i, "embedding": embedding })
        })
        .collect();
    Ok(axum::Json(json!({
        "object": "list", "data": data, "model": model_id,
        "usage": { "prompt_tokens": tokens, "total_tokens": tokens },
    }))
    .into_response())
}

/// `GET /v1/models`.
#[utoipa::path(get, path = "/v1/models", tag = "openai",
    responses((status = 200, description = "The chat model (when one is installed) and the embedding model.")))]
pub async fn models(State(state): State<AppState>) -> Response {
    let mut data = Vec::new();
    if let Some(id) = &state.llm.id {
        data.push(json!({ "id": id, "object": "model", "created": 0, "owned_by": "outpost" }));
    }
    data.push(
        json!({ "id": state.engines.embedder().model_id(), "object": "model",
                      "created": 0, "owned_by": "outpost" }),
    );
    axum::Json(json!({ "object": "list", "data": data })).into_response()
}

/// The OpenAPI description of these routes (merged into `/openapi.json`).
#[derive(utoipa::OpenApi)]
#[openapi(paths(chat_completions, embeddings, models))]
pub struct OpenAiDoc;
