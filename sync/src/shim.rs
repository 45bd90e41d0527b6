//! TEST SHIM, not PostgREST (feature `shim`): no PostgREST server can be installed here, so the
//! REST transport is tested and benchmarked against this small loopback HTTP server. It does what PostgREST does for
//! `POST /rest/v1/rpc/<fn>`: checks the `apikey`, verifies the bearer JWT (HS256), and in one
//! transaction takes the JWT's role, sets `request.jwt.claims`, and calls `public.<fn>` with the
//! JSON body's named arguments typed by the function's own signature (`json_to_record`), on the
//! real Postgres. Errors come back in PostgREST's shape (`code`, `message`, `details`, `hint`)
//! and status codes. It is not a server to deploy: it opens a Postgres connection per request
//! and trusts its one configured secret.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use serde_json::{json, Value};

struct Shared {
    db_url: String,
    anon_key: String,
    jwt_secret: String,
    requests: AtomicUsize,
}

/// A running shim.
pub struct Shim {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Shim {
    /// Starts a shim on a free loopback port in front of the database at `db_url` (a superuser
    /// URL), accepting `anon_key` and JWTs signed (HS256) with `jwt_secret`.
    pub async fn start(db_url: &str, anon_key: &str, jwt_secret: &str) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            db_url: db_url.to_string(),
            anon_key: anon_key.to_string(),
            jwt_secret: jwt_secret.to_string(),
            requests: AtomicUsize::new(0),
        });
        let app = Router::new()
            .route("/rest/v1/rpc/{function}", post(rpc))
            // PostgREST itself sets no body limit; batches of 384-d chunks run to megabytes.
            .layer(axum::extract::DefaultBodyLimit::max(256 * 1024 * 1024))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { url, shared, task })
    }

    /// Requests served so far.
    pub fn requests(&self) -> usize {
        self.shared.requests.load(Ordering::SeqCst)
    }
}

impl Drop for Shim {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn error(status: StatusCode, code: &str, message: &str, details: Option<&str>) -> Response {
    (
        status,
        axum::Json(json!({ "code": code, "message": message, "details": details, "hint": null })),
    )
        .into_response()
}

async fn rpc(
    State(shared): State<Arc<Shared>>,
    Path(function): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    shared.requests.fetch_add(1, Ordering::SeqCst);
    if headers.get("apikey").and_then(|v| v.to_str().ok()) != Some(shared.anon_key.as_str()) {
        return error(
            StatusCode::UNAUTHORIZED,
            "PGRST000",
            "Invalid API key",
            None,
        );
    }
    let claims = match headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    {
        // As PostgREST: no token means the anon role.
        None => json!({ "role": "anon" }),
        Some(token) => {
            let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
            validation.set_audience(&["authenticated"]);
            match jsonwebtoken::decode::<Value>(
                token,
                &jsonwebtoken::DecodingKey::from_secret(shared.jwt_secret.as_bytes()),
                &validation,
            ) {
                Ok(t) => t.claims,
                Err(e) => return error(StatusCode::UNAUTHORIZED, "PGRST301", &e.to_string(), None),
            }
        }
    };
    let role = claims
        .get("role")
        .and_then(Value::as_str)
        .unwrap_or("anon")
        .to_string();
    if !["anon", "authenticated", "service_role"].contains(&role.as_str())
        || !function.chars().all(|c| c.is_ascii_lowercase() || c == '_')
    {
        return error(
            StatusCode::BAD_REQUEST,
            "PGRST000",
            "bad role or function name",
            None,
        );
    }
    let args: Value = match serde_json::from_slice(&body) {
        Ok(v @ Value::Object(_)) => v,
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                "PGRST102",
                "Invalid JSON body",
                None,
            )
        }
    };
    match call(&shared.db_url, &role, &claims, &function, &args).await {
        Ok(text) => (StatusCode::OK, [("content-type", "application/json")], text).into_response(),
        Err(CallError::NotFound) => error(
            StatusCode::NOT_FOUND,
            "PGRST202",
            &format!("Could not find the function public.{function} in the schema cache"),
            None,
        ),
        Err(CallError::Db {
            code,
            message,
            details,
        }) => {
            // PostgREST's mapping of the SQLSTATEs that matter here.
            let status = match code.as_str() {
                "42501" if role == "anon" => StatusCode::UNAUTHORIZED,
                "42501" | "28000" => StatusCode::FORBIDDEN,
                c if c.starts_with("40") => StatusCode::INTERNAL_SERVER_ERROR,
                c if c.starts_with("08") || c.starts_with("53") || c.starts_with("57") => {
                    StatusCode::SERVICE_UNAVAILABLE
                }
                _ => StatusCode::BAD_REQUEST,
            };
            error(status, &code, &message, details.as_deref())
        }
        Err(CallError::Other(m)) => error(StatusCode::SERVICE_UNAVAILABLE, "PGRST000", &m, None),
    }
}

enum CallError {
    NotFound,
    Db {
        code: String,
        message: String,
        details: Option<String>,
    },
    Other(String),
}

impl From<tokio_postgres::Error> for CallError {
    fn from(e: tokio_postgres::Error) -> Self {
        match e.as_db_error() {
            Some(db) => CallError::Db {
                code: db.code().code().to_string(),
                message: db.message().to_string(),
                details: db.detail().map(str::to_string),
            },
            None => CallError::Other(e.to_string()),
        }
    }
}

async fn call(
    db_url: &str,
    role: &str,
    claims: &Value,
    function: &str,
    args: &Value,
) -> Result<String, CallError> {
    let (mut client, connection) = tokio_postgres::connect(db_url, tokio_postgres::NoTls).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    // The function's input arguments and their types, as PostgREST's schema cache has them.
    let rows = client
        .query(
            "SELECT p.proretset, p.pronargs::int,
                    coalesce(p.proargnames, '{}'),
                    array(SELECT format_type(t, NULL) FROM unnest(p.proargtypes::oid[]) t)
             FROM pg_proc p WHERE p.proname = $1 AND p.pronamespace = 'public'::regnamespace",
            &[&function],
        )
        .await?;
    let Some(row) = rows.first() else {
        return Err(CallError::NotFound);
    };
    let retset: bool = row.get(0);
    let nargs: i32 = row.get(1);
    let names: Vec<String> = row.get(2);
    let types: Vec<String> = row.get(3);
    let Some(given) = args.as_object() else {
        return Err(CallError::Other("the body is not a JSON object".into()));
    };
    let mut columns = Vec::new();
    let mut named = Vec::new();
    for (name, ty) in names.iter().zip(&types).take(nargs as usize) {
        if given.contains_key(name) {
            columns.push(format!("\"{name}\" {ty}"));
            named.push(format!("\"{name}\" => x.\"{name}\""));
        }
    }
    if let Some(unknown) = given
        .keys()
        .find(|k| !names.iter().take(nargs as usize).any(|n| n == *k))
    {
        return Err(CallError::Db {
            code: "PGRST202".into(),
            message: format!("function public.{function} has no argument '{unknown}'"),
            details: None,
        });
    }
    let from = if columns.is_empty() {
        "(SELECT 1) AS x".to_string()
    } else {
        format!(
            "json_to_record($1::text::json) AS x({})",
            columns.join(", ")
        )
    };
    let call = format!("public.{function}({})", named.join(", "));
    let sql = if retset {
        format!("SELECT coalesce(jsonb_agg(to_jsonb(r)), '[]'::jsonb)::text FROM {from}, LATERAL {call} r")
    } else {
        format!("SELECT to_jsonb({call})::text FROM {from}")
    };
    let tx = client.transaction().await?;
    tx.batch_execute(&format!("SET LOCAL ROLE {role}")).await?;
    tx.execute(
        "SELECT set_config('request.jwt.claims', $1, true)",
        &[&claims.to_string()],
    )
    .await?;
    let body = args.to_string();
    let row = if columns.is_empty() {
        tx.query_one(&sql, &[]).await?
    } else {
        tx.query_one(&sql, &[&body]).await?
    };
    let text: Option<String> = row.get(0);
    tx.commit().await?;
    Ok(text.unwrap_or_else(|| "null".into()))
}

/// A JWT for `user` (role `authenticated`), signed with `secret` as Supabase signs them.
///
/// # Errors
/// Signing errors.
pub fn sign_jwt(user: &str, secret: &str) -> Result<String, jsonwebtoken::errors::Error> {
    let claims = json!({
        "sub": user, "role": "authenticated", "aud": "authenticated", "exp": 4_102_444_800u64
    });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
}
