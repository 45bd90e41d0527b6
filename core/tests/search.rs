//! Search: filters inside the KNN, range and prefix filters, typed filter expressions (and, or,
//! not) in every mode, argument errors, and hybrid ranking with the real model.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;

use outpost_core::ingest::extract::{Extracted, Format};
use outpost_core::ingest::{ingest_text, Progress};
use outpost_core::search::{Condition, Field, FilterExpr, FilterOp, FilterValue};
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
    // With a second collection, a collection filter alone (no other condition) restricts every
    // mode to that collection.
    let mut store = store;
    let d = store.ensure_collection("d", "m", 8)?;
    let doc = NewDocument {
        source: "/data/d/moss.txt".into(),
        title: "moss in d".into(),
        content_hash: "d".into(),
        metadata: Map::new(),
    };
    let text = "moss and more moss".to_string();
    let chunk = NewChunk {
        byte_end: text.len(),
        text,
        embedding: unit(vec![1.0, 0.1, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]),
        ..Default::default()
    };
    store.put_document(&d, &doc, &[chunk])?;
    for mode in [SearchMode::Text, SearchMode::Vector, SearchMode::Hybrid] {
        assert_eq!(
            query(&store, "moss", mode, 5, &["collection=d"])?,
            ["moss in d"],
            "{mode:?}"
        );
        let in_c = query(&store, "moss", mode, 5, &["collection=c"])?;
        assert_eq!(in_c.len(), 5, "{mode:?}");
        assert!(!in_c.iter().any(|t| t == "moss in d"), "{mode:?}: {in_c:?}");
    }
    Ok(())
}

#[test]
fn bad_search_arguments_are_named() -> TestResult {
    let store = clustered_store()?;
    let err = |r: Result<Vec<String>, Error>| r.expect_err("refused").to_string();
    assert!(err(query(&store, "  ", SearchMode::Hybrid, 5, &[])).contains("query is empty"));
    // Arguments are named as the library names them, not by a front end's flags.
    let k = err(query(&store, "moss", SearchMode::Hybrid, 0, &[]));
    assert!(k.starts_with("invalid k:") && !k.contains("-k"), "{k}");
    let mode = "nonsense"
        .parse::<SearchMode>()
        .expect_err("refused")
        .to_string();
    assert!(
        mode.starts_with("invalid mode:") && !mode.contains("--"),
        "{mode}"
    );
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

#[test]
fn the_filter_syntax_parses_into_typed_conditions() -> TestResult {
    let cond = |s: &str| -> Result<Condition, Error> {
        match s.parse::<FilterExpr>()? {
            FilterExpr::Cond(c) => Ok(c),
            e => panic!("{s} parsed as {e}"),
        }
    };
    let number = |value: f64, text: &str| FilterValue::Number {
        value,
        text: text.into(),
    };
    let year = cond("year>=2023")?;
    assert_eq!(year.field(), &Field::meta("year"));
    assert_eq!(year.op(), FilterOp::Ge);
    assert_eq!(year.value(), &number(2023.0, "2023"));
    // A number keeps its spelling: `=` also matches that text.
    assert_eq!(cond("price=2.50")?.value(), &number(2.5, "2.50"));
    assert_eq!(cond("draft=false")?.value(), &FilterValue::Bool(false));
    assert_eq!(
        cond("topic=bees")?.value(),
        &FilterValue::Text("bees".into())
    );
    // Not a number: compared as text, as before (ISO dates order as text).
    assert_eq!(cond("year>=abc")?.value(), &FilterValue::Text("abc".into()));
    assert_eq!(cond("date<2024-05-01")?.op(), FilterOp::Lt);
    // Built-in fields take text, even text that looks like a number.
    let source = cond("source=2024/")?;
    assert_eq!(source.field(), &Field::Source);
    assert_eq!(source.value(), &FilterValue::Text("2024/".into()));
    assert_eq!(cond("collection=c")?, Condition::collection("c"));
    assert_eq!(cond("meta.source=x")?.field(), &Field::meta("source"));
    assert_eq!(
        cond("url=http://x?a=b")?.value(),
        &FilterValue::Text("http://x?a=b".into())
    );
    // Written back as parsed (spaces around the key and value are not kept).
    for s in [
        "year>=2023",
        "price=2.50",
        "meta.source=x",
        "topic<bees",
        "source=/a/",
    ] {
        assert_eq!(cond(s)?.to_string(), s);
    }
    assert_eq!(cond(" year >= 2023 ")?.to_string(), "year>=2023");
    // A list of filters is their conjunction.
    let filters: Vec<Filter> = vec!["topic=bees".parse()?, "year>=2023".parse()?];
    assert_eq!(
        FilterExpr::from_filters(&filters)?,
        FilterExpr::all([cond("topic=bees")?.into(), cond("year>=2023")?.into()])
    );
    let e = FilterExpr::from(cond("topic=bees")?).or(!"year>=2023".parse::<FilterExpr>()?);
    assert_eq!(e.to_string(), "(topic=bees or not year>=2023)");
    Ok(())
}

#[test]
fn bad_filters_are_refused_naming_the_filter() -> TestResult {
    let parse_err = |s: &str| s.parse::<Filter>().expect_err(s).to_string();
    assert_eq!(
        parse_err("collection<c"),
        "invalid filter: 'collection<c': collection takes only '='"
    );
    assert_eq!(
        parse_err("source>=/data/"),
        "invalid filter: 'source>=/data/': source takes only '=' (a prefix)"
    );
    assert!(parse_err("novalue").contains("'novalue' is not KEY=VALUE"));
    assert!(parse_err("=x").contains("'=x' has no key"));
    // Built in Rust: the same checks, and a number must be one.
    let nan = Condition::meta("year", FilterOp::Ge, f64::NAN).expect_err("NaN");
    assert_eq!(
        nan.to_string(),
        "invalid filter: 'year>=NaN': 'NaN' is not a number"
    );
    assert!(Condition::new(Field::Source, FilterOp::Lt, "/data/").is_err());
    assert!(Condition::meta("year", FilterOp::Lt, 2020).is_ok());

    let store = clustered_store()?;
    // A filter built field by field is checked at the search.
    let built = Filter {
        key: "collection".into(),
        op: FilterOp::Gt,
        value: "c".into(),
    };
    let req = SearchRequest {
        mode: SearchMode::Text,
        filters: std::slice::from_ref(&built),
        ..SearchRequest::new("moss", 5)
    };
    let e = store.search(&req).expect_err("refused").to_string();
    assert!(
        e.contains("'collection>c': collection takes only '='"),
        "{e}"
    );
    // Keys and collections are checked inside `or` and `not` too.
    let req = SearchRequest {
        mode: SearchMode::Text,
        ..SearchRequest::new("moss", 5)
    };
    let unknown = FilterExpr::any(["group=rare".parse()?, "colour=red".parse()?]);
    let e = store.search_where(&req, &unknown).expect_err("unknown key");
    assert!(
        matches!(e, Error::UnknownFilterKey { ref key, .. } if key == "colour"),
        "{e}"
    );
    let nope = !"collection=nope".parse::<FilterExpr>()?;
    let e = store
        .search_where(&req, &nope)
        .expect_err("no such collection");
    assert!(e.to_string().contains("'nope' not found"), "{e}");
    Ok(())
}

/// What the clustered store (plus "moss in d") knows of a document, from its title.
struct Doc {
    collection: &'static str,
    source: String,
    group: Option<&'static str>,
    year: Option<i64>,
}

fn doc_of(title: &str) -> Doc {
    match title
        .strip_prefix("doc ")
        .and_then(|n| n.parse::<usize>().ok())
    {
        Some(i) => Doc {
            collection: "c",
            source: format!("/data/{}/doc{i}.txt", if i < 100 { "a" } else { "b" }),
            group: Some(if i % 17 == 0 { "rare" } else { "common" }),
            year: Some(2015 + (i % 10) as i64),
        },
        None => Doc {
            collection: "d",
            source: "/data/d/moss.txt".into(),
            group: None,
            year: None,
        },
    }
}

/// The clustered store with a second collection holding one document without metadata.
fn two_collection_store() -> Result<Store, Error> {
    let mut store = clustered_store()?;
    let d = store.ensure_collection("d", "m", 8)?;
    let doc = NewDocument {
        source: "/data/d/moss.txt".into(),
        title: "moss in d".into(),
        content_hash: "d".into(),
        metadata: Map::new(),
    };
    let text = "moss and more moss".to_string();
    let chunk = NewChunk {
        byte_end: text.len(),
        text,
        embedding: unit(vec![1.0, 0.1, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]),
        ..Default::default()
    };
    store.put_document(&d, &doc, &[chunk])?;
    Ok(store)
}

/// The titles a search with `filters` and `expr` returns, as a set.
fn titles_where(
    store: &Store,
    mode: SearchMode,
    filters: &[&str],
    expr: &FilterExpr,
) -> Result<BTreeSet<String>, Box<dyn std::error::Error>> {
    let filters: Vec<Filter> = filters
        .iter()
        .map(|f| f.parse())
        .collect::<Result<_, _>>()?;
    let v = unit(vec![1.0, 0.1, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
    // "document" is in every chunk of c, "moss" in the chunk of d; k above the 201 documents.
    let req = SearchRequest {
        mode,
        filters: &filters,
        vector: Some(("m", &v)),
        ..SearchRequest::new("document moss", 300)
    };
    let hits = store.search_where(&req, expr)?;
    let titles: BTreeSet<String> = hits.into_iter().map(|h| h.title).collect();
    Ok(titles)
}

#[test]
fn or_and_not_built_in_rust_select_what_they_should_in_every_mode() -> TestResult {
    let store = two_collection_store()?;
    let mut all: Vec<String> = (0..200).map(|i| format!("doc {i}")).collect();
    all.push("moss in d".into());
    let f = |s: &str| s.parse::<FilterExpr>();
    type Keep = fn(&Doc) -> bool;
    let cases: Vec<(FilterExpr, &[&str], Keep)> = vec![
        (
            FilterExpr::any([f("group=rare")?, f("year=2015")?]),
            &[],
            |d| d.group == Some("rare") || d.year == Some(2015),
        ),
        (!f("source=/data/a/")?, &[], |d| {
            !d.source.starts_with("/data/a/")
        }),
        (!(f("year>=2017")?.and(f("year<2023")?)), &[], |d| {
            !d.year.is_some_and(|y| (2017..2023).contains(&y))
        }),
        // A document without the key: the condition does not hold, so its negation does.
        (!f("year>=2000")?, &[], |d| d.year.is_none()),
        (!f("group=common")?, &[], |d| d.group != Some("common")),
        // A collection inside `or` / `not` is one more condition.
        (f("collection=d")?.or(f("group=rare")?), &[], |d| {
            d.collection == "d" || d.group == Some("rare")
        }),
        (!f("collection=c")?, &[], |d| d.collection != "c"),
        // Combined with the request's own filters, all of which hold as well.
        (
            FilterExpr::any([f("group=rare")?, f("source=/data/a/")?]),
            &["year>=2020"],
            |d| {
                d.year.is_some_and(|y| y >= 2020)
                    && (d.group == Some("rare") || d.source.starts_with("/data/a/"))
            },
        ),
        (
            FilterExpr::from(Condition::source_prefix("/data/b/")).and(!FilterExpr::from(
                Condition::meta("group", FilterOp::Eq, "common")?,
            )),
            &[],
            |d| d.source.starts_with("/data/b/") && d.group == Some("rare"),
        ),
        (
            FilterExpr::from(Condition::meta("year", FilterOp::Lt, 2016)?)
                .or(Condition::collection("d")),
            &["collection=c"],
            |d| d.year == Some(2015),
        ),
        (FilterExpr::any([]), &[], |_| false),
        (FilterExpr::all([]), &[], |_| true),
        (!FilterExpr::any([]), &[], |_| true),
    ];
    for (expr, filters, keep) in &cases {
        let expected: BTreeSet<String> = all.iter().filter(|t| keep(&doc_of(t))).cloned().collect();
        for mode in [SearchMode::Vector, SearchMode::Text, SearchMode::Hybrid] {
            let got = titles_where(&store, mode, filters, expr)?;
            assert_eq!(got, expected, "{mode}: {expr} with {filters:?}");
        }
    }
    Ok(())
}

#[test]
fn several_filters_bind_their_parameters_in_order() -> TestResult {
    // Three metadata filters (a number range and text) and a source prefix, on the exact path:
    // the same ranking as the unfiltered one filtered by hand.
    let store = clustered_store()?;
    let filters = ["group=common", "year>=2017", "year<2022", "source=/data/b/"];
    let keep = |t: &String| {
        let d = doc_of(t);
        d.group == Some("common")
            && d.year.is_some_and(|y| (2017..2022).contains(&y))
            && d.source.starts_with("/data/b/")
    };
    let everything = query(&store, "moss", SearchMode::Vector, 200, &[])?;
    let by_hand: Vec<String> = everything.into_iter().filter(keep).collect();
    assert!(by_hand.len() > 20, "{}", by_hand.len());
    for k in [10, 200] {
        let got = query(&store, "moss", SearchMode::Vector, k, &filters)?;
        assert_eq!(got, by_hand[..k.min(by_hand.len())], "k = {k}");
    }
    for mode in [SearchMode::Text, SearchMode::Hybrid] {
        let got: BTreeSet<String> = query(&store, "document", mode, 200, &filters)?
            .into_iter()
            .collect();
        assert_eq!(got, by_hand.iter().cloned().collect(), "{mode}");
    }

    // The same on the paths of a large collection (HNSW index, in-memory text index), which
    // read the kept chunks with the filter's parameters alone.
    let mut store = Store::open_in_memory()?;
    let c = store.ensure_collection("big", "m", 4)?;
    let n = 2400;
    for i in 0..n {
        let mut metadata = Map::new();
        metadata.insert("a".into(), Value::from(i % 3));
        metadata.insert("b".into(), Value::from(i % 5));
        metadata.insert("c".into(), Value::from(format!("x{}", i % 2)));
        let doc = NewDocument {
            source: format!("/s/{}/{i}", i % 7),
            title: i.to_string(),
            content_hash: i.to_string(),
            metadata,
        };
        let text = format!("item {i} of the pile");
        let chunk = NewChunk {
            byte_end: text.len(),
            text,
            embedding: unit(vec![
                1.0,
                0.1 * (i % 13) as f32,
                0.1 * (i % 7) as f32,
                0.5 - 0.01 * (i % 17) as f32,
            ]),
            ..Default::default()
        };
        store.put_document(&c, &doc, &[chunk])?;
    }
    let v = unit(vec![1.0, 0.3, 0.2, 0.1]);
    let search = |mode,
                  filters: &[&str],
                  expr: &FilterExpr|
     -> Result<Vec<usize>, Box<dyn std::error::Error>> {
        let filters: Vec<Filter> = filters
            .iter()
            .map(|f| f.parse())
            .collect::<Result<_, _>>()?;
        let req = SearchRequest {
            mode,
            filters: &filters,
            vector: Some(("m", &v)),
            ..SearchRequest::new("item", 1000)
        };
        let hits = store.search_where(&req, expr)?;
        assert!(hits.windows(2).all(|w| w[0].score >= w[1].score));
        Ok(hits
            .iter()
            .map(|h| h.title.parse())
            .collect::<Result<_, _>>()?)
    };
    let string_filters = ["a=1", "b>=3", "c=x0", "source=/s/1/"];
    let expr = FilterExpr::any([
        "b=0".parse()?,
        !("a<2"
            .parse::<FilterExpr>()?
            .or("c=x1".parse::<FilterExpr>()?)),
    ])
    .and(Condition::source_prefix("/s/2/"));
    type Keep = fn(usize) -> bool;
    let cases: [(&[&str], FilterExpr, Keep); 2] = [
        (&string_filters, FilterExpr::all([]), |i| {
            i % 3 == 1 && i % 5 >= 3 && i % 2 == 0 && i % 7 == 1
        }),
        (&["b<4"], expr, |i| {
            i % 5 < 4 && (i % 5 == 0 || !(i % 3 < 2 || i % 2 == 1)) && i % 7 == 2
        }),
    ];
    for (filters, expr, keep) in &cases {
        let expected: BTreeSet<usize> = (0..n).filter(|&i| keep(i)).collect();
        assert!(!expected.is_empty() && expected.len() < 1000);
        for mode in [SearchMode::Vector, SearchMode::Text, SearchMode::Hybrid] {
            let got = search(mode, filters, expr)?;
            assert_eq!(got.len(), expected.len(), "{mode}: {filters:?} {expr}");
            assert_eq!(got.into_iter().collect::<BTreeSet<_>>(), expected, "{mode}");
        }
    }
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
            &std::cell::RefCell::new(&mut store),
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
    let engine = Engine::new(Store::open(dir.path().join("o.db"))?, common::model());
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

/// Text made of words with shared stems, diacritics, capitals, digits, repeats and a token
/// longer than the stemmer takes, from a fixed seed.
fn varied_text(state: &mut u64, words: usize) -> String {
    const VOCAB: &[&str] = &[
        "run",
        "running",
        "runs",
        "runner",
        "Café",
        "cafe",
        "naïve",
        "naive",
        "Zürich",
        "bee",
        "bees",
        "beeswax",
        "honey",
        "HONEY",
        "hive",
        "hives",
        "connection",
        "connected",
        "connecting",
        "the",
        "of",
        "and",
        "a",
        "2024",
        "x86",
        "ÉCOLE",
        "école",
        "relational",
        "generalization",
        "moss",
        "lichen",
        "straße",
        "strasse",
        "data",
        "database",
        "supercalifragilisticexpialidocious-and-then-some-more-letters-to-pass-sixty-four-bytes",
    ];
    (0..words)
        .map(|_| {
            *state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            // Skewed towards the start of the list, as real word frequencies are.
            let r = ((*state >> 33) % 1000) as usize;
            VOCAB[(r * r / 1000) * VOCAB.len() / 1000]
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Every hit of a text search against FTS5's own bm25() for the same query: same chunks, same
/// scores.
fn assert_text_matches_fts5(store: &Store, queries: &[String]) -> TestResult {
    let conn = store.connection();
    for q in queries {
        // The words as the search reads them: runs of letters and digits, each quoted.
        let quoted: Vec<String> = q
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
            .map(|w| format!("\"{w}\""))
            .collect();
        let mut stmt = conn.prepare(
            "SELECT k.id, -bm25(chunks_fts) FROM chunks_fts JOIN chunks k ON k.seq = chunks_fts.rowid
             WHERE chunks_fts MATCH ?1 ORDER BY rank",
        )?;
        let fts: Vec<(String, f64)> = stmt
            .query_map([quoted.join(" OR ")], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        for k in [1, 10, 200] {
            let hits = store.search(&SearchRequest {
                mode: SearchMode::Text,
                ..SearchRequest::new(q, k)
            })?;
            assert_eq!(hits.len(), fts.len().min(k), "{q:?} k={k}");
            for (hit, (_, want)) in hits.iter().zip(&fts) {
                // The same score at each rank, and each chunk scored as FTS5 scores it.
                assert!(
                    (hit.score - want).abs() < 1e-9,
                    "{q:?}: {} vs {want}",
                    hit.score
                );
                let own = fts.iter().find(|(id, _)| *id == hit.chunk_id);
                assert!(
                    own.is_some_and(|(_, s)| (s - hit.score).abs() < 1e-9),
                    "{q:?}: {} is not FTS5's",
                    hit.chunk_id
                );
            }
        }
    }
    Ok(())
}

#[test]
fn text_search_ranks_as_fts5_bm25_through_changes_and_restarts() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("t.db");
    let mut store = Store::open(&path)?;
    let c = store.ensure_collection("c", "m", 2)?;
    let mut state = 7u64;
    let put = |store: &mut Store, i: usize, state: &mut u64| -> Result<String, Error> {
        let doc = NewDocument {
            source: format!("/d/{i}"),
            title: format!("doc {i}"),
            content_hash: i.to_string(),
            metadata: Map::new(),
        };
        let chunks: Vec<NewChunk> = (0..1 + i % 3)
            .map(|_| {
                let text = varied_text(state, 3 + (*state % 60) as usize);
                NewChunk {
                    byte_end: text.len(),
                    text,
                    embedding: vec![1.0, 0.0],
                    ..Default::default()
                }
            })
            .collect();
        Ok(store.put_document(&c, &doc, &chunks)?.0)
    };
    let mut ids = Vec::new();
    for i in 0..800 {
        ids.push(put(&mut store, i, &mut state)?);
    }
    let queries: Vec<String> = (0..40)
        .map(|i| {
            let mut q = varied_text(&mut state, 1 + i % 7);
            if i % 5 == 0 {
                q.push_str(" unseenword");
            }
            q
        })
        .chain(["bees bees honey".to_string(), "RUNNING runs".to_string()])
        .collect();
    assert_text_matches_fts5(&store, &queries)?;

    // Deleted and added documents: the next search sees both.
    for id in ids.iter().step_by(7) {
        store.delete_document(id)?;
    }
    for i in 800..900 {
        put(&mut store, i, &mut state)?;
    }
    assert_text_matches_fts5(&store, &queries)?;

    // Saved and loaded, then rebuilt from a damaged file.
    store.unload_vector_indexes()?;
    let ann = dir.path().join("t.db.ann");
    let saved: Vec<_> = std::fs::read_dir(&ann)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "lex"))
        .collect();
    assert_eq!(saved.len(), 1);
    drop(store);
    let store = Store::open(&path)?;
    assert_text_matches_fts5(&store, &queries)?;
    store.unload_vector_indexes()?;
    let mut bytes = std::fs::read(&saved[0])?;
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    std::fs::write(&saved[0], bytes)?;
    assert_text_matches_fts5(&store, &queries)?;
    Ok(())
}
