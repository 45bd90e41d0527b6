//! Exact copies of an index's vectors, for rescoring the graph's int8 candidates in f32.
//!
//! Reading a vector back out of sqlite-vec costs tens of microseconds (a blob handle into a
//! 1,024-vector chunk each time), so the index keeps its own: the rows of the last save in a
//! memory-mapped file (page cache, not process memory, on a device short of RAM), and the rows
//! changed since in memory. A table from chunk seq to row makes a lookup one or two memory reads.
//!
//! File layout (little-endian): the Outpost header ([`header`], kind `V`); then dims (u32), the
//! int8 scale (f32), the row count (u64); each row's chunk seq (i64), ascending; then the rows
//! (f32 × dims each). The header's CRC covers everything but the rows, whose length is checked
//! exactly: hashing 100k 384-d rows (147 MB) took 8–10 ms, a quarter of the whole index's load
//! (`load_cost_of_checksumming_the_rows` in `ann.rs`). It is written under a temporary name and
//! renamed, like the index beside it.

use std::io::Write;
use std::path::Path;

use memmap2::Mmap;

use zerocopy::FromBytes;

use super::header::{self, Rejected};
use crate::error::{Error, Result};

/// Bytes of the payload before the seqs: dims, scale, row count.
const META: usize = 16;

/// Where a row lives: the mapped file or the in-memory tail.
#[derive(Clone, Copy)]
enum Row {
    None,
    File(u32),
    Tail(u32),
}

pub(super) struct Vectors {
    dims: usize,
    /// Multiplier from a unit vector's components to int8 (see [`Vectors::quantize`]).
    scale: f32,
    /// Smallest seq the table covers.
    base: i64,
    rows: Vec<Row>,
    file: Option<Mmap>,
    /// Where the mapped file's rows start.
    rows_at: usize,
    tail: Vec<f32>,
    live: usize,
}

impl Vectors {
    /// An empty store; [`Vectors::fit_scale`] sets its int8 scale once it holds vectors.
    pub(super) fn new(dims: usize) -> Self {
        Self {
            dims,
            scale: 127.0,
            base: 0,
            rows: Vec::new(),
            file: None,
            rows_at: 0,
            tail: Vec::new(),
            live: 0,
        }
    }

    /// Sets the int8 scale from up to 10,000 of the vectors held in memory.
    pub(super) fn fit_scale(&mut self) {
        let sample: Vec<&[f32]> = self.tail.chunks_exact(self.dims).take(10_000).collect();
        self.scale = scale_for(&sample);
    }

    pub(super) fn scale(&self) -> f32 {
        self.scale
    }

    pub(super) fn dims(&self) -> usize {
        self.dims
    }

    pub(super) fn len(&self) -> usize {
        self.live
    }

    /// `v` (a unit vector) as the index stores it: each component times the scale, rounded and
    /// clamped to ±127.
    pub(super) fn quantize(&self, v: &[f32]) -> Vec<i8> {
        v.iter()
            .map(|x| (x * self.scale).round().clamp(-127.0, 127.0) as i8)
            .collect()
    }

    fn file_rows(&self) -> &[f32] {
        match &self.file {
            Some(m) => <[f32]>::ref_from_bytes(&m[self.rows_at..]).unwrap_or(&[]),
            None => &[],
        }
    }

    pub(super) fn get(&self, seq: i64) -> Option<&[f32]> {
        let i = usize::try_from(seq.checked_sub(self.base)?).ok()?;
        let d = self.dims;
        match *self.rows.get(i)? {
            Row::None => None,
            Row::File(r) => self.file_rows().get(r as usize * d..(r as usize + 1) * d),
            Row::Tail(r) => self.tail.get(r as usize * d..(r as usize + 1) * d),
        }
    }

    fn slot(&mut self, seq: i64) -> &mut Row {
        if self.rows.is_empty() {
            self.base = seq;
        }
        if seq < self.base {
            let shift = (self.base - seq) as usize;
            self.rows
                .splice(0..0, std::iter::repeat_n(Row::None, shift));
            self.base = seq;
        }
        let i = (seq - self.base) as usize;
        if i >= self.rows.len() {
            self.rows.resize(i + 1, Row::None);
        }
        &mut self.rows[i]
    }

    /// Sets (or with `None` removes) the vector of `seq`.
    pub(super) fn set(&mut self, seq: i64, v: Option<&[f32]>) {
        let was = self.get(seq).is_some();
        let row = match v {
            Some(v) => {
                let r = (self.tail.len() / self.dims) as u32;
                self.tail.extend_from_slice(v);
                Row::Tail(r)
            }
            None => Row::None,
        };
        *self.slot(seq) = row;
        self.live = self.live + usize::from(v.is_some()) - usize::from(was);
    }

    /// Bytes held in process memory (the mapped file is not counted).
    pub(super) fn heap_bytes(&self) -> usize {
        self.rows.capacity() * std::mem::size_of::<Row>() + self.tail.capacity() * 4
    }

    /// Bytes of the mapped file.
    pub(super) fn mapped_bytes(&self) -> usize {
        self.file.as_ref().map_or(0, |m| m.len())
    }

    /// Writes every live row to `path` (via a temporary file), then maps it in place of the
    /// in-memory rows.
    pub(super) fn save(&mut self, path: &Path) -> Result<()> {
        let seqs: Vec<i64> = (0..self.rows.len())
            .filter(|&i| !matches!(self.rows[i], Row::None))
            .map(|i| self.base + i as i64)
            .collect();
        // The checked part (all but the rows) is small enough to hash before writing.
        let mut meta = Vec::with_capacity(META + 8 * seqs.len());
        meta.extend_from_slice(&(self.dims as u32).to_le_bytes());
        meta.extend_from_slice(&self.scale.to_le_bytes());
        meta.extend_from_slice(&(seqs.len() as u64).to_le_bytes());
        for s in &seqs {
            meta.extend_from_slice(&s.to_le_bytes());
        }
        let mut crc = crc32fast::Hasher::new();
        crc.update(&meta);
        let payload = meta.len() + 4 * self.dims * seqs.len();
        header::write_file(path, |w| {
            w.write_all(&header::write(&header::ROWS, payload as u64, &crc))?;
            w.write_all(&meta)?;
            for s in &seqs {
                for x in self.get(*s).unwrap_or_default() {
                    w.write_all(&x.to_le_bytes())?;
                }
            }
            Ok(())
        })?;
        *self = Self::open(path, self.dims).map_err(|r| Error::Index(r.to_string()))?;
        Ok(())
    }

    /// Maps a file written by [`Vectors::save`], if it is sound and holds `dims`-d rows.
    pub(super) fn open(path: &Path, dims: usize) -> std::result::Result<Self, Rejected> {
        let reject = |why: String| Rejected::new(path, why);
        // Populated up front (MAP_POPULATE on Linux): rescoring touches a few dozen random rows
        // per query, and a page fault on each first touch cost more than the graph search.
        let map = header::map(path, true).map_err(|e| reject(format!("reading: {e}")))?;
        let (payload, checked) = header::read(&header::ROWS, &map).map_err(reject)?;
        let Some(meta) = payload.first_chunk::<META>() else {
            return Err(reject("damaged: no room for the row count".into()));
        };
        let (file_dims, rest) = meta.split_at(4);
        let (scale, count) = rest.split_at(4);
        let file_dims = u32::from_le_bytes(file_dims.try_into().unwrap_or_default()) as usize;
        let scale = f32::from_le_bytes(scale.try_into().unwrap_or_default());
        let count = u64::from_le_bytes(count.try_into().unwrap_or_default());
        if file_dims != dims {
            return Err(reject(format!(
                "holds {file_dims}-d vectors, expected {dims}-d"
            )));
        }
        let table = usize::try_from(count)
            .ok()
            .and_then(|n| n.checked_mul(8))
            .and_then(|n| n.checked_add(META));
        let whole = usize::try_from(count)
            .ok()
            .and_then(|n| n.checked_mul(4 * dims))
            .and_then(|n| n.checked_add(table?));
        let (Some(table), Some(whole)) = (table, whole) else {
            return Err(reject(format!("damaged: {count} rows")));
        };
        if whole != payload.len() {
            return Err(reject(format!(
                "damaged: {count} rows of {dims} dims need {whole} bytes, the payload has {}",
                payload.len()
            )));
        }
        if checked < table {
            return Err(reject(
                "damaged: the row table is outside the checksum".into(),
            ));
        }
        if !scale.is_finite() || scale <= 0.0 {
            return Err(reject(format!("damaged: int8 scale {scale}")));
        }
        let count = count as usize;
        let seqs = <[i64]>::ref_from_bytes(&payload[META..table])
            .map_err(|_| reject("misaligned".into()))?;
        if seqs.windows(2).any(|w| w[0] >= w[1]) {
            return Err(reject("damaged: row seqs out of order".into()));
        }
        let mut out = Self {
            dims,
            scale,
            base: 0,
            rows: Vec::new(),
            file: None,
            rows_at: header::LEN + table,
            tail: Vec::new(),
            live: count,
        };
        if let (Some(lo), Some(hi)) = (seqs.first(), seqs.last()) {
            out.base = *lo;
            out.rows = vec![Row::None; (hi - lo) as usize + 1];
            for (r, s) in seqs.iter().enumerate() {
                out.rows[(s - lo) as usize] = Row::File(r as u32);
            }
        }
        out.file = Some(map);
        Ok(out)
    }
}

/// The int8 scale for unit vectors like `sample`: 127 over the 99.99th percentile of their
/// components' magnitudes, so that rounding keeps as many bits as the data allows while only
/// rare outliers clip. (The graph search only chooses candidates; exact f32 orders them.)
fn scale_for(sample: &[&[f32]]) -> f32 {
    let mut mags: Vec<f32> = sample
        .iter()
        .flat_map(|v| v.iter().map(|x| x.abs()))
        .filter(|x| x.is_finite())
        .collect();
    if mags.is_empty() {
        return 127.0;
    }
    let at = ((mags.len() as f64 * 0.9999) as usize).min(mags.len() - 1);
    let (_, top, _) = mags.select_nth_unstable_by(at, f32::total_cmp);
    // A vector too small to normalise (its squared norm underflows to 0: a pulled or imported
    // vector of subnormal components) stays as it is, and 127 over such a component is
    // infinite: a scale no save could be loaded with (found by the apply_change fuzz target).
    let scale = 127.0 / *top;
    if *top > 0.0 && scale.is_finite() {
        scale
    } else {
        127.0
    }
}

/// Whether this CPU has AVX2 (std caches the answer).
#[cfg(target_arch = "x86_64")]
fn avx2() -> bool {
    std::arch::is_x86_feature_detected!("avx2")
}

/// f32 dot product: AVX2 code where the CPU has it, else the target's baseline SIMD (SSE2 on
/// x86_64, NEON on aarch64).
pub(super) fn dot(a: &[f32], b: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if avx2() {
        // SAFETY: AVX2 is present (checked above).
        #[allow(unsafe_code)]
        return unsafe { dot_avx2(a, b) };
    }
    dot_lanes(a, b)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
    dot_lanes(a, b)
}

/// In 16 independent lanes, which the compiler turns into SIMD of whatever width it may use.
#[inline(always)]
fn dot_lanes(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 16];
    let (ca, cb) = (a.chunks_exact(16), b.chunks_exact(16));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..16 {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// int8 dot products of `q` with each `q.len()`-long row of `codes`, into `out` (exact in i32
/// up to 133,000 dimensions).
pub(super) fn dots_i8(codes: &[i8], q: &[i8], out: &mut Vec<i32>) {
    #[cfg(target_arch = "x86_64")]
    if avx2() {
        // SAFETY: AVX2 is present (checked above).
        #[allow(unsafe_code)]
        return unsafe { dots_i8_avx2(codes, q, out) };
    }
    dots_i8_lanes(codes, q, out);
}

/// 32 products per step: `maddubs(|q|, sign(row, q))` multiplies unsigned |q| by the row
/// byte with q's sign moved onto it, into i16 pairs (at most 2 · 127 · 127, no saturation:
/// the codes never hold -128), which `madd` with ones widens to i32.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn dots_i8_avx2(codes: &[i8], q: &[i8], out: &mut Vec<i32>) {
    use std::arch::x86_64::{
        __m256i, _mm256_abs_epi8, _mm256_add_epi32, _mm256_castsi256_si128,
        _mm256_extracti128_si256, _mm256_loadu_si256, _mm256_madd_epi16, _mm256_maddubs_epi16,
        _mm256_set1_epi16, _mm256_setzero_si256, _mm256_sign_epi8, _mm_add_epi32,
        _mm_cvtsi128_si32, _mm_shuffle_epi32,
    };
    let d = q.len();
    if d == 0 || !d.is_multiple_of(32) || q.contains(&i8::MIN) {
        return dots_i8_lanes(codes, q, out);
    }
    // SAFETY: every load reads 32 bytes inside `q` or inside one `d`-long row of `codes`
    // (d is a multiple of 32); AVX2 is enabled for this function.
    #[allow(unsafe_code)]
    unsafe {
        let qs: Vec<__m256i> = q
            .chunks_exact(32)
            .map(|c| _mm256_loadu_si256(c.as_ptr().cast()))
            .collect();
        let qa: Vec<__m256i> = qs.iter().map(|v| _mm256_abs_epi8(*v)).collect();
        let ones = _mm256_set1_epi16(1);
        out.reserve(codes.len() / d);
        for row in codes.chunks_exact(d) {
            let mut acc = _mm256_setzero_si256();
            for (j, c) in row.chunks_exact(32).enumerate() {
                let r = _mm256_sign_epi8(_mm256_loadu_si256(c.as_ptr().cast()), qs[j]);
                let pairs = _mm256_maddubs_epi16(qa[j], r);
                acc = _mm256_add_epi32(acc, _mm256_madd_epi16(pairs, ones));
            }
            let s = _mm_add_epi32(
                _mm256_castsi256_si128(acc),
                _mm256_extracti128_si256::<1>(acc),
            );
            let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b01_00_11_10>(s));
            let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b10_11_00_01>(s));
            out.push(_mm_cvtsi128_si32(s));
        }
    }
}

#[inline(always)]
fn dots_i8_lanes(codes: &[i8], q: &[i8], out: &mut Vec<i32>) {
    out.extend(codes.chunks_exact(q.len().max(1)).map(|row| {
        row.iter()
            .zip(q)
            .map(|(x, y)| i32::from(*x) * i32::from(*y))
            .sum::<i32>()
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saved_rows_read_back_and_changes_overlay_them(
    ) -> std::result::Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let a = [0.6f32, 0.8, 0.0];
        let b = [0.0f32, 0.6, 0.8];
        let mut v = Vectors::new(3);
        v.set(10, Some(&a));
        v.set(12, Some(&b));
        v.fit_scale();
        assert_eq!(v.quantize(&a), vec![95, 127, 0]);
        v.set(5, Some(&b));
        v.set(5, None);
        assert_eq!(v.len(), 2);
        let path = dir.path().join("x.vectors");
        v.save(&path)?;
        let mut w = Vectors::open(&path, 3)?;
        assert_eq!(w.get(10), Some(&a[..]));
        assert_eq!(w.get(12), Some(&b[..]));
        assert_eq!(w.get(5), None);
        assert_eq!(w.get(11), None);
        w.set(10, Some(&b));
        w.set(3, Some(&a));
        assert_eq!(w.get(10), Some(&b[..]));
        assert_eq!(w.get(3), Some(&a[..]));
        assert_eq!(w.get(12), Some(&b[..]));
        assert_eq!(w.len(), 3);
        let why = |dims: usize| Vectors::open(&path, dims).err().map(|r| r.why);
        assert_eq!(why(4).as_deref(), Some("holds 3-d vectors, expected 4-d"));
        std::fs::write(&path, b"OPVECS01 truncated")?;
        assert_eq!(why(3).as_deref(), Some("format version 1, expected 2"));
        Ok(())
    }

    #[test]
    fn dot_products_match_the_plain_sum() {
        let a: Vec<f32> = (0..37).map(|i| i as f32 * 0.1).collect();
        let b: Vec<f32> = (0..37).map(|i| 1.0 - i as f32 * 0.05).collect();
        let plain: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
        assert!((dot(&a, &b) - plain).abs() < 1e-3);
        let mut out = Vec::new();
        dots_i8(&[1, -2, 3, 0, 0, 1], &[4, 5, -6], &mut out);
        assert_eq!(out, vec![4 - 10 - 18, -6]);
        // Rows long enough for the 32-byte kernel, with the extremes the codes can hold.
        let q: Vec<i8> = (0..64).map(|i| ((i * 37) % 255 - 127) as i8).collect();
        let rows: Vec<i8> = (0..64 * 3)
            .map(|i| ((i * 91 + 5) % 255 - 127) as i8)
            .collect();
        let mut fast = Vec::new();
        dots_i8(&rows, &q, &mut fast);
        let plain: Vec<i32> = rows
            .chunks_exact(64)
            .map(|r| {
                r.iter()
                    .zip(&q)
                    .map(|(a, b)| i32::from(*a) * i32::from(*b))
                    .sum()
            })
            .collect();
        assert_eq!(fast, plain);
    }
}
