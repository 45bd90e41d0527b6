//! Vectors on the wire (`docs/SYNC.md`, "Vectors on the wire"): embeddings travel as base64 of
//! their big-endian float32 bytes where the server offers it (schema version 2), as JSON numbers
//! where it does not, and arrive bit for bit; a client of version 1 keeps working against the
//! new server, and a new client against a server of version 1; a malformed vector is refused
//! with its record named, and nothing of its batch is stored.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{local_only, user, Db, Device, RestApi, TestResult};
use outpost_core::{Change, NewChunk, NewDocument};
use outpost_sync::central::{encode_vector, VectorFormat};
use outpost_sync::{Central, Error, Transport};
use serde_json::{json, Value};

/// Tests that count rows or wait for the server's transactions take turns.
static SERVER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Each transport, each for a user of its own, against `db`, made by `make` (so that a test
/// can impose a form of vectors); the REST API must outlive its transport.
async fn transports(
    db: &Db,
    make: impl Fn(Central) -> Central,
) -> Result<Vec<(&'static str, Central, Option<RestApi>)>, Box<dyn std::error::Error>> {
    let api = db.rest_api().await?;
    let rest = make(api.central(&user()));
    Ok(vec![
        ("pg", make(db.pg(&user())), None),
        ("rest", rest, Some(api)),
    ])
}

/// A 384-d vector of `seed`: values in [-1, 1], with awkward float32 values among them —
/// subnormals, the smallest normal, tiny and large magnitudes, and -0 if `negative_zero`
/// (which JSON numbers cannot carry: Postgres's `numeric` has no negative zero).
fn awkward(seed: u32, negative_zero: bool) -> Vec<f32> {
    let mut x = seed.wrapping_mul(0x9e37_79b9) | 1;
    let mut v: Vec<f32> = (0..384)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x as f32 / u32::MAX as f32) * 2.0 - 1.0
        })
        .collect();
    let specials = [
        f32::from_bits(1),
        -f32::from_bits(1),
        f32::from_bits(0x007f_ffff),
        f32::MIN_POSITIVE,
        -f32::MIN_POSITIVE,
        1e-30,
        -3.5e12,
        0.0,
        1.0 + f32::EPSILON,
    ];
    let at = seed as usize % 300;
    v[at..at + specials.len()].copy_from_slice(&specials);
    if negative_zero {
        v[at + specials.len()] = -0.0;
    }
    v
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// Stores a document at `source` on `device` with one chunk per vector, and a conversation with
/// a message carrying `message_vector`; returns the chunk vectors by chunk id and the message's
/// vector by its id.
fn put_vectors(
    device: &mut Device,
    source: &str,
    vectors: &[Vec<f32>],
    message_vector: &[f32],
) -> Result<BTreeMap<String, Vec<u32>>, Box<dyn std::error::Error>> {
    let coll = device.collection("notes")?;
    let chunks: Vec<NewChunk> = vectors
        .iter()
        .enumerate()
        .map(|(i, v)| NewChunk {
            text: format!("chunk {i} of {source}"),
            token_count: 4,
            byte_start: i * 20,
            byte_end: i * 20 + 10,
            embedding: v.clone(),
            ..Default::default()
        })
        .collect();
    let doc = NewDocument {
        source: source.into(),
        title: source.into(),
        content_hash: format!("hash of {source}"),
        metadata: serde_json::Map::new(),
    };
    device.engine.put_embedded(&coll, &doc, &chunks)?;
    let mut expected: BTreeMap<String, Vec<u32>> = device
        .engine
        .stored_vectors(&coll)?
        .into_iter()
        .map(|(id, v)| (id, bits(&v)))
        .collect();
    assert_eq!(expected.len(), vectors.len());
    let conv = device.engine.create_conversation("chat")?;
    let m = device.engine.add_message_with_vector(
        &conv.id,
        "user",
        "a message with a vector",
        Some(message_vector),
    )?;
    expected.insert(m.id, bits(message_vector));
    Ok(expected)
}

/// Every vector the central store hands `central`'s user, chunks and messages, by id.
async fn pulled_vectors(
    central: &Central,
) -> Result<BTreeMap<String, Vec<u32>>, Box<dyn std::error::Error>> {
    let mut out = BTreeMap::new();
    let mut cursor = String::new();
    loop {
        // Another device: nothing is held back as our own.
        let page = central.pull(&cursor, 1000, None, &user()).await?;
        for change in &page.changes {
            match change {
                Change::Document(d) => {
                    for c in &d.chunks {
                        out.insert(c.id.clone(), bits(&c.embedding));
                    }
                }
                Change::Message(m) => {
                    if let Some(v) = &m.embedding {
                        out.insert(m.id.clone(), bits(v));
                    }
                }
                Change::Conversation(_) => {}
            }
        }
        cursor = page.next_cursor;
        if !page.more {
            return Ok(out);
        }
    }
}

/// The float32 bits the central store keeps for `user` (pgvector's binary form), by id.
async fn stored_on_server(
    db: &Db,
    user: &str,
) -> Result<BTreeMap<String, Vec<u32>>, Box<dyn std::error::Error>> {
    let c = db.admin().await?;
    let rows = c
        .query(
            "SELECT id::text, vector_send(embedding) FROM public.outpost_document_chunks
              WHERE owner = $1::text::uuid
             UNION ALL
             SELECT id::text, vector_send(embedding) FROM public.outpost_messages
              WHERE owner = $1::text::uuid AND embedding IS NOT NULL",
            &[&user],
        )
        .await?;
    let mut out = BTreeMap::new();
    for row in rows {
        let bytes: Vec<u8> = row.get(1);
        let v = bytes[4..]
            .chunks_exact(4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        out.insert(row.get::<_, String>(0), v);
    }
    Ok(out)
}

/// Pushes `source` from a new device through `central`, and checks that the server stores and
/// hands back exactly its vectors, and that a second device pulling through `reader` ends up
/// with them too.
async fn round_trip(
    db: &Db,
    central: &Central,
    reader: &Central,
    negative_zero: bool,
    seed: u32,
) -> TestResult {
    let mut a = Device::new()?;
    let vectors: Vec<Vec<f32>> = (0..4).map(|i| awkward(seed + i, negative_zero)).collect();
    let expected = put_vectors(
        &mut a,
        "notes/awkward.md",
        &vectors,
        &awkward(seed + 99, negative_zero),
    )?;
    a.sync(central).await?;
    assert_eq!(a.engine.outbox_depth()?, 0);
    let owner = central
        .identity()
        .rsplit('#')
        .next()
        .unwrap_or("")
        .to_string();
    assert_eq!(stored_on_server(db, &owner).await?, expected);

    let _turn = SERVER.lock().await;
    common::settle(db).await?;
    assert_eq!(pulled_vectors(reader).await?, expected);
    let mut b = Device::new()?;
    b.sync(reader).await?;
    let coll = b.collection("notes")?;
    let on_b: BTreeMap<String, Vec<u32>> = b
        .engine
        .stored_vectors(&coll)?
        .into_iter()
        .map(|(id, v)| (id, bits(&v)))
        .collect();
    let chunks_only: BTreeMap<String, Vec<u32>> = expected
        .into_iter()
        .filter(|(id, _)| on_b.contains_key(id))
        .collect();
    assert_eq!(on_b.len(), vectors.len());
    assert_eq!(on_b, chunks_only);
    // The checksums of `outpost verify` hash every chunk vector's bytes on both sides.
    assert!(b.verify(reader).await?.equal);
    Ok(())
}

#[tokio::test]
async fn vectors_travel_as_base64_and_arrive_bit_for_bit_by_both_transports() -> TestResult {
    let db = Db::new(true).await?;
    for (name, central, _api) in transports(&db, |c| c).await? {
        let info = central.info().await?;
        assert!(info.schema_version >= 2, "{name}");
        assert_eq!(
            central.vector_format().await,
            VectorFormat::Base64,
            "{name}"
        );
        round_trip(&db, &central, &central, true, 1).await?;
    }
    Ok(())
}

#[tokio::test]
async fn a_client_of_version_1_is_served_by_the_new_server() -> TestResult {
    let db = Db::new(true).await?;
    // Version 1's calls exactly (the unit tests of `central` check the arguments): JSON numbers
    // in `embedding`, and `outpost_pull` without `vector_format`.
    let old = |c: Central| c.with_vector_format(VectorFormat::Json);
    for (name, central, _api) in transports(&db, old).await? {
        assert_eq!(central.vector_format().await, VectorFormat::Json, "{name}");
        round_trip(&db, &central, &central, false, 10).await?;
    }
    // An old device's push read by a new one, and a new device's push read by an old one, as
    // the same user.
    let u = user();
    let api = db.rest_api().await?;
    let old_pg = db.pg(&u).with_vector_format(VectorFormat::Json);
    let new_rest = api.central(&u);
    round_trip(&db, &old_pg, &new_rest, false, 20).await?;
    let v = user();
    let new_pg = db.pg(&v);
    let old_rest = api.central(&v).with_vector_format(VectorFormat::Json);
    round_trip(&db, &new_pg, &old_rest, false, 30).await?;
    Ok(())
}

#[tokio::test]
async fn a_new_client_uses_json_against_a_server_of_version_1() -> TestResult {
    if local_only(
        "a_new_client_uses_json_against_a_server_of_version_1",
        "it needs a database with only the first migration",
    ) {
        return Ok(());
    }
    let db = Db::at_version(1).await?;
    for (name, central, _api) in transports(&db, |c| c).await? {
        let info = central.info().await?;
        assert_eq!(info.schema_version, 1, "{name}");
        assert!(info.vector_formats.is_empty(), "{name}");
        assert_eq!(central.vector_format().await, VectorFormat::Json, "{name}");
        round_trip(&db, &central, &central, false, 40).await?;
    }
    // Without the check, a server of version 1 does not understand base64 vectors.
    let mut device = Device::new()?;
    device.put("notes/a.md", "Something.")?;
    let forced = db.pg(&user()).with_vector_format(VectorFormat::Base64);
    let batch = device.engine.outbox_batch(10)?;
    let err = forced
        .push(&batch.changes)
        .await
        .expect_err("version 1 wants `embedding`");
    assert!(err.to_string().contains("missing embedding"), "{err}");
    Ok(())
}

/// A document record as a client sends it, its one chunk's vector given by `vector` (the
/// fields `embedding` / `embedding_b64` of the chunk).
fn document(id: &str, chunk_id: &str, vector: Value) -> Value {
    let mut chunk = json!({
        "id": chunk_id, "ordinal": 0, "text": "x", "token_count": 1, "byte_start": 0,
        "byte_end": 1, "metadata": {}, "model": "hash-384",
    });
    if let (Some(chunk), Value::Object(fields)) = (chunk.as_object_mut(), vector) {
        chunk.extend(fields);
    }
    json!({
        "kind": "document", "id": id, "hlc": 1, "device": "dev", "deleted": false,
        "collection": "notes", "home_device": "dev", "source": id, "title": "t",
        "content_hash": "h", "metadata": {}, "created_at": 1, "updated_at": 1,
        "chunks": [chunk],
    })
}

fn message(id: &str, vector: Value) -> Value {
    let mut m = json!({
        "kind": "message", "id": id, "hlc": 1, "device": "dev", "deleted": false,
        "conversation_id": uuid(), "seq": 1, "role": "user", "content": "hi", "model": "m",
        "created_at": 1, "updated_at": 1,
    });
    if let (Some(m), Value::Object(fields)) = (m.as_object_mut(), vector) {
        m.extend(fields);
    }
    m
}

fn uuid() -> String {
    user()
}

#[tokio::test]
async fn malformed_vectors_are_refused_naming_the_record_and_nothing_is_stored() -> TestResult {
    let db = Db::new(true).await?;
    let api = db.rest_api().await?;
    let good = encode_vector(&awkward(5, true));
    let mut nan = awkward(6, false);
    nan[7] = f32::NAN;
    let mut infinite = awkward(7, false);
    infinite[300] = f32::NEG_INFINITY;
    let b64 = |s: String| json!({ "embedding_b64": s });
    // (vector fields of a chunk, or of a message if `in_message`; what the error must say)
    let cases: Vec<(bool, Value, &str)> = vec![
        (false, b64("not base64".into()), "got 10 characters"),
        (
            false,
            b64(format!("{}*", &good[1..])),
            "got 2048 characters",
        ),
        (
            false,
            b64(format!("{}=", &good[..2047])),
            "got 2048 characters",
        ),
        (
            false,
            b64(encode_vector(&awkward(8, false)[..383])),
            "got 2044 characters",
        ),
        (
            false,
            b64(encode_vector(&[awkward(8, false), vec![0.5]].concat())),
            "got 2056 characters",
        ),
        (
            false,
            json!({ "embedding_b64": 7 }),
            "embedding_b64 is not a string",
        ),
        (
            false,
            json!({ "embedding_b64": null }),
            "embedding_b64 is not a string",
        ),
        (
            false,
            json!({ "embedding_b64": good.clone(), "embedding": awkward(9, false) }),
            "both embedding and embedding_b64",
        ),
        (false, b64(encode_vector(&nan)), "NaN not allowed in vector"),
        (
            false,
            b64(encode_vector(&infinite)),
            "NaN not allowed in vector",
        ),
        (true, b64("P4AAAL8=".into()), "holds 5 bytes"),
        (true, b64("P4AAAL+AAAA".into()), "not base64"),
        (true, b64(String::new()), "not base64"),
        (
            true,
            json!({ "embedding_b64": [1.0] }),
            "embedding_b64 is not a string",
        ),
    ];
    for (in_message, vector, reason) in cases {
        let u = user();
        let raw: Vec<(&str, Box<dyn Transport>)> = vec![
            (
                "pg",
                Box::new(outpost_sync::pg::PgTransport::new(
                    &db.url,
                    &u,
                    Duration::from_secs(10),
                )?),
            ),
            (
                "rest",
                Box::new(outpost_sync::rest::RestTransport::new(
                    &api.url,
                    common::anon_key(),
                    &common::jwt(&u),
                    Duration::from_secs(10),
                )?),
            ),
        ];
        for (name, transport) in raw {
            // A good record first: the batch is refused as a whole.
            let first = document(&uuid(), &uuid(), b64(good.clone()));
            let (bad_id, chunk_id) = (uuid(), uuid());
            let bad = if in_message {
                message(&bad_id, vector.clone())
            } else {
                document(&bad_id, &chunk_id, vector.clone())
            };
            let err = transport
                .call("outpost_push", json!({ "changes": [first, bad] }))
                .await
                .expect_err("a malformed vector");
            let text = err.to_string();
            assert!(
                matches!(
                    err,
                    Error::Server {
                        transient: false,
                        ..
                    }
                ),
                "{name}: {text}"
            );
            assert!(text.contains("record 2"), "{name}: {text}");
            assert!(text.contains(&bad_id), "{name}: {text}");
            assert!(text.contains(reason), "{name}: {reason}: {text}");
            if !in_message && !reason.starts_with("NaN") {
                assert!(text.contains(&chunk_id), "{name}: {text}");
            }
            let stored = db
                .scalar(&format!(
                    "(SELECT count(*) FROM outpost_documents WHERE owner = '{u}')
                     + (SELECT count(*) FROM outpost_document_chunks WHERE owner = '{u}')
                     + (SELECT count(*) FROM outpost_messages WHERE owner = '{u}')"
                ))
                .await?;
            assert_eq!(stored, "0", "{name}: {reason}");
        }
    }
    Ok(())
}

#[tokio::test]
async fn the_server_decodes_every_float32_exactly() -> TestResult {
    let db = Db::new(true).await?;
    let c = db.admin().await?;
    // Every exponent (but the one of NaN and the infinities) with both signs and a spread of
    // mantissas, zeros and subnormals included.
    let mut x: u32 = 12345;
    let values: Vec<f32> = (0..255u32 * 12)
        .map(|i| {
            x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            let exponent = i / 12;
            let sign = (i / 6) % 2;
            let mantissa = match i % 6 {
                0 => 0,
                1 => 0x007f_ffff,
                _ => x >> 9,
            };
            f32::from_bits(sign << 31 | exponent << 23 | mantissa)
        })
        .collect();
    let decode = "SELECT substring(vector_send(public.outpost_f32_decode(decode($1, 'base64'))::vector) from 5)";
    for part in values.chunks(384) {
        let row = c.query_one(decode, &[&encode_vector(part)]).await?;
        let bytes: Vec<u8> = row.get(0);
        let back: Vec<u32> = bytes
            .chunks_exact(4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        assert_eq!(back, bits(part));
    }
    // And back: what `outpost_pull` hands out is the same text the device makes.
    let encode = "SELECT translate(encode(substring(vector_send(public.outpost_f32_decode(
                      decode($1, 'base64'))::vector) from 5), 'base64'), E'\\n', '')";
    let part = &values[..384];
    let row = c.query_one(encode, &[&encode_vector(part)]).await?;
    assert_eq!(row.get::<_, String>(0), encode_vector(part));
    Ok(())
}
