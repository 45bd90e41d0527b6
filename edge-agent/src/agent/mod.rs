//! `outpost serve`: the long-running agent of an edge box. It serves the HTTP API on loopback
//! (or, with a token, beyond), keeps watched folders indexed through a durable work queue, and
//! syncs with the central store in the background whenever the network allows.
//!
//! Tasks: the HTTP server; the watcher thread (notify) feeding the queue; the indexing worker;
//! the sync task on its own database connection. On SIGTERM or Ctrl-C the server stops
//! accepting, the worker finishes the file in hand (or leaves it queued) and the process exits
//! within five seconds; queued work is picked up on the next start.

pub mod api;
pub mod config;
pub mod llm;
pub mod metrics;
pub mod openai;
pub mod pool;
pub mod state;
pub mod syncer;
pub mod watch;
pub mod web;
pub mod worker;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::{watch as signal_watch, Notify};

use outpost_core::Embedder;

use crate::output::outln;

use config::Config;
use metrics::{Metrics, Route};
use pool::Engines;
use state::AppState;
use syncer::SyncHandle;

/// Threads for the engine's calls (tokio's default is 512). More than a few buy nothing: a
/// call runs on the writer, one of `serve.readers` readers or the embedder's own threads, and
/// waits otherwise. Each thread that ran a call keeps its allocator heap: with one thread per
/// concurrent request, 64 clients held the agent's memory several hundred MiB higher.
const BLOCKING_THREADS: usize = 16;

/// Whether `given` is `expected`, in time that depends on `given`'s length only: every byte of
/// `given` is compared (against `expected` repeated), differences are OR-ed together and a
/// length difference is folded in at the end, so there is no early exit on the first differing
/// byte nor on a length mismatch, and nothing about `expected` leaks through timing but its
/// length's equality to `given`'s. `black_box` keeps the optimiser from shortcutting the fold.
fn same_secret(given: &[u8], expected: &[u8]) -> bool {
    if expected.is_empty() {
        // No token is configured as an empty one (`Config::token`); never equal.
        return false;
    }
    let mut diff = u8::from(given.len() != expected.len());
    for (i, g) in given.iter().enumerate() {
        diff |= std::hint::black_box(g ^ expected[i % expected.len()]);
    }
    std::hint::black_box(diff) == 0 && !given.is_empty()
}

/// The credentials of an `Authorization: Bearer <token>` header. The scheme is
/// case-insensitive (RFC 9110 §11.1, which RFC 6750 builds on): `bearer` and `BEARER` are
/// `Bearer`.
fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim_start().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

/// Requires `Authorization: Bearer <token>` on every route but `/healthz` and the page's static
/// files (which carry no data) when a token is set.
async fn auth(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if let Some(token) = state.config.token() {
        let given = request
            .headers()
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(bearer);
        let ok = given.is_some_and(|g| same_secret(g.as_bytes(), token.as_bytes()));
        let open = request.uri().path() == "/healthz" || web::is_page(request.uri().path());
        if !ok && !open {
            // Why, for whoever debugs a client; never what was sent.
            let why = match request.headers().get(axum::http::header::AUTHORIZATION) {
                None => "no Authorization header",
                Some(_) if given.is_none() => "not a Bearer credential",
                Some(_) => "wrong token",
            };
            tracing::debug!(why, "unauthorized request");
            state.metrics.error("unauthorized");
            return api::ApiError::unauthorized().into_response();
        }
    }
    next.run(request).await
}

/// Refuses a request beyond `serve.max_in_flight` at once with 503 and `Retry-After`: a client
/// learns to come back, and a flood holds neither memory nor threads. `/healthz` always
/// answers. (A response that streams, a chat completion, gives its place back once its head is
/// sent; the model's own queue bounds those.)
/// (`observe` counts the refusals, by their code `busy`.)
async fn admit(
    State(in_flight): State<Arc<tokio::sync::Semaphore>>,
    request: Request,
    next: Next,
) -> Response {
    if request.uri().path() == "/healthz" {
        return next.run(request).await;
    }
    let Ok(_permit) = in_flight.try_acquire_owned() else {
        return api::ApiError::busy(
            "the agent is at its limit of requests in flight (serve.max_in_flight); retry shortly",
        )
        .into_response();
    };
    next.run(request).await
}

/// Logs each request (method, route, status, time — never headers) and counts it.
async fn observe(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let response = next.run(request).await;
    let status = response.status().as_u16();
    state
        .metrics
        .http_requests
        .get_or_create(&Route {
            route: route.clone(),
            status,
        })
        .inc();
    if let Some(code) = response.extensions().get::<api::ErrorCode>() {
        state.metrics.error(code.0);
    }
    tracing::info!(%method, route, status, ms = started.elapsed().as_secs_f64() * 1e3, "request");
    response
}

/// The router with its middleware.
pub fn app(state: AppState) -> axum::Router {
    let openai = axum::Router::new()
        .route(
            "/v1/chat/completions",
            axum::routing::post(openai::chat_completions),
        )
        .route("/v1/embeddings", axum::routing::post(openai::embeddings))
        .route("/v1/models", axum::routing::get(openai::models))
        .route("/openapi.json", axum::routing::get(openapi))
        .layer(axum::extract::DefaultBodyLimit::max(
            state.config.serve.max_body_bytes,
        ))
        .with_state(state.clone());
    api::routes(state.clone())
        .merge(openai)
        .merge(web::routes())
        .method_not_allowed_fallback(api::method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            api::refuse_large_bodies,
        ))
        .layer(axum::middleware::from_fn_with_state(
            Arc::new(tokio::sync::Semaphore::new(
                state.config.serve.max_in_flight,
            )),
            admit,
        ))
        .layer(axum::middleware::from_fn_with_state(state.clone(), auth))
        .layer(axum::middleware::from_fn_with_state(state, observe))
}

/// The OpenAPI description of the whole API: [`api::ApiDoc`] and [`openai::OpenAiDoc`].
pub fn openapi_doc() -> utoipa::openapi::OpenApi {
    use utoipa::OpenApi as _;
    let mut doc = api::ApiDoc::openapi();
    doc.merge(openai::OpenAiDoc::openapi());
    doc
}

/// `GET /openapi.json`.
async fn openapi() -> axum::Json<utoipa::openapi::OpenApi> {
    axum::Json(openapi_doc())
}

/// Resolves on SIGTERM or Ctrl-C.
async fn stop_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

/// Serves `app` on `listener` until `stop` turns true, then lets the open connections finish.
///
/// `axum::serve` gives hyper no timer, so hyper's HTTP/1 header read timeout never fires and a
/// client that sends its headers a byte at a time holds its connection for ever (slow loris).
/// Here each connection gets `header_timeout` to send its request head; one that has not is
/// closed.
async fn accept(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    header_timeout: Duration,
    mut stop: signal_watch::Receiver<bool>,
) {
    use hyper_util::rt::{TokioIo, TokioTimer};
    use hyper_util::service::TowerToHyperService;

    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: wait, as axum::serve does.
                    tracing::warn!("accepting a connection: {e}");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            },
            _ = stop.changed() => break,
        };
        let service = TowerToHyperService::new(app.clone());
        let conn = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!("connection: {e}");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// Runs the agent until it is told to stop.
///
/// # Errors
/// Start-up failures: the database, the model, the address, a watched folder, the central
/// configuration.
pub fn run(
    config: Config,
    db: std::path::PathBuf,
    embedder: Arc<dyn Embedder>,
    llm: llm::Llm,
) -> Result<i32> {
    let addr: SocketAddr = config.addr()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(BLOCKING_THREADS)
        .build()?;
    let result = rt.block_on(serve(config, db, embedder, llm, addr));
    // Do not wait for a blocking task still embedding a large file: its work stays queued.
    rt.shutdown_timeout(Duration::from_millis(200));
    result
}

async fn serve(
    config: Config,
    db: std::path::PathBuf,
    embedder: Arc<dyn Embedder>,
    llm: llm::Llm,
    addr: SocketAddr,
) -> Result<i32> {
    let metrics = Arc::new(Metrics::new());
    let embedder: Arc<dyn Embedder> = Arc::new(metrics::Timed::new(embedder, metrics.clone()));
    let engines = Arc::new(
        Engines::open(db.clone(), embedder.clone(), config.serve.readers)
            .with_context(|| format!("opening {}", db.display()))?,
    );
    let (stop_tx, stop_rx) = signal_watch::channel(false);
    let mut tasks = Vec::new();

    // Background sync, on the agent's engine.
    let sync = if config.sync.central.is_empty() {
        SyncHandle::off()
    } else {
        // Without a JWT, the session `outpost login` stored in the Outpost home.
        let session = outpost_sync::SessionStore::new(outpost_models::outpost_home());
        let central = outpost_sync::CentralConfig::from_settings_with_session(
            &config.sync.central,
            Some(&session),
        )
        .context("sync.central")?;
        let setup = syncer::SyncSetup {
            central,
            engine: engines.engine().clone(),
            interval: Duration::from_secs(config.sync.interval_s),
            timeout: Duration::from_secs(config.sync.timeout_s.max(1)),
            batch_size: config.sync.batch_size,
            metrics: metrics.clone(),
        };
        let (handle, task) = syncer::start(setup, stop_rx.clone())?;
        tasks.push(task);
        handle
    };

    let state = AppState {
        config: Arc::new(config.clone()),
        engines: engines.clone(),
        metrics: metrics.clone(),
        sync,
        llm: Arc::new(llm),
    };

    // Watched folders → the durable queue → the worker. The worker runs even without folders:
    // work queued before a crash is finished.
    let wake = Arc::new(Notify::new());
    let mut _watcher = None;
    if !config.watch.dirs.is_empty() {
        let ignore = watch::Ignore::new(&config.watch.ignore, config.watch.include_hidden)?;
        let folders = watch::Folders::new(&config.watch.dirs, &config.watch.collection, ignore)?;
        let (events_tx, events_rx) = tokio::sync::mpsc::unbounded_channel();
        _watcher = Some(watch::start(
            folders.clone(),
            Duration::from_millis(config.watch.debounce_ms),
            events_tx.clone(),
        )?);
        // The start-up scan: what changed while the agent was down.
        events_tx
            .send(watch::WatchEvent::Rescan)
            .map_err(|_| anyhow::anyhow!("the queue task is gone"))?;
        tasks.push(tokio::spawn(worker::enqueue(
            engines.clone(),
            folders,
            metrics.clone(),
            events_rx,
            wake.clone(),
        )));
    }
    let worker = tokio::spawn(worker::run(
        engines.clone(),
        metrics.clone(),
        state.ingest_options(),
        wake,
        stop_rx.clone(),
    ));

    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("listening on {addr}"))?;
    let local = listener.local_addr()?;
    tracing::info!(addr = %local, db = %db.display(), "outpost agent listening");
    // Which mode it is in, said once at start-up (never the token itself).
    if config.token().is_some() {
        tracing::info!(
            "a bearer token is required (Authorization: Bearer) on every route but /healthz \
             and the page's static files"
        );
    } else {
        tracing::warn!(
            addr = %local,
            "no token is required: bound to loopback, only this machine can connect \
             (set OUTPOST_TOKEN or serve.token to require one)"
        );
    }
    // One line on stdout for whoever started us (scripts, tests): where we listen. If that
    // reader has gone already, the agent serves on: its work is the API, not its stdout.
    if let Err(e) = outln!("listening on http://{local}") {
        tracing::warn!("could not print the listening address on stdout: {e}");
    }

    let header_timeout = Duration::from_secs(config.serve.header_timeout_s.max(1));
    let server = tokio::spawn(accept(
        listener,
        app(state),
        header_timeout,
        stop_rx.clone(),
    ));

    stop_signal().await;
    tracing::info!("stopping");
    let deadline = Instant::now() + Duration::from_millis(3500);
    let _ = stop_tx.send(true);
    // In-flight requests and the file in hand get what is left of five seconds; queued work
    // stays queued, and an interrupted write is rolled back by SQLite.
    let remaining = || deadline.saturating_duration_since(Instant::now());
    let _ = tokio::time::timeout(remaining(), server).await;
    let _ = tokio::time::timeout(remaining(), worker).await;
    for t in tasks {
        t.abort();
    }
    drop(_watcher);
    // The vector indexes changed since their last save are saved, so the next start loads them
    // instead of replaying the log or rebuilding.
    if let Err(e) = engines.engine().save_indexes() {
        tracing::warn!("vector indexes not saved: {e}");
    }
    tracing::info!("stopped");
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::{bearer, same_secret};

    #[test]
    fn a_secret_matches_only_itself() {
        let token = b"s3cret-token";
        assert!(same_secret(b"s3cret-token", token));
        // Differing anywhere, at the first or the last byte.
        assert!(!same_secret(b"X3cret-token", token));
        assert!(!same_secret(b"s3cret-tokeX", token));
        assert!(!same_secret(b"completely-x", token));
        // A prefix, a longer one, the empty one; and nothing matches an empty secret.
        assert!(!same_secret(b"s3cret-toke", token));
        assert!(!same_secret(b"s3cret-token-and-more", token));
        assert!(!same_secret(b"s3cret-tokens3cret-token", token));
        assert!(!same_secret(b"", token));
        assert!(!same_secret(b"", b""));
        assert!(!same_secret(b"x", b""));
    }

    #[test]
    fn the_bearer_scheme_is_case_insensitive_and_nothing_else_is_bearer() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer abc"), Some("abc"));
        assert_eq!(bearer("BEARER   abc "), Some("abc"));
        assert_eq!(bearer("Basic YWJjOg=="), None);
        assert_eq!(bearer("abc"), None);
        assert_eq!(bearer("Bearer"), None);
        assert_eq!(bearer("Bearerabc"), None);
    }
}
