//! The agent's metrics, served at `GET /metrics` in the Prometheus (OpenMetrics) text format.
//!
//! Counters and histograms are updated where the work happens; the gauges that describe the
//! database (documents, chunks, outbox depth, sync lag, queued work) are read when scraped.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use outpost_core::{EmbedError, Embedder};

/// Label: a search mode.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Mode {
    /// `hybrid`, `vector` or `text`.
    pub mode: String,
}

/// Label: what kind of error.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Kind {
    /// e.g. `bad_request`, `ingest_input`, `ingest`, `sync_offline`.
    pub kind: String,
}

/// Label: an HTTP route and the status answered.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Route {
    /// The route's pattern, e.g. `/v1/documents/{id}`.
    pub route: String,
    /// The status code.
    pub status: u16,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency() -> Histogram {
    // 0.1 ms .. ~6.5 s.
    Histogram::new(exponential_buckets(0.0001, 2.0, 17))
}

/// Every metric of the agent.
pub struct Metrics {
    registry: Registry,
    /// Documents added or updated.
    pub documents_ingested: Counter,
    /// Chunks embedded and stored.
    pub chunks_ingested: Counter,
    /// Seconds to ingest one file or text (extract, chunk, embed, store).
    pub ingest_seconds: Histogram,
    /// Seconds per call of the embedding model.
    pub embed_seconds: Histogram,
    /// Seconds per search, by mode.
    pub search_seconds: Histograms<Mode>,
    /// HTTP requests answered, by route and status.
    pub http_requests: Family<Route, Counter>,
    /// Errors, by kind.
    pub errors: Family<Kind, Counter>,
    /// Live documents.
    pub documents: Gauge,
    /// Chunks.
    pub chunks: Gauge,
    /// Changes waiting to be pushed to the central store.
    pub outbox_depth: Gauge,
    /// Age of the oldest unpushed change, in seconds.
    pub sync_lag_seconds: Gauge<f64, AtomicU64>,
    /// Files accepted and not yet indexed.
    pub work_queue_depth: Gauge,
    /// 1 when the last sync reached the central store, 0 when it did not or sync is off.
    pub central_up: Gauge,
}

impl Metrics {
    /// Registers everything.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("outpost");
        let m = Self {
            documents_ingested: Counter::default(),
            chunks_ingested: Counter::default(),
            ingest_seconds: latency(),
            embed_seconds: latency(),
            search_seconds: Family::new_with_constructor(latency),
            http_requests: Family::default(),
            errors: Family::default(),
            documents: Gauge::default(),
            chunks: Gauge::default(),
            outbox_depth: Gauge::default(),
            sync_lag_seconds: Gauge::default(),
            work_queue_depth: Gauge::default(),
            central_up: Gauge::default(),
            registry: Registry::default(),
        };
        let r = &mut registry;
        r.register(
            "documents_ingested",
            "Documents added or updated",
            m.documents_ingested.clone(),
        );
        r.register(
            "chunks_ingested",
            "Chunks embedded and stored",
            m.chunks_ingested.clone(),
        );
        r.register(
            "ingest_seconds",
            "Seconds to ingest one file or text",
            m.ingest_seconds.clone(),
        );
        r.register(
            "embed_seconds",
            "Seconds per call of the embedding model",
            m.embed_seconds.clone(),
        );
        r.register(
            "search_seconds",
            "Seconds per search, by mode",
            m.search_seconds.clone(),
        );
        r.register(
            "http_requests",
            "HTTP requests answered, by route and status",
            m.http_requests.clone(),
        );
        r.register("errors", "Errors, by kind", m.errors.clone());
        r.register("documents", "Live documents", m.documents.clone());
        r.register("chunks", "Chunks", m.chunks.clone());
        r.register(
            "outbox_depth",
            "Changes waiting to be pushed to the central store",
            m.outbox_depth.clone(),
        );
        r.register(
            "sync_lag_seconds",
            "Age of the oldest unpushed change",
            m.sync_lag_seconds.clone(),
        );
        r.register(
            "work_queue_depth",
            "Files accepted and not yet indexed",
            m.work_queue_depth.clone(),
        );
        r.register(
            "central_up",
            "1 when the last sync reached the central store",
            m.central_up.clone(),
        );
        Self { registry, ..m }
    }

    /// Counts an error of `kind`.
    pub fn error(&self, kind: &str) {
        self.errors
            .get_or_create(&Kind {
                kind: kind.to_string(),
            })
            .inc();
    }

    /// The text exposition.
    ///
    /// # Errors
    /// Formatting failures.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// An embedder that times every call into [`Metrics::embed_seconds`].
pub struct Timed {
    inner: Arc<dyn Embedder>,
    metrics: Arc<Metrics>,
}

impl Timed {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Embedder>, metrics: Arc<Metrics>) -> Self {
        Self { inner, metrics }
    }
}

impl Embedder for Timed {
    fn model_id(&self) -> &str {
        self.inner.model_id()
    }
    fn dims(&self) -> usize {
        self.inner.dims()
    }
    fn max_tokens(&self) -> usize {
        self.inner.max_tokens()
    }
    fn tokenizer(&self) -> std::result::Result<&tokenizers::Tokenizer, EmbedError> {
        self.inner.tokenizer()
    }
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let started = Instant::now();
        let out = self.inner.embed(texts);
        self.metrics
            .embed_seconds
            .observe(started.elapsed().as_secs_f64());
        out
    }
}
