//! The saved index files, read as a new process reads them: this version's files load without a
//! rebuild and answer as exact search does; a file of the previous format, a damaged byte, a
//! truncated file, a foreign file, a newer format version and files that disagree with the
//! collection or with each other are each rejected, the index is rebuilt from SQLite, and the
//! answers are still right.
//!
//! The fixtures in `tests/fixtures/index/` hold only index files, with the device id in their
//! names written as `DEVICE`: the database is built again here from the same deterministic rows
//! (its chunk seqs and log ids come out the same every time), and the files are copied beside it
//! under its device id.
//! - `v2/`: this format, for 2,100 chunks (above the exact-scan threshold, so the graph answers).
//!   After a deliberate format change, write them again with
//!   `OUTPOST_WRITE_INDEX_FIXTURES=1 cargo test -p outpost-core --features failpoints --test
//!   index_files write_fixtures` (alone: the other tests read them).
//! - `v1/`: the previous format (no Outpost header), written by the code before it (commit
//!   673fb67) for the first 200 chunks; it cannot be written again.
//!
//! Whether an index was loaded or rebuilt, and why a file was rejected, is read from
//! [`Store::index_origins`], which counts what the warnings say.

mod common;
use common::Rng;
use std::path::{Path, PathBuf};

use outpost_core::index::IndexOrigins;
use outpost_core::{NewChunk, NewDocument, SearchHit, SearchMode, SearchRequest, Store};

type TestResult<T = ()> = Result<T, Box<dyn std::error::Error>>;

const DIMS: usize = 8;
/// Chunks in the `v2` fixture: above `MIN_VECTORS` (2,000).
const CHUNKS: usize = 2_100;
/// Chunks in the `v1` fixture.
const V1_CHUNKS: usize = 200;
const PER_DOC: usize = 10;
const WORDS: [&str; 11] = [
    "amber", "birch", "cedar", "delta", "ember", "fjord", "grove", "heron", "indigo", "juniper",
    "kestrel",
];
const GRAPH: &str = "c1-DEVICE-2100.usearch";
const ROWS: &str = "c1-DEVICE-2100.vectors";
const TEXT: &str = "t-DEVICE-2100.lex";

impl Rng {
    fn unit(&mut self, dims: usize) -> Vec<f32> {
        let v: Vec<f32> = (0..dims).map(|_| self.next()).collect();
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.into_iter().map(|x| x / n).collect()
    }
}

/// Row `i`'s text: two of the words, so that a two-word query has a known best set.
fn text(i: usize) -> String {
    format!("{} {}", WORDS[i % 7], WORDS[i % 11])
}

/// The first `n` rows' vectors.
fn vectors(n: usize, dims: usize) -> Vec<Vec<f32>> {
    let mut rng = Rng(11);
    (0..n).map(|_| rng.unit(dims)).collect()
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/index")
}

/// A database of the first `n` rows in `dir`, ten to a document, and its device id as index
/// file names carry it.
fn database(dir: &Path, n: usize, dims: usize) -> TestResult<(PathBuf, String)> {
    let path = dir.join("fixture.db");
    let mut store = Store::open(&path)?;
    let coll = store.ensure_collection("c", "m", dims)?;
    let rows = vectors(n, dims);
    for (d, part) in rows.chunks(PER_DOC).enumerate() {
        let chunks: Vec<NewChunk> = part
            .iter()
            .enumerate()
            .map(|(j, v)| {
                let text = text(d * PER_DOC + j);
                NewChunk {
                    byte_end: text.len(),
                    text,
                    embedding: v.clone(),
                    ..Default::default()
                }
            })
            .collect();
        let doc = NewDocument {
            source: format!("doc{d}"),
            title: String::new(),
            content_hash: d.to_string(),
            metadata: serde_json::Map::new(),
        };
        store.put_document(&coll, &doc, &chunks)?;
    }
    let device = store
        .device_id()
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(12)
        .collect();
    Ok((path, device))
}

/// The folder of `db`'s saved indexes.
fn ann_dir(db: &Path) -> PathBuf {
    db.with_file_name("fixture.db.ann")
}

/// Copies the fixture files of `format` beside `db`, named for `device`.
fn install(db: &Path, device: &str, format: &str) -> TestResult {
    let dir = ann_dir(db);
    std::fs::create_dir_all(&dir)?;
    for e in std::fs::read_dir(fixtures().join(format))? {
        let e = e?;
        let name = e.file_name().to_string_lossy().replace("DEVICE", device);
        std::fs::copy(e.path(), dir.join(name))?;
    }
    Ok(())
}

/// Which row a hit is: documents hold ten rows each, in order.
fn row(hit: &SearchHit) -> usize {
    let doc: usize = hit
        .source
        .strip_prefix("doc")
        .and_then(|d| d.parse().ok())
        .unwrap_or(usize::MAX / PER_DOC);
    doc * PER_DOC + hit.ordinal
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Checks that vector and text searches over the first `n` rows give the exact answers.
fn assert_answers(store: &Store, n: usize, dims: usize) -> TestResult {
    let rows = vectors(n, dims);
    let mut rng = Rng(99);
    for _ in 0..20 {
        let q = rng.unit(dims);
        let req = SearchRequest {
            mode: SearchMode::Vector,
            vector: Some(("m", &q)),
            ..SearchRequest::new("q", 10)
        };
        let got: Vec<f32> = store
            .search(&req)?
            .iter()
            .map(|h| dot(&rows[row(h)], &q))
            .collect();
        let mut exact: Vec<f32> = rows.iter().map(|v| dot(v, &q)).collect();
        exact.sort_by(|a, b| b.total_cmp(a));
        exact.truncate(10);
        // Compared by similarity, so that two rows within rounding of each other may swap.
        assert_eq!(got.len(), exact.len());
        for (g, e) in got.iter().zip(&exact) {
            assert!((g - e).abs() < 1e-5, "got {got:?}, exact {exact:?}");
        }
    }
    // The chunks with both words score highest, all alike, so they come in seq order.
    let both: Vec<usize> = (0..n)
        .filter(|i| WORDS[i % 7] == "cedar" && WORDS[i % 11] == "heron")
        .take(10)
        .collect();
    let req = SearchRequest {
        mode: SearchMode::Text,
        ..SearchRequest::new("cedar heron", both.len())
    };
    let got: Vec<usize> = store.search(&req)?.iter().map(row).collect();
    assert_eq!(got, both);
    Ok(())
}

/// Searches a fresh process's view of `db` and checks the answers; returns how its indexes
/// came about, with the device written as `DEVICE` again.
fn open_and_search(db: &Path, device: &str, n: usize, dims: usize) -> TestResult<IndexOrigins> {
    let store = Store::open(db)?;
    assert_answers(&store, n, dims)?;
    let mut origins = store.index_origins();
    for r in &mut origins.rejected {
        *r = r.replace(device, "DEVICE");
    }
    // What closing the process does: save what changed, forget the indexes.
    store.unload_vector_indexes()?;
    Ok(origins)
}

/// The `v2` fixture with `file` changed by `damage`, opened and searched: the answers are
/// right, that file's index is rebuilt (the other loads), and the rebuild's save replaces the
/// file, so the next open loads both. Returns the rejection.
fn rejection(file: &str, damage: impl FnOnce(&mut Vec<u8>)) -> TestResult<String> {
    let dir = tempfile::tempdir()?;
    let (db, device) = database(dir.path(), CHUNKS, DIMS)?;
    install(&db, &device, "v2")?;
    let path = ann_dir(&db).join(file.replace("DEVICE", &device));
    let mut bytes = std::fs::read(&path)?;
    damage(&mut bytes);
    std::fs::write(&path, &bytes)?;

    let mut origins = open_and_search(&db, &device, CHUNKS, DIMS)?;
    assert_eq!((origins.loaded, origins.built), (1, 1), "{origins:?}");
    assert_eq!(origins.rejected.len(), 1, "{origins:?}");
    let again = open_and_search(&db, &device, CHUNKS, DIMS)?;
    assert_eq!((again.loaded, again.built), (3, 1), "{again:?}");
    Ok(origins.rejected.remove(0))
}

#[test]
fn this_versions_files_load_without_a_rebuild() -> TestResult {
    let dir = tempfile::tempdir()?;
    let (db, device) = database(dir.path(), CHUNKS, DIMS)?;
    install(&db, &device, "v2")?;
    let origins = open_and_search(&db, &device, CHUNKS, DIMS)?;
    let both = IndexOrigins {
        loaded: 2,
        built: 0,
        rejected: vec![],
    };
    assert_eq!(origins, both);
    // Loaded and unchanged, nothing was saved over them.
    for name in [GRAPH, ROWS, TEXT] {
        let saved = std::fs::read(ann_dir(&db).join(name.replace("DEVICE", &device)))?;
        assert!(
            saved == std::fs::read(fixtures().join("v2").join(name))?,
            "{name} changed"
        );
    }
    Ok(())
}

#[test]
fn files_of_the_previous_format_are_rebuilt_and_then_superseded() -> TestResult {
    let dir = tempfile::tempdir()?;
    let (db, device) = database(dir.path(), V1_CHUNKS, DIMS)?;
    install(&db, &device, "v1")?;
    let origins = open_and_search(&db, &device, V1_CHUNKS, DIMS)?;
    let rebuilt = IndexOrigins {
        loaded: 0,
        built: 2,
        rejected: vec![
            "c1-DEVICE-200.usearch: format version 1, expected 2".into(),
            "t-DEVICE-200.lex: format version 1, expected 2".into(),
        ],
    };
    assert_eq!(origins, rebuilt);
    // The rebuilt indexes were saved in this format over the old files, and load.
    let origins = open_and_search(&db, &device, V1_CHUNKS, DIMS)?;
    assert_eq!((origins.loaded, origins.built), (2, 2));
    // The old rows file beside a new graph: rejected in its turn.
    let rows = format!("c1-{device}-200.vectors");
    std::fs::copy(
        fixtures().join("v1/c1-DEVICE-200.vectors"),
        ann_dir(&db).join(rows),
    )?;
    let origins = open_and_search(&db, &device, V1_CHUNKS, DIMS)?;
    assert_eq!(
        origins.rejected.last().map(String::as_str),
        Some("c1-DEVICE-200.vectors: format version 1, expected 2")
    );
    assert_eq!((origins.loaded, origins.built), (3, 3));
    Ok(())
}

#[test]
fn a_damaged_byte_is_caught_by_the_checksum() -> TestResult {
    let flip = |at: fn(usize) -> usize| {
        move |b: &mut Vec<u8>| {
            let at = at(b.len());
            b[at] ^= 0x10;
        }
    };
    assert_eq!(
        rejection(GRAPH, flip(|len| len / 2))?,
        "c1-DEVICE-2100.usearch: checksum mismatch"
    );
    assert_eq!(
        rejection(TEXT, flip(|len| len - 1))?,
        "t-DEVICE-2100.lex: checksum mismatch"
    );
    // In the rows file the checksum covers the header and the table of seqs; the f32 rows
    // themselves are only length-checked (see `index/vectors.rs`).
    assert_eq!(
        rejection(ROWS, flip(|_| 32 + 16 + 8 * 1_000))?,
        "c1-DEVICE-2100.vectors: checksum mismatch"
    );
    // The checksum covers the header too: here, its checked length, 16 bytes shorter.
    assert_eq!(
        rejection(GRAPH, flip(|_| 24))?,
        "c1-DEVICE-2100.usearch: checksum mismatch"
    );
    Ok(())
}

#[test]
fn a_truncated_file_is_caught_by_its_length() -> TestResult {
    for name in [GRAPH, ROWS, TEXT] {
        let full = std::fs::metadata(fixtures().join("v2").join(name))?.len();
        let half = full / 2;
        let why = rejection(name, |b| b.truncate(b.len() / 2))?;
        assert_eq!(
            why,
            format!("{name}: truncated: {half} bytes, the header says {full}")
        );
    }
    assert_eq!(
        rejection(GRAPH, Vec::clear)?,
        "c1-DEVICE-2100.usearch: truncated: 0 bytes, shorter than the header"
    );
    Ok(())
}

#[test]
fn a_foreign_file_is_caught_by_its_magic() -> TestResult {
    let foreign = "not an Outpost index file of this kind (wrong magic)";
    let sqlite = |b: &mut Vec<u8>| b[..16].copy_from_slice(b"SQLite format 3\0");
    assert_eq!(rejection(ROWS, sqlite)?, format!("{ROWS}: {foreign}"));
    assert_eq!(rejection(TEXT, sqlite)?, format!("{TEXT}: {foreign}"));
    // The text index saved under the graph's name: an Outpost file, of another kind.
    let lex = std::fs::read(fixtures().join("v2").join(TEXT))?;
    assert_eq!(
        rejection(GRAPH, |b| *b = lex)?,
        format!("{GRAPH}: {foreign}")
    );
    Ok(())
}

#[test]
fn a_newer_format_version_is_rebuilt_not_guessed_at() -> TestResult {
    for name in [GRAPH, ROWS, TEXT] {
        let why = rejection(name, |b| b[8..12].copy_from_slice(&3u32.to_le_bytes()))?;
        assert_eq!(why, format!("{name}: format version 3, expected 2"));
    }
    Ok(())
}

#[test]
fn files_that_disagree_with_the_collection_or_each_other_are_rebuilt() -> TestResult {
    // The same chunks in a 16-d collection: the 8-d graph is not used for it.
    let dir = tempfile::tempdir()?;
    let (db, device) = database(dir.path(), CHUNKS, 16)?;
    install(&db, &device, "v2")?;
    let origins = open_and_search(&db, &device, CHUNKS, 16)?;
    assert_eq!(
        origins.rejected,
        [format!("{GRAPH}: holds 8-d vectors, expected 16-d")]
    );
    assert_eq!((origins.loaded, origins.built), (1, 1));

    // A graph saved after a document's ten chunks were deleted, beside the rows of the save
    // before: each file is sound, but they do not belong together.
    let dir = tempfile::tempdir()?;
    let (db, device) = database(dir.path(), CHUNKS, DIMS)?;
    install(&db, &device, "v2")?;
    let mut store = Store::open(&db)?;
    let coll = store.ensure_collection("c", "m", DIMS)?;
    let (id, _, _) = store
        .document_by_source(&coll, "doc209")?
        .ok_or("doc209 is missing")?;
    store.delete_document(&id)?;
    store.refresh_vector_indexes()?;
    store.unload_vector_indexes()?;
    drop(store);
    let graph = format!("c1-{device}-2110.usearch");
    assert!(
        ann_dir(&db).join(&graph).is_file(),
        "saved after the delete"
    );
    std::fs::copy(
        fixtures().join("v2").join(ROWS),
        ann_dir(&db).join(format!("c1-{device}-2110.vectors")),
    )?;
    let store = Store::open(&db)?;
    let req = SearchRequest {
        mode: SearchMode::Vector,
        vector: Some(("m", &[1.0; DIMS])),
        ..SearchRequest::new("q", 10)
    };
    assert_eq!(store.search(&req)?.len(), 10);
    assert_eq!(
        store.index_origins().rejected.last().map(String::as_str),
        Some(format!("{graph}: 2090 vectors in the graph, 2100 rows beside it").as_str())
    );
    Ok(())
}

/// Writes the `v2` fixture (see the module doc); does nothing unless
/// `OUTPOST_WRITE_INDEX_FIXTURES` is set.
#[test]
fn write_fixtures() -> TestResult {
    if std::env::var_os("OUTPOST_WRITE_INDEX_FIXTURES").is_none() {
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let (db, device) = database(dir.path(), CHUNKS, DIMS)?;
    let store = Store::open(&db)?;
    store.refresh_vector_indexes()?;
    store.unload_vector_indexes()?;
    drop(store);
    let out = fixtures().join("v2");
    if out.exists() {
        std::fs::remove_dir_all(&out)?;
    }
    std::fs::create_dir_all(&out)?;
    for e in std::fs::read_dir(ann_dir(&db))? {
        let e = e?;
        let name = e.file_name().to_string_lossy().replace(&device, "DEVICE");
        std::fs::copy(e.path(), out.join(name))?;
    }
    Ok(())
}
