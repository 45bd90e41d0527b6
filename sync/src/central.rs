//! The central store as the reconciler sees it: the SQL functions of `docs/SYNC.md`, reached by
//! either transport, and the parsing of their answers (which never trusts the server).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use outpost_core::Change;

use crate::error::{Error, Result};
#[cfg(feature = "postgres")]
use crate::pg::PgTransport;
use crate::rest::RestTransport;

/// The central schema version this build speaks.
pub const SCHEMA_VERSION: i64 = 1;

/// What `outpost_info()` says.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct CentralInfo {
    /// Central schema version.
    pub schema_version: i64,
    /// Dimension of the chunk embedding column.
    pub embedding_dims: usize,
    /// The migration that installed it.
    #[serde(default)]
    pub migration: String,
}

/// The server's verdict on one pushed record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Stored.
    Applied,
    /// Already stored with the same stamp (a replay).
    Duplicate,
    /// The server has a newer version; it will come back with the next pull.
    Stale,
}

/// One entry of `outpost_push`'s answer.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct PushOutcome {
    /// Entity kind.
    pub kind: String,
    /// Entity id.
    pub id: String,
    /// Verdict.
    pub outcome: Outcome,
}

/// One page of `outpost_pull`.
#[derive(Debug, Clone)]
pub struct PullPage {
    /// Records, oldest first.
    pub changes: Vec<Change>,
    /// Where the next pull starts.
    pub next_cursor: String,
    /// Whether more is waiting.
    pub more: bool,
}

/// A central store reached by one of the two transports.
#[derive(Debug)]
pub enum Central {
    /// Direct Postgres (trusted gateways, bulk loads).
    #[cfg(feature = "postgres")]
    Postgres(PgTransport),
    /// The Supabase REST API (phones, untrusted devices).
    Rest(RestTransport),
}

impl Central {
    /// A printable name of the endpoint, without secrets; also keys the pull cursor.
    pub fn endpoint(&self) -> &str {
        match self {
            #[cfg(feature = "postgres")]
            Central::Postgres(t) => t.endpoint(),
            Central::Rest(t) => t.endpoint(),
        }
    }

    /// The endpoint and the user: what a pull cursor belongs to.
    pub fn identity(&self) -> String {
        let user = match self {
            #[cfg(feature = "postgres")]
            Central::Postgres(t) => t.user_id(),
            Central::Rest(t) => t.user_id(),
        };
        format!("{}#{user}", self.endpoint())
    }

    async fn call(&self, function: &str, args: Value) -> Result<Value> {
        match self {
            #[cfg(feature = "postgres")]
            Central::Postgres(t) => t.call(function, args).await,
            Central::Rest(t) => t.call(function, args).await,
        }
    }

    fn bad(&self, what: &str, detail: impl std::fmt::Display) -> Error {
        Error::BadResponse {
            endpoint: self.endpoint().to_string(),
            what: what.to_string(),
            detail: detail.to_string(),
        }
    }

    /// Reads `outpost_info()` and checks it against this build and the local model's dimension.
    ///
    /// # Errors
    /// [`Error::SchemaMissing`], [`Error::SchemaOutdated`], [`Error::DimensionMismatch`], or the
    /// transport's errors.
    pub async fn check(&self, model: &str, dims: usize) -> Result<CentralInfo> {
        let info = self.info().await?;
        if info.schema_version < SCHEMA_VERSION {
            return Err(Error::SchemaOutdated {
                endpoint: self.endpoint().to_string(),
                found: info.schema_version,
                needed: SCHEMA_VERSION,
            });
        }
        if info.embedding_dims != dims {
            return Err(Error::DimensionMismatch {
                endpoint: self.endpoint().to_string(),
                central: info.embedding_dims,
                local: dims,
                model: model.to_string(),
            });
        }
        Ok(info)
    }

    /// `outpost_info()`.
    ///
    /// # Errors
    /// [`Error::SchemaMissing`] when the function does not exist; transport errors.
    pub async fn info(&self) -> Result<CentralInfo> {
        let v = self.call("outpost_info", serde_json::json!({})).await?;
        serde_json::from_value(v).map_err(|e| self.bad("outpost_info", e))
    }

    /// `outpost_push(changes)`: one outcome per record, in order.
    ///
    /// # Errors
    /// Transport errors; [`Error::BadResponse`] if the answer does not match the batch.
    pub async fn push(&self, changes: &[Change]) -> Result<Vec<PushOutcome>> {
        let v = self
            .call("outpost_push", serde_json::json!({ "changes": changes }))
            .await?;
        let outcomes: Vec<PushOutcome> =
            serde_json::from_value(v).map_err(|e| self.bad("outpost_push", e))?;
        if outcomes.len() != changes.len()
            || outcomes.iter().zip(changes).any(|(o, c)| o.id != c.id())
        {
            return Err(self.bad(
                "outpost_push",
                format!(
                    "{} outcomes for {} records, or not in the order sent",
                    outcomes.len(),
                    changes.len()
                ),
            ));
        }
        Ok(outcomes)
    }

    /// `outpost_pull(cursor, max_rows, exclude_device)`.
    ///
    /// # Errors
    /// Transport errors; [`Error::BadResponse`] for a page that does not parse (a record that
    /// is not a valid change, a missing cursor).
    pub async fn pull(
        &self,
        cursor: &str,
        max_rows: usize,
        exclude_device: &str,
    ) -> Result<PullPage> {
        let v = self
            .call(
                "outpost_pull",
                serde_json::json!({ "cursor": cursor, "max_rows": max_rows, "exclude_device": exclude_device }),
            )
            .await?;
        #[derive(Deserialize)]
        struct Raw {
            changes: Vec<Value>,
            next_cursor: String,
            more: bool,
        }
        let raw: Raw = serde_json::from_value(v).map_err(|e| self.bad("outpost_pull", e))?;
        let changes = raw
            .changes
            .into_iter()
            .enumerate()
            .map(|(i, c)| {
                let id = c
                    .get("id")
                    .and_then(Value::as_str)
                    .unwrap_or("?")
                    .to_string();
                serde_json::from_value::<Change>(c)
                    .map_err(|e| self.bad("outpost_pull", format!("record {i} (id {id}): {e}")))
            })
            .collect::<Result<Vec<_>>>()?;
        if raw.next_cursor.split_once(':').is_none() {
            return Err(self.bad(
                "outpost_pull",
                format!("next_cursor '{}' is not '<xid>:<seq>'", raw.next_cursor),
            ));
        }
        Ok(PullPage {
            changes,
            next_cursor: raw.next_cursor,
            more: raw.more,
        })
    }

    /// `outpost_checksums()`.
    ///
    /// # Errors
    /// Transport errors; [`Error::BadResponse`] if it is not a JSON object.
    pub async fn checksums(&self) -> Result<Map<String, Value>> {
        match self
            .call("outpost_checksums", serde_json::json!({}))
            .await?
        {
            Value::Object(m) => Ok(m),
            other => Err(self.bad(
                "outpost_checksums",
                format!("expected an object, got {other}"),
            )),
        }
    }
}
