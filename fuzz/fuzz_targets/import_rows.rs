//! The SQLite-rows importer (`outpost import sqlite`): another application's SQLite file, built
//! from structured fuzz input (a table of any name with any columns and rows of any SQLite
//! types, optionally with bytes of the file overwritten afterwards), read by
//! `ingest::import::sqlite_records` with a table spec naming existing or missing columns, then
//! imported through `Engine::import` into a fresh database. What must hold: a missing table or
//! column, a damaged or foreign file is an error naming it, never a panic; bad rows are reported
//! one by one; the import returns `Ok` and the database is sound afterwards.
#![no_main]

use std::sync::OnceLock;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use outpost_core::ingest::import::{sqlite_records, ImportOptions, TableSpec};
use outpost_fuzz::{template, Scratch};
use rusqlite::types::Value;

#[derive(Arbitrary, Debug)]
enum Cell {
    Null,
    Integer(i64),
    Real(f64),
    Text(String),
    /// Text that need not be UTF-8.
    TextBytes(Vec<u8>),
    Blob(Vec<u8>),
}

#[derive(Arbitrary, Debug)]
struct Rows {
    table: String,
    columns: Vec<String>,
    rows: Vec<Vec<Cell>>,
    /// Indexes into `columns` (wrapping), or past them for a name the table lacks.
    id: u8,
    text: u8,
    title: Option<u8>,
    metadata: Vec<u8>,
    /// Bytes written over the finished file at an offset.
    damage: Option<(u16, Vec<u8>)>,
}

static EMPTY: OnceLock<Scratch> = OnceLock::new();

fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn write_source(path: &std::path::Path, input: &Rows) -> rusqlite::Result<()> {
    let db = rusqlite::Connection::open(path)?;
    let columns: Vec<String> = input.columns.iter().map(|c| quoted(c)).collect();
    db.execute_batch(&format!(
        "CREATE TABLE {} ({})",
        quoted(&input.table),
        columns.join(", ")
    ))?;
    let marks = vec!["?"; columns.len()].join(", ");
    let mut insert = db.prepare(&format!(
        "INSERT INTO {} VALUES ({marks})",
        quoted(&input.table)
    ))?;
    for row in input.rows.iter().take(64) {
        let values: Vec<Value> = (0..columns.len())
            .map(|i| match row.get(i) {
                None | Some(Cell::Null) => Value::Null,
                Some(Cell::Integer(n)) => Value::Integer(*n),
                Some(Cell::Real(f)) => Value::Real(*f),
                Some(Cell::Text(t)) => Value::Text(t.clone()),
                Some(Cell::TextBytes(b)) => Value::Text(String::from_utf8_lossy(b).into_owned()),
                Some(Cell::Blob(b)) => Value::Blob(b.clone()),
            })
            .collect();
        insert.execute(rusqlite::params_from_iter(values))?;
    }
    // Text that is not UTF-8, stored as TEXT: what a careless application can leave behind.
    for (i, row) in input.rows.iter().enumerate().take(64) {
        for (c, cell) in row.iter().enumerate().take(columns.len()) {
            if let Cell::TextBytes(b) = cell {
                db.execute(
                    &format!(
                        "UPDATE {} SET {} = CAST(?1 AS TEXT) WHERE rowid = ?2",
                        quoted(&input.table),
                        columns[c]
                    ),
                    rusqlite::params![b, i as i64 + 1],
                )?;
            }
        }
    }
    Ok(())
}

fuzz_target!(|input: Rows| {
    if input.columns.is_empty() || input.columns.len() > 16 {
        return;
    }
    let scratch = Scratch::copy_of(template(&EMPTY, |_| {}));
    let source = scratch.dir().join("other-app.db");
    if write_source(&source, &input).is_err() {
        // SQLite refused the table (a duplicate column name ...): nothing to import.
        return;
    }
    if let Some((at, bytes)) = &input.damage {
        let mut file = std::fs::read(&source).expect("reading the source back");
        let at = usize::from(*at).min(file.len());
        let end = (at + bytes.len()).min(file.len());
        file[at..end].copy_from_slice(&bytes[..end - at]);
        std::fs::write(&source, file).expect("writing the damaged source");
    }
    let name = |i: u8| {
        input
            .columns
            .get(usize::from(i))
            .cloned()
            .unwrap_or_else(|| format!("missing{i}"))
    };
    let spec = TableSpec {
        table: input.table.clone(),
        id_column: name(input.id),
        text_column: name(input.text),
        title_column: input.title.map(name),
        metadata_columns: input.metadata.iter().take(8).map(|&i| name(i)).collect(),
    };
    let Ok(records) = sqlite_records(&source, &spec) else {
        return;
    };
    let engine = scratch.engine();
    let opts = ImportOptions {
        collection: "rows".into(),
        force_collection: true,
        ..ImportOptions::default()
    };
    outpost_fuzz::import_and_check(engine, records, &opts);
});
