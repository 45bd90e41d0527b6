//! The agent's HTTP API request bodies: the router `outpost serve` serves (every route and its
//! middleware, `outpost::agent_router`), driven in-process with `tower::ServiceExt::oneshot`
//! over a database with the hash embedder. The first byte picks the route (and its content
//! type: JSON, or multipart for an upload); the rest is the body (the query string or the id
//! for the routes that take one). What must hold: every request is answered with a status,
//! never a panic, and never 500 (bad input is a 4xx; chat without a model is 503).
#![no_main]

use std::sync::OnceLock;

use axum::body::Body;
use axum::http::{Method, Request};
use libfuzzer_sys::fuzz_target;
use outpost_fuzz::Scratch;
use tower::ServiceExt as _;

enum Part {
    Body,
    Query,
    Id,
}

/// (method, path, content type, where the input goes).
const ROUTES: &[(Method, &str, &str, Part)] = &[
    (
        Method::POST,
        "/v1/documents",
        "application/json",
        Part::Body,
    ),
    // The seeds' multipart bodies use this boundary.
    (
        Method::POST,
        "/v1/documents",
        "multipart/form-data; boundary=fuzzboundary",
        Part::Body,
    ),
    (Method::POST, "/v1/search", "application/json", Part::Body),
    (Method::POST, "/v1/context", "application/json", Part::Body),
    (
        Method::POST,
        "/v1/conversations",
        "application/json",
        Part::Body,
    ),
    (
        Method::POST,
        "/v1/conversations/{c}/messages",
        "application/json",
        Part::Body,
    ),
    (
        Method::POST,
        "/v1/chat/completions",
        "application/json",
        Part::Body,
    ),
    (
        Method::POST,
        "/v1/embeddings",
        "application/json",
        Part::Body,
    ),
    (Method::GET, "/v1/documents?", "", Part::Query),
    (Method::GET, "/v1/conversations?", "", Part::Query),
    (Method::DELETE, "/v1/documents/", "", Part::Id),
    (Method::POST, "/v1/sync", "application/json", Part::Body),
];

struct Agent {
    _scratch: Scratch,
    runtime: tokio::runtime::Runtime,
    router: axum::Router,
    conversation: String,
}

static AGENT: OnceLock<Agent> = OnceLock::new();

fn agent() -> &'static Agent {
    AGENT.get_or_init(|| {
        let scratch = Scratch::new();
        let conversation = scratch
            .engine()
            .create_conversation("fuzz")
            .expect("a conversation")
            .id;
        let router = outpost::agent_router(scratch.db(), outpost_fuzz::embedder())
            .expect("the agent's router");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        Agent {
            _scratch: scratch,
            runtime,
            router,
            conversation,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let (method, path, content_type, part) = &ROUTES[usize::from(pick) % ROUTES.len()];
    let agent = agent();
    let path = path.replace("{c}", &agent.conversation);
    let (uri, body) = match part {
        Part::Body => (path.clone(), rest.to_vec()),
        Part::Query | Part::Id => match std::str::from_utf8(rest) {
            Ok(s) => (format!("{path}{s}"), Vec::new()),
            Err(_) => return,
        },
    };
    let mut request = Request::builder().method(method.clone()).uri(uri);
    if !content_type.is_empty() {
        request = request.header("content-type", *content_type);
    }
    // A URI the HTTP parser would refuse never reaches the router.
    let Ok(request) = request.body(Body::from(body)) else {
        return;
    };
    let response = agent
        .runtime
        .block_on(agent.router.clone().oneshot(request))
        .expect("the router is infallible");
    let status = response.status().as_u16();
    assert!(
        status != 500,
        "{method} {path}: 500 for a request body (bad input is a 4xx)"
    );
});
