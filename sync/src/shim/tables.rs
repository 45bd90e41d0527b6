//! The stand-in's PostgREST reading tables and views: `GET` (and `HEAD`) `/rest/v1/<table>` with
//! the query string PostgREST reads (docs `references/api/tables_views.rst`,
//! `references/api/pagination_count.rst`, `references/api/schemas.rst`), as
//! supabase-js's `from(table).select(...)` sends it. It runs through the same caller, transaction
//! and errors as an RPC (`postgrest.rs`), READ ONLY, so row-level security applies as the JWT's
//! role. Identifiers are quoted and every filter value is a bind parameter.
//!
//! Reproduced: `select=` with `*`, columns and `alias:column`; filters `<col>=[not.]<op>.<value>`
//! with `eq, neq, gt, gte, lt, lte, like, ilike` (`*` as `%`), `is` (`null`, `not_null`, `true`,
//! `false`, `unknown`) and `in.(a,"b,c")`; `order=<col>[.asc|.desc][.nullsfirst|.nullslast],…`;
//! `limit`, `offset`; `Prefer: count=exact`; `Accept-Profile` other than `public`. Not
//! reproduced (answered `PGRST100`, so a test that needs them fails rather than passes on
//! a wrong answer): embedded resources, casts, JSON paths, `or=`/`and=`, the other operators,
//! the `Range` header, `vnd.pgrst.object+json`, planned and estimated counts.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::gateway;
use super::postgrest::{begin, error, headers_json, quote, CallError, Caller};
use super::Shared;

/// `GET /rest/v1/<table>` (axum serves `HEAD` with the same handler, without the body).
pub(super) async fn read(
    State(shared): State<Arc<Shared>>,
    Path(table): Path<String>,
    Query(params): Query<Vec<(String, String)>>,
    headers: HeaderMap,
) -> Response {
    shared.requests.fetch_add(1, Ordering::SeqCst);
    let keys: HashMap<String, String> = params
        .iter()
        .filter(|(k, _)| k == "apikey")
        .cloned()
        .collect();
    if let Err(r) = gateway::check_key(&shared, &headers, &keys) {
        return r.into_response();
    }
    let caller = match Caller::of(&shared, &headers) {
        Ok(c) => c,
        Err(r) => return r.into_response(),
    };
    // Error.hs: `UnacceptableSchema` is 406 `PGRST106`, "Invalid schema: <s>", hint "Only the
    // following schemas are exposed: …" (Supabase exposes `public` unless configured).
    if let Some(schema) = headers.get("accept-profile").and_then(|v| v.to_str().ok()) {
        if schema != "public" {
            return error(
                StatusCode::NOT_ACCEPTABLE,
                "PGRST106",
                &format!("Invalid schema: {schema}"),
                None,
                Some("Only the following schemas are exposed: public"),
            );
        }
    }
    // What would be read wrongly if ignored is refused instead (see the module docs).
    let accept = headers.get("accept").and_then(|v| v.to_str().ok());
    if accept.is_some_and(|a| a.contains("vnd.pgrst.object")) {
        return not_reproduced("a single object (Accept: application/vnd.pgrst.object+json)")
            .into_response(caller.authed);
    }
    if headers.contains_key("range") {
        return not_reproduced("the Range header (use limit and offset)")
            .into_response(caller.authed);
    }
    // `Prefer: count=exact` (pagination_count.rst, "Exact Count"); other preferences ignored.
    let count = headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim() == "count=exact");
    let query = match ReadQuery::parse(&params) {
        Ok(q) => q,
        Err(e) => return e.into_response(caller.authed),
    };
    match run(
        &shared,
        &caller,
        &table,
        &query,
        count,
        &headers_json(&headers),
    )
    .await
    {
        Ok(rows) => rows.into_response(),
        Err(e) => e.into_response(caller.authed),
    }
}

/// What the query string asks for.
#[derive(Debug, Default, PartialEq)]
struct ReadQuery {
    /// `(output name, column)`; empty for `*`.
    select: Vec<(String, String)>,
    filters: Vec<Filter>,
    /// `(column, descending, nulls first)`; `None` leaves Postgres's default for the direction.
    order: Vec<(String, bool, Option<bool>)>,
    limit: Option<i64>,
    offset: Option<i64>,
}

#[derive(Debug, PartialEq)]
struct Filter {
    column: String,
    negated: bool,
    op: Op,
}

#[derive(Debug, PartialEq)]
enum Op {
    /// `=`, `<>`, `>`, `>=`, `<`, `<=` with the value cast to the column's type.
    Compare(&'static str, String),
    /// `LIKE` or `ILIKE` with `*` read as `%`.
    Like(&'static str, String),
    /// `IS NULL`, `IS NOT NULL`, `IS TRUE`, …: a fixed SQL word, never the request's text.
    Is(&'static str),
    In(Vec<String>),
}

fn unparsable(message: String, details: &str) -> CallError {
    CallError::Query {
        message,
        details: details.to_string(),
    }
}

fn not_reproduced(what: &str) -> CallError {
    unparsable(
        format!("the Supabase stand-in does not reproduce {what}"),
        "outpost_sync::shim serves plain columns, simple filters, order, limit and offset",
    )
}

impl ReadQuery {
    fn parse(params: &[(String, String)]) -> Result<Self, CallError> {
        let mut q = ReadQuery::default();
        for (key, value) in params {
            match key.as_str() {
                // Supabase's gateway takes the key out of the query string (key-auth's
                // `hide_credentials`) before PostgREST sees it.
                "apikey" => {}
                "select" => q.select = parse_select(value)?,
                "order" => q.order = parse_order(value)?,
                "limit" => q.limit = Some(parse_count(key, value)?),
                "offset" => q.offset = Some(parse_count(key, value)?),
                "or" | "and" | "not.or" | "not.and" => {
                    return Err(not_reproduced("logical filters (or, and)"))
                }
                column => q.filters.push(parse_filter(column, value)?),
            }
        }
        Ok(q)
    }
}

fn parse_select(value: &str) -> Result<Vec<(String, String)>, CallError> {
    let mut out = Vec::new();
    for item in value.split(',').map(str::trim) {
        if item == "*" {
            continue;
        }
        if item.contains(['(', ')'])
            || item.contains("->")
            || item.contains("::")
            || item.starts_with("...")
        {
            return Err(not_reproduced(
                "embedded resources, casts or JSON paths in select",
            ));
        }
        let (alias, column) = item.split_once(':').unwrap_or((item, item));
        if column.is_empty() {
            return Err(unparsable(
                format!("failed to parse select parameter ({value})"),
                "an empty column name",
            ));
        }
        out.push((alias.to_string(), column.to_string()));
    }
    // `*` with other columns: every column, then those again (as PostgREST's `*,a`).
    if value.split(',').any(|i| i.trim() == "*") && !out.is_empty() {
        return Err(not_reproduced("'*' together with named columns"));
    }
    Ok(out)
}

fn parse_order(value: &str) -> Result<Vec<(String, bool, Option<bool>)>, CallError> {
    value
        .split(',')
        .map(|term| {
            let mut parts = term.split('.');
            let column = parts.next().unwrap_or_default().to_string();
            let (mut desc, mut nulls_first) = (false, None);
            for modifier in parts {
                match modifier {
                    "asc" => desc = false,
                    "desc" => desc = true,
                    "nullsfirst" => nulls_first = Some(true),
                    "nullslast" => nulls_first = Some(false),
                    _ => {
                        return Err(unparsable(
                            format!("failed to parse order ({value})"),
                            "unexpected order modifier",
                        ))
                    }
                }
            }
            Ok((column, desc, nulls_first))
        })
        .collect()
}

fn parse_count(key: &str, value: &str) -> Result<i64, CallError> {
    value
        .parse::<i64>()
        .ok()
        .filter(|n| *n >= 0)
        .ok_or_else(|| {
            unparsable(
                format!("failed to parse {key} ({value})"),
                "expecting a non-negative integer",
            )
        })
}

fn parse_filter(column: &str, value: &str) -> Result<Filter, CallError> {
    let bad = || {
        unparsable(
            format!("failed to parse filter ({value})"),
            "unexpected operator",
        )
    };
    let (negated, rest) = match value.strip_prefix("not.") {
        Some(r) => (true, r),
        None => (false, value),
    };
    let (op, operand) = rest.split_once('.').ok_or_else(bad)?;
    let operand = operand.to_string();
    let op = match op {
        "eq" => Op::Compare("=", operand),
        "neq" => Op::Compare("<>", operand),
        "gt" => Op::Compare(">", operand),
        "gte" => Op::Compare(">=", operand),
        "lt" => Op::Compare("<", operand),
        "lte" => Op::Compare("<=", operand),
        "like" => Op::Like("LIKE", operand.replace('*', "%")),
        "ilike" => Op::Like("ILIKE", operand.replace('*', "%")),
        "is" => Op::Is(match operand.to_ascii_lowercase().as_str() {
            "null" => "IS NULL",
            "not_null" => "IS NOT NULL",
            "true" => "IS TRUE",
            "false" => "IS FALSE",
            "unknown" => "IS UNKNOWN",
            _ => return Err(bad()),
        }),
        "in" => Op::In(parse_list(&operand).ok_or_else(bad)?),
        "cs" | "cd" | "ov" | "sl" | "sr" | "nxl" | "nxr" | "adj" | "fts" | "plfts" | "phfts"
        | "wfts" | "match" | "imatch" | "isdistinct" => {
            return Err(not_reproduced(&format!("the '{op}' operator")))
        }
        _ => return Err(bad()),
    };
    Ok(Filter {
        column: column.to_string(),
        negated,
        op,
    })
}

/// `(a,b,"c,d")`: the values, double quotes holding commas (and `\"`).
fn parse_list(operand: &str) -> Option<Vec<String>> {
    let inner = operand.strip_prefix('(')?.strip_suffix(')')?;
    let mut values = Vec::new();
    if inner.is_empty() {
        return Some(values);
    }
    let (mut current, mut quoted, mut chars) = (String::new(), false, inner.chars());
    while let Some(c) = chars.next() {
        match c {
            '"' => quoted = !quoted,
            '\\' if quoted => current.push(chars.next()?),
            ',' if !quoted => values.push(std::mem::take(&mut current)),
            c => current.push(c),
        }
    }
    (!quoted).then(|| {
        values.push(current);
        values
    })
}

/// The rows read, and what the answer's headers say about them.
struct Rows {
    json: String,
    returned: i64,
    offset: i64,
    total: Option<i64>,
}

impl IntoResponse for Rows {
    /// pagination_count.rst: "Every response contains the current range and, if requested, the
    /// total number of results" as `Content-Range: <first>-<last>/<total or *>` (`*/<total>`
    /// when no row came back); with an exact count, a range short of the total is 206 Partial
    /// Content.
    fn into_response(self) -> Response {
        let range = if self.returned > 0 {
            format!("{}-{}", self.offset, self.offset + self.returned - 1)
        } else {
            "*".to_string()
        };
        let total = self.total.map_or("*".to_string(), |t| t.to_string());
        let status = match self.total {
            Some(t) if self.returned < t => StatusCode::PARTIAL_CONTENT,
            _ => StatusCode::OK,
        };
        let mut response = (
            status,
            [("content-type", "application/json; charset=utf-8")],
            self.json,
        )
            .into_response();
        if let Ok(v) = HeaderValue::from_str(&format!("{range}/{total}")) {
            response.headers_mut().insert("content-range", v);
        }
        response
    }
}

/// Reads the table in one READ ONLY transaction as the caller (PostgREST runs GET read-only,
/// transactions.rst "Access Mode").
async fn run(
    shared: &Shared,
    caller: &Caller,
    table: &str,
    q: &ReadQuery,
    count: bool,
    headers: &serde_json::Value,
) -> Result<Rows, CallError> {
    let mut client = super::connect(&shared.config.db_url).await?;
    // PostgREST's schema cache: the tables and views of the exposed schema, their columns'
    // types (a filter's value is cast to its column's type, as PostgREST's `unknown`-typed
    // parameter is).
    let columns = client
        .query(
            "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod)
             FROM pg_class c LEFT JOIN pg_attribute a
               ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
             WHERE c.relnamespace = 'public'::regnamespace AND c.relname = $1
               AND c.relkind IN ('r', 'v', 'm', 'f', 'p')",
            &[&table],
        )
        .await?;
    if columns.is_empty() {
        return Err(CallError::NoTable {
            table: table.to_string(),
        });
    }
    let types: HashMap<String, String> = columns
        .iter()
        .filter_map(|r| Some((r.get::<_, Option<String>>(0)?, r.get::<_, String>(1))))
        .collect();
    // Columns are written qualified by the table, as PostgREST writes them, so that an unknown
    // one is Postgres's own 400 `42703` "column <table>.<name> does not exist".
    let t = quote(table);
    let col = |c: &str| format!("{t}.{}", quote(c));
    let mut binds: Vec<String> = Vec::new();
    let mut bind = |v: &str, ty: &str| {
        binds.push(v.to_string());
        format!("CAST(${}::text AS {ty})", binds.len())
    };
    let mut conditions = Vec::new();
    for f in &q.filters {
        // An unknown column still needs a type to write the SQL: Postgres refuses the column.
        let ty = types.get(&f.column).map_or("text", String::as_str);
        let c = col(&f.column);
        let condition = match &f.op {
            Op::Compare(sql_op, v) => format!("{c} {sql_op} {}", bind(v, ty)),
            Op::Like(sql_op, v) => format!("{c} {sql_op} {}", bind(v, "text")),
            Op::Is(sql) => format!("{c} {sql}"),
            Op::In(values) if values.is_empty() => "false".to_string(),
            Op::In(values) => {
                let list: Vec<String> = values.iter().map(|v| bind(v, ty)).collect();
                format!("{c} IN ({})", list.join(", "))
            }
        };
        conditions.push(if f.negated {
            format!("NOT ({condition})")
        } else {
            condition
        });
    }
    let source = format!("public.{t}");
    let filter = if conditions.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", conditions.join(" AND "))
    };
    let select = if q.select.is_empty() {
        format!("{t}.*")
    } else {
        q.select
            .iter()
            .map(|(alias, c)| format!("{} AS {}", col(c), quote(alias)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let order = if q.order.is_empty() {
        String::new()
    } else {
        let terms: Vec<String> = q
            .order
            .iter()
            .map(|(c, desc, nulls_first)| {
                let direction = if *desc { "DESC" } else { "ASC" };
                let nulls = match nulls_first {
                    Some(true) => " NULLS FIRST",
                    Some(false) => " NULLS LAST",
                    None => "",
                };
                format!("{} {direction}{nulls}", col(c))
            })
            .collect();
        format!(" ORDER BY {}", terms.join(", "))
    };
    // Parsed integers, not the request's text.
    let limit = q.limit.map_or(String::new(), |n| format!(" LIMIT {n}"));
    let offset = q.offset.unwrap_or(0);
    let sql = format!(
        "SELECT coalesce(json_agg(_r), '[]')::text, count(*) FROM (SELECT {select} FROM {source}{filter}{order}{limit} OFFSET {offset}) _r"
    );
    let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = binds
        .iter()
        .map(|b| b as &(dyn tokio_postgres::types::ToSql + Sync))
        .collect();
    let path = format!("/{table}");
    let tx = begin(&mut client, true, caller, "GET", &path, headers, Vec::new()).await?;
    let row = tx.query_one(&sql, &params).await?;
    let total = if count {
        let counted = tx
            .query_one(&format!("SELECT count(*) FROM {source}{filter}"), &params)
            .await?;
        Some(counted.get::<_, i64>(0))
    } else {
        None
    };
    tx.commit().await?;
    Ok(Rows {
        json: row.get(0),
        returned: row.get(1),
        offset,
        total,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The query string as supabase-js writes it (postgrest-js `PostgrestFilterBuilder`:
    /// `eq(column, value)` appends `column=eq.value`, `in` writes `in.(a,"b,c")`, `order`
    /// writes `column.asc|desc[.nullsfirst|.nullslast]`).
    #[test]
    fn query_strings_parse_as_postgrest_reads_them() -> Result<(), String> {
        let params = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let q = ReadQuery::parse(&params(&[
            ("select", "id,name:source"),
            ("source", "not.like.notes/*"),
            ("id", "in.(a,\"b,c\")"),
            ("deleted", "is.false"),
            ("order", "source.desc.nullslast,id"),
            ("limit", "5"),
            ("offset", "10"),
        ]))
        .map_err(|_| "did not parse")?;
        let want = ReadQuery {
            select: vec![("id".into(), "id".into()), ("name".into(), "source".into())],
            filters: vec![
                Filter {
                    column: "source".into(),
                    negated: true,
                    op: Op::Like("LIKE", "notes/%".into()),
                },
                Filter {
                    column: "id".into(),
                    negated: false,
                    op: Op::In(vec!["a".into(), "b,c".into()]),
                },
                Filter {
                    column: "deleted".into(),
                    negated: false,
                    op: Op::Is("IS FALSE"),
                },
            ],
            order: vec![
                ("source".into(), true, Some(false)),
                ("id".into(), false, None),
            ],
            limit: Some(5),
            offset: Some(10),
        };
        if q != want {
            return Err(format!("{q:?}"));
        }
        for bad in [
            ("id", "eq"),
            ("id", "between.1"),
            ("deleted", "is.maybe"),
            ("limit", "-1"),
            ("select", "id,documents(id)"),
            ("or", "(a.eq.1,b.eq.2)"),
        ] {
            if ReadQuery::parse(&params(&[bad])).is_ok() {
                return Err(format!("{bad:?} parsed"));
            }
        }
        Ok(())
    }
}
