//! embedscope: turn a folder of images into a 3D map.
//!
//! The library is laid out the way the pipeline reads:
//! [`scan`] → [`decode`] → [`embed`] (with its [`cache`]) → [`neighbours`] →
//! [`reduce`] → [`analyze`] (clusters, duplicates) → [`output`].
//! [`pipeline`] runs the stages in order with progress reporting and cancellation;
//! the CLI, the tests and the [`view`]er all call it.

pub mod analyze;
pub mod bench;
pub mod cache;
pub mod choice;
pub mod decode;
pub mod embed;
pub mod geometry;
pub mod metrics;
pub mod neighbours;
pub mod output;
pub mod pipeline;
pub mod progress;
pub mod reduce;
pub mod rng;
pub mod scan;
#[cfg(feature = "clip")]
pub mod search;
pub mod simd;
pub mod source;
#[cfg(feature = "viewer")]
pub mod view;

pub use pipeline::{Analysis, AnalyzeOptions, analyze};
pub use progress::{CancelToken, Cancelled, ProgressEvent, ProgressSink, Stage};

/// Row-major matrix of L2-normalised embeddings, one row per image.
#[derive(Clone, Debug, Default)]
pub struct Embeddings {
    pub n: usize,
    pub dim: usize,
    pub data: Vec<f32>,
}

impl Embeddings {
    pub fn new(n: usize, dim: usize, data: Vec<f32>) -> Self {
        assert_eq!(data.len(), n * dim, "embedding matrix has the wrong size");
        Self { n, dim, data }
    }

    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.dim..(i + 1) * self.dim]
    }

    pub fn rows(&self) -> impl Iterator<Item = &[f32]> {
        self.data.chunks_exact(self.dim.max(1)).take(self.n)
    }

    /// Cosine similarity of two rows (rows are unit vectors, so a dot product).
    pub fn cosine(&self, a: usize, b: usize) -> f32 {
        dot(self.row(a), self.row(b))
    }
}

/// Dot product, vectorised for the CPU at hand (AVX-512, AVX2, NEON, or
/// SSE2), with the same result bits on each: see [`simd::dot`].
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    simd::dot(a, b)
}

/// L2-normalise in place; returns the norm before normalising.
pub fn l2_normalize(v: &mut [f32]) -> f32 {
    let norm = dot(v, v).sqrt();
    if norm > 0.0 {
        for x in v.iter_mut() {
            *x /= norm;
        }
    }
    norm
}
