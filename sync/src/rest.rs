//! Supabase REST transport ([`Transport`]): `POST {url}/rest/v1/rpc/<fn>` through PostgREST,
//! for phones and untrusted devices. Sends the project's anon key as `apikey` and the user's JWT
//! as the bearer token; the server applies row-level security for that user.

use std::time::Duration;

use reqwest::header::HeaderValue;
use serde_json::Value;

use crate::claims::jwt_subject;
use crate::error::{Error, Result};
use crate::transport::{BoxFuture, Transport};

/// A Supabase project reached over HTTPS.
pub struct RestTransport {
    client: postgrest::Postgrest,
    endpoint: String,
    user_id: String,
    timeout: Duration,
}

impl std::fmt::Debug for RestTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key or the JWT.
        f.debug_struct("RestTransport")
            .field("endpoint", &self.endpoint)
            .finish()
    }
}

impl RestTransport {
    /// A transport for the project at `url` (`https://<ref>.supabase.co`).
    ///
    /// # Errors
    /// [`Error::Config`] for a URL that is not http(s), or a key or JWT that cannot be a header.
    pub fn new(url: &str, anon_key: &str, jwt: &str, timeout: Duration) -> Result<Self> {
        let url = url.trim_end_matches('/');
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            return Err(Error::Config(format!(
                "the Supabase URL '{url}' must start with https:// (or http:// on loopback)"
            )));
        }
        for (name, value) in [("anon key", anon_key), ("JWT", jwt)] {
            if value.is_empty() || HeaderValue::from_str(value).is_err() {
                return Err(Error::Config(format!(
                    "the Supabase {name} is empty or has characters a header cannot carry"
                )));
            }
        }
        let client = postgrest::Postgrest::new(format!("{url}/rest/v1"))
            .insert_header("apikey", anon_key)
            .insert_header("Authorization", format!("Bearer {jwt}"));
        Ok(Self {
            client,
            endpoint: url.to_string(),
            user_id: jwt_subject(jwt).unwrap_or_default(),
            timeout,
        })
    }

    /// The project URL.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The `sub` of the JWT (empty if it cannot be read; the server still decides).
    pub fn user_id(&self) -> &str {
        &self.user_id
    }

    /// A request that failed below HTTP: a timeout, or the network (`context` prefixes it).
    fn transport_error(&self, function: &str, e: reqwest::Error, context: &str) -> Error {
        if e.is_timeout() {
            Error::Timeout {
                endpoint: self.endpoint.clone(),
                what: function.to_string(),
                millis: self.timeout.as_millis() as u64,
            }
        } else {
            Error::Offline {
                endpoint: self.endpoint.clone(),
                detail: format!("{context}{e}"),
            }
        }
    }

    /// Calls an RPC function with named arguments and returns its JSON result.
    ///
    /// # Errors
    /// [`Error::Offline`], [`Error::Timeout`], [`Error::Auth`] (401/403), [`Error::SchemaMissing`]
    /// (PostgREST's "function not found"), [`Error::Server`] (other 4xx; 5xx and 429 are
    /// transient), [`Error::BadResponse`] (a body that is not JSON).
    pub async fn call(&self, function: &str, args: Value) -> Result<Value> {
        let endpoint = self.endpoint.clone();
        let response = self
            .client
            .rpc(function, args.to_string())
            .build()
            .timeout(self.timeout)
            .send()
            .await
            .map_err(|e| self.transport_error(function, e, ""))?;
        let status = response.status();
        let body = response
            .text()
            .await
            .map_err(|e| self.transport_error(function, e, "reading the answer: "))?;
        if status.is_success() {
            return serde_json::from_str(&body).map_err(|e| Error::BadResponse {
                endpoint,
                what: function.to_string(),
                detail: format!("{e} (HTTP {status}, {} bytes)", body.len()),
            });
        }
        // PostgREST errors are {"code", "message", "details", "hint"}.
        let parsed: Option<Value> = serde_json::from_str(&body).ok();
        let field = |k: &str| {
            parsed
                .as_ref()
                .and_then(|v| v.get(k))
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        let (code, message) = (field("code"), field("message"));
        let detail = if message.is_empty() {
            format!(
                "HTTP {status}: {}",
                body.chars().take(200).collect::<String>()
            )
        } else {
            format!("HTTP {status}: {message} {}", field("details"))
                .trim_end()
                .to_string()
        };
        match status.as_u16() {
            401 | 403 => Err(Error::Auth { endpoint, detail }),
            404 if code == "PGRST202" || code == "42883" => Err(Error::SchemaMissing { endpoint }),
            s => Err(Error::Server {
                endpoint,
                what: function.to_string(),
                detail,
                transient: s == 408 || s == 429 || s >= 500,
            }),
        }
    }
}

impl Transport for RestTransport {
    fn endpoint(&self) -> &str {
        RestTransport::endpoint(self)
    }

    fn user_id(&self) -> &str {
        RestTransport::user_id(self)
    }

    fn call<'a>(&'a self, function: &'a str, args: Value) -> BoxFuture<'a, Result<Value>> {
        Box::pin(RestTransport::call(self, function, args))
    }
}
