//! A document the central store refuses does not stop `outpost sync`: the others are pushed,
//! the refused one is set aside, and `outpost sync status` says which and why. The refusal is
//! played by a trigger on the real PostgreSQL that `scripts/test.sh` starts, rejecting one
//! document as a server rejects a record it cannot store.

mod common;

use serde_json::Value;

use common::central::{outpost_as, Central};
use common::{arg, TestDb, TestResult};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_document_is_set_aside_and_listed_by_sync_status() -> TestResult {
    let central = Central::new("parked").await?;
    common::central::connect(&central.url)
        .await?
        .batch_execute(
            r#"
            create function public.test_refuse() returns trigger language plpgsql as $$
            begin
              if new.source like '%/refused-%' then
                raise exception 'document % is refused', new.source using errcode = '22023';
              end if;
              return new;
            end $$;
            create trigger test_refuse before insert or update on public.outpost_documents
              for each row execute function public.test_refuse();
            "#,
        )
        .await?;
    let user = uuid::Uuid::now_v7().to_string();
    let db = TestDb::new()?;
    let folder = tempfile::tempdir()?;
    for name in ["a.md", "b.md", "refused-c.md", "d.md"] {
        std::fs::write(folder.path().join(name), format!("The note {name}."))?;
    }
    let run = |args: &[&str]| -> TestResult<(i32, String, String)> {
        let out = outpost_as(&db, &central.url, &user, args).output()?;
        Ok((
            common::exit_code(out.status),
            String::from_utf8(out.stdout)?,
            String::from_utf8(out.stderr)?,
        ))
    };
    let (code, _, stderr) = run(&["ingest", arg(folder.path())])?;
    assert_eq!(code, 0, "{stderr}");

    let (code, stdout, stderr) = run(&["sync", "--once", "--json"])?;
    assert_eq!(
        code, 0,
        "the sync goes on past the refused document: {stderr}"
    );
    let report: Value = serde_json::from_str(&stdout)?;
    assert_eq!(
        (report["push_applied"].as_u64(), report["parked"].as_u64()),
        (Some(3), Some(1)),
        "{report}"
    );

    let (_, stdout, _) = run(&["sync", "status", "--json"])?;
    let status: Value = serde_json::from_str(&stdout)?;
    assert_eq!(status["outbox_depth"], 1, "{status}");
    let parked = status["parked"].as_array().ok_or("no parked list")?;
    assert_eq!(parked.len(), 1, "{status}");
    assert_eq!(parked[0]["kind"], "document");
    assert!(
        parked[0]["reason"]
            .as_str()
            .unwrap_or("")
            .contains("refused-c.md is refused"),
        "{status}"
    );
    let (_, text, _) = run(&["sync", "status"])?;
    assert!(
        text.contains("set aside") && text.contains("refused-c.md is refused"),
        "{text}"
    );
    assert_eq!(
        central
            .scalar(&format!(
                "SELECT count(*) FROM outpost_documents WHERE owner = '{user}'::uuid"
            ))
            .await?,
        3
    );
    Ok(())
}
