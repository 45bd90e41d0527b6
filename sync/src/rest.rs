//! Supabase REST transport ([`Transport`]): `POST {url}/rest/v1/rpc/<fn>` through PostgREST,
//! for phones and untrusted devices. Sends the project's key (a legacy anon JWT or an
//! `sb_publishable_…` key) as `apikey` — never as the bearer — and the user's access token as the
//! bearer; the server applies row-level security for that user.
//!
//! The access token comes from a [`TokenProvider`] before each call: a fixed JWT, or the device's
//! session, refreshed ahead of expiry. A call the server answers with 401 `PGRST301` (invalid
//! JWT) or `PGRST303` (JWT expired) is retried once after a refresh.

use std::sync::Arc;
use std::time::Duration;

use reqwest::header::HeaderValue;
use serde_json::Value;

use crate::auth::response_text;
use crate::error::{Error, Result};
use crate::session::{StaticToken, TokenProvider};
use crate::transport::{BoxFuture, Transport};

/// PostgREST's codes for a JWT it cannot accept (invalid, expired): worth one refresh.
const REJECTED_JWT_CODES: &[&str] = &["PGRST301", "PGRST303"];

/// A Supabase project reached over HTTPS.
pub struct RestTransport {
    client: postgrest::Postgrest,
    tokens: Arc<dyn TokenProvider>,
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
    /// A transport for the project at `url` (`https://<ref>.supabase.co`) with a fixed JWT,
    /// never refreshed.
    ///
    /// # Errors
    /// [`Error::Config`] for a URL that is not http(s), or a key or JWT that cannot be a header.
    pub fn new(url: &str, anon_key: &str, jwt: &str, timeout: Duration) -> Result<Self> {
        if jwt.is_empty() || HeaderValue::from_str(jwt).is_err() {
            return Err(Error::Config(
                "the Supabase JWT is empty or has characters a header cannot carry".into(),
            ));
        }
        Self::with_tokens(url, anon_key, Arc::new(StaticToken::new(jwt)), timeout)
    }

    /// A transport for the project at `url` whose bearer tokens come from `tokens` (the
    /// device's session).
    ///
    /// # Errors
    /// [`Error::Config`] for a URL that is not http(s), or a key that cannot be a header.
    pub fn with_tokens(
        url: &str,
        anon_key: &str,
        tokens: Arc<dyn TokenProvider>,
        timeout: Duration,
    ) -> Result<Self> {
        let url = url.trim_end_matches('/');
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            return Err(Error::Config(format!(
                "the Supabase URL '{url}' must start with https:// (or http:// on loopback)"
            )));
        }
        if anon_key.is_empty() || HeaderValue::from_str(anon_key).is_err() {
            return Err(Error::Config(
                "the Supabase anon key is empty or has characters a header cannot carry".into(),
            ));
        }
        // Only the key here: the bearer is the user's token, set per call.
        let client =
            postgrest::Postgrest::new(format!("{url}/rest/v1")).insert_header("apikey", anon_key);
        Ok(Self {
            client,
            user_id: tokens.user_id().to_string(),
            tokens,
            endpoint: url.to_string(),
            timeout,
        })
    }

    /// The project URL.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The user of the tokens (empty if it cannot be read; the server still decides).
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

    /// Calls an RPC function with named arguments and returns its JSON result. The token is
    /// refreshed first when it is about to expire, and once more if the server rejects it.
    ///
    /// # Errors
    /// [`Error::Offline`], [`Error::Timeout`], [`Error::Auth`] (401/403), [`Error::SignedOut`]
    /// (the session is gone), [`Error::SchemaMissing`] (PostgREST's "function not found"),
    /// [`Error::Server`] (other 4xx; 5xx and 429 are transient), [`Error::BadResponse`] (a body
    /// that is not JSON).
    pub async fn call(&self, function: &str, args: Value) -> Result<Value> {
        let body = args.to_string();
        let token = self.tokens.access_token().await?;
        match self.call_once(function, &body, &token).await {
            Err((e, true)) => match self.tokens.refresh_rejected(&token).await? {
                Some(fresh) => {
                    tracing::debug!(
                        function,
                        "the server rejected the token; retrying once with a fresh one"
                    );
                    self.call_once(function, &body, &fresh)
                        .await
                        .map_err(|(e, _)| e)
                }
                None => Err(e),
            },
            other => other.map_err(|(e, _)| e),
        }
    }

    /// One call with `token`; an error says whether the server rejected the token itself.
    async fn call_once(
        &self,
        function: &str,
        body: &str,
        token: &str,
    ) -> std::result::Result<Value, (Error, bool)> {
        let endpoint = self.endpoint.clone();
        let plain = |e: Error| (e, false);
        if HeaderValue::from_str(token).is_err() {
            return Err(plain(Error::Config(
                "the access token has characters a header cannot carry".into(),
            )));
        }
        let response = self
            .client
            .rpc(function, body.to_string())
            .build()
            .bearer_auth(token)
            .timeout(self.timeout)
            .send()
            .await
            .map_err(|e| plain(self.transport_error(function, e, "")))?;
        let status = response.status();
        let body = response_text(response)
            .await
            .map_err(|e| plain(self.transport_error(function, e, "reading the answer: ")))?;
        if status.is_success() {
            return serde_json::from_str(&body).map_err(|e| {
                plain(Error::BadResponse {
                    endpoint,
                    what: function.to_string(),
                    detail: format!("{e} (HTTP {status}, {} bytes)", body.len()),
                })
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
        let rejected = status.as_u16() == 401 && REJECTED_JWT_CODES.contains(&code.as_str());
        Err(match status.as_u16() {
            401 | 403 => (Error::Auth { endpoint, detail }, rejected),
            404 if code == "PGRST202" || code == "42883" => {
                plain(Error::SchemaMissing { endpoint })
            }
            // Too much for one call: the gateway's request-size limit, or the role's
            // statement_timeout (PostgREST answers SQLSTATE 57014 with 500).
            413 => plain(Error::TooLarge {
                endpoint,
                what: function.to_string(),
                detail,
            }),
            _ if code == "57014" => plain(Error::TooLarge {
                endpoint,
                what: function.to_string(),
                detail,
            }),
            s => plain(Error::Server {
                endpoint,
                what: function.to_string(),
                detail,
                transient: s == 408 || s == 429 || s >= 500,
            }),
        })
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
