//! Retrieval-augmented generation: the context block built from search results within a token
//! budget ([`context`]) and conversation memory ([`conversation`]).

pub mod context;
pub mod conversation;
