//! One error type for the engine, with the file or argument each failure is about.

use std::fmt;
use std::path::PathBuf;

/// A failure inside an embedding model (tensor error, tokenizer error, device error).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmbedError(pub String);

impl fmt::Display for EmbedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for EmbedError {}

/// What went wrong in a generator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GenerateError {
    /// The prompt and the answer's room do not fit the model's window.
    PromptTooLong {
        /// Tokens of the prompt.
        tokens: usize,
        /// Tokens the model can attend to, less the room kept for the answer.
        limit: usize,
    },
    /// The request itself is refused (an unknown role, a bad option).
    Invalid(String),
    /// The model or server failed.
    Failed(String),
}

impl fmt::Display for GenerateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::PromptTooLong { tokens, limit } => write!(
                f,
                "the prompt has {tokens} tokens; the model takes at most {limit} with room for the answer"
            ),
            Self::Invalid(m) | Self::Failed(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for GenerateError {}

/// Result alias used throughout `outpost-core`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What kind of failure an [`Error`] is: what a caller needs to decide what to do about it
/// (the agent maps it to an HTTP status, the FFI to its error enum).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The caller's input is refused: an argument, a filter, a vector of the wrong size, a file
    /// or record that cannot be ingested. Retrying the same input fails the same way.
    InvalidInput,
    /// No such document, collection or conversation.
    NotFound,
    /// The database cannot be opened or used: not SQLite, another application's, newer,
    /// corrupt, or a SQLite failure.
    Database,
    /// The embedding or language model failed.
    Model,
    /// A derived index could not be built, loaded or searched (it is rebuilt from the database;
    /// nothing stored is lost).
    Index,
    /// An export could not be written.
    Export,
    /// The disk (or the process's file size limit) is full: the write was refused and rolled
    /// back, nothing stored was lost. Free space and run the same call again.
    DiskFull,
}

/// Everything that can go wrong in the engine.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file at `path` is not a SQLite database (or its header is corrupt).
    #[error("{path}: not a SQLite database (wrong file, or its header is corrupt)")]
    NotADatabase {
        /// The database path given by the user.
        path: PathBuf,
    },
    /// The file is SQLite but belongs to another application.
    #[error("{path}: a SQLite database of another application (application_id {application_id:#x}); refusing to modify it")]
    ForeignDatabase {
        /// The database path.
        path: PathBuf,
        /// The application id found in the header.
        application_id: i64,
    },
    /// The database was written by a newer Outpost.
    #[error("{path}: schema version {found} is newer than this build of outpost supports ({supported}); upgrade outpost to open it")]
    SchemaTooNew {
        /// The database path.
        path: PathBuf,
        /// Version found in the file.
        found: i64,
        /// Newest version this build knows.
        supported: i64,
    },
    /// SQLite reported corruption.
    #[error("{path}: database is corrupt: {detail}")]
    Corrupt {
        /// The database path.
        path: PathBuf,
        /// What SQLite said.
        detail: String,
    },
    /// SQLite could not open or create the file (a directory, no permission, a missing volume).
    #[error("{path}: cannot open the database: {detail}")]
    CannotOpen {
        /// The database path.
        path: PathBuf,
        /// What SQLite said.
        detail: String,
    },
    /// No space left for a write: to the database, its journal, a derived index file or an
    /// export. What was being written is rolled back (the database) or removed (a file); nothing
    /// stored before is touched, and the same call succeeds once space is freed.
    #[error(
        "{path}: disk full ({detail}); free some space and run it again (nothing stored was lost)"
    )]
    DiskFull {
        /// The file that could not be written.
        path: PathBuf,
        /// What SQLite or the OS said.
        detail: String,
    },
    /// Any other SQLite failure.
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// An input file that cannot be ingested.
    #[error("{path}: {problem}")]
    Input {
        /// The file (or directory entry) at fault.
        path: PathBuf,
        /// What is wrong with it.
        problem: InputProblem,
    },
    /// A vector whose length differs from its collection's dimension.
    #[error("vector of {got} dimensions for collection '{collection}', which holds {expected}-dimensional vectors")]
    DimensionMismatch {
        /// Collection name.
        collection: String,
        /// The collection's dimension.
        expected: usize,
        /// The offending vector's length.
        got: usize,
    },
    /// A collection embedded by another model than the one in use.
    #[error("collection '{collection}' holds vectors of model '{stored}' ({stored_dims}-d), not of '{current}' ({current_dims}-d); use the same model or another collection")]
    ModelMismatch {
        /// Collection name.
        collection: String,
        /// Model recorded with the collection.
        stored: String,
        /// Its dimension.
        stored_dims: usize,
        /// Model in use now.
        current: String,
        /// Its dimension.
        current_dims: usize,
    },
    /// A bad argument from the caller (empty query, `k` of 0, malformed filter ...).
    #[error("invalid {name}: {reason}")]
    InvalidArgument {
        /// The argument, by its name in the library's API (`query`, `k`, `filter`, `mode`,
        /// `budget`, `max_tokens` ...); a front end names its own flag for it.
        name: String,
        /// Why it is refused.
        reason: String,
    },
    /// A filter on a key that is neither built in nor present in any document's metadata.
    #[error("unknown filter key '{key}'; known keys: {known}")]
    UnknownFilterKey {
        /// The key given.
        key: String,
        /// Built-in keys and the metadata keys present in the searched collections.
        known: String,
    },
    /// A document, chunk, collection or conversation that does not exist.
    #[error("{what} '{id}' not found")]
    NotFound {
        /// Kind of thing.
        what: &'static str,
        /// Its id or name.
        id: String,
    },
    /// The embedding model failed.
    #[error("embedding failed: {0}")]
    Embed(#[from] EmbedError),
    /// The language model refused the request or failed.
    #[error("generation: {0}")]
    Generate(#[from] GenerateError),
    /// A vector index (derived from the database) could not be built, loaded or searched.
    #[error("vector index: {0}")]
    Index(String),
    /// An export could not be written, or read a stored value it could not encode.
    #[error("export: {0}")]
    Export(String),
}

/// Why an input file was not ingested.
#[derive(Debug, thiserror::Error)]
pub enum InputProblem {
    /// Zero bytes, or nothing but whitespace once text is extracted.
    #[error("empty file (no text to index)")]
    Empty,
    /// Looks like binary data (NUL bytes) rather than text.
    #[error(
        "binary file (NUL byte at offset {offset}); not a text, Markdown, HTML, PDF or JSONL file"
    )]
    Binary {
        /// Offset of the first NUL byte.
        offset: usize,
    },
    /// Text that is not valid UTF-8.
    #[error("invalid UTF-8 at byte {offset}; convert the file to UTF-8")]
    InvalidUtf8 {
        /// Offset of the first invalid byte.
        offset: usize,
    },
    /// Larger than the configured limit.
    #[error("file of {size} bytes is over the size limit of {limit} bytes (max_file_size)")]
    TooLarge {
        /// File size.
        size: u64,
        /// Limit in force.
        limit: u64,
    },
    /// The OS refused to read it.
    #[error("unreadable: {0}")]
    Unreadable(std::io::Error),
    /// A directory walk found a symbolic link cycle.
    #[error("symbolic link loop (points back to {ancestor})")]
    SymlinkLoop {
        /// The ancestor directory the link leads back to.
        ancestor: PathBuf,
    },
    /// A PDF whose pages carry no extractable text (a scan without OCR).
    #[error("PDF has no text layer (scanned image?); run OCR first")]
    NoTextLayer,
    /// A PDF the parser could not read.
    #[error("unreadable PDF: {0}")]
    Pdf(String),
    /// HTML the extractor could not read.
    #[error("unreadable HTML: {0}")]
    Html(String),
    /// Not a regular file (a socket, a device ...).
    #[error("not a regular file")]
    NotAFile,
    /// A JSONL file in which no line was a valid record.
    #[error("no valid JSONL record ({0})")]
    NoRecords(String),
}

impl Error {
    /// What kind of failure this is.
    #[must_use]
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::InvalidArgument { .. }
            | Error::UnknownFilterKey { .. }
            | Error::DimensionMismatch { .. }
            | Error::ModelMismatch { .. }
            | Error::Input { .. } => ErrorKind::InvalidInput,
            Error::NotFound { .. } => ErrorKind::NotFound,
            Error::NotADatabase { .. }
            | Error::ForeignDatabase { .. }
            | Error::SchemaTooNew { .. }
            | Error::Corrupt { .. }
            | Error::CannotOpen { .. }
            | Error::Sqlite(_) => ErrorKind::Database,
            Error::Embed(_) | Error::Generate(GenerateError::Failed(_)) => ErrorKind::Model,
            Error::Generate(_) => ErrorKind::InvalidInput,
            Error::Index(_) => ErrorKind::Index,
            Error::Export(_) => ErrorKind::Export,
            Error::DiskFull { .. } => ErrorKind::DiskFull,
        }
    }

    /// An I/O error while writing `path`: [`Error::DiskFull`] when the disk or the file size
    /// limit is what refused it, otherwise `other(e)`.
    pub(crate) fn on_write(
        path: &std::path::Path,
        e: std::io::Error,
        other: impl FnOnce(std::io::Error) -> Self,
    ) -> Self {
        if is_disk_full(&e) {
            Error::DiskFull {
                path: path.to_path_buf(),
                detail: e.to_string(),
            }
        } else {
            other(e)
        }
    }

    pub(crate) fn input(path: impl Into<PathBuf>, problem: InputProblem) -> Self {
        Error::Input {
            path: path.into(),
            problem,
        }
    }

    pub(crate) fn invalid(name: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::InvalidArgument {
            name: name.into(),
            reason: reason.into(),
        }
    }
}

/// Whether an I/O error means "no room": the disk is full (`ENOSPC`), a quota is used up
/// (`EDQUOT`), or the file reached the process's size limit (`EFBIG`, `RLIMIT_FSIZE`).
#[must_use]
pub fn is_disk_full(e: &std::io::Error) -> bool {
    use std::io::ErrorKind as K;
    matches!(
        e.kind(),
        K::StorageFull | K::QuotaExceeded | K::FileTooLarge
    )
}
