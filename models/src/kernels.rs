//! CPU kernels of the encoder ([`crate::cpu_bert`]): matrix products through the `gemm` crate,
//! and the element-wise steps between them fused into one pass each (bias + GELU, bias +
//! residual + LayerNorm, softmax).
//!
//! The element-wise kernels are plain loops written so the compiler vectorises them (reductions
//! over sixteen independent lanes), compiled once per instruction set by `multiversion` and
//! chosen at run time: AVX-512 or AVX2 on x86-64 (the crate itself is built for the baseline,
//! SSE2), NEON on aarch64. Every kernel has the same portable code on every target.

// The one `unsafe` here is the call into `gemm`, whose raw-pointer interface is checked by
// `matmul` against the slices it is given.
#![allow(unsafe_code)]

use multiversion::multiversion;
use rayon::prelude::*;

/// Lanes of the partial sums in reductions: one AVX-512 register, two AVX2 or four NEON ones.
const LANES: usize = 16;

/// Work (multiply-adds) below which a matrix product runs on the calling thread: starting the
/// pool's threads costs more than they save on a short query's products.
const PARALLEL_MACS: usize = 1 << 21;

/// The activation between the feed-forward layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Activation {
    /// `x Φ(x)` with the exact (erf) normal CDF: BERT's `gelu`.
    Gelu,
    /// The tanh approximation of GELU (`gelu_new`, `gelu_pytorch_tanh`).
    GeluTanh,
    Relu,
}

/// A row-major matrix operand: `rows × cols` values starting at `data[0]`, `stride` apart row to
/// row. Transposed, it is read column by column without a copy.
#[derive(Clone, Copy)]
pub(crate) struct Mat<'a> {
    pub data: &'a [f32],
    pub rows: usize,
    pub cols: usize,
    pub stride: usize,
}

impl<'a> Mat<'a> {
    /// A contiguous `rows × cols` matrix.
    pub fn dense(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Self::strided(data, rows, cols, cols)
    }

    /// `rows × cols` with rows `stride` apart; panics if `data` is too short for that.
    pub fn strided(data: &'a [f32], rows: usize, cols: usize, stride: usize) -> Self {
        assert!(
            cols <= stride || rows <= 1,
            "row stride {stride} < {cols} columns"
        );
        assert!(
            rows == 0 || data.len() >= (rows - 1) * stride + cols,
            "{} values cannot hold {rows} × {cols} with stride {stride}",
            data.len()
        );
        Self {
            data,
            rows,
            cols,
            stride,
        }
    }
}

/// `c = scale · a · b` (`b_t`: `b` is given transposed, `n × k`, and read as `k × n`), with `c`
/// row-major `a.rows × n`, `c_stride` apart. Runs on the pool when the product is large enough and
/// `parallel` allows it. Panics if a slice is too short for its shape.
pub(crate) fn matmul(
    a: Mat<'_>,
    b: Mat<'_>,
    b_t: bool,
    c: &mut [f32],
    c_stride: usize,
    scale: f32,
    parallel: bool,
) {
    let (m, k) = (a.rows, a.cols);
    let (kb, n) = if b_t {
        (b.cols, b.rows)
    } else {
        (b.rows, b.cols)
    };
    assert_eq!(k, kb, "inner dimensions differ: {k} and {kb}");
    assert!(
        m == 0 || c.len() >= (m - 1) * c_stride + n,
        "the output is too short"
    );
    assert!(n <= c_stride || m <= 1, "output stride {c_stride} < {n}");
    if m == 0 || n == 0 {
        return;
    }
    let threads = rayon::current_num_threads();
    let parallelism = if parallel && threads > 1 && m * n * k >= PARALLEL_MACS {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    // gemm's strides: element (i, j) of a matrix is at `i * rs + j * cs`.
    let (b_rs, b_cs) = if b_t {
        (1, b.stride as isize)
    } else {
        (b.stride as isize, 1)
    };
    // SAFETY: every element gemm reads or writes is in its slice: the operands' extents were
    // checked by `Mat::strided`, the output's just above; `c` is borrowed mutably, so nothing
    // else reads or writes it meanwhile.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            c_stride as isize,
            false,
            a.data.as_ptr(),
            1,
            a.stride as isize,
            b.data.as_ptr(),
            b_cs,
            b_rs,
            0.0,
            scale,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// Runs `f` on each group of whole rows of `data` (rows of `width` values), on the pool when
/// there are enough rows to share.
pub(crate) fn for_rows(data: &mut [f32], width: usize, f: impl Fn(usize, &mut [f32]) + Sync) {
    let rows = data.len() / width.max(1);
    let threads = rayon::current_num_threads();
    if threads == 1 || rows < 64 {
        f(0, data);
        return;
    }
    let per = rows.div_ceil(threads * 4).max(16);
    data.par_chunks_mut(per * width)
        .enumerate()
        .for_each(|(i, chunk)| f(i * per, chunk));
}

/// Adds `bias` to every row of `rows`.
#[multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512vl+avx2+fma",
    "x86_64+avx2+fma",
    "aarch64+neon"
))]
pub(crate) fn add_bias(rows: &mut [f32], bias: &[f32]) {
    for row in rows.chunks_exact_mut(bias.len()) {
        for (v, b) in row.iter_mut().zip(bias) {
            *v += b;
        }
    }
}

/// `act(v + bias)` for every row of `rows`.
#[multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512vl+avx2+fma",
    "x86_64+avx2+fma",
    "aarch64+neon"
))]
pub(crate) fn bias_activation(rows: &mut [f32], bias: &[f32], act: Activation) {
    for row in rows.chunks_exact_mut(bias.len()) {
        match act {
            Activation::Gelu => {
                for (v, b) in row.iter_mut().zip(bias) {
                    *v = gelu_erf(*v + b);
                }
            }
            Activation::GeluTanh => {
                for (v, b) in row.iter_mut().zip(bias) {
                    *v = gelu_tanh(*v + b);
                }
            }
            Activation::Relu => {
                for (v, b) in row.iter_mut().zip(bias) {
                    *v = (*v + b).max(0.0);
                }
            }
        }
    }
}

/// `x = LayerNorm(y + bias + x)` row by row: a dense layer's output, its bias and the residual
/// summed and normalised in one pass. `y` has the rows of `x`.
#[multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512vl+avx2+fma",
    "x86_64+avx2+fma",
    "aarch64+neon"
))]
pub(crate) fn residual_layer_norm(
    x: &mut [f32],
    y: &[f32],
    bias: &[f32],
    gamma: &[f32],
    beta: &[f32],
    eps: f32,
) {
    let width = gamma.len();
    for (row, y) in x.chunks_exact_mut(width).zip(y.chunks_exact(width)) {
        for ((v, y), b) in row.iter_mut().zip(y).zip(bias) {
            *v += y + b;
        }
        normalise_row(row, gamma, beta, eps);
    }
}

/// LayerNorm of every row of `x`, in place.
#[multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512vl+avx2+fma",
    "x86_64+avx2+fma",
    "aarch64+neon"
))]
pub(crate) fn layer_norm(x: &mut [f32], gamma: &[f32], beta: &[f32], eps: f32) {
    for row in x.chunks_exact_mut(gamma.len()) {
        normalise_row(row, gamma, beta, eps);
    }
}

#[inline(always)]
fn normalise_row(row: &mut [f32], gamma: &[f32], beta: &[f32], eps: f32) {
    let n = row.len() as f32;
    let mean = sum(row) / n;
    let mut sq = [0f32; LANES];
    let mut chunks = row.chunks_exact(LANES);
    for c in &mut chunks {
        for (s, v) in sq.iter_mut().zip(c) {
            let d = v - mean;
            *s += d * d;
        }
    }
    let tail: f32 = chunks
        .remainder()
        .iter()
        .map(|v| (v - mean) * (v - mean))
        .sum();
    let var = (sq.iter().sum::<f32>() + tail) / n;
    let inv = 1.0 / (var + eps).sqrt();
    for ((v, g), b) in row.iter_mut().zip(gamma).zip(beta) {
        *v = (*v - mean) * inv * g + b;
    }
}

/// Softmax without its last division: every row of `rows` becomes `e^(x − max)`, and `inv`
/// gets each row's `1 / Σ`. Attention divides its output rows instead (head-size values a row,
/// not sequence-length ones).
#[multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512vl+avx2+fma",
    "x86_64+avx2+fma",
    "aarch64+neon"
))]
pub(crate) fn softmax_unscaled(rows: &mut [f32], width: usize, inv: &mut [f32]) {
    for (row, inv) in rows.chunks_exact_mut(width).zip(inv) {
        let max = max(row);
        let mut acc = [0f32; LANES];
        let mut chunks = row.chunks_exact_mut(LANES);
        for c in &mut chunks {
            for (a, v) in acc.iter_mut().zip(c.iter_mut()) {
                *v = exp(*v - max);
                *a += *v;
            }
        }
        let mut total = acc.iter().sum::<f32>();
        for v in chunks.into_remainder() {
            *v = exp(*v - max);
            total += *v;
        }
        *inv = 1.0 / total;
    }
}

#[inline(always)]
fn sum(row: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let mut chunks = row.chunks_exact(LANES);
    for c in &mut chunks {
        for (a, v) in acc.iter_mut().zip(c) {
            *a += v;
        }
    }
    acc.iter().sum::<f32>() + chunks.remainder().iter().sum::<f32>()
}

#[inline(always)]
fn max(row: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let mut chunks = row.chunks_exact(LANES);
    for c in &mut chunks {
        for (a, v) in acc.iter_mut().zip(c) {
            *a = a.max(*v);
        }
    }
    let lanes = acc.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    chunks.remainder().iter().copied().fold(lanes, f32::max)
}

/// `e^x` for f32 (Cephes `expf`: a degree-6 polynomial after reduction by powers of two; within
/// 2 ulp), branch-free so it vectorises. Inputs below -87.3 give 0, above 88.7 give 2^128.
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    // Below ~-87.3 the result is subnormal or zero: flush to exactly zero, as softmax wants.
    let underflow = x < -87.3;
    let x = x.clamp(-87.3, 88.7);
    // Round to nearest by the 1.5 · 2^23 trick (vectorises where `round` may not).
    // The integer n is then in the low bits of the shifted value, read without a float-to-int
    // cast (Rust's saturating `as` does not vectorise).
    const SHIFT: f32 = 12_582_912.0;
    let shifted = x * std::f32::consts::LOG2_E + SHIFT;
    let n = shifted - SHIFT;
    let n_bits = shifted.to_bits().wrapping_sub(SHIFT.to_bits());
    let r = x - n * 0.693_359_4 - n * -2.121_944_4e-4;
    let mut p = 1.987_569_1e-4_f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let e = p * r * r + r + 1.0;
    let scale = f32::from_bits(n_bits.wrapping_add(127) << 23);
    if underflow {
        0.0
    } else {
        e * scale
    }
}

/// erf for f32: the odd rational approximation on [-4, 4] that Eigen and XLA use (within a few
/// ulp), ±1 outside (where |erf − ±1| < 2e-8).
#[inline(always)]
pub(crate) fn erf(x: f32) -> f32 {
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let mut p = -2.726_142_3e-10_f32;
    p = p * x2 + 2.770_681_4e-8;
    p = p * x2 - 2.101_024_1e-6;
    p = p * x2 - 5.692_506_4e-5;
    p = p * x2 - 7.349_906_3e-4;
    p = p * x2 - 2.954_600_1e-3;
    p = p * x2 - 1.609_603_3e-2;
    let mut q = -1.456_607_2e-5_f32;
    q = q * x2 - 2.133_740_6e-4;
    q = q * x2 - 1.682_827e-3;
    q = q * x2 - 7.373_329_3e-3;
    q = q * x2 - 1.426_474e-2;
    x * p / q
}

/// `x (1 + erf(x / √2)) / 2`.
#[inline(always)]
pub(crate) fn gelu_erf(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// `x (1 + tanh(√(2/π) (x + 0.044715 x³))) / 2`, with `tanh(u) = 1 − 2 / (e^{2u} + 1)`.
#[inline(always)]
fn gelu_tanh(x: f32) -> f32 {
    const C: f32 = 0.797_884_6; // √(2/π)
    let u = C * (x + 0.044_715 * x * x * x);
    let tanh = 1.0 - 2.0 / (exp(2.0 * u) + 1.0);
    0.5 * x * (1.0 + tanh)
}

/// Scales `v` to unit length; an all-zero vector stays zero.
pub(crate) fn normalise(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    for x in v.iter_mut() {
        *x /= norm;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
        let mut c = vec![0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum();
            }
        }
        c
    }

    fn close(got: &[f32], want: &[f32], tol: f32) {
        assert_eq!(got.len(), want.len());
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!((g - w).abs() <= tol * w.abs().max(1.0), "[{i}] {g} vs {w}");
        }
    }

    #[test]
    fn products_match_the_schoolbook_one_plain_transposed_and_strided() {
        let (m, k, n) = (37, 19, 23);
        let a: Vec<f32> = (0..m * k)
            .map(|i| ((i * 7 % 13) as f32 - 6.0) / 5.0)
            .collect();
        let b: Vec<f32> = (0..k * n)
            .map(|i| ((i * 5 % 11) as f32 - 5.0) / 3.0)
            .collect();
        let want = naive(&a, &b, m, k, n);

        let mut c = vec![0f32; m * n];
        matmul(
            Mat::dense(&a, m, k),
            Mat::dense(&b, k, n),
            false,
            &mut c,
            n,
            1.0,
            true,
        );
        close(&c, &want, 1e-5);

        // b given transposed (n × k), scaled, into rows 30 apart.
        let bt: Vec<f32> = (0..n * k).map(|i| b[(i % k) * n + i / k]).collect();
        let mut wide = vec![0f32; m * 30];
        matmul(
            Mat::dense(&a, m, k),
            Mat::dense(&bt, n, k),
            true,
            &mut wide,
            30,
            0.5,
            false,
        );
        let got: Vec<f32> = wide.chunks(30).flat_map(|r| r[..n].to_vec()).collect();
        let half: Vec<f32> = want.iter().map(|v| v * 0.5).collect();
        close(&got, &half, 1e-5);
    }

    #[test]
    fn exp_is_within_a_few_ulp_and_flushes_underflow_to_zero() {
        for i in -8700..=8800 {
            let x = i as f32 / 100.0;
            let (got, want) = (exp(x), x.exp());
            assert!(
                (got - want).abs() <= 4.0 * f32::EPSILON * want,
                "exp({x}) = {got}, want {want}"
            );
        }
        assert_eq!(exp(-100.0), 0.0);
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
    }

    /// Softmax of every row (of `width` values) of `rows`, in place.
    fn softmax(rows: &mut [f32], width: usize) {
        let mut inv = vec![0f32; rows.len() / width.max(1)];
        softmax_unscaled(rows, width, &mut inv);
        for (row, inv) in rows.chunks_exact_mut(width).zip(&inv) {
            for v in row.iter_mut() {
                *v *= inv;
            }
        }
    }

    #[test]
    fn softmax_rows_sum_to_one_and_keep_their_order() {
        let mut rows = vec![1.0, 2.0, 3.0, -1e30, 0.0, 0.0, 0.0, 0.0];
        softmax(&mut rows, 4);
        let e: Vec<f32> = [1f32, 2.0, 3.0].iter().map(|v| (v - 3.0).exp()).collect();
        let s: f32 = e.iter().sum();
        close(&rows[..4], &[e[0] / s, e[1] / s, e[2] / s, 0.0], 1e-6);
        close(&rows[4..], &[0.25; 4], 1e-6);
    }

    #[test]
    fn the_fused_layer_norm_is_layer_norm_of_the_sum() {
        let width = 40;
        let x0: Vec<f32> = (0..2 * width).map(|i| (i as f32 * 0.37).sin()).collect();
        let y: Vec<f32> = (0..2 * width).map(|i| (i as f32 * 0.11).cos()).collect();
        let bias: Vec<f32> = (0..width).map(|i| i as f32 / 100.0).collect();
        let gamma: Vec<f32> = (0..width).map(|i| 1.0 + i as f32 / 50.0).collect();
        let beta: Vec<f32> = (0..width).map(|i| -(i as f32) / 70.0).collect();
        let mut x = x0.clone();
        residual_layer_norm(&mut x, &y, &bias, &gamma, &beta, 1e-12);
        for r in 0..2 {
            let s: Vec<f64> = (0..width)
                .map(|j| f64::from(x0[r * width + j] + y[r * width + j] + bias[j]))
                .collect();
            let mean = s.iter().sum::<f64>() / width as f64;
            let var = s.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / width as f64;
            let want: Vec<f32> = (0..width)
                .map(|j| {
                    ((s[j] - mean) / (var + 1e-12).sqrt() * f64::from(gamma[j])
                        + f64::from(beta[j])) as f32
                })
                .collect();
            close(&x[r * width..(r + 1) * width], &want, 2e-5);
        }
    }

    #[test]
    fn gelu_matches_high_precision_references() {
        // x, gelu(x) = x (1 + erf(x / √2)) / 2.
        let cases = [
            (-5.0f32, -1.433_0e-6f32),
            (-3.0, -0.004_049_7),
            (-1.0, -0.158_655_3),
            (-0.5, -0.154_268_5),
            (0.0, 0.0),
            (0.5, 0.345_731_5),
            (1.0, 0.841_344_7),
            (2.0, 1.954_499_7),
            (3.0, 2.995_950_3),
            (8.0, 8.0),
        ];
        let mut row: Vec<f32> = cases.iter().map(|c| c.0).collect();
        bias_activation(&mut row, &[0.0; 10], Activation::Gelu);
        for ((x, want), got) in cases.iter().zip(row) {
            assert!(
                (got - want).abs() <= 2e-6 * want.abs().max(1.0),
                "gelu({x}) = {got}, want {want}"
            );
        }
        // The tanh form agrees with the erf one to ~1e-3 (its known approximation error).
        let mut t: Vec<f32> = cases.iter().map(|c| c.0).collect();
        bias_activation(&mut t, &[0.0; 10], Activation::GeluTanh);
        for ((x, want), got) in cases.iter().zip(t) {
            assert!(
                (got - want).abs() <= 2e-3,
                "gelu_tanh({x}) = {got}, want ≈ {want}"
            );
        }
    }
}
