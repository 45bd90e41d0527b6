//! Watched folders on a real filesystem: create, modify, delete and rename; a burst of 10,000
//! file events; changes made while the agent was stopped; and a `kill -9` in the middle of
//! indexing a folder, after which every accepted file is indexed exactly once. What is
//! indexed does not need to mean anything here, so the agent embeds with `--embedder hash`,
//! except where the real model's speed is what makes the kill land mid-way.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};

use common::agent::{metric, Agent, Start};
use common::{arg, python_sqlite, require_model, TestDb, TestResult};

/// Live documents by source: `source → (id, title)`.
async fn documents(agent: &Agent) -> TestResult<BTreeMap<String, (String, String)>> {
    let (_, list) = agent.get("/v1/documents?limit=100000").await?;
    Ok(list["documents"]
        .as_array()
        .ok_or("documents")?
        .iter()
        .map(|d| {
            (
                d["source"].as_str().unwrap_or("").to_string(),
                (
                    d["id"].as_str().unwrap_or("").to_string(),
                    d["title"].as_str().unwrap_or("").to_string(),
                ),
            )
        })
        .collect())
}

/// The text of the document at `source`.
async fn text_of(agent: &Agent, id: &str) -> TestResult<String> {
    let (_, doc) = agent.get(&format!("/v1/documents/{id}")).await?;
    Ok(doc["chunks"]
        .as_array()
        .ok_or("chunks")?
        .iter()
        .filter_map(|c| c["text"].as_str())
        .collect::<Vec<_>>()
        .join(" "))
}

/// Waits until the agent's queue is empty and its live documents are exactly `sources`.
async fn settled(agent: &Agent, sources: &[String], timeout: Duration) -> TestResult {
    let want: Vec<String> = sources.to_vec();
    agent
        .until("the index to match the folder", timeout, || async {
            let queued = metric(&agent.metrics().await?, "outpost_work_queue_depth", "");
            let have: Vec<String> = documents(agent).await?.into_keys().collect();
            let mut want = want.clone();
            want.sort();
            Ok(queued == 0.0 && have == want)
        })
        .await
}

fn source(dir: &Path, name: &str) -> String {
    dir.join(name).display().to_string()
}

#[tokio::test]
async fn a_watched_folder_follows_creates_edits_deletes_and_renames() -> TestResult {
    let db = TestDb::new()?;
    let folder = tempfile::tempdir()?;
    let dir = std::fs::canonicalize(folder.path())?;
    std::fs::write(dir.join("tides.md"), "Tides follow the moon.")?;
    let agent = Agent::start(Start {
        args: &["--watch", arg(&dir)],
        config: "[watch]\ndebounce_ms = 100\n",
        embedder: "hash",
        ..Start::new(db.path())
    })?;
    let wait = Duration::from_secs(30);
    settled(&agent, &[source(&dir, "tides.md")], wait).await?;

    // Create, including in a new subfolder; temporary and hidden files are skipped.
    std::fs::create_dir(dir.join("bees"))?;
    std::fs::write(
        dir.join("bees/dance.txt"),
        "Honey bees dance to show the way.",
    )?;
    std::fs::write(dir.join("draft.md.swp"), "editor swap file")?;
    std::fs::write(dir.join(".hidden.md"), "hidden")?;
    let mut expected = vec![source(&dir, "tides.md"), source(&dir, "bees/dance.txt")];
    settled(&agent, &expected, wait).await?;

    // Modify: the new text is what is indexed.
    std::fs::write(
        dir.join("tides.md"),
        "Spring tides are the strongest tides.",
    )?;
    agent
        .until("the edit to be indexed", wait, || async {
            let docs = documents(&agent).await?;
            let id = &docs[&source(&dir, "tides.md")].0;
            Ok(text_of(&agent, id).await?.contains("Spring"))
        })
        .await?;

    // Rename: the same document (id and vectors kept) under the new name.
    let before = documents(&agent).await?[&source(&dir, "bees/dance.txt")].clone();
    std::fs::rename(dir.join("bees/dance.txt"), dir.join("bees/waggle.txt"))?;
    expected[1] = source(&dir, "bees/waggle.txt");
    settled(&agent, &expected, wait).await?;
    let after = documents(&agent).await?[&source(&dir, "bees/waggle.txt")].clone();
    assert_eq!(after.0, before.0, "a rename keeps the document");
    assert_eq!(
        after.1, "waggle",
        "a title that was the file name follows it"
    );

    // Delete: the document goes (as a tombstone).
    std::fs::remove_file(dir.join("tides.md"))?;
    expected.remove(0);
    settled(&agent, &expected, wait).await?;
    let (_, found) = agent
        .post(
            "/v1/search",
            &json!({ "query": "spring tides", "mode": "text" }),
        )
        .await?;
    assert_eq!(found["results"], json!([]));

    // A folder removed takes its documents with it.
    std::fs::remove_dir_all(dir.join("bees"))?;
    settled(&agent, &[], wait).await?;
    Ok(())
}

#[tokio::test]
async fn a_burst_of_ten_thousand_events_loses_no_change() -> TestResult {
    let db = TestDb::new()?;
    let folder = tempfile::tempdir()?;
    let dir = std::fs::canonicalize(folder.path())?;
    let agent = Agent::start(Start {
        args: &["--watch", arg(&dir)],
        config: "[watch]\ndebounce_ms = 200\n",
        embedder: "hash",
        ..Start::new(db.path())
    })?;
    // 500 files, each written 20 times: 10,000 writes, as fast as the disk takes them.
    const FILES: usize = 500;
    const WRITES: usize = 20;
    for round in 0..WRITES {
        for f in 0..FILES {
            std::fs::write(
                dir.join(format!("note-{f:03}.txt")),
                format!("Note {f}, version {round}: the river delta floods in spring."),
            )?;
        }
    }
    let names: Vec<String> = (0..FILES)
        .map(|f| source(&dir, &format!("note-{f:03}.txt")))
        .collect();
    settled(&agent, &names, Duration::from_secs(300)).await?;
    // Every file's last version is the one indexed.
    let docs = documents(&agent).await?;
    for f in [0, 137, 499] {
        let id = &docs[&source(&dir, &format!("note-{f:03}.txt"))].0;
        let text = text_of(&agent, id).await?;
        assert!(
            text.contains(&format!("version {}", WRITES - 1)),
            "{f}: {text}"
        );
    }
    let rss = agent.peak_rss()?;
    eprintln!("peak resident memory through the burst: {} MiB", rss >> 20);
    assert!(rss < 2 << 30, "peak RSS {} MiB", rss >> 20);
    Ok(())
}

#[tokio::test]
async fn changes_made_while_the_agent_was_stopped_are_found_on_start() -> TestResult {
    let db = TestDb::new()?;
    let folder = tempfile::tempdir()?;
    let dir = std::fs::canonicalize(folder.path())?;
    for name in ["keep.txt", "edit.txt", "remove.txt"] {
        std::fs::write(dir.join(name), format!("The first text of {name}."))?;
    }
    let args = ["--watch", arg(&dir)];
    let start = || Start {
        args: &args,
        embedder: "hash",
        ..Start::new(db.path())
    };
    let mut agent = Agent::start(start())?;
    let three = ["keep.txt", "edit.txt", "remove.txt"].map(|n| source(&dir, n));
    settled(&agent, &three, Duration::from_secs(30)).await?;
    let kept = documents(&agent).await?[&source(&dir, "keep.txt")]
        .0
        .clone();
    assert!(agent.stop()? < Duration::from_secs(5));

    // While it is down.
    std::fs::write(dir.join("edit.txt"), "Edited while the agent slept.")?;
    std::fs::remove_file(dir.join("remove.txt"))?;
    std::fs::write(dir.join("new.txt"), "Born while the agent slept.")?;

    let agent = Agent::start(start())?;
    let now = ["keep.txt", "edit.txt", "new.txt"].map(|n| source(&dir, n));
    settled(&agent, &now, Duration::from_secs(30)).await?;
    let docs = documents(&agent).await?;
    assert_eq!(
        docs[&source(&dir, "keep.txt")].0,
        kept,
        "unchanged files stay as they were"
    );
    let edited = text_of(&agent, &docs[&source(&dir, "edit.txt")].0).await?;
    assert!(edited.contains("slept"), "{edited}");
    // The unchanged file was not embedded again.
    let m = agent.metrics().await?;
    assert_eq!(
        metric(&m, "outpost_documents_ingested_total", ""),
        2.0,
        "{m}"
    );
    Ok(())
}

#[tokio::test]
async fn a_kill_9_while_indexing_a_folder_loses_nothing_and_duplicates_nothing() -> TestResult {
    // The real model: the kill has to land while the folder is still being embedded.
    require_model();
    let db = TestDb::new()?;
    let folder = tempfile::tempdir()?;
    let dir = std::fs::canonicalize(folder.path())?;
    const FILES: usize = 120;
    for f in 0..FILES {
        // Several chunks each, so that indexing takes a while.
        let text: String = (0..40)
            .map(|p| {
                format!("Paragraph {p} of file {f} is about glaciers, moraines and meltwater.\n\n")
            })
            .collect();
        std::fs::write(dir.join(format!("f{f:03}.md")), text)?;
    }
    let args = ["--watch", arg(&dir)];
    let start = || Start {
        args: &args,
        ..Start::new(db.path())
    };
    let mut agent = Agent::start(start())?;
    // Kill it once some, but not all, files are in.
    agent
        .until(
            "indexing to be under way",
            Duration::from_secs(60),
            || async {
                let n = metric(&agent.metrics().await?, "outpost_documents", "");
                Ok(n >= 5.0)
            },
        )
        .await?;
    let m = agent.metrics().await?;
    let (done, queued) = (
        metric(&m, "outpost_documents", ""),
        metric(&m, "outpost_work_queue_depth", ""),
    );
    agent.kill9()?;
    assert!(
        queued > 0.0,
        "the kill came too late to test anything ({done} done)"
    );

    // The queue survived: the restarted agent finishes the folder.
    let agent = Agent::start(start())?;
    let all: Vec<String> = (0..FILES)
        .map(|f| source(&dir, &format!("f{f:03}.md")))
        .collect();
    settled(&agent, &all, Duration::from_secs(600)).await?;
    drop(agent);

    // Exactly once each, and the file is consistent, by an independent SQLite.
    let path = db.path();
    assert_eq!(python_sqlite(path, "PRAGMA integrity_check")?, "ok");
    assert_eq!(
        python_sqlite(path, "SELECT count(*) FROM documents WHERE deleted = 0")?,
        FILES.to_string()
    );
    assert_eq!(
        python_sqlite(path, "SELECT count(DISTINCT source) FROM documents")?,
        FILES.to_string()
    );
    let per_doc = python_sqlite(
        path,
        "SELECT count(DISTINCT n) FROM (SELECT count(*) AS n FROM chunks GROUP BY document_id)",
    )?;
    assert_eq!(
        per_doc, "1",
        "every file has the same number of chunks: none doubled"
    );
    assert_eq!(python_sqlite(path, "SELECT count(*) FROM work_queue")?, "0");
    let chunks: Value = python_sqlite(path, "SELECT count(*) FROM chunks")?
        .parse::<u64>()?
        .into();
    let fts: Value = python_sqlite(path, "SELECT count(*) FROM chunks_fts")?
        .parse::<u64>()?
        .into();
    assert_eq!(chunks, fts);
    Ok(())
}
