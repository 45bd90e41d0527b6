//! The stand-in's API gateway: what Supabase's gateway (Kong's key-auth and
//! request-size-limiting plugins) checks before a request reaches Auth or PostgREST.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::Shared;

/// What the `Authorization` header carries once the gateway has looked at it.
pub(super) enum Bearer<'a> {
    /// No user: no header, or an `sb_…` key equal to `apikey`.
    None,
    /// A token for PostgREST or Auth to verify.
    Token(&'a str),
}

/// A request the gateway turns away: `{"message": ...}` with a status, as Kong answers.
pub(super) struct Refused {
    status: StatusCode,
    message: String,
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        (self.status, axum::Json(json!({ "message": self.message }))).into_response()
    }
}

fn message(status: StatusCode, text: &str) -> Refused {
    Refused {
        status,
        message: text.to_string(),
    }
}

/// The `apikey` check: 401 without a key (header or `?apikey=`) or with one the project does not
/// have.
pub(super) fn check_key(
    shared: &Shared,
    headers: &HeaderMap,
    query: &HashMap<String, String>,
) -> Result<(), Refused> {
    let key = headers
        .get("apikey")
        .and_then(|v| v.to_str().ok())
        .or(query.get("apikey").map(String::as_str));
    match key {
        None | Some("") => Err(message(
            StatusCode::UNAUTHORIZED,
            "No API key found in request",
        )),
        Some(k) if shared.config.anon_keys.iter().any(|a| a == k) => Ok(()),
        Some(_) => Err(message(StatusCode::UNAUTHORIZED, "Invalid API key")),
    }
}

/// The body, or 413 as the gateway answers a body over its limit.
pub(super) fn body(body: Result<Bytes, BytesRejection>) -> Result<Bytes, Refused> {
    match body {
        Ok(b) => Ok(b),
        Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(message(
            StatusCode::PAYLOAD_TOO_LARGE,
            "Request size limit exceeded",
        )),
        Err(e) => Err(message(e.status(), &e.body_text())),
    }
}

/// The bearer token, as the gateway forwards it: an `sb_…` key in `Authorization` is no user
/// when it equals `apikey`, and refused otherwise.
pub(super) fn bearer(headers: &HeaderMap) -> Result<Bearer<'_>, Refused> {
    let Some(value) = headers.get("authorization").and_then(|v| v.to_str().ok()) else {
        return Ok(Bearer::None);
    };
    // PostgREST (wai-extra's `extractBearerAuth`): the scheme `bearer` in any case, then the
    // rest after the spaces; another scheme is no token at all.
    let (scheme, rest) = value.split_once(char::is_whitespace).unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Ok(Bearer::None);
    }
    let token = rest.trim_start();
    if token.starts_with("sb_") {
        let apikey = headers.get("apikey").and_then(|v| v.to_str().ok());
        return if apikey == Some(token) {
            Ok(Bearer::None)
        } else {
            Err(message(StatusCode::UNAUTHORIZED, "Invalid API key"))
        };
    }
    Ok(Bearer::Token(token))
}
