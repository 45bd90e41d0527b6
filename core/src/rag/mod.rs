//! Retrieval-augmented generation: the context block built from search results within a token
//! budget ([`context`]), conversation memory ([`conversation`]), and the messages and citations
//! of an answer ([`answer`]).

pub mod answer;
pub mod context;
pub mod conversation;
