//! `Engine::ask`: a question answered by a language model from the sources retrieval finds,
//! with numbered citations, fitted to the model's window, and remembered in a conversation.

use std::time::Instant;

use serde::Serialize;

use super::{ContextOptions, Engine, SearchOptions};
use crate::error::{Error, Result};
use crate::generate::{
    ChatMessage, FinishReason, GenerateError, GenerateOptions, Generation, Generator,
};
use crate::rag::answer;
use crate::rag::context::{Citation, Context};
use crate::search::SearchMode;

/// Cosine similarity (unit vectors of the embedding model) an answer must have with a source
/// for the source to be named when the model cited none.
pub const ATTRIBUTION_MIN: f64 = 0.3;

/// How to answer.
#[derive(Debug, Clone)]
pub struct AskOptions {
    /// Retrieval and the context budget (an upper bound: the budget shrinks to fit the model's
    /// window with room for `generate.max_tokens`); with a conversation, its memory.
    pub context: ContextOptions,
    /// Sampling.
    pub generate: GenerateOptions,
    /// Cosine similarity the best chunk must reach for the sources to count as relevant; below
    /// it (and with no conversation to go on) the answer says nothing was found and no model
    /// runs. 0 turns the check off.
    pub min_relevance: f64,
    /// Earlier turns (oldest first) that the caller keeps itself, as a chat client does.
    pub history: Vec<ChatMessage>,
    /// Store the question and the answer in `context.conversation_id`'s conversation.
    pub remember: bool,
}

impl Default for AskOptions {
    fn default() -> Self {
        Self {
            context: ContextOptions {
                budget: 1536,
                candidates: 12,
                ..ContextOptions::default()
            },
            generate: GenerateOptions::default(),
            min_relevance: 0.25,
            history: Vec::new(),
            remember: true,
        }
    }
}

/// What [`Engine::ask`] reports while it works.
#[derive(Debug, Clone, Copy)]
pub enum AskEvent<'a> {
    /// The sources given to the model, before it starts (empty when nothing relevant was found).
    Sources(&'a [Citation]),
    /// A piece of the answer (empty while the prompt is read).
    Text(&'a str),
}

/// An answer with its sources.
#[derive(Debug, Clone, Serialize)]
pub struct Answer {
    /// The question.
    pub question: String,
    /// The answer.
    pub text: String,
    /// The sources the model was given, numbered as the answer cites them.
    pub sources: Vec<Citation>,
    /// The numbers the answer cites, in order of first use (all among `sources`).
    pub cited: Vec<usize>,
    /// Who chose `cited`: `model` (its own `[n]` markers), `similarity` (the model cited
    /// nothing valid, and the source closest to the answer by embedding, at cosine
    /// [`ATTRIBUTION_MIN`] or more, is named), or `none`.
    pub cited_by: &'static str,
    /// Numbers the answer cites that no source has (left out of `cited`).
    pub invalid_citations: Vec<usize>,
    /// Whether retrieval found relevant sources (when not, the answer says so and no model ran).
    pub found: bool,
    /// Cosine similarity of the best chunk to the question (`None` for a text search).
    pub best_similarity: Option<f64>,
    /// Tokens of the context by the embedding model's tokenizer.
    pub context_tokens: usize,
    /// The model's run (`None` when nothing relevant was found).
    pub generation: Option<Generation>,
    /// Milliseconds spent on retrieval and building the prompt.
    pub retrieval_ms: f64,
    /// The conversation it was stored in.
    pub conversation_id: Option<String>,
    /// The user message the model was given: the question with its sources (a chat server
    /// gives it again in place of the bare question when the conversation goes on, so the
    /// model's cache of this turn is reused).
    #[serde(skip)]
    pub user_message: String,
}

impl Engine {
    /// Answers `question` from the documents: retrieves (with `opts.context.search`), builds
    /// the numbered sources within the model's window, has `generator` answer, reads the
    /// citations back, and with a conversation stores the question and answer in it.
    /// `on_event` gets the sources first, then the answer as it is generated; returning
    /// `false` stops generation (the answer so far comes back, finished as cancelled, and is
    /// not stored).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an empty question or a `max_tokens` that leaves no room
    /// for sources; [`Error::Generate`] when the prompt cannot fit or the model fails; search
    /// and model errors.
    pub fn ask(
        &self,
        question: &str,
        opts: &AskOptions,
        generator: &dyn Generator,
        on_event: &mut dyn FnMut(AskEvent<'_>) -> bool,
    ) -> Result<Answer> {
        if question.trim().is_empty() {
            return Err(Error::invalid("question", "the question is empty"));
        }
        let started = Instant::now();
        let vector = if opts.context.search.mode == SearchMode::Text {
            None
        } else {
            Some(self.embed_one(question)?)
        };
        let (context, messages) = self.fit(question, vector.clone(), opts, generator)?;
        let user_message = messages
            .last()
            .map(|m| m.content.clone())
            .unwrap_or_default();
        let best_similarity = match &vector {
            Some(v) if !context.citations.is_empty() => {
                let search = SearchOptions {
                    k: 1,
                    mode: SearchMode::Vector,
                    ..opts.context.search.clone()
                };
                let best = self.search_with_vector(question, Some(v), &search, 0)?;
                best.first().map(|h| h.score)
            }
            _ => None,
        };
        // Earlier turns are something to go on; a client's own system message is not.
        let has_memory =
            !context.recent_messages.is_empty() || opts.history.iter().any(|m| m.role != "system");
        let relevant = !context.citations.is_empty()
            && best_similarity.is_none_or(|s| s >= opts.min_relevance);
        let retrieval_ms = started.elapsed().as_secs_f64() * 1e3;
        let mut answer = Answer {
            question: question.trim().to_owned(),
            text: String::new(),
            sources: Vec::new(),
            cited: Vec::new(),
            cited_by: "none",
            invalid_citations: Vec::new(),
            found: relevant,
            best_similarity,
            context_tokens: context.tokens,
            generation: None,
            retrieval_ms,
            conversation_id: opts.context.conversation_id.clone(),
            user_message,
        };
        if !relevant && !has_memory {
            answer.text = answer::NOTHING_FOUND.to_owned();
            on_event(AskEvent::Sources(&[]));
            on_event(AskEvent::Text(&answer.text));
            self.remember(&answer, opts)?;
            return Ok(answer);
        }
        answer.sources = context.citations;
        on_event(AskEvent::Sources(&answer.sources));
        let generation = generator.generate(&messages, &opts.generate, &mut |piece| {
            on_event(AskEvent::Text(piece))
        })?;
        let (cited, invalid) = answer::cited(&generation.text, answer.sources.len());
        answer.text = generation.text.clone();
        answer.invalid_citations = invalid;
        let cancelled = generation.finish_reason == FinishReason::Cancelled;
        if !cited.is_empty() {
            answer.cited = cited;
            answer.cited_by = "model";
        } else if !cancelled && !answer.text.trim().is_empty() {
            if let Some(n) = self.closest_source(&answer.text, &answer.sources)? {
                answer.cited = vec![n];
                answer.cited_by = "similarity";
            }
        }
        answer.generation = Some(generation);
        if !cancelled {
            self.remember(&answer, opts)?;
        }
        Ok(answer)
    }

    /// The context and messages for `question`, the context's budget shrunk until the prompt
    /// and `max_tokens` fit the model's window (the budget is counted with the embedding
    /// model's tokenizer, the window with the language model's).
    fn fit(
        &self,
        question: &str,
        vector: Option<Vec<f32>>,
        opts: &AskOptions,
        generator: &dyn Generator,
    ) -> Result<(Context, Vec<ChatMessage>)> {
        let window = generator.context_window();
        let max_tokens = opts.generate.max_tokens;
        let room = window.saturating_sub(max_tokens);
        if room < 64 {
            return Err(Error::invalid(
                "max_tokens",
                format!(
                    "{max_tokens} leaves no room for sources in the model's {window}-token window"
                ),
            ));
        }
        let mut copts = opts.context.clone();
        copts.budget = copts.budget.min(room);
        let mut last = 0;
        for _ in 0..6 {
            let context = self.context_with_vector(question, vector.clone(), &copts)?;
            let messages = answer::messages(question, &context, &opts.history);
            let tokens = generator.count_tokens(&messages)?;
            if tokens <= room {
                return Ok((context, messages));
            }
            last = tokens;
            // Shrink in proportion to the overshoot, and a little more.
            let scaled = copts.budget * room / tokens;
            let next = scaled.saturating_sub(scaled / 10 + 8);
            if next < 32 {
                break;
            }
            copts.budget = next;
        }
        Err(GenerateError::PromptTooLong {
            tokens: last,
            limit: room,
        }
        .into())
    }

    /// The source most similar to `text` by the embedding model, if at least
    /// [`ATTRIBUTION_MIN`].
    fn closest_source(&self, text: &str, sources: &[Citation]) -> Result<Option<usize>> {
        if sources.is_empty() {
            return Ok(None);
        }
        let mut texts: Vec<&str> = vec![text];
        texts.extend(sources.iter().map(|c| c.text.as_str()));
        let vectors = crate::embed::embed_all(self.embedder.as_ref(), &texts)?;
        let (answer, rest) = vectors
            .split_first()
            .ok_or_else(|| Error::invalid("text", "no vector"))?;
        let best = rest
            .iter()
            .zip(sources)
            .map(|(v, c)| {
                (
                    v.iter()
                        .zip(answer)
                        .map(|(a, b)| f64::from(a * b))
                        .sum::<f64>(),
                    c.n,
                )
            })
            .max_by(|a, b| a.0.total_cmp(&b.0));
        Ok(best
            .filter(|(cos, _)| *cos >= ATTRIBUTION_MIN)
            .map(|(_, n)| n))
    }

    fn remember(&self, answer: &Answer, opts: &AskOptions) -> Result<()> {
        if let (Some(conv), true) = (&opts.context.conversation_id, opts.remember) {
            self.add_message(conv, "user", &answer.question)?;
            self.add_message(conv, "assistant", &answer.text)?;
        }
        Ok(())
    }
}
