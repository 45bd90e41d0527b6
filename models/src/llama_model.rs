//! A llama-family decoder over GGUF weights: a fork of candle-transformers' `quantized_llama`
//! (GGUF path only, no mixture of experts) with three changes:
//! - the KV cache can be cut back to a prefix ([`LlamaModel::truncate`]), so a new prompt that
//!   shares its start with the previous one (the next turn of a conversation) runs only its new
//!   tokens;
//! - the token-embedding table stays quantized and only the rows looked up are dequantized (the
//!   upstream model dequantizes all of it: 113 MB of f32 for SmolLM2's 49,152 × 576 table);
//! - weights in a type whose CPU dot product candle has no SIMD kernel for (Q4_1, Q5_0, Q5_1) are
//!   requantized to Q8_0 when loaded, on the CPU only: Q8_0 holds every Q4_1 value to within
//!   half a step of 1/127 of its block's largest value, and runs on candle's AVX2 / NEON path
//!   (`docs/BENCHMARKS.md` has the speed-up).

use std::collections::HashMap;
use std::io::{Read, Seek};
use std::sync::Arc;

use candle_core::quantized::{gguf_file, GgmlDType, QMatMul, QTensor};
use candle_core::{DType, Device, IndexOp, Module, Result, Tensor, D};
use candle_transformers::quantized_nn::RmsNorm;

/// Positions the rotary tables are computed for; the context window is capped at this.
pub const MAX_POSITIONS: usize = 8192;

/// The model's shape, from the GGUF metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct LlamaConfig {
    /// `general.architecture`.
    pub architecture: String,
    /// Transformer blocks.
    pub blocks: usize,
    /// Hidden size.
    pub hidden: usize,
    /// Attention heads.
    pub heads: usize,
    /// Key/value heads (grouped-query attention).
    pub kv_heads: usize,
    /// Positions the model was trained for (`<arch>.context_length`), capped at
    /// [`MAX_POSITIONS`].
    pub context_length: usize,
    /// Vocabulary size (rows of the embedding table).
    pub vocab: usize,
}

/// Rows from which a matmul dequantizes its weight and runs in f32 (see `Weight::forward`).
const DEQUANTIZE_ROWS: usize = 32;

/// A weight, with its quantized tensor kept for the fused kernels.
struct Weight {
    mm: QMatMul,
    q: Option<Arc<QTensor>>,
    /// Columns of zeros the weight was padded with (see [`pad_for_vnni`]): the input gets as
    /// many.
    pad: usize,
}

/// Whether candle's tiled Q8_0 kernels (AVX-512 VNNI) run here: they need the inner dimension
/// to be a multiple of 256, which SmolLM2's 576 is not, so weights are padded with zero
/// columns to reach them (`docs/BENCHMARKS.md` has the speed-up of the decode step).
fn pad_for_vnni() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx512f") && std::is_x86_feature_detected!("avx512vnni")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

impl Weight {
    /// `x` times this weight; one row (a decode step) through the fused kernel when there is
    /// one, which is faster than QMatMul's own single-row path even for one weight.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let original = x;
        let padded;
        let x = if self.pad > 0 {
            padded = x.pad_with_zeros(D::Minus1, 0, self.pad)?;
            &padded
        } else {
            x
        };
        let rows: usize = x.dims().iter().rev().skip(1).product();
        if let (Some(q), 1) = (self.q.as_deref(), rows) {
            if let Some(mut out) = QTensor::gemv_fused_shared_lhs(&[q], &x.contiguous()?)? {
                if let Some(y) = out.pop() {
                    return Ok(y);
                }
            }
        }
        // A prompt batch: the weight dequantized for this call and multiplied in f32 by gemm's
        // blocked kernels reads the prompt several times faster than one quantized dot product
        // per (row, output) pair; the f32 copy lives only for the call.
        if let (Some(q), true) = (
            self.q.as_deref(),
            rows >= DEQUANTIZE_ROWS && x.device().is_cpu(),
        ) {
            // Unpadded: the zero columns would only add work.
            let k = q.shape().dims2()?.1 - self.pad;
            let w = q.dequantize(x.device())?.narrow(1, 0, k)?;
            let dims = original.dims().to_vec();
            let y = original.reshape((rows, k))?.matmul(&w.t()?)?;
            let mut out = dims;
            if let Some(last) = out.last_mut() {
                *last = y.dim(1)?;
            }
            return y.reshape(out);
        }
        self.mm.forward(x)
    }

    /// `x` times each of `ws`: in one pass over `x` where candle has a fused kernel for them (one
    /// row on AVX-512 VNNI or ARM: a decode step's q, k, v or gate and up), else one by one.
    fn fused(ws: &[&Weight], x: &Tensor) -> Result<Vec<Tensor>> {
        let qs: Option<Vec<&QTensor>> = ws.iter().map(|w| w.q.as_deref()).collect();
        let rows: usize = x.dims().iter().rev().skip(1).product();
        let pad = ws.first().map_or(0, |w| w.pad);
        if let (Some(qs), 1, true) = (qs, rows, ws.iter().all(|w| w.pad == pad)) {
            let x = if pad > 0 {
                x.pad_with_zeros(D::Minus1, 0, pad)?
            } else {
                x.clone()
            };
            if let Some(out) = QTensor::gemv_fused_shared_lhs(&qs, &x.contiguous()?)? {
                return Ok(out);
            }
        }
        ws.iter().map(|w| w.forward(x)).collect()
    }
}

struct Layer {
    wq: Weight,
    wk: Weight,
    wv: Weight,
    wo: Weight,
    attn_norm: RmsNorm,
    w_gate: Weight,
    w_down: Weight,
    w_up: Weight,
    ffn_norm: RmsNorm,
    kv: Option<Kv>,
}

/// One layer's keys and values: buffers of `capacity` positions (doubled when full), of which
/// the first `len` hold the sequence. Appending writes in place, so a generated token costs a
/// copy of its own keys and values, not of the whole cache.
struct Kv {
    k: Tensor,
    v: Tensor,
    len: usize,
}

impl Kv {
    /// Appends `k` and `v` (`(1, kv_heads, n, head_dim)`) and returns the whole sequence's keys
    /// and values, contiguous.
    fn append(slot: &mut Option<Kv>, k: &Tensor, v: &Tensor) -> Result<(Tensor, Tensor)> {
        let n = k.dim(2)?;
        let len = slot.as_ref().map_or(0, |kv| kv.len);
        let capacity = slot.as_ref().map_or(0, |kv| kv.k.dim(2).unwrap_or(0));
        if len + n > capacity {
            let (b, heads, _, hd) = k.dims4()?;
            let new_capacity = (len + n).next_power_of_two().max(256);
            let grow = |old: Option<&Tensor>| -> Result<Tensor> {
                let t = Tensor::zeros((b, heads, new_capacity, hd), k.dtype(), k.device())?;
                if let Some(old) = old {
                    t.slice_set(&old.narrow(2, 0, len)?.contiguous()?, 2, 0)?;
                }
                Ok(t)
            };
            let k2 = grow(slot.as_ref().map(|kv| &kv.k))?;
            let v2 = grow(slot.as_ref().map(|kv| &kv.v))?;
            *slot = Some(Kv { k: k2, v: v2, len });
        }
        let kv = slot
            .as_mut()
            .ok_or_else(|| candle_core::Error::Msg("no KV cache".into()))?;
        kv.k.slice_set(k, 2, len)?;
        kv.v.slice_set(v, 2, len)?;
        kv.len = len + n;
        // Views, not copies: the matmuls read a batch stride past the unused capacity.
        Ok((kv.k.narrow(2, 0, kv.len)?, kv.v.narrow(2, 0, kv.len)?))
    }
}

/// The model with its KV cache (one sequence).
pub struct LlamaModel {
    config: LlamaConfig,
    embeddings: QTensor,
    layers: Vec<Layer>,
    norm: RmsNorm,
    output: Weight,
    cos: Tensor,
    sin: Tensor,
    neox: bool,
    head_dim: usize,
    masks: HashMap<(usize, usize), Tensor>,
    /// Positions held in the KV cache.
    cached: usize,
    device: Device,
}

fn md<'a>(ct: &'a gguf_file::Content, key: &str) -> Result<&'a gguf_file::Value> {
    ct.metadata
        .get(key)
        .ok_or_else(|| candle_core::Error::Msg(format!("GGUF metadata has no `{key}`")))
}

/// Reads the model's shape from GGUF metadata.
///
/// # Errors
/// A candle error naming the missing or mistyped key.
pub fn config(ct: &gguf_file::Content) -> Result<LlamaConfig> {
    let architecture = md(ct, "general.architecture")?.to_string()?.clone();
    let key = |k: &str| format!("{architecture}.{k}");
    let u = |k: &str| -> Result<usize> { Ok(md(ct, &key(k))?.to_u32()? as usize) };
    let vocab = match ct.tensor_infos.get("token_embd.weight") {
        Some(info) => info.shape.dims().first().copied().unwrap_or(0),
        None => candle_core::bail!("GGUF has no tensor `token_embd.weight`"),
    };
    Ok(LlamaConfig {
        blocks: u("block_count")?,
        hidden: u("embedding_length")?,
        heads: u("attention.head_count")?,
        kv_heads: u("attention.head_count_kv")?,
        context_length: u("context_length").unwrap_or(2048).min(MAX_POSITIONS),
        vocab,
        architecture,
    })
}

/// `t` (Q8_0, `n × k`) with `pad` zero columns after each row: whole zero blocks appended to each
/// row's blocks, bytes copied as they are (exact, and no f32 copy of a 113 MB table).
fn pad_q8_0(t: &QTensor, n: usize, k: usize, pad: usize) -> Result<QTensor> {
    let block = GgmlDType::Q8_0.type_size();
    let per_row = k / GgmlDType::Q8_0.block_size() * block;
    let extra = pad / GgmlDType::Q8_0.block_size() * block;
    let data = t.data()?;
    let mut out = Vec::with_capacity(n * (per_row + extra));
    for row in data.chunks_exact(per_row) {
        out.extend_from_slice(row);
        // A zero block: scale 0.0 (f16 zero bits) and 32 zero quants.
        out.resize(out.len() + extra, 0);
    }
    let storage = candle_core::quantized::QStorage::from_data(
        std::borrow::Cow::Owned(out),
        &t.device(),
        GgmlDType::Q8_0,
    )?;
    QTensor::new(storage, (n, k + pad))
}

/// Loads a tensor, requantizing it to Q8_0 on the CPU where its own type has no SIMD kernel.
fn weight<R: Read + Seek>(
    ct: &gguf_file::Content,
    r: &mut R,
    name: &str,
    device: &Device,
) -> Result<Weight> {
    let mut t = ct.tensor(r, name, device)?;
    let slow_on_cpu = matches!(
        t.dtype(),
        GgmlDType::Q4_1 | GgmlDType::Q5_0 | GgmlDType::Q5_1
    );
    if device.is_cpu() && slow_on_cpu && t.shape().dims().last().is_some_and(|d| d % 32 == 0) {
        let f = t.dequantize(device)?;
        t = QTensor::quantize(&f, GgmlDType::Q8_0)?;
    }
    let mut pad = 0;
    if device.is_cpu() && t.dtype() == GgmlDType::Q8_0 && pad_for_vnni() {
        let (n, k) = t.shape().dims2()?;
        if k % 256 != 0 && n % 16 == 0 {
            pad = k.next_multiple_of(256) - k;
            t = pad_q8_0(&t, n, k, pad)?;
        }
    }
    let t = Arc::new(t);
    let mm = QMatMul::from_arc(t.clone())?;
    // Only a tensor QMatMul keeps quantized can go through the fused kernels.
    let q = matches!(mm, QMatMul::QTensor(_)).then_some(t);
    Ok(Weight { mm, q, pad })
}

impl LlamaModel {
    /// Loads the model from a GGUF file's content.
    ///
    /// # Errors
    /// A candle error for a missing tensor or metadata key, or an unreadable file.
    pub fn load<R: Read + Seek>(
        ct: &gguf_file::Content,
        r: &mut R,
        device: &Device,
    ) -> Result<Self> {
        let config = config(ct)?;
        let arch = config.architecture.as_str();
        let key = |k: &str| format!("{arch}.{k}");
        let eps = f64::from(md(ct, &key("attention.layer_norm_rms_epsilon"))?.to_f32()?);
        let rope_base = md(ct, &key("rope.freq_base"))
            .and_then(|v| v.to_f32())
            .unwrap_or(10_000.0);
        let head_dim = config.hidden / config.heads.max(1);
        let rope_dim = md(ct, &key("rope.dimension_count"))
            .and_then(|v| v.to_u32())
            .map_or(head_dim, |d| d as usize);
        // llama.cpp's llama_model_rope_type: these families rotate halves, llama pairs.
        let neox = matches!(
            arch,
            "qwen" | "qwen2" | "qwen3" | "falcon" | "phi2" | "phi3" | "stablelm" | "starcoder2"
        );
        let (cos, sin) = rope_tables(rope_dim, rope_base, device)?;

        let embeddings = ct.tensor(r, "token_embd.weight", device)?;
        let norm = RmsNorm::from_qtensor(ct.tensor(r, "output_norm.weight", device)?, eps)?;
        // Tied output: SmolLM2 (like most small models) reuses the embedding table.
        let output = if ct.tensor_infos.contains_key("output.weight") {
            weight(ct, r, "output.weight", device)?
        } else {
            weight(ct, r, "token_embd.weight", device)?
        };
        let mut layers = Vec::with_capacity(config.blocks);
        for i in 0..config.blocks {
            let p = format!("blk.{i}");
            layers.push(Layer {
                wq: weight(ct, r, &format!("{p}.attn_q.weight"), device)?,
                wk: weight(ct, r, &format!("{p}.attn_k.weight"), device)?,
                wv: weight(ct, r, &format!("{p}.attn_v.weight"), device)?,
                wo: weight(ct, r, &format!("{p}.attn_output.weight"), device)?,
                attn_norm: RmsNorm::from_qtensor(
                    ct.tensor(r, &format!("{p}.attn_norm.weight"), device)?,
                    eps,
                )?,
                w_gate: weight(ct, r, &format!("{p}.ffn_gate.weight"), device)?,
                w_down: weight(ct, r, &format!("{p}.ffn_down.weight"), device)?,
                w_up: weight(ct, r, &format!("{p}.ffn_up.weight"), device)?,
                ffn_norm: RmsNorm::from_qtensor(
                    ct.tensor(r, &format!("{p}.ffn_norm.weight"), device)?,
                    eps,
                )?,
                kv: None,
            });
        }
        Ok(Self {
            config,
            embeddings,
            layers,
            norm,
            output,
            cos,
            sin,
            neox,
            head_dim,
            masks: HashMap::new(),
            cached: 0,
            device: device.clone(),
        })
    }

    /// The model's shape.
    pub fn config(&self) -> &LlamaConfig {
        &self.config
    }

    /// Cuts the KV cache back to its first `len` positions (all of it for `len` 0).
    ///
    /// # Errors
    /// A candle error from narrowing the cache tensors.
    pub fn truncate(&mut self, len: usize) -> Result<()> {
        if len >= self.cached {
            return Ok(());
        }
        for layer in &mut self.layers {
            match layer.kv.as_mut() {
                Some(kv) if len > 0 => kv.len = kv.len.min(len),
                _ => layer.kv = None,
            }
        }
        self.cached = len;
        Ok(())
    }

    /// Runs `tokens` at the positions after the cached ones and returns the logits of the last
    /// one (f32, one row of `vocab`).
    ///
    /// # Errors
    /// A candle error; an input past the rotary tables' [`MAX_POSITIONS`].
    pub fn forward(&mut self, tokens: &[u32]) -> Result<Tensor> {
        let seq_len = tokens.len();
        let pos = self.cached;
        if seq_len == 0 {
            candle_core::bail!("no tokens to run");
        }
        if pos + seq_len > self.cos.dim(0)? {
            candle_core::bail!(
                "{} positions exceed the model's {}",
                pos + seq_len,
                self.cos.dim(0)?
            );
        }
        let ids = Tensor::new(tokens, &self.device)?;
        let mut x = self.embeddings.embedding(&ids)?.unsqueeze(0)?;
        let mask = if seq_len == 1 {
            None
        } else {
            Some(self.mask(seq_len, pos)?)
        };
        let cos = self.cos.narrow(0, pos, seq_len)?;
        let sin = self.sin.narrow(0, pos, seq_len)?;
        let (heads, kv_heads, head_dim, neox) = (
            self.config.heads,
            self.config.kv_heads,
            self.head_dim,
            self.neox,
        );
        for layer in &mut self.layers {
            let residual = x.clone();
            let h = layer.attn_norm.forward(&x)?;
            let attn = layer.attention(
                &h,
                mask.as_ref(),
                &cos,
                &sin,
                heads,
                kv_heads,
                head_dim,
                neox,
            )?;
            x = (attn + residual)?;
            let residual = x.clone();
            let h = layer.ffn_norm.forward(&x)?;
            let mut gate_up = Weight::fused(&[&layer.w_gate, &layer.w_up], &h)?.into_iter();
            let (Some(gate), Some(up)) = (gate_up.next(), gate_up.next()) else {
                candle_core::bail!("the fused feed-forward gave no output");
            };
            let gate = candle_nn::ops::silu(&gate)?;
            x = (layer.w_down.forward(&(gate * up)?)? + residual)?;
        }
        self.cached = pos + seq_len;
        let x = self.norm.forward(&x)?;
        let last = x.i((.., seq_len - 1, ..))?;
        self.output.forward(&last)?.squeeze(0)?.to_dtype(DType::F32)
    }

    /// The causal mask of `seq_len` queries after `pos` cached positions, its rows repeated
    /// once per query head that shares a key head (see `Layer::attention`).
    fn mask(&mut self, seq_len: usize, pos: usize) -> Result<Tensor> {
        let key = (seq_len, pos + seq_len);
        if let Some(m) = self.masks.get(&key) {
            return Ok(m.clone());
        }
        let m = candle_transformers::utils::build_causal_mask(seq_len, pos, &self.device)?;
        let group = self.config.heads / self.config.kv_heads.max(1);
        let m = Tensor::cat(&vec![&m; group], 0)?;
        self.masks.insert(key, m.clone());
        Ok(m)
    }
}

impl Layer {
    #[allow(clippy::too_many_arguments)]
    fn attention(
        &mut self,
        x: &Tensor,
        mask: Option<&Tensor>,
        cos: &Tensor,
        sin: &Tensor,
        heads: usize,
        kv_heads: usize,
        head_dim: usize,
        neox: bool,
    ) -> Result<Tensor> {
        let (b, seq_len, hidden) = x.dims3()?;
        let mut qkv = Weight::fused(&[&self.wq, &self.wk, &self.wv], x)?.into_iter();
        let (Some(q), Some(k), Some(v)) = (qkv.next(), qkv.next(), qkv.next()) else {
            candle_core::bail!("the fused attention projection gave no output");
        };
        let q = q
            .reshape((b, seq_len, heads, head_dim))?
            .transpose(1, 2)?
            .contiguous()?;
        let k = k
            .reshape((b, seq_len, kv_heads, head_dim))?
            .transpose(1, 2)?
            .contiguous()?;
        let v = v
            .reshape((b, seq_len, kv_heads, head_dim))?
            .transpose(1, 2)?
            .contiguous()?;
        let rope = if neox {
            candle_nn::rotary_emb::rope
        } else {
            candle_nn::rotary_emb::rope_i
        };
        let q = rope(&q, cos, sin)?;
        let k = rope(&k, cos, sin)?;
        let (k, v) = Kv::append(&mut self.kv, &k, &v)?;
        // Grouped-query attention without copying keys per query head: the query heads that
        // share a key head (consecutive ones) become rows of one matrix, `(kv_heads,
        // group * seq_len, head_dim)`, multiplied with that key head once.
        let group = heads / kv_heads.max(1);
        let q = q.reshape((b, kv_heads, group * seq_len, head_dim))?;
        let att = (q.matmul(&k.t()?)? / (head_dim as f64).sqrt())?;
        let att = match mask {
            Some(m) => {
                let m = m.broadcast_as(att.shape())?;
                let neg =
                    Tensor::new(f32::NEG_INFINITY, att.device())?.broadcast_as(att.shape())?;
                m.where_cond(&neg, &att)?
            }
            None => att,
        };
        let att = candle_nn::ops::softmax_last_dim(&att)?;
        let y = att.matmul(&v)?.reshape((b, heads, seq_len, head_dim))?;
        let y = y.transpose(1, 2)?.reshape((b, seq_len, hidden))?;
        self.wo.forward(&y)
    }
}

fn rope_tables(dim: usize, base: f32, device: &Device) -> Result<(Tensor, Tensor)> {
    let theta: Vec<f32> = (0..dim)
        .step_by(2)
        .map(|i| 1.0 / base.powf(i as f32 / dim as f32))
        .collect();
    let n = theta.len();
    let theta = Tensor::new(theta.as_slice(), device)?;
    let idx = Tensor::arange(0, MAX_POSITIONS as u32, device)?
        .to_dtype(DType::F32)?
        .reshape((MAX_POSITIONS, 1))?;
    let freqs = idx.matmul(&theta.reshape((1, n))?)?;
    Ok((freqs.cos()?, freqs.sin()?))
}

/// The index of the largest logit (greedy decoding).
///
/// # Errors
/// A candle error for a tensor that is not a vector.
pub fn argmax(logits: &Tensor) -> Result<u32> {
    logits.argmax(D::Minus1)?.to_scalar::<u32>()
}
