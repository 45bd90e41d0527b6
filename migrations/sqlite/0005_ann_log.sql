-- Outpost local schema, version 5: the change log that keeps vector indexes current.
--
-- The HNSW index of a collection (see core/src/ann.rs) is derived from its vec0 table and kept
-- in memory and in a file beside the database; the SQLite file stays the source of truth. Every
-- change to a chunk's vector appends the chunk's seq here, in the same transaction, so an index
-- that has applied the log up to some id can be brought up to date by replaying what follows:
-- for each seq, the vector now in the vec0 table (or its absence) is what the index must hold.
-- AUTOINCREMENT keeps ids growing in commit order (SQLite has one writer at a time).
CREATE TABLE ann_log (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    chunk_seq INTEGER NOT NULL
);

-- A chunk's vector is written in the transaction that inserts the chunk and removed in the one
-- that deletes it; re-embedding (same chunk, new vector) logs explicitly.
CREATE TRIGGER ann_log_chunk_insert AFTER INSERT ON chunks BEGIN
    INSERT INTO ann_log (chunk_seq) VALUES (new.seq);
END;
CREATE TRIGGER ann_log_chunk_delete AFTER DELETE ON chunks BEGIN
    INSERT INTO ann_log (chunk_seq) VALUES (old.seq);
END;
