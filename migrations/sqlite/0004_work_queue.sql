-- Outpost local schema, version 4: the agent's durable work queue.
--
-- Files the agent has accepted (a watched folder changed, a scan found them) but not yet
-- indexed, one row per path: a burst of events for one file is one row, and a crash or restart
-- loses nothing, since a row goes only after its work has committed. `seq` grows with every
-- enqueue, so a worker finishing an older version of a row leaves a newer one in place.
CREATE TABLE work_queue (
    path        TEXT PRIMARY KEY,
    op          TEXT NOT NULL CHECK (op IN ('index', 'delete', 'move')),
    from_path   TEXT,
    collection  TEXT NOT NULL,
    seq         INTEGER NOT NULL,
    enqueued_at INTEGER NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    not_before  INTEGER NOT NULL DEFAULT 0,
    last_error  TEXT,
    CHECK ((op = 'move') = (from_path IS NOT NULL))
);
CREATE INDEX work_queue_next ON work_queue (not_before, seq);
