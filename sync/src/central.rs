//! The central store as the reconciler sees it: the SQL functions of `docs/SYNC.md`, reached
//! through any [`Transport`], and the parsing of their answers (which never trusts the server).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use outpost_core::Change;

use crate::error::{Error, Result};
#[cfg(feature = "postgres")]
use crate::pg::PgTransport;
use crate::rest::RestTransport;
use crate::transport::Transport;

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

/// A central store, reached by one [`Transport`].
#[derive(Debug)]
pub struct Central {
    transport: Box<dyn Transport>,
}

impl<T: Transport + 'static> From<T> for Central {
    fn from(transport: T) -> Self {
        Self::new(transport)
    }
}

impl Central {
    /// The central store behind `transport`.
    pub fn new(transport: impl Transport + 'static) -> Self {
        Self {
            transport: Box::new(transport),
        }
    }

    /// Direct Postgres (trusted gateways, bulk loads). Same as [`Central::new`]; the name is
    /// kept from when `Central` was an enum of the two transports, for the callers that still
    /// construct it this way.
    #[cfg(feature = "postgres")]
    #[allow(non_snake_case)]
    pub fn Postgres(transport: PgTransport) -> Self {
        Self::new(transport)
    }

    /// The Supabase REST API (phones, untrusted devices). Same as [`Central::new`]; the name is
    /// kept from when `Central` was an enum of the two transports, for the callers that still
    /// construct it this way.
    #[allow(non_snake_case)]
    pub fn Rest(transport: RestTransport) -> Self {
        Self::new(transport)
    }

    /// A printable name of the endpoint, without secrets; also keys the pull cursor.
    pub fn endpoint(&self) -> &str {
        self.transport.endpoint()
    }

    /// The endpoint and the user: what a pull cursor belongs to.
    pub fn identity(&self) -> String {
        format!("{}#{}", self.endpoint(), self.transport.user_id())
    }

    async fn call(&self, function: &str, args: Value) -> Result<Value> {
        self.transport.call(function, args).await
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::BoxFuture;

    /// Answers every call with the same JSON, as a server might.
    #[derive(Debug)]
    struct Canned(Value);

    impl Transport for Canned {
        fn endpoint(&self) -> &str {
            "canned://central"
        }

        fn user_id(&self) -> &str {
            "0190f0f0-0000-7000-8000-000000000001"
        }

        fn call<'a>(&'a self, _function: &'a str, _args: Value) -> BoxFuture<'a, Result<Value>> {
            let answer = self.0.clone();
            Box::pin(async move { Ok(answer) })
        }
    }

    fn bad_response(e: Error) -> String {
        match e {
            Error::BadResponse { what, .. } => what,
            other => panic!("expected a BadResponse, got {other}"),
        }
    }

    #[test]
    fn the_identity_is_the_endpoint_and_the_user() {
        let central = Central::from(Canned(Value::Null));
        assert_eq!(
            central.identity(),
            "canned://central#0190f0f0-0000-7000-8000-000000000001"
        );
    }

    #[tokio::test]
    async fn answers_that_do_not_fit_the_protocol_are_refused() {
        let outcomes = serde_json::json!([{ "kind": "doc", "id": "x", "outcome": "applied" }]);
        let e = Central::new(Canned(outcomes)).push(&[]).await;
        assert_eq!(
            bad_response(e.expect_err("one outcome for no record")),
            "outpost_push"
        );

        let page = serde_json::json!({ "changes": [], "next_cursor": "nocolon", "more": false });
        let e = Central::new(Canned(page)).pull("0:0", 10, "dev").await;
        assert_eq!(
            bad_response(e.expect_err("a cursor without ':'")),
            "outpost_pull"
        );

        let e = Central::new(Canned(serde_json::json!([1])))
            .checksums()
            .await;
        assert_eq!(
            bad_response(e.expect_err("not an object")),
            "outpost_checksums"
        );

        let info = serde_json::json!({ "schema_version": SCHEMA_VERSION, "embedding_dims": 384 });
        let central = Central::new(Canned(info));
        assert!(matches!(
            central.check("m", 768).await,
            Err(Error::DimensionMismatch {
                central: 384,
                local: 768,
                ..
            })
        ));
        assert_eq!(
            central.check("m", 384).await.map(|i| i.embedding_dims).ok(),
            Some(384)
        );
    }
}
