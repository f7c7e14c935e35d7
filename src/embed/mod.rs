//! Stage 3: turn decoded images into L2-normalised vectors.
//!
//! An [`Embedder`] works in two steps so a model can overlap CPU and device work:
//! [`Embedder::preprocess`] runs on CPU worker threads, one image at a time, and
//! [`Embedder::embed_batch`] turns a batch of preprocessed inputs into vectors.

pub mod clip;
pub mod pixels;

use std::path::PathBuf;

use image::DynamicImage;

pub use clip::DeviceChoice;
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

impl EmbedderKind {
    /// What to use when the user does not say: CLIP when its weights are
    /// there (given with `--model` or fetched into the cache), else pixels.
    pub fn default_for(clip: &ClipOptions) -> Self {
        if clip.find_model().is_ok() {
            Self::Clip
        } else {
            Self::Pixels
        }
    }
}

/// How to run CLIP (`--model`, `--device`, `--batch`).
#[derive(Clone, Debug, Default)]
pub struct ClipOptions {
    /// A Hugging Face CLIP folder; `None`: the one `embedscope model fetch` installs.
    pub model: Option<PathBuf>,
    pub device: DeviceChoice,
    /// Images per forward pass; `None`: 64 on a GPU, 16 on the CPU.
    pub batch: Option<usize>,
}

impl ClipOptions {
    /// The model folder to use, or an error saying exactly how to get one.
    pub fn find_model(&self) -> anyhow::Result<PathBuf> {
        if let Some(dir) = &self.model {
            return Ok(dir.clone());
        }
        let default = clip::fetch::default_model_dir()?;
        clip::fetch::installed_model(&default).ok_or_else(|| {
            anyhow::anyhow!(
                "no CLIP weights found in {}. Run `embedscope model fetch` to download \
                 openai/clip-vit-base-patch32 (about 600 MB) there, or pass `--model DIR` with a \
                 Hugging Face CLIP folder (config.json, model.safetensors, tokenizer.json). \
                 `--embedder pixels` works offline without weights.",
                default.display()
            )
        })
    }
}

pub trait Embedder: Send + Sync {
    /// Identifies the embedder and every parameter that changes its output; the
    /// cache keys embeddings by (content hash, id).
    fn id(&self) -> String;

    /// Length of the vectors produced.
    fn dim(&self) -> usize;

    /// For people: which model, on which device.
    fn description(&self) -> String {
        self.id()
    }

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
    clip_options: &ClipOptions,
) -> anyhow::Result<Box<dyn Embedder>> {
    match kind {
        EmbedderKind::Pixels => Ok(Box::new(PixelEmbedder::for_sizes(sample_sizes))),
        EmbedderKind::Clip => {
            let dir = clip::ModelDir::open(&clip_options.find_model()?)?;
            let device = clip::ComputeDevice::select(clip_options.device)?;
            Ok(Box::new(clip::ClipEmbedder::load(
                dir,
                device,
                clip_options.batch,
            )?))
        }
    }
}
