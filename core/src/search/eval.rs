//! Retrieval-quality metrics over ranked document ids, as BEIR (pytrec_eval) computes them.
//!
//! Relevance judgements map a document id to a graded relevance; ids without a judgement, or
//! with a judgement of 0 or less, are not relevant. Gains are linear in the grade (pytrec_eval's
//! `ndcg_cut`), so binary judgements give the textbook nDCG.

use std::collections::HashMap;

/// Judgements for one query: document id → relevance grade.
pub type Qrels = HashMap<String, i32>;

fn grade(qrels: &Qrels, id: &str) -> i32 {
    qrels.get(id).copied().unwrap_or(0).max(0)
}

/// nDCG@k: discounted cumulative gain of the first `k` results over that of the ideal ranking.
/// 0 when nothing is relevant.
pub fn ndcg_at(ranked: &[String], qrels: &Qrels, k: usize) -> f64 {
    let dcg: f64 = ranked
        .iter()
        .take(k)
        .enumerate()
        .map(|(i, id)| f64::from(grade(qrels, id)) / (i as f64 + 2.0).log2())
        .sum();
    let mut ideal: Vec<i32> = qrels.values().copied().filter(|&g| g > 0).collect();
    ideal.sort_unstable_by(|a, b| b.cmp(a));
    let idcg: f64 = ideal
        .iter()
        .take(k)
        .enumerate()
        .map(|(i, &g)| f64::from(g) / (i as f64 + 2.0).log2())
        .sum();
    if idcg == 0.0 {
        0.0
    } else {
        dcg / idcg
    }
}

/// Recall@k: the share of relevant documents found in the first `k` results. 0 when nothing is
/// relevant.
pub fn recall_at(ranked: &[String], qrels: &Qrels, k: usize) -> f64 {
    let relevant = qrels.values().filter(|&&g| g > 0).count();
    if relevant == 0 {
        return 0.0;
    }
    let found = ranked
        .iter()
        .take(k)
        .filter(|id| grade(qrels, id) > 0)
        .count();
    found as f64 / relevant as f64
}

/// MRR@k: the reciprocal rank of the first relevant result within the first `k`, else 0.
pub fn mrr_at(ranked: &[String], qrels: &Qrels, k: usize) -> f64 {
    ranked
        .iter()
        .take(k)
        .position(|id| grade(qrels, id) > 0)
        .map_or(0.0, |i| 1.0 / (i as f64 + 1.0))
}

/// Keeps the first occurrence of each id, in order: a document's rank is that of its best chunk.
pub fn dedup_keep_first(ids: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    ids.into_iter()
        .filter(|id| seen.insert(id.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn qrels(v: &[(&str, i32)]) -> Qrels {
        v.iter().map(|(k, g)| (k.to_string(), *g)).collect()
    }

    #[test]
    fn ndcg_matches_hand_computed_values() {
        let q = qrels(&[("a", 1), ("b", 1)]);
        assert!((ndcg_at(&ids(&["a", "b", "c"]), &q, 10) - 1.0).abs() < 1e-12);
        // Relevant at ranks 2 and 3: (1/log2 3 + 1/log2 4) / (1 + 1/log2 3).
        let expected = (1.0 / 3f64.log2() + 0.5) / (1.0 + 1.0 / 3f64.log2());
        assert!((ndcg_at(&ids(&["c", "a", "b"]), &q, 10) - expected).abs() < 1e-12);
        assert_eq!(ndcg_at(&ids(&["c", "a"]), &q, 1), 0.0);
        assert_eq!(ndcg_at(&ids(&["a"]), &qrels(&[]), 10), 0.0);
    }

    #[test]
    fn graded_and_negative_judgements() {
        let q = qrels(&[("a", 2), ("b", 1), ("x", -1)]);
        let ideal = 2.0 + 1.0 / 3f64.log2();
        let got = (1.0 + 2.0 / 3f64.log2()) / ideal;
        assert!((ndcg_at(&ids(&["b", "a", "x"]), &q, 10) - got).abs() < 1e-12);
        assert_eq!(recall_at(&ids(&["x", "a"]), &q, 10), 0.5);
    }

    #[test]
    fn recall_and_mrr() {
        let q = qrels(&[("a", 1), ("b", 1), ("c", 1), ("d", 1)]);
        let r = ids(&["z", "a", "y", "b"]);
        assert_eq!(recall_at(&r, &q, 100), 0.5);
        assert_eq!(recall_at(&r, &q, 2), 0.25);
        assert_eq!(mrr_at(&r, &q, 10), 0.5);
        assert_eq!(mrr_at(&r, &q, 1), 0.0);
    }

    #[test]
    fn dedup_keeps_the_best_rank() {
        let got = dedup_keep_first(ids(&["a", "b", "a", "c", "b"]));
        assert_eq!(got, ids(&["a", "b", "c"]));
    }
}
