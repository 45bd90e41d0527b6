//! Direct Postgres transport ([`Transport`]): for trusted gateways and bulk loads.
//!
//! Each call is one transaction that takes the `authenticated` role and the user's JWT claims
//! with `SET LOCAL` / `set_config(.., true)` and then calls the same SQL function the REST API
//! calls, so row-level security applies exactly as for a phone. Only unnamed statements are used
//! (`query_typed`) and no session state outlives a transaction, which is what Supabase's pooler
//! in transaction mode (PgBouncer / Supavisor) requires (`tests/pooler.rs` runs sync through a
//! real PgBouncer in transaction mode). TLS is used when the URL's `sslmode`
//! asks for it (`prefer`, the default, tries it first), verified against the web PKI roots.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::Mutex;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, Config};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::claims::is_uuid;
use crate::error::{Error, Result};
use crate::transport::{BoxFuture, Transport};

/// A direct connection to the central Postgres.
pub struct PgTransport {
    config: Config,
    tls: MakeRustlsConnect,
    claims: String,
    endpoint: String,
    user_id: String,
    timeout: Duration,
    client: Mutex<Option<Client>>,
}

impl std::fmt::Debug for PgTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the password or the claims.
        f.debug_struct("PgTransport")
            .field("endpoint", &self.endpoint)
            .finish()
    }
}

/// The TLS connector the transport uses: rustls with the web PKI roots (Supabase's certificates
/// chain to them). Public so that tools connecting next to the transport verify alike.
///
/// # Errors
/// [`Error::Config`] if rustls refuses its default protocol versions.
pub fn tls_connector() -> Result<MakeRustlsConnect> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| Error::Config(format!("TLS: {e}")))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}

impl PgTransport {
    /// A transport for `url` (`postgres://user:password@host:port/db?sslmode=...`) acting as the
    /// Supabase user `user_id` (the `sub` of their JWT). Connects lazily.
    ///
    /// # Errors
    /// [`Error::Config`] for a URL that does not parse or a user id that is not a UUID.
    pub fn new(url: &str, user_id: &str, timeout: Duration) -> Result<Self> {
        let config: Config = url
            .parse()
            .map_err(|e| Error::Config(format!("central Postgres URL: {e}")))?;
        if !is_uuid(user_id) {
            return Err(Error::Config(format!(
                "the central user id '{user_id}' is not a UUID (the `sub` of the user's JWT)"
            )));
        }
        let host = config
            .get_hosts()
            .first()
            .map(|h| match h {
                tokio_postgres::config::Host::Tcp(s) => s.clone(),
                tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
            })
            .unwrap_or_default();
        let port = config.get_ports().first().copied().unwrap_or(5432);
        let endpoint = format!(
            "postgres://{}@{host}:{port}/{}",
            config.get_user().unwrap_or(""),
            config.get_dbname().unwrap_or("")
        );
        let claims = serde_json::json!({ "sub": user_id, "role": "authenticated" }).to_string();
        Ok(Self {
            config,
            tls: tls_connector()?,
            claims,
            endpoint,
            user_id: user_id.to_string(),
            timeout,
            client: Mutex::new(None),
        })
    }

    /// The endpoint, without the password.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The user rows are read and written as.
    pub fn user_id(&self) -> &str {
        &self.user_id
    }

    fn map_err(&self, what: &str, e: &tokio_postgres::Error) -> Error {
        let endpoint = self.endpoint.clone();
        let Some(db) = e.as_db_error() else {
            return Error::Offline {
                endpoint,
                detail: e.to_string(),
            };
        };
        let mut detail = db.message().to_string();
        if let Some(d) = db.detail() {
            detail.push_str(&format!(" ({d})"));
        }
        let code = db.code();
        if *code == SqlState::UNDEFINED_FUNCTION && what.starts_with("outpost_") {
            return Error::SchemaMissing { endpoint };
        }
        if *code == SqlState::INVALID_PASSWORD
            || *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION
            || *code == SqlState::INSUFFICIENT_PRIVILEGE
        {
            return Error::Auth { endpoint, detail };
        }
        if *code == SqlState::QUERY_CANCELED {
            // The server's statement_timeout (set a little below the client's): the call was
            // too much work for one statement, and smaller ones may pass.
            return Error::TooLarge {
                endpoint,
                what: what.to_string(),
                detail,
            };
        }
        let class = &code.code()[..2];
        let transient = matches!(class, "08" | "53" | "57" | "40");
        Error::Server {
            endpoint,
            what: what.to_string(),
            detail,
            transient,
        }
    }

    async fn connect(&self) -> Result<Client> {
        let connecting = self.config.connect(self.tls.clone());
        let (client, connection) = tokio::time::timeout(self.timeout, connecting)
            .await
            .map_err(|_| Error::Timeout {
                endpoint: self.endpoint.clone(),
                what: "connect".into(),
                millis: self.timeout.as_millis() as u64,
            })?
            .map_err(|e| self.map_err("connect", &e))?;
        let endpoint = self.endpoint.clone();
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(endpoint, error = %e, "central connection closed");
            }
        });
        Ok(client)
    }

    /// Calls `public.<function>(name => value, ...)` and returns its JSON result.
    ///
    /// # Errors
    /// [`Error::Offline`], [`Error::Timeout`], [`Error::Auth`], [`Error::SchemaMissing`],
    /// [`Error::Server`], [`Error::BadResponse`].
    pub async fn call(&self, function: &str, args: Value) -> Result<Value> {
        if !function.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
            return Err(Error::Config(format!(
                "'{function}' is not a function name"
            )));
        }
        let Value::Object(args) = args else {
            return Err(Error::Config("arguments must be a JSON object".into()));
        };
        let mut texts: Vec<Option<String>> = Vec::with_capacity(args.len());
        let mut named = Vec::with_capacity(args.len());
        for (i, (name, value)) in args.iter().enumerate() {
            let cast = match value {
                Value::Object(_) | Value::Array(_) => "jsonb",
                Value::Number(n) if n.is_i64() || n.is_u64() => "int",
                Value::Number(_) => "float8",
                Value::Bool(_) => "boolean",
                Value::String(_) | Value::Null => "text",
            };
            named.push(format!("{name} => ${}::{cast}", i + 1));
            texts.push(match value {
                Value::Null => None,
                Value::String(s) => Some(s.clone()),
                other => Some(other.to_string()),
            });
        }
        let sql = format!("SELECT public.{function}({})::text", named.join(", "));
        let params: Vec<(&(dyn ToSql + Sync), Type)> = texts
            .iter()
            .map(|t| (t as &(dyn ToSql + Sync), Type::TEXT))
            .collect();

        let mut guard = self.client.lock().await;
        // Reuse the open connection; a closed one (or none yet) is replaced by a new one.
        let client = match guard.take().filter(|c| !c.is_closed()) {
            Some(open) => guard.insert(open),
            None => guard.insert(self.connect().await?),
        };
        // The server gives up first, so that a call too big for the time allowed is told apart
        // from a server or network that stopped answering.
        let timeout_ms = self.timeout.as_millis() * 9 / 10;
        let setup = format!(
            "BEGIN; SET LOCAL ROLE authenticated; SET LOCAL statement_timeout = {timeout_ms}"
        );
        let client: &Client = client;
        // One round trip: the four requests are pipelined (tokio-postgres sends each when its
        // future is first polled, in order, on the one connection) and all are awaited, so
        // the transaction always ends. A failed step aborts the transaction, every later step
        // fails with it (the call never runs outside the `authenticated` role), and COMMIT of
        // an aborted transaction rolls it back. One transaction, no named statements: as
        // before, fit for PgBouncer's transaction mode.
        let claims_param: [(&(dyn ToSql + Sync), Type); 1] = [(&self.claims, Type::TEXT)];
        let run = async {
            let (setup, claims, call, commit) = tokio::join!(
                client.batch_execute(&setup),
                client.query_typed(
                    "SELECT set_config('request.jwt.claims', $1, true)",
                    &claims_param,
                ),
                client.query_typed(&sql, &params),
                client.batch_execute("COMMIT"),
            );
            setup?;
            claims?;
            let rows = call?;
            commit?;
            let text: Option<String> = rows.first().and_then(|row| row.get(0));
            Ok::<_, tokio_postgres::Error>(text)
        };
        let text = match tokio::time::timeout(self.timeout, run).await {
            Err(_) => {
                // The connection is mid-transaction in an unknown state: drop it.
                *guard = None;
                return Err(Error::Timeout {
                    endpoint: self.endpoint.clone(),
                    what: function.to_string(),
                    millis: self.timeout.as_millis() as u64,
                });
            }
            Ok(Err(e)) => {
                if e.as_db_error().is_none() {
                    *guard = None;
                }
                return Err(self.map_err(function, &e));
            }
            Ok(Ok(text)) => text,
        };
        let text = text.unwrap_or_else(|| "null".into());
        serde_json::from_str(&text).map_err(|e| Error::BadResponse {
            endpoint: self.endpoint.clone(),
            what: function.to_string(),
            detail: e.to_string(),
        })
    }
}

impl Transport for PgTransport {
    fn endpoint(&self) -> &str {
        PgTransport::endpoint(self)
    }

    fn user_id(&self) -> &str {
        PgTransport::user_id(self)
    }

    fn call<'a>(&'a self, function: &'a str, args: Value) -> BoxFuture<'a, Result<Value>> {
        Box::pin(PgTransport::call(self, function, args))
    }
}
