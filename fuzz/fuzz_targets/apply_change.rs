//! Applying pulled central changes (what `sync` does with each pulled page:
//! `Engine::apply_pulled`), to a copy of a store that holds a document, a conversation and a
//! message, so that records can update, lose to or delete them. The first byte picks how the
//! page is made: a JSON array of change records (the wire form; seeds are real records), or the
//! store's own records changed field by field from the rest of the input (stamps, devices,
//! tombstones, collections, ids, chunk spans and ordinals, vector sizes, models, texts). What
//! must hold: a page is applied or refused with an error naming the record, never a panic; the
//! store stays sound (`Engine::check` finds no problem) and searchable either way.
#![no_main]

use std::sync::OnceLock;

use arbitrary::Unstructured;
use libfuzzer_sys::fuzz_target;
use outpost_core::{Change, Engine, IngestOptions, Kind, SearchMode, SearchOptions, TextInput};
use outpost_fuzz::{template, Scratch, DIMS};

static TEMPLATE: OnceLock<Scratch> = OnceLock::new();
static RECORDS: OnceLock<Vec<Change>> = OnceLock::new();

fn build(engine: &Engine) {
    let doc = engine
        .ingest_text(
            TextInput {
                text:
                    "# Bees\n\nVarroa mites are counted with a sugar roll.\n\nSmoke calms a hive."
                        .into(),
                source: "notes/bees.md".into(),
                ..TextInput::default()
            },
            &IngestOptions::default(),
        )
        .expect("a document");
    let conversation = engine.create_conversation("bees").expect("a conversation");
    let message = engine
        .add_message(&conversation.id, "user", "how do I count mites?")
        .expect("a message");
    let records = [
        (Kind::Document, doc.id),
        (Kind::Conversation, conversation.id),
        (Kind::Message, message.id),
    ]
    .into_iter()
    .filter_map(|(kind, id)| engine.change_record(kind, &id).expect("a change record"))
    .collect();
    let _ = RECORDS.set(records);
}

/// Changes `change` by what `u` says; every field can move.
fn perturb(change: &mut Change, u: &mut Unstructured<'_>) -> arbitrary::Result<()> {
    fn text(u: &mut Unstructured<'_>, s: &mut String) -> arbitrary::Result<()> {
        if u.arbitrary()? {
            *s = u.arbitrary()?;
        }
        Ok(())
    }
    fn num(u: &mut Unstructured<'_>, n: &mut i64) -> arbitrary::Result<()> {
        match u.int_in_range(0..=3)? {
            0 => {}
            1 => *n = n.wrapping_add(i64::from(u.arbitrary::<i8>()?)),
            _ => *n = u.arbitrary()?,
        }
        Ok(())
    }
    match change {
        Change::Document(d) => {
            num(u, &mut d.hlc)?;
            text(u, &mut d.device)?;
            d.deleted = u.arbitrary()?;
            text(u, &mut d.collection)?;
            text(u, &mut d.id)?;
            text(u, &mut d.home_device)?;
            text(u, &mut d.source)?;
            text(u, &mut d.content_hash)?;
            num(u, &mut d.updated_at)?;
            if u.arbitrary()? {
                let n = u.int_in_range(0..=d.chunks.len() + 2)?;
                let first = d.chunks.first().cloned();
                if let Some(first) = first {
                    d.chunks.resize(n, first);
                }
            }
            for c in &mut d.chunks {
                text(u, &mut c.id)?;
                num(u, &mut c.ordinal)?;
                text(u, &mut c.text)?;
                num(u, &mut c.token_count)?;
                num(u, &mut c.byte_start)?;
                num(u, &mut c.byte_end)?;
                text(u, &mut c.model)?;
                if u.arbitrary()? {
                    let n = u.int_in_range(0..=DIMS + 1)?;
                    c.embedding = (0..n).map(|_| u.arbitrary()).collect::<Result<_, _>>()?;
                }
            }
        }
        Change::Conversation(c) => {
            num(u, &mut c.hlc)?;
            text(u, &mut c.device)?;
            c.deleted = u.arbitrary()?;
            text(u, &mut c.id)?;
            text(u, &mut c.title)?;
        }
        Change::Message(m) => {
            num(u, &mut m.hlc)?;
            text(u, &mut m.device)?;
            m.deleted = u.arbitrary()?;
            text(u, &mut m.id)?;
            text(u, &mut m.conversation_id)?;
            num(u, &mut m.seq)?;
            text(u, &mut m.role)?;
            text(u, &mut m.content)?;
            if u.arbitrary()? {
                m.model = u.arbitrary()?;
                m.embedding = u.arbitrary()?;
            }
        }
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let scratch = Scratch::copy_of(template(&TEMPLATE, build));
    let page: Vec<Change> = if mode & 1 == 0 {
        match serde_json::from_slice(rest) {
            Ok(page) => page,
            Err(_) => return,
        }
    } else {
        let mut u = Unstructured::new(rest);
        let mut page = Vec::new();
        while let Ok(true) = u.arbitrary::<bool>() {
            let records = RECORDS.get().expect("the template's records");
            let Ok(i) = u.choose_index(records.len()) else {
                break;
            };
            let mut change = records[i].clone();
            if perturb(&mut change, &mut u).is_err() {
                break;
            }
            page.push(change);
        }
        page
    };
    let engine = scratch.engine();
    let model = engine.embedder().model_id().to_string();
    let _ = engine.apply_pulled(&page, "fuzz", "cursor", (&model, DIMS));
    match engine.check() {
        Ok(problems) => assert!(problems.is_empty(), "unsound after a pull: {problems:?}"),
        Err(e) => panic!("check after a pull: {e}"),
    }
    for mode in [SearchMode::Vector, SearchMode::Text] {
        let opts = SearchOptions {
            mode,
            ..SearchOptions::default()
        };
        if let Err(e) = engine.search("varroa mites", &opts) {
            panic!("{mode:?} search after a pull: {e}");
        }
    }
    outpost_fuzz::close(engine);
});
