//! What Outpost's fuzz targets share: a deterministic embedder, scratch databases copied from a
//! template built once per process, the panic hook, and a writer of derived index files with a
//! sound header (so that the fuzzer's bytes reach the payload parsers behind it).
//!
//! Every target drives the engine through its public API ([`Engine`], the import and extract
//! functions); nothing here reaches beneath it.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use outpost_core::{Embedder, Engine, HashEmbedder};

/// The dimension of the test embedder's vectors: small, so that stores and indexes stay quick.
pub const DIMS: usize = 8;

/// The deterministic test embedder (`test/hash-8`): no model file is read.
pub fn embedder() -> Arc<dyn Embedder> {
    Arc::new(HashEmbedder::new(DIMS))
}

/// A database in a temporary folder of its own, removed on drop.
pub struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    /// An empty folder.
    ///
    /// # Panics
    /// If no temporary folder can be made (the machine, not the input).
    pub fn new() -> Self {
        Self {
            dir: tempfile::Builder::new()
                .prefix("outpost-fuzz-")
                .tempdir()
                .expect("a temporary folder"),
        }
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The database's path in it (`db.sqlite`; its derived indexes go to `db.sqlite.ann/`).
    pub fn db(&self) -> PathBuf {
        self.dir.path().join("db.sqlite")
    }

    /// A copy of `template`'s database and index folder.
    ///
    /// # Panics
    /// If the copy fails (the machine, not the input).
    pub fn copy_of(template: &Scratch) -> Self {
        let scratch = Self::new();
        copy_tree(template.dir(), scratch.dir()).expect("copying the template database");
        scratch
    }

    /// An engine over its database, with the test embedder and one reader.
    ///
    /// # Panics
    /// If the database cannot be opened (a template of ours: never the input).
    pub fn engine(&self) -> Engine {
        Engine::open(self.db(), embedder(), 1).expect("opening the scratch database")
    }
}

impl Default for Scratch {
    fn default() -> Self {
        Self::new()
    }
}

fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            std::fs::create_dir_all(&target)?;
            copy_tree(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

/// Imports `records` as `opts` says, then holds the result to what every import target
/// requires: the import as a whole never fails (a bad record is reported, not fatal), and the
/// database is sound afterwards. Closes the engine.
pub fn import_and_check(
    engine: Engine,
    records: impl IntoIterator<Item = outpost_core::ingest::import::Input>,
    opts: &outpost_core::ingest::import::ImportOptions,
) {
    if let Err(e) = engine.import(records, opts, &mut |_| {}) {
        panic!("the import failed as a whole: {e}");
    }
    let problems = engine.check().expect("checking the database");
    assert!(problems.is_empty(), "unsound after an import: {problems:?}");
    close(engine);
}

/// Closes an engine of one run, unloading its derived indexes (saving them first, so that a
/// save failure shows). Before the engine freed a database's indexes with its last engine
/// (55d10f4), a run per fresh database kept every run's: libFuzzer stopped import_jsonl and
/// import_rows for out-of-memory after about 3,300 runs, 90 % of 4 GB in usearch's locks.
///
/// # Panics
/// If the indexes cannot be saved before they are dropped.
pub fn close(engine: Engine) {
    if let Err(e) = engine.unload_indexes() {
        panic!("unloading the indexes: {e}");
    }
}

/// A template database built once per process by `build` (the engine is closed before it is
/// copied, so the copy has no WAL to lose); each call to [`Scratch::copy_of`] starts from it.
pub fn template(cell: &'static OnceLock<Scratch>, build: impl FnOnce(&Engine)) -> &'static Scratch {
    cell.get_or_init(|| {
        let scratch = Scratch::new();
        {
            let engine = scratch.engine();
            build(&engine);
        }
        scratch
    })
}

/// Makes every panic a crash (libFuzzer's own hook, which aborts before unwinding so that the
/// stack is kept), except those raised inside pdf-extract and the PDF parser under it:
/// `ingest::extract` catches those on purpose (a malformed PDF is an input error), and the
/// fuzzer should not stop on them.
pub fn abort_on_panic_except_in_pdf_parser() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let file = info.location().map(|l| l.file()).unwrap_or_default();
        let caught = [
            "pdf-extract",
            "pdf_extract",
            "lopdf",
            "/adobe-cmap",
            "/type1-encoding",
            "/postscript",
        ]
        .iter()
        .any(|c| file.contains(c));
        if !caught {
            default(info);
            std::process::abort();
        }
    }));
}

/// The magic of each derived index file kind (`core/src/index/mod.rs`).
pub mod magic {
    /// A usearch graph (`.usearch`).
    pub const GRAPH: &[u8; 8] = b"OUTPOSTG";
    /// The f32 rows beside a graph (`.vectors`).
    pub const ROWS: &[u8; 8] = b"OUTPOSTV";
    /// The text index (`.lex`).
    pub const TEXT: &[u8; 8] = b"OUTPOSTL";
}

/// A derived index file of this format (version 2) around `payload`, of which the first
/// `checked` bytes (at most all of them) are covered by the checksum, as
/// `core/src/index/mod.rs` writes it: magic, version, CRC-32, payload length, checked length.
pub fn index_file(magic: &[u8; 8], payload: &[u8], checked: usize) -> Vec<u8> {
    const VERSION: u32 = 2;
    let checked = checked.min(payload.len());
    let mut h = [0u8; 32];
    h[..8].copy_from_slice(magic);
    h[8..12].copy_from_slice(&VERSION.to_le_bytes());
    h[16..24].copy_from_slice(&(payload.len() as u64).to_le_bytes());
    h[24..32].copy_from_slice(&(checked as u64).to_le_bytes());
    let mut crc = crc32fast::Hasher::new();
    crc.update(&h[..12]);
    crc.update(&h[16..]);
    crc.update(&payload[..checked]);
    h[12..16].copy_from_slice(&crc.finalize().to_le_bytes());
    let mut file = h.to_vec();
    file.extend_from_slice(payload);
    file
}
