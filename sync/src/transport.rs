//! The one operation every way of reaching the central store offers: call one of its SQL
//! functions (`outpost_info`, `outpost_push`, `outpost_pull`, `outpost_checksums`; see
//! `docs/SYNC.md`) with named JSON arguments and get its JSON result back.
//!
//! [`crate::central::Central`] holds any [`Transport`] and does all the protocol work (building
//! the arguments, checking the answers) above it, so a transport only moves JSON and maps its
//! failures onto [`Error`]'s variants.

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use serde_json::Value;

#[cfg(doc)]
use crate::error::Error;
use crate::error::Result;

/// A boxed future that can move between threads: what [`Transport::call`] returns, so that the
/// trait stays object-safe (`dyn Transport`) and a sync can run on a spawned task.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A way to reach the central store: direct Postgres ([`crate::pg::PgTransport`], feature
/// `postgres`) or the Supabase REST API ([`crate::rest::RestTransport`]).
///
/// `Debug` must never print secrets (passwords, keys, JWTs).
pub trait Transport: Send + Sync + fmt::Debug {
    /// A printable name of the endpoint, without secrets.
    fn endpoint(&self) -> &str;

    /// The user rows are read and written as (empty if unknown; the server still decides).
    fn user_id(&self) -> &str;

    /// Calls `public.<function>` with `args` (a JSON object of named arguments) as the user,
    /// under row-level security, and returns its JSON result.
    ///
    /// # Errors
    /// [`Error::Offline`], [`Error::Timeout`], [`Error::Auth`], [`Error::SchemaMissing`] (the
    /// function does not exist), [`Error::Server`] (with `transient` set when a retry may
    /// help), [`Error::BadResponse`] (a result that is not JSON), [`Error::Config`] (a bad
    /// function name or arguments that are not an object).
    fn call<'a>(&'a self, function: &'a str, args: Value) -> BoxFuture<'a, Result<Value>>;
}
