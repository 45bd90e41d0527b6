//! Search filters: the string syntax (`topic=bees`, `year>=2023`, `source=PREFIX`,
//! `collection=NAME`) parsed into [`Filter`], and the typed expression a search applies,
//! [`FilterExpr`]: conditions on a field (a built-in or a metadata key) with a typed value,
//! combined with and / or / not.
//!
//! A search checks an expression against the store (collection names, metadata keys) and
//! lowers it to `db::filter::DocFilter`, which `db` compiles to SQL.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

use crate::db::filter::{Cmp, DocFilter, MetaValue, SqlFilter};
use crate::db::Store;
use crate::error::{Error, Result};
use crate::model::Collection;

/// A comparison in a filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum FilterOp {
    /// `=` (for `source`: prefix match).
    Eq,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
}

impl fmt::Display for FilterOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Eq => "=",
            Self::Lt => "<",
            Self::Le => "<=",
            Self::Gt => ">",
            Self::Ge => ">=",
        })
    }
}

/// One filter as written: `collection=NAME`, `source=PREFIX`, or a document metadata key
/// compared with a value (`year>=2020`, `topic=bees`). Numbers compare as numbers, anything else
/// as text. A search reads it as a [`Condition`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Filter {
    /// `collection`, `source`, or a metadata key (`meta.KEY` reaches a metadata key that shadows
    /// a built-in name).
    pub key: String,
    /// Comparison.
    pub op: FilterOp,
    /// Right-hand side, as typed.
    pub value: String,
}

impl FromStr for Filter {
    type Err = Error;
    /// Parses `KEY=VALUE`, `KEY>=VALUE`, `KEY<=VALUE`, `KEY>VALUE` or `KEY<VALUE`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] (`filter`), naming the filter: no operator, no key, or an
    /// operator other than `=` on `collection` or `source`.
    fn from_str(s: &str) -> Result<Self> {
        let pos = s.find(['=', '<', '>']).ok_or_else(|| {
            Error::invalid(
                "filter",
                format!("'{s}' is not KEY=VALUE (or KEY>=VALUE, KEY<VALUE ...)"),
            )
        })?;
        let key = s[..pos].trim();
        let rest = &s[pos..];
        let (op, value) = if let Some(v) = rest.strip_prefix(">=") {
            (FilterOp::Ge, v)
        } else if let Some(v) = rest.strip_prefix("<=") {
            (FilterOp::Le, v)
        } else if let Some(v) = rest.strip_prefix('>') {
            (FilterOp::Gt, v)
        } else if let Some(v) = rest.strip_prefix('<') {
            (FilterOp::Lt, v)
        } else {
            (FilterOp::Eq, &rest[1..])
        };
        if key.is_empty() {
            return Err(Error::invalid("filter", format!("'{s}' has no key")));
        }
        let filter = Filter {
            key: key.to_string(),
            op,
            value: value.trim().to_string(),
        };
        // Refused here rather than at the search, with the filter as written.
        Condition::try_from(&filter)?;
        Ok(filter)
    }
}

/// What a condition looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field {
    /// The collection's name (`collection`): only `=`.
    Collection,
    /// The document's source (`source`): only `=`, which matches a prefix.
    Source,
    /// A key of the document's metadata (written `meta.KEY` where KEY is a built-in name).
    Meta(String),
}

impl Field {
    /// A metadata key.
    pub fn meta(key: impl Into<String>) -> Self {
        Self::Meta(key.into())
    }

    /// The field a filter's key names: a built-in name, else a metadata key with any `meta.`
    /// prefix taken off.
    fn from_key(key: &str) -> Self {
        match key {
            "collection" => Self::Collection,
            "source" => Self::Source,
            k => Self::Meta(k.strip_prefix("meta.").unwrap_or(k).to_string()),
        }
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Collection => f.write_str("collection"),
            Self::Source => f.write_str("source"),
            // Spelled so that it reads back as the same key.
            Self::Meta(k)
                if k.is_empty() || BUILTIN_KEYS.contains(&k.as_str()) || k.starts_with("meta.") =>
            {
                write!(f, "meta.{k}")
            }
            Self::Meta(k) => f.write_str(k),
        }
    }
}

/// The built-in filter keys, as the unknown-key error lists them.
const BUILTIN_KEYS: &[&str] = &["collection", "source"];

/// The right-hand side of a condition.
#[derive(Debug, Clone, PartialEq)]
pub enum FilterValue {
    /// Text: `=` matches it exactly, `<` / `>` compare in text order (so ISO dates work).
    Text(String),
    /// A finite number: compares with numeric metadata values; `=` also matches a text value
    /// spelled as `text`.
    Number {
        /// The number.
        value: f64,
        /// How it was written.
        text: String,
    },
    /// `true` or `false`: matches JSON booleans.
    Bool(bool),
}

impl FilterValue {
    /// A value as the string syntax types it: a finite number, then `true` / `false`, else
    /// text.
    pub fn infer(text: &str) -> Self {
        match text.parse::<f64>() {
            Ok(value) if value.is_finite() => Self::Number {
                value,
                text: text.to_string(),
            },
            _ => match text {
                "true" => Self::Bool(true),
                "false" => Self::Bool(false),
                t => Self::Text(t.to_string()),
            },
        }
    }

    /// The value as written.
    pub fn text(&self) -> &str {
        match self {
            Self::Text(t) | Self::Number { text: t, .. } => t,
            Self::Bool(true) => "true",
            Self::Bool(false) => "false",
        }
    }
}

impl fmt::Display for FilterValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.text())
    }
}

impl From<&str> for FilterValue {
    fn from(t: &str) -> Self {
        Self::Text(t.to_string())
    }
}

impl From<String> for FilterValue {
    fn from(t: String) -> Self {
        Self::Text(t)
    }
}

impl From<f64> for FilterValue {
    /// A number; [`Condition::new`] refuses one that is not finite.
    fn from(value: f64) -> Self {
        Self::Number {
            value,
            text: value.to_string(),
        }
    }
}

impl From<i64> for FilterValue {
    fn from(n: i64) -> Self {
        Self::Number {
            value: n as f64,
            text: n.to_string(),
        }
    }
}

impl From<i32> for FilterValue {
    fn from(n: i32) -> Self {
        Self::from(i64::from(n))
    }
}

impl From<bool> for FilterValue {
    fn from(b: bool) -> Self {
        Self::Bool(b)
    }
}

/// A checked comparison of a field with a value: the leaf of a [`FilterExpr`].
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    field: Field,
    op: FilterOp,
    value: FilterValue,
}

impl Condition {
    /// `field op value`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] (`filter`), naming the condition: an operator other than
    /// `=` on `collection` or `source`, or a number that is not finite.
    pub fn new(field: Field, op: FilterOp, value: impl Into<FilterValue>) -> Result<Self> {
        let value = value.into();
        let written = format!("{field}{op}{value}");
        Self::checked(field, op, value, &written)
    }

    /// The condition if it is one a search can apply; errors name it as `written`.
    fn checked(field: Field, op: FilterOp, value: FilterValue, written: &str) -> Result<Self> {
        let why = match (&field, &value) {
            (Field::Collection, _) if op != FilterOp::Eq => "collection takes only '='".to_string(),
            (Field::Source, _) if op != FilterOp::Eq => {
                "source takes only '=' (a prefix)".to_string()
            }
            (_, FilterValue::Number { value: n, text }) if !n.is_finite() => {
                format!("'{text}' is not a number")
            }
            _ => return Ok(Self { field, op, value }),
        };
        Err(Error::invalid("filter", format!("'{written}': {why}")))
    }

    /// `meta.KEY op value`.
    ///
    /// # Errors
    /// As [`Condition::new`].
    pub fn meta(
        key: impl Into<String>,
        op: FilterOp,
        value: impl Into<FilterValue>,
    ) -> Result<Self> {
        Self::new(Field::Meta(key.into()), op, value)
    }

    /// `source=PREFIX`: the document's source starts with `prefix`.
    pub fn source_prefix(prefix: impl Into<String>) -> Self {
        Self {
            field: Field::Source,
            op: FilterOp::Eq,
            value: FilterValue::Text(prefix.into()),
        }
    }

    /// `collection=NAME`.
    pub fn collection(name: impl Into<String>) -> Self {
        Self {
            field: Field::Collection,
            op: FilterOp::Eq,
            value: FilterValue::Text(name.into()),
        }
    }

    /// The field compared.
    pub fn field(&self) -> &Field {
        &self.field
    }

    /// The comparison.
    pub fn op(&self) -> FilterOp {
        self.op
    }

    /// The value compared with.
    pub fn value(&self) -> &FilterValue {
        &self.value
    }
}

impl TryFrom<&Filter> for Condition {
    type Error = Error;
    /// Types a filter as written: `collection` and `source` take their value as text, a
    /// metadata key as [`FilterValue::infer`] reads it.
    fn try_from(f: &Filter) -> Result<Self> {
        let field = Field::from_key(&f.key);
        let value = match field {
            Field::Meta(_) => FilterValue::infer(&f.value),
            _ => FilterValue::Text(f.value.clone()),
        };
        Self::checked(field, f.op, value, &format!("{}{}{}", f.key, f.op, f.value))
    }
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}{}", self.field, self.op, self.value)
    }
}

/// A filter expression: conditions combined with and / or / not. The string syntax gives a
/// condition per filter and a list of filters means [`FilterExpr::And`]; Rust callers build the
/// rest with [`FilterExpr::all`], [`FilterExpr::any`], [`FilterExpr::and`], [`FilterExpr::or`]
/// and `!`.
///
/// A condition holds only for documents that have what it compares (`year>=2020` leaves out
/// documents without a numeric `year`), and `Not` keeps exactly the documents its operand
/// leaves out. A `collection=` condition that must hold for the whole expression chooses the
/// collections searched (and the metadata keys known); elsewhere it is one more condition.
#[derive(Debug, Clone, PartialEq)]
pub enum FilterExpr {
    /// One condition.
    Cond(Condition),
    /// All hold (true when empty).
    And(Vec<FilterExpr>),
    /// At least one holds (false when empty).
    Or(Vec<FilterExpr>),
    /// It does not hold.
    Not(Box<FilterExpr>),
}

impl FilterExpr {
    /// All of `exprs`.
    pub fn all(exprs: impl IntoIterator<Item = FilterExpr>) -> Self {
        Self::And(exprs.into_iter().collect())
    }

    /// Any of `exprs`.
    pub fn any(exprs: impl IntoIterator<Item = FilterExpr>) -> Self {
        Self::Or(exprs.into_iter().collect())
    }

    /// This and `other`.
    pub fn and(self, other: impl Into<FilterExpr>) -> Self {
        match self {
            Self::And(mut all) => {
                all.push(other.into());
                Self::And(all)
            }
            e => Self::And(vec![e, other.into()]),
        }
    }

    /// This or `other`.
    pub fn or(self, other: impl Into<FilterExpr>) -> Self {
        match self {
            Self::Or(mut any) => {
                any.push(other.into());
                Self::Or(any)
            }
            e => Self::Or(vec![e, other.into()]),
        }
    }

    /// Filters as written, all of which must hold (what a search's `filters` mean).
    ///
    /// # Errors
    /// As [`Condition::try_from`].
    pub fn from_filters(filters: &[Filter]) -> Result<Self> {
        filters
            .iter()
            .map(|f| Condition::try_from(f).map(Self::Cond))
            .collect::<Result<_>>()
            .map(Self::And)
    }

    /// The parts that must all hold: nested `And`s flattened.
    fn conjuncts<'a>(&'a self, out: &mut Vec<&'a FilterExpr>) {
        match self {
            Self::And(all) => all.iter().for_each(|e| e.conjuncts(out)),
            e => out.push(e),
        }
    }
}

impl From<Condition> for FilterExpr {
    fn from(c: Condition) -> Self {
        Self::Cond(c)
    }
}

impl std::ops::Not for FilterExpr {
    type Output = FilterExpr;
    fn not(self) -> FilterExpr {
        Self::Not(Box::new(self))
    }
}

impl FromStr for FilterExpr {
    type Err = Error;
    /// One condition in the string syntax of [`Filter`].
    fn from_str(s: &str) -> Result<Self> {
        Ok(Self::Cond(Condition::try_from(&s.parse::<Filter>()?)?))
    }
}

impl fmt::Display for FilterExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let join = |f: &mut fmt::Formatter<'_>, parts: &[FilterExpr], op: &str| {
            f.write_str("(")?;
            for (i, p) in parts.iter().enumerate() {
                if i > 0 {
                    f.write_str(op)?;
                }
                write!(f, "{p}")?;
            }
            f.write_str(")")
        };
        match self {
            Self::Cond(c) => write!(f, "{c}"),
            Self::And(all) => join(f, all, " and "),
            Self::Or(any) => join(f, any, " or "),
            Self::Not(e) => write!(f, "not {e}"),
        }
    }
}

/// A filter checked against a store and compiled.
pub(crate) struct CompiledFilter {
    /// The conditions over `documents d`.
    pub(crate) cond: SqlFilter,
    /// The collections that can hold a match.
    pub(crate) collections: Vec<Collection>,
    /// A `collection=` condition chose the collections.
    pub(crate) explicit: bool,
    /// Conditions beyond the choice of collections: a search of a chosen collection must
    /// still apply `cond`.
    pub(crate) narrows: bool,
}

impl Store {
    /// Checks `expr` against the store and compiles it: `collection=` conditions that the whole
    /// expression requires choose the collections; every other condition becomes SQL.
    ///
    /// # Errors
    /// [`Error::NotFound`] for a collection that does not exist; [`Error::UnknownFilterKey`]
    /// for a metadata key that no document of the chosen collections has.
    pub(crate) fn compile_filter(&self, expr: &FilterExpr) -> Result<CompiledFilter> {
        let mut conjuncts = Vec::new();
        expr.conjuncts(&mut conjuncts);
        let (chosen, rest): (Vec<&FilterExpr>, Vec<&FilterExpr>) = conjuncts
            .into_iter()
            .partition(|e| matches!(e, FilterExpr::Cond(c) if c.field == Field::Collection));
        let all = self.collections()?;
        let mut collections = all.clone();
        for e in &chosen {
            if let FilterExpr::Cond(c) = e {
                let name = c.value.text();
                collections.retain(|c| c.name == name);
                collection_id(&all, name)?;
            }
        }
        let mut conditions = Vec::new();
        let narrowed = collections.len() != all.len();
        if narrowed {
            conditions.push(DocFilter::CollectionIn(
                collections.iter().map(|c| c.id).collect(),
            ));
        }
        let lowering = Lowering {
            all: &all,
            known: self.metadata_keys(&collections)?,
        };
        for e in &rest {
            conditions.push(lowering.lower(e)?);
        }
        Ok(CompiledFilter {
            cond: SqlFilter::all(&conditions),
            explicit: narrowed || !chosen.is_empty(),
            narrows: !rest.is_empty(),
            collections,
        })
    }
}

/// The id of the collection called `name`.
fn collection_id(all: &[Collection], name: &str) -> Result<i64> {
    all.iter()
        .find(|c| c.name == name)
        .map(|c| c.id)
        .ok_or_else(|| Error::NotFound {
            what: "collection",
            id: name.to_string(),
        })
}

/// What lowering an expression checks names against.
struct Lowering<'a> {
    all: &'a [Collection],
    /// The metadata keys of the chosen collections.
    known: Vec<String>,
}

impl Lowering<'_> {
    fn lower(&self, e: &FilterExpr) -> Result<DocFilter> {
        let many = |es: &[FilterExpr]| es.iter().map(|e| self.lower(e)).collect::<Result<_>>();
        Ok(match e {
            FilterExpr::Cond(c) => self.condition(c)?,
            FilterExpr::And(all) => DocFilter::And(many(all)?),
            FilterExpr::Or(any) => DocFilter::Or(many(any)?),
            FilterExpr::Not(e) => DocFilter::Not(Box::new(self.lower(e)?)),
        })
    }

    fn condition(&self, c: &Condition) -> Result<DocFilter> {
        Ok(match &c.field {
            Field::Collection => {
                DocFilter::CollectionIn(vec![collection_id(self.all, c.value.text())?])
            }
            Field::Source => DocFilter::SourcePrefix(c.value.text().to_string()),
            Field::Meta(key) => {
                if !self.known.iter().any(|k| k == key) {
                    let mut names: Vec<&str> = BUILTIN_KEYS.to_vec();
                    names.extend(self.known.iter().map(String::as_str));
                    return Err(Error::UnknownFilterKey {
                        key: c.field.to_string(),
                        known: names.join(", "),
                    });
                }
                let cmp = match c.op {
                    FilterOp::Eq => Cmp::Eq,
                    FilterOp::Lt => Cmp::Lt,
                    FilterOp::Le => Cmp::Le,
                    FilterOp::Gt => Cmp::Gt,
                    FilterOp::Ge => Cmp::Ge,
                };
                let value = match &c.value {
                    FilterValue::Text(t) => MetaValue::Text(t.clone()),
                    FilterValue::Number { value, text } => MetaValue::Number {
                        value: *value,
                        text: text.clone(),
                    },
                    FilterValue::Bool(b) => MetaValue::Bool(*b),
                };
                DocFilter::Meta {
                    key: key.clone(),
                    cmp,
                    value,
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_parse() -> Result<()> {
        assert_eq!(
            "year>=2020".parse::<Filter>()?,
            Filter {
                key: "year".into(),
                op: FilterOp::Ge,
                value: "2020".into()
            }
        );
        assert_eq!("topic=bees".parse::<Filter>()?.op, FilterOp::Eq);
        assert_eq!("a<b".parse::<Filter>()?.op, FilterOp::Lt);
        assert_eq!("url=http://x?a=b".parse::<Filter>()?.value, "http://x?a=b");
        assert!("novalue".parse::<Filter>().is_err());
        assert!("=x".parse::<Filter>().is_err());
        Ok(())
    }

    #[test]
    fn values_are_typed_by_field() -> Result<()> {
        let cond = |s: &str| -> Result<Condition> { Condition::try_from(&s.parse::<Filter>()?) };
        assert_eq!(
            cond("year>=2020.0")?.value(),
            &FilterValue::Number {
                value: 2020.0,
                text: "2020.0".into()
            }
        );
        assert_eq!(cond("draft=true")?.value(), &FilterValue::Bool(true));
        assert_eq!(cond("n=inf")?.value(), &FilterValue::Text("inf".into()));
        // Built-ins take text, even where it looks like a number.
        assert_eq!(
            cond("source=2024")?.value(),
            &FilterValue::Text("2024".into())
        );
        assert_eq!(cond("meta.source=/x")?.field(), &Field::meta("source"));
        assert_eq!(cond("meta.source=/x")?.to_string(), "meta.source=/x");
        Ok(())
    }
}
