//! A Supabase Auth (GoTrue) client: the token endpoint's password and refresh-token grants, and
//! logout — what a device needs to hold a session of its own.
//!
//! - `POST {url}/auth/v1/token?grant_type=password` with `{email, password}` and
//!   `POST {url}/auth/v1/token?grant_type=refresh_token` with `{refresh_token}`, the project's
//!   key (legacy anon JWT or `sb_publishable_…`) as the `apikey` header and no bearer token.
//!   200 answers `{access_token, token_type, expires_in, expires_at, refresh_token, user}`.
//! - Errors come as `{code, error_code, msg}` (older servers: OAuth's `{error,
//!   error_description}`). On the refresh grant, `refresh_token_not_found`,
//!   `refresh_token_already_used`, `session_not_found`, `session_expired` and `user_banned`
//!   (OAuth: `invalid_grant`) mean the session is gone for good: [`Error::SignedOut`].
//! - As in supabase-js (`_refreshAccessToken`, `handleError`), failures below HTTP and 502 / 503 /
//!   504 are retryable, and so are the other 5xx, 408, 429 and GoTrue's 409 ("too many
//!   concurrent token refresh requests"); only those are retried, with backoff, within a budget.
//!
//! Retrying a refresh whose answer was lost is safe: GoTrue hands the currently active refresh
//! token back to a client that presents its revoked parent (`token_refresh.go`), so a device that
//! crashed or lost the answer after the server rotated its token is not signed out. Reusing any
//! older token is reuse: the server revokes the whole family.

use std::time::Duration;

use reqwest::header::HeaderValue;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::backoff::Backoff;
use crate::error::{Error, Result};

/// GoTrue `error_code`s of the refresh grant after which only a new sign-in helps.
pub const SIGNED_OUT_CODES: &[&str] = &[
    "refresh_token_not_found",
    "refresh_token_already_used",
    "session_not_found",
    "session_expired",
    "user_banned",
    // OAuth-style errors of older servers.
    "invalid_grant",
];

/// The user a token answer is for.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct AuthUser {
    /// The user id (a UUID; the `sub` of the access token).
    pub id: String,
    /// The user's email, when they have one.
    #[serde(default)]
    pub email: Option<String>,
}

/// A 200 answer of the token endpoint.
#[derive(Clone, Deserialize)]
pub struct TokenResponse {
    /// The access token (a JWT).
    pub access_token: String,
    /// `bearer`.
    #[serde(default)]
    pub token_type: String,
    /// Seconds the access token lives.
    pub expires_in: u64,
    /// When it expires, Unix seconds by the server's clock.
    #[serde(default)]
    pub expires_at: Option<i64>,
    /// The refresh token (single use: every refresh rotates it).
    pub refresh_token: String,
    /// The user.
    pub user: AuthUser,
}

impl std::fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the tokens.
        f.debug_struct("TokenResponse")
            .field("token_type", &self.token_type)
            .field("expires_in", &self.expires_in)
            .field("expires_at", &self.expires_at)
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// A Supabase project's Auth API.
#[derive(Clone)]
pub struct AuthClient {
    http: reqwest::Client,
    url: String,
    api_key: String,
    timeout: Duration,
    retry: Backoff,
}

impl std::fmt::Debug for AuthClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("AuthClient")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

/// Which grant a token request is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Grant {
    Password,
    Refresh,
}

impl AuthClient {
    /// A client for the project at `url` (`https://<ref>.supabase.co`) with its anon or
    /// publishable key; each request waits at most `timeout`.
    ///
    /// # Errors
    /// [`Error::Config`] for a URL that is not http(s) or a key that cannot be a header.
    pub fn new(url: &str, api_key: &str, timeout: Duration) -> Result<Self> {
        let url = url.trim_end_matches('/');
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            return Err(Error::Config(format!(
                "the Supabase URL '{url}' must start with https:// (or http:// on loopback)"
            )));
        }
        if api_key.is_empty() || HeaderValue::from_str(api_key).is_err() {
            return Err(Error::Config(
                "the Supabase anon / publishable key is empty or has characters a header cannot carry"
                    .into(),
            ));
        }
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| Error::Config(format!("HTTP client: {e}")))?;
        Ok(Self {
            http,
            url: url.to_string(),
            api_key: api_key.to_string(),
            timeout,
            // supabase-js retries a refresh for one auto-refresh tick (30 s); so do we.
            retry: Backoff {
                initial: Duration::from_millis(200),
                max: Duration::from_secs(5),
                give_up_after: Some(Duration::from_secs(30)),
            },
        })
    }

    /// The same client retrying transient failures under `retry` instead (tests shorten it).
    #[must_use]
    pub fn with_retry(mut self, retry: Backoff) -> Self {
        self.retry = retry;
        self
    }

    /// The project URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Signs in with an email and password (one attempt: a wrong password is not retried).
    ///
    /// # Errors
    /// [`Error::Auth`] (e.g. `invalid_credentials`, `email_not_confirmed`), [`Error::Offline`],
    /// [`Error::Timeout`], [`Error::Server`], [`Error::BadResponse`].
    pub async fn sign_in_with_password(
        &self,
        email: &str,
        password: &str,
    ) -> Result<TokenResponse> {
        self.token(
            Grant::Password,
            json!({ "email": email, "password": password }),
        )
        .await
    }

    /// Exchanges a refresh token for a new session, retrying transient failures within the
    /// client's budget (the same token each time, which GoTrue allows for a lost answer).
    ///
    /// # Errors
    /// [`Error::SignedOut`] when the session is gone for good; [`Error::Offline`],
    /// [`Error::Timeout`] and transient [`Error::Server`] once the budget is spent; other
    /// [`Error::Auth`], [`Error::Server`], [`Error::BadResponse`] at once.
    pub async fn refresh(&self, refresh_token: &str) -> Result<TokenResponse> {
        let body = json!({ "refresh_token": refresh_token });
        self.retry
            .retry("refresh the session", || {
                self.token(Grant::Refresh, body.clone())
            })
            .await
    }

    /// Ends the session on the server (`POST /auth/v1/logout?scope=local`: this session only,
    /// the user's other devices stay signed in). A session the server no longer knows (401,
    /// 403, 404) counts as ended.
    ///
    /// # Errors
    /// [`Error::Offline`], [`Error::Timeout`], [`Error::Server`].
    pub async fn logout(&self, access_token: &str) -> Result<()> {
        let endpoint = self.url.clone();
        let response = self
            .http
            .post(format!("{}/auth/v1/logout?scope=local", self.url))
            .header("apikey", &self.api_key)
            .bearer_auth(access_token)
            .send()
            .await
            .map_err(|e| self.transport_error("logout", e))?;
        let status = response.status();
        if status.is_success() || matches!(status.as_u16(), 401 | 403 | 404) {
            return Ok(());
        }
        let body = response_text(response).await.unwrap_or_default();
        let e = AuthErrorBody::parse(&body);
        Err(Error::Server {
            endpoint,
            what: "logout".into(),
            detail: format!("HTTP {status}: {}", e.message(&body)),
            transient: is_transient(status.as_u16()),
        })
    }

    fn transport_error(&self, what: &str, e: reqwest::Error) -> Error {
        if e.is_timeout() {
            Error::Timeout {
                endpoint: self.url.clone(),
                what: what.to_string(),
                millis: self.timeout.as_millis() as u64,
            }
        } else {
            Error::Offline {
                endpoint: self.url.clone(),
                detail: format!("{what}: {e}"),
            }
        }
    }

    async fn token(&self, grant: Grant, body: Value) -> Result<TokenResponse> {
        let (query, what) = match grant {
            Grant::Password => ("password", "sign-in"),
            Grant::Refresh => ("refresh_token", "session refresh"),
        };
        let response = self
            .http
            .post(format!("{}/auth/v1/token?grant_type={query}", self.url))
            .header("apikey", &self.api_key)
            .json(&body)
            .send()
            .await
            .map_err(|e| self.transport_error(what, e))?;
        let status = response.status();
        let text = response_text(response)
            .await
            .map_err(|e| self.transport_error(what, e))?;
        if status.is_success() {
            return parse_token_response(&text).map_err(|detail| Error::BadResponse {
                endpoint: self.url.clone(),
                what: what.to_string(),
                detail: format!("{detail} (HTTP {status}, {} bytes)", text.len()),
            });
        }
        Err(classify(&self.url, what, grant, status.as_u16(), &text))
    }
}

/// Whether an HTTP status of the Auth API is worth retrying.
fn is_transient(status: u16) -> bool {
    matches!(status, 408 | 409 | 429) || status >= 500
}

/// GoTrue's error bodies: `{code: <status>, error_code, msg}`, `{code: <error_code>, message}`
/// (API version 2024-01-01 and later) and OAuth-style `{error, error_description}`.
#[derive(Debug, Default, Deserialize)]
struct AuthErrorBody {
    #[serde(default)]
    code: Option<Value>,
    #[serde(default)]
    error_code: Option<String>,
    #[serde(default)]
    msg: Option<String>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    error_description: Option<String>,
}

impl AuthErrorBody {
    fn parse(body: &str) -> Self {
        serde_json::from_str(body).unwrap_or_default()
    }

    fn code(&self) -> String {
        self.error_code
            .clone()
            .or_else(|| match &self.code {
                Some(Value::String(code)) => Some(code.clone()),
                _ => None,
            })
            .or_else(|| self.error.clone())
            .unwrap_or_default()
    }

    fn message(&self, body: &str) -> String {
        self.msg
            .clone()
            .or_else(|| self.error_description.clone())
            .or_else(|| self.message.clone())
            .unwrap_or_else(|| body.chars().take(200).collect())
    }
}

/// The error a failed token request stands for.
fn classify(endpoint: &str, what: &str, grant: Grant, status: u16, body: &str) -> Error {
    let e = AuthErrorBody::parse(body);
    let code = e.code();
    let message = e.message(body);
    let detail = if code.is_empty() {
        format!("HTTP {status}: {message}")
    } else {
        format!("HTTP {status} {code}: {message}")
    };
    if is_transient(status) {
        return Error::Server {
            endpoint: endpoint.to_string(),
            what: what.to_string(),
            detail,
            transient: true,
        };
    }
    if grant == Grant::Refresh && SIGNED_OUT_CODES.contains(&code.as_str()) {
        return Error::SignedOut {
            endpoint: endpoint.to_string(),
            code,
            detail: message,
        };
    }
    match status {
        400 | 401 | 403 | 422 => Error::Auth {
            endpoint: endpoint.to_string(),
            detail,
        },
        _ => Error::Server {
            endpoint: endpoint.to_string(),
            what: what.to_string(),
            detail,
            transient: false,
        },
    }
}

/// A 200 answer, checked: tokens present, a positive lifetime, a user id.
fn parse_token_response(text: &str) -> std::result::Result<TokenResponse, String> {
    let t: TokenResponse = serde_json::from_str(text).map_err(|e| e.to_string())?;
    if t.access_token.is_empty() || t.refresh_token.is_empty() {
        return Err("the answer has no access or refresh token".into());
    }
    if t.expires_in == 0 {
        return Err("the answer's expires_in is 0".into());
    }
    if t.user.id.is_empty() {
        return Err("the answer has no user id".into());
    }
    for token in [&t.access_token, &t.refresh_token] {
        if HeaderValue::from_str(token).is_err() {
            return Err("a token has characters a header cannot carry".into());
        }
    }
    Ok(t)
}

/// The body of an answer as text, decoded as UTF-8 (what Supabase Auth and PostgREST send; a
/// malformed sequence becomes U+FFFD). Not `Response::text`: its decoding by the declared
/// charset links encoding_rs's tables of every legacy encoding into the library.
pub(crate) async fn response_text(response: reqwest::Response) -> reqwest::Result<String> {
    let bytes = response.bytes().await?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(status: u16, body: &str, grant: Grant) -> Error {
        classify("http://x", "session refresh", grant, status, body)
    }

    #[test]
    fn gone_sessions_are_signed_out_and_others_are_not() {
        for code in [
            "refresh_token_not_found",
            "refresh_token_already_used",
            "session_not_found",
        ] {
            let body =
                format!(r#"{{"code":400,"error_code":"{code}","msg":"Invalid Refresh Token"}}"#);
            let e = kind(400, &body, Grant::Refresh);
            assert!(
                matches!(&e, Error::SignedOut { code: c, .. } if c == code),
                "{e}"
            );
            assert!(!e.is_retryable());
            assert!(
                e.to_string().contains("signed out: run outpost login"),
                "{e}"
            );
        }
        // API version 2024-01-01: the code is the error code.
        let e = kind(
            400,
            r#"{"code":"refresh_token_already_used","message":"Invalid Refresh Token: Already Used"}"#,
            Grant::Refresh,
        );
        assert!(matches!(e, Error::SignedOut { .. }), "{e}");
        // Older servers: OAuth-style.
        let e = kind(
            400,
            r#"{"error":"invalid_grant","error_description":"Invalid Refresh Token: Already Used"}"#,
            Grant::Refresh,
        );
        assert!(matches!(e, Error::SignedOut { .. }), "{e}");
        // A wrong password is an authentication failure, not a lost session.
        let e = kind(
            400,
            r#"{"code":400,"error_code":"invalid_credentials","msg":"Invalid login credentials"}"#,
            Grant::Password,
        );
        assert!(matches!(e, Error::Auth { .. }), "{e}");
        assert!(e.to_string().contains("Invalid login credentials"));
    }

    #[test]
    fn transient_statuses_are_retryable() {
        for status in [409, 429, 500, 502, 503, 504] {
            let e = kind(status, "<html>bad gateway</html>", Grant::Refresh);
            assert!(e.is_retryable(), "{status}: {e}");
        }
        let e = kind(
            422,
            r#"{"code":422,"error_code":"validation_failed","msg":"x"}"#,
            Grant::Refresh,
        );
        assert!(!e.is_retryable());
    }

    #[test]
    fn token_answers_are_checked_and_never_printed() -> std::result::Result<(), String> {
        let ok = r#"{"access_token":"a.b.c","token_type":"bearer","expires_in":3600,
            "expires_at":1800000000,"refresh_token":"r1","user":{"id":"u-1","email":"e@x"}}"#;
        let t = parse_token_response(ok)?;
        assert_eq!(t.user.email.as_deref(), Some("e@x"));
        let shown = format!("{t:?}");
        assert!(!shown.contains("a.b.c") && !shown.contains("r1"), "{shown}");
        assert!(parse_token_response(&ok.replace("\"r1\"", "\"\"")).is_err());
        assert!(parse_token_response(&ok.replace("3600", "0")).is_err());
        assert!(parse_token_response("{}").is_err());
        Ok(())
    }
}
