//! The local SQLite schema: versioned migrations from `migrations/sqlite/*.sql`.
//!
//! The version lives in `PRAGMA user_version` and is bumped inside the same transaction as the
//! migration, so a crash mid-upgrade leaves the previous version intact. Files are marked with an
//! `application_id` so that Outpost never migrates somebody else's SQLite database.

use std::path::Path;

use rusqlite::Connection;

use crate::error::{Error, Result};

/// `application_id` written into every Outpost database header ("OPST").
pub const APPLICATION_ID: i64 = 0x4F50_5354;

/// The migrations, in order; migration `i` takes the schema from version `i` to `i + 1`.
pub const MIGRATIONS: &[&str] = &[
    include_str!("../../../migrations/sqlite/0001_core.sql"),
    include_str!("../../../migrations/sqlite/0002_conversations.sql"),
    include_str!("../../../migrations/sqlite/0003_sync.sql"),
    include_str!("../../../migrations/sqlite/0004_work_queue.sql"),
    include_str!("../../../migrations/sqlite/0005_ann_log.sql"),
    include_str!("../../../migrations/sqlite/0006_sync_parked.sql"),
];

/// The schema version this build writes.
pub const VERSION: i64 = MIGRATIONS.len() as i64;

/// Brings the database up to [`VERSION`], or refuses a newer or foreign one.
///
/// # Errors
/// [`Error::SchemaTooNew`] for a database written by a newer build, [`Error::ForeignDatabase`] for
/// another application's SQLite file, and SQLite errors from the migrations themselves.
pub fn migrate(conn: &mut Connection, path: &Path) -> Result<()> {
    migrate_to(conn, path, VERSION)
}

/// Brings the database up to `target` (at most [`VERSION`]); tests use it to build old schemas.
///
/// # Errors
/// As [`migrate`].
pub fn migrate_to(conn: &mut Connection, path: &Path, target: i64) -> Result<()> {
    let found = check(conn, path)?;
    if found >= target.min(VERSION) {
        return Ok(());
    }
    // Migrations that rebuild a table need foreign keys off (the pragma is a no-op inside a
    // transaction); each one checks them itself before it commits.
    let fk: bool = conn.query_row("PRAGMA foreign_keys", [], |r| r.get(0))?;
    conn.pragma_update(None, "foreign_keys", false)?;
    let result = (found..target.min(VERSION)).try_for_each(|version| {
        let tx = conn.transaction()?;
        tx.execute_batch(MIGRATIONS[version as usize])?;
        let broken: i64 =
            tx.query_row("SELECT count(*) FROM pragma_foreign_key_check", [], |r| {
                r.get(0)
            })?;
        if broken > 0 {
            return Err(Error::Corrupt {
                path: path.to_path_buf(),
                detail: format!(
                    "migration to version {} would leave {broken} broken foreign keys",
                    version + 1
                ),
            });
        }
        tx.pragma_update(None, "user_version", version + 1)?;
        if version == 0 {
            tx.pragma_update(None, "application_id", APPLICATION_ID)?;
        }
        tx.commit()?;
        Ok(())
    });
    conn.pragma_update(None, "foreign_keys", fk)?;
    result
}

/// Reads the schema version without changing anything, refusing newer and foreign databases.
///
/// # Errors
/// As [`migrate`].
pub fn check(conn: &Connection, path: &Path) -> Result<i64> {
    let found: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let app_id: i64 = conn.query_row("PRAGMA application_id", [], |r| r.get(0))?;
    if found > VERSION {
        return Err(Error::SchemaTooNew {
            path: path.to_path_buf(),
            found,
            supported: VERSION,
        });
    }
    if app_id != APPLICATION_ID {
        let objects: i64 =
            conn.query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get(0))?;
        if app_id != 0 || objects > 0 {
            return Err(Error::ForeignDatabase {
                path: path.to_path_buf(),
                application_id: app_id,
            });
        }
    }
    Ok(found)
}

/// The schema as SQL text, sorted, for comparing two databases.
///
/// # Errors
/// SQLite errors.
pub fn dump(conn: &Connection) -> Result<Vec<String>> {
    let mut stmt = conn.prepare(
        "SELECT type || ' ' || name || ': ' || coalesce(sql, '') FROM sqlite_schema ORDER BY type, name",
    )?;
    let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}
