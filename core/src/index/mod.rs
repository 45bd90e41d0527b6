//! The derived indexes: the HNSW vector index of each collection ([`ann`], with its f32 rows in
//! [`vectors`]) and the text index ([`text`]). Both are derived from SQLite, caught up from
//! `ann_log`, saved beside the database and rebuilt whenever a file is missing, damaged or
//! behind a trimmed log: they are never the source of truth.

pub mod ann;
pub mod text;
pub(crate) mod vectors;
