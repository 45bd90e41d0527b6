//! Conversation memory: conversations and their messages, each message with its embedding so
//! that later turns can recall the closest earlier ones.
//!
//! The tables and their queries are in `db::conversation`; this module keeps the rules of what
//! a message may be (a known role, some text, a conversation that exists).

pub use crate::db::conversation::{Conversation, Message};
use crate::db::Store;
use crate::error::{Error, Result};

/// The roles a message may have.
const ROLES: &[&str] = &["system", "user", "assistant", "tool"];

impl Store {
    /// Appends a message, with its embedding (`(model id, vector)`) if one is given.
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown conversation, [`Error::InvalidArgument`] for an unknown
    /// role or empty content.
    pub fn add_message(
        &mut self,
        conversation_id: &str,
        role: &str,
        content: &str,
        embedding: Option<(&str, &[f32])>,
    ) -> Result<Message> {
        if !ROLES.contains(&role) {
            return Err(Error::invalid(
                "role",
                format!("'{role}' is not one of {}", ROLES.join(", ")),
            ));
        }
        if content.trim().is_empty() {
            return Err(Error::invalid("message", "the message is empty"));
        }
        self.conversation(conversation_id)?;
        self.insert_message(conversation_id, role, content, embedding)
    }
}
