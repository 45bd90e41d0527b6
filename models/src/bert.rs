//! BERT-family sentence-transformers models run with candle.
//!
//! A model directory in Hugging Face layout holds `config.json`, `tokenizer.json`,
//! `model.safetensors` and, optionally, `1_Pooling/config.json`, `sentence_bert_config.json` and
//! Outpost's own `outpost-model.json` (which records the model id).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use candle_core::{DType, Device, IndexOp, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::Config;

use crate::bert_model::{BertModel, DTYPE};
use crate::cpu_bert::{CpuBert, Encoded};
use crate::kernels;
use crate::weights::{Backend, WeightsFile};
use rayon::prelude::*;
use serde::Deserialize;
use tokenizers::utils::padding::pad_encodings;
use tokenizers::{
    Encoding, PaddingParams, PaddingStrategy, PostProcessor, Tokenizer, TruncationDirection,
};

use crate::error::{Error, Result};

/// Inputs per forward pass on CUDA: bounds memory and, with length sorting, the padding wasted
/// per batch.
const SUB_BATCH: usize = 32;

/// Tokens per forward pass on the CPU (32 texts of 256 tokens): large enough that the matrix
/// products run at full speed, small enough that a pass's buffers stay near 100 MiB for
/// all-MiniLM-L6-v2.
const PASS_TOKENS: usize = 8192;

/// How the encoder's dense layers compute.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Quantize {
    /// f32 weights and products: the reference.
    #[default]
    None,
    /// int8 weights (per output column) and activations (per token), i32 sums: about twice the
    /// speed on CPUs with AVX-512 VNNI, at cosine ≈ 0.99 to the f32 vectors. CPU only.
    Int8,
}

/// The encoder: this crate's own on the CPU, candle's on CUDA.
enum Model {
    Cpu(CpuBert),
    Candle(BertModel),
}

/// Absolute cap on the sequence length when no `sentence_bert_config.json` says otherwise.
const DEFAULT_MAX_SEQ: usize = 512;

/// How token vectors are reduced to one sentence vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooling {
    /// Mean of the token vectors, padding excluded.
    Mean,
    /// The vector of the first (`[CLS]`) token.
    Cls,
}

/// `1_Pooling/config.json`.
#[derive(Deserialize)]
struct PoolingConfig {
    #[serde(default)]
    pooling_mode_mean_tokens: bool,
    #[serde(default)]
    pooling_mode_cls_token: bool,
    #[serde(default)]
    pooling_mode_max_tokens: bool,
    #[serde(default)]
    pooling_mode_mean_sqrt_len_tokens: bool,
}

impl PoolingConfig {
    /// The single mode this crate can run, or `None` for other modes and for combinations
    /// (which sentence-transformers concatenates); embedding those with a different pooling
    /// would silently produce incompatible vectors.
    fn pooling(&self) -> Option<Pooling> {
        match (
            self.pooling_mode_mean_tokens,
            self.pooling_mode_cls_token,
            self.pooling_mode_max_tokens || self.pooling_mode_mean_sqrt_len_tokens,
        ) {
            (true, false, false) => Some(Pooling::Mean),
            (false, true, false) => Some(Pooling::Cls),
            _ => None,
        }
    }
}

/// `sentence_bert_config.json`.
#[derive(Deserialize)]
struct SentenceBertConfig {
    max_seq_length: Option<usize>,
}

/// `outpost-model.json`, written by [`crate::fetch`].
#[derive(Deserialize)]
struct OutpostModelFile {
    model_id: String,
}

/// The threads every CPU forward pass runs on, whichever thread asked for it: as many as rayon's
/// (`RAYON_NUM_THREADS`, else one per core). A server calls the embedder from dozens of threads
/// at once; run there, each of them would keep its own matrix-product scratch (about 6 MiB a
/// thread: 64 concurrent searches took the agent from 100 to 500 MiB) and the passes would
/// fight over the cores. Here callers queue, and the scratch is held by these threads only.
static EMBED_THREADS: std::sync::LazyLock<rayon::ThreadPool> = std::sync::LazyLock::new(|| {
    rayon::ThreadPoolBuilder::new()
        .num_threads(rayon::current_num_threads())
        .thread_name(|i| format!("outpost-embed-{i}"))
        .build()
        .unwrap_or_else(|_| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(1)
                .build()
                .expect("a one-thread pool")
        })
});

/// A sentence-transformers BERT model (e.g. all-MiniLM-L6-v2) implementing
/// [`outpost_core::Embedder`].
///
/// It is `Send + Sync`: the model weights are immutable tensors and the only mutable state is an
/// atomic counter, so one instance can serve many threads.
pub struct BertEmbedder {
    model: Model,
    device: Device,
    /// No truncation or padding: counts every token of a text. The model's inputs are cut and
    /// padded by hand ([`BertEmbedder::encode_all`]): a second tokenizer configured to do
    /// it would hold another 8 MiB.
    tokenizer: Tokenizer,
    /// How a sub-batch is padded: to its longest input, with the model's pad token.
    padding: PaddingParams,
    model_id: String,
    dims: usize,
    max_seq_length: usize,
    pooling: Pooling,
    truncated: AtomicU64,
    /// Texts per forward pass on CUDA.
    sub_batch: usize,
    /// Tokens per forward pass on the CPU.
    pass_tokens: usize,
}

impl std::fmt::Debug for BertEmbedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BertEmbedder")
            .field("model_id", &self.model_id)
            .field("dims", &self.dims)
            .field("max_seq_length", &self.max_seq_length)
            .field("pooling", &self.pooling)
            .field("device", &self.device)
            .finish_non_exhaustive()
    }
}

impl BertEmbedder {
    /// Loads the model in `dir` onto `device`.
    ///
    /// # Errors
    /// [`Error::MissingModelFile`] if `config.json`, `tokenizer.json` or `model.safetensors` is
    /// absent, [`Error::BadConfig`] for unparsable JSON, [`Error::TokenizerLoad`] or
    /// [`Error::Candle`] if the tokenizer or the weights cannot be loaded.
    pub fn load(dir: &Path, device: &Device) -> Result<Self> {
        Self::load_described(describe(dir)?, device, Quantize::None)
    }

    /// [`Self::load`], with the dense layers computed as `quantize` says.
    ///
    /// # Errors
    /// As [`Self::load`]; [`Error::UnsupportedModel`] for int8 on a GPU.
    pub fn load_with(dir: &Path, device: &Device, quantize: Quantize) -> Result<Self> {
        Self::load_described(describe(dir)?, device, quantize)
    }

    fn load_described(d: Described, device: &Device, quantize: Quantize) -> Result<Self> {
        if quantize == Quantize::Int8 && !device.is_cpu() {
            return Err(Error::UnsupportedModel {
                path: d.weights_path,
                reason: "int8 runs on the CPU only (use --cpu, or no --quantize on the GPU)"
                    .to_owned(),
            });
        }
        let (tokenizer, padding) = load_tokenizer(&d.tokenizer_path, d.config.pad_token_id)?;
        // A tokenizer of another model would produce ids past the embedding table.
        let vocab = tokenizer.get_vocab_size(true);
        if vocab > d.config.vocab_size {
            return Err(Error::UnsupportedModel {
                path: d.tokenizer_path,
                reason: format!(
                    "the tokenizer has {vocab} tokens but config.json's vocab_size is {}: they are not from the same model",
                    d.config.vocab_size
                ),
            });
        }
        let mut model = load_weights(&d.weights_path, &d.config, device)?;
        if let (Model::Cpu(m), Quantize::Int8) = (&mut model, quantize) {
            m.quantize_int8();
        }

        Ok(Self {
            model,
            device: device.clone(),
            tokenizer,
            padding,
            model_id: d.model_id,
            dims: d.config.hidden_size,
            max_seq_length: d.max_seq_length,
            pooling: d.pooling,
            truncated: AtomicU64::new(0),
            sub_batch: env_usize("OUTPOST_EMBED_SUB_BATCH").unwrap_or(SUB_BATCH),
            pass_tokens: env_usize("OUTPOST_EMBED_PASS_TOKENS").unwrap_or(PASS_TOKENS),
        })
    }

    /// How many inputs, since loading, were longer than [`Self::max_seq_length`] and were
    /// truncated before embedding.
    pub fn truncated_count(&self) -> u64 {
        self.truncated.load(Ordering::Relaxed)
    }

    /// The most tokens (special tokens included) the model reads from one input.
    pub fn max_seq_length(&self) -> usize {
        self.max_seq_length
    }

    /// How token vectors are pooled into a sentence vector.
    pub fn pooling(&self) -> Pooling {
        self.pooling
    }

    /// The device the model runs on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Embeds `texts`, returning one unit-length vector per text, in input order.
    ///
    /// # Errors
    /// [`Error::Tokenize`] if a text cannot be tokenized, [`Error::Candle`] if the forward pass
    /// fails.
    pub fn embed_texts(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        match &self.model {
            Model::Cpu(model) => EMBED_THREADS.install(|| self.embed_cpu(model, texts)),
            Model::Candle(model) => self.embed_candle(model, texts),
        }
    }

    /// On the CPU: texts packed into passes of up to `pass_tokens` tokens, without padding.
    fn embed_cpu(&self, model: &CpuBert, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        let encodings = self.encode_all(texts)?;
        let mut out = Vec::with_capacity(texts.len());
        let mut rest = &encodings[..];
        while !rest.is_empty() {
            // At least one text a pass, then as many as fit the budget.
            let mut tokens = rest[0].len();
            let mut n = 1;
            while n < rest.len() && tokens + rest[n].len() <= self.pass_tokens {
                tokens += rest[n].len();
                n += 1;
            }
            let (pass, next) = rest.split_at(n);
            rest = next;
            let inputs: Vec<Encoded<'_>> = pass
                .iter()
                .map(|e| Encoded {
                    ids: e.get_ids(),
                    type_ids: e.get_type_ids(),
                })
                .collect();
            let hidden = model.forward(&inputs)?;
            let h = self.dims;
            let mut row = 0;
            for e in pass {
                let len = e.len();
                let rows = &hidden[row * h..(row + len) * h];
                row += len;
                let mut v = match self.pooling {
                    Pooling::Cls => rows[..h].to_vec(),
                    Pooling::Mean => {
                        let mut sum = vec![0f32; h];
                        for r in rows.chunks_exact(h) {
                            for (s, x) in sum.iter_mut().zip(r) {
                                *s += x;
                            }
                        }
                        // Every input has at least [CLS] and [SEP], so `len` is never zero.
                        sum.iter_mut().for_each(|s| *s /= len.max(1) as f32);
                        sum
                    }
                };
                kernels::normalise(&mut v);
                out.push(v);
            }
        }
        Ok(out)
    }

    /// On CUDA: candle's tensors, in padded sub-batches of texts of similar length.
    fn embed_candle(&self, model: &BertModel, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        let encodings = self.encode_all(texts)?;
        // Sorting by token count groups equal lengths, so each forward pass pads little.
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|&i| encodings[i].len());
        let mut out: Vec<Vec<f32>> = vec![Vec::new(); texts.len()];
        for idx in order.chunks(self.sub_batch.max(1)) {
            let mut batch: Vec<Encoding> = idx.iter().map(|&i| encodings[i].clone()).collect();
            pad_encodings(&mut batch, &self.padding).map_err(|e| Error::Tokenize(e.to_string()))?;
            for (&i, v) in idx.iter().zip(self.embed_padded(model, &batch)?) {
                out[i] = v;
            }
        }
        Ok(out)
    }

    /// Encodes `texts` as the model reads them, in parallel: special tokens added, each cut to
    /// the model's window (as a tokenizer configured with right truncation does: before the
    /// special tokens are added). Counts the texts that were cut.
    fn encode_all(&self, texts: &[&str]) -> Result<Vec<Encoding>> {
        let tokenize = |e: tokenizers::Error| Error::Tokenize(e.to_string());
        let processor = self.tokenizer.get_post_processor();
        let specials = processor.map_or(0, |p| p.added_tokens(false));
        let window = self.max_seq_length.saturating_sub(specials);
        let encode = |text: &&str| -> Result<(Encoding, bool)> {
            let mut encoding = self.tokenizer.encode_fast(*text, false).map_err(tokenize)?;
            let cut = encoding.len() > window;
            if cut {
                encoding.truncate(window, 0, TruncationDirection::Right);
            }
            let encoding = match processor {
                Some(p) => p.process(encoding, None, true).map_err(tokenize)?,
                None => encoding,
            };
            Ok((encoding, cut))
        };
        let encoded: Vec<(Encoding, bool)> = if texts.len() > 1 {
            texts.par_iter().map(encode).collect::<Result<_>>()?
        } else {
            texts.iter().map(encode).collect::<Result<_>>()?
        };
        let truncated = encoded.iter().filter(|(_, cut)| *cut).count() as u64;
        if truncated > 0 {
            self.truncated.fetch_add(truncated, Ordering::Relaxed);
        }
        Ok(encoded.into_iter().map(|(e, _)| e).collect())
    }

    /// One candle forward pass over `encodings`, padded to one length.
    fn embed_padded(&self, model: &BertModel, encodings: &[Encoding]) -> Result<Vec<Vec<f32>>> {
        let batch = encodings.len();
        let seq = encodings.first().map_or(0, |e| e.len());
        let mut ids = Vec::with_capacity(batch * seq);
        let mut type_ids = Vec::with_capacity(batch * seq);
        let mut mask = Vec::with_capacity(batch * seq);
        for e in encodings {
            ids.extend_from_slice(e.get_ids());
            type_ids.extend_from_slice(e.get_type_ids());
            mask.extend_from_slice(e.get_attention_mask());
        }
        let ids = Tensor::from_vec(ids, (batch, seq), &self.device)?;
        let type_ids = Tensor::from_vec(type_ids, (batch, seq), &self.device)?;
        let mask = Tensor::from_vec(mask, (batch, seq), &self.device)?;

        let hidden = model.forward(&ids, &type_ids, Some(&mask))?;
        let pooled = match self.pooling {
            Pooling::Mean => {
                let mask = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
                let summed = hidden.broadcast_mul(&mask)?.sum(1)?;
                // Every input has at least [CLS] and [SEP], so the count is never zero.
                let counts = mask.sum(1)?;
                summed.broadcast_div(&counts)?
            }
            Pooling::Cls => hidden.i((.., 0))?,
        };
        let norms = pooled
            .sqr()?
            .sum_keepdim(1)?
            .sqrt()?
            // An all-zero vector stays zero instead of becoming NaN.
            .clamp(1e-12f32, f32::MAX)?;
        let normalised = pooled.broadcast_div(&norms)?;
        Ok(normalised.to_vec2::<f32>()?)
    }
}

impl outpost_core::Embedder for BertEmbedder {
    fn model_id(&self) -> &str {
        &self.model_id
    }

    fn dims(&self) -> usize {
        self.dims
    }

    fn max_tokens(&self) -> usize {
        self.max_seq_length
    }

    fn tokenizer(&self) -> Result<&Tokenizer, outpost_core::EmbedError> {
        Ok(&self.tokenizer)
    }

    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, outpost_core::EmbedError> {
        Ok(self.embed_texts(texts)?)
    }

    fn truncated_count(&self) -> u64 {
        BertEmbedder::truncated_count(self)
    }
}

/// What a model directory says about its model, read from its small JSON files: enough to
/// name the model and size its vectors without loading the tokenizer or the weights.
struct Described {
    config: Config,
    tokenizer_path: PathBuf,
    weights_path: PathBuf,
    model_id: String,
    max_seq_length: usize,
    pooling: Pooling,
}

/// Reads `dir`'s configuration and checks that its files are there.
fn describe(dir: &Path) -> Result<Described> {
    let config_path = required(dir, "config.json")?;
    let tokenizer_path = required(dir, "tokenizer.json")?;
    let weights_path = required(dir, "model.safetensors")?;

    let raw: serde_json::Value = read_json(&config_path)?;
    check_architecture(&config_path, &raw)?;
    let config: Config = serde_json::from_value(raw).map_err(|source| Error::BadConfig {
        path: config_path.clone(),
        source,
    })?;
    let pooling_path = dir.join("1_Pooling/config.json");
    let pooling = match read_optional_json::<PoolingConfig>(&pooling_path)? {
        None => Pooling::Mean,
        Some(p) => p.pooling().ok_or_else(|| Error::UnsupportedModel {
            path: pooling_path.clone(),
            reason: "only one of mean-token or CLS-token pooling is supported".to_owned(),
        })?,
    };
    let position_limit = config.max_position_embeddings.min(DEFAULT_MAX_SEQ);
    let max_seq_length =
        read_optional_json::<SentenceBertConfig>(&dir.join("sentence_bert_config.json"))?
            .and_then(|c| c.max_seq_length)
            // More positions than the model has embeddings for would fail in the forward pass.
            .map_or(position_limit, |n| n.min(config.max_position_embeddings));
    let model_id = match read_optional_json::<OutpostModelFile>(&dir.join("outpost-model.json"))? {
        Some(m) => m.model_id,
        None => format!("sentence-transformers/{}", dir_name(dir)),
    };
    Ok(Described {
        config,
        tokenizer_path,
        weights_path,
        model_id,
        max_seq_length,
        pooling,
    })
}

/// A [`BertEmbedder`] that loads on first use: opening reads only the model's configuration, so
/// an app that opens its database to search by text index, list or sync, or that opens it long
/// before its first query, holds neither the tokenizer nor the weights until a text needs them.
///
/// The first call that needs the model (embedding, or counting tokens for chunks and context)
/// loads it; calls on other threads wait for that load. A load that fails is reported to the
/// call that needed it and tried again by the next.
pub struct LazyBertEmbedder {
    dir: PathBuf,
    device: Device,
    model_id: String,
    dims: usize,
    max_seq_length: usize,
    loaded: std::sync::OnceLock<BertEmbedder>,
    loading: std::sync::Mutex<()>,
}

impl std::fmt::Debug for LazyBertEmbedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LazyBertEmbedder")
            .field("dir", &self.dir)
            .field("model_id", &self.model_id)
            .field("loaded", &self.is_loaded())
            .finish_non_exhaustive()
    }
}

impl LazyBertEmbedder {
    /// Reads the configuration of the model in `dir`, to be loaded onto `device` at first use.
    ///
    /// # Errors
    /// As [`BertEmbedder::load`] for a missing file or a configuration it cannot run; a
    /// tokenizer or weights that do not load are reported by the first call that needs them.
    pub fn open(dir: &Path, device: &Device) -> Result<Self> {
        let d = describe(dir)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            device: device.clone(),
            model_id: d.model_id,
            dims: d.config.hidden_size,
            max_seq_length: d.max_seq_length,
            loaded: std::sync::OnceLock::new(),
            loading: std::sync::Mutex::new(()),
        })
    }

    /// Whether the tokenizer and weights are loaded.
    pub fn is_loaded(&self) -> bool {
        self.loaded.get().is_some()
    }

    /// The loaded model, loading it if this is the first use.
    ///
    /// # Errors
    /// [`Error::ModelChanged`] if the directory now holds another model than at open; otherwise
    /// as [`BertEmbedder::load`].
    pub fn model(&self) -> Result<&BertEmbedder> {
        if let Some(model) = self.loaded.get() {
            return Ok(model);
        }
        // One load at a time: two threads loading 90 MB each would hold both.
        let _one = self
            .loading
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(model) = self.loaded.get() {
            return Ok(model);
        }
        let model =
            BertEmbedder::load_described(describe(&self.dir)?, &self.device, Quantize::None)?;
        // Vectors of another model under this one's id would corrupt every collection it fills.
        if model.model_id != self.model_id || model.dims != self.dims {
            return Err(Error::ModelChanged {
                path: self.dir.clone(),
                opened: format!("{} ({} dimensions)", self.model_id, self.dims),
                found: format!("{} ({} dimensions)", model.model_id, model.dims),
            });
        }
        Ok(self.loaded.get_or_init(|| model))
    }
}

impl outpost_core::Embedder for LazyBertEmbedder {
    fn model_id(&self) -> &str {
        &self.model_id
    }

    fn dims(&self) -> usize {
        self.dims
    }

    fn max_tokens(&self) -> usize {
        self.max_seq_length
    }

    fn tokenizer(&self) -> Result<&Tokenizer, outpost_core::EmbedError> {
        Ok(&self.model()?.tokenizer)
    }

    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, outpost_core::EmbedError> {
        Ok(self.model()?.embed_texts(texts)?)
    }

    fn truncated_count(&self) -> u64 {
        self.loaded.get().map_or(0, BertEmbedder::truncated_count)
    }
}

/// Refuses configurations that are not BERT encoders: their weights might load under BERT's
/// names and still compute something else.
fn check_architecture(config_path: &Path, config: &serde_json::Value) -> Result<()> {
    let model_type = config["model_type"].as_str().unwrap_or("bert");
    let architectures: Vec<&str> = config["architectures"]
        .as_array()
        .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
        .unwrap_or_default();
    let bert_arch = architectures.is_empty() || architectures.iter().any(|a| a.starts_with("Bert"));
    if model_type == "bert" && bert_arch {
        Ok(())
    } else {
        Err(Error::UnsupportedModel {
            path: config_path.to_path_buf(),
            reason: format!(
                "model_type '{model_type}' ({}) is not a BERT encoder; supported: BERT-family sentence-transformers such as all-MiniLM-L6-v2, bge-small-en-v1.5, e5-small-v2",
                architectures.join(", ")
            ),
        })
    }
}

fn env_usize(name: &str) -> Option<usize> {
    std::env::var(name).ok()?.parse().ok().filter(|&n| n > 0)
}

/// Returns `dir/name` if it exists.
fn required(dir: &Path, name: &str) -> Result<PathBuf> {
    let path = dir.join(name);
    if path.is_file() {
        Ok(path)
    } else {
        Err(Error::MissingModelFile { path })
    }
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(Error::io(path))?;
    serde_json::from_str(&text).map_err(|source| Error::BadConfig {
        path: path.to_path_buf(),
        source,
    })
}

fn read_optional_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    if path.is_file() {
        read_json(path).map(Some)
    } else {
        Ok(None)
    }
}

fn dir_name(dir: &Path) -> String {
    // `canonicalize` resolves a trailing `.` or `..` to the real directory name.
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    dir.file_name().map_or_else(
        || "unknown".to_owned(),
        |n| n.to_string_lossy().into_owned(),
    )
}

/// Loads `tokenizer.json` twice: configured for the model, and bare for counting.
fn load_tokenizer(path: &Path, pad_token_id: usize) -> Result<(Tokenizer, PaddingParams)> {
    let load_err = |message: String| Error::TokenizerLoad {
        path: path.to_path_buf(),
        message,
    };
    // The shipped tokenizer.json pads every input to a fixed 128 and truncates at 128, which
    // would both miscount tokens and cut inputs shorter than the model's real limit.
    let mut tokenizer = Tokenizer::from_file(path).map_err(|e| load_err(e.to_string()))?;
    tokenizer
        .with_truncation(None)
        .map_err(|e| load_err(e.to_string()))?;
    tokenizer.with_padding(None);
    let pad_id = u32::try_from(pad_token_id)
        .map_err(|_| load_err(format!("pad_token_id {pad_token_id} does not fit in u32")))?;
    let pad_token = tokenizer
        .id_to_token(pad_id)
        .unwrap_or_else(|| "[PAD]".to_owned());
    let padding = PaddingParams {
        strategy: PaddingStrategy::BatchLongest,
        pad_id,
        pad_token,
        ..PaddingParams::default()
    };
    Ok((tokenizer, padding))
}

/// Reads the weights and builds the model (see [`crate::weights`] for why they are not mapped).
fn load_weights(path: &Path, config: &Config, device: &Device) -> Result<Model> {
    let file = std::sync::Arc::new(WeightsFile::open(path)?);
    if device.is_cpu() {
        return CpuBert::load(&file, config).map(Model::Cpu);
    }
    let vb = VarBuilder::from_backend(Box::new(Backend(file.clone())), DTYPE, device.clone());
    BertModel::load(vb, config)
        .map(Model::Candle)
        .map_err(|e| Error::BadWeights {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
}
