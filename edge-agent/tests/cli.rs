//! End-to-end tests of the `outpost` command with the real all-MiniLM-L6-v2 model: a session from
//! `init` to `docs rm`, bad input files and arguments (each refused with a message naming the file
//! or argument, the stored data left as it was), metadata filters, and commands whose reader
//! closes stdout early (`| head`).

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead as _, BufReader, Write as _};
use std::path::Path;
use std::process::Stdio;

use serde_json::Value;

use common::{
    arg, corpus, exit_code, fixture, python_sqlite, require_model, TestDb, TestResult, MODEL,
};

const STARTER_QUERY: &str = "how do I keep a sourdough starter alive";
const STARTER_DOC: &str = "keeping-a-sourdough-starter-alive.md";

/// The `results` array of `search --json`.
fn results(search: &Value) -> TestResult<&Vec<Value>> {
    Ok(search["results"]
        .as_array()
        .ok_or("search --json has no results array")?)
}

/// The `source` of every result.
fn sources(search: &Value) -> TestResult<Vec<String>> {
    results(search)?
        .iter()
        .map(|r| {
            r["source"]
                .as_str()
                .map(str::to_string)
                .ok_or_else(|| "a result without a source".into())
        })
        .collect()
}

/// The JSONL record ids (`file.jsonl#ID`) of the results.
fn record_ids(search: &Value) -> TestResult<BTreeSet<String>> {
    sources(search)?
        .iter()
        .map(|s| {
            s.rsplit_once('#')
                .map(|(_, id)| id.to_string())
                .ok_or_else(|| format!("source {s} is not a JSONL record").into())
        })
        .collect()
}

/// The id of the live document whose source ends with `suffix`, from `docs list --json`.
fn document_id(db: &TestDb, suffix: &str) -> TestResult<String> {
    let list = db.json(&["docs", "list", "--json"])?;
    let docs = list["documents"].as_array().ok_or("no documents array")?;
    let doc = docs
        .iter()
        .find(|d| d["source"].as_str().is_some_and(|s| s.ends_with(suffix)))
        .ok_or_else(|| format!("no document from {suffix} in `docs list`"))?;
    Ok(doc["id"]
        .as_str()
        .ok_or("a document without an id")?
        .to_string())
}

/// A database holding one small Markdown document, for tests of what must not change it.
fn db_with_one_document() -> TestResult<TestDb> {
    require_model();
    let db = TestDb::new()?;
    let report = db.json(&["ingest", arg(&fixture("notes.md")), "--json"])?;
    assert_eq!(report["added"], 1);
    assert_eq!(db.documents()?, 1);
    Ok(db)
}

#[test]
fn a_session_from_init_to_delete() -> TestResult {
    require_model();
    let db = TestDb::new()?;

    // init creates the database, empty.
    let (code, stdout, stderr) = db.run(&["init"])?;
    assert_eq!(code, 0, "init failed: {stderr}");
    assert!(stdout.contains("initialised"), "{stdout}");
    assert!(
        db.path().is_file(),
        "init did not create {}",
        db.path().display()
    );
    assert_eq!(db.documents()?, 0);

    // Ingest the example corpus; a second run finds every document unchanged.
    let corpus = corpus();
    let first = db.json(&["ingest", arg(&corpus), "--json"])?;
    let added = first["added"].as_u64().ok_or("no added count")?;
    assert!(added > 0, "nothing added: {first}");
    assert_eq!(first["failed"], 0, "failures: {}", first["failures"]);
    assert!(first["chunks"].as_u64() > Some(0));
    assert_eq!(db.documents()?, added);

    let again = db.json(&["ingest", arg(&corpus), "--json"])?;
    assert_eq!(again["unchanged"], added, "{again}");
    assert_eq!(again["added"], 0);
    assert_eq!(again["updated"], 0);
    assert_eq!(again["failed"], 0);
    assert_eq!(again["chunks"], 0, "unchanged documents were re-embedded");

    // Hybrid search (the default): JSON of this shape, the starter guide first.
    let hybrid = db.json(&["search", STARTER_QUERY, "--json"])?;
    let hits = results(&hybrid)?;
    assert!(!hits.is_empty(), "no results: {hybrid}");
    for hit in hits {
        for key in ["chunk_id", "document_id", "title", "source", "text"] {
            assert!(
                hit[key].is_string(),
                "result field {key} is not a string: {hit}"
            );
        }
        assert!(
            hit["score"].is_number(),
            "result score is not a number: {hit}"
        );
    }
    let scores: Vec<f64> = hits.iter().filter_map(|h| h["score"].as_f64()).collect();
    assert!(
        scores.windows(2).all(|w| w[0] >= w[1]),
        "not best first: {scores:?}"
    );
    assert!(sources(&hybrid)?[0].ends_with(STARTER_DOC), "{hybrid}");

    // Full-text and vector search alone find it too.
    for mode in ["text", "vector"] {
        let found = db.json(&["search", STARTER_QUERY, "--mode", mode, "-k", "3", "--json"])?;
        assert_eq!(found["mode"], mode);
        let top = sources(&found)?;
        assert!(!top.is_empty() && top.len() <= 3, "{mode}: {found}");
        assert!(top[0].ends_with(STARTER_DOC), "{mode} search: {found}");
    }

    // A RAG context within a budget of 120 tokens, with numbered citations.
    let ctx = db.json(&["context", STARTER_QUERY, "--budget", "120", "--json"])?;
    let tokens = ctx["tokens"].as_u64().ok_or("no token count")?;
    assert!(
        tokens > 0 && tokens <= 120,
        "{tokens} tokens for a budget of 120"
    );
    assert_eq!(ctx["budget"], 120);
    let text = ctx["text"].as_str().ok_or("no context text")?;
    assert!(text.contains("[1] "), "no citation [1] in: {text}");
    assert_eq!(ctx["citations"][0]["n"], 1);

    // docs list / show.
    let id = document_id(&db, STARTER_DOC)?;
    let listed = db.json(&["docs", "list", "--json"])?;
    assert_eq!(
        listed["documents"].as_array().map(Vec::len),
        Some(added as usize)
    );
    let doc = db.json(&["docs", "show", &id, "--json"])?;
    assert_eq!(doc["id"], id.as_str());
    assert_eq!(doc["title"], "Keeping a Sourdough Starter Alive");
    assert_eq!(doc["deleted"], false);
    let chunks = doc["chunks"].as_array().ok_or("no chunks")?;
    assert!(!chunks.is_empty());
    assert!(chunks
        .iter()
        .all(|c| c["text"].as_str().is_some_and(|t| !t.is_empty())));
    let in_list = listed["documents"]
        .as_array()
        .and_then(|d| d.iter().find(|d| d["id"] == id.as_str()))
        .ok_or("the document is not in `docs list`")?;
    assert_eq!(in_list["chunks"], chunks.len());
    assert_eq!(doc["metadata"]["format"], "markdown");

    // docs rm: gone from search and the list, kept as a tombstone.
    let (code, stdout, stderr) = db.run(&["docs", "rm", &id])?;
    assert_eq!(code, 0, "docs rm failed: {stderr}");
    assert!(stdout.contains(&id), "{stdout}");
    let after = db.json(&["search", STARTER_QUERY, "-k", "20", "--json"])?;
    assert!(!results(&after)?.is_empty());
    for hit in results(&after)? {
        assert_ne!(
            hit["document_id"],
            id.as_str(),
            "deleted document still found: {hit}"
        );
    }
    let live = db.json(&["docs", "list", "--json"])?;
    assert!(live["documents"]
        .as_array()
        .is_some_and(|d| d.iter().all(|d| d["id"] != id.as_str())));
    let all = db.json(&["docs", "list", "--all", "--json"])?;
    let tombstone = all["documents"]
        .as_array()
        .and_then(|d| d.iter().find(|d| d["id"] == id.as_str()))
        .ok_or("the deleted document is missing from `docs list --all`")?;
    assert_eq!(tombstone["deleted"], true);
    assert_eq!(tombstone["chunks"], 0);

    // stats.
    let stats = db.json(&["stats", "--json"])?;
    assert_eq!(stats["schema_version"], outpost_core::db::schema::VERSION);
    assert_eq!(stats["deleted_documents"], 1);
    let coll = &stats["collections"][0];
    assert_eq!(coll["name"], "default");
    assert_eq!(coll["model_id"], "sentence-transformers/all-MiniLM-L6-v2");
    assert_eq!(coll["dims"], 384);
    assert_eq!(coll["documents"], added - 1);
    assert!(coll["chunks"].as_u64() > Some(0));
    Ok(())
}

/// Ingests `path` expecting it to be refused: a non-zero exit, a message naming the file and
/// containing `why`, and the database as it was.
fn assert_refused(db: &TestDb, path: &Path, options: &[&str], why: &str) -> TestResult {
    let (documents, chunks) = (db.documents()?, db.chunks()?);
    let mut args = vec!["ingest", arg(path)];
    args.extend_from_slice(options);
    let (code, stdout, stderr) = db.run(&args)?;
    let output = format!("{stdout}{stderr}");
    assert_eq!(
        code,
        2,
        "`outpost {}` should exit 2: {output}",
        args.join(" ")
    );
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or("no file name")?;
    assert!(
        output.contains(name),
        "the error does not name {name}: {output}"
    );
    assert!(
        output.contains(why),
        "the error does not say {why:?}: {output}"
    );
    assert_eq!(
        db.documents()?,
        documents,
        "documents changed after: {output}"
    );
    assert_eq!(db.chunks()?, chunks, "chunks changed after: {output}");
    Ok(())
}

#[test]
fn bad_files_are_refused_by_name_and_change_nothing() -> TestResult {
    let db = db_with_one_document()?;
    assert_refused(&db, &fixture("empty.txt"), &[], "empty file")?;
    assert_refused(&db, &fixture("binary.bin"), &[], "binary file")?;
    assert_refused(&db, &fixture("latin1.txt"), &[], "invalid UTF-8")?;
    assert_refused(&db, &fixture("scanned.pdf"), &[], "no text layer")?;
    assert_refused(
        &db,
        &fixture("page.html"),
        &["--max-file-size", "100"],
        "over the size limit of 100 bytes",
    )?;
    assert_refused(&db, &db.dir().join("no-such-file.txt"), &[], "unreadable")?;
    Ok(())
}

#[test]
fn a_jsonl_file_with_a_bad_line_keeps_the_good_records() -> TestResult {
    let db = db_with_one_document()?;
    let (code, stdout, stderr) = db.run(&["ingest", arg(&fixture("records.jsonl"))])?;
    assert_eq!(
        code, 2,
        "a failed record must make the exit code non-zero: {stderr}"
    );
    assert!(stdout.contains("records.jsonl:3: invalid JSON"), "{stdout}");
    assert!(
        stdout.contains("4 added") && stdout.contains("1 failed"),
        "{stdout}"
    );
    assert_eq!(db.documents()?, 1 + 4);
    Ok(())
}

#[test]
fn a_symbolic_link_loop_is_reported_and_the_walk_goes_on() -> TestResult {
    let db = db_with_one_document()?;
    let dir = db.dir().join("notes");
    std::fs::create_dir(&dir)?;
    std::os::unix::fs::symlink(&dir, dir.join("a"))?;
    std::fs::write(
        dir.join("b.txt"),
        "Rainwater from the roof fills the barrel in a day.\n",
    )?;

    let (code, stdout, _) = db.run(&["ingest", arg(&dir), "--json"])?;
    assert_eq!(code, 2, "a loop must make the exit code non-zero: {stdout}");
    let report: Value = serde_json::from_str(&stdout)?;
    assert_eq!(report["failed"], 1, "{report}");
    let failure = &report["failures"][0];
    assert!(
        failure["path"]
            .as_str()
            .is_some_and(|p| p.ends_with("notes/a")),
        "{failure}"
    );
    assert!(
        failure["reason"]
            .as_str()
            .is_some_and(|r| r.contains("symbolic link loop")),
        "{failure}"
    );
    // b.txt, next to the loop, is ingested all the same.
    assert_eq!(report["added"], 1, "{report}");
    assert_eq!(db.documents()?, 2);
    Ok(())
}

#[test]
fn bad_arguments_are_refused_by_name_and_change_nothing() -> TestResult {
    let db = db_with_one_document()?;
    let cases: &[(&[&str], &[&str])] = &[
        (&["search", ""], &["query", "empty"]),
        (&["search", "river", "-k", "0"], &["-k", "between 1 and"]),
        (
            &["search", "river", "--filter", "nosuchkey=1"],
            &["unknown filter key 'nosuchkey'"],
        ),
        (
            &["search", "river", "--mode", "nonsense"],
            &["--mode", "'nonsense'"],
        ),
        (&["context", "river", "--budget", "0"], &["--budget"]),
    ];
    for (args, expected) in cases {
        let output = db.fails(args)?;
        for text in *expected {
            assert!(
                output.contains(text),
                "`outpost {}` should mention {text:?}: {output}",
                args.join(" ")
            );
        }
    }
    assert_eq!(db.documents()?, 1);
    assert_eq!(db.chunks()?, 1);
    Ok(())
}

#[test]
fn a_file_that_is_not_sqlite_is_refused_and_left_untouched() -> TestResult {
    let db = TestDb::new()?;
    let text = "Shopping list: flour, salt, a new bike chain, two jars of honey.\n".repeat(64);
    std::fs::write(db.path(), &text)?;
    for args in [&["stats"][..], &["init"], &["docs", "list"]] {
        let output = db.fails(args)?;
        assert!(output.contains("not a SQLite database"), "{output}");
        assert!(
            output.contains(arg(db.path())),
            "the error does not name the file: {output}"
        );
    }
    assert_eq!(
        std::fs::read_to_string(db.path())?,
        text,
        "the file was modified"
    );
    Ok(())
}

#[test]
fn a_database_of_a_newer_outpost_is_refused_and_left_untouched() -> TestResult {
    let db = db_with_one_document()?;
    python_sqlite(db.path(), "PRAGMA user_version = 99")?;
    let before = std::fs::read(db.path())?;

    for args in [&["stats"][..], &["ingest", arg(&fixture("page.html"))]] {
        let output = db.fails(args)?;
        assert!(output.contains("newer"), "{output}");
        assert!(output.contains("99"), "{output}");
    }

    assert!(
        std::fs::read(db.path())? == before,
        "the database file was modified"
    );
    assert_eq!(python_sqlite(db.path(), "PRAGMA user_version")?, "99");
    // Put the version back: everything is still there.
    python_sqlite(
        db.path(),
        &format!(
            "PRAGMA user_version = {}",
            outpost_core::db::schema::VERSION
        ),
    )?;
    assert_eq!(db.documents()?, 1);
    Ok(())
}

#[test]
fn metadata_filters_select_jsonl_records() -> TestResult {
    require_model();
    let db = TestDb::new()?;
    let report = db.json(&["ingest", arg(&corpus().join("faq.jsonl")), "--json"])?;
    assert_eq!(report["added"], 8, "{report}");

    let bees = db.json(&[
        "search",
        "bees",
        "--filter",
        "topic=bees",
        "-k",
        "2",
        "--json",
    ])?;
    let expected: BTreeSet<String> = ["faq-bees-001", "faq-bees-002"].map(String::from).into();
    assert_eq!(record_ids(&bees)?, expected, "{bees}");

    let recent = db.json(&["search", "bees", "--filter", "year>=2024", "--json"])?;
    let expected: BTreeSet<String> = [
        "faq-bread-002",
        "faq-bikes-002",
        "faq-solar-001",
        "faq-solar-002",
    ]
    .map(String::from)
    .into();
    assert_eq!(record_ids(&recent)?, expected, "{recent}");
    for hit in results(&recent)? {
        let id = hit["document_id"].as_str().ok_or("no document id")?;
        let doc = db.json(&["docs", "show", id, "--json"])?;
        let year = doc["metadata"]["year"].as_i64().ok_or("no year")?;
        assert!(year >= 2024, "{year} < 2024: {doc}");
    }

    // Filters combine: all must hold.
    let solar = db.json(&[
        "search",
        "batteries",
        "--filter",
        "year>=2024",
        "--filter",
        "topic=solar",
        "--json",
    ])?;
    let expected: BTreeSet<String> = ["faq-solar-001", "faq-solar-002"].map(String::from).into();
    assert_eq!(record_ids(&solar)?, expected, "{solar}");
    Ok(())
}

/// Bytes a Linux pipe holds (16 pages of 4 KiB) plus what `BufReader` reads ahead: a command
/// printing more than this is still writing when its reader closes the pipe.
const PIPE_AND_READ_AHEAD: usize = 64 * 1024 + 8 * 1024;

/// A database of `n` imported records, each one chunk with a stored vector (no model work), all
/// mentioning "sourdough".
fn db_with_records(n: usize) -> TestResult<TestDb> {
    require_model();
    let db = TestDb::new()?;
    let (code, stdout, stderr) = db.run(&["models", "list", "--json"])?;
    assert_eq!(code, 0, "{stderr}");
    let models: Value = serde_json::from_str(&stdout)?;
    let model_id = models["models"]
        .as_array()
        .and_then(|m| m.iter().find(|m| m["name"] == MODEL))
        .and_then(|m| m["model_id"].as_str())
        .ok_or("`models list --json` has no model_id")?
        .to_string();
    let file = db.dir().join("records.jsonl");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&file)?);
    for i in 0..n {
        let mut vector = vec![0.0f32; 384];
        vector[i % 384] = 1.0;
        let line = serde_json::json!({
            "id": format!("rec-{i:05}"),
            "title": format!("Record {i}"),
            "text": format!(
                "Record {i}: feed the sourdough starter twice a day, keep it warm, and discard \
                 half before each feeding so that the jar never overflows ({i})."
            ),
            "model": model_id,
            "embedding": vector,
        });
        writeln!(out, "{line}")?;
    }
    out.flush()?;
    let report = db.json(&["import", "jsonl", arg(&file), "--json"])?;
    assert_eq!(report["failed"], 0, "{report}");
    assert_eq!(db.documents()?, n as u64);
    Ok(db)
}

/// A reader that stops early (`outpost search … | head -1`) ends the command quietly with
/// status 0, as with ripgrep: no panic, no backtrace, nothing on stderr. Each command prints
/// more than the pipe holds, so it is still writing when the pipe closes; and once more with a
/// pipe closed before the command starts, so that its very first write fails.
#[test]
fn a_closed_stdout_ends_a_command_quietly() -> TestResult {
    let db = db_with_records(3000)?;
    let commands: [&[&str]; 3] = [
        &["search", "--mode", "text", "-k", "1000", "sourdough"],
        &["docs", "list", "--limit", "5000"],
        // Written through core's exporter, which reports write errors as text.
        &["export", "jsonl", "-", "--with-embeddings"],
    ];
    for args in commands {
        let shown = args.join(" ");
        let (code, stdout, stderr) = db.run(args)?;
        assert_eq!(code, 0, "`outpost {shown}`: {stderr}");
        assert!(
            stdout.len() > 2 * PIPE_AND_READ_AHEAD,
            "`outpost {shown}` prints only {} bytes: too little to fill the pipe",
            stdout.len()
        );

        // The reader takes one line and closes the pipe.
        let mut child = db
            .command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let mut reader = BufReader::new(child.stdout.take().ok_or("no stdout")?);
        let mut line = String::new();
        reader.read_line(&mut line)?;
        assert!(!line.is_empty(), "`outpost {shown}` printed nothing");
        drop(reader);
        let out = child.wait_with_output()?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            exit_code(out.status),
            0,
            "`outpost {shown}` with its reader gone: {stderr}"
        );
        assert!(
            stderr.is_empty(),
            "`outpost {shown}` with its reader gone wrote to stderr: {stderr}"
        );

        // Nobody reads at all.
        let (read_end, write_end) = std::io::pipe()?;
        drop(read_end);
        let out = db.command(args).stdout(write_end).output()?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            exit_code(out.status),
            0,
            "`outpost {shown}` into a closed pipe: {stderr}"
        );
        assert!(
            stderr.is_empty(),
            "`outpost {shown}` into a closed pipe wrote to stderr: {stderr}"
        );
    }
    Ok(())
}

#[test]
fn the_hash_embedder_needs_no_model_and_never_mixes_with_the_model() -> TestResult {
    let db = TestDb::new()?;
    let nothing_installed = tempfile::tempdir()?;
    let without_model = |args: &[&str]| -> TestResult<(i32, String, String)> {
        let out = db
            .command(args)
            .env("OUTPOST_HOME", nothing_installed.path())
            .env_remove("OUTPOST_MODEL_DIR")
            .env_remove("OUTPOST_EMBEDDER")
            .output()?;
        Ok((
            exit_code(out.status),
            String::from_utf8(out.stdout)?,
            String::from_utf8(out.stderr)?,
        ))
    };
    let corpus = corpus();

    // No model anywhere: the model is refused by name, the hash embedder works.
    let (code, _, stderr) = without_model(&["ingest", arg(&corpus)])?;
    assert_ne!(code, 0);
    assert!(stderr.contains("models fetch"), "{stderr}");
    let (code, _, stderr) = without_model(&["--embedder", "hash", "ingest", arg(&corpus)])?;
    assert_eq!(code, 0, "{stderr}");
    let (code, stdout, stderr) = without_model(&[
        "--embedder",
        "hash",
        "search",
        "sourdough starter",
        "--json",
    ])?;
    assert_eq!(code, 0, "{stderr}");
    let found: Value = serde_json::from_str(&stdout)?;
    assert!(
        sources(&found)?.iter().any(|s| s.ends_with(STARTER_DOC)),
        "the exact words find the document: {found}"
    );
    let stats = db.json(&["stats", "--json"])?;
    assert_eq!(
        stats["collections"][0]["model_id"], "test/hash-384",
        "{stats}"
    );

    // The real model never reads the hash embedder's vectors as its own.
    require_model();
    let output = db.fails(&["search", "starter", "--filter", "collection=default"])?;
    assert!(output.contains("test/hash-384"), "{output}");
    Ok(())
}

#[test]
fn verify_local_finds_a_full_text_index_that_disagrees_with_the_chunks() -> TestResult {
    let db = TestDb::new()?;
    let (code, out, err) = db.run(&["--embedder", "hash", "ingest", arg(&corpus())])?;
    assert_eq!(code, 0, "{out}{err}");
    let sound = db.json(&["verify", "--local", "--json"])?;
    assert_eq!(sound["ok"], true, "{sound}");

    // A chunk's text changed behind FTS5's back (its trigger gone), as a bug or another
    // program could.
    python_sqlite(db.path(), "DROP TRIGGER chunks_fts_update")?;
    python_sqlite(
        db.path(),
        "UPDATE chunks SET text = 'zebra quagga' WHERE seq = (SELECT min(seq) FROM chunks)",
    )?;
    let (code, out, _) = db.run(&["verify", "--local", "--json"])?;
    assert_eq!(code, 1, "{out}");
    let report: Value = serde_json::from_str(&out)?;
    assert_eq!(report["ok"], false);
    let problems = report["problems"].to_string();
    assert!(problems.contains("full-text index"), "{report}");
    Ok(())
}

#[test]
fn give_up_after_zero_fails_at_the_first_offline_error() -> TestResult {
    let db = TestDb::new()?;
    let started = std::time::Instant::now();
    let out = db
        .command(&[
            "--embedder",
            "hash",
            "sync",
            "--once",
            "--give-up-after",
            "0",
        ])
        .env_remove("OUTPOST_CENTRAL_URL")
        .env("OUTPOST_SUPABASE_URL", "http://127.0.0.1:1")
        .env("OUTPOST_SUPABASE_ANON_KEY", "anon")
        .env(
            "OUTPOST_SUPABASE_JWT",
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIwMTkzZjAwMC0wMDAwLTcwMDAtODAwMC0wMDAwMDAwMDAwMDEifQ.x",
        )
        .output()?;
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(exit_code(out.status), 1, "{err}");
    assert!(err.contains("offline"), "{err}");
    // By default the same call rides out 120 s of outage; here it makes one attempt.
    assert!(
        started.elapsed() < std::time::Duration::from_secs(60),
        "took {:?}",
        started.elapsed()
    );
    Ok(())
}
