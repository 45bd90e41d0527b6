//! Bounded pushes: a push call carries at most `batch_size` records and `batch_bytes` of them;
//! a call the server refuses as too slow (its `statement_timeout`) or as malformed is split
//! until the one record it cannot take is alone, and that record is set aside with the
//! server's reason, in the outbox still, without holding up the rest or the pull.
//!
//! The "too slow" record is played by a trigger on the test database that sleeps past the
//! statement timeout for documents under `slow/`, and the malformed one by a trigger that
//! rejects documents under `bad/` as the server rejects a record it cannot store: each stands
//! for what a real server does with such a record, on the real Postgres.

mod common;

use std::time::Duration;

use common::{user, Db, Device, TestResult};
use outpost_sync::{Backoff, Central, SyncOptions};

const TRIGGERS: &str = r#"
create function public.test_refuse() returns trigger language plpgsql as $$
begin
  if new.source like 'slow/%' then perform pg_sleep(5); end if;
  if new.source like 'bad/%' then
    raise exception 'document % cannot be stored here', new.source using errcode = '22023';
  end if;
  return new;
end $$;
create trigger test_refuse before insert or update on public.outpost_documents
  for each row execute function public.test_refuse();
"#;

/// A device holding six one-line notes and, last, a note of some 40 paragraphs (as many
/// vectors), far larger than each of the others.
fn six_notes_and_a_long_one() -> Result<Device, Box<dyn std::error::Error>> {
    let mut a = Device::new()?;
    for n in 0..6 {
        a.put(&format!("notes/{n}.md"), &format!("Note {n}."))?;
    }
    let long: String = (0..40).map(|p| format!("Paragraph {p}.\n\n")).collect();
    a.put("notes/long.md", &long)?;
    Ok(a)
}

fn opts(device: &Device) -> SyncOptions {
    let mut o = device.options();
    o.backoff = Backoff {
        initial: Duration::from_millis(10),
        max: Duration::from_millis(50),
        give_up_after: Some(Duration::from_millis(200)),
    };
    o
}

#[tokio::test]
async fn a_record_the_server_refuses_is_set_aside_and_the_rest_goes_through() -> TestResult {
    if common::local_only(
        "a_record_the_server_refuses_is_set_aside_and_the_rest_goes_through",
        "it adds a trigger to the central tables, which needs a superuser",
    ) {
        return Ok(());
    }
    let db = Db::new(true).await?;
    db.admin().await?.batch_execute(TRIGGERS).await?;
    let u = user();
    // 2 s for a call: the server cancels the statement at 1.8 s.
    let central = Central::new(outpost_sync::pg::PgTransport::new(
        &db.url,
        &u,
        Duration::from_secs(2),
    )?);
    let mut a = Device::new()?;
    for n in 0..4 {
        a.put(&format!("notes/{n}.md"), &format!("Note {n}."))?;
    }
    a.put(
        "slow/huge.md",
        "A document the server takes too long to store.",
    )?;
    a.put("bad/odd.md", "A document the server rejects.")?;
    for n in 4..8 {
        a.put(&format!("notes/{n}.md"), &format!("Note {n}."))?;
    }

    let report =
        outpost_sync::sync_once(&a.sync_engine()?, &central, &opts(&a), &mut |_| {}).await?;
    assert_eq!((report.push_applied, report.parked), (8, 2), "{report:?}");
    assert_eq!(
        a.engine.outbox_depth()?,
        2,
        "the refused changes stay queued"
    );
    let status = outpost_sync::status(&a.engine)?;
    let mut parked: Vec<(String, String)> = status
        .parked
        .iter()
        .map(|p| (p.kind.clone(), p.reason.clone()))
        .collect();
    parked.sort();
    assert_eq!(parked.len(), 2);
    assert!(parked.iter().all(|(kind, _)| kind == "document"));
    assert!(
        parked
            .iter()
            .any(|(_, r)| r.contains("too large for the server")),
        "{parked:?}"
    );
    assert!(
        parked
            .iter()
            .any(|(_, r)| r.contains("bad/odd.md cannot be stored here")),
        "{parked:?}"
    );

    // The next round neither retries them (not due yet) nor fails; another device pulls the
    // eight that were stored.
    let again =
        outpost_sync::sync_once(&a.sync_engine()?, &central, &opts(&a), &mut |_| {}).await?;
    assert_eq!((again.pushed, again.parked), (0, 0), "{again:?}");
    let b = Device::new()?;
    common::settle(&db).await?;
    let pulled =
        outpost_sync::sync_once(&b.sync_engine()?, &central, &opts(&b), &mut |_| {}).await?;
    assert_eq!(pulled.pulled, 8, "{pulled:?}");

    // Once the server can take it, an edit of the slow document is pushed at once.
    db.admin()
        .await?
        .batch_execute("drop trigger test_refuse on public.outpost_documents")
        .await?;
    a.put(
        "slow/huge.md",
        "A document the server takes too long to store, edited.",
    )?;
    let edited =
        outpost_sync::sync_once(&a.sync_engine()?, &central, &opts(&a), &mut |_| {}).await?;
    assert_eq!((edited.push_applied, edited.parked), (1, 0), "{edited:?}");
    let status = outpost_sync::status(&a.engine)?;
    assert_eq!(
        status.parked.len(),
        1,
        "the rejected one waits for its time"
    );
    assert_eq!(a.engine.outbox_depth()?, 1);
    Ok(())
}

#[tokio::test]
async fn push_calls_keep_within_the_byte_cap_and_a_larger_record_goes_alone() -> TestResult {
    let db = Db::new(true).await?;
    let u = user();
    let central = db.pg(&u);
    let a = six_notes_and_a_long_one()?;
    let batch = a.engine.outbox_batch(100)?;
    let small = central.push_size(&batch.changes[0]).await;
    let large = central.push_size(&batch.changes[6]).await;
    assert!(large > 4 * small);

    // Room for two small records per call: three calls for the six, one for the long one.
    let mut o = opts(&a);
    o.batch_bytes = 2 * small + small / 2;
    let report = outpost_sync::sync_once(&a.sync_engine()?, &central, &o, &mut |_| {}).await?;
    assert_eq!(
        (report.push_applied, report.push_calls),
        (7, 4),
        "{report:?}"
    );
    assert_eq!(a.engine.outbox_depth()?, 0);
    Ok(())
}

#[tokio::test]
async fn over_rest_a_request_too_large_and_a_statement_timeout_set_the_record_aside() -> TestResult
{
    if common::local_only(
        "over_rest_a_request_too_large_and_a_statement_timeout_set_the_record_aside",
        "it sets the stand-in's body limit and the role's statement_timeout of its own database",
    ) {
        return Ok(());
    }
    let db = Db::new(true).await?;
    let admin = db.admin().await?;
    admin.batch_execute(TRIGGERS).await?;
    // As Supabase sets it per role (8 s for `authenticated`), shorter here so the test is quick.
    let name = db.url.rsplit('/').next().ok_or("a database name")?;
    admin
        .batch_execute(&format!(
            "alter role authenticated in database {name} set statement_timeout = '1s'"
        ))
        .await?;
    let mut config = db.standin_config();
    config.max_body_bytes = 64 * 1024;
    let shim = outpost_sync::shim::Shim::start_with(config).await?;
    let u = user();
    let central = common::rest(&shim.url, &u);

    let mut a = Device::new()?;
    for n in 0..4 {
        a.put(&format!("notes/{n}.md"), &format!("Note {n}."))?;
    }
    // Some 60 chunks of 384 floats as JSON: more than the 64 kB the gateway takes in one body.
    let long: String = (0..60).map(|p| format!("Paragraph {p}.\n\n")).collect();
    a.put("notes/long.md", &long)?;
    a.put(
        "slow/huge.md",
        "A document the server takes too long to store.",
    )?;

    let report =
        outpost_sync::sync_once(&a.sync_engine()?, &central, &opts(&a), &mut |_| {}).await?;
    assert_eq!((report.push_applied, report.parked), (4, 2), "{report:?}");
    let reasons: Vec<String> = outpost_sync::status(&a.engine)?
        .parked
        .into_iter()
        .map(|p| p.reason)
        .collect();
    assert!(
        reasons
            .iter()
            .all(|r| r.contains("too large for the server")),
        "{reasons:?}"
    );
    assert!(reasons.iter().any(|r| r.contains("413")), "{reasons:?}");
    assert!(
        reasons.iter().any(|r| r.contains("statement timeout")),
        "{reasons:?}"
    );
    assert_eq!(a.engine.outbox_depth()?, 2);
    Ok(())
}

#[tokio::test]
async fn pull_pages_keep_within_the_byte_cap_and_a_larger_record_comes_alone() -> TestResult {
    let db = Db::new(true).await?;
    let u = user();
    let central = db.pg(&u);
    let a = six_notes_and_a_long_one()?;
    outpost_sync::sync_once(&a.sync_engine()?, &central, &opts(&a), &mut |_| {}).await?;
    common::settle(&db).await?;

    // A whole page by rows alone, then pages of at most 6 kB: the long document (some 40
    // vectors) exceeds that and comes alone; the small ones share pages.
    central.check(&a.options().model, a.options().dims).await?;
    let all = central.pull("", 100, None, "").await?;
    assert_eq!((all.changes.len(), all.more), (7, false));
    let (mut cursor, mut pages) = (String::new(), Vec::new());
    loop {
        let page = central.pull(&cursor, 100, Some(6_000), "").await?;
        pages.push(page.changes.len());
        cursor = page.next_cursor;
        if !page.more {
            break;
        }
    }
    assert_eq!(pages.iter().sum::<usize>(), 7, "{pages:?}");
    assert!(pages.len() >= 3 && pages.contains(&1), "{pages:?}");

    // A device pulling with the cap gets everything, exactly once.
    let b = Device::new()?;
    let mut o = opts(&b);
    o.pull_bytes = 6_000;
    let report = outpost_sync::sync_once(&b.sync_engine()?, &central, &o, &mut |_| {}).await?;
    assert_eq!(report.pulled, 7, "{report:?}");
    assert!(b.verify(&central).await?.equal);
    Ok(())
}
