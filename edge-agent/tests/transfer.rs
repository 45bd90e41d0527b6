//! `outpost import jsonl` and `outpost export jsonl` end to end, with the real model: an export
//! imported into a fresh database gives back the same documents, chunks, metadata and vectors;
//! an import run again, or killed half-way and run again, holds each record once; bad lines are
//! reported by line number while the others are imported.

mod common;

use std::io::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use common::{arg, corpus, require_model, TestDb, TestResult};

fn sha256(path: &Path) -> TestResult<String> {
    Ok(hex::encode(Sha256::digest(std::fs::read(path)?)))
}

/// `n` records of distinct text, one per line, with metadata of each JSON type.
fn write_records(path: &Path, n: usize) -> TestResult<()> {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    for i in 0..n {
        let line = serde_json::json!({
            "id": format!("rec-{i:05}"),
            "title": format!("Record {i}"),
            "text": format!(
                "Record {i} is about topic {} and mentions the number {} twice: {} and {}.",
                i % 17, i * 7, i * 7, i + 3
            ),
            "metadata": {"n": i, "share": i as f64 / 4.0, "even": i % 2 == 0, "tag": format!("t{}", i % 5)},
        });
        writeln!(f, "{line}")?;
    }
    f.flush()?;
    Ok(())
}

#[test]
fn an_export_imported_into_a_fresh_database_gives_back_the_same_data() -> TestResult {
    require_model();
    let a = TestDb::new()?;
    a.json(&["ingest", arg(&corpus()), "--json"])?;
    let first = a.dir().join("a.jsonl");
    a.json(&[
        "export",
        "jsonl",
        arg(&first),
        "--with-embeddings",
        "--json",
    ])?;
    let line = std::fs::read_to_string(&first)?;
    let line: serde_json::Value = serde_json::from_str(line.lines().next().ok_or("empty export")?)?;
    assert_eq!(
        line["chunks"][0]["embedding"].as_array().map(Vec::len),
        Some(384),
        "the export carries the vectors"
    );

    let b = TestDb::new()?;
    let report = b.json(&["import", "jsonl", arg(&first), "--json"])?;
    assert_eq!(report["failed"], 0);
    assert_eq!(report["embedded"], 0, "every vector came with the export");
    assert_eq!(b.documents()?, a.documents()?);
    assert_eq!(b.chunks()?, a.chunks()?);
    // Exported again, the new database writes the same bytes: same sources, titles, metadata,
    // content hashes, chunk texts and offsets, and the same vectors.
    let second = b.dir().join("b.jsonl");
    b.json(&[
        "export",
        "jsonl",
        arg(&second),
        "--with-embeddings",
        "--json",
    ])?;
    assert_eq!(sha256(&first)?, sha256(&second)?);
    // And it searches the same (chunk and document ids are made anew on import).
    let query = [
        "search",
        "how do I keep a sourdough starter alive",
        "--json",
    ];
    assert_eq!(without_ids(&a.json(&query)?), without_ids(&b.json(&query)?));
    // An export that fails leaves nothing behind, not even its partial file.
    let refused = a.fails(&[
        "export",
        "jsonl",
        arg(&a.dir().join("nope.jsonl")),
        "--collection",
        "nope",
    ])?;
    assert!(refused.contains("collection 'nope' not found"), "{refused}");
    for entry in std::fs::read_dir(a.dir())? {
        let name = entry?.file_name();
        assert!(
            !name.to_string_lossy().starts_with("nope"),
            "{name:?} left behind"
        );
    }
    Ok(())
}

/// Search results without their chunk and document ids.
fn without_ids(search: &serde_json::Value) -> serde_json::Value {
    let mut results = search["results"].clone();
    for r in results.as_array_mut().into_iter().flatten() {
        if let Some(r) = r.as_object_mut() {
            r.remove("chunk_id");
            r.remove("document_id");
        }
    }
    results
}

#[test]
fn an_import_run_again_adds_nothing_and_bad_lines_are_reported_by_number() -> TestResult {
    require_model();
    let db = TestDb::new()?;
    let file = db.dir().join("in.jsonl");
    write_records(&file, 40)?;
    // Four bad lines among good ones: a vector of the wrong size, broken JSON, no id, and an id
    // that an earlier line has.
    let mut text = std::fs::read_to_string(&file)?;
    let wrong: Vec<f32> = vec![0.1; 12];
    text.push_str(&format!(
        "{}\n{{\"id\": \"broken\"\n{{\"text\": \"no id here\"}}\n{{\"id\": \"rec-00007\", \"text\": \"again\"}}\n",
        serde_json::json!({"id": "short-vector", "text": "has a vector", "model": "sentence-transformers/all-MiniLM-L6-v2", "embedding": wrong})
    ));
    std::fs::write(&file, text)?;
    let (code, stdout, _) = db.run(&["import", "jsonl", arg(&file), "--json"])?;
    assert_eq!(code, 2, "failed lines give exit code 2");
    let report: serde_json::Value = serde_json::from_str(&stdout)?;
    assert_eq!(report["added"], 40);
    assert_eq!(report["failed"], 4);
    let at: Vec<&str> = report["failures"]
        .as_array()
        .ok_or("no failures")?
        .iter()
        .filter_map(|f| f["at"].as_str())
        .collect();
    let name = arg(&file);
    assert_eq!(
        at,
        [
            format!("{name}:41"),
            format!("{name}:42"),
            format!("{name}:43"),
            format!("{name}:44")
        ]
    );
    let reasons = report["failures"].to_string();
    assert!(reasons.contains("12 dimensions"), "{reasons}");
    assert!(reasons.contains("invalid JSON"), "{reasons}");
    assert!(reasons.contains("no 'id'"), "{reasons}");
    assert!(reasons.contains("duplicate id 'rec-00007'"), "{reasons}");

    let again = db.run(&["import", "jsonl", arg(&file), "--json"])?;
    let again: serde_json::Value = serde_json::from_str(&again.1)?;
    assert_eq!(
        (again["added"].clone(), again["unchanged"].clone()),
        (0.into(), 40.into())
    );
    assert_eq!(db.documents()?, 40);
    Ok(())
}

#[test]
fn an_import_killed_half_way_and_run_again_holds_each_record_once() -> TestResult {
    require_model();
    let db = TestDb::new()?;
    let file = db.dir().join("many.jsonl");
    let n = 1500;
    write_records(&file, n)?;
    let mut child = db
        .command(&["import", "jsonl", arg(&file), "--batch", "64", "--json"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let started = Instant::now();
    // Kill it once some records are stored and others are not.
    loop {
        let stored = if db.path().exists() {
            db.documents().unwrap_or(0)
        } else {
            0
        };
        if stored > 0 {
            break;
        }
        assert!(
            child.try_wait()?.is_none(),
            "the import ended before it could be interrupted"
        );
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no record stored in 120 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill()?;
    child.wait()?;
    let stored = db.documents()?;
    assert!(
        stored > 0 && stored < n as u64,
        "killed half-way: {stored} of {n} stored"
    );

    let report = db.json(&["import", "jsonl", arg(&file), "--json"])?;
    assert_eq!(report["failed"], 0);
    assert_eq!(
        report["unchanged"], stored,
        "what the first run stored is not stored again"
    );
    assert_eq!(report["added"], n as u64 - stored);
    assert_eq!(db.documents()?, n as u64);
    let list = db.json(&["docs", "list", "--limit", "100000", "--json"])?;
    let mut sources: Vec<&str> = list["documents"]
        .as_array()
        .ok_or("no documents")?
        .iter()
        .filter_map(|d| d["source"].as_str())
        .collect();
    sources.sort_unstable();
    sources.dedup();
    assert_eq!(sources.len(), n, "each record exactly once");
    Ok(())
}

/// A database of another application: `notes(note_id, body, heading, stars, price, tag)`, 30
/// rows, one of them without a body.
fn notes_db(path: &Path) -> TestResult<()> {
    let conn = rusqlite::Connection::open(path)?;
    conn.execute_batch(
        "CREATE TABLE notes (note_id INTEGER PRIMARY KEY, body TEXT, heading TEXT, stars INTEGER, price REAL, tag TEXT)",
    )?;
    for i in 1..=30_i64 {
        let body = (i != 13).then(|| {
            format!(
                "Note {i}: the greenhouse needs {} litres of water on day {i}.",
                i * 3
            )
        });
        conn.execute(
            "INSERT INTO notes VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            rusqlite::params![
                i,
                body,
                format!("Note {i}"),
                i % 5,
                i as f64 * 1.5,
                if i % 2 == 0 { "even" } else { "odd" }
            ],
        )?;
    }
    Ok(())
}

#[test]
fn rows_of_a_sqlite_table_become_documents_and_bad_databases_are_refused() -> TestResult {
    require_model();
    let db = TestDb::new()?;
    let source = db.dir().join("notes.db");
    notes_db(&source)?;
    let before = sha256(&source)?;
    let import = |extra: &[&str]| -> TestResult<(i32, String, String)> {
        let mut args = vec![
            "import",
            "sqlite",
            arg(&source),
            "--table",
            "notes",
            "--id-col",
            "note_id",
        ];
        args.extend_from_slice(extra);
        db.run(&args)
    };
    let all = [
        "--text-col",
        "body",
        "--title-col",
        "heading",
        "--meta-cols",
        "stars,price,tag",
        "--json",
    ];
    let (code, stdout, _) = import(&all)?;
    let report: serde_json::Value = serde_json::from_str(&stdout)?;
    assert_eq!(code, 2, "the row without a body is reported");
    assert_eq!(
        (report["added"].clone(), report["failed"].clone()),
        (29.into(), 1.into())
    );
    assert_eq!(report["failures"][0]["at"], "notes note_id=13");
    assert_eq!(
        sha256(&source)?,
        before,
        "the source database is not written to"
    );

    let hits = db.json(&["search", "greenhouse water on day 21", "--json", "-k", "1"])?;
    assert_eq!(hits["results"][0]["source"], "notes/21");
    assert_eq!(hits["results"][0]["title"], "Note 21");
    let filtered = db.json(&[
        "search",
        "greenhouse water",
        "--filter",
        "tag=even",
        "--filter",
        "stars=1",
        "--json",
    ])?;
    let sources: Vec<&str> = filtered["results"]
        .as_array()
        .ok_or("no results")?
        .iter()
        .filter_map(|r| r["source"].as_str())
        .collect();
    assert_eq!(sources.len(), 3, "{sources:?}"); // notes 6, 16 and 26
    assert!(
        sources
            .iter()
            .all(|s| ["notes/6", "notes/16", "notes/26"].contains(s)),
        "{sources:?}"
    );

    let (_, again, _) = import(&all)?;
    let again: serde_json::Value = serde_json::from_str(&again)?;
    assert_eq!(
        (again["added"].clone(), again["unchanged"].clone()),
        (0.into(), 29.into())
    );

    // A missing column, a file that is not SQLite, and a database another process holds locked:
    // each refused with what and where, and nothing stored is lost.
    let missing = import(&["--text-col", "content"])?;
    assert_ne!(missing.0, 0);
    assert!(
        missing.2.contains("no column 'content'") && missing.2.contains("body"),
        "{}",
        missing.2
    );
    let garbage = db.dir().join("garbage.db");
    std::fs::write(&garbage, vec![0x5a_u8; 8192])?;
    let not_sqlite = db.fails(&[
        "import",
        "sqlite",
        arg(&garbage),
        "--table",
        "t",
        "--id-col",
        "a",
        "--text-col",
        "b",
    ])?;
    assert!(
        not_sqlite.contains("not a SQLite database") && not_sqlite.contains("garbage.db"),
        "{not_sqlite}"
    );
    // A real SQLite file whose table pages are damaged (the header still says SQLite).
    let corrupt = db.dir().join("corrupt.db");
    let mut bytes = std::fs::read(&source)?;
    // Every page after the first (the schema) overwritten.
    let page = 4096.min(bytes.len());
    bytes[page..].fill(0xa5);
    std::fs::write(&corrupt, bytes)?;
    let damaged = db.fails(&[
        "import",
        "sqlite",
        arg(&corrupt),
        "--table",
        "notes",
        "--id-col",
        "note_id",
        "--text-col",
        "body",
    ])?;
    assert!(
        damaged.contains("corrupt.db")
            && (damaged.contains("corrupt") || damaged.contains("malformed")),
        "{damaged}"
    );
    let mut holder = std::process::Command::new("python3")
        .args([
            "-c",
            "import sqlite3, sys, time\nc = sqlite3.connect(sys.argv[1], isolation_level=None)\nc.execute('BEGIN EXCLUSIVE')\nprint('locked', flush=True)\ntime.sleep(60)",
            arg(&source),
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(holder.stdout.take().ok_or("no stdout")?),
        &mut line,
    )?;
    assert_eq!(line.trim(), "locked");
    let locked = import(&all);
    holder.kill()?;
    holder.wait()?;
    let locked = locked?;
    assert_ne!(locked.0, 0);
    assert!(
        locked.2.contains("locked by another process") && locked.2.contains("notes.db"),
        "{}",
        locked.2
    );
    assert_eq!(db.documents()?, 29);
    Ok(())
}

/// A real Chroma store built by chromadb (`core/tests/fixtures/build_chroma.py`, with the venv
/// that scripts/test.sh makes) and what chromadb's own API returns for it.
fn chroma_store(dir: &Path) -> TestResult<(std::path::PathBuf, serde_json::Value)> {
    let python = std::env::var_os("OUTPOST_CHROMA_PYTHON").filter(|p| !p.is_empty()).ok_or(
        "OUTPOST_CHROMA_PYTHON is not set: run scripts/test.sh (it makes the chromadb venv) or \
         set it to a python with chromadb==1.5.9 and numpy",
    )?;
    let store = dir.join("chroma");
    let expected = dir.join("expected.json");
    let out = std::process::Command::new(python)
        .arg(common::fixture("build_chroma.py"))
        .arg(&store)
        .arg(&expected)
        .env("ANONYMIZED_TELEMETRY", "False")
        .output()?;
    if !out.status.success() {
        return Err(format!(
            "build_chroma.py failed: {}",
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    Ok((store, serde_json::from_slice(&std::fs::read(expected)?)?))
}

#[test]
fn every_record_of_a_chroma_store_comes_in_and_searches_find_them() -> TestResult {
    require_model();
    let db = TestDb::new()?;
    let (store, expected) = chroma_store(db.dir())?;
    let (mut with_text, mut without) = (0_u64, 0_u64);
    for c in expected
        .as_object()
        .ok_or("expected is not an object")?
        .values()
    {
        for r in c["records"].as_object().ok_or("no records")?.values() {
            if r["document"].is_string() {
                with_text += 1;
            } else {
                without += 1;
            }
        }
    }
    assert!(
        with_text > 3000 && without > 0,
        "the fixture has {with_text} + {without} records"
    );
    let (code, stdout, _) = db.run(&["import", "chroma", arg(&store), "--json"])?;
    let report: serde_json::Value = serde_json::from_str(&stdout)?;
    assert_eq!(code, 2, "records without a document are reported");
    assert_eq!(report["added"], with_text);
    assert_eq!(report["failed"], without);
    assert!(report["failures"].to_string().contains("no document"));
    assert_eq!(db.documents()?, with_text);
    // Chroma's metadata comes along, and the documents are found by what they say.
    let hits = db.json(&[
        "search",
        "updated note",
        "--filter",
        "collection=notes",
        "-k",
        "1",
        "--json",
    ])?;
    assert_eq!(hits["results"][0]["source"], "note-00010");
    let hits = db.json(&[
        "search",
        "c5 updated",
        "--filter",
        "collection=cosine",
        "-k",
        "1",
        "--json",
    ])?;
    assert_eq!(hits["results"][0]["source"], "c5");
    // Run again: nothing added twice.
    let (_, again, _) = db.run(&["import", "chroma", arg(&store), "--json"])?;
    let again: serde_json::Value = serde_json::from_str(&again)?;
    assert_eq!(
        (again["added"].clone(), again["unchanged"].clone()),
        (0.into(), with_text.into())
    );
    // A folder that is not a Chroma store is refused with what was found; nothing is lost.
    let not_chroma = db.fails(&["import", "chroma", arg(db.dir())])?;
    assert!(not_chroma.contains("no chroma.sqlite3"), "{not_chroma}");
    assert_eq!(db.documents()?, with_text);
    Ok(())
}

#[test]
fn chroma_vectors_made_by_the_same_model_are_kept_with_keep_vectors() -> TestResult {
    require_model();
    let db = TestDb::new()?;
    let python = std::env::var_os("OUTPOST_CHROMA_PYTHON")
        .filter(|p| !p.is_empty())
        .ok_or("OUTPOST_CHROMA_PYTHON is not set: run scripts/test.sh")?;
    let texts = [
        "Sourdough starter needs feeding with flour and water every day.",
        "A lithium battery bank for a cabin fridge of 800 Wh per day.",
        "Bees collect nectar and make honey in the hive.",
        "The greenhouse tomatoes need more water in July.",
    ];
    // The vectors Chroma will hold are the model's own, as if Chroma's default function (the
    // same all-MiniLM-L6-v2) had made them.
    let mut args = vec!["embed"];
    args.extend(texts);
    args.push("--json");
    let embedded = db.json(&args)?;
    let input = db.dir().join("input.json");
    std::fs::write(
        &input,
        serde_json::json!({"texts": texts, "vectors": embedded["vectors"]}).to_string(),
    )?;
    let store = db.dir().join("chroma");
    let out = std::process::Command::new(python)
        .args([
            "-c",
            "import json, sys, chromadb\n\
             d = json.load(open(sys.argv[1]))\n\
             c = chromadb.PersistentClient(path=sys.argv[2]).create_collection('mini', embedding_function=None)\n\
             c.add(ids=[f'm{i}' for i in range(len(d['texts']))], documents=d['texts'], embeddings=d['vectors'])",
            arg(&input),
            arg(&store),
        ])
        .env("ANONYMIZED_TELEMETRY", "False")
        .output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let kept = db.json(&["import", "chroma", arg(&store), "--keep-vectors", "--json"])?;
    assert_eq!(
        (kept["added"].clone(), kept["embedded"].clone()),
        (4.into(), 0.into())
    );
    assert_eq!(kept["vectors_kept"], 4);
    let hits = db.json(&[
        "search",
        "keeping bread yeast alive",
        "--mode",
        "vector",
        "-k",
        "1",
        "--json",
    ])?;
    assert_eq!(hits["results"][0]["source"], "m0");
    // Without the option the documents are embedded here, into another collection with --into.
    let fresh = db.json(&["import", "chroma", arg(&store), "--into", "again", "--json"])?;
    assert_eq!(
        (fresh["added"].clone(), fresh["embedded"].clone()),
        (4.into(), 4.into())
    );
    Ok(())
}
