//! Errors of the model crate: loading model files, running the model and fetching models.

use std::path::PathBuf;

/// Everything that can go wrong while finding, fetching, loading or running a model.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file the model needs is not on disk.
    #[error(
        "model file {} is missing; run `outpost models fetch` to download the default model, \
         or pass `--model-dir <dir>` pointing at a sentence-transformers model directory",
        path.display()
    )]
    MissingModelFile {
        /// The file that was expected.
        path: PathBuf,
    },

    /// A JSON configuration file could not be parsed.
    #[error("invalid model configuration {}: {source}", path.display())]
    BadConfig {
        /// The file that failed to parse.
        path: PathBuf,
        /// The parse error.
        source: serde_json::Error,
    },

    /// The weights file could not be read as this model's weights (truncated, corrupt, or of
    /// another architecture or size).
    #[error("cannot load the weights in {}: {message}", path.display())]
    BadWeights {
        /// The safetensors file.
        path: PathBuf,
        /// What candle said.
        message: String,
    },
    /// The model directory describes a model this crate cannot run faithfully.
    #[error("unsupported model configuration in {}: {reason}", path.display())]
    UnsupportedModel {
        /// The configuration file that asks for the unsupported feature.
        path: PathBuf,
        /// What is unsupported.
        reason: String,
    },

    /// No chat model where one was looked for.
    #[error(
        "no chat model (GGUF file) at {}; run `outpost models fetch --llm` to download the default \
         one, or pass `--llm-model <file.gguf>`",
        path.display()
    )]
    MissingLlm {
        /// Where it was looked for.
        path: PathBuf,
    },

    /// A GGUF file that cannot be used as a chat model: not GGUF, not llama-family, or missing
    /// its tokenizer or chat template.
    #[error("cannot use {} as a chat model: {reason}", path.display())]
    BadGguf {
        /// The GGUF file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },

    /// A model loaded on first use is not the one its directory held when it was opened.
    #[error(
        "the model in {} changed since it was opened: opened as {opened}, now {found}; \
         reopen to use the new model",
        path.display()
    )]
    ModelChanged {
        /// The model directory.
        path: PathBuf,
        /// The model as opened.
        opened: String,
        /// The model found at load.
        found: String,
    },

    /// `tokenizer.json` could not be loaded or configured.
    #[error("cannot load tokenizer {}: {message}", path.display())]
    TokenizerLoad {
        /// The tokenizer file.
        path: PathBuf,
        /// What the tokenizers library reported.
        message: String,
    },

    /// The tokenizer failed on an input text.
    #[error("tokenization failed: {0}")]
    Tokenize(String),

    /// A tensor operation, the weights file or the device failed.
    #[error("candle: {0}")]
    Candle(#[from] candle_core::Error),

    /// A model name that is not in [`crate::KNOWN_MODELS`].
    #[error("unknown model `{name}`; known models: {known}")]
    UnknownModel {
        /// The requested name.
        name: String,
        /// Comma-separated list of the names that are known.
        known: String,
    },

    /// `python3` could not be started to download a wheel.
    #[error("cannot run `python3 -m pip` to download {package}: {source}")]
    PipSpawn {
        /// The `name==version` requirement being downloaded.
        package: String,
        /// Why the process did not start.
        source: std::io::Error,
    },

    /// `pip download` exited with an error.
    #[error("`python3 -m pip download {package}` failed ({status}):\n{stderr}")]
    PipFailed {
        /// The `name==version` requirement being downloaded.
        package: String,
        /// The exit status, as text.
        status: String,
        /// What pip wrote to stderr.
        stderr: String,
    },

    /// `pip download` succeeded but left no wheel behind.
    #[error("`pip download {package}` produced no .whl file in {}", dir.display())]
    NoWheel {
        /// The `name==version` requirement being downloaded.
        package: String,
        /// The download directory.
        dir: PathBuf,
    },

    /// The wheel is not a readable zip archive.
    #[error("cannot read wheel {}: {source}", path.display())]
    Zip {
        /// The wheel file.
        path: PathBuf,
        /// The zip error.
        source: zip::result::ZipError,
    },

    /// A wheel entry would be written outside the model directory.
    #[error("wheel {} contains an unsafe path `{entry}`", wheel.display())]
    UnsafeZipPath {
        /// The wheel file.
        wheel: PathBuf,
        /// The offending entry name.
        entry: String,
    },

    /// The wheel has no files under the model's directory.
    #[error("wheel {} has no files under `{subdir}`", wheel.display())]
    EmptyWheelSubdir {
        /// The wheel file.
        wheel: PathBuf,
        /// The directory that was expected inside the wheel.
        subdir: String,
    },

    /// A downloaded file does not have the expected checksum.
    #[error(
        "sha256 mismatch for {}: expected {expected}, got {actual}",
        path.display()
    )]
    ShaMismatch {
        /// The file that was checked.
        path: PathBuf,
        /// The checksum the registry entry pins.
        expected: String,
        /// The checksum of the file on disk.
        actual: String,
    },

    /// A filesystem operation failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The path being read or written.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

impl Error {
    /// Wraps an I/O error with the path it happened on.
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Error::Io { path, source }
    }
}

impl From<Error> for outpost_core::EmbedError {
    fn from(err: Error) -> Self {
        outpost_core::EmbedError(err.to_string())
    }
}

/// Result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
