//! Stage 3: turn decoded images into L2-normalised vectors.
//!
//! An [`Embedder`] works in two steps so a model can overlap CPU and device work:
//! [`Embedder::preprocess`] runs on CPU worker threads, one image at a time, and
//! [`Embedder::embed_batch`] turns a batch of preprocessed inputs into vectors.

pub mod clip;
pub mod pixels;

use image::DynamicImage;

pub use pixels::PixelEmbedder;

/// Which embedder the user asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EmbedderKind {
    /// Grayscale brightness of a small thumbnail (works offline, no model).
    Pixels,
    /// CLIP ViT-B/32 image embeddings.
    Clip,
}

pub trait Embedder: Send + Sync {
    /// Identifies the embedder and every parameter that changes its output; the
    /// cache keys embeddings by (content hash, id).
    fn id(&self) -> String;

    /// Length of the vectors produced.
    fn dim(&self) -> usize;

    /// Default cosine similarity above which two images count as near-duplicates,
    /// measured for this embedder (see README).
    fn default_duplicate_threshold(&self) -> f32;

    /// CPU-side preparation of one image (resize, colour conversion, ...).
    fn preprocess(&self, image: &DynamicImage) -> Vec<f32>;

    /// Embeds a batch of preprocessed images; each output row is L2-normalised.
    fn embed_batch(&self, batch: Vec<Vec<f32>>) -> anyhow::Result<Vec<Vec<f32>>>;
}

/// Builds the embedder the user chose. `sample_sizes` are (width, height) of a
/// few images of the folder, for embedders whose input size adapts to the data.
pub fn make_embedder(
    kind: EmbedderKind,
    sample_sizes: &[(u32, u32)],
) -> anyhow::Result<Box<dyn Embedder>> {
    match kind {
        EmbedderKind::Pixels => Ok(Box::new(PixelEmbedder::for_sizes(sample_sizes))),
        EmbedderKind::Clip => anyhow::bail!(
            "the CLIP embedder is not available in this version of embedscope yet \
             (it is being built: CLIP ViT-B/32 on Burn); use `--embedder pixels` for now"
        ),
    }
}
