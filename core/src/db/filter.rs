//! Filters as SQL: a resolved condition over a document row (`documents d`) compiled to a
//! `WHERE` fragment with bound parameters, and the queries that read which chunks it keeps.
//!
//! `search` parses and checks filters (names, keys, types) and lowers them to [`DocFilter`];
//! this module is the only place that writes their SQL. Placeholders are numbered from the
//! length of the parameter vector as each value is bound, so fragments combine without
//! renumbering, and a value used twice in a condition is bound once.

use rusqlite::types::Value as SqlValue;

use super::Store;
use crate::error::Result;
use crate::model::Collection;

/// The statements that embed a filter bind `?1` and `?2` themselves (the query vector or text,
/// and `k`); a filter's own placeholders start after them.
pub(crate) const FIRST_PARAM: usize = 3;

/// A comparison, as SQL applies it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cmp {
    Eq,
    Lt,
    Le,
    Gt,
    Ge,
}

impl Cmp {
    fn sql(self) -> &'static str {
        match self {
            Self::Eq => "=",
            Self::Lt => "<",
            Self::Le => "<=",
            Self::Gt => ">",
            Self::Ge => ">=",
        }
    }
}

/// The right-hand side of a metadata comparison.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum MetaValue {
    /// A finite number; `=` also matches a JSON string spelled as `text`.
    Number { value: f64, text: String },
    /// A JSON boolean (1 or 0 to SQLite).
    Bool(bool),
    /// Text, compared as text.
    Text(String),
}

/// A condition on a document row, with names already resolved (collection ids, metadata keys
/// known to exist).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum DocFilter {
    /// The document is in one of these collections.
    CollectionIn(Vec<i64>),
    /// The document's source starts with this text.
    SourcePrefix(String),
    /// A metadata key compared with a value.
    Meta {
        key: String,
        cmp: Cmp,
        value: MetaValue,
    },
    /// All hold (true when empty).
    And(Vec<DocFilter>),
    /// One holds (false when empty).
    Or(Vec<DocFilter>),
    /// It does not hold.
    Not(Box<DocFilter>),
}

/// Conditions compiled to SQL: `sql` is empty (no condition) or ` AND c1 AND c2 ...` over
/// `documents d`, to append to a `WHERE`; its placeholders are `?3` onwards, bound to `params`
/// in order.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct SqlFilter {
    pub(crate) sql: String,
    pub(crate) params: Vec<SqlValue>,
}

impl SqlFilter {
    /// Compiles conditions that must all hold.
    pub(crate) fn all(conditions: &[DocFilter]) -> Self {
        let mut out = Self::default();
        for c in conditions {
            let sql = out.condition(c);
            out.sql.push_str(" AND ");
            out.sql.push_str(&sql);
        }
        out
    }

    /// Binds `value` and returns its placeholder.
    fn bind(&mut self, value: SqlValue) -> String {
        self.params.push(value);
        format!("?{}", FIRST_PARAM - 1 + self.params.len())
    }

    /// One condition as a self-contained SQL expression that is true or, where the document
    /// lacks what it compares, false or NULL; [`DocFilter::Not`] counts NULL as false.
    fn condition(&mut self, c: &DocFilter) -> String {
        match c {
            DocFilter::CollectionIn(ids) => {
                // Ids come from the database, never from the caller: inlined, as the planner
                // can then use the collection index.
                let ids: Vec<String> = ids.iter().map(i64::to_string).collect();
                format!("d.collection_id IN ({})", ids.join(","))
            }
            DocFilter::SourcePrefix(prefix) => {
                let p = self.bind(SqlValue::Text(prefix.clone()));
                format!("substr(d.source, 1, length({p})) = {p}")
            }
            DocFilter::Meta { key, cmp, value } => {
                let path = self.bind(SqlValue::Text(format!(
                    "$.\"{}\"",
                    key.replace('"', "\\\"")
                )));
                let op = cmp.sql();
                match value {
                    // A number matches numeric JSON values, and for '=' the same text as well.
                    MetaValue::Number { value, text } if *cmp == Cmp::Eq => {
                        let n = self.bind(SqlValue::Real(*value));
                        let t = self.bind(SqlValue::Text(text.clone()));
                        format!(
                            "(json_extract(d.metadata, {path}) = {n} \
                             OR CAST(json_extract(d.metadata, {path}) AS TEXT) = {t})"
                        )
                    }
                    // Ordered against a number, only numbers count: text would sort after it.
                    MetaValue::Number { value, .. } => {
                        let n = self.bind(SqlValue::Real(*value));
                        format!(
                            "(json_type(d.metadata, {path}) IN ('integer', 'real') \
                             AND json_extract(d.metadata, {path}) {op} {n})"
                        )
                    }
                    MetaValue::Bool(b) => {
                        let v = self.bind(SqlValue::Integer(i64::from(*b)));
                        format!("json_extract(d.metadata, {path}) {op} {v}")
                    }
                    // Text equals only text. Ordered against text, only text counts: SQLite
                    // sorts every number before every text, so `n<zzz` would match every
                    // numeric `n`.
                    MetaValue::Text(s) if *cmp == Cmp::Eq => {
                        let v = self.bind(SqlValue::Text(s.clone()));
                        format!("json_extract(d.metadata, {path}) {op} {v}")
                    }
                    MetaValue::Text(s) => {
                        let v = self.bind(SqlValue::Text(s.clone()));
                        format!(
                            "(json_type(d.metadata, {path}) = 'text' \
                             AND json_extract(d.metadata, {path}) {op} {v})"
                        )
                    }
                }
            }
            DocFilter::And(all) => self.join(all, " AND ", "1"),
            DocFilter::Or(any) => self.join(any, " OR ", "0"),
            // A comparison with a missing key is NULL, and NOT NULL is NULL: without the
            // coalesce, "not topic=bees" would leave out the documents without a topic.
            DocFilter::Not(inner) => format!("NOT coalesce({}, 0)", self.condition(inner)),
        }
    }

    fn join(&mut self, parts: &[DocFilter], op: &str, empty: &str) -> String {
        if parts.is_empty() {
            return empty.to_string();
        }
        let parts: Vec<String> = parts.iter().map(|p| self.condition(p)).collect();
        format!("({})", parts.join(op))
    }
}

/// The seqs of the live chunks (of collection `collection`, or of all) that `filter_sql` keeps,
/// as SQL: for a `rowid IN (...)` constraint or to read them.
pub(crate) fn kept_chunks_sql(collection: Option<i64>, filter_sql: &str) -> String {
    let only = collection.map_or(String::new(), |c| format!(" AND d.collection_id = {c}"));
    format!(
        "SELECT k.seq FROM chunks k JOIN documents d ON d.id = k.document_id
         WHERE d.deleted = 0{only}{filter_sql}"
    )
}

impl Store {
    /// The seqs of live chunks (of collection `collection`, or of all) that `filter_sql` keeps
    /// (the `sql` of a [`SqlFilter`], bound to its `params`), ascending.
    pub(crate) fn filtered_chunks(
        &self,
        collection: Option<i64>,
        filter_sql: &str,
        params: &[SqlValue],
    ) -> Result<Vec<i64>> {
        let mut stmt = self
            .conn
            .prepare_cached(&kept_chunks_sql(collection, filter_sql))?;
        // This statement has no ?1 and ?2 of its own, but the filter's placeholders start after
        // them, so they are bound to NULL. A filter without placeholders binds nothing.
        let unused = if params.is_empty() {
            0
        } else {
            FIRST_PARAM - 1
        };
        let bound = std::iter::repeat_n(SqlValue::Null, unused).chain(params.iter().cloned());
        let mut seqs: Vec<i64> = stmt
            .query_map(rusqlite::params_from_iter(bound), |r| r.get(0))?
            .collect::<std::result::Result<_, _>>()?;
        seqs.sort_unstable();
        Ok(seqs)
    }

    /// Metadata keys present in any of `collections`, sorted.
    pub(crate) fn metadata_keys(&self, collections: &[Collection]) -> Result<Vec<String>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT key FROM metadata_keys WHERE collection_id = ?1")?;
        let mut keys = Vec::new();
        for c in collections {
            for k in stmt.query_map([c.id], |r| r.get::<_, String>(0))? {
                keys.push(k?);
            }
        }
        keys.sort();
        keys.dedup();
        Ok(keys)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_follow_the_parameters_and_repeat_a_reused_value() {
        let f = SqlFilter::all(&[
            DocFilter::CollectionIn(vec![1, 2]),
            DocFilter::SourcePrefix("/a/".into()),
            DocFilter::Not(Box::new(DocFilter::Or(vec![
                DocFilter::Meta {
                    key: "year".into(),
                    cmp: Cmp::Ge,
                    value: MetaValue::Number {
                        value: 2020.0,
                        text: "2020".into(),
                    },
                },
                DocFilter::And(vec![]),
            ]))),
        ]);
        assert_eq!(
            f.sql,
            " AND d.collection_id IN (1,2) AND substr(d.source, 1, length(?3)) = ?3 \
             AND NOT coalesce(((json_type(d.metadata, ?4) IN ('integer', 'real') \
             AND json_extract(d.metadata, ?4) >= ?5) OR 1), 0)"
        );
        assert_eq!(
            f.params,
            [
                SqlValue::Text("/a/".into()),
                SqlValue::Text("$.\"year\"".into()),
                SqlValue::Real(2020.0)
            ]
        );
        assert_eq!(SqlFilter::all(&[]), SqlFilter::default());
    }
}
