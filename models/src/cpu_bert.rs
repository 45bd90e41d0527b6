//! The BERT encoder on the CPU, without tensors: plain `f32` buffers, matrix products through
//! `gemm`, and the steps between them fused ([`crate::kernels`]).
//!
//! What makes it faster and smaller than the candle encoder ([`crate::bert_model`], still used on
//! CUDA):
//! - **No padding.** A pass takes texts of any lengths packed end to end (`T` rows for `T`
//!   tokens); attention runs per text and head over that text's rows only, so no token attends
//!   to padding, and no mask is needed.
//! - **Attention in the cache.** Each (text, head) task computes its `L × L` scores (at most
//!   256 KiB for 256 tokens), softmaxes them in place and multiplies by V straight into the
//!   output's columns for that head: no `batch × heads × L × L` tensor is materialised.
//! - **Fused steps.** One pass for bias + GELU, one for bias + residual + LayerNorm; Q, K and V
//!   come from one product with their three weights side by side.
//! - **Weights prepared once.** Each dense weight is stored `in × out`, the layout the product
//!   reads; Q, K and V are concatenated at load.
//! - **Threads inside the products.** One pass at a time uses every thread of the pool (the
//!   products split by `gemm`, attention by (text, head), element-wise steps by rows), so the
//!   working memory is one pass's and the speed scales with cores.
//! - **Three buffers a pass**, sized by its token count and freed after it.

use std::sync::Arc;

use candle_core::{DType, Device};
use candle_transformers::models::bert::{Config, HiddenAct};
use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::int8::{self, QWeights};
use crate::kernels::{self, Activation, Mat};
use crate::weights::WeightsFile;

/// One text as the model reads it: token ids and token type ids, special tokens included.
pub(crate) struct Encoded<'a> {
    pub ids: &'a [u32],
    pub type_ids: &'a [u32],
}

/// A dense layer: `weight` is `input × output`, row-major; or, quantized, `int8` (and `weight`
/// empty).
struct Dense {
    weight: Vec<f32>,
    int8: Option<QWeights>,
    bias: Vec<f32>,
    input: usize,
    output: usize,
}

impl Dense {
    /// Replaces the f32 weight by its int8 form.
    fn quantize(&mut self) {
        if self.int8.is_none() {
            self.int8 = Some(QWeights::new(&self.weight, self.input, self.output));
            self.weight = Vec::new();
        }
    }
}

struct Norm {
    gamma: Vec<f32>,
    beta: Vec<f32>,
}

struct Layer {
    /// Q, K and V side by side: `hidden × 3·hidden`.
    qkv: Dense,
    attention_out: Dense,
    attention_norm: Norm,
    up: Dense,
    down: Dense,
    output_norm: Norm,
}

/// Where the word embeddings are: in the weights file, read a row at a time (the table is
/// half of all-MiniLM-L6-v2's weights, of which a text touches a few rows), or in memory when
/// they are not stored as plain f32.
enum WordTable {
    File { file: Arc<WeightsFile>, offset: u64 },
    Loaded(Vec<f32>),
}

/// A BERT encoder's weights, ready for [`CpuBert::forward`].
pub(crate) struct CpuBert {
    words: WordTable,
    vocab: usize,
    positions: Vec<f32>,
    max_positions: usize,
    token_types: Vec<f32>,
    type_vocab: usize,
    embedding_norm: Norm,
    layers: Vec<Layer>,
    hidden: usize,
    heads: usize,
    act: Activation,
    eps: f32,
}

impl std::fmt::Debug for CpuBert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CpuBert")
            .field("layers", &self.layers.len())
            .field("hidden", &self.hidden)
            .field("heads", &self.heads)
            .finish_non_exhaustive()
    }
}

/// Reads the tensors of one model, under the prefix its file uses.
struct Loader<'a> {
    file: &'a Arc<WeightsFile>,
    prefix: String,
}

impl Loader<'_> {
    fn entry_name(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// Tensor `name` as f32 values, checked to have `shape`.
    fn get(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let full = self.entry_name(name);
        let bad = |message: String| Error::BadWeights {
            path: self.file.path().to_path_buf(),
            message,
        };
        let tensor = self
            .file
            .load(&full, &Device::Cpu)
            .map_err(|e| bad(e.to_string()))?;
        if tensor.dims() != shape {
            return Err(bad(format!(
                "{full} has shape {:?}, the configuration says {shape:?}",
                tensor.dims()
            )));
        }
        tensor
            .to_dtype(DType::F32)
            .and_then(|t| t.flatten_all())
            .and_then(|t| t.to_vec1::<f32>())
            .map_err(|e| bad(format!("{full}: {e}")))
    }

    /// A `torch.nn.Linear` (`weight` is `output × input`), transposed for the product.
    fn dense(&self, name: &str, input: usize, output: usize) -> Result<Dense> {
        let w = self.get(&format!("{name}.weight"), &[output, input])?;
        Ok(Dense {
            weight: transpose(&w, output, input),
            int8: None,
            bias: self.get(&format!("{name}.bias"), &[output])?,
            input,
            output,
        })
    }

    /// Q, K and V of `layer` in one dense layer.
    fn qkv(&self, layer: &str, hidden: usize) -> Result<Dense> {
        let parts = ["query", "key", "value"]
            .map(|p| self.dense(&format!("{layer}.attention.self.{p}"), hidden, hidden));
        let [q, k, v] = parts;
        let (q, k, v) = (q?, k?, v?);
        let mut weight = Vec::with_capacity(hidden * 3 * hidden);
        for row in 0..hidden {
            for part in [&q, &k, &v] {
                weight.extend_from_slice(&part.weight[row * hidden..(row + 1) * hidden]);
            }
        }
        Ok(Dense {
            weight,
            int8: None,
            bias: [q.bias, k.bias, v.bias].concat(),
            input: hidden,
            output: 3 * hidden,
        })
    }

    fn norm(&self, name: &str, width: usize) -> Result<Norm> {
        Ok(Norm {
            gamma: self.get(&format!("{name}.weight"), &[width])?,
            beta: self.get(&format!("{name}.bias"), &[width])?,
        })
    }
}

fn transpose(w: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut t = vec![0f32; w.len()];
    for r in 0..rows {
        for c in 0..cols {
            t[c * rows + r] = w[r * cols + c];
        }
    }
    t
}

impl CpuBert {
    /// Loads the encoder described by `config` from `file`; the word embeddings stay in the
    /// file when they are plain f32.
    pub fn load(file: &Arc<WeightsFile>, config: &Config) -> Result<Self> {
        let path = file.path();
        let unsupported = |reason: String| Error::UnsupportedModel {
            path: path.to_path_buf(),
            reason,
        };
        let hidden = config.hidden_size;
        let heads = config.num_attention_heads;
        if heads == 0 || !hidden.is_multiple_of(heads) {
            return Err(unsupported(format!(
                "hidden_size {hidden} is not a multiple of num_attention_heads {heads}"
            )));
        }
        let act = match config.hidden_act {
            HiddenAct::Gelu => Activation::Gelu,
            HiddenAct::GeluApproximate => Activation::GeluTanh,
            HiddenAct::Relu => Activation::Relu,
        };
        // Files name the tensors `embeddings.…`, `bert.embeddings.…` or `<model_type>.embeddings.…`.
        let mut prefixes = vec![String::new(), "bert.".to_owned()];
        if let Some(t) = &config.model_type {
            prefixes.push(format!("{t}."));
        }
        let prefix = prefixes
            .into_iter()
            .find(|p| {
                file.entry(&format!("{p}embeddings.word_embeddings.weight"))
                    .is_some()
            })
            .ok_or_else(|| Error::BadWeights {
                path: path.to_path_buf(),
                message: "no embeddings.word_embeddings.weight tensor (nor under bert. or the model type)".to_owned(),
            })?;
        let l = Loader { file, prefix };

        let words_name = l.entry_name("embeddings.word_embeddings.weight");
        let vocab = config.vocab_size;
        let words = match file.entry(&words_name) {
            Some(e) if e.dtype == Some(DType::F32) && e.shape == [vocab, hidden] => {
                WordTable::File {
                    file: file.clone(),
                    offset: e.offset,
                }
            }
            _ => WordTable::Loaded(l.get("embeddings.word_embeddings.weight", &[vocab, hidden])?),
        };
        let max_positions = config.max_position_embeddings;
        let layers = (0..config.num_hidden_layers)
            .map(|i| {
                let p = format!("encoder.layer.{i}");
                Ok(Layer {
                    qkv: l.qkv(&p, hidden)?,
                    attention_out: l.dense(
                        &format!("{p}.attention.output.dense"),
                        hidden,
                        hidden,
                    )?,
                    attention_norm: l.norm(&format!("{p}.attention.output.LayerNorm"), hidden)?,
                    up: l.dense(
                        &format!("{p}.intermediate.dense"),
                        hidden,
                        config.intermediate_size,
                    )?,
                    down: l.dense(
                        &format!("{p}.output.dense"),
                        config.intermediate_size,
                        hidden,
                    )?,
                    output_norm: l.norm(&format!("{p}.output.LayerNorm"), hidden)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            words,
            vocab,
            positions: l.get(
                "embeddings.position_embeddings.weight",
                &[max_positions, hidden],
            )?,
            max_positions,
            token_types: l.get(
                "embeddings.token_type_embeddings.weight",
                &[config.type_vocab_size, hidden],
            )?,
            type_vocab: config.type_vocab_size,
            embedding_norm: l.norm("embeddings.LayerNorm", hidden)?,
            layers,
            hidden,
            heads,
            act,
            eps: config.layer_norm_eps as f32,
        })
    }

    /// Quantizes every dense layer's weights to int8 ([`crate::int8`]); attention, embeddings
    /// and normalisation stay f32.
    pub fn quantize_int8(&mut self) {
        for l in &mut self.layers {
            for d in [&mut l.qkv, &mut l.attention_out, &mut l.up, &mut l.down] {
                d.quantize();
            }
        }
    }

    /// The last layer's token vectors of `texts`, packed: `Σ len × hidden`, text after text.
    ///
    /// # Errors
    /// [`Error::Tokenize`] for a token id past the vocabulary, a type id past the token types or
    /// a text longer than the position embeddings; [`Error::Io`] if the word embeddings cannot be
    /// read from the weights file.
    pub fn forward(&self, texts: &[Encoded<'_>]) -> Result<Vec<f32>> {
        let h = self.hidden;
        let tokens: usize = texts.iter().map(|t| t.ids.len()).sum();
        let mut x = self.embed(texts, tokens)?;
        // Q|K|V (3h wide), then the attention output (h), then the intermediate activations.
        let wide = self
            .layers
            .first()
            .map_or(3 * h, |l| l.up.output.max(3 * h));
        let mut big = vec![0f32; tokens * wide];
        let mut context = vec![0f32; tokens * h];
        let starts: Vec<usize> = texts
            .iter()
            .scan(0, |row, t| {
                let start = *row;
                *row += t.ids.len();
                Some(start)
            })
            .collect();
        for layer in &self.layers {
            let qkv = &mut big[..tokens * 3 * h];
            dense(&layer.qkv, &x, tokens, qkv);
            kernels::for_rows(qkv, 3 * h, |_, rows| {
                kernels::add_bias(rows, &layer.qkv.bias)
            });
            self.attention(qkv, texts, &starts, &mut context);

            let out = &mut big[..tokens * h];
            dense(&layer.attention_out, &context, tokens, out);
            self.add_and_norm(&mut x, out, &layer.attention_out, &layer.attention_norm);

            let i = layer.up.output;
            let inter = &mut big[..tokens * i];
            dense(&layer.up, &x, tokens, inter);
            kernels::for_rows(inter, i, |_, rows| {
                kernels::bias_activation(rows, &layer.up.bias, self.act);
            });
            dense(&layer.down, inter, tokens, &mut context);
            self.add_and_norm(&mut x, &context, &layer.down, &layer.output_norm);
        }
        Ok(x)
    }

    /// `x = norm(y + dense's bias + x)`: the residual step after `dense`, whose output is `y`.
    fn add_and_norm(&self, x: &mut [f32], y: &[f32], dense: &Dense, norm: &Norm) {
        let h = self.hidden;
        kernels::for_rows(x, h, |row, rows| {
            let y = &y[row * h..row * h + rows.len()];
            kernels::residual_layer_norm(rows, y, &dense.bias, &norm.gamma, &norm.beta, self.eps);
        });
    }

    /// Word + position + token type embeddings of every token, LayerNorm-ed.
    fn embed(&self, texts: &[Encoded<'_>], tokens: usize) -> Result<Vec<f32>> {
        let h = self.hidden;
        // (word, position, token type) of every token, checked against the tables.
        let mut rows: Vec<(usize, usize, usize)> = Vec::with_capacity(tokens);
        for text in texts {
            if text.ids.len() > self.max_positions {
                return Err(Error::Tokenize(format!(
                    "{} tokens, more than the model's {} positions",
                    text.ids.len(),
                    self.max_positions
                )));
            }
            for (pos, (&id, &ty)) in text.ids.iter().zip(text.type_ids).enumerate() {
                let (id, ty) = (id as usize, ty as usize);
                if id >= self.vocab || ty >= self.type_vocab {
                    return Err(Error::Tokenize(format!(
                        "token id {id} (type {ty}) is past the model's {} tokens ({} types)",
                        self.vocab, self.type_vocab
                    )));
                }
                rows.push((id, pos, ty));
            }
        }
        let mut x = vec![0f32; tokens * h];
        // Rows filled and normalised in parallel (reading the word rows is a system call each).
        let fill = |bytes: &mut Vec<u8>,
                    (out, rows): (&mut [f32], &[(usize, usize, usize)])|
         -> Result<()> {
            for (row, &(id, pos, ty)) in out.chunks_exact_mut(h).zip(rows) {
                match &self.words {
                    WordTable::Loaded(table) => row.copy_from_slice(&table[id * h..(id + 1) * h]),
                    WordTable::File { file, offset } => {
                        bytes.resize(h * 4, 0);
                        file.read_at(bytes, offset + (id * h * 4) as u64)
                            .map_err(Error::io(file.path()))?;
                        for (v, b) in row.iter_mut().zip(bytes.chunks_exact(4)) {
                            *v = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                        }
                    }
                }
                let position = &self.positions[pos * h..(pos + 1) * h];
                let token_type = &self.token_types[ty * h..(ty + 1) * h];
                for ((v, p), t) in row.iter_mut().zip(position).zip(token_type) {
                    *v += p + t;
                }
            }
            let n = &self.embedding_norm;
            kernels::layer_norm(out, &n.gamma, &n.beta, self.eps);
            Ok(())
        };
        let per = 64;
        if rayon::current_num_threads() == 1 || tokens <= per {
            fill(&mut Vec::new(), (&mut x, &rows))?;
        } else {
            x.par_chunks_mut(per * h)
                .zip(rows.par_chunks(per))
                .try_for_each_init(Vec::new, fill)?;
        }
        Ok(x)
    }

    /// Self-attention of every text over its own rows of `qkv`, written to `context`: in
    /// parallel by text, each text's heads one after another.
    fn attention(&self, qkv: &[f32], texts: &[Encoded<'_>], starts: &[usize], context: &mut [f32]) {
        let h = self.hidden;
        let d = h / self.heads;
        let scale = 1.0 / (d as f32).sqrt();
        // Each text's rows of the output, to hand to its task.
        let mut outs = Vec::with_capacity(texts.len());
        let mut rest = context;
        for text in texts {
            let (mine, next) = rest.split_at_mut(text.ids.len() * h);
            outs.push(mine);
            rest = next;
        }
        let task = |(scores, inv): &mut (Vec<f32>, Vec<f32>),
                    (i, out): (usize, &mut &mut [f32])| {
            let len = texts[i].ids.len();
            if len == 0 {
                return;
            }
            let rows = &qkv[starts[i] * 3 * h..];
            for head in 0..self.heads {
                let q = Mat::strided(&rows[head * d..], len, d, 3 * h);
                let k = Mat::strided(&rows[h + head * d..], len, d, 3 * h);
                let v = Mat::strided(&rows[2 * h + head * d..], len, d, 3 * h);
                scores.resize(len * len, 0.0);
                inv.resize(len, 0.0);
                kernels::matmul(q, k, true, scores, len, scale, false);
                kernels::softmax_unscaled(scores, len, inv);
                let probs = Mat::dense(scores, len, len);
                let out = &mut out[head * d..];
                kernels::matmul(probs, v, false, out, h, 1.0, false);
                // The softmax's division, on the d outputs of a row instead of its len scores.
                for (row, inv) in out.chunks_mut(h).zip(inv.iter()) {
                    for x in &mut row[..d] {
                        *x *= inv;
                    }
                }
            }
        };
        let tokens: usize = texts.iter().map(|t| t.ids.len()).sum();
        if rayon::current_num_threads() == 1 || texts.len() == 1 || tokens < 64 {
            let mut scratch = (Vec::new(), Vec::new());
            outs.iter_mut()
                .enumerate()
                .for_each(|t| task(&mut scratch, t));
        } else {
            outs.par_iter_mut()
                .enumerate()
                .with_max_len(1)
                .for_each_init(|| (Vec::new(), Vec::new()), task);
        }
    }
}

/// `out = x · weight` over `tokens` rows (the bias is added by the caller's fused step).
fn dense(layer: &Dense, x: &[f32], tokens: usize, out: &mut [f32]) {
    if let Some(q) = &layer.int8 {
        int8::matmul(x, tokens, layer.input, q, out);
        return;
    }
    kernels::matmul(
        Mat::dense(&x[..tokens * layer.input], tokens, layer.input),
        Mat::dense(&layer.weight, layer.input, layer.output),
        false,
        out,
        layer.output,
        1.0,
        true,
    );
}
