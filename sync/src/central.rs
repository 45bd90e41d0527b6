//! The central store as the reconciler sees it: the SQL functions of `docs/SYNC.md`, reached
//! through any [`Transport`], and the parsing of their answers (which never trusts the server).
//!
//! Embeddings travel in one of two forms ([`VectorFormat`]): JSON arrays of numbers, which every
//! central schema takes and gives, or base64 of their big-endian float32 bytes, which schema
//! version 2 offers (`outpost_info().vector_formats`) at well under half the bytes. A `Central`
//! uses the smallest form the server offers, learnt from `outpost_info()` (by [`Central::check`],
//! or before its first push or pull), so a device keeps working against a server that has not
//! been migrated yet. Either form carries the exact float32 bits.

use std::collections::BTreeMap;
use std::io;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Mutex;

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use outpost_core::{Change, ChunkChange, DocumentChange};

use crate::error::{Error, Result};
#[cfg(feature = "postgres")]
use crate::pg::PgTransport;
use crate::rest::RestTransport;
use crate::transport::Transport;

/// The central schema version this build speaks.
pub const SCHEMA_VERSION: i64 = 1;

/// What `outpost_info()` says.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct CentralInfo {
    /// Central schema version.
    pub schema_version: i64,
    /// Dimension of the chunk embedding column.
    pub embedding_dims: usize,
    /// The migration that installed it.
    #[serde(default)]
    pub migration: String,
    /// The forms of embeddings `outpost_push` takes and `outpost_pull` gives (`"json"`,
    /// `"base64"`); absent before schema version 2, whose functions know only `"json"`.
    #[serde(default)]
    pub vector_formats: Vec<String>,
    /// Whether `outpost_stage` / `outpost_push_staged` exist (schema version 3): a document too
    /// large for one call goes in parts, committed at once.
    #[serde(default)]
    pub staged_push: bool,
}

impl CentralInfo {
    /// The smallest form of embeddings this server takes and gives.
    pub fn best_vector_format(&self) -> VectorFormat {
        if self.vector_formats.iter().any(|f| f == "base64") {
            VectorFormat::Base64
        } else {
            VectorFormat::Json
        }
    }
}

/// How embeddings travel in `outpost_push` and `outpost_pull` (see `docs/SYNC.md`, "Vectors on
/// the wire").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum VectorFormat {
    /// `"embedding": [0.1, ...]`, JSON numbers: every central schema takes and gives it.
    Json,
    /// `"embedding_b64": "..."`, base64 of the float32 values in big-endian byte order
    /// (pgvector's binary form without its header): schema version 2 and later.
    Base64,
}

impl VectorFormat {
    /// The name `outpost_info()` and `outpost_pull(vector_format)` use.
    pub fn as_str(self) -> &'static str {
        match self {
            VectorFormat::Json => "json",
            VectorFormat::Base64 => "base64",
        }
    }

    fn code(self) -> u8 {
        match self {
            VectorFormat::Json => 1,
            VectorFormat::Base64 => 2,
        }
    }

    fn from_code(code: u8) -> Option<Self> {
        match code {
            1 => Some(VectorFormat::Json),
            2 => Some(VectorFormat::Base64),
            _ => None,
        }
    }
}

impl std::fmt::Display for VectorFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Base64 (standard alphabet, padded) of `v`'s float32 values in big-endian byte order.
pub fn encode_vector(v: &[f32]) -> String {
    let mut bytes = Vec::with_capacity(v.len() * 4);
    for x in v {
        bytes.extend_from_slice(&x.to_be_bytes());
    }
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The float32 values of [`encode_vector`]'s form, bit for bit.
///
/// # Errors
/// A description of what is wrong: not base64, or not a whole number of float32 values.
pub fn decode_vector(b64: &str) -> std::result::Result<Vec<f32>, String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|e| format!("embedding_b64 is not base64: {e}"))?;
    if bytes.len() % 4 != 0 {
        return Err(format!(
            "embedding_b64 holds {} bytes, not a whole number of float32 values",
            bytes.len()
        ));
    }
    Ok(bytes
        .chunks_exact(4)
        .map(|b| f32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        .collect())
}

/// Bytes of JSON one kind of call moved (see [`Central::measure_wire`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct WireBytes {
    /// Calls that were answered.
    pub calls: u64,
    /// Bytes of the arguments, as compact JSON.
    pub sent: u64,
    /// Bytes of the answers, as compact JSON.
    pub received: u64,
}

/// Counts the bytes written to it.
struct ByteCount(u64);

impl io::Write for ByteCount {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The length of `v` as compact JSON.
fn json_len(v: &Value) -> u64 {
    let mut count = ByteCount(0);
    // Writing a `Value` to a sink that never fails cannot fail.
    let _ = serde_json::to_writer(&mut count, v);
    count.0
}

/// The server's verdict on one pushed record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Stored.
    Applied,
    /// Already stored with the same stamp (a replay).
    Duplicate,
    /// The server has a newer version; it will come back with the next pull.
    Stale,
}

/// One entry of `outpost_push`'s answer.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct PushOutcome {
    /// Entity kind.
    pub kind: String,
    /// Entity id.
    pub id: String,
    /// Verdict.
    pub outcome: Outcome,
}

/// One page of `outpost_pull`.
#[derive(Debug, Clone)]
pub struct PullPage {
    /// Records, oldest first.
    pub changes: Vec<Change>,
    /// Where the next pull starts.
    pub next_cursor: String,
    /// Whether more is waiting.
    pub more: bool,
}

/// A central store, reached by one [`Transport`].
#[derive(Debug)]
pub struct Central {
    transport: Box<dyn Transport>,
    /// A form of embeddings imposed by the caller instead of the server's best.
    forced: Option<VectorFormat>,
    /// The server's best form ([`VectorFormat::code`]) once `outpost_info()` said it; 0 before.
    learnt: AtomicU8,
    /// Whether the server takes staged pushes, once `outpost_info()` said: 0 before, 1 no, 2 yes.
    staged: AtomicU8,
    /// Bytes moved per function, when counting ([`Central::measure_wire`]).
    wire: Option<Mutex<BTreeMap<String, WireBytes>>>,
}

impl<T: Transport + 'static> From<T> for Central {
    fn from(transport: T) -> Self {
        Self::new(transport)
    }
}

impl Central {
    /// The central store behind `transport`.
    pub fn new(transport: impl Transport + 'static) -> Self {
        Self {
            transport: Box::new(transport),
            forced: None,
            learnt: AtomicU8::new(0),
            staged: AtomicU8::new(0),
            wire: None,
        }
    }

    /// Sends and asks for embeddings in `format` whatever the server offers (tests, benchmarks,
    /// and a way to behave as a client older than schema version 2).
    #[must_use]
    pub fn with_vector_format(mut self, format: VectorFormat) -> Self {
        self.forced = Some(format);
        self
    }

    /// Counts the bytes of every call's arguments and answer, as compact JSON (what a JSON
    /// serializer writes; Postgres's own text of a `jsonb` adds a space after each `,` and `:`),
    /// per function: see [`Central::wire_bytes`]. Costs a serialization of each.
    #[must_use]
    pub fn measure_wire(mut self) -> Self {
        self.wire = Some(Mutex::new(BTreeMap::new()));
        self
    }

    /// Bytes moved so far by calls of `function` (`"outpost_push"`, `"outpost_pull"`, ...);
    /// zero unless [`Central::measure_wire`] was asked for.
    pub fn wire_bytes(&self, function: &str) -> WireBytes {
        self.wire
            .as_ref()
            .and_then(|w| w.lock().ok()?.get(function).copied())
            .unwrap_or_default()
    }

    /// The form of embeddings pushes and pulls use: the caller's, or the best the server
    /// offered, asking `outpost_info()` if nobody has yet. A server that cannot say (an error,
    /// a schema before version 2) gets JSON, which every version takes.
    pub async fn vector_format(&self) -> VectorFormat {
        if let Some(forced) = self.forced {
            return forced;
        }
        if let Some(learnt) = VectorFormat::from_code(self.learnt.load(Ordering::Relaxed)) {
            return learnt;
        }
        match self.info().await {
            Ok(info) => info.best_vector_format(),
            Err(e) => {
                tracing::debug!(endpoint = self.endpoint(), error = %e, "outpost_info failed; embeddings go as JSON");
                VectorFormat::Json
            }
        }
    }

    /// Whether the server takes a document in staged parts (`outpost_stage`,
    /// `outpost_push_staged`; schema version 3), asking `outpost_info()` if nobody has yet. A
    /// server that cannot say is taken not to.
    pub async fn staged_push(&self) -> bool {
        match self.staged.load(Ordering::Relaxed) {
            0 => self.info().await.is_ok_and(|info| info.staged_push),
            known => known == 2,
        }
    }

    /// Whether `outpost_info()` said the server speaks schema version 2 (base64 vectors,
    /// byte-capped pull pages); [`Central::vector_format`] asks it first.
    fn learnt_v2(&self) -> bool {
        VectorFormat::from_code(self.learnt.load(Ordering::Relaxed)) == Some(VectorFormat::Base64)
    }

    /// Direct Postgres (trusted gateways, bulk loads). Same as [`Central::new`]; the name is
    /// kept from when `Central` was an enum of the two transports, for the callers that still
    /// construct it this way.
    #[cfg(feature = "postgres")]
    #[allow(non_snake_case)]
    pub fn Postgres(transport: PgTransport) -> Self {
        Self::new(transport)
    }

    /// The Supabase REST API (phones, untrusted devices). Same as [`Central::new`]; the name is
    /// kept from when `Central` was an enum of the two transports, for the callers that still
    /// construct it this way.
    #[allow(non_snake_case)]
    pub fn Rest(transport: RestTransport) -> Self {
        Self::new(transport)
    }

    /// A printable name of the endpoint, without secrets; also keys the pull cursor.
    pub fn endpoint(&self) -> &str {
        self.transport.endpoint()
    }

    /// The endpoint and the user: what a pull cursor belongs to.
    pub fn identity(&self) -> String {
        format!("{}#{}", self.endpoint(), self.transport.user_id())
    }

    async fn call(&self, function: &str, args: Value) -> Result<Value> {
        let Some(wire) = &self.wire else {
            return self.transport.call(function, args).await;
        };
        let sent = json_len(&args);
        let answer = self.transport.call(function, args).await?;
        let received = json_len(&answer);
        if let Ok(mut wire) = wire.lock() {
            let entry = wire.entry(function.to_string()).or_default();
            entry.calls += 1;
            entry.sent += sent;
            entry.received += received;
        }
        Ok(answer)
    }

    fn bad(&self, what: &str, detail: impl std::fmt::Display) -> Error {
        Error::BadResponse {
            endpoint: self.endpoint().to_string(),
            what: what.to_string(),
            detail: detail.to_string(),
        }
    }

    /// Reads `outpost_info()` and checks it against this build and the local model's dimension.
    ///
    /// # Errors
    /// [`Error::SchemaMissing`], [`Error::SchemaOutdated`], [`Error::DimensionMismatch`], or the
    /// transport's errors.
    pub async fn check(&self, model: &str, dims: usize) -> Result<CentralInfo> {
        let info = self.info().await?;
        if info.schema_version < SCHEMA_VERSION {
            return Err(Error::SchemaOutdated {
                endpoint: self.endpoint().to_string(),
                found: info.schema_version,
                needed: SCHEMA_VERSION,
            });
        }
        if info.embedding_dims != dims {
            return Err(Error::DimensionMismatch {
                endpoint: self.endpoint().to_string(),
                central: info.embedding_dims,
                local: dims,
                model: model.to_string(),
            });
        }
        Ok(info)
    }

    /// `outpost_info()`.
    ///
    /// # Errors
    /// [`Error::SchemaMissing`] when the function does not exist; transport errors.
    pub async fn info(&self) -> Result<CentralInfo> {
        let v = self.call("outpost_info", serde_json::json!({})).await?;
        let info: CentralInfo =
            serde_json::from_value(v).map_err(|e| self.bad("outpost_info", e))?;
        let best = info.best_vector_format();
        self.staged
            .store(if info.staged_push { 2 } else { 1 }, Ordering::Relaxed);
        if self.learnt.swap(best.code(), Ordering::Relaxed) != best.code() && self.forced.is_none()
        {
            tracing::debug!(
                endpoint = self.endpoint(),
                format = %best,
                "embeddings travel as {best}"
            );
        }
        Ok(info)
    }

    /// The bytes `change` takes in a push call, in the form this server is sent (JSON numbers
    /// or base64 vectors): what the push's byte cap counts.
    pub async fn push_size(&self, change: &Change) -> usize {
        encode_changes(std::slice::from_ref(change), self.vector_format().await)
            .ok()
            .and_then(|v| serde_json::to_vec(&v).ok())
            .map_or(0, |v| v.len())
    }

    /// The bytes `chunk` takes in an `outpost_stage` call, in the form this server is sent.
    pub async fn chunk_size(&self, chunk: &ChunkChange) -> usize {
        encode_chunk(chunk, self.vector_format().await)
            .ok()
            .map_or(0, |v| json_len(&v) as usize)
    }

    /// `outpost_push(changes)`: one outcome per record, in order.
    ///
    /// # Errors
    /// Transport errors; [`Error::BadResponse`] if the answer does not match the batch.
    pub async fn push(&self, changes: &[Change]) -> Result<Vec<PushOutcome>> {
        let changes_json = if changes.is_empty() {
            Value::Array(Vec::new())
        } else {
            encode_changes(changes, self.vector_format().await)
                .map_err(|e| Error::Config(format!("change records as JSON: {e}")))?
        };
        let v = self
            .call(
                "outpost_push",
                serde_json::json!({ "changes": changes_json }),
            )
            .await?;
        let outcomes: Vec<PushOutcome> =
            serde_json::from_value(v).map_err(|e| self.bad("outpost_push", e))?;
        if outcomes.len() != changes.len()
            || outcomes.iter().zip(changes).any(|(o, c)| o.id != c.id())
        {
            return Err(self.bad(
                "outpost_push",
                format!(
                    "{} outcomes for {} records, or not in the order sent",
                    outcomes.len(),
                    changes.len()
                ),
            ));
        }
        Ok(outcomes)
    }

    /// `outpost_stage(upload, first, chunks)`: stages `chunks` as indexes `first`, `first + 1`,
    /// ... of `upload` (see [`Central::push_staged`]); answers how many chunks the upload now
    /// holds. Staging a part again replaces it.
    ///
    /// # Errors
    /// Transport errors; [`Error::BadResponse`] for an answer without `held`.
    pub async fn stage(&self, upload: &str, first: usize, chunks: &[ChunkChange]) -> Result<usize> {
        let format = self.vector_format().await;
        let chunks = chunks
            .iter()
            .map(|c| encode_chunk(c, format))
            .collect::<serde_json::Result<Vec<Value>>>()
            .map_err(|e| Error::Config(format!("chunk records as JSON: {e}")))?;
        let v = self
            .call(
                "outpost_stage",
                serde_json::json!({ "upload": upload, "first": first, "chunks": chunks }),
            )
            .await?;
        v.get("held")
            .and_then(Value::as_u64)
            .map(|n| n as usize)
            .ok_or_else(|| self.bad("outpost_stage", format!("no 'held' count in {v}")))
    }

    /// `outpost_push_staged(upload, document, chunk_count)`: pushes `document` with the
    /// `chunk_count` chunks staged under `upload` (its own `chunks` are not sent), in one
    /// server transaction, so no reader sees part of it. The server refuses (nothing written)
    /// when a staged chunk is missing.
    ///
    /// # Errors
    /// Transport errors; [`Error::BadResponse`] if the answer is not one outcome for it.
    pub async fn push_staged(
        &self,
        upload: &str,
        document: &DocumentChange,
        chunk_count: usize,
    ) -> Result<PushOutcome> {
        // The record without its chunks (not cloned: there may be thousands).
        let head = DocumentChange {
            id: document.id.clone(),
            hlc: document.hlc,
            device: document.device.clone(),
            deleted: document.deleted,
            collection: document.collection.clone(),
            home_device: document.home_device.clone(),
            source: document.source.clone(),
            title: document.title.clone(),
            content_hash: document.content_hash.clone(),
            metadata: document.metadata.clone(),
            created_at: document.created_at,
            updated_at: document.updated_at,
            chunks: Vec::new(),
        };
        let mut record = serde_json::to_value(Change::Document(head))
            .map_err(|e| Error::Config(format!("document record as JSON: {e}")))?;
        if let Value::Object(fields) = &mut record {
            fields.remove("chunks");
        }
        let v = self
            .call(
                "outpost_push_staged",
                serde_json::json!({ "upload": upload, "document": record, "chunk_count": chunk_count }),
            )
            .await?;
        let mut outcomes: Vec<PushOutcome> =
            serde_json::from_value(v).map_err(|e| self.bad("outpost_push_staged", e))?;
        match (outcomes.pop(), outcomes.is_empty()) {
            (Some(o), true) if o.id == document.id => Ok(o),
            _ => Err(self.bad(
                "outpost_push_staged",
                format!("expected one outcome for document {}", document.id),
            )),
        }
    }

    /// `outpost_pull(cursor, max_rows, exclude_device[, vector_format, max_bytes])`: a page of at
    /// most `max_rows` records and, from schema version 2, at most `max_bytes` of them (always
    /// at least one record).
    ///
    /// # Errors
    /// Transport errors; [`Error::BadResponse`] for a page that does not parse (a record that
    /// is not a valid change, a missing cursor).
    pub async fn pull(
        &self,
        cursor: &str,
        max_rows: usize,
        max_bytes: Option<usize>,
        exclude_device: &str,
    ) -> Result<PullPage> {
        let mut args = serde_json::json!({ "cursor": cursor, "max_rows": max_rows, "exclude_device": exclude_device });
        // Only when it is not the default, which is all a server before version 2 knows.
        if self.vector_format().await == VectorFormat::Base64 {
            args["vector_format"] = Value::from(VectorFormat::Base64.as_str());
        }
        if let Some(max) = max_bytes.filter(|_| self.learnt_v2()) {
            args["max_bytes"] = Value::from(max.min(i32::MAX as usize));
        }
        let v = self.call("outpost_pull", args).await?;
        #[derive(Deserialize)]
        struct Raw {
            changes: Vec<Value>,
            next_cursor: String,
            more: bool,
        }
        let raw: Raw = serde_json::from_value(v).map_err(|e| self.bad("outpost_pull", e))?;
        let changes = raw
            .changes
            .into_iter()
            .enumerate()
            .map(|(i, c)| {
                let id = c
                    .get("id")
                    .and_then(Value::as_str)
                    .unwrap_or("?")
                    .to_string();
                decode_change(c)
                    .map_err(|e| self.bad("outpost_pull", format!("record {i} (id {id}): {e}")))
            })
            .collect::<Result<Vec<_>>>()?;
        if raw.next_cursor.split_once(':').is_none() {
            return Err(self.bad(
                "outpost_pull",
                format!("next_cursor '{}' is not '<xid>:<seq>'", raw.next_cursor),
            ));
        }
        Ok(PullPage {
            changes,
            next_cursor: raw.next_cursor,
            more: raw.more,
        })
    }

    /// `outpost_checksums()`.
    ///
    /// # Errors
    /// Transport errors; [`Error::BadResponse`] if it is not a JSON object.
    pub async fn checksums(&self) -> Result<Map<String, Value>> {
        match self
            .call("outpost_checksums", serde_json::json!({}))
            .await?
        {
            Value::Object(m) => Ok(m),
            other => Err(self.bad(
                "outpost_checksums",
                format!("expected an object, got {other}"),
            )),
        }
    }
}

/// `changes` as `outpost_push` takes them, embeddings in `format`.
fn encode_changes(changes: &[Change], format: VectorFormat) -> serde_json::Result<Value> {
    if format == VectorFormat::Json {
        return serde_json::to_value(changes);
    }
    let mut records = Vec::with_capacity(changes.len());
    for change in changes {
        let mut record = serde_json::to_value(change)?;
        match change {
            Change::Document(d) => {
                if let Value::Object(fields) = &mut record {
                    let chunks = d
                        .chunks
                        .iter()
                        .map(|c| encode_chunk(c, format))
                        .collect::<serde_json::Result<Vec<Value>>>()?;
                    fields.insert("chunks".into(), Value::Array(chunks));
                }
            }
            Change::Message(m) => {
                if let Value::Object(fields) = &mut record {
                    fields.remove("embedding");
                    fields.insert(
                        "embedding_b64".into(),
                        m.embedding
                            .as_deref()
                            .map_or(Value::Null, |v| Value::String(encode_vector(v))),
                    );
                }
            }
            Change::Conversation(_) => {}
        }
        records.push(record);
    }
    Ok(Value::Array(records))
}

/// `chunk` as `outpost_push` and `outpost_stage` take it, its embedding in `format`.
fn encode_chunk(chunk: &ChunkChange, format: VectorFormat) -> serde_json::Result<Value> {
    let mut json = serde_json::to_value(chunk)?;
    if format == VectorFormat::Base64 {
        if let Value::Object(fields) = &mut json {
            fields.remove("embedding");
            fields.insert(
                "embedding_b64".into(),
                Value::String(encode_vector(&chunk.embedding)),
            );
        }
    }
    Ok(json)
}

/// Takes `embedding_b64` out of `fields` (a chunk or a message) and decodes it, leaving an empty
/// `embedding` (or `null`) in its place for the record to parse; `None` when it has none.
fn take_b64(fields: &mut Map<String, Value>) -> std::result::Result<Option<Vec<f32>>, String> {
    match fields.remove("embedding_b64") {
        None => Ok(None),
        Some(Value::Null) => {
            fields.insert("embedding".into(), Value::Null);
            Ok(None)
        }
        Some(Value::String(b64)) => {
            fields.insert("embedding".into(), Value::Array(Vec::new()));
            decode_vector(&b64).map(Some)
        }
        Some(other) => Err(format!("embedding_b64 is not a string: {other}")),
    }
}

/// One record of `outpost_pull`'s answer, embeddings in either form.
fn decode_change(mut record: Value) -> std::result::Result<Change, String> {
    let mut vectors: Vec<(usize, Vec<f32>)> = Vec::new();
    if let Value::Object(fields) = &mut record {
        for (i, chunk) in fields
            .get_mut("chunks")
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
            .enumerate()
        {
            if let Value::Object(chunk) = chunk {
                let id = chunk.get("id").and_then(Value::as_str).unwrap_or("?");
                let id = id.to_string();
                if let Some(v) = take_b64(chunk).map_err(|e| format!("chunk {id}: {e}"))? {
                    vectors.push((i, v));
                }
            }
        }
        if fields.get("kind").and_then(Value::as_str) == Some("message") {
            if let Some(v) = take_b64(fields)? {
                vectors.push((0, v));
            }
        }
    }
    let mut change: Change = serde_json::from_value(record).map_err(|e| e.to_string())?;
    for (i, v) in vectors {
        match &mut change {
            Change::Document(d) => {
                if let Some(chunk) = d.chunks.get_mut(i) {
                    chunk.embedding = v;
                }
            }
            Change::Message(m) => m.embedding = Some(v),
            Change::Conversation(_) => {}
        }
    }
    Ok(change)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::BoxFuture;

    /// Answers every call with the same JSON, as a server might.
    #[derive(Debug)]
    struct Canned(Value);

    impl Transport for Canned {
        fn endpoint(&self) -> &str {
            "canned://central"
        }

        fn user_id(&self) -> &str {
            "0190f0f0-0000-7000-8000-000000000001"
        }

        fn call<'a>(&'a self, _function: &'a str, _args: Value) -> BoxFuture<'a, Result<Value>> {
            let answer = self.0.clone();
            Box::pin(async move { Ok(answer) })
        }
    }

    fn bad_response(e: Error) -> String {
        match e {
            Error::BadResponse { what, .. } => what,
            other => panic!("expected a BadResponse, got {other}"),
        }
    }

    #[test]
    fn the_identity_is_the_endpoint_and_the_user() {
        let central = Central::from(Canned(Value::Null));
        assert_eq!(
            central.identity(),
            "canned://central#0190f0f0-0000-7000-8000-000000000001"
        );
    }

    #[tokio::test]
    async fn answers_that_do_not_fit_the_protocol_are_refused() {
        let outcomes = serde_json::json!([{ "kind": "doc", "id": "x", "outcome": "applied" }]);
        let e = Central::new(Canned(outcomes)).push(&[]).await;
        assert_eq!(
            bad_response(e.expect_err("one outcome for no record")),
            "outpost_push"
        );

        let page = serde_json::json!({ "changes": [], "next_cursor": "nocolon", "more": false });
        let e = Central::new(Canned(page))
            .pull("0:0", 10, None, "dev")
            .await;
        assert_eq!(
            bad_response(e.expect_err("a cursor without ':'")),
            "outpost_pull"
        );

        let e = Central::new(Canned(serde_json::json!([1])))
            .checksums()
            .await;
        assert_eq!(
            bad_response(e.expect_err("not an object")),
            "outpost_checksums"
        );

        let info = serde_json::json!({ "schema_version": SCHEMA_VERSION, "embedding_dims": 384 });
        let central = Central::new(Canned(info));
        assert!(matches!(
            central.check("m", 768).await,
            Err(Error::DimensionMismatch {
                central: 384,
                local: 768,
                ..
            })
        ));
        assert_eq!(
            central.check("m", 384).await.map(|i| i.embedding_dims).ok(),
            Some(384)
        );
    }

    /// Answers by function name and keeps every call's arguments.
    #[derive(Debug)]
    struct Scripted {
        info: Value,
        page: Value,
        calls: Mutex<Vec<(String, Value)>>,
    }

    impl Scripted {
        fn new(info: Value, page: Value) -> Self {
            Self {
                info,
                page,
                calls: Mutex::new(Vec::new()),
            }
        }
    }

    impl Transport for std::sync::Arc<Scripted> {
        fn endpoint(&self) -> &str {
            "scripted://central"
        }

        fn user_id(&self) -> &str {
            ""
        }

        fn call<'a>(&'a self, function: &'a str, args: Value) -> BoxFuture<'a, Result<Value>> {
            let answer = match function {
                "outpost_info" => self.info.clone(),
                "outpost_pull" => self.page.clone(),
                // One `applied` per pushed record.
                _ => Value::Array(
                    args["changes"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|c| {
                            serde_json::json!({ "kind": c["kind"], "id": c["id"], "outcome": "applied" })
                        })
                        .collect(),
                ),
            };
            if let Ok(mut calls) = self.calls.lock() {
                calls.push((function.to_string(), args));
            }
            Box::pin(async move { Ok(answer) })
        }
    }

    type TestResult = std::result::Result<(), Box<dyn std::error::Error>>;

    /// Float32 values a vector may hold, the awkward ones included, and a spread of others.
    fn awkward_floats() -> Vec<f32> {
        let mut v = vec![
            0.0,
            -0.0,
            1.0,
            -1.0,
            0.1,
            f32::MIN_POSITIVE,
            -f32::MIN_POSITIVE,
            f32::from_bits(1),
            -f32::from_bits(1),
            f32::from_bits(0x007f_ffff),
            f32::MAX,
            f32::MIN,
            f32::EPSILON,
        ];
        // Every exponent, with a changing mantissa.
        let mut x: u32 = 0x9e37_79b9;
        while v.len() < 384 {
            x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            let bits = x & !(0xff << 23) | ((v.len() as u32 % 255) << 23);
            v.push(f32::from_bits(bits));
        }
        v
    }

    fn document(vector: Vec<f32>) -> Change {
        let chunk = |ordinal: i64, embedding: Vec<f32>| outpost_core::replica::ChunkChange {
            id: format!("0190f0f0-0000-7000-8000-00000000000{ordinal}"),
            ordinal,
            text: format!("chunk {ordinal}"),
            token_count: 2,
            byte_start: 0,
            byte_end: 7,
            metadata: Map::new(),
            model: "m".into(),
            embedding,
        };
        let mut reversed = vector.clone();
        reversed.reverse();
        Change::Document(outpost_core::replica::DocumentChange {
            id: "0190f0f0-0000-7000-8000-0000000000d0".into(),
            hlc: 7,
            device: "dev".into(),
            deleted: false,
            collection: "default".into(),
            home_device: "dev".into(),
            source: "a.md".into(),
            title: "A".into(),
            content_hash: "h".into(),
            metadata: Map::new(),
            created_at: 1,
            updated_at: 2,
            chunks: vec![chunk(0, vector), chunk(1, reversed)],
        })
    }

    fn message(embedding: Option<Vec<f32>>) -> Change {
        Change::Message(outpost_core::replica::MessageChange {
            id: "0190f0f0-0000-7000-8000-0000000000e0".into(),
            hlc: 8,
            device: "dev".into(),
            deleted: false,
            conversation_id: "0190f0f0-0000-7000-8000-0000000000c0".into(),
            seq: 1,
            role: "user".into(),
            content: "hi".into(),
            model: embedding.as_ref().map(|_| "m".to_string()),
            embedding,
            created_at: 1,
            updated_at: 2,
        })
    }

    fn bits(change: &Change) -> Vec<Vec<u32>> {
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        match change {
            Change::Document(d) => d.chunks.iter().map(|c| bits(&c.embedding)).collect(),
            Change::Message(m) => m.embedding.iter().map(|v| bits(v)).collect(),
            Change::Conversation(_) => Vec::new(),
        }
    }

    #[test]
    fn vectors_round_trip_through_base64_bit_for_bit() -> TestResult {
        let v = awkward_floats();
        let back = decode_vector(&encode_vector(&v))?;
        assert_eq!(
            back.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
            v.iter().map(|x| x.to_bits()).collect::<Vec<_>>()
        );
        assert_eq!(encode_vector(&v).len(), 2048, "384 floats, 1536 bytes");
        // The bytes pgvector's vector_send gives for [1, -1], after its 4-byte header.
        assert_eq!(encode_vector(&[1.0, -1.0]), "P4AAAL+AAAA=");
        // A NaN keeps its payload (the device refuses it when applying, not here).
        let nan = f32::from_bits(0x7fc0_1234);
        assert_eq!(
            decode_vector(&encode_vector(&[nan]))?[0].to_bits(),
            0x7fc0_1234
        );
        assert_eq!(decode_vector("")?, Vec::<f32>::new());
        Ok(())
    }

    #[test]
    fn malformed_base64_vectors_are_refused() {
        let not_base64 = decode_vector("P4AAAL+AAAA*").expect_err("not base64");
        assert!(not_base64.contains("not base64"), "{not_base64}");
        let partial = decode_vector("P4AAAL8=").expect_err("5 bytes");
        assert!(partial.contains("5 bytes"), "{partial}");
    }

    #[test]
    fn records_round_trip_in_either_form() -> TestResult {
        let changes = vec![
            document(awkward_floats()),
            message(Some(awkward_floats()[..7].to_vec())),
            message(None),
        ];
        let json = encode_changes(&changes, VectorFormat::Json)?;
        assert_eq!(
            json,
            serde_json::to_value(&changes)?,
            "JSON is version 1's form"
        );
        let b64 = encode_changes(&changes, VectorFormat::Base64)?;
        let chunk = &b64[0]["chunks"][1];
        assert!(chunk.get("embedding").is_none(), "{chunk}");
        assert_eq!(chunk["embedding_b64"].as_str().map(str::len), Some(2048));
        assert_eq!(b64[1]["embedding_b64"].as_str().map(str::len), Some(40));
        assert_eq!(b64[2]["embedding_b64"], Value::Null);
        assert!(b64[2].get("embedding").is_none());
        // Whatever the server's version, the answer parses to the records sent.
        for form in [json, b64] {
            let back = form
                .as_array()
                .into_iter()
                .flatten()
                .map(|r| decode_change(r.clone()))
                .collect::<std::result::Result<Vec<_>, _>>()?;
            assert_eq!(
                back.iter().map(bits).collect::<Vec<_>>(),
                changes.iter().map(bits).collect::<Vec<_>>()
            );
            assert_eq!(back.len(), changes.len());
        }
        // A pulled record names what was wrong with its vector.
        let mut bad = encode_changes(&changes[..1], VectorFormat::Base64)?[0].clone();
        bad["chunks"][1]["embedding_b64"] = Value::from("AAA=");
        let e = decode_change(bad).expect_err("2 bytes");
        assert!(
            e.contains("chunk 0190f0f0-0000-7000-8000-000000000001"),
            "{e}"
        );
        Ok(())
    }

    #[tokio::test]
    async fn the_form_is_what_the_server_offers_unless_imposed() -> TestResult {
        let v1 = serde_json::json!({ "schema_version": 1, "embedding_dims": 384 });
        let v2 = serde_json::json!({ "schema_version": 2, "embedding_dims": 384,
                                     "vector_formats": ["json", "base64"] });
        let doc = document(awkward_floats());
        let b64 = encode_changes(std::slice::from_ref(&doc), VectorFormat::Base64)?;
        let page = serde_json::json!({ "changes": b64, "next_cursor": "1:1", "more": false });
        for (info, forced, expected) in [
            (v1.clone(), None, VectorFormat::Json),
            (v2.clone(), None, VectorFormat::Base64),
            (v2.clone(), Some(VectorFormat::Json), VectorFormat::Json),
            (v1.clone(), Some(VectorFormat::Base64), VectorFormat::Base64),
        ] {
            let server = std::sync::Arc::new(Scripted::new(info, page.clone()));
            let mut central = Central::new(server.clone()).measure_wire();
            if let Some(f) = forced {
                central = central.with_vector_format(f);
            }
            // Learnt before the first push, once.
            central.push(std::slice::from_ref(&doc)).await?;
            let pulled = central.pull("", 10, None, "dev").await?;
            assert_eq!(
                pulled.changes.iter().map(bits).collect::<Vec<_>>(),
                vec![bits(&doc)]
            );
            assert_eq!(central.vector_format().await, expected);

            let calls = server.calls.lock().map_err(|e| e.to_string())?.clone();
            let names: Vec<&str> = calls.iter().map(|(f, _)| f.as_str()).collect();
            let expected_names = if forced.is_some() {
                vec!["outpost_push", "outpost_pull"]
            } else {
                vec!["outpost_info", "outpost_push", "outpost_pull"]
            };
            assert_eq!(names, expected_names);
            let push = &calls[calls.len() - 2].1;
            let pull = &calls[calls.len() - 1].1;
            let chunk = &push["changes"][0]["chunks"][0];
            match expected {
                VectorFormat::Json => {
                    assert_eq!(
                        push,
                        &serde_json::json!({ "changes": [doc] }),
                        "version 1's call"
                    );
                    assert_eq!(
                        pull,
                        &serde_json::json!({ "cursor": "", "max_rows": 10, "exclude_device": "dev" }),
                        "version 1's call"
                    );
                }
                VectorFormat::Base64 => {
                    assert!(chunk["embedding_b64"].is_string() && chunk.get("embedding").is_none());
                    assert_eq!(pull["vector_format"], "base64");
                }
            }
            let pushed = central.wire_bytes("outpost_push");
            assert_eq!(pushed.calls, 1);
            assert_eq!(pushed.sent, json_len(push));
            assert_eq!(central.wire_bytes("outpost_pull").received, json_len(&page));
        }
        Ok(())
    }
}
