//! The agent's language model: loaded at its first use, one generation at a time, with a
//! bounded queue in front (a request that finds it full is refused with 429 at once), and the
//! prompts of earlier answers kept so that the next turn of a conversation reuses the model's
//! KV cache.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use outpost_core::Generator;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Opens the model (on a blocking thread).
pub type Loader = Box<dyn Fn() -> anyhow::Result<Arc<dyn Generator>> + Send + Sync>;

/// Why no generation slot was given.
#[derive(Debug, thiserror::Error)]
pub enum SlotError {
    /// As many requests wait as the queue holds.
    #[error("the language model is busy: {waiting} requests are already waiting; retry shortly")]
    Full {
        /// Requests waiting.
        waiting: usize,
    },
}

/// Answers remembered: what this agent gave the model as a turn's user message (the question
/// with its sources), by the turn's question and answer, so the next request of that
/// conversation (which carries only the bare question) renders to the same tokens.
const REMEMBERED: usize = 256;

/// User messages given to the model, by (question, answer), and the keys oldest first.
type Turns = (
    HashMap<(String, String), String>,
    VecDeque<(String, String)>,
);

/// The model, its queue and its turn memory.
pub struct Llm {
    /// What `/v1/models` lists for it (`None`: no model installed or configured).
    pub id: Option<String>,
    loader: Loader,
    model: tokio::sync::Mutex<Option<Arc<dyn Generator>>>,
    running: Arc<Semaphore>,
    waiting: AtomicUsize,
    queue: usize,
    turns: Mutex<Turns>,
}

/// A generation slot: the model is this request's until it is dropped.
pub struct Slot {
    _permit: OwnedSemaphorePermit,
}

impl Llm {
    /// A model opened by `loader` at its first use, listed as `id`, with `queue` requests
    /// allowed to wait for the one running.
    pub fn new(id: Option<String>, loader: Loader, queue: usize) -> Self {
        Self {
            id,
            loader,
            model: tokio::sync::Mutex::new(None),
            running: Arc::new(Semaphore::new(1)),
            waiting: AtomicUsize::new(0),
            queue,
            turns: Mutex::new((HashMap::new(), VecDeque::new())),
        }
    }

    /// The model, loading it on a blocking thread at the first call.
    ///
    /// # Errors
    /// What the loader says (no model installed, a bad file).
    pub async fn model(&self) -> anyhow::Result<Arc<dyn Generator>> {
        let mut slot = self.model.lock().await;
        if let Some(m) = slot.as_ref() {
            return Ok(m.clone());
        }
        // The loader is ours for the load; it is called through a reference kept alive by the
        // lock guard, so it cannot move to the blocking thread: the load blocks this worker
        // thread instead, once.
        let model = tokio::task::block_in_place(|| (self.loader)())?;
        *slot = Some(model.clone());
        Ok(model)
    }

    /// Waits for the model to be free, unless the queue is full.
    ///
    /// # Errors
    /// [`SlotError::Full`].
    pub async fn slot(&self) -> Result<Slot, SlotError> {
        if let Ok(permit) = self.running.clone().try_acquire_owned() {
            return Ok(Slot { _permit: permit });
        }
        let waiting = self.waiting.fetch_add(1, Ordering::SeqCst);
        if waiting >= self.queue {
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            return Err(SlotError::Full { waiting });
        }
        let permit = self.running.clone().acquire_owned().await;
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        match permit {
            Ok(permit) => Ok(Slot { _permit: permit }),
            // The semaphore is never closed.
            Err(_) => Err(SlotError::Full { waiting }),
        }
    }

    /// Requests waiting for the model.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::SeqCst)
    }

    /// Remembers that the turn (`question`, `answer`) gave the model `user_message`.
    pub fn remember(&self, question: &str, answer: &str, user_message: String) {
        let mut turns = self.turns.lock().unwrap_or_else(|p| p.into_inner());
        let key = (question.trim().to_owned(), answer.trim().to_owned());
        if turns.0.insert(key.clone(), user_message).is_none() {
            turns.1.push_back(key);
        }
        while turns.1.len() > REMEMBERED {
            if let Some(old) = turns.1.pop_front() {
                turns.0.remove(&old);
            }
        }
    }

    /// The user message this agent gave the model for (`question`, `answer`), if it answered it.
    pub fn recall(&self, question: &str, answer: &str) -> Option<String> {
        let turns = self.turns.lock().unwrap_or_else(|p| p.into_inner());
        turns
            .0
            .get(&(question.trim().to_owned(), answer.trim().to_owned()))
            .cloned()
    }
}
