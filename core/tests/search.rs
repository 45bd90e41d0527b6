//! Search: filters inside the KNN, range and prefix filters, argument errors, and hybrid
//! ranking with the real model.

mod common;

use std::sync::Arc;

use outpost_core::extract::{Extracted, Format};
use outpost_core::ingest::{ingest_text, Progress};
use outpost_core::{
    Engine, Error, Filter, IngestOptions, NewChunk, NewDocument, RrfParams, SearchMode,
    SearchOptions, SearchRequest, Store,
};
use serde_json::{json, Map, Value};

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn unit(v: Vec<f32>) -> Vec<f32> {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.into_iter().map(|x| x / n).collect()
}

/// 200 one-chunk documents in 8 dimensions: 188 "common" ones close to the query direction and
/// 12 "rare" ones pointing away from it, with a year from 2015 to 2024.
fn clustered_store() -> Result<Store, Error> {
    let mut store = Store::open_in_memory()?;
    let c = store.ensure_collection("c", "m", 8)?;
    for i in 0..200 {
        let rare = i % 17 == 0 && i < 200;
        let mut v = vec![0.0f32; 8];
        v[0] = if rare { -1.0 } else { 1.0 };
        v[1 + i % 7] = 0.05 * (i as f32 % 13.0);
        let mut metadata = Map::new();
        metadata.insert(
            "group".into(),
            Value::from(if rare { "rare" } else { "common" }),
        );
        metadata.insert("year".into(), Value::from(2015 + (i % 10)));
        let doc = NewDocument {
            source: format!("/data/{}/doc{i}.txt", if i < 100 { "a" } else { "b" }),
            title: format!("doc {i}"),
            content_hash: i.to_string(),
            metadata,
        };
        let text = format!(
            "document number {i} about {}",
            if rare { "lichen" } else { "moss" }
        );
        let chunk = NewChunk {
            byte_end: text.len(),
            text,
            embedding: unit(v),
            ..Default::default()
        };
        store.put_document(&c, &doc, &[chunk])?;
    }
    Ok(store)
}

fn query(
    store: &Store,
    text: &str,
    mode: SearchMode,
    k: usize,
    filters: &[&str],
) -> Result<Vec<String>, Error> {
    let filters: Vec<Filter> = filters
        .iter()
        .map(|f| f.parse())
        .collect::<Result<_, _>>()?;
    let v = unit(vec![1.0, 0.1, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
    let req = SearchRequest {
        mode,
        filters: &filters,
        vector: Some(("m", &v)),
        ..SearchRequest::new(text, k)
    };
    Ok(store.search(&req)?.into_iter().map(|h| h.title).collect())
}

fn metadata_of(store: &Store, title: &str) -> Result<Value, Error> {
    let docs = store.list_documents(None, false, 1000)?;
    let d = docs.iter().find(|d| d.title == title).expect("listed");
    Ok(store.get_document(&d.id)?.metadata)
}

#[test]
fn a_filter_is_applied_inside_the_knn_so_k_results_come_back() -> TestResult {
    let store = clustered_store()?;
    // The nearest 10 overall are all common: filtering after the KNN would return nothing.
    let nearest = query(&store, "moss", SearchMode::Vector, 10, &[])?;
    for t in &nearest {
        assert_eq!(metadata_of(&store, t)?["group"], "common");
    }
    for mode in [SearchMode::Vector, SearchMode::Hybrid, SearchMode::Text] {
        let text = if mode == SearchMode::Text {
            "document"
        } else {
            "moss"
        };
        let rare = query(&store, text, mode, 10, &["group=rare"])?;
        assert_eq!(rare.len(), 10, "{mode}: 12 rare documents match, 10 asked");
        for t in &rare {
            assert_eq!(metadata_of(&store, t)?["group"], "rare", "{mode}");
        }
        // Fewer matches than k: all of them, and no more.
        assert_eq!(
            query(&store, text, mode, 50, &["group=rare"])?.len(),
            12,
            "{mode}"
        );
    }
    Ok(())
}

#[test]
fn words_in_most_chunks_do_not_change_the_text_ranking() -> TestResult {
    // 6,000 one-chunk documents (enough for the search to leave frequent words out): "document"
    // is in all of them and "moss" in 16 of 17, so FTS5's BM25 gives both next to no weight and
    // the search leaves them out of the query; the 353 "lichen" chunks must lead.
    let mut store = Store::open_in_memory()?;
    let c = store.ensure_collection("c", "m", 2)?;
    let mut lichen = Vec::new();
    for i in 0..6000 {
        let rare = i % 17 == 0;
        let title = format!("doc {i}");
        if rare {
            lichen.push(title.clone());
        }
        let text = format!(
            "document number {i} about {}",
            if rare { "lichen" } else { "moss" }
        );
        let doc = NewDocument {
            source: format!("/d/{i}"),
            title,
            content_hash: i.to_string(),
            metadata: Map::new(),
        };
        let chunk = NewChunk {
            byte_end: text.len(),
            text,
            embedding: vec![1.0, 0.0],
            ..Default::default()
        };
        store.put_document(&c, &doc, &[chunk])?;
    }
    for k in [5, 400] {
        let hits = store.search(&SearchRequest {
            mode: SearchMode::Text,
            ..SearchRequest::new("document moss lichen", k)
        })?;
        // Asking for more than the rare word matches fills up from the whole query.
        assert_eq!(hits.len(), k);
        let top = &hits[..k.min(lichen.len())];
        assert!(top.iter().all(|h| lichen.contains(&h.title)), "k = {k}");
    }
    // Only frequent words: the query is kept whole.
    let hits = store.search(&SearchRequest {
        mode: SearchMode::Text,
        ..SearchRequest::new("document moss", 10)
    })?;
    assert_eq!(hits.len(), 10);
    Ok(())
}

#[test]
fn range_prefix_and_collection_filters() -> TestResult {
    let store = clustered_store()?;
    let recent = query(
        &store,
        "moss",
        SearchMode::Vector,
        30,
        &["year>=2022", "year<2024"],
    )?;
    assert_eq!(recent.len(), 30);
    for t in &recent {
        let year = metadata_of(&store, t)?["year"].as_i64().unwrap_or_default();
        assert!((2022..2024).contains(&year), "{t}: {year}");
    }
    let in_b = query(&store, "moss", SearchMode::Hybrid, 20, &["source=/data/b/"])?;
    assert_eq!(in_b.len(), 20);
    for t in &in_b {
        let n: usize = t.trim_start_matches("doc ").parse()?;
        assert!(n >= 100, "{t} is not under /data/b/");
    }
    assert_eq!(
        query(&store, "moss", SearchMode::Vector, 5, &["collection=c"])?.len(),
        5
    );
    Ok(())
}

#[test]
fn bad_search_arguments_are_named() -> TestResult {
    let store = clustered_store()?;
    let err = |r: Result<Vec<String>, Error>| r.expect_err("refused").to_string();
    assert!(err(query(&store, "  ", SearchMode::Hybrid, 5, &[])).contains("query is empty"));
    assert!(err(query(&store, "moss", SearchMode::Hybrid, 0, &[])).contains("-k"));
    let unknown = err(query(
        &store,
        "moss",
        SearchMode::Hybrid,
        5,
        &["colour=red"],
    ));
    assert!(
        unknown.contains("unknown filter key 'colour'") && unknown.contains("group, year"),
        "{unknown}"
    );
    assert!(err(query(
        &store,
        "moss",
        SearchMode::Hybrid,
        5,
        &["collection=nope"]
    ))
    .contains("'nope' not found"));
    assert!("nonsense".parse::<SearchMode>().is_err());
    let short = vec![1.0f32; 3];
    let req = SearchRequest {
        mode: SearchMode::Vector,
        vector: Some(("m", &short)),
        ..SearchRequest::new("moss", 5)
    };
    let e = store.search(&req).expect_err("wrong dimension").to_string();
    assert!(
        e.contains("3 dimensions") && e.contains("8-dimensional"),
        "{e}"
    );
    Ok(())
}

fn text_doc(title: &str, text: &str) -> Extracted {
    let mut metadata = Map::new();
    metadata.insert("format".into(), json!("text"));
    Extracted {
        key: None,
        title: title.into(),
        text: text.into(),
        metadata,
        format: Format::Text,
        raw: text.as_bytes().to_vec(),
    }
}

#[test]
fn hybrid_ranking_fuses_meaning_and_exact_terms() -> TestResult {
    let model = common::model();
    let mut store = Store::open_in_memory()?;
    let opts = IngestOptions::default();
    let coll = store.ensure_collection(
        "default",
        outpost_core::Embedder::model_id(model.as_ref()),
        384,
    )?;
    let docs = [
        ("both", "The Pagden method splits a honey bee colony to stop it from swarming."),
        ("meaning", "When a hive gets crowded, bees raise a new queen and half the colony flies off in a swarm."),
        ("term", "Pagden is a family name from Kent; the Pagden family ran a bakery for a century."),
        ("other", "Bicycle chains stretch with wear and should be replaced at 0.5 percent elongation."),
    ];
    for (title, text) in docs {
        ingest_text(
            &mut store,
            model.as_ref(),
            &coll,
            title,
            text_doc(title, text),
            &opts,
            &mut |_: Progress<'_>| {},
        )?;
    }
    let engine = Engine::new(store, model.clone());
    let search = |mode, rrf| -> Result<Vec<String>, Error> {
        let opts = SearchOptions {
            k: 4,
            mode,
            rrf,
            ..Default::default()
        };
        Ok(engine
            .search("Pagden swarm control", &opts)?
            .into_iter()
            .map(|h| h.title)
            .collect())
    };
    let hybrid = search(SearchMode::Hybrid, RrfParams::default())?;
    assert_eq!(hybrid[0], "both", "in both rankings, so first: {hybrid:?}");
    let vector = search(SearchMode::Vector, RrfParams::default())?;
    let text = search(SearchMode::Text, RrfParams::default())?;
    assert!(
        !text.contains(&"other".to_string()),
        "no shared words: {text:?}"
    );
    assert!(!text.contains(&"meaning".to_string()) || text.len() > 2);
    assert_eq!(
        vector[3], "other",
        "unrelated text ranks last by meaning: {vector:?}"
    );
    // The weights move hybrid towards one ranking or the other.
    let only_vector = search(
        SearchMode::Hybrid,
        RrfParams {
            text_weight: 0.0,
            ..Default::default()
        },
    )?;
    assert_eq!(only_vector, vector);
    let only_text = search(
        SearchMode::Hybrid,
        RrfParams {
            vector_weight: 0.0,
            ..Default::default()
        },
    )?;
    assert_eq!(only_text[..text.len()], text[..]);
    let _ = Arc::strong_count(&model);
    Ok(())
}

#[test]
fn the_example_corpus_answers_its_sample_questions() -> TestResult {
    let dir = tempfile::tempdir()?;
    let mut engine = Engine::new(Store::open(dir.path().join("o.db"))?, common::model());
    let report = engine.ingest(&[common::corpus()], &IngestOptions::default(), &mut |_| {})?;
    assert_eq!(report.failed, 0, "{:?}", report.failures);
    // The sample questions of examples/README.md, each with its best document in the top 3.
    let cases = [
        (
            "how do I keep a sourdough starter alive",
            "keeping-a-sourdough-starter-alive.md",
        ),
        (
            "what size battery bank for a cabin fridge",
            "battery-bank-sizing-for-cabin-fridge.md",
        ),
        (
            "how to count varroa mites with an alcohol wash",
            "varroa-mite-control.md",
        ),
        (
            "my chain skips after fitting a new one",
            "chain-cleaning-and-wear.md",
        ),
        (
            "MPPT or PWM charge controller",
            "charge-controllers-mppt-pwm.txt",
        ),
        (
            "why is my bread dense and gummy",
            "dense-crumb-troubleshooting.html",
        ),
        (
            "which bees pollinate tomatoes by buzzing",
            "native-pollinators.txt",
        ),
        ("brake lever feels spongy", "brake-adjustment.txt"),
        (
            "fuse size and class T fuse near the battery",
            "cabin-solar-installation-guide.md",
        ),
    ];
    let mut first = 0;
    for (q, expected) in cases {
        let hits = engine.search(
            q,
            &SearchOptions {
                k: 3,
                ..Default::default()
            },
        )?;
        assert!(
            hits.iter().any(|h| h.source.ends_with(expected)),
            "{q}: {:?}",
            hits.iter().map(|h| &h.source).collect::<Vec<_>>()
        );
        assert!(hits.windows(2).all(|w| w[0].score >= w[1].score));
        first += usize::from(hits[0].source.ends_with(expected));
    }
    assert!(
        first >= 8,
        "best document first for only {first} of 9 questions"
    );
    Ok(())
}
