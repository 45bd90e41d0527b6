//! The derived indexes: the HNSW vector index of each collection ([`ann`], with its f32 rows in
//! [`vectors`]) and the text index ([`text`]). Both are derived from SQLite, caught up from
//! `ann_log`, saved beside the database and rebuilt whenever a file is missing, damaged or
//! behind a trimmed log: they are never the source of truth. That life cycle is written once,
//! in `derived`: both implement its `DerivedIndex` trait and go through its `current`.
//!
//! Every saved file starts with the same 32-byte header (`header`): a magic per kind, a
//! format version, the payload's length and a CRC-32, so that a truncated, damaged, foreign or
//! older file is rejected before anything in it is trusted, and the index rebuilt from SQLite.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{LazyLock, Mutex};

use crate::db::{in_read_tx, Store};
use crate::error::Result;
use derived::{poisoned, DerivedIndex};

pub mod ann;
pub(crate) mod derived;
pub mod text;
pub(crate) mod vectors;

pub(crate) mod header {
    //! The header of every derived-index file, and the checks a file passes before it is used.
    //!
    //! Layout, little-endian, 32 bytes, then the payload (8-byte aligned, so that a mapped
    //! payload can be read in place):
    //!
    //! | offset | size | field                                                          |
    //! |--------|------|----------------------------------------------------------------|
    //! | 0      | 8    | magic: `OUTPOST` and the kind's letter (`G`, `V`, `L`)          |
    //! | 8      | 4    | format version of that kind ([`VERSION`])                       |
    //! | 12     | 4    | CRC-32 of bytes 0..12 and 16..32, then of the checked payload   |
    //! | 16     | 8    | payload length: the file is exactly 32 bytes longer             |
    //! | 24     | 8    | checked length: how much of the payload the CRC covers          |
    //!
    //! The checked length is the whole payload except in a `.vectors` file, whose f32 rows are
    //! left out: hashing them would add a quarter to an index's load (see `vectors`). Their
    //! length is still checked exactly, and everything that says where a row is, is hashed.
    //!
    //! Version 1 is the layout before this header: a bare usearch file, and `.vectors` and
    //! `.lex` files that began with their own magic. Those are recognised and reported as
    //! such, so that an upgrade rebuilds them instead of misreading them.

    use std::path::{Path, PathBuf};

    /// Bytes before the payload.
    pub(crate) const LEN: usize = 32;
    /// The format version this code writes and reads, for every kind.
    pub(crate) const VERSION: u32 = 2;

    /// A kind of derived-index file.
    pub(crate) struct Kind {
        magic: &'static [u8; 8],
        /// Whether `bytes` are this kind's version-1 layout (before the header).
        old: fn(&[u8]) -> bool,
    }

    /// A usearch graph (`.usearch`): the payload is usearch's own serialization.
    pub(crate) const GRAPH: Kind = Kind {
        magic: b"OUTPOSTG",
        // usearch begins with its vectors' row and column counts (u32 each), the vectors,
        // then its own magic.
        old: |b| {
            let word = |at: usize| {
                b.get(at..at + 4)
                    .map(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]]))
            };
            let (Some(rows), Some(cols)) = (word(0), word(4)) else {
                return false;
            };
            let at = 8 + u64::from(rows) * u64::from(cols);
            usize::try_from(at).ok().and_then(|at| b.get(at..at + 7)) == Some(b"usearch")
        },
    };
    /// The f32 rows beside a graph (`.vectors`).
    pub(crate) const ROWS: Kind = Kind {
        magic: b"OUTPOSTV",
        old: |b| b.starts_with(b"OPVECS01"),
    };
    /// The text index (`.lex`).
    pub(crate) const TEXT: Kind = Kind {
        magic: b"OUTPOSTL",
        old: |b| b.starts_with(b"OPLEX001"),
    };

    /// A saved file that is not used, and why; shown as `<path>: <why>`.
    #[derive(Debug)]
    pub(crate) struct Rejected {
        pub(crate) path: PathBuf,
        pub(crate) why: String,
    }

    impl Rejected {
        pub(crate) fn new(path: &Path, why: impl std::fmt::Display) -> Self {
            Self {
                path: path.to_path_buf(),
                why: why.to_string(),
            }
        }
    }

    impl std::error::Error for Rejected {}

    impl std::fmt::Display for Rejected {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "{}: {}", self.path.display(), self.why)
        }
    }

    /// The header of a `kind` file whose payload is `payload_len` bytes, the first of which
    /// hash to `checked` (its length is the checked length).
    pub(crate) fn write(kind: &Kind, payload_len: u64, checked: &crc32fast::Hasher) -> [u8; LEN] {
        let mut h = [0u8; LEN];
        h[..8].copy_from_slice(kind.magic);
        h[8..12].copy_from_slice(&VERSION.to_le_bytes());
        h[16..24].copy_from_slice(&payload_len.to_le_bytes());
        h[24..32].copy_from_slice(&checked.total_len().to_le_bytes());
        let crc = checksum(&h, checked);
        h[12..16].copy_from_slice(&crc.to_le_bytes());
        h
    }

    fn checksum(h: &[u8; LEN], checked: &crc32fast::Hasher) -> u32 {
        let mut crc = crc32fast::Hasher::new();
        crc.update(&h[..12]);
        crc.update(&h[16..]);
        crc.combine(checked);
        crc.finalize()
    }

    /// The payload of `bytes` (a whole file), with its checked length, if they are a sound
    /// `kind` file of this version; else why not.
    pub(crate) fn read<'a>(kind: &Kind, bytes: &'a [u8]) -> Result<(&'a [u8], usize), String> {
        if (kind.old)(bytes) {
            return Err(format!("format version 1, expected {VERSION}"));
        }
        let magic = &kind.magic[..bytes.len().min(8)];
        if !bytes.starts_with(magic) {
            return Err("not an Outpost index file of this kind (wrong magic)".into());
        }
        let Some(h) = bytes.first_chunk::<LEN>() else {
            return Err(format!(
                "truncated: {} bytes, shorter than the header",
                bytes.len()
            ));
        };
        let word = |at: usize| u32::from_le_bytes([h[at], h[at + 1], h[at + 2], h[at + 3]]);
        let long = |at: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&h[at..at + 8]);
            u64::from_le_bytes(b)
        };
        let version = word(8);
        if version != VERSION {
            return Err(format!("format version {version}, expected {VERSION}"));
        }
        let payload = &bytes[LEN..];
        let (stated, checked) = (long(16), long(24));
        if stated != payload.len() as u64 {
            let whole = stated.saturating_add(LEN as u64);
            let what = if whole > bytes.len() as u64 {
                "truncated"
            } else {
                "overlong"
            };
            return Err(format!(
                "{what}: {} bytes, the header says {whole}",
                bytes.len()
            ));
        }
        let Some(hashed) = usize::try_from(checked).ok().and_then(|n| payload.get(..n)) else {
            return Err("damaged header: checked length past the end".into());
        };
        let mut crc = crc32fast::Hasher::new();
        crc.update(hashed);
        if checksum(h, &crc) != word(12) {
            return Err("checksum mismatch".into());
        }
        Ok((payload, hashed.len()))
    }

    /// Writes the index file `path` whole or not at all: `write` fills a temporary file beside
    /// it (`<name>.tmp-<pid>`), which is synced and renamed over `path`. On any failure the
    /// temporary file is removed, so that a full disk is not left fuller by half an index; a
    /// full disk is [`crate::Error::DiskFull`] naming the file, anything else `Error::Index`.
    pub(crate) fn write_file(
        path: &Path,
        write: impl FnOnce(&mut std::io::BufWriter<std::fs::File>) -> std::io::Result<()>,
    ) -> crate::error::Result<()> {
        use crate::error::Error;
        let mut name = path.as_os_str().to_owned();
        name.push(format!(".tmp-{}", std::process::id()));
        let tmp = std::path::PathBuf::from(name);
        let written = (|| {
            let mut out = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&tmp)?);
            write(&mut out)?;
            out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
            std::fs::rename(&tmp, path)
        })();
        written.map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            Error::on_write(path, e, |e| {
                Error::Index(format!("{}: writing: {e}", path.display()))
            })
        })
    }

    /// Maps `path` read-only. `populate` reads every page in now rather than on first touch.
    pub(crate) fn map(path: &Path, populate: bool) -> std::io::Result<memmap2::Mmap> {
        let f = std::fs::File::open(path)?;
        let mut options = memmap2::MmapOptions::new();
        if populate {
            options.populate();
        }
        // SAFETY: index files are only ever written under a temporary name and renamed into
        // place, never modified after; a file that shrank under the map would be another
        // program's doing.
        #[allow(unsafe_code)]
        unsafe {
            options.map(&f)
        }
    }
}

/// How this process came by a database's derived indexes: loaded from a file or built from
/// SQLite, and which files it rejected. For tests and diagnostics: a warning says the same.
#[doc(hidden)]
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IndexOrigins {
    /// Indexes (a collection's graph with its rows, or the text index) loaded from files.
    pub loaded: usize,
    /// Indexes built from SQLite.
    pub built: usize,
    /// The last rejected files (at most 16), each as `<file name>: <why>`.
    pub rejected: Vec<String>,
}

/// Rejections [`IndexOrigins`] keeps per database.
const REJECTED_KEPT: usize = 16;

static ORIGINS: LazyLock<Mutex<HashMap<(PathBuf, String), IndexOrigins>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

impl Store {
    /// How this process came by this database's derived indexes so far (see [`IndexOrigins`]).
    #[doc(hidden)]
    #[must_use]
    pub fn index_origins(&self) -> IndexOrigins {
        ORIGINS
            .lock()
            .ok()
            .and_then(|m| {
                m.get(&(self.canonical.clone(), self.device.clone()))
                    .cloned()
            })
            .unwrap_or_default()
    }

    /// Records an index loaded (`true`) or built.
    pub(crate) fn note_index(&self, loaded: bool) {
        self.note_origins(|o| {
            if loaded {
                o.loaded += 1;
            } else {
                o.built += 1;
            }
        });
    }

    /// Records a rejected file.
    pub(crate) fn note_rejected(&self, r: &header::Rejected) {
        let name = r.path.file_name().unwrap_or_default().to_string_lossy();
        let line = format!("{name}: {}", r.why);
        self.note_origins(|o| {
            if o.rejected.len() == REJECTED_KEPT {
                o.rejected.remove(0);
            }
            o.rejected.push(line);
        });
    }

    fn note_origins(&self, f: impl FnOnce(&mut IndexOrigins)) {
        if let Ok(mut m) = ORIGINS.lock() {
            f(m.entry((self.canonical.clone(), self.device.clone()))
                .or_default());
        }
    }
}

impl Store {
    /// Loads (or builds) and catches up every collection's vector index and the text index,
    /// and checks each against SQLite (`DerivedIndex::verify`): the problems found, empty
    /// for a sound database.
    ///
    /// # Errors
    /// Store errors, and [`Error::Index`] if an index cannot be loaded or built.
    pub fn verify_indexes(&self) -> Result<Vec<String>> {
        let mut problems = Vec::new();
        for coll in self.collections()? {
            let entry = self.ann(&coll)?;
            let ann = entry.read().map_err(poisoned)?;
            problems.extend(in_read_tx(&self.conn, || ann.verify(&self.conn, &coll))?);
        }
        let entry = self.lexicon()?;
        let lex = entry.read().map_err(poisoned)?;
        problems.extend(in_read_tx(&self.conn, || lex.verify(&self.conn, &()))?);
        Ok(problems)
    }
}
