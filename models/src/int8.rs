//! Dense layers in int8 for the CPU encoder (`--quantize int8`): weights quantized once at load,
//! symmetric per output column; activations quantized as they come, per row (token), to u8 with
//! a zero point (the GELU's outputs are nearly all positive: asymmetric ranges double their
//! resolution); products summed in i32 and scaled back to f32, where the encoder's fused steps
//! take over.
//!
//! Per-token activation ranges (ONNX Runtime's `quantize_dynamic` uses one per tensor) keep one
//! token's large values from flattening every other token's. On x86-64 with AVX-512 VNNI the
//! product is `vpdpbusd` (u8 × i8, four at a time into i32; the zero point is taken back out
//! with each column's weight sum); elsewhere a portable loop computes the same sums exactly, so
//! both give identical results.
#![allow(unsafe_code)]

use rayon::prelude::*;

/// Output columns per packed block: one 512-bit register of i32 sums.
const COLS: usize = 16;
/// Rows of a task on the pool: their quantized activations stay in L1/L2 while every column
/// block passes over them.
const TASK_ROWS: usize = 64;

/// A weight matrix (`input × output`) in int8, packed for the kernel.
pub(crate) struct QWeights {
    /// `input` rounded up to a multiple of 4 (zero-padded).
    k4: usize,
    output: usize,
    /// Blocks of 16 columns; in each, for every group of 4 inputs, 16 × 4 bytes: column by
    /// column, its 4 consecutive inputs. Columns past `output` are zero.
    packed: Vec<i8>,
    /// Per column: the scale back to f32, and the sum of its quantized weights.
    scales: Vec<f32>,
    sums: Vec<i32>,
}

impl QWeights {
    /// Quantizes `w` (`input × output`, row-major).
    pub fn new(w: &[f32], input: usize, output: usize) -> Self {
        let k4 = input.next_multiple_of(4);
        let blocks = output.div_ceil(COLS);
        let mut scales = vec![0f32; output];
        let mut sums = vec![0i32; output];
        let mut packed = vec![0i8; blocks * k4 * COLS];
        for (col, (scale, sum)) in scales.iter_mut().zip(&mut sums).enumerate() {
            let max = (0..input)
                .map(|k| w[k * output + col].abs())
                .fold(0f32, f32::max);
            *scale = if max > 0.0 { max / 127.0 } else { 1.0 };
            let (block, lane) = (col / COLS, col % COLS);
            for k in 0..input {
                let q = (w[k * output + col] / *scale).round().clamp(-127.0, 127.0) as i8;
                *sum += i32::from(q);
                packed[block * k4 * COLS + (k / 4) * COLS * 4 + lane * 4 + k % 4] = q;
            }
        }
        Self {
            k4,
            output,
            packed,
            scales,
            sums,
        }
    }
}

/// `out = x · w` for `rows` rows of `x` (`input` wide), into `out` (`output` wide).
pub(crate) fn matmul(x: &[f32], rows: usize, input: usize, w: &QWeights, out: &mut [f32]) {
    let n = w.output;
    assert!(x.len() >= rows * input && out.len() >= rows * n);
    let task = |(t, out): (usize, &mut [f32])| {
        let first = t * TASK_ROWS;
        let rows = &x[first * input..(first + out.len() / n) * input];
        product(&QRows::new(rows, input, w.k4), w, out);
    };
    let out = &mut out[..rows * n];
    if rayon::current_num_threads() > 1 && rows > TASK_ROWS {
        out.par_chunks_mut(TASK_ROWS * n).enumerate().for_each(task);
    } else {
        out.chunks_mut(TASK_ROWS * n).enumerate().for_each(task);
    }
}

/// Rows of activations quantized to u8, `k4` apart: `x ≈ scales[r] · (q − zeros[r])`.
struct QRows {
    q: Vec<u8>,
    scales: Vec<f32>,
    zeros: Vec<i32>,
}

impl QRows {
    /// Quantizes the rows of `x` (`input` wide), each padded to `k4` bytes.
    fn new(x: &[f32], input: usize, k4: usize) -> Self {
        let rows = x.len() / input;
        let mut q = vec![0u8; rows * k4];
        let mut scales = vec![0f32; rows];
        let mut zeros = vec![0i32; rows];
        for (r, row) in x.chunks_exact(input).enumerate() {
            // Padding inputs (past `input`) meet zero weights: any value will do.
            (scales[r], zeros[r]) = quantize_row(row, &mut q[r * k4..r * k4 + input]);
        }
        Self { q, scales, zeros }
    }

    // Only the VNNI kernel asks; the portable loop walks the rows itself.
    #[cfg(target_arch = "x86_64")]
    fn rows(&self) -> usize {
        self.scales.len()
    }
}

/// Quantizes `row` to u8 in `q`: `x ≈ scale · (q − zero)`, over the row's range widened to
/// include 0 (so 0 is exact). Returns `(scale, zero)`.
#[multiversion::multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512vl+avx2+fma",
    "x86_64+avx2+fma",
    "aarch64+neon"
))]
fn quantize_row(row: &[f32], q: &mut [u8]) -> (f32, i32) {
    let mut lo = [0f32; 16];
    let mut hi = [0f32; 16];
    let mut chunks = row.chunks_exact(16);
    for c in &mut chunks {
        for ((l, h), v) in lo.iter_mut().zip(&mut hi).zip(c) {
            *l = l.min(*v);
            *h = h.max(*v);
        }
    }
    let (mut min, mut max) = (0f32, 0f32);
    for v in lo.iter().chain(&hi).chain(chunks.remainder()) {
        min = min.min(*v);
        max = max.max(*v);
    }
    let scale = if max > min { (max - min) / 255.0 } else { 1.0 };
    let inv = 1.0 / scale;
    let zero = (-min * inv).round().clamp(0.0, 255.0);
    // Round to nearest through the 1.5 · 2^23 shift (vectorises; `as` casts do not).
    const SHIFT: f32 = 12_582_912.0;
    for (q, v) in q.iter_mut().zip(row) {
        let shifted = (v * inv + zero).clamp(0.0, 255.0) + SHIFT;
        *q = shifted.to_bits().wrapping_sub(SHIFT.to_bits()) as u8;
    }
    (scale, zero as i32)
}

/// `out[r][c] = scale_r · scale_c · Σ_k (q[r][k] − zero_r) · w[k][c]`.
fn product(a: &QRows, w: &QWeights, out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512vnni")
        && std::arch::is_x86_feature_detected!("avx512bw")
    {
        // SAFETY: the CPU has the features the kernel is compiled for (checked just above).
        unsafe { vnni::product(a, w, out) };
        return;
    }
    portable_product(a, w, out);
}

/// The same sums as the VNNI kernel, in plain loops.
#[multiversion::multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512vl+avx2+fma",
    "x86_64+avx2+fma",
    "aarch64+neon"
))]
fn portable_product(a: &QRows, w: &QWeights, out: &mut [f32]) {
    let n = w.output;
    let block_len = w.k4 * COLS;
    for (r, row) in a.q.chunks_exact(w.k4).enumerate() {
        for (block, packed) in w.packed.chunks_exact(block_len).enumerate() {
            // Sixteen columns at once, as the VNNI kernel: the lanes vectorise.
            let mut acc = [0i32; COLS];
            for (group, wq) in row.chunks_exact(4).zip(packed.chunks_exact(COLS * 4)) {
                for (sum, col) in acc.iter_mut().zip(wq.chunks_exact(4)) {
                    for (&x, &v) in group.iter().zip(col) {
                        *sum += i32::from(x) * i32::from(v);
                    }
                }
            }
            let c0 = block * COLS;
            for (lane, sum) in acc.iter().enumerate().take(n.saturating_sub(c0)) {
                let c = c0 + lane;
                out[r * n + c] = (sum - a.zeros[r] * w.sums[c]) as f32 * w.scales[c] * a.scales[r];
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod vnni {
    use super::{QRows, QWeights, COLS};
    use std::arch::x86_64::*;

    /// Rows per micro-kernel call: 2 × 8 accumulators of 16 columns.
    const MR: usize = 8;

    /// # Safety
    /// The CPU must have AVX-512 F, BW and VNNI.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    pub(super) unsafe fn product(a: &QRows, w: &QWeights, out: &mut [f32]) {
        let rows = a.rows();
        let blocks = w.output.div_ceil(COLS);
        let mut b = 0;
        while b < blocks {
            let pair = blocks - b >= 2;
            let mut r = 0;
            while r < rows {
                let mr = (rows - r).min(MR);
                // SAFETY: rows r..r+mr and blocks b..b+1|2 are within `a`, `out` and `w`.
                unsafe { tile(a, r, mr, w, b, pair, out) };
                r += mr;
            }
            b += if pair { 2 } else { 1 };
        }
    }

    /// Rows `r..r + mr` by column blocks `b` (and `b + 1` if `pair`).
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    unsafe fn tile(
        a: &QRows,
        r: usize,
        mr: usize,
        w: &QWeights,
        b: usize,
        pair: bool,
        out: &mut [f32],
    ) {
        let k4 = w.k4;
        let n = w.output;
        let zero = _mm512_setzero_si512();
        let mut acc0 = [zero; MR];
        let mut acc1 = [zero; MR];
        let w0 = w.packed[b * k4 * COLS..].as_ptr();
        let w1 = if pair {
            w.packed[(b + 1) * k4 * COLS..].as_ptr()
        } else {
            w0
        };
        let x0 = a.q[r * k4..].as_ptr();
        for k in 0..k4 / 4 {
            // SAFETY: k < k4 / 4, so each 64-byte load is within its block of k4 × 16 bytes,
            // and each 4-byte activation read within row i's k4 bytes.
            unsafe {
                let wa = _mm512_loadu_si512(w0.add(k * 64).cast());
                let wb = _mm512_loadu_si512(w1.add(k * 64).cast());
                for i in 0..MR {
                    if i < mr {
                        let x = _mm512_set1_epi32(
                            x0.add(i * k4 + k * 4).cast::<i32>().read_unaligned(),
                        );
                        acc0[i] = _mm512_dpbusd_epi32(acc0[i], x, wa);
                        acc1[i] = _mm512_dpbusd_epi32(acc1[i], x, wb);
                    }
                }
            }
        }
        let store = |acc: &[__m512i; MR], block: usize, out: &mut [f32]| {
            let c0 = block * COLS;
            let cols = (n - c0).min(COLS);
            let mut sums = [0i32; COLS];
            let mut wscale = [0f32; COLS];
            sums[..cols].copy_from_slice(&w.sums[c0..c0 + cols]);
            wscale[..cols].copy_from_slice(&w.scales[c0..c0 + cols]);
            // SAFETY: plain loads and arithmetic on registers; stores go through slices.
            unsafe {
                let sums = _mm512_loadu_si512(sums.as_ptr().cast());
                let ws = _mm512_loadu_ps(wscale.as_ptr());
                for (i, &acc) in acc.iter().enumerate().take(mr) {
                    let offset = _mm512_mullo_epi32(sums, _mm512_set1_epi32(a.zeros[r + i]));
                    let v = _mm512_cvtepi32_ps(_mm512_sub_epi32(acc, offset));
                    let v = _mm512_mul_ps(_mm512_mul_ps(v, ws), _mm512_set1_ps(a.scales[r + i]));
                    let mut tmp = [0f32; COLS];
                    _mm512_storeu_ps(tmp.as_mut_ptr(), v);
                    let row = (r + i) * n + c0;
                    out[row..row + cols].copy_from_slice(&tmp[..cols]);
                }
            }
        };
        store(&acc0, b, out);
        if pair {
            store(&acc1, b + 1, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn int8_products_are_close_to_f32_and_the_kernels_agree() {
        let (m, k, n) = (21, 70, 53);
        let x: Vec<f32> = (0..m * k)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 17.0)
            .collect();
        let w: Vec<f32> = (0..k * n)
            .map(|i| ((i * 13 % 29) as f32 - 14.0) / 40.0)
            .collect();
        let q = QWeights::new(&w, k, n);
        let mut got = vec![0f32; m * n];
        matmul(&x, m, k, &q, &mut got);
        let mut max_err = 0f32;
        let mut max_val = 0f32;
        for i in 0..m {
            for j in 0..n {
                let want: f32 = (0..k).map(|p| x[i * k + p] * w[p * n + j]).sum();
                max_err = max_err.max((got[i * n + j] - want).abs());
                max_val = max_val.max(want.abs());
            }
        }
        assert!(max_err <= 0.02 * max_val, "error {max_err} of {max_val}");

        // The portable loop gives exactly what the dispatched kernel gave.
        let mut portable = vec![0f32; m * n];
        portable_product(&QRows::new(&x, k, q.k4), &q, &mut portable);
        assert_eq!(portable, got);
    }
}
