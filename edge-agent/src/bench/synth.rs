//! Synthetic data for the benches: vectors clustered like real embeddings (Gaussian centres plus
//! noise, L2-normalised) and texts of Zipf-distributed words, from a seed; and the stand-in
//! model an engine over such data is opened with.

use std::sync::Arc;

use anyhow::{Context as _, Result};
use outpost_core::{EmbedError, Embedder, HashEmbedder};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Normal, Zipf};

/// Gaussian centres the vectors cluster around.
pub(crate) const CENTRES: usize = 2000;
/// σ of the noise added to a centre, per dimension.
pub(crate) const NOISE: f32 = 0.6;
/// Distinct words in the texts.
const VOCAB: usize = 5000;

/// A seeded source of synthetic vectors and texts.
pub(crate) struct Synth {
    rng: StdRng,
    centres: Vec<Vec<f32>>,
    noise: Normal<f32>,
    zipf: Zipf<f64>,
}

impl Synth {
    pub(crate) fn new(seed: u64, dims: usize) -> Result<Self> {
        let mut rng = StdRng::seed_from_u64(seed);
        let unit = Normal::new(0.0f32, 1.0).context("normal distribution")?;
        let centres = (0..CENTRES)
            .map(|_| (0..dims).map(|_| unit.sample(&mut rng)).collect())
            .collect();
        Ok(Self {
            rng,
            centres,
            noise: Normal::new(0.0, NOISE).context("normal distribution")?,
            zipf: Zipf::new(VOCAB as f64, 1.1).context("zipf distribution")?,
        })
    }

    pub(crate) fn vector(&mut self) -> Vec<f32> {
        let c = self.rng.random_range(0..CENTRES);
        let mut v: Vec<f32> = self.centres[c]
            .iter()
            .map(|x| x + self.noise.sample(&mut self.rng))
            .collect();
        let norm = v
            .iter()
            .map(|x| x * x)
            .sum::<f32>()
            .sqrt()
            .max(f32::MIN_POSITIVE);
        v.iter_mut().for_each(|x| *x /= norm);
        v
    }

    fn word(&mut self) -> String {
        format!("w{}", self.zipf.sample(&mut self.rng) as usize)
    }

    pub(crate) fn text(&mut self, words: usize) -> String {
        (0..words)
            .map(|_| self.word())
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// The model of synthetic vectors, for the engine that stores and searches them: it has the
/// vectors' model id and size (so that collections made through the engine are of them, and
/// searches by them are accepted) but embeds nothing, since the bench makes every vector itself.
/// Its tokenizer, which nothing here uses, is the test embedder's (one token per word).
struct SyntheticModel {
    id: String,
    words: HashEmbedder,
}

impl Embedder for SyntheticModel {
    fn model_id(&self) -> &str {
        &self.id
    }

    fn dims(&self) -> usize {
        self.words.dims()
    }

    fn max_tokens(&self) -> usize {
        self.words.max_tokens()
    }

    fn tokenizer(&self) -> std::result::Result<&tokenizers::Tokenizer, EmbedError> {
        self.words.tokenizer()
    }

    fn embed(&self, _: &[&str]) -> std::result::Result<Vec<Vec<f32>>, EmbedError> {
        Err(EmbedError(format!(
            "'{}' stands for synthetic vectors: the bench makes them, nothing embeds",
            self.id
        )))
    }
}

/// The stand-in model of synthetic `dims`-dimensional vectors named `id` (`dims` > 0).
pub(crate) fn synthetic_model(id: &str, dims: usize) -> Arc<dyn Embedder> {
    Arc::new(SyntheticModel {
        id: id.to_string(),
        words: HashEmbedder::new(dims),
    })
}
