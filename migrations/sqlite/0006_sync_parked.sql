-- Outpost local schema, version 6: outbox entries set aside.
--
-- A change the central store refuses even when pushed on its own (too large for its statement
-- timeout or its request-size limit, or rejected as malformed) is parked here with the
-- server's reason, so that it no longer blocks the rest of the outbox or the pull. Its outbox
-- row stays, so nothing is lost: a parked entry is tried again once `retry_after` (Unix ms)
-- has passed, and at once when the entity changes again (the new outbox row has a new `seq`,
-- which this park no longer matches).
CREATE TABLE sync_parked (
    seq         INTEGER PRIMARY KEY,  -- the sync_outbox row set aside
    hlc         INTEGER NOT NULL,     -- its stamp when it was set aside
    reason      TEXT NOT NULL,
    parked_at   INTEGER NOT NULL,
    retry_after INTEGER NOT NULL
);
