//! Text extraction: plain text, Markdown, HTML, PDF and JSONL records.
//!
//! Every rejection names what is wrong (binary, invalid UTF-8 and where, no PDF text layer ...);
//! a JSONL file yields its good records plus a list of bad lines with their line numbers.

use std::path::Path;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::error::{Error, InputProblem, Result};

/// The formats Outpost reads, chosen by file extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Plain UTF-8 text (also the fallback for unknown extensions).
    Text,
    /// Markdown; chunked along its structure.
    Markdown,
    /// HTML; scripts, styles and tags dropped.
    Html,
    /// PDF with a text layer.
    Pdf,
    /// One JSON record per line: `id`, `title`, `text`, `metadata`.
    Jsonl,
}

impl Format {
    /// The format for a path, by its extension.
    pub fn of(path: &Path) -> Self {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .unwrap_or_default();
        match ext.as_str() {
            "md" | "markdown" | "mdx" => Self::Markdown,
            "html" | "htm" | "xhtml" => Self::Html,
            "pdf" => Self::Pdf,
            "jsonl" | "ndjson" => Self::Jsonl,
            _ => Self::Text,
        }
    }

    /// Short lowercase name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Markdown => "markdown",
            Self::Html => "html",
            Self::Pdf => "pdf",
            Self::Jsonl => "jsonl",
        }
    }
}

/// One document's worth of extracted text.
#[derive(Debug, Clone, PartialEq)]
pub struct Extracted {
    /// The record id inside the file (JSONL); `None` for whole-file documents.
    pub key: Option<String>,
    /// Title: the HTML `<title>`, the first Markdown heading, the record title, or the file name.
    pub title: String,
    /// The text to chunk and index.
    pub text: String,
    /// Metadata from the source (JSONL `metadata`), plus `format`.
    pub metadata: Map<String, Value>,
    /// Source format.
    pub format: Format,
    /// The bytes this document came from (the file, or its JSONL line), for the content hash.
    pub raw: Vec<u8>,
}

/// A JSONL line that was skipped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BadRecord {
    /// 1-based line number.
    pub line: usize,
    /// Why it was skipped.
    pub reason: String,
}

/// Extracts the documents in `bytes`, read from `path`.
///
/// # Errors
/// [`Error::Input`] naming `path` for empty, binary, non-UTF-8, text-less PDF or unreadable
/// input; for JSONL only if no line is a valid record (bad lines otherwise come back as
/// [`BadRecord`]s).
pub fn extract(path: &Path, bytes: &[u8]) -> Result<(Vec<Extracted>, Vec<BadRecord>)> {
    let format = Format::of(path);
    let fail = |problem| Error::input(path, problem);
    if bytes.is_empty() {
        return Err(fail(InputProblem::Empty));
    }
    let stem = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("untitled")
        .to_string();
    if format == Format::Pdf {
        let text = pdf_text(bytes).map_err(fail)?;
        return Ok((vec![whole(format, stem, text, bytes)], Vec::new()));
    }
    let text = utf8_text(bytes).map_err(fail)?;
    let doc = match format {
        Format::Jsonl => return jsonl(path, text, format),
        Format::Html => {
            let title = html_title(text).unwrap_or(stem);
            let body = html_text(text).map_err(|e| fail(InputProblem::Html(e)))?;
            whole(format, title, body, bytes)
        }
        Format::Markdown => {
            let title = markdown_title(text).unwrap_or(stem);
            whole(format, title, text.to_string(), bytes)
        }
        Format::Text | Format::Pdf => whole(format, stem, text.to_string(), bytes),
    };
    if doc.text.trim().is_empty() {
        return Err(fail(InputProblem::Empty));
    }
    Ok((vec![doc], Vec::new()))
}

fn whole(format: Format, title: String, text: String, raw: &[u8]) -> Extracted {
    let mut metadata = Map::new();
    metadata.insert("format".into(), Value::from(format.name()));
    Extracted {
        key: None,
        title: title.trim().to_string(),
        text,
        metadata,
        format,
        raw: raw.to_vec(),
    }
}

/// Checks for binary content and decodes UTF-8 (dropping a byte-order mark).
fn utf8_text(bytes: &[u8]) -> Result<&str, InputProblem> {
    // Like git: a NUL in the first 8 KiB means binary.
    if let Some(offset) = bytes.iter().take(8192).position(|&b| b == 0) {
        return Err(InputProblem::Binary { offset });
    }
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let text = std::str::from_utf8(bytes).map_err(|e| InputProblem::InvalidUtf8 {
        offset: e.valid_up_to(),
    })?;
    if text.contains('\0') {
        let offset = text.find('\0').unwrap_or(0);
        return Err(InputProblem::Binary { offset });
    }
    if text.trim().is_empty() {
        return Err(InputProblem::Empty);
    }
    Ok(text)
}

#[cfg(not(feature = "pdf"))]
fn pdf_text(_: &[u8]) -> Result<String, InputProblem> {
    Err(InputProblem::Pdf(
        "this build of Outpost has no PDF support (cargo feature `pdf`)".into(),
    ))
}

#[cfg(feature = "pdf")]
fn pdf_text(bytes: &[u8]) -> Result<String, InputProblem> {
    if !bytes.starts_with(b"%PDF") {
        return Err(InputProblem::Pdf("no %PDF header".into()));
    }
    // pdf-extract panics on some malformed files; a bad PDF must be an error, not a crash.
    let result = std::panic::catch_unwind(|| pdf_extract::extract_text_from_mem(bytes));
    let text = match result {
        Ok(Ok(text)) => text,
        Ok(Err(e)) => return Err(InputProblem::Pdf(e.to_string())),
        Err(_) => {
            return Err(InputProblem::Pdf(
                "the PDF parser failed on this file".into(),
            ))
        }
    };
    if text.trim().is_empty() {
        return Err(InputProblem::NoTextLayer);
    }
    Ok(text)
}

/// Page text without markup, link footnotes or the page chrome (navigation, footers, forms)
/// that would otherwise be indexed with every page of a site.
#[cfg(feature = "html")]
fn html_text(html: &str) -> Result<String, String> {
    html2text::config::plain_no_decorate()
        .add_css("nav, footer, aside, form, noscript, template { display: none; }")
        .and_then(|c| c.string_from_read(html.as_bytes(), 100_000))
        .map_err(|e| e.to_string())
}

#[cfg(not(feature = "html"))]
fn html_text(_: &str) -> Result<String, String> {
    Err("this build of Outpost has no HTML support (cargo feature `html`)".into())
}

#[cfg(not(feature = "html"))]
fn html_title(_: &str) -> Option<String> {
    None
}

#[cfg(feature = "html")]
fn html_title(html: &str) -> Option<String> {
    let lower = html.to_ascii_lowercase();
    let start = lower.find("<title")?;
    let open_end = start + lower[start..].find('>')? + 1;
    let close = open_end + lower[open_end..].find("</title")?;
    let title = html2text::config::plain()
        .string_from_read(&html.as_bytes()[open_end..close], 10_000)
        .ok()?;
    let title = title.split_whitespace().collect::<Vec<_>>().join(" ");
    (!title.is_empty()).then_some(title)
}

fn markdown_title(md: &str) -> Option<String> {
    md.lines()
        .map(str::trim)
        .find_map(|l| l.strip_prefix("# "))
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
}

fn jsonl(path: &Path, text: &str, format: Format) -> Result<(Vec<Extracted>, Vec<BadRecord>)> {
    let mut docs = Vec::new();
    let mut bad = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        match record(line, line_no) {
            Ok(doc) => {
                let key = doc.key.clone().unwrap_or_default();
                if seen.insert(key.clone()) {
                    docs.push(Extracted { format, ..doc });
                } else {
                    bad.push(BadRecord {
                        line: line_no,
                        reason: format!("duplicate id '{key}' (an earlier line has it)"),
                    });
                }
            }
            Err(reason) => bad.push(BadRecord {
                line: line_no,
                reason,
            }),
        }
    }
    if docs.is_empty() {
        let first = bad
            .first()
            .map(|b| format!("line {}: {}", b.line, b.reason))
            .unwrap_or_else(|| "no lines".into());
        return Err(Error::input(path, InputProblem::NoRecords(first)));
    }
    Ok((docs, bad))
}

fn record(line: &str, line_no: usize) -> Result<Extracted, String> {
    let value: Value = serde_json::from_str(line).map_err(|e| format!("invalid JSON: {e}"))?;
    let Value::Object(obj) = value else {
        return Err("not a JSON object".into());
    };
    let text = match obj.get("text") {
        Some(Value::String(t)) if !t.trim().is_empty() => t.clone(),
        Some(Value::String(_)) => return Err("'text' is empty".into()),
        Some(_) => return Err("'text' is not a string".into()),
        None => return Err("no 'text' field".into()),
    };
    let key = match obj.get("id") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        None | Some(Value::Null) => format!("line-{line_no}"),
        Some(_) => return Err("'id' is not a string or number".into()),
    };
    let title = match obj.get("title") {
        Some(Value::String(s)) => s.clone(),
        None | Some(Value::Null) => key.clone(),
        Some(_) => return Err("'title' is not a string".into()),
    };
    let mut metadata = match obj.get("metadata") {
        Some(Value::Object(m)) => m.clone(),
        None | Some(Value::Null) => Map::new(),
        Some(_) => return Err("'metadata' is not an object".into()),
    };
    metadata
        .entry("format")
        .or_insert_with(|| Value::from(Format::Jsonl.name()));
    Ok(Extracted {
        key: Some(key),
        title,
        text,
        metadata,
        format: Format::Jsonl,
        raw: line.as_bytes().to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(path: &str, bytes: &[u8]) -> String {
        match extract(Path::new(path), bytes) {
            Err(e) => e.to_string(),
            Ok(_) => "accepted".into(),
        }
    }

    #[test]
    fn rejects_what_is_not_text() {
        assert!(problem("a.txt", b"").contains("empty file"));
        assert!(problem("a.md", b"  \n\t\n").contains("empty file"));
        assert!(problem("a.txt", b"ab\0cd").contains("NUL byte at offset 2"));
        assert!(problem("a.txt", b"caf\xe9").contains("invalid UTF-8 at byte 3"));
        assert!(problem("a.pdf", b"hello").contains("no %PDF header"));
    }

    #[test]
    fn titles_come_from_the_document() -> Result<()> {
        let (docs, _) = extract(Path::new("x/notes.md"), b"intro\n# Bees\nbody")?;
        assert_eq!(docs[0].title, "Bees");
        let html = b"<html><head><title>Hi  there</title><style>p{}</style></head><body><p>Body text</p><script>var x=1;</script></body></html>";
        let (docs, _) = extract(Path::new("p.html"), html)?;
        assert_eq!(docs[0].title, "Hi there");
        assert!(docs[0].text.contains("Body text"));
        assert!(!docs[0].text.contains("var x"));
        Ok(())
    }

    #[test]
    fn jsonl_reports_bad_lines_and_keeps_good_ones() -> Result<()> {
        let input = b"{\"id\":\"a\",\"text\":\"one\"}\n{\"id\":\"b\",\"text\":\n\n{\"id\":3,\"title\":\"T\",\"text\":\"three\",\"metadata\":{\"year\":2024}}\n";
        let (docs, bad) = extract(Path::new("r.jsonl"), input)?;
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[1].key.as_deref(), Some("3"));
        assert_eq!(docs[1].metadata["year"], 2024);
        assert_eq!(bad.len(), 1);
        assert_eq!(bad[0].line, 2);
        Ok(())
    }
}
