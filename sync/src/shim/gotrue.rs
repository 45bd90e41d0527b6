//! The stand-in's Supabase Auth: the token endpoint's password and refresh-token grants, as
//! supabase/auth does them (`internal/api/token.go` `ResourceOwnerPasswordGrant`,
//! `internal/tokens/service.go` `RefreshTokenGrant` and `IssueRefreshToken`,
//! `internal/models/refresh_token.go`), over the emulated `auth` tables of the served database
//! (`sync/tests/sql/supabase_auth_emulation.sql`), and its errors as `internal/api/errors.go`
//! sends them.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use rand::Rng;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio_postgres::GenericClient;

use super::{connect, gateway, Shared, ShimError};

/// GoTrue's `InvalidLoginMessage`.
const INVALID_LOGIN: &str = "Invalid login credentials";
/// `uuid.Nil`, the `instance_id` GoTrue writes.
const NIL_INSTANCE: &str = "00000000-0000-0000-0000-000000000000";
/// The bcrypt cost GoTrue hashes with (`bcrypt.DefaultCost`, `internal/crypto/password.go`).
const BCRYPT_COST: u32 = 10;

/// An error of the token endpoint.
enum AuthError {
    /// GoTrue's `HTTPError`: a status, an `error_code` and a message.
    Http {
        status: StatusCode,
        code: &'static str,
        msg: String,
    },
    /// GoTrue's `OAuthError`, always 400.
    OAuth {
        error: &'static str,
        description: &'static str,
    },
}

fn bad_request(code: &'static str, msg: &str) -> AuthError {
    AuthError::Http {
        status: StatusCode::BAD_REQUEST,
        code,
        msg: msg.to_string(),
    }
}

impl From<tokio_postgres::Error> for AuthError {
    fn from(e: tokio_postgres::Error) -> Self {
        AuthError::Http {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: "unexpected_failure",
            msg: format!("Database error: {e}"),
        }
    }
}

impl AuthError {
    /// The answer: `{code: <status>, error_code, msg}`, or `{code: <error_code>, message}` for a
    /// client that asked for API version 2024-01-01 (echoed in `X-Supabase-Api-Version`); the
    /// error code also in `x-sb-error-code`.
    fn respond(self, api_2024: bool) -> Response {
        match self {
            AuthError::OAuth { error, description } => (
                StatusCode::BAD_REQUEST,
                axum::Json(json!({ "error": error, "error_description": description })),
            )
                .into_response(),
            AuthError::Http { status, code, msg } => {
                let body = if api_2024 {
                    json!({ "code": code, "message": msg })
                } else {
                    json!({ "code": status.as_u16(), "error_code": code, "msg": msg })
                };
                let mut response = (status, axum::Json(body)).into_response();
                let headers = response.headers_mut();
                headers.insert("x-sb-error-code", HeaderValue::from_static(code));
                if api_2024 {
                    headers.insert(
                        "x-supabase-api-version",
                        HeaderValue::from_static("2024-01-01"),
                    );
                }
                response
            }
        }
    }
}

/// Whether the request asks for API version 2024-01-01 or later (`X-Supabase-Api-Version`, a
/// `YYYY-MM-DD` date; anything else is the initial version).
fn api_2024(headers: &HeaderMap) -> bool {
    let Some(v) = headers
        .get("x-supabase-api-version")
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let b = v.as_bytes();
    let is_date = b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit());
    is_date && v >= "2024-01-01"
}

/// `POST /auth/v1/token?grant_type=…`.
pub(super) async fn token(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    shared.requests.fetch_add(1, Ordering::SeqCst);
    if let Err(r) = gateway::check_key(&shared, &headers, &query) {
        return r.into_response();
    }
    let body = match gateway::body(body) {
        Ok(b) => b,
        Err(r) => return r.into_response(),
    };
    let result = match query.get("grant_type").map(String::as_str) {
        Some("password") => password_grant(&shared, &headers, &body).await,
        Some("refresh_token") => refresh_grant(&shared, &body).await,
        // As GoTrue answers a grant type it does not know (the stand-in knows only these two).
        _ => Err(bad_request("invalid_credentials", "unsupported_grant_type")),
    };
    match result {
        Ok(v) => (StatusCode::OK, axum::Json(v)).into_response(),
        Err(e) => e.respond(api_2024(&headers)),
    }
}

/// `GET /auth/v1/.well-known/jwks.json`: the public keys tokens may be verified with.
pub(super) async fn jwks(State(shared): State<Arc<Shared>>) -> Response {
    let keys = shared
        .config
        .jwks
        .clone()
        .unwrap_or_else(|| json!({ "keys": [] }));
    (StatusCode::OK, axum::Json(keys)).into_response()
}

/// Who an authenticated request (`requireAuthentication`, internal/api/auth.go) is from.
struct Caller {
    user_id: String,
    session: Option<String>,
    claims: Value,
}

/// `requireAuthentication`: a bearer access token with a good signature, not expired (GoTrue's
/// parser allows no skew), whose user and session exist.
async fn require_authentication(
    shared: &Shared,
    client: &tokio_postgres::Client,
    headers: &HeaderMap,
) -> Result<Caller, AuthError> {
    let forbidden = |code: &'static str, msg: String| AuthError::Http {
        status: StatusCode::FORBIDDEN,
        code,
        msg,
    };
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, t)| {
            scheme.eq_ignore_ascii_case("bearer")
                && !t.contains(char::is_whitespace)
                && !t.is_empty()
        })
        .map(|(_, t)| t)
        .ok_or(AuthError::Http {
            status: StatusCode::UNAUTHORIZED,
            code: "no_authorization",
            msg: "This endpoint requires a valid Bearer token".into(),
        })?;
    let bad_jwt = |why: &str| {
        forbidden(
            "bad_jwt",
            format!("invalid JWT: unable to parse or verify signature, {why}"),
        )
    };
    let claims = shared
        .verifier
        .decode(token)
        .map_err(|e| bad_jwt(&e.message().to_lowercase()))?;
    let now = unix_now();
    match claims.get("exp") {
        None => {}
        Some(Value::Number(n)) if n.as_f64().unwrap_or(0.0) >= now as f64 => {}
        Some(Value::Number(_)) => {
            return Err(bad_jwt("token has invalid claims: token is expired"));
        }
        Some(_) => return Err(bad_jwt("token has invalid claims: token is malformed")),
    }
    let sub = claims.get("sub").and_then(Value::as_str).unwrap_or("");
    if sub.is_empty() {
        return Err(forbidden(
            "bad_jwt",
            "invalid claim: missing sub claim".into(),
        ));
    }
    let user = client
        .query_opt(
            "SELECT id::text, coalesce(banned_until > now(), false) FROM auth.users
             WHERE id::text = lower($1)",
            &[&sub],
        )
        .await?
        .ok_or_else(|| {
            forbidden(
                "user_not_found",
                "User from sub claim in JWT does not exist".into(),
            )
        })?;
    let session = match claims.get("session_id").and_then(Value::as_str) {
        None | Some("") | Some(NIL_INSTANCE) => None,
        Some(sid) => Some(
            client
                .query_opt(
                    "SELECT id::text FROM auth.sessions WHERE id::text = lower($1)",
                    &[&sid],
                )
                .await?
                .ok_or_else(|| {
                    forbidden(
                        "session_not_found",
                        "Session from session_id claim in JWT does not exist".into(),
                    )
                })?
                .get::<_, String>(0),
        ),
    };
    if user.get::<_, bool>(1) {
        return Err(forbidden("user_banned", "User is banned".into()));
    }
    Ok(Caller {
        user_id: user.get(0),
        session,
        claims,
    })
}

/// `POST /auth/v1/logout?scope=global|local|others` (internal/api/logout.go): the caller's
/// sessions, this one, or the others, are deleted with their refresh tokens; 204.
pub(super) async fn logout(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    shared.requests.fetch_add(1, Ordering::SeqCst);
    if let Err(r) = gateway::check_key(&shared, &headers, &query) {
        return r.into_response();
    }
    let result = async {
        let scope = query.get("scope").map(String::as_str).unwrap_or("");
        if !["", "global", "local", "others"].contains(&scope) {
            return Err(bad_request(
                "validation_failed",
                &format!("Unsupported logout scope {scope:?}"),
            ));
        }
        let client = connect(&shared.config.db_url).await?;
        let caller = require_authentication(&shared, &client, &headers).await?;
        match (scope, &caller.session) {
            ("local", Some(s)) => {
                client
                    .execute("DELETE FROM auth.sessions WHERE id::text = $1", &[s])
                    .await?
            }
            ("others", Some(s)) => {
                client
                    .execute(
                        "DELETE FROM auth.sessions WHERE id::text <> $1 AND user_id::text = $2",
                        &[s, &caller.user_id],
                    )
                    .await?
            }
            _ => {
                client
                    .execute(
                        "DELETE FROM auth.sessions WHERE user_id::text = $1",
                        &[&caller.user_id],
                    )
                    .await?
            }
        };
        Ok(())
    }
    .await;
    match result {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => e.respond(api_2024(&headers)),
    }
}

/// `GET /auth/v1/user` (internal/api/user.go `UserGet`): the caller's user, if the token's
/// audience is the request's.
pub(super) async fn user(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    shared.requests.fetch_add(1, Ordering::SeqCst);
    if let Err(r) = gateway::check_key(&shared, &headers, &query) {
        return r.into_response();
    }
    let result = async {
        let client = connect(&shared.config.db_url).await?;
        let caller = require_authentication(&shared, &client, &headers).await?;
        let aud = request_aud(&headers);
        let token_aud = match &caller.claims["aud"] {
            Value::String(a) => Some(a.clone()),
            Value::Array(a) => a.first().and_then(Value::as_str).map(str::to_string),
            _ => None,
        };
        if token_aud.as_deref() != Some(aud.as_str()) {
            return Err(bad_request(
                "validation_failed",
                "Token audience doesn't match request audience",
            ));
        }
        user_json(&client, &caller.user_id).await
    }
    .await;
    match result {
        Ok(v) => (StatusCode::OK, axum::Json(v)).into_response(),
        Err(e) => e.respond(api_2024(&headers)),
    }
}

/// `requestAud`: the `X-JWT-AUD` header, else the configured audience (`authenticated`).
fn request_aud(headers: &HeaderMap) -> String {
    headers
        .get("x-jwt-aud")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .unwrap_or("authenticated")
        .to_string()
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// GoTrue's `retrieveRequestParams`: the body as JSON, or 400 `bad_json`.
fn params<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, AuthError> {
    serde_json::from_slice(body).map_err(|e| {
        bad_request(
            "bad_json",
            &format!("Could not parse request body as JSON: {e}"),
        )
    })
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct PasswordParams {
    email: String,
    phone: String,
    password: String,
}

/// `ResourceOwnerPasswordGrant`.
async fn password_grant(
    shared: &Shared,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Value, AuthError> {
    let p: PasswordParams = params(body)?;
    if !p.email.is_empty() && !p.phone.is_empty() {
        return Err(bad_request(
            "validation_failed",
            "Only an email address or phone number should be provided on login.",
        ));
    }
    if p.email.is_empty() {
        if !p.phone.is_empty() {
            // Phone logins are off on a new Supabase project.
            return Err(AuthError::Http {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                code: "phone_provider_disabled",
                msg: "Phone logins are disabled".into(),
            });
        }
        return Err(bad_request("validation_failed", "missing email or phone"));
    }
    let aud = request_aud(headers);
    let mut client = connect(&shared.config.db_url).await?;
    let row = client
        .query_opt(
            "SELECT id::text, coalesce(encrypted_password, ''), email_confirmed_at IS NOT NULL,
                    coalesce(banned_until > now(), false)
             FROM auth.users
             WHERE lower(email) = lower($1) AND aud = $2 AND NOT is_sso_user",
            &[&p.email, &aud],
        )
        .await?;
    let Some(row) = row else {
        return Err(bad_request("invalid_credentials", INVALID_LOGIN));
    };
    let (user_id, hash, confirmed, banned): (String, String, bool, bool) =
        (row.get(0), row.get(1), row.get(2), row.get(3));
    if hash.is_empty() {
        return Err(bad_request("invalid_credentials", INVALID_LOGIN));
    }
    if banned {
        return Err(bad_request("user_banned", "User is banned"));
    }
    let password = p.password.clone();
    let valid = tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash))
        .await
        .map(|r| r.unwrap_or(false))
        .unwrap_or(false);
    if !valid {
        return Err(bad_request("invalid_credentials", INVALID_LOGIN));
    }
    if !confirmed {
        return Err(bad_request("email_not_confirmed", "Email not confirmed"));
    }
    // `IssueRefreshToken`: a new session, its first refresh token, the sign-in time.
    let tx = client.transaction().await?;
    let session: String = tx
        .query_one(
            "INSERT INTO auth.sessions (id, user_id, created_at, updated_at, aal)
             VALUES (gen_random_uuid(), $1::text::uuid, now(), now(), 'aal1')
             RETURNING id::text",
            &[&user_id],
        )
        .await?
        .get(0);
    tx.execute(
        "INSERT INTO auth.mfa_amr_claims (id, session_id, created_at, updated_at,
                                          authentication_method)
         VALUES (gen_random_uuid(), $1::text::uuid, now(), now(), 'password')",
        &[&session],
    )
    .await?;
    let refresh = new_refresh_token();
    tx.execute(
        "INSERT INTO auth.refresh_tokens (instance_id, token, user_id, revoked, created_at,
                                          updated_at, parent, session_id)
         VALUES ($1::text::uuid, $2, $3, false, now(), now(), NULL, $4::text::uuid)",
        &[&NIL_INSTANCE, &refresh, &user_id, &session],
    )
    .await?;
    tx.execute(
        "UPDATE auth.users SET last_sign_in_at = now(), updated_at = now()
         WHERE id = $1::text::uuid",
        &[&user_id],
    )
    .await?;
    let response = token_response(shared, &tx, &user_id, &session, &refresh).await?;
    tx.commit().await?;
    Ok(response)
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RefreshParams {
    refresh_token: String,
}

/// `RefreshTokenGrant`, for GoTrue's classic refresh tokens (rows of `auth.refresh_tokens`).
async fn refresh_grant(shared: &Shared, body: &[u8]) -> Result<Value, AuthError> {
    let p: RefreshParams = params(body)?;
    if p.refresh_token.is_empty() {
        return Err(AuthError::OAuth {
            error: "invalid_request",
            description: "refresh_token required",
        });
    }
    let mut client = connect(&shared.config.db_url).await?;
    let tx = client.transaction().await?;
    // The token's row, locked: a concurrent refresh of the same token waits here and then sees
    // it used (GoTrue locks it `FOR UPDATE` too, and retries while it is locked).
    let reuse_secs = shared.config.reuse_interval.as_secs_f64();
    let row = tx
        .query_opt(
            "SELECT id, revoked, session_id::text, user_id,
                    clock_timestamp() > updated_at + make_interval(secs => $2)
             FROM auth.refresh_tokens WHERE token = $1 FOR UPDATE",
            &[&p.refresh_token, &reuse_secs],
        )
        .await?;
    let not_found = || {
        bad_request(
            "refresh_token_not_found",
            "Invalid Refresh Token: Refresh Token Not Found",
        )
    };
    let Some(row) = row else {
        return Err(not_found());
    };
    let (id, revoked, session, user_id, past_reuse): (i64, bool, Option<String>, String, bool) =
        (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4));
    let user = tx
        .query_opt(
            "SELECT coalesce(banned_until > now(), false) FROM auth.users
             WHERE id::text = $1",
            &[&user_id],
        )
        .await?;
    let Some(user) = user else {
        return Err(not_found());
    };
    if user.get::<_, bool>(0) {
        return Err(bad_request(
            "user_banned",
            "Invalid Refresh Token: User Banned",
        ));
    }
    let no_session = || {
        bad_request(
            "session_not_found",
            "Invalid Refresh Token: No Valid Session Found",
        )
    };
    let Some(session) = session else {
        return Err(no_session());
    };
    let Some(s) = tx
        .query_opt(
            "SELECT coalesce(not_after < now(), false) FROM auth.sessions
             WHERE id = $1::text::uuid FOR UPDATE",
            &[&session],
        )
        .await?
    else {
        return Err(no_session());
    };
    if s.get::<_, bool>(0) {
        return Err(bad_request(
            "session_expired",
            "Invalid Refresh Token: Session Expired",
        ));
    }
    let mut issued = None;
    if revoked {
        // The session's active token: its newest unrevoked one.
        let active = tx
            .query_opt(
                "SELECT token, parent FROM auth.refresh_tokens
                 WHERE session_id = $1::text::uuid AND NOT revoked ORDER BY id DESC LIMIT 1",
                &[&session],
            )
            .await?;
        match active {
            // The client lost the answer to its last refresh: it gets the token it missed.
            Some(a) if a.get::<_, Option<String>>(1).as_deref() == Some(&p.refresh_token) => {
                issued = Some(a.get::<_, String>(0));
            }
            // Reused after the reuse interval: the whole family goes (rotation is on), and
            // that is committed with the error.
            _ if past_reuse => {
                tx.execute(
                    "UPDATE auth.refresh_tokens SET revoked = true, updated_at = now()
                     WHERE session_id = $1::text::uuid AND NOT revoked",
                    &[&session],
                )
                .await?;
                tx.commit().await?;
                return Err(bad_request(
                    "refresh_token_already_used",
                    "Invalid Refresh Token: Already Used",
                ));
            }
            // Within the interval: swapped once more, below.
            _ => {}
        }
    }
    let issued = match issued {
        Some(t) => t,
        None => {
            // `GrantRefreshTokenSwap`: this token is used up (its `updated_at` marks when), a
            // child takes its place in the same session.
            tx.execute(
                "UPDATE auth.refresh_tokens SET revoked = true, updated_at = now() WHERE id = $1",
                &[&id],
            )
            .await?;
            let child = new_refresh_token();
            tx.execute(
                "INSERT INTO auth.refresh_tokens (instance_id, token, user_id, revoked,
                                                  created_at, updated_at, parent, session_id)
                 VALUES ($1::text::uuid, $2, $3, false, now(), now(), $4, $5::text::uuid)",
                &[&NIL_INSTANCE, &child, &user_id, &p.refresh_token, &session],
            )
            .await?;
            child
        }
    };
    tx.execute(
        "UPDATE auth.sessions SET refreshed_at = now(), updated_at = now()
         WHERE id = $1::text::uuid",
        &[&session],
    )
    .await?;
    let response = token_response(shared, &tx, &user_id, &session, &issued).await?;
    tx.commit().await?;
    Ok(response)
}

/// `crypto.SecureAlphanumeric(12)`: 12 characters of lowercase base32.
fn new_refresh_token() -> String {
    const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    let mut rng = rand::rng();
    (0..12)
        .map(|_| ALPHABET[(rng.random::<u8>() & 31) as usize] as char)
        .collect()
}

/// SQL for a timestamp as Go writes a `time.Time` in JSON (RFC 3339, UTC).
fn rfc3339(column: &str) -> String {
    format!("to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')")
}

/// The user as GoTrue sends it (`models.User`'s JSON).
async fn user_json<C: GenericClient>(client: &C, user_id: &str) -> Result<Value, AuthError> {
    let sql = format!(
        "SELECT jsonb_strip_nulls(jsonb_build_object(
            'id', id, 'aud', coalesce(aud, ''), 'role', coalesce(role, ''),
            'email', coalesce(email, ''), 'email_confirmed_at', {},
            'phone', coalesce(phone, ''), 'confirmed_at', {}, 'last_sign_in_at', {},
            'app_metadata', coalesce(raw_app_meta_data, '{{}}'),
            'user_metadata', coalesce(raw_user_meta_data, '{{}}'),
            'identities', '[]'::jsonb, 'created_at', {}, 'updated_at', {},
            'is_anonymous', is_anonymous))
         FROM auth.users WHERE id = $1::text::uuid",
        rfc3339("email_confirmed_at"),
        rfc3339("coalesce(email_confirmed_at, phone_confirmed_at)"),
        rfc3339("last_sign_in_at"),
        rfc3339("created_at"),
        rfc3339("updated_at"),
    );
    Ok(client.query_one(&sql, &[&user_id]).await?.get(0))
}

/// `AccessTokenResponse` for `user` in `session` with `refresh`, its access token signed with
/// GoTrue's claims.
async fn token_response(
    shared: &Shared,
    tx: &tokio_postgres::Transaction<'_>,
    user_id: &str,
    session: &str,
    refresh: &str,
) -> Result<Value, AuthError> {
    let user = user_json(tx, user_id).await?;
    let amr: Vec<Value> = tx
        .query(
            "SELECT authentication_method, extract(epoch FROM created_at)::bigint
             FROM auth.mfa_amr_claims WHERE session_id = $1::text::uuid ORDER BY created_at",
            &[&session],
        )
        .await?
        .iter()
        .map(|r| json!({ "method": r.get::<_, String>(0), "timestamp": r.get::<_, i64>(1) }))
        .collect();
    let now = unix_now();
    let expires_at = now + shared.config.access_ttl.as_secs() as i64;
    let field = |k: &str| user.get(k).cloned().unwrap_or(Value::Null);
    let claims = json!({
        "iss": shared.issuer,
        "sub": user_id,
        "aud": field("aud"),
        "exp": expires_at,
        "iat": now,
        "email": field("email"),
        "phone": field("phone"),
        "app_metadata": field("app_metadata"),
        "user_metadata": field("user_metadata"),
        "role": field("role"),
        "aal": "aal1",
        "amr": amr,
        "session_id": session,
        "is_anonymous": field("is_anonymous"),
    });
    let access = shared.signer.sign(&claims).map_err(|e| AuthError::Http {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        code: "unexpected_failure",
        msg: format!("error generating jwt token: {e}"),
    })?;
    Ok(json!({
        "access_token": access,
        "token_type": "bearer",
        "expires_in": expires_at - now,
        "expires_at": expires_at,
        "refresh_token": refresh,
        "user": user,
    }))
}

/// Creates a confirmed user with `email` and `password` in the database at `db_url` (which has
/// the emulated `auth` schema), as Supabase's admin API does with `email_confirm: true`;
/// returns its id.
///
/// # Errors
/// [`ShimError::Db`] (e.g. the email is taken), [`ShimError::Hash`].
pub async fn create_user(db_url: &str, email: &str, password: &str) -> Result<String, ShimError> {
    let password = password.to_string();
    let hash = tokio::task::spawn_blocking(move || bcrypt::hash(password, BCRYPT_COST))
        .await
        .map_err(|e| ShimError::Hash(e.to_string()))?
        .map_err(|e| ShimError::Hash(e.to_string()))?;
    let client = connect(db_url).await?;
    let row = client
        .query_one(
            "INSERT INTO auth.users (instance_id, id, aud, role, email, encrypted_password,
                                     email_confirmed_at, raw_app_meta_data, raw_user_meta_data,
                                     created_at, updated_at, is_sso_user, is_anonymous)
             VALUES ($1::text::uuid, gen_random_uuid(), 'authenticated', 'authenticated',
                     lower($2), $3, now(),
                     '{\"provider\": \"email\", \"providers\": [\"email\"]}', '{}',
                     now(), now(), false, false)
             RETURNING id::text",
            &[&NIL_INSTANCE, &email, &hash],
        )
        .await?;
    Ok(row.get(0))
}
