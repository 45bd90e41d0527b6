//! The agent's background sync against the real PostgreSQL + pgvector that `scripts/test.sh`
//! starts (`OUTPOST_TEST_PG_URL`), reached through the fault proxy (`outpost_sync::faultproxy`), switched off and on:
//! while the central store is down the agent reports it offline and keeps serving; when it
//! returns, the agent is ready again and what was queued meanwhile is synced.

mod common;

use std::time::Duration;

use outpost_sync::faultproxy::{FaultProxy, Faults};
use serde_json::json;

use common::agent::{metric, Agent, Start};
use common::central::Central;
use common::{TestDb, TestResult};

/// Switches the proxy to the central Postgres on or off: off, it refuses new connections and
/// drops the open ones.
fn switch(proxy: &FaultProxy, up: bool) {
    proxy.set(Faults {
        refuse: !up,
        ..Faults::default()
    });
    if !up {
        proxy.sever();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_serves_while_the_central_store_is_down_and_syncs_when_it_returns() -> TestResult
{
    // A central database of this test's own, migrated as Supabase would be.
    let db_central = Central::new("agent").await?;
    let central = common::central::connect(&db_central.url).await?;
    let proxy = FaultProxy::start(db_central.addr).await?;
    switch(&proxy, false);
    let user = uuid::Uuid::now_v7().to_string();
    let via_switch = db_central.via(proxy.addr());

    let db = TestDb::new()?;
    let agent = Agent::start(Start {
        args: &["--sync-interval", "1"],
        config: "[sync]\ntimeout_s = 3\n",
        env: &[
            ("OUTPOST_CENTRAL_URL", &via_switch),
            ("OUTPOST_CENTRAL_USER", &user),
        ],
        embedder: "hash",
        ..Start::new(db.path())
    })?;
    let wait = Duration::from_secs(60);

    // Down: offline, but ready and searching; what is written waits in the outbox.
    let (status, _) = agent
        .post(
            "/v1/documents",
            &json!({ "text": "Glaciers carve valleys.", "source": "notes/ice" }),
        )
        .await?;
    assert_eq!(status, 201);
    agent
        .until("the agent to see the central store down", wait, || async {
            Ok(agent.get("/readyz").await?.1["central"] == "offline")
        })
        .await?;
    let (status, ready) = agent.get("/readyz").await?;
    assert_eq!((status, ready["ready"].as_bool()), (200, Some(true)));
    let (status, found) = agent
        .post("/v1/search", &json!({ "query": "how are valleys made" }))
        .await?;
    assert_eq!(status, 200);
    assert_eq!(found["results"].as_array().map(Vec::len), Some(1));
    let (_, sync) = agent.get("/v1/sync/status").await?;
    assert_eq!(sync["outbox_depth"], 1, "{sync}");
    assert_eq!(sync["central"]["online"], false);
    let (status, err) = agent.post("/v1/sync", &json!({})).await?;
    assert_eq!(status, 503, "{err}");
    assert_eq!(
        metric(&agent.metrics().await?, "outpost_central_up", ""),
        0.0
    );

    // Back: ready and online again, the outbox drained, the document on the central store.
    switch(&proxy, true);
    agent
        .until("the queued change to be synced", wait, || async {
            let (_, ready) = agent.get("/readyz").await?;
            let (_, sync) = agent.get("/v1/sync/status").await?;
            Ok(ready["central"] == "online" && sync["outbox_depth"] == 0)
        })
        .await?;
    let row = central
        .query_one(
            "SELECT count(*) FROM outpost_documents WHERE owner = $1::text::uuid AND source = 'notes/ice'",
            &[&user],
        )
        .await?;
    assert_eq!(row.get::<_, i64>(0), 1);
    let (status, report) = agent.post("/v1/sync", &json!({})).await?;
    assert_eq!(status, 200, "{report}");
    assert_eq!(
        metric(&agent.metrics().await?, "outpost_central_up", ""),
        1.0
    );
    assert_eq!(
        metric(&agent.metrics().await?, "outpost_outbox_depth", ""),
        0.0
    );

    // Down again mid-flight: still serving.
    switch(&proxy, false);
    let (status, _) = agent
        .post("/v1/search", &json!({ "query": "glaciers" }))
        .await?;
    assert_eq!(status, 200);
    Ok(())
}
