//! Reading Chroma persistent directories. Each store here is a real one, built by chromadb
//! itself (`tests/fixtures/build_chroma.py`, run with the Python that `OUTPOST_CHROMA_PYTHON`
//! names: scripts/test.sh makes a venv with chromadb 1.5.9), and every record read back is
//! compared with what chromadb's own API returned for it.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use outpost_core::ingest::chroma::{read_store, ChromaCollection};
use serde_json::{Map, Value};

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// A Chroma store built by chromadb, and what chromadb's API returned for each collection:
/// `{name: {"space", "dims", "embedding_function", "records": {id: {"document", "metadata",
/// "embedding"}}}}`.
struct Fixture {
    _dir: tempfile::TempDir,
    store: PathBuf,
    expected: Value,
}

fn chroma_store() -> Result<Fixture, Box<dyn std::error::Error>> {
    let python = std::env::var_os("OUTPOST_CHROMA_PYTHON")
        .filter(|p| !p.is_empty())
        .ok_or(
            "OUTPOST_CHROMA_PYTHON is not set: this test builds a real Chroma store with the \
             chromadb Python package; run scripts/test.sh (it makes that venv) or set it to a \
             python with chromadb==1.5.9 and numpy",
        )?;
    let dir = tempfile::tempdir()?;
    let store = dir.path().join("store");
    let expected = dir.path().join("expected.json");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/build_chroma.py");
    let out = Command::new(&python)
        .arg(&script)
        .arg(&store)
        .arg(&expected)
        .env("ANONYMIZED_TELEMETRY", "False")
        .output()
        .map_err(|e| format!("running {}: {e}", python.to_string_lossy()))?;
    if !out.status.success() {
        return Err(format!(
            "{} failed:\n{}",
            script.display(),
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    let expected = serde_json::from_slice(&std::fs::read(expected)?)?;
    Ok(Fixture {
        _dir: dir,
        store,
        expected,
    })
}

fn names(collections: &[ChromaCollection]) -> Vec<&str> {
    collections.iter().map(|c| c.name.as_str()).collect()
}

/// Asserts that `got` is `want` (from chromadb's JSON): exactly, or for cosine collections,
/// whose index holds unit vectors and their norms, within 1e-5 of the vector's norm.
fn assert_vector(at: &str, got: &[f32], want: &Value, cosine: bool) {
    let want: Vec<f32> = want
        .as_array()
        .unwrap_or_else(|| panic!("{at}: expected vector missing"))
        .iter()
        .map(|x| x.as_f64().unwrap_or(f64::NAN) as f32)
        .collect();
    assert_eq!(got.len(), want.len(), "{at}: vector length");
    if !cosine {
        assert_eq!(got, want, "{at}: vector");
        return;
    }
    let norm = want.iter().map(|x| x * x).sum::<f32>().sqrt();
    let worst = got
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(
        worst <= 1e-5 * norm,
        "{at}: vector off by {worst} (norm {norm})"
    );
}

#[test]
fn every_record_reads_back_as_chromadb_returns_it() -> TestResult {
    let fixture = chroma_store()?;
    let collections = read_store(&fixture.store, &[])?;
    assert_eq!(
        names(&collections),
        [
            "cosine",
            "default_tenant/other/notes",
            "empty",
            "fresh",
            "inner",
            "notes"
        ]
    );

    let mut total = 0;
    for c in &collections {
        let want = &fixture.expected[&c.name];
        assert_eq!(
            c.space,
            want["space"].as_str().unwrap_or_default(),
            "{}",
            c.name
        );
        assert_eq!(
            c.dims,
            want["dims"].as_u64().map(|d| d as usize),
            "{}",
            c.name
        );
        assert_eq!(
            c.embedding_function.as_deref(),
            want["embedding_function"].as_str(),
            "{}",
            c.name
        );
        let records = want["records"].as_object().ok_or("no expected records")?;
        let mut seen = HashSet::new();
        for (at, record) in &c.records {
            let id = at
                .strip_prefix(&format!("{}/", c.name))
                .ok_or_else(|| format!("{at}: not under its collection"))?;
            assert!(seen.insert(id.to_string()), "{at} read twice");
            let want = records
                .get(id)
                .ok_or_else(|| format!("{at}: not a live record"))?;
            let record = match record {
                Ok(r) => r,
                Err(reason) => {
                    // Chroma allows a record without a document; it is reported, not dropped.
                    assert_eq!(want["document"], Value::Null, "{at}");
                    assert_eq!(reason, "it has no document", "{at}");
                    continue;
                }
            };
            assert_eq!((record.id.as_str(), record.title.as_str()), (id, id));
            assert_eq!(record.collection.as_deref(), Some(c.name.as_str()));
            assert_eq!(
                Some(record.text.as_str()),
                want["document"].as_str(),
                "{at}"
            );
            let want_metadata = want["metadata"]
                .as_object()
                .cloned()
                .unwrap_or_else(Map::new);
            assert_eq!(record.metadata, want_metadata, "{at}");
            let vector = record
                .embedding
                .as_deref()
                .ok_or_else(|| format!("{at}: no vector"))?;
            assert_vector(at, vector, &want["embedding"], c.space == "cosine");
            assert_eq!(
                (record.model.as_ref(), record.chunks.as_ref()),
                (None, None)
            );
        }
        assert_eq!(seen.len(), records.len(), "{}: records read", c.name);
        total += seen.len();
    }
    assert!(total > 3000, "{total} records");

    // Records come in the order they were added, the same on every read.
    let notes = &collections[5].records;
    let first: Vec<&str> = notes[..4].iter().map(|(at, _)| at.as_str()).collect();
    assert_eq!(
        first,
        [
            "notes/note-00000",
            "notes/note-00001",
            "notes/note-00002",
            "notes/note-00004"
        ]
    );
    let again = read_store(&fixture.store, &["notes".to_string()])?;
    let order = |records: &[outpost_core::ingest::import::Input]| -> Vec<String> {
        records.iter().map(|(at, _)| at.clone()).collect()
    };
    assert_eq!(order(&again[0].records), order(notes));
    Ok(())
}

#[test]
fn only_reads_the_named_collections_and_refuses_a_name_the_store_lacks() -> TestResult {
    let fixture = chroma_store()?;
    let some = read_store(&fixture.store, &["inner".to_string(), "fresh".to_string()])?;
    assert_eq!(names(&some), ["fresh", "inner"]);

    let err = read_store(&fixture.store, &["inner".to_string(), "nope".to_string()])
        .err()
        .ok_or("an unknown collection was accepted")?
        .to_string();
    assert!(err.contains("no collection 'nope'"), "{err}");
    assert!(
        err.contains("it has: cosine, default_tenant/other/notes, empty, fresh, inner, notes"),
        "{err}"
    );
    Ok(())
}

/// The folder of a collection's HNSW index: its VECTOR segment's id.
fn index_folder(store: &Path, collection: &str) -> Result<PathBuf, Box<dyn std::error::Error>> {
    let db = rusqlite::Connection::open(store.join("chroma.sqlite3"))?;
    let segment: String = db.query_row(
        "SELECT s.id FROM segments s JOIN collections c ON c.id = s.collection \
         WHERE c.name = ?1 AND s.scope = 'VECTOR'",
        [collection],
        |r| r.get(0),
    )?;
    Ok(store.join(segment))
}

#[test]
fn a_damaged_index_leaves_only_its_collection_without_vectors() -> TestResult {
    let fixture = chroma_store()?;
    // A truncated vector file, and a header of a format version nobody wrote.
    let cosine = index_folder(&fixture.store, "cosine")?.join("data_level0.bin");
    let len = std::fs::metadata(&cosine)?.len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&cosine)?
        .set_len(len / 2)?;
    let header = index_folder(&fixture.store, "notes")?.join("header.bin");
    let mut bytes = std::fs::read(&header)?;
    bytes[0] = 7;
    std::fs::write(&header, bytes)?;

    for c in read_store(&fixture.store, &[])? {
        let want = fixture.expected[&c.name]["records"]
            .as_object()
            .ok_or("no expected records")?;
        assert_eq!(
            c.records.len(),
            want.len(),
            "{}: every record is still read",
            c.name
        );
        if c.records.is_empty() {
            continue;
        }
        let with_vector = c
            .records
            .iter()
            .filter(|(_, r)| r.as_ref().is_ok_and(|r| r.embedding.is_some()))
            .count();
        let damaged = c.name == "cosine" || c.name == "notes";
        assert_eq!(
            with_vector == 0,
            damaged,
            "{}: {with_vector} vectors",
            c.name
        );
    }
    Ok(())
}

#[test]
fn a_directory_that_is_not_a_chroma_store_is_refused_with_what_was_found() -> TestResult {
    let dir = tempfile::tempdir()?;
    let err = read_store(dir.path(), &[])
        .err()
        .ok_or("an empty directory was read")?;
    assert!(err.to_string().contains("no chroma.sqlite3 in"), "{err}");

    // Some other application's SQLite file under Chroma's name.
    let db = rusqlite::Connection::open(dir.path().join("chroma.sqlite3"))?;
    db.execute_batch(
        "CREATE TABLE migrations (dir TEXT, version INTEGER);
         INSERT INTO migrations VALUES ('sysdb', 9), ('sysdb', 10), ('metadb', 6);
         CREATE TABLE collections (id TEXT, name TEXT);",
    )?;
    drop(db);
    let err = read_store(dir.path(), &[])
        .err()
        .ok_or("a foreign database was read")?;
    assert!(
        err.to_string().contains("unknown Chroma layout in")
            && err
                .to_string()
                .contains("found migrations metadb=6 sysdb=10, no table 'segments'"),
        "{err}"
    );

    std::fs::write(dir.path().join("chroma.sqlite3"), b"not a database at all, but long enough to have a header ............................................")?;
    let err = read_store(dir.path(), &[])
        .err()
        .ok_or("a text file was read")?;
    assert!(err.to_string().contains("not a SQLite database"), "{err}");
    Ok(())
}
