-- Outpost local schema, version 1: collections, documents, chunks and their full-text index.
--
-- Replication-ready rows: documents and chunks have stable text ids (UUIDv7), documents carry a
-- modification stamp (updated_at, rev) and a tombstone (deleted) instead of being hard-deleted.
-- Chunks are derived from their document's content and replaced as a set when it changes.
--
-- The vector index is not created here: its dimension belongs to each collection, so every
-- collection gets its own vec0 table `vec_chunks_<collection id>` when the collection is created.

CREATE TABLE outpost_meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE collections (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE CHECK (length(name) BETWEEN 1 AND 128),
    model_id    TEXT NOT NULL,
    dims        INTEGER NOT NULL CHECK (dims > 0),
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);

CREATE TABLE documents (
    id            TEXT PRIMARY KEY,
    collection_id INTEGER NOT NULL REFERENCES collections(id),
    source        TEXT NOT NULL,
    title         TEXT NOT NULL,
    content_hash  TEXT NOT NULL,
    metadata      TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(metadata)),
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    rev           INTEGER NOT NULL DEFAULT 1,
    deleted       INTEGER NOT NULL DEFAULT 0 CHECK (deleted IN (0, 1)),
    UNIQUE (collection_id, source)
);
CREATE INDEX documents_updated ON documents(updated_at);

CREATE TABLE chunks (
    seq         INTEGER PRIMARY KEY,
    id          TEXT NOT NULL UNIQUE,
    document_id TEXT NOT NULL REFERENCES documents(id),
    ordinal     INTEGER NOT NULL CHECK (ordinal >= 0),
    text        TEXT NOT NULL,
    token_count INTEGER NOT NULL,
    byte_start  INTEGER NOT NULL,
    byte_end    INTEGER NOT NULL CHECK (byte_end >= byte_start),
    metadata    TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(metadata)),
    UNIQUE (document_id, ordinal)
);

-- Metadata keys seen per collection, so a filter on a key that no document has is reported as
-- an unknown key instead of silently matching nothing.
CREATE TABLE metadata_keys (
    collection_id INTEGER NOT NULL REFERENCES collections(id),
    key           TEXT NOT NULL,
    PRIMARY KEY (collection_id, key)
) WITHOUT ROWID;

CREATE VIRTUAL TABLE chunks_fts USING fts5(
    text,
    content = 'chunks',
    content_rowid = 'seq',
    tokenize = 'porter unicode61 remove_diacritics 2'
);

CREATE TRIGGER chunks_fts_insert AFTER INSERT ON chunks BEGIN
    INSERT INTO chunks_fts(rowid, text) VALUES (new.seq, new.text);
END;
CREATE TRIGGER chunks_fts_delete AFTER DELETE ON chunks BEGIN
    INSERT INTO chunks_fts(chunks_fts, rowid, text) VALUES ('delete', old.seq, old.text);
END;
CREATE TRIGGER chunks_fts_update AFTER UPDATE OF text ON chunks BEGIN
    INSERT INTO chunks_fts(chunks_fts, rowid, text) VALUES ('delete', old.seq, old.text);
    INSERT INTO chunks_fts(rowid, text) VALUES (new.seq, new.text);
END;
