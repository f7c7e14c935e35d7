//! Stage 3: turn decoded images into L2-normalised vectors.
//!
//! An [`Embedder`] works in two steps so a model can overlap CPU and device work:
//! [`Embedder::preprocess`] runs on CPU worker threads, one image at a time, and
//! [`Embedder::embed_batch`] turns a batch of preprocessed inputs into vectors.

#[cfg(feature = "clip")]
pub mod clip;
pub mod pixels;

use std::path::PathBuf;

use image::DynamicImage;

use crate::choice::Choice;
pub use pixels::PixelEmbedder;

/// Which embedder the user asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EmbedderKind {
    /// Grayscale brightness of a small thumbnail (works offline, no model).
    Pixels,
    /// CLIP ViT-B/32 image embeddings.
    Clip,
}

impl crate::choice::Choice for EmbedderKind {
    const ALL: &'static [Self] = &[EmbedderKind::Pixels, EmbedderKind::Clip];

    fn name(self) -> &'static str {
        match self {
            EmbedderKind::Pixels => "pixels",
            EmbedderKind::Clip => "clip",
        }
    }

    fn help(self) -> &'static str {
        match self {
            EmbedderKind::Pixels => "grey brightness of a small copy (offline, no model)",
            EmbedderKind::Clip => "CLIP image embeddings (needs the model's weights)",
        }
    }
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

/// Where CLIP runs (`--device`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceChoice {
    /// A hardware GPU through wgpu if there is one, else the CPU.
    #[default]
    Auto,
    /// wgpu, whatever adapter it finds (even a software one).
    Gpu,
    /// The CPU: the image tower through embedscope's forward pass on gemm,
    /// the text tower through Burn's CPU backend (flex).
    Cpu,
}

impl Choice for DeviceChoice {
    const ALL: &'static [Self] = &[DeviceChoice::Auto, DeviceChoice::Gpu, DeviceChoice::Cpu];

    fn name(self) -> &'static str {
        match self {
            DeviceChoice::Auto => "auto",
            DeviceChoice::Gpu => "gpu",
            DeviceChoice::Cpu => "cpu",
        }
    }

    fn help(self) -> &'static str {
        match self {
            DeviceChoice::Auto => "a hardware GPU through wgpu if there is one, else the CPU",
            DeviceChoice::Gpu => "wgpu, whatever adapter it finds (even a software one)",
            DeviceChoice::Cpu => "the CPU (embedscope's own forward pass for the image tower)",
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
    /// The model folder to use (`--model` as a folder or a repo id, else
    /// embedscope's models folder, else the Hugging Face cache), or an error
    /// saying exactly how to get one.
    #[cfg(feature = "clip")]
    pub fn find_model(&self) -> anyhow::Result<PathBuf> {
        Ok(self.resolve_model()?.dir)
    }

    /// The model folder and where it came from; callers print it (`Display`).
    #[cfg(feature = "clip")]
    pub fn resolve_model(&self) -> anyhow::Result<clip::hub_cache::ResolvedModel> {
        clip::hub_cache::resolve_model(self.model.as_deref())
    }

    #[cfg(not(feature = "clip"))]
    pub fn find_model(&self) -> anyhow::Result<PathBuf> {
        Err(without_clip())
    }
}

/// The error of a build made without the `clip` feature.
#[cfg(not(feature = "clip"))]
fn without_clip() -> anyhow::Error {
    anyhow::anyhow!(
        "this embedscope was built without CLIP (cargo feature `clip`): rebuild with \
         `cargo build --features clip`, or use `--embedder pixels`"
    )
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

    /// Default cosine similarity above which two images count as
    /// near-duplicates for this embedder: measured for pixels on MNIST (see
    /// README), the customary value for CLIP (see `clip::DEFAULT_DUPLICATE_THRESHOLD`).
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
        #[cfg(not(feature = "clip"))]
        EmbedderKind::Clip => {
            let _ = clip_options;
            Err(without_clip())
        }
        #[cfg(feature = "clip")]
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
