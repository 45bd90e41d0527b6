//! Schema migrations: every old version upgrades to the fresh schema; newer, foreign and
//! non-SQLite files are refused untouched.

use outpost_core::schema::{dump, VERSION};
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
fn data_written_at_version_1_survives_the_upgrade() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("v1.db");
    {
        let mut v1 = Store::open_at_version(&path, 1)?;
        let c = v1.ensure_collection("notes", "test-model", 3)?;
        let doc = outpost_core::NewDocument {
            source: "a.txt".into(),
            title: "A".into(),
            content_hash: "h".into(),
            ..Default::default()
        };
        let chunk = outpost_core::NewChunk {
            text: "alpha".into(),
            byte_end: 5,
            embedding: vec![1.0, 0.0, 0.0],
            ..Default::default()
        };
        v1.put_document(&c, &doc, &[chunk])?;
    }
    let store = Store::open(&path)?;
    assert_eq!(store.list_documents(None, false, 10)?.len(), 1);
    assert_eq!(store.stats()?.collections[0].chunks, 1);
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
