//! Answers with citations: the messages a language model is given for a question (the numbered
//! sources of a [`Context`], the conversation so far, the question) and the citations read back
//! from its answer.
//!
//! The sources go into the question's own user message, not the system prompt, so that the
//! messages of one turn are a prefix of the next turn's (the model's KV cache is reused).

use std::collections::BTreeSet;

use crate::generate::ChatMessage;
use crate::rag::context::Context;

/// The system prompt of an answer with sources.
pub const SYSTEM_PROMPT: &str = "You answer questions using only the numbered sources you are \
given. After each fact, cite its source by number in square brackets, like [1]. If the sources \
do not contain the answer, say that you could not find it in the documents. Be brief.";

/// What an answer says when retrieval found nothing relevant (no model is run).
pub const NOTHING_FOUND: &str = "I could not find anything about this in your documents.";

/// The user message for `question` with the sources (and conversation memory) of `context`.
pub fn user_message(question: &str, context: &Context) -> String {
    let question = question.trim();
    if context.text.is_empty() {
        return question.to_owned();
    }
    format!("{}\n\nQuestion: {question}", context.text)
}

/// The messages for a question: the system prompt, earlier turns (`history`, oldest first), and
/// the question with its sources.
pub fn messages(question: &str, context: &Context, history: &[ChatMessage]) -> Vec<ChatMessage> {
    let mut out = Vec::with_capacity(history.len() + 2);
    out.push(ChatMessage::new("system", SYSTEM_PROMPT));
    out.extend(history.iter().cloned());
    out.push(ChatMessage::new("user", user_message(question, context)));
    out
}

/// The citation numbers an answer uses, in order of first use, among `1..=sources`: `[1]`,
/// `[2, 3]`, `[2][3]`, `[1-3]` and `[1–3]` are read; numbers outside the sources (a model
/// inventing `[7]` when it was given 3 sources) are left out and returned apart.
pub fn cited(answer: &str, sources: usize) -> (Vec<usize>, Vec<usize>) {
    let mut found: Vec<usize> = Vec::new();
    let mut invalid: BTreeSet<usize> = BTreeSet::new();
    let mut rest = answer;
    while let Some(open) = rest.find('[') {
        let after = &rest[open + 1..];
        let Some(close) = after.find(']') else { break };
        let inside = &after[..close];
        rest = &after[close + 1..];
        if inside.is_empty() || inside.len() > 40 {
            continue;
        }
        let mut numbers = Vec::new();
        let mut ok = true;
        for part in inside.split([',', ';']) {
            let part = part.trim();
            let part = part.strip_prefix("Source").unwrap_or(part).trim();
            if let Some((a, b)) = part.split_once(['-', '–']) {
                match (a.trim().parse::<usize>(), b.trim().parse::<usize>()) {
                    (Ok(a), Ok(b)) if a <= b && b - a < 20 => numbers.extend(a..=b),
                    _ => ok = false,
                }
            } else {
                match part.parse::<usize>() {
                    Ok(n) => numbers.push(n),
                    Err(_) => ok = false,
                }
            }
        }
        if !ok {
            continue;
        }
        for n in numbers {
            if (1..=sources).contains(&n) {
                if !found.contains(&n) {
                    found.push(n);
                }
            } else {
                invalid.insert(n);
            }
        }
    }
    (found, invalid.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn citations_are_read_in_every_common_form() {
        let (found, invalid) = cited("Bees dance [2]. They sting [1, 3] [3][4-5] and [9].", 4);
        assert_eq!(found, vec![2, 1, 3, 4]);
        assert_eq!(invalid, vec![5, 9]);
    }

    #[test]
    fn brackets_that_are_not_citations_are_ignored() {
        let (found, invalid) = cited("an array [a, b] and [] and [Source 2] and [x]", 3);
        assert_eq!(found, vec![2]);
        assert!(invalid.is_empty());
    }

    #[test]
    fn the_sources_go_in_the_last_user_message() {
        let context = Context {
            text: "Sources:\n[1] Bees — bees.md\nBees dance.".into(),
            tokens: 10,
            budget: 100,
            citations: Vec::new(),
            recent_messages: Vec::new(),
            recalled_messages: Vec::new(),
        };
        let history = [
            ChatMessage::new("user", "hi"),
            ChatMessage::new("assistant", "hello"),
        ];
        let m = messages(" Why do bees dance? ", &context, &history);
        assert_eq!(m.len(), 4);
        assert_eq!(m[0].role, "system");
        assert_eq!(m[1], history[0]);
        assert!(m[3].content.starts_with("Sources:\n[1] Bees"));
        assert!(m[3].content.ends_with("Question: Why do bees dance?"));
    }
}
