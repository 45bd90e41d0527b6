//! Sync between a device's local store and a central Supabase project (Postgres + pgvector).
//!
//! This is the only crate of the workspace that talks to the network. It is empty until the sync
//! issue lands: the outbox, hybrid logical clock, reconciler and the two transports (Supabase
//! REST and direct Postgres) will live here. Nothing in the workspace calls it yet, and it
//! exposes no API that could pretend to sync.
