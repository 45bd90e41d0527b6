//! The central store itself, on the test target (`common`: a real PostgreSQL + pgvector with
//! Supabase's auth emulated, or a real Supabase project): the
//! pull cursor under concurrent writers, replayed pushes, row-level security through both
//! transports, search over the synced chunks as a Supabase client would run it, and what a device
//! is told when the central schema is missing, older than it needs, or made for another model.

mod common;

use std::cell::Cell;
use std::collections::BTreeSet;
use std::rc::Rc;
use std::time::Duration;

use common::{local_only, user, Db, Device, TestResult};
use outpost_core::{Change, Embedder, HashEmbedder, Kind};
use outpost_sync::{Backoff, Central, Error, Outcome, SyncOptions, MIGRATION};
use serde_json::{json, Value};

/// The tests of this file take turns on the shared server: some hold transactions open on
/// purpose, and a pull hands out only rows of transactions older than the oldest one still
/// running anywhere on the server (docs/SYNC.md), so they would hold the others' pulls back.
static SERVER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Starts a transaction on `client` acting as `user`, exactly as both transports do.
async fn begin_as(
    client: &tokio_postgres::Client,
    user: &str,
) -> Result<(), tokio_postgres::Error> {
    client
        .batch_execute("BEGIN; SET LOCAL ROLE authenticated")
        .await?;
    let claims = json!({ "sub": user, "role": "authenticated" }).to_string();
    client
        .execute(
            "SELECT set_config('request.jwt.claims', $1, true)",
            &[&claims],
        )
        .await?;
    Ok(())
}

/// One SQL value as `user` would see it (role `authenticated` and the user's claims).
async fn scalar_as(db: &Db, user: &str, sql: &str) -> Result<String, Box<dyn std::error::Error>> {
    let c = db.admin().await?;
    begin_as(&c, user).await?;
    let row = c.query_one(&format!("SELECT ({sql})::text"), &[]).await?;
    c.batch_execute("COMMIT").await?;
    Ok(row.get::<_, Option<String>>(0).unwrap_or_default())
}

/// Calls an RPC function through the REST API as supabase-js does: `POST /rest/v1/rpc/<fn>` with
/// the anon key, the user's JWT (if any) and a JSON body of named arguments.
async fn rpc(
    url: &str,
    jwt: Option<&str>,
    function: &str,
    args: Value,
) -> Result<(u16, Value), Box<dyn std::error::Error>> {
    let mut request = reqwest::Client::new()
        .post(format!("{url}/rest/v1/rpc/{function}"))
        .header("apikey", common::anon_key())
        .json(&args);
    if let Some(jwt) = jwt {
        request = request.bearer_auth(jwt);
    }
    let response = request.send().await?;
    Ok((response.status().as_u16(), response.json().await?))
}

/// A JWT with arbitrary claims, signed with `secret`.
fn sign(claims: Value, secret: &str) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("jwt")
}

/// The change records waiting in a device's outbox (without acknowledging them).
fn pending(device: &mut Device) -> Result<Vec<Change>, outpost_core::Error> {
    Ok(device.engine.outbox_batch(1000)?.changes)
}

/// Ids of the documents a device holds, tombstones included.
fn document_ids(device: &Device) -> Result<BTreeSet<String>, outpost_core::Error> {
    Ok(device
        .engine
        .list_documents(None, true, usize::MAX)?
        .into_iter()
        .map(|d| d.id)
        .collect())
}

/// The xid part of a pull cursor (`<xid>:<seq>`; empty before the first pull).
fn cursor_xid(cursor: &str) -> u64 {
    cursor
        .split_once(':')
        .and_then(|(x, _)| x.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn a_transaction_that_commits_late_is_not_skipped_by_the_pull_cursor() -> TestResult {
    let _turn = SERVER.lock().await;
    let db = Db::new(true).await?;
    let u = user();
    let central = db.pg(&u);

    // A slow writer: its push runs in a transaction that stays open.
    let mut slow = Device::new()?;
    let slow_doc = slow.put("notes/slow.md", "Written first, committed last.")?;
    let changes = serde_json::to_string(&pending(&mut slow)?)?;
    let open = db.admin().await?;
    begin_as(&open, &u).await?;
    let row = open
        .query_one(
            "SELECT public.outpost_push($1::text::jsonb)::text, pg_current_xact_id()::text",
            &[&changes],
        )
        .await?;
    let outcomes: Value = serde_json::from_str(row.get(0))?;
    assert_eq!(outcomes[0]["outcome"], "applied");
    let open_xid: u64 = row.get::<_, String>(1).parse()?;

    // Meanwhile a fast writer pushes and commits through the normal transport...
    let mut fast = Device::new()?;
    fast.put("notes/fast-1.md", "Written second, committed first.")?;
    fast.put(
        "notes/fast-2.md",
        "Also written while the slow one is open.",
    )?;
    fast.sync(&central).await?;
    let fast_xid: u64 = db
        .scalar("SELECT max(change_xid::text::numeric) FROM outpost_documents")
        .await?
        .parse()?;
    assert!(
        fast_xid > open_xid,
        "the fast writer's transaction is newer"
    );

    // ...and a reader pulls: it must not hand out the newer rows yet, or its cursor would move
    // past the slow writer's transaction before that one is visible.
    let mut reader = Device::new()?;
    let early = reader.sync(&central).await?;
    assert_eq!(
        early.pulled, 0,
        "nothing is handed out past an open transaction"
    );
    let key = outpost_sync::reconcile::cursor_key(&central);
    let cursor = reader.engine.sync_state(&key)?.unwrap_or_default();
    assert!(
        cursor_xid(&cursor) < open_xid,
        "cursor {cursor} moved past the open transaction {open_xid}"
    );

    open.batch_execute("COMMIT").await?;

    // Once it commits, the next pull brings every row, the late one included.
    common::settle(&db).await?;
    let late = reader.sync(&central).await?;
    assert_eq!(late.pulled, 3);
    let mut all = document_ids(&fast)?;
    all.insert(slow_doc.clone());
    assert_eq!(document_ids(&reader)?, all);
    assert!(reader.verify(&central).await?.equal);

    // The slow writer's own outbox still holds what it pushed by hand: a replay.
    let replay = slow.sync(&central).await?;
    assert_eq!((replay.push_duplicate, replay.push_applied), (1, 0));
    assert_eq!(slow.engine.checksums()?, reader.engine.checksums()?);
    Ok(())
}

#[tokio::test]
async fn a_reader_pulling_while_many_devices_push_ends_up_with_every_document() -> TestResult {
    let _turn = SERVER.lock().await;
    let db = Db::new(true).await?;
    let api = db.rest_api().await?;
    let u = user();
    const WRITERS: usize = 4;
    const ROUNDS: usize = 3;

    let local = tokio::task::LocalSet::new();
    local
        .run_until(async {
            // Writers push concurrently, half of them through the REST API; each syncs after
            // every round of edits, so transactions of different devices overlap.
            let mut writers = Vec::new();
            for w in 0..WRITERS {
                let central = if w % 2 == 0 {
                    db.pg(&u)
                } else {
                    api.central(&u)
                };
                writers.push(tokio::task::spawn_local(async move {
                    let mut device = Device::new().map_err(|e| e.to_string())?;
                    let mut opts = device.options();
                    opts.batch_size = 1;
                    let mut ids = BTreeSet::new();
                    for round in 0..ROUNDS {
                        for n in 0..2 {
                            let text = format!("Writer {w} wrote note {n} in round {round}.");
                            let id = device
                                .put(&format!("notes/w{w}-r{round}-{n}.md"), &text)
                                .map_err(|e| e.to_string())?;
                            ids.insert(id);
                        }
                        outpost_sync::sync_once(
                            &device.sync_engine().map_err(|e| e.to_string())?,
                            &central,
                            &opts,
                            &mut |_| {},
                        )
                        .await
                        .map_err(|e| format!("writer {w}: {e}"))?;
                    }
                    Ok::<_, String>(ids)
                }));
            }

            // A reader pulls in a loop all the while, in small pages.
            let done = Rc::new(Cell::new(false));
            let reader = Device::new()?;
            let reader_central = db.pg(&u);
            let mut opts = reader.options();
            opts.pull_page = 2;
            let reader_task = {
                let done = done.clone();
                tokio::task::spawn_local(async move {
                    let mut pulls = 0;
                    while !done.get() {
                        outpost_sync::sync_once(
                            &reader.sync_engine().map_err(|e| e.to_string())?,
                            &reader_central,
                            &opts,
                            &mut |_| {},
                        )
                        .await
                        .map_err(|e| format!("reader: {e}"))?;
                        pulls += 1;
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    Ok::<_, String>((reader, reader_central, pulls))
                })
            };

            let mut written = BTreeSet::new();
            for w in writers {
                written.extend(w.await??);
            }
            done.set(true);
            let (mut reader, reader_central, pulls) = reader_task.await??;
            assert!(pulls > 0);

            // One last pull, after every writer is done: nothing may be missing.
            common::settle(&db).await?;
            reader.sync(&reader_central).await?;
            assert_eq!(written.len(), WRITERS * ROUNDS * 2);
            assert_eq!(document_ids(&reader)?, written);
            assert!(reader.verify(&reader_central).await?.equal);
            Ok::<_, Box<dyn std::error::Error>>(())
        })
        .await
}

#[tokio::test]
async fn a_replayed_push_is_all_duplicates_and_moves_nothing() -> TestResult {
    let _turn = SERVER.lock().await;
    let db = Db::new(true).await?;
    let api = db.rest_api().await?;
    for central in [db.pg(&user()), api.central(&user())] {
        let mut device = Device::new()?;
        device.put("notes/tides.md", "Tides follow the moon.\n\nTwice a day.")?;
        device.put("notes/bees.md", "Bees dance.")?;
        let conv = device.engine.create_conversation("chat")?;
        device
            .engine
            .add_message_with_vector(&conv.id, "user", "why do bees dance?", None)?;
        let changes = pending(&mut device)?;
        assert_eq!(changes.len(), 4);

        let first = central.push(&changes).await?;
        assert!(first.iter().all(|o| o.outcome == Outcome::Applied));
        let checksums = central.checksums().await?;
        let someone_else = user();
        common::settle(&db).await?;
        let page = central.pull("", 1000, None, &someone_else).await?;
        assert_eq!(page.changes.len(), 4);

        // The same records again, as after an answer lost on the way back.
        let again = central.push(&changes).await?;
        assert_eq!(again.len(), changes.len());
        assert!(
            again.iter().all(|o| o.outcome == Outcome::Duplicate),
            "{again:?}"
        );
        assert_eq!(central.checksums().await?, checksums);
        let after = central
            .pull(&page.next_cursor, 1000, None, &someone_else)
            .await?;
        assert!(after.changes.is_empty(), "a replay bumped change positions");
        assert_eq!(after.next_cursor, page.next_cursor);
    }
    Ok(())
}

#[tokio::test]
async fn one_users_rows_are_invisible_and_untouchable_for_another() -> TestResult {
    let _turn = SERVER.lock().await;
    let db = Db::new(true).await?;
    let api = db.rest_api().await?;
    let (a, b) = (user(), user());

    let mut alice = Device::new()?;
    let doc = alice.put(
        "notes/secret.md",
        "The launch code is hidden under the blue tile.",
    )?;
    let conv = alice.engine.create_conversation("private")?;
    alice
        .engine
        .add_message_with_vector(&conv.id, "user", "where is the code?", None)?;
    let alice_central = db.pg(&a);
    alice.sync(&alice_central).await?;
    assert!(alice.verify(&alice_central).await?.equal);

    // B pulls nothing of A's, through either transport (once A's rows could be handed out).
    common::settle(&db).await?;
    for central in [db.pg(&b), api.central(&b)] {
        let mut bob = Device::new()?;
        let report = bob.sync(&central).await?;
        assert_eq!(report.pulled, 0);
        assert!(central
            .pull("", 1000, None, &user())
            .await?
            .changes
            .is_empty());
        assert!(bob.verify(&central).await?.equal);
    }

    // Nor does B's search see A's chunks.
    let query = alice
        .embedder()
        .embed(&["where is the launch code hidden"])?;
    let (status, hits) = rpc(
        &api.url,
        Some(&common::jwt(&b)),
        "match_chunks",
        json!({ "query_embedding": query[0], "match_count": 10 }),
    )
    .await?;
    assert_eq!((status, hits), (200, json!([])));
    let (status, hits) = rpc(
        &api.url,
        Some(&common::jwt(&a)),
        "match_chunks",
        json!({ "query_embedding": query[0], "match_count": 10 }),
    )
    .await?;
    assert_eq!(status, 200);
    assert_eq!(hits[0]["document_id"], doc.as_str(), "A does see them");

    // Nor raw SQL as B: no rows to read, none to change.
    for table in [
        "outpost_documents",
        "outpost_document_chunks",
        "outpost_conversations",
        "outpost_messages",
    ] {
        assert_eq!(
            scalar_as(&db, &b, &format!("SELECT count(*) FROM {table}")).await?,
            "0",
            "{table}"
        );
    }
    let c = db.admin().await?;
    begin_as(&c, &b).await?;
    let updated = c
        .execute("UPDATE outpost_documents SET title = 'mine now'", &[])
        .await?;
    let deleted = c.execute("DELETE FROM outpost_messages", &[]).await?;
    c.batch_execute("COMMIT").await?;
    assert_eq!((updated, deleted), (0, 0));

    // B pushing a record with A's document id makes B's own row; A's stays as it was.
    let mut record = alice
        .engine
        .change_record(Kind::Document, &doc)?
        .expect("A's document");
    if let Change::Document(d) = &mut record {
        d.hlc += 1 << 32;
        d.title = "B's copy".into();
    }
    let outcome = db.pg(&b).push(std::slice::from_ref(&record)).await?;
    assert_eq!(outcome[0].outcome, Outcome::Applied);
    assert_eq!(
        db.scalar(&format!(
            "SELECT count(*) FROM outpost_documents WHERE id = '{doc}'"
        ))
        .await?,
        "2"
    );
    assert_eq!(
        db.scalar(&format!(
            "SELECT title FROM outpost_documents WHERE id = '{doc}' AND owner = '{a}'"
        ))
        .await?,
        "notes/secret.md"
    );
    assert!(alice.verify(&alice_central).await?.equal);
    common::settle(&db).await?;
    assert_eq!(alice.sync(&alice_central).await?.pulled, 0);

    // Without a user, nobody pushes: not with a bogus JWT, not as anon, not without a token.
    let changes = vec![record];
    let bogus = outpost_sync::rest::RestTransport::new(
        &api.url,
        common::anon_key(),
        "not.a.jwt",
        Duration::from_secs(5),
    )?;
    let anon_jwt = sign(
        json!({ "role": "anon", "aud": "authenticated", "exp": 4_102_444_800u64 }),
        common::jwt_secret(),
    );
    let anon = outpost_sync::rest::RestTransport::new(
        &api.url,
        common::anon_key(),
        &anon_jwt,
        Duration::from_secs(5),
    )?;
    for central in [Central::new(bogus), Central::new(anon)] {
        let err = central.push(&changes).await.expect_err("refused");
        assert!(matches!(err, Error::Auth { .. }), "{err}");
    }
    let (status, _) = rpc(
        &api.url,
        None,
        "outpost_push",
        json!({ "changes": changes }),
    )
    .await?;
    assert_eq!(status, 401);
    assert_eq!(
        db.scalar(&format!(
            "SELECT count(*) FROM outpost_documents WHERE id = '{doc}'"
        ))
        .await?,
        "2"
    );
    Ok(())
}

#[tokio::test]
async fn synced_chunks_are_searchable_on_the_central_store() -> TestResult {
    let _turn = SERVER.lock().await;
    let db = Db::new(true).await?;
    let api = db.rest_api().await?;
    let u = user();
    // Real embeddings: the question must find the passage that answers it.
    let mut device = Device::with_model()?;
    let tides = device.put(
        "notes/tides.md",
        "Tides are caused by the gravitational pull of the moon and the sun on the oceans.",
    )?;
    let bees = device.put(
        "notes/bees.md",
        "Honey bees tell each other where flowers are with a waggle dance.",
    )?;
    device.put(
        "notes/volcanoes.md",
        "Volcanoes erupt when molten rock rises through cracks in the crust.",
    )?;
    device.sync(&db.pg(&u)).await?;

    let question = "what causes tides";
    let embedding = common::model().embed(&[question])?.remove(0);
    let jwt = common::jwt(&u);

    // As supabase-js: rpc('match_chunks', { query_embedding, match_count }).
    let (status, hits) = rpc(
        &api.url,
        Some(&jwt),
        "match_chunks",
        json!({ "query_embedding": embedding, "match_count": 3 }),
    )
    .await?;
    assert_eq!(status, 200, "{hits}");
    let hits = hits.as_array().expect("rows");
    assert_eq!(hits.len(), 3);
    assert_eq!(hits[0]["document_id"], tides.as_str());
    assert_eq!(hits[0]["collection"], "notes");
    assert_eq!(hits[0]["metadata"]["source"], "notes/tides.md");
    let similarity = |h: &Value| h["similarity"].as_f64().unwrap_or(f64::NAN);
    assert!(hits
        .windows(2)
        .all(|w| similarity(&w[0]) >= similarity(&w[1])));

    // A metadata filter narrows it to one document.
    let (_, filtered) = rpc(
        &api.url,
        Some(&jwt),
        "match_chunks",
        json!({ "query_embedding": embedding, "match_count": 3,
                "filter": { "source": "notes/bees.md" } }),
    )
    .await?;
    assert_eq!(filtered.as_array().map(Vec::len), Some(1));
    assert_eq!(filtered[0]["document_id"], bees.as_str());

    // hybrid_search: full text and vectors agree.
    let (status, hybrid) = rpc(
        &api.url,
        Some(&jwt),
        "hybrid_search",
        json!({ "query_text": question, "query_embedding": embedding, "match_count": 3 }),
    )
    .await?;
    assert_eq!(status, 200, "{hybrid}");
    assert_eq!(hybrid[0]["document_id"], tides.as_str());

    // The same through SQL, as a trusted gateway would.
    let vector = serde_json::to_string(&embedding)?;
    let c = db.admin().await?;
    begin_as(&c, &u).await?;
    let top = c
        .query_one(
            "SELECT document_id::text FROM match_chunks($1::text::vector, 3) LIMIT 1",
            &[&vector],
        )
        .await?;
    let top_hybrid = c
        .query_one(
            "SELECT document_id::text FROM hybrid_search($1, $2::text::vector, 3) LIMIT 1",
            &[&question, &vector],
        )
        .await?;
    c.batch_execute("COMMIT").await?;
    assert_eq!(top.get::<_, String>(0), tides);
    assert_eq!(top_hybrid.get::<_, String>(0), tides);
    Ok(())
}

/// Syncs `device` with `opts` and returns the error it must end with, checking that nothing
/// moved: the outbox and the local data are as before.
async fn refused(
    device: &mut Device,
    central: &Central,
    opts: &SyncOptions,
) -> Result<Error, Box<dyn std::error::Error>> {
    let (depth, checksums) = (device.engine.outbox_depth()?, device.engine.checksums()?);
    let err = outpost_sync::sync_once(&device.sync_engine()?, central, opts, &mut |_| {})
        .await
        .expect_err("the sync must be refused");
    assert_eq!(device.engine.outbox_depth()?, depth);
    assert_eq!(device.engine.checksums()?, checksums);
    Ok(err)
}

#[tokio::test]
async fn a_missing_or_outdated_central_schema_is_refused_before_anything_moves() -> TestResult {
    if local_only(
        "a_missing_or_outdated_central_schema_is_refused_before_anything_moves",
        "it needs databases of its own, unmigrated and with an older schema",
    ) {
        return Ok(());
    }
    let _turn = SERVER.lock().await;
    let mut device = Device::new()?;
    device.put("notes/a.md", "Something worth keeping.")?;
    let opts = device.options();

    // No migration at all.
    let bare = Db::new(false).await?;
    let api = bare.rest_api().await?;
    for central in [bare.pg(&user()), api.central(&user())] {
        let err = refused(&mut device, &central, &opts).await?;
        assert!(matches!(err, Error::SchemaMissing { .. }), "{err}");
        assert!(err.to_string().contains(MIGRATION), "{err}");
    }

    // An older version of the schema.
    let old = Db::new(true).await?;
    old.admin()
        .await?
        .batch_execute(
            "CREATE OR REPLACE FUNCTION public.outpost_info() RETURNS jsonb LANGUAGE sql STABLE AS
             $$ SELECT jsonb_build_object('schema_version', 0, 'embedding_dims', 384,
                                          'migration', '20250101000000_outpost_sync') $$",
        )
        .await?;
    let api = old.rest_api().await?;
    for central in [old.pg(&user()), api.central(&user())] {
        let err = refused(&mut device, &central, &opts).await?;
        assert!(
            matches!(
                err,
                Error::SchemaOutdated {
                    found: 0,
                    needed: 1,
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains(MIGRATION), "{err}");
    }

    Ok(())
}

#[tokio::test]
async fn a_device_whose_model_has_another_dimension_is_refused_before_anything_moves() -> TestResult
{
    let _turn = SERVER.lock().await;
    // A device whose model makes 768-d vectors, against a 384-d central store.
    let good = Db::new(true).await?;
    let api = good.rest_api().await?;
    let mut wide = Device::with_embedder(std::sync::Arc::new(HashEmbedder::new(768)))?;
    wide.put("notes/wide.md", "A wide vector.")?;
    let mut opts = SyncOptions::new(wide.embedder().model_id(), 768);
    opts.backoff = Backoff::none();
    let users = [user(), user()];
    for central in [good.pg(&users[0]), api.central(&users[1])] {
        let err = refused(&mut wide, &central, &opts).await?;
        assert!(
            matches!(
                err,
                Error::DimensionMismatch {
                    central: 384,
                    local: 768,
                    ..
                }
            ),
            "{err}"
        );
    }
    assert_eq!(
        good.scalar(&format!(
            "SELECT count(*) FROM outpost_documents WHERE owner IN ('{}', '{}')",
            users[0], users[1]
        ))
        .await?,
        "0"
    );
    Ok(())
}

#[tokio::test]
async fn pushes_that_deadlock_are_retried() -> TestResult {
    if local_only(
        "pushes_that_deadlock_are_retried",
        "setting deadlock_timeout takes a superuser",
    ) {
        return Ok(());
    }
    let _turn = SERVER.lock().await;
    let db = Db::new(true).await?;
    let u = user();
    let central = db.pg(&u);
    let mut device = Device::new()?;
    let first = device.put("notes/1.md", "One.")?;
    let second = device.put("notes/2.md", "Two.")?;
    device.sync(&central).await?;
    // Edited in the other order: the next push locks 2 before 1.
    device.put("notes/2.md", "Two, edited.")?;
    device.put("notes/1.md", "One, edited.")?;

    // Another writer holds 1 in an open transaction (and waits long before it looks for
    // deadlocks, so that the device's push is the one the server aborts).
    let other = user();
    let older = |id: &str| -> Result<Change, Box<dyn std::error::Error>> {
        let mut c = device
            .engine
            .change_record(Kind::Document, id)?
            .expect("stored");
        if let Change::Document(d) = &mut c {
            d.device.clone_from(&other);
            d.hlc = 1;
        }
        Ok(c)
    };
    let (hold_first, hold_second) = (older(&first)?, older(&second)?);
    let open = db.admin().await?;
    open.batch_execute("BEGIN; SET LOCAL deadlock_timeout = '30s'")
        .await?;
    let claims = json!({ "sub": u, "role": "authenticated" }).to_string();
    open.batch_execute("SET LOCAL ROLE authenticated").await?;
    open.execute(
        "SELECT set_config('request.jwt.claims', $1, true)",
        &[&claims],
    )
    .await?;
    let push = "SELECT public.outpost_push($1::text::jsonb)::text";
    open.query_one(push, &[&serde_json::to_string(&[hold_first])?])
        .await?;

    let local = tokio::task::LocalSet::new();
    local
        .run_until(async {
            let syncing = tokio::task::spawn_local(async move {
                let report = device.sync(&central).await;
                (device, central, report)
            });
            // Once the device's push holds 2 and waits for 1, taking 2 closes the cycle.
            let waiting = "SELECT count(*) FROM pg_stat_activity
                           WHERE datname = current_database() AND wait_event_type = 'Lock'";
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while db.scalar(waiting).await? == "0" {
                assert!(
                    std::time::Instant::now() < deadline,
                    "the push never waited"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            open.query_one(push, &[&serde_json::to_string(&[hold_second])?])
                .await?;
            open.batch_execute("COMMIT").await?;
            let (device, central, report) = syncing.await?;
            let report = report?;
            assert_eq!(report.push_applied, 2, "{report:?}");
            assert!(device.verify(&central).await?.equal);
            Ok::<_, Box<dyn std::error::Error>>(())
        })
        .await
}
