//! The agent's HTTP API end to end, over loopback: documents, search, context, conversations,
//! metrics, OpenAPI with the real model; bad input answered with 4xx JSON errors and bearer
//! tokens with `--embedder hash`, as what they check does not depend on the vectors.

mod common;

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};

use common::agent::{metric, Agent, Start};
use common::{require_model, TestDb, TestResult};

#[tokio::test]
async fn documents_search_context_and_conversations_over_http() -> TestResult {
    require_model();
    let db = TestDb::new()?;
    let agent = Agent::start(Start::new(db.path()))?;

    // Ingest by API: a JSON text with metadata, and a file upload.
    let (status, body) = agent
        .post(
            "/v1/documents",
            &json!({ "text": "Tides are caused by the gravitational pull of the moon and the sun.",
                     "title": "Tides", "source": "notes/tides", "metadata": { "topic": "ocean" } }),
        )
        .await?;
    assert_eq!(status, 201, "{body}");
    let tides = body[0]["id"].as_str().ok_or("an id")?.to_string();
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(
            b"# Bees\n\nHoney bees tell each other where flowers are with a waggle dance.\n"
                .to_vec(),
        )
        .file_name("bees.md"),
    );
    let upload = reqwest::Client::new()
        .post(format!("{}/v1/documents", agent.url))
        .multipart(form)
        .send()
        .await?;
    assert_eq!(upload.status().as_u16(), 201);
    let uploaded: Value = upload.json().await?;
    assert_eq!(uploaded[0]["source"], "upload:bees.md");

    // The same text again is unchanged (200), not a second document.
    let (status, again) = agent
        .post(
            "/v1/documents",
            &json!({ "text": "Tides are caused by the gravitational pull of the moon and the sun.",
                     "title": "Tides", "source": "notes/tides", "metadata": { "topic": "ocean" } }),
        )
        .await?;
    assert_eq!(
        (status, again[0]["outcome"].as_str()),
        (200, Some("unchanged"))
    );

    // Search, as the CLI does: modes, k, filters.
    let (status, found) = agent
        .post(
            "/v1/search",
            &json!({ "query": "what causes tides", "k": 2 }),
        )
        .await?;
    assert_eq!(status, 200, "{found}");
    assert_eq!(found["results"][0]["document_id"], tides.as_str());
    assert_eq!(found["mode"], "hybrid");
    let (_, filtered) = agent
        .post(
            "/v1/search",
            &json!({ "query": "dance", "mode": "vector", "filters": ["topic=ocean"] }),
        )
        .await?;
    let hits = filtered["results"].as_array().ok_or("results")?;
    assert!(hits.iter().all(|h| h["document_id"] == tides.as_str()));
    let (_, text) = agent
        .post("/v1/search", &json!({ "query": "waggle", "mode": "text" }))
        .await?;
    assert_eq!(text["results"][0]["title"], "Bees");

    // Documents: list, get, delete.
    let (_, list) = agent.get("/v1/documents").await?;
    assert_eq!(list["documents"].as_array().map(Vec::len), Some(2));
    let (status, doc) = agent.get(&format!("/v1/documents/{tides}")).await?;
    assert_eq!(status, 200);
    assert_eq!(doc["chunks"].as_array().map(Vec::len), Some(1));

    // Conversations: create, list by title, add messages, recent, get; context uses them.
    let (status, conv) = agent
        .post("/v1/conversations", &json!({ "title": "Coast trip" }))
        .await?;
    assert_eq!(status, 201);
    let conv_id = conv["id"].as_str().ok_or("conversation id")?.to_string();
    for (role, content) in [
        ("user", "We are going to the coast next week."),
        (
            "assistant",
            "Check the tide tables before walking on the beach.",
        ),
    ] {
        let (status, m) = agent
            .post(
                &format!("/v1/conversations/{conv_id}/messages"),
                &json!({ "role": role, "content": content }),
            )
            .await?;
        assert_eq!(status, 201, "{m}");
    }
    let (_, by_title) = agent.get("/v1/conversations?title=coast").await?;
    assert_eq!(by_title["conversations"][0]["id"], conv_id.as_str());
    let (_, recent) = agent
        .get(&format!("/v1/conversations/{conv_id}/messages?n=1"))
        .await?;
    assert_eq!(recent["messages"].as_array().map(Vec::len), Some(1));
    let (_, one) = agent.get(&format!("/v1/conversations/{conv_id}")).await?;
    assert_eq!(one["messages"], 2);
    let (status, ctx) = agent
        .post(
            "/v1/context",
            &json!({ "query": "why do tides happen", "budget": 300, "conversation_id": conv_id }),
        )
        .await?;
    assert_eq!(status, 200, "{ctx}");
    assert!(ctx["text"].as_str().unwrap_or("").contains("moon"));
    assert!(ctx["tokens"].as_u64().unwrap_or(999) <= 300);
    assert_eq!(ctx["recent_messages"].as_array().map(Vec::len), Some(2));

    // Delete: gone from search, kept as a tombstone.
    let (status, _) = agent
        .call(
            Method::DELETE,
            &format!("/v1/documents/{tides}"),
            None,
            None,
        )
        .await?;
    assert_eq!(status, 200);
    let (_, after) = agent
        .post(
            "/v1/search",
            &json!({ "query": "what causes tides", "mode": "vector" }),
        )
        .await?;
    assert!(after["results"]
        .as_array()
        .ok_or("results")?
        .iter()
        .all(|h| h["document_id"] != tides.as_str()));

    // The metrics saw all of it.
    let m = agent.metrics().await?;
    assert_eq!(metric(&m, "outpost_documents_ingested_total", ""), 2.0);
    assert!(metric(&m, "outpost_chunks_ingested_total", "") >= 2.0);
    assert_eq!(
        metric(&m, "outpost_search_seconds_count", "mode=\"hybrid\""),
        1.0
    );
    assert_eq!(
        metric(&m, "outpost_search_seconds_count", "mode=\"vector\""),
        2.0
    );
    assert_eq!(
        metric(&m, "outpost_search_seconds_count", "mode=\"text\""),
        1.0
    );
    assert!(metric(&m, "outpost_embed_seconds_count", "") >= 4.0);
    assert!(metric(&m, "outpost_ingest_seconds_count", "") >= 2.0);
    assert_eq!(metric(&m, "outpost_documents", ""), 1.0);
    assert!(metric(&m, "outpost_outbox_depth", "") >= 1.0);
    assert_eq!(
        metric(
            &m,
            "outpost_http_requests_total",
            "route=\"/v1/search\",status=\"200\""
        ),
        4.0
    );

    // The OpenAPI description lists every route.
    let (_, spec) = agent.get("/openapi.json").await?;
    for path in [
        "/v1/documents",
        "/v1/documents/{id}",
        "/v1/search",
        "/v1/context",
        "/v1/conversations",
        "/v1/conversations/{id}/messages",
        "/readyz",
        "/v1/sync",
        "/metrics",
    ] {
        assert!(
            spec["paths"].get(path).is_some(),
            "{path} missing from /openapi.json"
        );
    }
    let (_, ready) = agent.get("/readyz").await?;
    assert_eq!(
        (ready["ready"].as_bool(), ready["central"].as_str()),
        (Some(true), Some("not configured"))
    );
    Ok(())
}

/// `(status, error code)` of a response that must be a 4xx with a JSON error naming the problem.
fn client_error(status: u16, body: &Value, mentions: &str) -> TestResult<(u16, String)> {
    assert!((400..500).contains(&status), "{status}: {body}");
    let message = body["error"]["message"]
        .as_str()
        .ok_or_else(|| format!("no JSON error: {body}"))?;
    assert!(
        message.to_lowercase().contains(&mentions.to_lowercase()),
        "'{message}' does not mention '{mentions}'"
    );
    Ok((
        status,
        body["error"]["code"].as_str().unwrap_or("").to_string(),
    ))
}

#[tokio::test]
async fn bad_requests_get_4xx_json_errors_that_name_the_problem() -> TestResult {
    let db = TestDb::new()?;
    let agent = Agent::start(Start {
        config: "[serve]\nmax_body_bytes = 4096\nmax_k = 100\n",
        embedder: "hash",
        ..Start::new(db.path())
    })?;
    agent
        .post(
            "/v1/documents",
            &json!({ "text": "Bees dance.", "metadata": { "topic": "bees" } }),
        )
        .await?;

    let (s, b) = agent
        .post_raw("/v1/search", "application/json", b"{\"query\": ".to_vec())
        .await?;
    assert_eq!(client_error(s, &b, "json")?.0, 400);
    let (s, b) = agent.post("/v1/search", &json!({ "query": 42 })).await?;
    assert_eq!(client_error(s, &b, "query")?.0, 422);
    let (s, b) = agent.post("/v1/search", &json!({ "quer": "typo" })).await?;
    client_error(s, &b, "quer")?;
    let (s, b) = agent
        .post_raw("/v1/search", "text/plain", b"{}".to_vec())
        .await?;
    assert_eq!(client_error(s, &b, "content-type")?.0, 415);
    let big = json!({ "query": "x".repeat(10_000) });
    let (s, b) = agent.post("/v1/search", &big).await?;
    assert_eq!(client_error(s, &b, "limit")?, (413, "too_large".into()));
    for k in [0, 101] {
        let (s, b) = agent
            .post("/v1/search", &json!({ "query": "bees", "k": k }))
            .await?;
        client_error(s, &b, "k =")?;
    }
    let (s, b) = agent
        .post(
            "/v1/search",
            &json!({ "query": "bees", "filters": ["colour=red"] }),
        )
        .await?;
    client_error(s, &b, "colour")?;
    let (s, b) = agent
        .post(
            "/v1/search",
            &json!({ "query": "bees", "filters": ["no operator"] }),
        )
        .await?;
    client_error(s, &b, "no operator")?;
    let (s, b) = agent
        .post("/v1/search", &json!({ "query": "bees", "mode": "psychic" }))
        .await?;
    client_error(s, &b, "psychic")?;
    let (s, b) = agent.post("/v1/search", &json!({ "query": "  " })).await?;
    client_error(s, &b, "empty")?;
    let (s, b) = agent
        .get("/v1/documents/0123abcd-0000-0000-0000-000000000000")
        .await?;
    assert_eq!(client_error(s, &b, "not found")?, (404, "not_found".into()));
    let (s, b) = agent.get("/v1/documents/zzz").await?;
    client_error(s, &b, "document id")?;
    let (s, b) = agent
        .call(Method::DELETE, "/v1/documents/0123abcd", None, None)
        .await?;
    assert_eq!(client_error(s, &b, "not found")?.0, 404);
    let (s, b) = agent.get("/v1/conversations/0123abcd/messages").await?;
    assert_eq!(client_error(s, &b, "not found")?.0, 404);
    let (s, b) = agent
        .post(
            "/v1/conversations/0123abcd/messages",
            &json!({ "role": "user", "content": "hi" }),
        )
        .await?;
    assert_eq!(client_error(s, &b, "not found")?.0, 404);
    let (s, b) = agent.get("/v1/documents?limit=many").await?;
    client_error(s, &b, "limit")?;
    let (s, b) = agent.post("/v1/documents", &json!({ "text": "" })).await?;
    client_error(s, &b, "empty")?;
    let (s, b) = agent
        .post(
            "/v1/documents",
            &json!({ "text": "x", "metadata": { "nested": { "a": 1 } } }),
        )
        .await?;
    client_error(s, &b, "nested")?;
    let (s, b) = agent
        .post_raw(
            "/v1/documents",
            "multipart/form-data; boundary=xyz",
            b"--xyz--\r\n".to_vec(),
        )
        .await?;
    client_error(s, &b, "file")?;
    let (s, b) = agent
        .post("/v1/context", &json!({ "query": "bees", "budget": 1 }))
        .await?;
    client_error(s, &b, "budget")?;
    let (s, b) = agent.get("/v2/nothing").await?;
    assert_eq!(client_error(s, &b, "no such route")?.0, 404);
    let (s, b) = agent.post("/v1/sync", &json!({})).await?;
    client_error(s, &b, "no central store")?;

    // Nothing above was a server error, and the agent still answers.
    let m = agent.metrics().await?;
    for line in m
        .lines()
        .filter(|l| l.starts_with("outpost_http_requests_total"))
    {
        assert!(!line.contains("status=\"5"), "{line}");
    }
    assert_eq!(agent.get("/healthz").await?.0, 200);
    let (_, found) = agent
        .post("/v1/search", &json!({ "query": "bees" }))
        .await?;
    assert_eq!(found["results"].as_array().map(Vec::len), Some(1));
    Ok(())
}

#[tokio::test]
async fn a_token_guards_every_route_but_healthz_and_never_reaches_the_logs() -> TestResult {
    let db = TestDb::new()?;
    let token = "s3cret-token-4b1d9e0c";

    // Off loopback without a token: refused at start.
    let log = db.dir().join("refused.log");
    let public = Start {
        args: &["--addr", "0.0.0.0:0"],
        embedder: "hash",
        ..Start::new(db.path())
    };
    let out = common::agent::command(&public, &log)?.output()?;
    assert!(!out.status.success());
    let stderr = String::from_utf8(out.stderr)? + &std::fs::read_to_string(&log)?;
    assert!(stderr.contains("without a token"), "{stderr}");

    let mut agent = Agent::start(Start {
        env: &[("OUTPOST_TOKEN", token), ("OUTPOST_LOG", "debug")],
        config: "log_format = \"json\"\n",
        embedder: "hash",
        ..Start::new(db.path())
    })?;
    let body = json!({ "query": "anything" });
    for wrong in [None, Some("wrong-token"), Some("s3cret-token-4b1d9e0")] {
        let (status, b) = agent
            .call(Method::POST, "/v1/search", Some(&body), wrong)
            .await?;
        assert_eq!(status, 401, "{wrong:?}");
        assert_eq!(b["error"]["code"], "unauthorized");
    }
    assert_eq!(
        agent.call(Method::GET, "/metrics", None, None).await?.0,
        401
    );
    assert_eq!(agent.get("/healthz").await?.0, 200);
    let (status, _) = agent
        .call(Method::POST, "/v1/search", Some(&body), Some(token))
        .await?;
    assert_eq!(status, 200);
    assert!(agent.stop()? < Duration::from_secs(5));
    let logs = agent.logs();
    assert!(
        logs.contains("\"route\":\"/v1/search\""),
        "JSON logs: {logs}"
    );
    assert!(!logs.contains(token), "the token leaked into the logs");

    // `outpost config show` masks it too.
    let out = std::process::Command::new(common::OUTPOST)
        .args(["config", "show"])
        .env("OUTPOST_TOKEN", token)
        .env("OUTPOST_CONFIG", db.dir().join("outpost.toml"))
        .output()?;
    let shown = String::from_utf8(out.stdout)?;
    assert!(
        out.status.success() && shown.contains("token = \"***\""),
        "{shown}"
    );
    assert!(!shown.contains(token));
    Ok(())
}

#[test]
fn the_example_configuration_parses_and_flags_beat_environment_beats_file() -> TestResult {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/outpost.toml.example");
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("outpost.toml");
    std::fs::write(
        &file,
        std::fs::read_to_string(example)?
            .replace("interval_s = 30", "interval_s = 5")
            .replace("collection = \"default\"", "collection = \"from-file\""),
    )?;
    let show = |env: &[(&str, &str)], flags: &[&str]| -> TestResult<Value> {
        let mut cmd = std::process::Command::new(common::OUTPOST);
        cmd.args(["config", "show", "--json", "--config"])
            .arg(&file)
            .args(flags)
            .env_remove("OUTPOST_SYNC_INTERVAL")
            .env_remove("OUTPOST_ADDR");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output()?;
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(serde_json::from_slice(&out.stdout)?)
    };
    let from_file = show(&[], &[])?;
    assert_eq!(from_file["sync"]["interval_s"], 5);
    assert_eq!(from_file["watch"]["collection"], "from-file");
    assert_eq!(from_file["serve"]["addr"], "127.0.0.1:7878");
    let from_env = show(
        &[
            ("OUTPOST_SYNC_INTERVAL", "7"),
            ("OUTPOST_ADDR", "127.0.0.1:9000"),
        ],
        &[],
    )?;
    assert_eq!(from_env["sync"]["interval_s"], 7);
    assert_eq!(from_env["serve"]["addr"], "127.0.0.1:9000");
    let with_flag = show(
        &[("OUTPOST_DB", "/from/env.db")],
        &["--db", "/from/flag.db"],
    )?;
    assert_eq!(with_flag["db"], "/from/flag.db");

    // A typo in the file is an error that names it.
    std::fs::write(&file, "[serve]\nadress = \"127.0.0.1:1\"\n")?;
    let out = std::process::Command::new(common::OUTPOST)
        .args(["config", "show", "--config"])
        .arg(&file)
        .output()?;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("adress"));
    Ok(())
}
