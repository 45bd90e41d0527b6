//! The HTTP API (axum): documents, search, context, conversations, health, sync, metrics and
//! the OpenAPI description generated from these handlers (utoipa).
//!
//! Every failure is a JSON body `{"error": {"code", "message"}}` with a 4xx status when the
//! request was at fault (bad JSON, wrong types, a body over the limit, an unknown id, `k` out of
//! range, a filter on an unknown key) and 5xx only when the agent was.

use std::time::Instant;

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Multipart, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use utoipa::{IntoParams, OpenApi, ToSchema};

use outpost_core::ingest::extract::Extracted;
use outpost_core::{ContextOptions, Filter, RrfParams, SearchMode, SearchOptions, TextInput};

use super::metrics::Mode;
use super::pool::PoolError;
use super::state::AppState;
use super::syncer::SyncRequestError;

/// A failed request, as JSON.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    param: Option<String>,
}

/// The error body.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    error: ErrorDetail,
}

/// What went wrong.
#[derive(Serialize, ToSchema)]
pub struct ErrorDetail {
    /// A stable code: `bad_request`, `invalid`, `not_found`, `method_not_allowed`,
    /// `unauthorized`, `too_large`,
    /// `unsupported_media_type`, `rate_limited`, `busy` and `offline` (both 503 with
    /// `Retry-After`), `unavailable`, `disk_full`, `internal`.
    code: String,
    /// What, and where.
    message: String,
    /// The OpenAI error type: `invalid_request_error`, `authentication_error`,
    /// `not_found_error`, `rate_limit_error`, `server_error`.
    #[serde(rename = "type")]
    kind: String,
    /// The request field at fault, when one is.
    param: Option<String>,
}

impl ApiError {
    /// A 400 naming the problem.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::with_status(StatusCode::BAD_REQUEST, message)
    }

    /// A 404 naming what is missing.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::with_status(StatusCode::NOT_FOUND, message)
    }

    /// A 503: what is unavailable and how to make it available.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::with_status(StatusCode::SERVICE_UNAVAILABLE, message)
    }

    /// A 429 (sent with `Retry-After`).
    pub fn too_many(message: impl Into<String>) -> Self {
        Self::with_status(StatusCode::TOO_MANY_REQUESTS, message)
    }

    /// A 503 with `Retry-After`: the agent has `serve.max_in_flight` requests in hand.
    pub fn busy(message: impl Into<String>) -> Self {
        Self {
            code: "busy",
            ..Self::with_status(StatusCode::SERVICE_UNAVAILABLE, message)
        }
    }

    fn with_status(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            code: Self::status_code(status),
            message: message.into(),
            param: None,
        }
    }

    /// The same error, naming the request field at fault.
    #[must_use]
    pub fn with_param(mut self, param: &str) -> Self {
        self.param = Some(param.to_owned());
        self
    }

    /// A 401.
    pub fn unauthorized() -> Self {
        Self {
            status: StatusCode::UNAUTHORIZED,
            code: "unauthorized",
            message: "missing or wrong bearer token (Authorization: Bearer <token>)".into(),
            param: None,
        }
    }

    fn status_code(status: StatusCode) -> &'static str {
        match status.as_u16() {
            401 => "unauthorized",
            404 => "not_found",
            405 => "method_not_allowed",
            413 => "too_large",
            415 => "unsupported_media_type",
            422 => "invalid",
            429 => "rate_limited",
            503 => "unavailable",
            507 => "disk_full",
            s if s >= 500 => "internal",
            _ => "bad_request",
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(code = self.code, message = %self.message, "request failed");
        }
        let kind = match self.status.as_u16() {
            401 => "authentication_error",
            404 => "not_found_error",
            429 => "rate_limit_error",
            s if s >= 500 => "server_error",
            _ => "invalid_request_error",
        };
        let body = json!({ "error": { "code": self.code, "message": self.message,
                                      "type": kind, "param": self.param } });
        let mut response = (self.status, axum::Json(body)).into_response();
        // Back-pressure says when to come back: a full queue or in-flight limit (429, `busy`)
        // and an unreachable central store (`offline`) pass; a missing model does not.
        if self.status == StatusCode::TOO_MANY_REQUESTS || matches!(self.code, "busy" | "offline") {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("2"));
        }
        // Handlers read it to count errors by kind.
        response.extensions_mut().insert(ErrorCode(self.code));
        response
    }
}

/// The code of an error response, for the metrics middleware.
#[derive(Clone, Copy, Debug)]
pub struct ErrorCode(pub &'static str);

impl From<outpost_core::Error> for ApiError {
    fn from(e: outpost_core::Error) -> Self {
        use outpost_core::ErrorKind as K;
        let status = match (&e, e.kind()) {
            // A prompt the model's window cannot hold: the request is too large.
            (
                outpost_core::Error::Generate(outpost_core::GenerateError::PromptTooLong {
                    ..
                }),
                _,
            ) => {
                return Self::with_status(StatusCode::PAYLOAD_TOO_LARGE, e.to_string())
                    .with_param("messages");
            }
            (_, kind) => kind,
        };
        let status = match status {
            K::NotFound => StatusCode::NOT_FOUND,
            K::InvalidInput => StatusCode::UNPROCESSABLE_ENTITY,
            // The write was rolled back; the same request succeeds once space is freed.
            K::DiskFull => StatusCode::INSUFFICIENT_STORAGE,
            K::Database | K::Model | K::Index | K::Export => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Self {
            status,
            code: Self::status_code(status),
            message: e.to_string(),
            param: None,
        }
    }
}

impl From<PoolError> for ApiError {
    fn from(e: PoolError) -> Self {
        match e {
            PoolError::Core(e) => e.into(),
            other => Self {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                code: "internal",
                message: other.to_string(),
                param: None,
            },
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        let status = r.status();
        Self {
            status,
            code: Self::status_code(status),
            message: r.body_text(),
            param: None,
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        Self::bad_request(r.body_text())
    }
}

/// A JSON body whose rejections are [`ApiError`]s.
#[derive(FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct Json<T>(pub T);

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        Self::bad_request(r.body_text())
    }
}

/// Path parameters whose rejections (a segment that is not UTF-8 once percent-decoded) are
/// [`ApiError`]s, JSON as every other error.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct Path<T>(pub T);

/// Query parameters whose rejections are [`ApiError`]s. A query string that is not UTF-8 once
/// percent-decoded is refused (axum's `Query` would read it with replacement characters, and
/// `?collection=%FF` would quietly list a collection nobody named).
pub struct Query<T>(pub T);

impl<T, S> FromRequestParts<S> for Query<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        if let Some(query) = parts.uri.query() {
            if std::str::from_utf8(&percent_decode(query.as_bytes())).is_err() {
                return Err(ApiError::bad_request(
                    "the query string is not UTF-8 once percent-decoded",
                ));
            }
        }
        let axum::extract::Query(value) =
            axum::extract::Query::<T>::from_request_parts(parts, state).await?;
        Ok(Self(value))
    }
}

/// `%XX` sequences decoded (a malformed one is kept as it is).
fn percent_decode(bytes: &[u8]) -> Vec<u8> {
    let hex = |b: u8| (b as char).to_digit(16);
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if let (b'%', Some(&h), Some(&l)) = (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            if let (Some(h), Some(l)) = (hex(h), hex(l)) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

type ApiResult<T> = Result<T, ApiError>;

// ---------------------------------------------------------------------------------------------
// Documents

/// `POST /v1/documents` with JSON: a text to index.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewDocument {
    /// The text.
    text: String,
    /// Title (default: the first line of the text).
    title: Option<String>,
    /// A stable source id: posting the same source again updates that document (default: a
    /// new `api:` id per request).
    source: Option<String>,
    /// Collection (default: the agent's).
    collection: Option<String>,
    /// Metadata to filter on (string, number or boolean values).
    #[schema(value_type = Object)]
    metadata: Option<Map<String, Value>>,
}

/// A stored document.
#[derive(Debug, Serialize, ToSchema)]
pub struct Ingested {
    /// Document id.
    id: String,
    /// Its source.
    source: String,
    /// `added`, `updated` or `unchanged`.
    outcome: String,
    /// Chunks embedded and written (0 if unchanged).
    chunks: usize,
}

/// Index a text (JSON) or a file upload (multipart, field `file`; optional fields
/// `collection` and `source`).
#[utoipa::path(post, path = "/v1/documents", tag = "documents",
    request_body(content(
        (NewDocument = "application/json"),
        (Object = "multipart/form-data")
    )),
    responses(
        (status = 201, description = "Added or updated", body = [Ingested]),
        (status = 200, description = "Unchanged", body = [Ingested]),
        (status = 400, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn post_document(
    State(state): State<AppState>,
    headers: HeaderMap,
    request: axum::extract::Request,
) -> ApiResult<Response> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mut opts = state.ingest_options();
    let docs: Vec<(String, Extracted)> = if content_type.starts_with("multipart/form-data") {
        let mut multipart = Multipart::from_request(request, &state)
            .await
            .map_err(|e| ApiError::bad_request(e.body_text()))?;
        let (mut file, mut source) = (None, None);
        while let Some(field) = multipart
            .next_field()
            .await
            .map_err(|e| upload_error(&e.body_text(), e.status()))?
        {
            let name = field.name().unwrap_or("").to_string();
            match name.as_str() {
                "file" => {
                    let filename = field.file_name().unwrap_or("upload.txt").to_string();
                    let bytes = field
                        .bytes()
                        .await
                        .map_err(|e| upload_error(&e.body_text(), e.status()))?;
                    file = Some((filename, bytes));
                }
                "collection" | "source" => {
                    // Not `text()`, which reads invalid UTF-8 as U+FFFD: a collection named
                    // "c\u{FFFD}" nobody asked for.
                    let bytes = field
                        .bytes()
                        .await
                        .map_err(|e| upload_error(&e.body_text(), e.status()))?;
                    let value = String::from_utf8(bytes.to_vec()).map_err(|_| {
                        ApiError::bad_request(format!("multipart field '{name}' is not UTF-8"))
                            .with_param(&name)
                    })?;
                    if name == "collection" {
                        opts.collection = value;
                    } else {
                        source = Some(value);
                    }
                }
                other => {
                    return Err(ApiError::bad_request(format!(
                        "unknown multipart field '{other}' (expected file, collection, source)"
                    )))
                }
            }
        }
        let (filename, bytes) =
            file.ok_or_else(|| ApiError::bad_request("multipart upload without a 'file' field"))?;
        let base = source.unwrap_or_else(|| format!("upload:{filename}"));
        let path = std::path::Path::new(&filename);
        let (docs, bad) = outpost_core::ingest::extract::extract(path, &bytes)?;
        if let Some(b) = bad.first() {
            return Err(ApiError {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                code: "invalid",
                message: format!("{filename}:{}: {}", b.line, b.reason),
                param: None,
            });
        }
        docs.into_iter()
            .map(|d| {
                let source = match &d.key {
                    Some(k) => format!("{base}#{k}"),
                    None => base.clone(),
                };
                (source, d)
            })
            .collect()
    } else {
        let Json(body): Json<NewDocument> = Json::from_request(request, &state).await?;
        if let Some(c) = body.collection {
            opts.collection = c;
        }
        let input = TextInput {
            text: body.text,
            title: body.title,
            source: body
                .source
                .unwrap_or_else(|| format!("api:{}", uuid::Uuid::now_v7())),
            metadata: body.metadata.unwrap_or_default(),
        };
        // A text the engine refuses is a bad request, as a body that does not parse.
        vec![input
            .into_document()
            .map_err(|e| ApiError::bad_request(e.to_string()))?]
    };
    let metrics = state.metrics.clone();
    let started = Instant::now();
    let out = state
        .engines
        .write(move |engine| {
            docs.into_iter()
                .map(|(source, doc)| {
                    let done = engine.ingest_document(&source, doc, &opts)?;
                    Ok(Ingested {
                        id: done.id,
                        source: done.source,
                        outcome: format!("{:?}", done.outcome).to_lowercase(),
                        chunks: done.chunks,
                    })
                })
                .collect::<Result<Vec<_>, outpost_core::Error>>()
        })
        .await??;
    metrics
        .ingest_seconds
        .observe(started.elapsed().as_secs_f64());
    let changed = out.iter().filter(|d| d.outcome != "unchanged").count();
    metrics.documents_ingested.inc_by(changed as u64);
    metrics
        .chunks_ingested
        .inc_by(out.iter().map(|d| d.chunks as u64).sum());
    let status = if changed > 0 {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(out)).into_response())
}

fn upload_error(message: &str, status: StatusCode) -> ApiError {
    ApiError {
        status,
        code: ApiError::status_code(status),
        message: message.to_string(),
        param: None,
    }
}

/// `GET /v1/documents` parameters.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListDocuments {
    /// Only this collection.
    collection: Option<String>,
    /// Include deleted documents (tombstones).
    #[serde(default)]
    deleted: bool,
    /// At most this many (default 100).
    limit: Option<usize>,
}

/// List documents, newest first.
#[utoipa::path(get, path = "/v1/documents", tag = "documents", params(ListDocuments),
    responses((status = 200, body = Object), (status = 400, body = ErrorBody)))]
pub async fn list_documents(
    State(state): State<AppState>,
    Query(q): Query<ListDocuments>,
) -> ApiResult<Json<Value>> {
    let docs = state
        .engines
        .read(move |e| e.list_documents(q.collection.as_deref(), q.deleted, q.limit.unwrap_or(100)))
        .await??;
    Ok(Json(json!({ "documents": docs })))
}

/// One document with its chunks.
#[utoipa::path(get, path = "/v1/documents/{id}", tag = "documents",
    params(("id" = String, Path, description = "Document id (or a unique prefix)")),
    responses((status = 200, body = Object), (status = 404, body = ErrorBody)))]
pub async fn get_document(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let doc = state.engines.read(move |e| e.get_document(&id)).await??;
    Ok(Json(serde_json::to_value(doc).unwrap_or_default()))
}

/// Delete a document (a tombstone that sync carries to other devices).
#[utoipa::path(delete, path = "/v1/documents/{id}", tag = "documents",
    params(("id" = String, Path, description = "Document id (or a unique prefix)")),
    responses((status = 200, body = Object), (status = 404, body = ErrorBody)))]
pub async fn delete_document(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let doc = state
        .engines
        .write(move |e| e.delete_document(&id))
        .await??;
    Ok(Json(serde_json::to_value(doc).unwrap_or_default()))
}

// ---------------------------------------------------------------------------------------------
// Search and context

/// Fusion weights of hybrid search.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Rrf {
    /// Rank constant (default 60).
    k: Option<f64>,
    /// Weight of the vector ranking.
    vector_weight: Option<f64>,
    /// Weight of the full-text ranking.
    text_weight: Option<f64>,
}

/// `POST /v1/search`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchBody {
    /// The query.
    query: String,
    /// Results wanted (default 10).
    k: Option<usize>,
    /// `hybrid` (default), `vector` or `text`.
    mode: Option<String>,
    /// Filters as on the command line: `collection=NAME`, `source=PREFIX`, `KEY=VALUE`,
    /// `KEY>=VALUE`, `KEY<VALUE` ...
    #[serde(default)]
    filters: Vec<String>,
    /// Fusion weights.
    rrf: Option<Rrf>,
}

/// One search result: the schema of `outpost_core::SearchHit`, which the API returns as the
/// engine gives it (this type only documents it).
#[derive(Debug, Serialize, ToSchema)]
#[allow(dead_code)]
pub struct Hit {
    chunk_id: String,
    document_id: String,
    title: String,
    source: String,
    collection: String,
    text: String,
    /// Higher is better.
    score: f64,
    ordinal: usize,
    byte_start: usize,
    byte_end: usize,
    /// Tokens in the chunk.
    token_count: usize,
}

/// Search results.
#[derive(Debug, Serialize, ToSchema)]
pub struct SearchResults {
    query: String,
    mode: String,
    #[schema(value_type = Vec<Hit>)]
    results: Vec<outpost_core::SearchHit>,
}

fn search_options(
    state: &AppState,
    k: Option<usize>,
    mode: Option<&str>,
    filters: &[String],
    rrf: Option<Rrf>,
) -> ApiResult<SearchOptions> {
    let k = k.unwrap_or(10);
    if k == 0 || k > state.config.serve.max_k {
        return Err(ApiError::bad_request(format!(
            "k = {k} is out of range: 1 to {}",
            state.config.serve.max_k
        )));
    }
    let mode: SearchMode = mode
        .unwrap_or("hybrid")
        .parse()
        .map_err(|e: outpost_core::Error| ApiError::bad_request(e.to_string()))?;
    let filters = filters
        .iter()
        .map(|f| f.parse::<Filter>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let defaults = RrfParams::default();
    let rrf = rrf.map_or(defaults, |r| RrfParams {
        k: r.k.unwrap_or(defaults.k),
        vector_weight: r.vector_weight.unwrap_or(defaults.vector_weight),
        text_weight: r.text_weight.unwrap_or(defaults.text_weight),
    });
    Ok(SearchOptions {
        k,
        mode,
        filters,
        rrf,
    })
}

/// Search: the same semantics as `outpost search`.
#[utoipa::path(post, path = "/v1/search", tag = "search", request_body = SearchBody,
    responses((status = 200, body = SearchResults), (status = 400, body = ErrorBody),
              (status = 422, body = ErrorBody)))]
pub async fn search(
    State(state): State<AppState>,
    Json(body): Json<SearchBody>,
) -> ApiResult<Json<SearchResults>> {
    if body.query.trim().is_empty() {
        return Err(ApiError::bad_request("'query' is empty"));
    }
    let opts = search_options(
        &state,
        body.k,
        body.mode.as_deref(),
        &body.filters,
        body.rrf,
    )?;
    let mode = opts.mode.to_string();
    let query = body.query;
    let q = query.clone();
    let started = Instant::now();
    let hits = state.engines.read(move |e| e.search(&q, &opts)).await??;
    state
        .metrics
        .search_seconds
        .get_or_create(&Mode { mode: mode.clone() })
        .observe(started.elapsed().as_secs_f64());
    Ok(Json(SearchResults {
        query,
        mode,
        results: hits,
    }))
}

/// `POST /v1/context`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContextBody {
    /// The question.
    query: String,
    /// Most tokens in the context (default 1024).
    budget: Option<usize>,
    /// A conversation whose memory to include.
    conversation_id: Option<String>,
    /// Search mode for the documents (default hybrid).
    mode: Option<String>,
    /// Filters, as for search.
    #[serde(default)]
    filters: Vec<String>,
    /// Chunks retrieved before fitting (default 20).
    candidates: Option<usize>,
}

/// A RAG context block with numbered citations, within a token budget.
#[utoipa::path(post, path = "/v1/context", tag = "search", request_body = ContextBody,
    responses((status = 200, body = Object), (status = 400, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
pub async fn context(
    State(state): State<AppState>,
    Json(body): Json<ContextBody>,
) -> ApiResult<Json<Value>> {
    if body.query.trim().is_empty() {
        return Err(ApiError::bad_request("'query' is empty"));
    }
    let budget = body.budget.unwrap_or(1024);
    if !(16..=1_000_000).contains(&budget) {
        return Err(ApiError::bad_request(format!(
            "budget = {budget} is out of range: 16 to 1000000 tokens"
        )));
    }
    let candidates = body.candidates.unwrap_or(20);
    let search = search_options(
        &state,
        Some(candidates),
        body.mode.as_deref(),
        &body.filters,
        None,
    )?;
    let opts = ContextOptions {
        budget,
        candidates,
        search,
        conversation_id: body.conversation_id,
        ..Default::default()
    };
    let query = body.query;
    let ctx = state
        .engines
        .read(move |e| e.context(&query, &opts))
        .await??;
    Ok(Json(serde_json::to_value(ctx).unwrap_or_default()))
}

// ---------------------------------------------------------------------------------------------
// Conversations

/// `POST /v1/conversations`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewConversation {
    /// Title.
    title: String,
}

/// Start a conversation.
#[utoipa::path(post, path = "/v1/conversations", tag = "conversations",
    request_body = NewConversation,
    responses((status = 201, body = Object), (status = 400, body = ErrorBody)))]
pub async fn create_conversation(
    State(state): State<AppState>,
    Json(body): Json<NewConversation>,
) -> ApiResult<Response> {
    let c = state
        .engines
        .write(move |e| e.create_conversation(&body.title))
        .await??;
    Ok((StatusCode::CREATED, Json(c)).into_response())
}

/// `GET /v1/conversations` parameters.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListConversations {
    /// Only titles containing this.
    title: Option<String>,
    /// At most this many (default 100).
    limit: Option<usize>,
}

/// List conversations (optionally by title), most recent first.
#[utoipa::path(get, path = "/v1/conversations", tag = "conversations",
    params(ListConversations), responses((status = 200, body = Object)))]
pub async fn list_conversations(
    State(state): State<AppState>,
    Query(q): Query<ListConversations>,
) -> ApiResult<Json<Value>> {
    let list = state
        .engines
        .read(move |e| e.conversations(q.title.as_deref(), q.limit.unwrap_or(100)))
        .await??;
    Ok(Json(json!({ "conversations": list })))
}

/// One conversation.
#[utoipa::path(get, path = "/v1/conversations/{id}", tag = "conversations",
    params(("id" = String, Path)),
    responses((status = 200, body = Object), (status = 404, body = ErrorBody)))]
pub async fn get_conversation(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let c = state.engines.read(move |e| e.conversation(&id)).await??;
    Ok(Json(serde_json::to_value(c).unwrap_or_default()))
}

/// `POST /v1/conversations/{id}/messages`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewMessage {
    /// `user`, `assistant`, `system` ...
    role: String,
    /// The message (embedded, for recall by similarity).
    content: String,
}

/// Add a message.
#[utoipa::path(post, path = "/v1/conversations/{id}/messages", tag = "conversations",
    params(("id" = String, Path)), request_body = NewMessage,
    responses((status = 201, body = Object), (status = 404, body = ErrorBody)))]
pub async fn add_message(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Json(body): Json<NewMessage>,
) -> ApiResult<Response> {
    if body.role.trim().is_empty() {
        return Err(ApiError::bad_request("'role' is empty"));
    }
    let m = state
        .engines
        .write(move |e| e.add_message(&id, &body.role, &body.content))
        .await??;
    Ok((StatusCode::CREATED, Json(m)).into_response())
}

/// `GET /v1/conversations/{id}/messages` parameters.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct RecentMessages {
    /// The most recent this many (default 20).
    n: Option<usize>,
}

/// The most recent messages, oldest first.
#[utoipa::path(get, path = "/v1/conversations/{id}/messages", tag = "conversations",
    params(("id" = String, Path), RecentMessages),
    responses((status = 200, body = Object), (status = 404, body = ErrorBody)))]
pub async fn recent_messages(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<RecentMessages>,
) -> ApiResult<Json<Value>> {
    let msgs = state
        .engines
        .read(move |e| {
            // An unknown conversation is a 404, not an empty list.
            e.conversation(&id)?;
            e.recent_messages(&id, q.n.unwrap_or(20))
        })
        .await??;
    Ok(Json(json!({ "messages": msgs })))
}

// ---------------------------------------------------------------------------------------------
// Health, stats, sync, metrics

/// What the database holds, by collection, and the files waiting to be ingested.
#[utoipa::path(get, path = "/v1/stats", tag = "health", responses((status = 200, body = Object)))]
pub async fn stats(State(state): State<AppState>) -> ApiResult<Json<Value>> {
    let (stats, queued) = state
        .engines
        .read(|e| Ok::<_, outpost_core::Error>((e.stats()?, e.work_depth()?)))
        .await??;
    let collections: Vec<Value> = stats
        .collections
        .iter()
        .map(|c| json!({ "name": c.collection.name, "documents": c.documents, "chunks": c.chunks, "model": c.collection.model_id }))
        .collect();
    Ok(Json(json!({
        "collections": collections,
        "documents": stats.collections.iter().map(|c| c.documents).sum::<usize>(),
        "chunks": stats.collections.iter().map(|c| c.chunks).sum::<usize>(),
        "queued": queued,
        "language_model": state.llm.id,
        "generation_waiting": state.llm.waiting(),
    })))
}

/// Alive.
#[utoipa::path(get, path = "/healthz", tag = "health", responses((status = 200, body = Object)))]
pub async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// Ready to serve: the database answers and the model is loaded. The central store may be
/// `offline`: the agent still searches.
#[utoipa::path(get, path = "/readyz", tag = "health",
    responses((status = 200, body = Object), (status = 503, body = Object)))]
pub async fn readyz(State(state): State<AppState>) -> Response {
    let db = state
        .engines
        .read(|e| e.schema_version())
        .await
        .map_err(ApiError::from)
        .and_then(|r| r.map_err(ApiError::from));
    let central = state.sync.central_state();
    let model = state.engines.embedder().model_id().to_string();
    match db {
        Ok(version) => axum::Json(json!({
            "ready": true, "database": "ok", "schema_version": version, "model": model,
            "central": central,
        }))
        .into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({
                "ready": false, "database": e.message, "model": model, "central": central,
            })),
        )
            .into_response(),
    }
}

/// Outbox depth, lag, last push and pull, and how the last background sync went.
#[utoipa::path(get, path = "/v1/sync/status", tag = "sync", responses((status = 200, body = Object)))]
pub async fn sync_status(State(state): State<AppState>) -> ApiResult<Json<Value>> {
    let local = state
        .engines
        .read(outpost_sync::status)
        .await?
        .map_err(|e| ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: "internal",
            message: e.to_string(),
            param: None,
        })?;
    let mut v = serde_json::to_value(local).unwrap_or_default();
    v["central"] = serde_json::to_value(state.sync.snapshot()).unwrap_or_default();
    Ok(Json(v))
}

/// Sync now: push the outbox, pull what is new. 503 when the central store cannot be reached.
#[utoipa::path(post, path = "/v1/sync", tag = "sync",
    responses((status = 200, body = Object), (status = 409, body = ErrorBody),
              (status = 503, body = ErrorBody)))]
pub async fn sync_now(State(state): State<AppState>) -> ApiResult<Json<Value>> {
    match state.sync.sync_now().await {
        Ok(report) => Ok(Json(serde_json::to_value(report).unwrap_or_default())),
        Err(SyncRequestError::NotConfigured) => Err(ApiError {
            status: StatusCode::CONFLICT,
            code: "not_configured",
            message: "no central store is configured (sync.central, OUTPOST_SUPABASE_* or OUTPOST_CENTRAL_URL)".into(),
            param: None,
        }),
        Err(SyncRequestError::Failed(message)) => Err(ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: "offline",
            message,
            param: None,
        }),
    }
}

/// Prometheus metrics.
#[utoipa::path(get, path = "/metrics", tag = "health",
    responses((status = 200, description = "OpenMetrics text", body = String)))]
pub async fn metrics(State(state): State<AppState>) -> ApiResult<Response> {
    let counts = state
        .engines
        .read(|e| -> Result<_, String> {
            let stats = e.stats().map_err(|e| e.to_string())?;
            let status = outpost_sync::status(e).map_err(|e| e.to_string())?;
            let queued = e.work_depth().map_err(|e| e.to_string())?;
            Ok((stats, status, queued))
        })
        .await?
        .map_err(|message| ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: "internal",
            message,
            param: None,
        })?;
    let (stats, sync, queued) = counts;
    let m = &state.metrics;
    m.documents
        .set(stats.collections.iter().map(|c| c.documents as i64).sum());
    m.chunks
        .set(stats.collections.iter().map(|c| c.chunks as i64).sum());
    m.outbox_depth.set(sync.outbox_depth as i64);
    m.sync_lag_seconds.set(sync.lag_ms as f64 / 1000.0);
    m.work_queue_depth.set(queued as i64);
    let text = m.encode().map_err(|e| ApiError {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        code: "internal",
        message: e.to_string(),
        param: None,
    })?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response())
}

/// The OpenAPI description of this API.
#[derive(OpenApi)]
#[openapi(
    info(title = "Outpost agent API", description = "Offline semantic search, RAG context and conversation memory on an edge device."),
    paths(post_document, list_documents, get_document, delete_document, search, context,
          create_conversation, list_conversations, get_conversation, add_message,
          recent_messages, healthz, readyz, stats, sync_status, sync_now, metrics),
    components(schemas(ErrorBody, ErrorDetail, NewDocument, Ingested, SearchBody, Rrf, Hit,
                       SearchResults, ContextBody, NewConversation, NewMessage)),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// A route asked with a method it does not have: a JSON 405, as every other error.
pub async fn method_not_allowed() -> ApiError {
    ApiError::with_status(
        StatusCode::METHOD_NOT_ALLOWED,
        "this route does not take this method; GET /openapi.json lists each route's methods",
    )
}

/// The largest body a request may carry: a document upload (`POST /v1/documents`, JSON or
/// multipart) up to `serve.max_upload_bytes`, anything else up to `serve.max_body_bytes`.
fn body_limit(state: &AppState, method: &Method, path: &str) -> usize {
    if method == Method::POST && path == "/v1/documents" {
        state.config.serve.max_upload_bytes
    } else {
        state.config.serve.max_body_bytes
    }
}

/// Answers a request whose `Content-Length` is over its limit with a 413 before any handler
/// runs, on every route, including those that never read their body (`POST /v1/sync`). A body
/// without a length (chunked) is cut at the same limit by the extractors
/// ([`DefaultBodyLimit`]), which answer 413 as well.
pub async fn refuse_large_bodies(
    State(state): State<AppState>,
    request: axum::extract::Request,
    next: Next,
) -> Response {
    let limit = body_limit(&state, request.method(), request.uri().path());
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if let Some(n) = declared.filter(|&n| n > limit as u64) {
        return ApiError::with_status(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the request body is {n} bytes; the limit here is {limit}"),
        )
        .into_response();
    }
    next.run(request).await
}

/// Every route, with the body limits.
pub fn routes(state: AppState) -> Router {
    let upload_limit = state.config.serve.max_upload_bytes;
    let body_limit = state.config.serve.max_body_bytes;
    Router::new()
        .route(
            "/v1/documents",
            post(post_document)
                .layer(DefaultBodyLimit::max(upload_limit))
                .get(list_documents),
        )
        .route(
            "/v1/documents/{id}",
            get(get_document).delete(delete_document),
        )
        .route("/v1/search", post(search))
        .route("/v1/context", post(context))
        .route(
            "/v1/conversations",
            post(create_conversation).get(list_conversations),
        )
        .route("/v1/conversations/{id}", get(get_conversation))
        .route(
            "/v1/conversations/{id}/messages",
            post(add_message).get(recent_messages),
        )
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/v1/sync/status", get(sync_status))
        .route("/v1/sync", post(sync_now))
        .route("/metrics", get(metrics))
        .route("/v1/stats", get(stats))
        .fallback(|| async {
            ApiError {
                status: StatusCode::NOT_FOUND,
                code: "not_found",
                message: "no such route; GET /openapi.json lists them".into(),
                param: None,
            }
        })
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state)
}
