//! What the benches share when they report: latency percentiles, the thread count.

/// The `p` quantile (0 to 1) of ascending `sorted`: its element at round((n - 1) p); 0 if empty.
pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

/// Threads candle's CPU kernels use (`RAYON_NUM_THREADS`, else the available cores).
pub(crate) fn candle_threads() -> usize {
    std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}
