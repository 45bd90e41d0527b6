//! The JSONL importer (`outpost import jsonl`): the input is a JSONL file, read line by line as
//! the CLI reads it (`parse_jsonl_record` per line) and imported through `Engine::import` into a
//! fresh database. What must hold: every bad line or record is reported (the import itself
//! returns `Ok`: only store failures are errors), nothing panics, and the database is sound
//! afterwards (`Engine::check` finds no problem).
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use outpost_core::ingest::import::{parse_jsonl_record, ImportOptions, Input, Vectors};
use outpost_fuzz::{template, Scratch};

static EMPTY: OnceLock<Scratch> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let Some((&flags, file)) = data.split_first() else {
        return;
    };
    let records: Vec<Input> = file
        .split(|&b| b == b'\n')
        .enumerate()
        .filter_map(|(i, line)| {
            let at = format!("fuzz.jsonl:{}", i + 1);
            let record = match std::str::from_utf8(line) {
                Err(e) => Err(format!("invalid UTF-8 at byte {}", e.valid_up_to())),
                Ok(text) if text.trim().is_empty() => return None,
                Ok(text) => parse_jsonl_record(text),
            };
            Some((at, record))
        })
        .collect();
    let scratch = Scratch::copy_of(template(&EMPTY, |_| {}));
    let engine = scratch.engine();
    let opts = ImportOptions {
        force_collection: flags & 1 != 0,
        vectors: match flags >> 1 & 3 {
            0 => Vectors::Keep,
            1 => Vectors::ReembedMismatched,
            _ => Vectors::ReembedAll,
        },
        ..ImportOptions::default()
    };
    outpost_fuzz::import_and_check(engine, records, &opts);
});
