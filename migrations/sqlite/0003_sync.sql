-- Outpost local schema, version 3: what sync needs (see docs/SYNC.md).
--
-- - a device id, made once per database;
-- - on every replicated row its HLC stamp (`hlc`) and the device of its last write (`device`);
--   documents also keep the device that created them (`home_device`): a source path is unique
--   per collection *on its home device*, since two laptops may both have `notes/a.md`;
-- - messages lose their unique (conversation, seq): two devices may both append message 3;
-- - the outbox: one row per entity changed locally and not yet acknowledged by the central
--   store, written in the same transaction as the change itself;
-- - documents pulled with vectors of another model, waiting to be embedded locally.
--
-- The migration runner turns foreign keys off around this file (tables are rebuilt, the
-- documented SQLite way) and runs `PRAGMA foreign_key_check` before committing.

INSERT OR IGNORE INTO outpost_meta (key, value) VALUES ('device_id',
    lower(hex(randomblob(4))) || '-' || lower(hex(randomblob(2))) || '-4' ||
    substr(lower(hex(randomblob(2))), 2) || '-' || substr('89ab', 1 + abs(random() % 4), 1) ||
    substr(lower(hex(randomblob(2))), 2) || '-' || lower(hex(randomblob(6))));

-- Existing rows get a stamp from their last change time, so they order sensibly against
-- later writes of other devices.
CREATE TABLE documents_v3 (
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
    hlc           INTEGER NOT NULL,
    device        TEXT NOT NULL,
    home_device   TEXT NOT NULL,
    UNIQUE (collection_id, home_device, source)
);
INSERT INTO documents_v3
SELECT id, collection_id, source, title, content_hash, metadata, created_at, updated_at, rev, deleted,
       updated_at * 65536,
       (SELECT value FROM outpost_meta WHERE key = 'device_id'),
       (SELECT value FROM outpost_meta WHERE key = 'device_id')
FROM documents;
DROP TABLE documents;
ALTER TABLE documents_v3 RENAME TO documents;
CREATE INDEX documents_updated ON documents(updated_at);

ALTER TABLE conversations ADD COLUMN hlc INTEGER NOT NULL DEFAULT 0;
ALTER TABLE conversations ADD COLUMN device TEXT NOT NULL DEFAULT '';
UPDATE conversations SET hlc = updated_at * 65536,
    device = (SELECT value FROM outpost_meta WHERE key = 'device_id');

CREATE TABLE messages_v3 (
    id              TEXT PRIMARY KEY,
    conversation_id TEXT NOT NULL REFERENCES conversations(id),
    seq             INTEGER NOT NULL,
    role            TEXT NOT NULL CHECK (role IN ('system', 'user', 'assistant', 'tool')),
    content         TEXT NOT NULL,
    model_id        TEXT,
    embedding       BLOB,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    deleted         INTEGER NOT NULL DEFAULT 0 CHECK (deleted IN (0, 1)),
    hlc             INTEGER NOT NULL,
    device          TEXT NOT NULL
);
INSERT INTO messages_v3
SELECT id, conversation_id, seq, role, content, model_id, embedding, created_at, updated_at, deleted,
       updated_at * 65536, (SELECT value FROM outpost_meta WHERE key = 'device_id')
FROM messages;
DROP TABLE messages;
ALTER TABLE messages_v3 RENAME TO messages;
CREATE INDEX messages_conversation ON messages(conversation_id, seq);

CREATE TABLE sync_outbox (
    seq       INTEGER PRIMARY KEY AUTOINCREMENT,
    kind      TEXT NOT NULL CHECK (kind IN ('document', 'conversation', 'message')),
    entity_id TEXT NOT NULL,
    hlc       INTEGER NOT NULL,
    UNIQUE (kind, entity_id)
);

CREATE TABLE sync_reembed (
    document_id TEXT PRIMARY KEY REFERENCES documents(id)
) WITHOUT ROWID;

-- Everything already stored is waiting to be pushed: the first sync of an upgraded database
-- carries it to the central store.
INSERT INTO sync_outbox (kind, entity_id, hlc)
SELECT 'conversation', id, hlc FROM conversations ORDER BY created_at;
INSERT INTO sync_outbox (kind, entity_id, hlc)
SELECT 'document', id, hlc FROM documents ORDER BY created_at;
INSERT INTO sync_outbox (kind, entity_id, hlc)
SELECT 'message', id, hlc FROM messages ORDER BY created_at, seq;
