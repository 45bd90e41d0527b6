//! The stand-in's PostgREST: `POST /rest/v1/rpc/<fn>` as PostgREST runs it (docs
//! `references/transactions.rst`, `references/api/functions.rst`; source
//! `src/library/PostgREST/Error.hs`, `Config/Database.hs`): the bearer JWT verified, one
//! transaction per request as the JWT's role with its claims and the role's settings, the
//! function chosen by the body's keys, errors in PostgREST's body with its status table.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use super::gateway::{self, Bearer};
use super::jwt::JwtError;
use super::{connect, Shared};

/// Function settings PostgREST hoists into the transaction by default (`db-hoisted-tx-settings`;
/// `default_transaction_isolation`, the third, is not reproduced).
const HOISTED: [&str; 2] = ["statement_timeout", "plan_filter.statement_cost_limit"];

/// An error answer: `{code, message, details, hint}` with `Proxy-Status: PostgREST;
/// error=<code>` (docs `references/errors.rst`, "Proxy-Status Header").
pub(super) fn error(
    status: StatusCode,
    code: &str,
    message: &str,
    details: Option<&str>,
    hint: Option<&str>,
) -> Response {
    let mut response = (
        status,
        axum::Json(json!({ "code": code, "message": message, "details": details, "hint": hint })),
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("PostgREST; error={code}")) {
        response.headers_mut().insert("proxy-status", v);
    }
    response
}

/// 401 for a refused JWT, with `WWW-Authenticate: Bearer error="invalid_token",
/// error_description="<message>"` (Error.hs `invalidTokenHeader`).
fn jwt_error(e: &JwtError) -> Response {
    let mut response = error(
        StatusCode::UNAUTHORIZED,
        e.code(),
        e.message(),
        e.details(),
        None,
    );
    let header = format!(
        "Bearer error=\"invalid_token\", error_description={:?}",
        e.message()
    );
    if let Ok(v) = HeaderValue::from_str(&header) {
        response.headers_mut().insert("www-authenticate", v);
    }
    response
}

/// PostgREST's `mapSQLtoHTTP` (Error.hs): the HTTP status of a SQLSTATE; `authed` is whether
/// the request carried a JWT.
pub(super) fn status_of(code: &str, message: &str, authed: bool) -> StatusCode {
    let c = code.as_bytes();
    let prefix = |p: &str| code.starts_with(p);
    match code {
        _ if prefix("08") => StatusCode::SERVICE_UNAVAILABLE,
        _ if prefix("09") => StatusCode::INTERNAL_SERVER_ERROR,
        _ if prefix("0L") || prefix("0P") => StatusCode::FORBIDDEN,
        "23503" | "23505" => StatusCode::CONFLICT,
        "25006" => StatusCode::METHOD_NOT_ALLOWED,
        "21000" if message.ends_with("requires a WHERE clause") => StatusCode::BAD_REQUEST,
        "21000" => StatusCode::INTERNAL_SERVER_ERROR,
        "22023" if message.starts_with("role") && message.ends_with("does not exist") => {
            StatusCode::UNAUTHORIZED
        }
        "22023" => StatusCode::BAD_REQUEST,
        _ if prefix("25") || prefix("2D") || prefix("38") || prefix("39") || prefix("3B") => {
            StatusCode::INTERNAL_SERVER_ERROR
        }
        _ if prefix("28") => StatusCode::FORBIDDEN,
        _ if prefix("40") => StatusCode::INTERNAL_SERVER_ERROR,
        "53400" => StatusCode::INTERNAL_SERVER_ERROR,
        _ if prefix("53") => StatusCode::SERVICE_UNAVAILABLE,
        _ if prefix("54") || prefix("55") => StatusCode::INTERNAL_SERVER_ERROR,
        "57P01" => StatusCode::SERVICE_UNAVAILABLE,
        _ if prefix("57") || prefix("58") || prefix("F0") || prefix("HV") => {
            StatusCode::INTERNAL_SERVER_ERROR
        }
        "P0001" => StatusCode::BAD_REQUEST,
        _ if prefix("P0") || prefix("XX") => StatusCode::INTERNAL_SERVER_ERROR,
        "42883" if message.starts_with("function xmlagg(") => StatusCode::NOT_ACCEPTABLE,
        "42883" | "42P01" => StatusCode::NOT_FOUND,
        "42P17" => StatusCode::INTERNAL_SERVER_ERROR,
        "42501" if authed => StatusCode::FORBIDDEN,
        "42501" => StatusCode::UNAUTHORIZED,
        _ if c.len() == 5 && prefix("PT") => std::str::from_utf8(&c[2..])
            .ok()
            .and_then(|n| n.parse::<u16>().ok())
            .and_then(|n| StatusCode::from_u16(n).ok())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        _ => StatusCode::BAD_REQUEST,
    }
}

/// `POST /rest/v1/rpc/<fn>`.
pub(super) async fn rpc(
    State(shared): State<Arc<Shared>>,
    Path(function): Path<String>,
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
    let caller = match Caller::of(&shared, &headers) {
        Ok(c) => c,
        Err(r) => return r.into_response(),
    };
    let args = match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Object(map)) => map,
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                "PGRST102",
                "Empty or invalid json",
                None,
                None,
            )
        }
    };
    let request = Request {
        caller: &caller,
        function: &function,
        args: &args,
        headers: &headers_json(&headers),
    };
    match call(&shared.config.db_url, &request).await {
        Ok(text) => (StatusCode::OK, [("content-type", "application/json")], text).into_response(),
        Err(e) => e.into_response(caller.authed),
    }
}

/// Who a request runs as: the verified JWT's claims and role (as PostgREST: no token is the
/// `anon` role, and so is a token without a `role` claim), and whether a JWT came at all.
pub(super) struct Caller {
    claims: Value,
    role: String,
    pub(super) authed: bool,
}

impl Caller {
    /// The caller of a request whose `apikey` the gateway has accepted, or why the gateway or
    /// PostgREST refuses its bearer token.
    pub(super) fn of(shared: &Shared, headers: &HeaderMap) -> Result<Self, Refusal> {
        let (claims, authed) = match gateway::bearer(headers) {
            Err(r) => return Err(Refusal::Gateway(r)),
            Ok(Bearer::None) => (json!({ "role": "anon" }), false),
            Ok(Bearer::Token(token)) => {
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_secs() as i64)
                    .unwrap_or(0);
                let skew = shared.config.jwt_clock_skew.as_secs() as i64;
                match shared.verifier.verify(token, now, skew) {
                    Ok(claims) => (claims, true),
                    Err(e) => return Err(Refusal::Jwt(e)),
                }
            }
        };
        let role = claims
            .get("role")
            .and_then(Value::as_str)
            .unwrap_or("anon")
            .to_string();
        Ok(Self {
            claims,
            role,
            authed,
        })
    }
}

/// A bearer token refused: by the gateway (an `sb_…` key that is not the `apikey`) or by
/// PostgREST's JWT checks.
pub(super) enum Refusal {
    Gateway(gateway::Refused),
    Jwt(JwtError),
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Refusal::Gateway(r) => r.into_response(),
            Refusal::Jwt(e) => jwt_error(&e),
        }
    }
}

/// The request's headers as `request.headers` holds them: a JSON object, lowercase names.
pub(super) fn headers_json(headers: &HeaderMap) -> Value {
    Value::Object(
        headers
            .iter()
            .filter_map(|(k, v)| Some((k.as_str().to_string(), Value::from(v.to_str().ok()?))))
            .collect(),
    )
}

/// What a call needs from the request.
struct Request<'a> {
    caller: &'a Caller,
    function: &'a str,
    args: &'a serde_json::Map<String, Value>,
    headers: &'a Value,
}

pub(super) enum CallError {
    /// No function of that name takes these arguments (the body's keys, sorted).
    NoRpc {
        function: String,
        keys: Vec<String>,
    },
    /// Several do: their signatures.
    Ambiguous {
        candidates: Vec<String>,
    },
    /// No table or view of that name in the exposed schema.
    NoTable {
        table: String,
    },
    /// A query string PostgREST cannot parse (`PGRST100`), or asks for what the stand-in does
    /// not reproduce.
    Query {
        message: String,
        details: String,
    },
    Db {
        code: String,
        message: String,
        details: Option<String>,
        hint: Option<String>,
    },
    Connection(String),
}

impl From<tokio_postgres::Error> for CallError {
    fn from(e: tokio_postgres::Error) -> Self {
        match e.as_db_error() {
            Some(db) => CallError::Db {
                code: db.code().code().to_string(),
                message: db.message().to_string(),
                details: db.detail().map(str::to_string),
                hint: db.hint().map(str::to_string),
            },
            None => CallError::Connection(e.to_string()),
        }
    }
}

impl CallError {
    /// The answer PostgREST gives; `authed` is whether the request carried a JWT.
    pub(super) fn into_response(self, authed: bool) -> Response {
        match self {
            CallError::NoRpc { function, keys } => {
                let func = format!("public.{function}");
                let (message, details) = if keys.is_empty() {
                    (
                        format!("Could not find the function {func} without parameters in the schema cache"),
                        format!("Searched for the function {func} without parameters or with a single unnamed json/jsonb parameter, but no matches were found in the schema cache."),
                    )
                } else {
                    let list = keys.join(", ");
                    let plural = if keys.len() > 1 { "s" } else { "" };
                    (
                        format!("Could not find the function {func}({list}) in the schema cache"),
                        format!("Searched for the function {func} with parameter{plural} {list} or with a single unnamed json/jsonb parameter, but no matches were found in the schema cache."),
                    )
                };
                error(
                    StatusCode::NOT_FOUND,
                    "PGRST202",
                    &message,
                    Some(&details),
                    None,
                )
            }
            CallError::Ambiguous { candidates } => error(
                StatusCode::MULTIPLE_CHOICES,
                "PGRST203",
                &format!(
                    "Could not choose the best candidate function between: {}",
                    candidates.join(", ")
                ),
                None,
                Some("Try renaming the parameters or the function itself in the database so function overloading can be resolved"),
            ),
            // Error.hs: `TableNotFound` is 404 `PGRST205`, "Could not find the table
            // '<schema>.<table>' in the schema cache" (its fuzzy "Perhaps you meant" hint is
            // not reproduced).
            CallError::NoTable { table } => error(
                StatusCode::NOT_FOUND,
                "PGRST205",
                &format!("Could not find the table 'public.{table}' in the schema cache"),
                None,
                None,
            ),
            // Error.hs: `QueryParamError` is 400 `PGRST100` with the parser's message.
            CallError::Query { message, details } => error(
                StatusCode::BAD_REQUEST,
                "PGRST100",
                &message,
                Some(&details),
                None,
            ),
            CallError::Db {
                code,
                message,
                details,
                hint,
            } => {
                let status = status_of(&code, &message, authed);
                let mut response =
                    error(status, &code, &message, details.as_deref(), hint.as_deref());
                if status == StatusCode::UNAUTHORIZED {
                    response
                        .headers_mut()
                        .insert("www-authenticate", HeaderValue::from_static("Bearer"));
                }
                response
            }
            // A connection that failed below SQL (pgErrorStatus: 503).
            CallError::Connection(m) => error(
                StatusCode::SERVICE_UNAVAILABLE,
                "PGRST001",
                "Database client error. Retrying the connection.",
                Some(&m),
                None,
            ),
        }
    }
}

/// Opens the request's transaction as PostgREST does (docs `references/transactions.rst`):
/// READ ONLY if `read_only`; `role`, `request.jwt.claims` and the other `request.*` settings
/// set transaction-locally; then the impersonated role's settings ("applies the impersonated
/// roles settings as transaction-scoped settings"; a database-specific one first, see the
/// module docs); then `extra` (a function's hoisted settings), which override the role's.
pub(super) async fn begin<'c>(
    client: &'c mut tokio_postgres::Client,
    read_only: bool,
    caller: &Caller,
    method: &str,
    path: &str,
    headers: &Value,
    extra: Vec<(String, String)>,
) -> Result<tokio_postgres::Transaction<'c>, CallError> {
    let role_settings = client
        .query(
            "SELECT DISTINCT ON (x.k) x.k, x.v FROM (
                 SELECT s.setdatabase, split_part(c, '=', 1) AS k,
                        substr(c, strpos(c, '=') + 1) AS v
                 FROM pg_db_role_setting s, unnest(s.setconfig) c
                 WHERE s.setrole = (SELECT oid FROM pg_roles WHERE rolname = $1)
                   AND s.setdatabase IN (0, (SELECT oid FROM pg_database
                                             WHERE datname = current_database()))
             ) x JOIN pg_settings ps ON ps.name = x.k AND ps.context = 'user'
             WHERE x.k <> 'default_transaction_isolation'
             ORDER BY x.k, x.setdatabase DESC",
            &[&caller.role],
        )
        .await?;
    let tx = client
        .build_transaction()
        .read_only(read_only)
        .start()
        .await?;
    tx.execute(
        "SELECT set_config('role', $1, true), set_config('request.jwt.claims', $2, true),
                set_config('request.method', $3, true), set_config('request.path', $4, true),
                set_config('request.headers', $5, true), set_config('request.cookies', '{}', true)",
        &[
            &caller.role,
            &caller.claims.to_string(),
            &method,
            &path,
            &headers.to_string(),
        ],
    )
    .await?;
    let settings = role_settings
        .iter()
        .map(|r| (r.get::<_, String>(0), r.get::<_, String>(1)))
        .chain(extra);
    for (k, v) in settings {
        tx.execute("SELECT set_config($1, $2, true)", &[&k, &v])
            .await?;
    }
    Ok(tx)
}

/// One overload of the function, as PostgREST's schema cache has it.
struct Proc {
    retset: bool,
    read_only: bool,
    /// Input parameters: name and type.
    params: Vec<(String, String)>,
    /// How many of the first parameters have no default.
    required: usize,
    /// Its own settings (`proconfig`, `name=value`).
    config: Vec<String>,
}

/// An identifier quoted as `quote_ident` quotes it (double quotes, inner ones doubled).
pub(super) fn quote(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

async fn call(db_url: &str, req: &Request<'_>) -> Result<String, CallError> {
    let mut client = connect(db_url).await?;
    let rows = client
        .query(
            "SELECT p.proretset, p.provolatile::text IN ('s', 'i'), p.pronargs::int,
                    p.pronargdefaults::int, coalesce(p.proargnames, '{}'),
                    coalesce(p.proargmodes::text[], '{}'),
                    array(SELECT format_type(t, NULL) FROM unnest(p.proargtypes::oid[]) t),
                    coalesce(p.proconfig, '{}')
             FROM pg_proc p WHERE p.proname = $1 AND p.pronamespace = 'public'::regnamespace",
            &[&req.function],
        )
        .await?;
    let procs: Vec<Proc> = rows
        .iter()
        .map(|row| {
            let nargs = row.get::<_, i32>(2) as usize;
            let names: Vec<String> = row.get(4);
            let modes: Vec<String> = row.get(5);
            let types: Vec<String> = row.get(6);
            // Names of the input parameters: all of them, or those of mode in/inout/variadic.
            let input_names: Vec<String> = if modes.is_empty() {
                names.into_iter().take(nargs).collect()
            } else {
                names
                    .into_iter()
                    .zip(modes)
                    .filter(|(_, m)| m == "i" || m == "b" || m == "v")
                    .map(|(n, _)| n)
                    .collect()
            };
            Proc {
                retset: row.get(0),
                read_only: row.get(1),
                params: input_names.into_iter().zip(types).collect(),
                required: nargs.saturating_sub(row.get::<_, i32>(3) as usize),
                config: row.get(7),
            }
        })
        .collect();
    // PostgREST's choice: the overloads whose parameters include every key of the body and
    // whose parameters without a default are all among the keys.
    let keys: BTreeSet<&String> = req.args.keys().collect();
    let matching: Vec<&Proc> = procs
        .iter()
        .filter(|p| {
            keys.iter().all(|k| p.params.iter().any(|(n, _)| n == *k))
                && p.params[..p.required.min(p.params.len())]
                    .iter()
                    .all(|(n, _)| keys.contains(n))
        })
        .collect();
    let proc = match matching.as_slice() {
        [] => {
            return Err(CallError::NoRpc {
                function: req.function.to_string(),
                keys: keys.into_iter().cloned().collect(),
            })
        }
        [one] => *one,
        many => {
            return Err(CallError::Ambiguous {
                candidates: many
                    .iter()
                    .map(|p| {
                        let params: Vec<String> = p
                            .params
                            .iter()
                            .map(|(n, t)| format!("{n} => {t}"))
                            .collect();
                        format!("public.{}({})", req.function, params.join(", "))
                    })
                    .collect(),
            })
        }
    };
    let mut columns = Vec::new();
    let mut named = Vec::new();
    for (name, ty) in &proc.params {
        if req.args.contains_key(name) {
            columns.push(format!("{} {ty}", quote(name)));
            named.push(format!("{} => x.{}", quote(name), quote(name)));
        }
    }
    let from = if columns.is_empty() {
        "(SELECT 1) AS x".to_string()
    } else {
        format!(
            "json_to_record($1::text::json) AS x({})",
            columns.join(", ")
        )
    };
    let call = format!("public.{}({})", quote(req.function), named.join(", "));
    let sql = if proc.retset {
        format!("SELECT coalesce(jsonb_agg(to_jsonb(r)), '[]'::jsonb)::text FROM {from}, LATERAL {call} r")
    } else {
        format!("SELECT to_jsonb({call})::text FROM {from}")
    };
    // The function's own hoisted settings come after (and so override) the role's.
    let hoisted = proc
        .config
        .iter()
        .filter_map(|c| {
            let (k, v) = c.split_once('=')?;
            HOISTED.contains(&k).then(|| (k.to_string(), v.to_string()))
        })
        .collect();
    // STABLE and IMMUTABLE functions run READ ONLY (transactions.rst, "Access Mode on
    // Functions").
    let path = format!("/rpc/{}", req.function);
    let tx = begin(
        &mut client,
        proc.read_only,
        req.caller,
        "POST",
        &path,
        req.headers,
        hoisted,
    )
    .await?;
    let body = serde_json::Value::Object(req.args.clone()).to_string();
    let row = if columns.is_empty() {
        tx.query_one(&sql, &[]).await?
    } else {
        tx.query_one(&sql, &[&body]).await?
    };
    let text: Option<String> = row.get(0);
    tx.commit().await?;
    Ok(text.unwrap_or_else(|| "null".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// PostgREST's table, row by row (src/library/PostgREST/Error.hs `mapSQLtoHTTP`;
    /// https://docs.postgrest.org/en/stable/references/errors.html#http-status-codes: "PostgREST
    /// translates PostgreSQL error codes into HTTP status as follows").
    #[test]
    fn sqlstates_map_to_postgrests_http_statuses() -> Result<(), String> {
        let table = [
            ("08006", "", true, 503),
            ("09000", "", true, 500),
            ("0L000", "", true, 403),
            ("0P000", "", true, 403),
            ("23503", "", true, 409),
            ("23505", "", true, 409),
            ("25006", "", true, 405),
            ("25001", "", true, 500),
            ("28000", "", true, 403),
            ("2D000", "", true, 500),
            ("38000", "", true, 500),
            ("39000", "", true, 500),
            ("3B000", "", true, 500),
            ("40001", "", true, 500),
            ("53400", "", true, 500),
            ("53100", "", true, 503),
            ("54000", "", true, 500),
            ("55000", "", true, 500),
            (
                "57014",
                "canceling statement due to statement timeout",
                true,
                500,
            ),
            ("57P01", "", true, 503),
            ("58000", "", true, 500),
            ("F0000", "", true, 500),
            ("HV000", "", true, 500),
            ("P0001", "", true, 400),
            ("P0002", "", true, 500),
            ("XX000", "", true, 500),
            ("42883", "function f() does not exist", true, 404),
            ("42P01", "", true, 404),
            ("42P17", "", true, 500),
            ("42501", "", true, 403),
            ("42501", "", false, 401),
            ("22023", "role \"x\" does not exist", true, 401),
            ("22023", "", true, 400),
            ("21000", "UPDATE requires a WHERE clause", true, 400),
            ("21000", "", true, 500),
            ("PT402", "", true, 402),
            ("23514", "", true, 400),
            ("22P02", "", true, 400),
        ];
        for (code, message, authed, want) in table {
            let got = status_of(code, message, authed).as_u16();
            if got != want {
                return Err(format!(
                    "{code} ({message:?}, authed {authed}): {got}, not {want}"
                ));
            }
        }
        Ok(())
    }
}
