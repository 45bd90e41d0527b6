//! The agent's language model under contention: one generation at a time, a request that finds
//! the queue full refused at once with 429 and `Retry-After`, and a client that disconnects
//! mid-answer stopping the model (the next request is served at once). The real SmolLM2 GGUF;
//! the hash embedder (retrieval is off: this is about the model's slot).

mod common;

use std::time::{Duration, Instant};

use common::agent::{Agent, Start};
use common::TestResult;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_is_a_429_and_a_gone_client_frees_the_model() -> TestResult {
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("a.db");
    let agent = Agent::start(Start {
        config: "[serve]\nllm_queue = 0\n",
        embedder: "hash",
        ..Start::new(&db)
    })?;
    let http = reqwest::Client::new();
    let url = format!("{}/v1/chat/completions", agent.url);
    let long = json!({
        "messages": [{"role": "user", "content": "Write a very long story about a lighthouse keeper."}],
        "retrieval": false, "stream": true, "max_tokens": 1000, "repeat_penalty": 1.3,
    });
    // A streamed answer holds the model; read until its first text arrives.
    let mut stream = http.post(&url).json(&long).send().await?;
    assert_eq!(stream.status(), 200);
    let mut seen = String::new();
    while !seen.contains("\"content\":\"") || seen.matches("data: ").count() < 3 {
        let chunk = stream.chunk().await?.ok_or("the stream ended early")?;
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    // Meanwhile another request finds no room in a queue of 0: refused at once.
    let short = json!({
        "messages": [{"role": "user", "content": "Say hi."}],
        "retrieval": false, "max_tokens": 4,
    });
    let busy = http.post(&url).json(&short).send().await?;
    assert_eq!(busy.status(), 429);
    assert_eq!(
        busy.headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("2")
    );
    let body: serde_json::Value = busy.json().await?;
    assert_eq!(body["error"]["type"], "rate_limit_error", "{body}");

    // The client goes away: the model stops at its next token and serves the next request.
    drop(stream);
    let started = Instant::now();
    let (status, body) = loop {
        let r = http.post(&url).json(&short).send().await?;
        if r.status() != 429 || started.elapsed() > Duration::from_secs(20) {
            let status = r.status().as_u16();
            break (status, r.json::<serde_json::Value>().await?);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(status, 200, "{body}");
    assert!(
        body["choices"][0]["message"]["content"].is_string(),
        "{body}"
    );
    let logs = agent.logs();
    assert!(
        logs.contains("generation stopped: the client went away"),
        "no cancellation in the log: {logs}"
    );
    Ok(())
}

/// `outpost ask --llm-url` against a real OpenAI-compatible server — this agent — with the key
/// from `OUTPOST_LLM_API_KEY`: the answer streams from the server, the sources stay local. (The
/// serving agent holds no documents, so its own retrieval finds nothing and it answers so: the
/// text that comes back is the server's, not a local model's.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ask_can_generate_with_an_openai_compatible_server() -> TestResult {
    let dir = tempfile::tempdir()?;
    let served = dir.path().join("served.db");
    let agent = Agent::start(Start {
        embedder: "hash",
        env: &[("OUTPOST_TOKEN", "s3cret")],
        ..Start::new(&served)
    })?;
    let (_, models) = agent
        .call(reqwest::Method::GET, "/v1/models", None, Some("s3cret"))
        .await?;
    let name = models["data"][0]["id"]
        .as_str()
        .ok_or("no model")?
        .to_owned();
    let local = dir.path().join("local.db");
    let ingest = std::process::Command::new(common::OUTPOST)
        .arg("--db")
        .arg(&local)
        .arg("ingest")
        .arg(common::corpus().join("bees"))
        .output()?;
    assert!(ingest.status.success());
    let url = format!("{}/v1", agent.url);
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(common::OUTPOST)
            .arg("--db")
            .arg(&local)
            .args([
                "ask",
                "How do I count varroa mites?",
                "--json",
                "--llm-url",
                &url,
            ])
            .args(["--llm-name", &name])
            .env("OUTPOST_LLM_API_KEY", "s3cret")
            .env_remove("OUTPOST_LLM_MODEL")
            .output()
    })
    .await??;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(
        r["answer"], "I could not find anything about this in your documents.",
        "{r}"
    );
    assert_eq!(r["found"], true, "local retrieval found the sources: {r}");
    assert!(!r["citations"].as_array().ok_or("citations")?.is_empty());
    assert_eq!(r["finish_reason"], "stop");

    // A wrong key is the server's 401, reported with the URL.
    let local = dir.path().join("local.db");
    let url = format!("{}/v1", agent.url);
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(common::OUTPOST)
            .arg("--db")
            .arg(&local)
            .args(["ask", "How do I count varroa mites?", "--llm-url", &url])
            .env("OUTPOST_LLM_API_KEY", "wrong")
            .output()
    })
    .await??;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("401") && err.contains("/v1/chat/completions"),
        "{err}"
    );
    Ok(())
}
