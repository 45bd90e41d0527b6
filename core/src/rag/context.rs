//! RAG context: the best passages for a query, rendered with numbered citations and kept within
//! a token budget as counted by the model's own tokenizer.
//!
//! Adjacent hit chunks of one document are merged into one passage along their byte spans (so
//! the overlap between them is not repeated), duplicate passages are dropped, and the rendered
//! block is re-counted as a whole so that it never exceeds the budget.

use std::collections::HashSet;

use serde::Serialize;
use tokenizers::Tokenizer;

use crate::embed::count_tokens;
use crate::rag::conversation::Message;
use crate::search::SearchHit;

/// A cited passage.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Citation {
    /// The number in the rendered text (`[n]`).
    pub n: usize,
    /// Document id.
    pub document_id: String,
    /// Document title.
    pub title: String,
    /// Document source.
    pub source: String,
    /// Chunks merged into this passage.
    pub chunk_ids: Vec<String>,
    /// Byte span of the passage in the document's extracted text.
    pub byte_start: usize,
    /// End of the span (exclusive).
    pub byte_end: usize,
    /// Whether the passage was cut short to fit the budget.
    pub truncated: bool,
    /// The passage as the context gives it (cut short where `truncated`).
    pub text: String,
}

/// A rendered context block.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Context {
    /// The text to hand to a language model.
    pub text: String,
    /// Its tokens, by the model's tokenizer.
    pub tokens: usize,
    /// The budget it was built for.
    pub budget: usize,
    /// Passages cited, in order.
    pub citations: Vec<Citation>,
    /// Recent conversation messages included (oldest first).
    pub recent_messages: Vec<Message>,
    /// Earlier messages recalled for their similarity to the query.
    pub recalled_messages: Vec<Message>,
}

/// A passage: consecutive hit chunks of one document.
#[derive(Debug, Clone)]
struct Passage {
    rank: usize,
    document_id: String,
    title: String,
    source: String,
    chunk_ids: Vec<String>,
    byte_start: usize,
    byte_end: usize,
    last_ordinal: usize,
    text: String,
}

/// Groups ranked hits into passages: chunks of one document with consecutive ordinals become one
/// passage whose text is the union of their spans. Passages come back in rank order.
fn passages(hits: &[SearchHit]) -> Vec<Passage> {
    let mut by_doc: Vec<(String, Vec<(usize, &SearchHit)>)> = Vec::new();
    for (rank, h) in hits.iter().enumerate() {
        match by_doc.iter_mut().find(|(d, _)| *d == h.document_id) {
            Some((_, v)) => v.push((rank, h)),
            None => by_doc.push((h.document_id.clone(), vec![(rank, h)])),
        }
    }
    let mut out = Vec::new();
    for (_, mut chunks) in by_doc {
        chunks.sort_by_key(|(_, h)| h.ordinal);
        let mut current: Option<Passage> = None;
        for (rank, h) in chunks {
            match current.as_mut() {
                Some(p) if h.ordinal == p.last_ordinal + 1 && h.byte_start <= p.byte_end + 1 => {
                    // Overlapping spans: append only the bytes past the passage's end.
                    let skip = p.byte_end.saturating_sub(h.byte_start);
                    let tail = h.text.get(skip.min(h.text.len())..).unwrap_or("");
                    if h.byte_start > p.byte_end {
                        p.text.push(' ');
                    }
                    p.text.push_str(tail);
                    p.byte_end = p.byte_end.max(h.byte_end);
                    p.last_ordinal = h.ordinal;
                    p.rank = p.rank.min(rank);
                    p.chunk_ids.push(h.chunk_id.clone());
                }
                _ => {
                    if let Some(p) = current.take() {
                        out.push(p);
                    }
                    current = Some(Passage {
                        rank,
                        document_id: h.document_id.clone(),
                        title: h.title.clone(),
                        source: h.source.clone(),
                        chunk_ids: vec![h.chunk_id.clone()],
                        byte_start: h.byte_start,
                        byte_end: h.byte_end,
                        last_ordinal: h.ordinal,
                        text: h.text.clone(),
                    });
                }
            }
        }
        out.extend(current);
    }
    out.sort_by_key(|p| p.rank);
    // Drop duplicates: the same text from another document (a copied file), or a passage
    // contained in a better-ranked one.
    let mut seen: HashSet<String> = HashSet::new();
    let mut kept: Vec<Passage> = Vec::new();
    for p in out {
        let norm = normalise(&p.text);
        if seen.contains(&norm) || kept.iter().any(|k| normalise(&k.text).contains(&norm)) {
            continue;
        }
        seen.insert(norm);
        kept.push(p);
    }
    kept
}

fn normalise(s: &str) -> String {
    s.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

/// The longest prefix of `text` with at most `max_tokens` tokens, cut at a token boundary.
fn truncate_to_tokens<'a>(tokenizer: &Tokenizer, text: &'a str, max_tokens: usize) -> &'a str {
    // `encode`, not `encode_fast`: only `encode` computes the offsets the cut needs.
    let Ok(enc) = tokenizer.encode(text, false) else {
        return "";
    };
    if enc.len() <= max_tokens {
        return text;
    }
    if max_tokens == 0 {
        return "";
    }
    let end = enc.get_offsets()[max_tokens - 1].1;
    text.get(..end).unwrap_or("")
}

/// Builds a context block from messages and ranked hits.
pub(crate) struct Builder<'t> {
    tokenizer: &'t Tokenizer,
    budget: usize,
    sections: Vec<String>,
}

impl<'t> Builder<'t> {
    pub(crate) fn new(tokenizer: &'t Tokenizer, budget: usize) -> Self {
        Self {
            tokenizer,
            budget,
            sections: Vec::new(),
        }
    }

    fn render_with(&self, extra: &str) -> String {
        let mut s = self.sections.concat();
        s.push_str(extra);
        s
    }

    fn tokens(&self, text: &str) -> usize {
        count_tokens(self.tokenizer, text)
    }

    /// Appends `block` if the whole text stays within `limit` tokens (at most the budget).
    fn try_push(&mut self, block: String, limit: usize) -> bool {
        if self.tokens(&self.render_with(&block)) <= limit.min(self.budget) {
            self.sections.push(block);
            true
        } else {
            false
        }
    }

    /// Adds messages (already in the order to show), under `heading`, while they fit in `limit`.
    pub(crate) fn messages(
        &mut self,
        heading: &str,
        msgs: &[Message],
        limit: usize,
    ) -> Vec<Message> {
        let mut taken = Vec::new();
        if msgs.is_empty() || !self.try_push(format!("{heading}\n"), limit) {
            return taken;
        }
        for m in msgs {
            if self.try_push(format!("{}: {}\n", m.role, m.content.trim()), limit) {
                taken.push(m.clone());
            }
        }
        if taken.is_empty() {
            self.sections.pop();
        } else {
            self.sections.push("\n".into());
        }
        taken
    }

    /// Adds cited passages from `hits` until the budget is spent.
    pub(crate) fn passages(&mut self, hits: &[SearchHit], with_heading: bool) -> Vec<Citation> {
        let mut citations = Vec::new();
        let heading_pushed = with_heading && self.try_push("Sources:\n".into(), self.budget);
        for p in passages(hits) {
            let n = citations.len() + 1;
            let header = format!("[{n}] {} — {}\n", p.title, p.source);
            let block = format!("{header}{}\n\n", p.text.trim());
            if self.try_push(block, self.budget) {
                citations.push(citation(n, &p, p.text.trim()));
                continue;
            }
            // Cut the passage to what is left; worth it only if a useful amount fits.
            let used = self.tokens(&self.render_with(&header));
            let left = self.budget.saturating_sub(used + 2);
            if left < 24 {
                continue;
            }
            let mut room = left;
            while room >= 24 {
                let cut = truncate_to_tokens(self.tokenizer, p.text.trim(), room);
                if cut.trim().is_empty() {
                    break;
                }
                if self.try_push(format!("{header}{cut} …\n\n"), self.budget) {
                    citations.push(citation(n, &p, cut));
                    break;
                }
                room -= (room / 8).max(1);
            }
        }
        if heading_pushed && citations.is_empty() {
            self.sections.retain(|s| s != "Sources:\n");
        }
        citations
    }

    pub(crate) fn finish(
        self,
        citations: Vec<Citation>,
        recent_messages: Vec<Message>,
        recalled_messages: Vec<Message>,
    ) -> Context {
        let text = self.sections.concat().trim_end().to_string();
        let tokens = count_tokens(self.tokenizer, &text);
        debug_assert!(tokens <= self.budget);
        Context {
            text,
            tokens,
            budget: self.budget,
            citations,
            recent_messages,
            recalled_messages,
        }
    }
}

fn citation(n: usize, p: &Passage, text: &str) -> Citation {
    let truncated = text.len() < p.text.trim().len();
    Citation {
        n,
        document_id: p.document_id.clone(),
        title: p.title.clone(),
        source: p.source.clone(),
        chunk_ids: p.chunk_ids.clone(),
        byte_start: p.byte_start,
        byte_end: p.byte_end,
        truncated,
        text: text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hit(doc: &str, ordinal: usize, start: usize, text: &str) -> SearchHit {
        SearchHit {
            chunk_id: format!("{doc}-{ordinal}"),
            document_id: doc.into(),
            title: doc.to_uppercase(),
            source: format!("/{doc}"),
            collection: "default".into(),
            text: text.into(),
            score: 0.0,
            ordinal,
            byte_start: start,
            byte_end: start + text.len(),
            token_count: 0,
        }
    }

    #[test]
    fn adjacent_chunks_merge_without_repeating_the_overlap() {
        // Document text "alpha beta gamma delta": chunk 0 = "alpha beta gamma", chunk 1 = "gamma delta".
        let hits = [
            hit("a", 1, 11, "gamma delta"),
            hit("b", 0, 0, "other"),
            hit("a", 0, 0, "alpha beta gamma"),
        ];
        let ps = passages(&hits);
        assert_eq!(ps.len(), 2);
        assert_eq!(ps[0].text, "alpha beta gamma delta");
        assert_eq!((ps[0].byte_start, ps[0].byte_end), (0, 22));
        assert_eq!(ps[1].document_id, "b");
    }

    #[test]
    fn duplicate_text_from_another_document_is_dropped() {
        let hits = [
            hit("a", 0, 0, "Same  words here"),
            hit("b", 0, 0, "same words here"),
            hit("c", 3, 9, "words"),
        ];
        let ps = passages(&hits);
        assert_eq!(ps.len(), 1);
    }
}
