//! Crash consistency: a process killed in the middle of ingesting a large file leaves the
//! database consistent — the old or the new version of that document, never a mix, and
//! `PRAGMA integrity_check` ok.
//!
//! Everything is checked from outside, through the CLI and Python's `sqlite3`: the stored chunks
//! of the document must be exactly the chunks of one version (same count, same byte spans, each
//! text the slice of that version's text at its span), the vector and full-text indexes must
//! agree with them, and an independent SQLite must find the file intact.

mod common;

use std::collections::BTreeSet;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;

use common::{arg, python_sqlite, require_model, TestDb, TestResult};

/// Words of version A; version B has none of them, so a word tells the versions apart.
const WORDS_A: &[&str] = &[
    "meadow",
    "clover",
    "hive",
    "pollen",
    "orchard",
    "blossom",
    "nectar",
    "lavender",
    "hedgerow",
    "swarm",
    "queen",
    "honeycomb",
    "beeswax",
    "bramble",
    "sunflower",
    "dandelion",
    "thistle",
    "foragers",
    "garden",
    "buzzing",
    "golden",
    "summer",
    "quietly",
    "gather",
    "busy",
    "warm",
    "field",
    "flowers",
    "bumblebee",
    "apiary",
];

/// Words of version B.
const WORDS_B: &[&str] = &[
    "harbour",
    "anchor",
    "tide",
    "gull",
    "lighthouse",
    "rope",
    "sail",
    "keel",
    "mast",
    "fisherman",
    "net",
    "driftwood",
    "compass",
    "storm",
    "pier",
    "ferry",
    "salt",
    "wave",
    "cliff",
    "shell",
    "rowing",
    "boat",
    "grey",
    "winter",
    "slowly",
    "haul",
    "cold",
    "shore",
    "lantern",
    "crab",
];

/// Generated prose: sentences of 6 to 15 words drawn from `words`, in paragraphs, at least
/// `len` bytes, the same for the same seed.
fn prose(words: &[&str], seed: u64, len: usize) -> String {
    let mut state = seed | 1;
    let mut next = |n: usize| {
        // xorshift64
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % n as u64) as usize
    };
    let mut out = String::with_capacity(len + 200);
    while out.len() < len {
        let n = 6 + next(10);
        let sentence: Vec<&str> = (0..n).map(|_| words[next(words.len())]).collect();
        let sentence = sentence.join(" ");
        let mut first = sentence.chars();
        if let Some(c) = first.next() {
            out.extend(c.to_uppercase());
            out.push_str(first.as_str());
        }
        out.push_str(if next(8) == 0 { ".\n\n" } else { ". " });
    }
    out.push('\n');
    out
}

/// One version of the document: its text and its chunks' byte spans as a complete ingest
/// stores them.
struct Version {
    name: &'static str,
    text: String,
    /// A word only this version contains.
    marker: &'static str,
    spans: Vec<(usize, usize)>,
}

impl Version {
    /// A version of `len` bytes of prose in `words`; its spans are learnt by [`Self::ingest_fresh`].
    fn generate(name: &'static str, words: &'static [&'static str], seed: u64, len: usize) -> Self {
        let text = prose(words, seed, len);
        assert!(text.contains(words[0]));
        Self {
            name,
            text,
            marker: words[0],
            spans: Vec::new(),
        }
    }

    /// Writes this version to `file` and ingests it completely into `db`, which must not hold
    /// it yet, to learn the chunks a finished ingest stores; returns how long the ingest took.
    fn ingest_fresh(&mut self, db: &TestDb, file: &Path) -> TestResult<Duration> {
        std::fs::write(file, &self.text)?;
        let started = Instant::now();
        let report = db.json(&["ingest", arg(file), "--json"])?;
        let took = started.elapsed();
        assert_eq!(report["added"], 1, "{report}");
        let chunks = stored_chunks(db, &common::source_of(file)?)?;
        self.spans = chunks.iter().map(|c| (c.start, c.end)).collect();
        Ok(took)
    }

    /// Whether `chunks` are exactly this version's chunks.
    fn matches(&self, chunks: &[Chunk]) -> bool {
        chunks.len() == self.spans.len()
            && chunks
                .iter()
                .zip(&self.spans)
                .all(|(c, &(start, end))| (c.start, c.end) == (start, end) && self.holds(c))
    }

    /// Whether `chunk`'s text is this version's text at the chunk's span.
    fn holds(&self, chunk: &Chunk) -> bool {
        self.text.get(chunk.start..chunk.end) == Some(chunk.text.as_str())
    }
}

/// A stored chunk, from `docs show --json`.
struct Chunk {
    id: String,
    text: String,
    start: usize,
    end: usize,
}

/// The chunks of the one document stored for `source`, in order; fails unless the database holds
/// exactly one document (deleted ones included) and it is this source, live.
fn stored_chunks(db: &TestDb, source: &str) -> TestResult<Vec<Chunk>> {
    let list = db.json(&["docs", "list", "--all", "--json"])?;
    let docs = list["documents"].as_array().ok_or("no documents array")?;
    assert_eq!(docs.len(), 1, "expected one document: {list}");
    assert_eq!(docs[0]["source"], source);
    assert_eq!(docs[0]["deleted"], false);
    let id = docs[0]["id"].as_str().ok_or("no id")?;
    let doc = db.json(&["docs", "show", id, "--json"])?;
    let chunks = doc["chunks"].as_array().ok_or("no chunks array")?;
    let mut out = Vec::with_capacity(chunks.len());
    for (i, c) in chunks.iter().enumerate() {
        assert_eq!(c["ordinal"], i, "chunk ordinals are not 0..n");
        let field = |key: &str| c[key].as_u64().map(|n| n as usize).ok_or("bad byte span");
        out.push(Chunk {
            id: c["id"].as_str().ok_or("no chunk id")?.to_string(),
            text: c["text"].as_str().ok_or("no chunk text")?.to_string(),
            start: field("byte_start")?,
            end: field("byte_end")?,
        });
    }
    Ok(out)
}

/// The chunk ids of a `search --json` result.
fn hit_ids(search: &Value) -> TestResult<Vec<String>> {
    search["results"]
        .as_array()
        .ok_or("no results array")?
        .iter()
        .map(|h| {
            h["chunk_id"]
                .as_str()
                .map(str::to_string)
                .ok_or_else(|| "a result without a chunk id".into())
        })
        .collect()
}

/// Checks that the database is intact and holds exactly one of `versions` for `source`; returns
/// its index.
fn consistent_version(db: &TestDb, source: &str, versions: &[&Version]) -> TestResult<usize> {
    // An independent SQLite finds the file intact.
    assert_eq!(python_sqlite(db.path(), "PRAGMA integrity_check")?, "ok");

    // The chunks are one version's, all of them and nothing else.
    let chunks = stored_chunks(db, source)?;
    let Some(found) = versions.iter().position(|v| v.matches(&chunks)) else {
        let origin: Vec<String> = chunks
            .iter()
            .map(|c| {
                let of: Vec<&str> = versions
                    .iter()
                    .filter(|v| v.holds(c))
                    .map(|v| v.name)
                    .collect();
                if of.is_empty() {
                    "neither".into()
                } else {
                    of.join("/")
                }
            })
            .collect();
        let counts: Vec<String> = versions
            .iter()
            .map(|v| format!("{} has {}", v.name, v.spans.len()))
            .collect();
        return Err(format!(
            "the stored document is no single version: {} chunks ({}), from {origin:?}",
            chunks.len(),
            counts.join(", ")
        )
        .into());
    };
    let version = versions[found];

    // stats agrees, and the indexes hold exactly these chunks.
    assert_eq!(db.documents()?, 1);
    assert_eq!(db.chunks()?, chunks.len() as u64);
    let ids: BTreeSet<String> = chunks.iter().map(|c| c.id.clone()).collect();
    let vector = db.json(&[
        "search",
        version.marker,
        "--mode",
        "vector",
        "-k",
        "1000",
        "--json",
    ])?;
    let vector_ids: BTreeSet<String> = hit_ids(&vector)?.into_iter().collect();
    assert_eq!(
        vector_ids, ids,
        "the vector index does not hold exactly the stored chunks"
    );
    let text = db.json(&[
        "search",
        version.marker,
        "--mode",
        "text",
        "-k",
        "1000",
        "--json",
    ])?;
    let text_ids = hit_ids(&text)?;
    assert!(
        !text_ids.is_empty(),
        "full-text search misses {}",
        version.marker
    );
    assert!(
        text_ids.iter().all(|id| ids.contains(id)),
        "full-text hits outside the document"
    );
    for other in versions.iter().filter(|v| v.name != version.name) {
        let stale = db.json(&["search", other.marker, "--mode", "text", "--json"])?;
        assert!(
            hit_ids(&stale)?.is_empty(),
            "full-text search still finds version {}: {stale}",
            other.name
        );
    }
    Ok(found)
}

#[test]
fn a_killed_ingest_leaves_the_old_or_the_new_version() -> TestResult {
    require_model();
    // Two versions of a large file with different chunk counts: A stored in the database under
    // test, B ingested completely into another one to learn its chunks and how long a complete
    // ingest takes, so that the kills can be spread over a whole run.
    let mut a = Version::generate("A", WORDS_A, 7, 20_000);
    let mut b = Version::generate("B", WORDS_B, 11, 26_000);
    let db = TestDb::new()?;
    let file = db.dir().join("large.txt");
    a.ingest_fresh(&db, &file)?;
    let clean = TestDb::new()?;
    let full_ingest = b.ingest_fresh(&clean, &clean.dir().join("large.txt"))?;
    assert_ne!(
        a.spans.len(),
        b.spans.len(),
        "the versions should differ in chunk count"
    );
    eprintln!(
        "A has {} chunks, B {}; a complete ingest of B took {full_ingest:?}",
        a.spans.len(),
        b.spans.len()
    );
    let versions = [&a, &b];
    let source = common::source_of(&file)?;
    let mut current = consistent_version(&db, &source, &versions)?;
    assert_eq!(current, 0);

    let runs = 5;
    let first = Duration::from_millis(50);
    let last = full_ingest.mul_f64(0.9).max(first);
    for run in 0..runs {
        let delay = first + (last - first).mul_f64(run as f64 / (runs - 1) as f64);
        // Ingest the version that is not stored, and kill the process part way.
        let target = 1 - current;
        std::fs::write(&file, &versions[target].text)?;
        let mut child = db
            .command(&["ingest", arg(&file)])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        std::thread::sleep(delay);
        // It may have finished just before.
        let _ = child.kill();
        let status = child.wait()?;
        assert!(
            status.success() || status.signal() == Some(9),
            "the ingest failed on its own: {status}"
        );
        let now = consistent_version(&db, &source, &versions)?;
        if status.success() {
            assert_eq!(now, target, "a finished ingest must store the new version");
        }
        eprintln!(
            "run {run}: {} after {delay:?}: version {} stored",
            if status.success() {
                "finished"
            } else {
                "killed"
            },
            versions[now].name
        );
        current = now;
    }

    // After all that, a complete ingest still works and stores the other version.
    let target = 1 - current;
    std::fs::write(&file, &versions[target].text)?;
    let report = db.json(&["ingest", arg(&file), "--json"])?;
    assert_eq!(report["updated"], 1, "{report}");
    assert_eq!(consistent_version(&db, &source, &versions)?, target);
    Ok(())
}

/// With the `failpoints` feature the process aborts halfway through writing the chunks, inside
/// the write transaction: the worst moment for a crash.
#[cfg(feature = "failpoints")]
#[test]
fn a_crash_inside_the_write_transaction_keeps_the_old_version() -> TestResult {
    require_model();
    let mut a = Version::generate("A", WORDS_A, 3, 3_000);
    let mut b = Version::generate("B", WORDS_B, 5, 5_000);
    let db = TestDb::new()?;
    let file = db.dir().join("doc.txt");
    a.ingest_fresh(&db, &file)?;
    let clean = TestDb::new()?;
    b.ingest_fresh(&clean, &clean.dir().join("doc.txt"))?;
    assert!(
        b.spans.len() >= 4,
        "B needs several chunks to crash between them"
    );
    let versions = [&a, &b];
    let source = common::source_of(&file)?;
    assert_eq!(consistent_version(&db, &source, &versions)?, 0);

    std::fs::write(&file, &b.text)?;
    let crashed = db
        .command(&["ingest", arg(&file)])
        .env("OUTPOST_FAILPOINT", "put-document-mid-tx")
        .output()?;
    let stderr = String::from_utf8_lossy(&crashed.stderr);
    assert!(
        !crashed.status.success(),
        "the failpoint did not fire: {stderr}"
    );
    assert_eq!(
        crashed.status.signal(),
        Some(6),
        "expected SIGABRT: {stderr}"
    );
    assert!(stderr.contains("failpoint put-document-mid-tx"), "{stderr}");
    assert_eq!(
        consistent_version(&db, &source, &versions)?,
        0,
        "the crashed write must roll back to version A"
    );

    let report = db.json(&["ingest", arg(&file), "--json"])?;
    assert_eq!(report["updated"], 1, "{report}");
    assert_eq!(consistent_version(&db, &source, &versions)?, 1);
    Ok(())
}
