//! Sync between a device's local store and a central Supabase project (Postgres + pgvector).
//!
//! This is the only crate of the workspace that talks to the network. Local writes are recorded
//! in the store's outbox by `outpost-core` (in the same transaction as the write); this crate
//! pushes them to the central store, pulls what other devices wrote after a durable cursor, and
//! compares replicas. Both transports — the Supabase REST API ([`rest`]) and direct Postgres
//! ([`pg`]), each a [`Transport`] — call the same SQL functions (`migrations/supabase/`,
//! described in `docs/SYNC.md`), so row-level security and last-writer-wins are the server's,
//! whichever way a device connects. Over REST the user is the device's Supabase Auth session
//! ([`session`], signed in and refreshed through [`auth`]), a session the app owns and hands
//! over ([`app_session`], refreshed in memory, each rotation handed back), or a fixed JWT.

// The modules in layers, top first; a module imports only from layers below its own:
//   reconcile | config | central | pg, rest | app_session | session | auth | transport | claims, backoff | error
// `shim` (a test stand-in for Supabase's gateway, Auth and PostgREST, over its own Postgres
// connection) and `faultproxy` (a test stand-in for a bad network) import none.
pub mod reconcile;

pub mod config;

pub mod central;

#[cfg(feature = "postgres")]
pub mod pg;
pub mod rest;

pub mod app_session;

pub mod session;

pub mod auth;

pub mod transport;

pub mod backoff;
pub mod claims;

pub mod error;

#[cfg(feature = "shim")]
pub mod shim;

#[cfg(feature = "shim")]
pub mod faultproxy;

pub use app_session::{AppSession, RotationListener, TokenPair};
pub use auth::{AuthClient, AuthUser, TokenResponse};
pub use backoff::Backoff;
pub use central::{Central, CentralInfo, Outcome, PullPage, PushOutcome, SCHEMA_VERSION};
pub use config::{CentralConfig, CentralSettings};
pub use error::{Error, ErrorKind, Result, MIGRATION};
pub use reconcile::{
    check, pull, push, status, sync_once, verify, Step, SyncOptions, SyncReport, SyncStatus,
    VerifyReport,
};
pub use session::{Session, SessionInfo, SessionStore, SessionTokens, StaticToken, TokenProvider};
pub use transport::{BoxFuture, Transport};
