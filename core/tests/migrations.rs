//! Schema migrations: every old version upgrades to the fresh schema; newer, foreign and
//! non-SQLite files are refused untouched.

use outpost_core::db::schema::{dump, VERSION};
use outpost_core::{Error, Store};

type TestResult = Result<(), Box<dyn std::error::Error>>;

#[test]
fn every_old_version_migrates_to_the_fresh_schema() -> TestResult {
    let dir = tempfile::tempdir()?;
    let fresh = Store::open(dir.path().join("fresh.db"))?;
    let expected = dump(fresh.connection())?;
    assert_eq!(fresh.schema_version()?, VERSION);
    for old in 0..VERSION {
        let path = dir.path().join(format!("v{old}.db"));
        drop(Store::open_at_version(&path, old)?);
        let upgraded = Store::open(&path)?;
        assert_eq!(upgraded.schema_version()?, VERSION, "from v{old}");
        assert_eq!(
            dump(upgraded.connection())?,
            expected,
            "schema migrated from v{old} differs from a fresh one"
        );
        assert_eq!(upgraded.integrity_check()?, vec!["ok".to_string()]);
    }
    Ok(())
}

#[test]
fn data_written_at_version_2_survives_the_upgrade_and_is_queued_for_sync() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("v2.db");
    {
        // Written as a version-2 build wrote it: no stamps, no device, no outbox.
        let mut v2 = Store::open_at_version(&path, 2)?;
        let c = v2.ensure_collection("notes", "test-model", 3)?;
        let conn = v2.connection();
        conn.execute_batch(&format!(
            "INSERT INTO documents (id, collection_id, source, title, content_hash, created_at, updated_at)
                 VALUES ('d1', {id}, 'a.txt', 'A', 'h', 1000, 2000);
             INSERT INTO chunks (id, document_id, ordinal, text, token_count, byte_start, byte_end)
                 VALUES ('k1', 'd1', 0, 'alpha', 1, 0, 5);
             INSERT INTO vec_chunks_{id} (rowid, embedding) VALUES (1, '[1, 0, 0]');
             INSERT INTO conversations (id, title, created_at, updated_at) VALUES ('c1', 'chat', 1000, 3000);
             INSERT INTO messages (id, conversation_id, seq, role, content, created_at, updated_at)
                 VALUES ('m1', 'c1', 1, 'user', 'hello', 3000, 3000);",
            id = c.id
        ))?;
    }
    let store = Store::open(&path)?;
    assert_eq!(store.list_documents(None, false, 10)?.len(), 1);
    assert_eq!(store.stats()?.collections[0].chunks, 1);
    assert_eq!(store.recent_messages("c1", 10)?.len(), 1);
    assert_eq!(
        store.device_id().len(),
        36,
        "a device id is made on upgrade"
    );
    let (hlc, device, home): (i64, String, String) = store.connection().query_row(
        "SELECT hlc, device, home_device FROM documents WHERE id = 'd1'",
        [],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    assert_eq!(outpost_core::hlc::physical_ms(hlc), 2000);
    assert_eq!(
        (device.as_str(), home.as_str()),
        (store.device_id(), store.device_id())
    );
    // Everything that existed is waiting for the first push, conversation before its message.
    let kinds: Vec<String> = store
        .connection()
        .prepare("SELECT kind FROM sync_outbox ORDER BY seq")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    assert_eq!(kinds, ["conversation", "document", "message"]);
    Ok(())
}

#[test]
fn a_newer_schema_is_refused_and_left_alone() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("new.db");
    drop(Store::open(&path)?);
    {
        let conn = rusqlite::Connection::open(&path)?;
        conn.pragma_update(None, "user_version", VERSION + 7)?;
    }
    let before = std::fs::read(&path)?;
    match Store::open(&path) {
        Err(Error::SchemaTooNew {
            found, supported, ..
        }) => {
            assert_eq!((found, supported), (VERSION + 7, VERSION));
        }
        other => panic!("expected SchemaTooNew, got {other:?}"),
    }
    let msg = Store::open(&path)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(msg.contains("newer") && msg.contains("new.db"), "{msg}");
    assert_eq!(std::fs::read(&path)?, before);
    Ok(())
}

#[test]
fn a_file_that_is_not_sqlite_is_refused_and_left_alone() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("notes.txt");
    let content = b"these are my notes, not a database\n".repeat(200);
    std::fs::write(&path, &content)?;
    let err = Store::open(&path).expect_err("a text file is not a database");
    assert!(matches!(err, Error::NotADatabase { .. }), "{err:?}");
    assert!(err.to_string().contains("notes.txt"));
    assert_eq!(std::fs::read(&path)?, content);
    Ok(())
}

#[test]
fn another_applications_sqlite_file_is_refused() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("other.db");
    {
        let conn = rusqlite::Connection::open(&path)?;
        conn.execute_batch(
            "CREATE TABLE contacts (name TEXT); INSERT INTO contacts VALUES ('ada');",
        )?;
    }
    let err = Store::open(&path).expect_err("foreign database");
    assert!(matches!(err, Error::ForeignDatabase { .. }), "{err:?}");
    let conn = rusqlite::Connection::open(&path)?;
    let tables: i64 = conn.query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get(0))?;
    assert_eq!(tables, 1, "nothing was added to the foreign database");
    Ok(())
}
