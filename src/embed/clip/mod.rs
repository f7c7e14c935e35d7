//! CLIP (ViT-B/32 and kin) on Burn.
//!
//! The CPU side must match Hugging Face exactly: the image preprocessing
//! (`CLIPImageProcessor`, [`preprocess`]) and the tokenizer (`CLIPTokenizer`,
//! [`tokenizer`]). The towers ([`model`]) load a Hugging Face model directory
//! (`config.json`, `model.safetensors`, `tokenizer.json`) through Burn's store and
//! run on wgpu or Burn's CPU backend ([`device`]).

pub mod config;
pub mod device;
pub mod fetch;
pub mod hub_cache;
pub mod model;
pub mod preprocess;
pub mod tokenizer;

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::Context;
use burn::module::{Module, ModuleMapper, Param};
use burn::store::{ModuleSnapshot, PyTorchToBurnAdapter, SafetensorsStore};
use burn::tensor::{DType, Device, FloatDType, Int, Tensor, TensorData};
use image::DynamicImage;

use crate::embed::Embedder;
pub use config::ClipConfig;
pub use device::{ComputeDevice, DeviceChoice};
pub use model::{ClipText, ClipVision};
use preprocess::ClipPreprocessConfig;
use tokenizer::ClipTokenizer;

/// Cosine above which two CLIP image embeddings count as near-duplicates.
/// Not measured here (no real weights can be downloaded on the build machine):
/// 0.95 is the usual choice for ViT-B/32 image-to-image near-duplicates.
pub const DEFAULT_DUPLICATE_THRESHOLD: f32 = 0.95;

/// Images per forward pass when the user does not say (`--batch`).
pub fn default_batch(device: &ComputeDevice) -> usize {
    if device.is_gpu { 64 } else { 16 }
}

/// A Hugging Face CLIP model directory, checked but not loaded.
#[derive(Clone, Debug)]
pub struct ModelDir {
    pub dir: PathBuf,
    pub config: ClipConfig,
    pub preprocess: ClipPreprocessConfig,
    /// BLAKE3 of the weights and configs: embeddings are cached per model.
    pub fingerprint: String,
}

impl ModelDir {
    pub const WEIGHTS: &'static str = "model.safetensors";
    pub const CONFIG: &'static str = "config.json";
    pub const TOKENIZER: &'static str = "tokenizer.json";
    pub const PREPROCESSOR: &'static str = "preprocessor_config.json";

    pub fn open(dir: &Path) -> anyhow::Result<Self> {
        anyhow::ensure!(
            dir.is_dir(),
            "the CLIP model folder {} does not exist",
            dir.display()
        );
        for required in [Self::CONFIG, Self::WEIGHTS] {
            anyhow::ensure!(
                dir.join(required).is_file(),
                "{} has no {required}: a CLIP model folder holds config.json, model.safetensors \
                 and tokenizer.json in the Hugging Face layout (`embedscope model fetch` downloads one)",
                dir.display()
            );
        }
        let config = ClipConfig::from_file(&dir.join(Self::CONFIG))?;
        let preprocess = match dir.join(Self::PREPROCESSOR) {
            p if p.is_file() => ClipPreprocessConfig::from_file(&p)?,
            _ => ClipPreprocessConfig::for_image_size(
                config.vision().map(|v| v.image_size as u32).unwrap_or(224),
            ),
        };
        let fingerprint = fingerprint(dir)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            config,
            preprocess,
            fingerprint,
        })
    }

    pub fn tokenizer(&self) -> anyhow::Result<ClipTokenizer> {
        let path = self.dir.join(Self::TOKENIZER);
        anyhow::ensure!(
            path.is_file(),
            "{} has no tokenizer.json, which text search needs",
            self.dir.display()
        );
        ClipTokenizer::from_file(&path)
    }

    pub fn load_vision(&self, device: &Device) -> anyhow::Result<ClipVision> {
        let model = ClipVision::init(&self.config, device)?;
        self.load_weights(model, "vision")
    }

    pub fn load_text(&self, device: &Device) -> anyhow::Result<ClipText> {
        let model = ClipText::init(&self.config, device)?;
        self.load_weights(model, "text")
    }

    fn load_weights<M: Module + ModuleSnapshot>(
        &self,
        mut model: M,
        tower: &str,
    ) -> anyhow::Result<M> {
        let path = self.dir.join(Self::WEIGHTS);
        // PyTorch stores Linear weights [out, in] and LayerNorm weight/bias;
        // the adapter transposes and renames them to Burn's [in, out], gamma/beta.
        let mut store = SafetensorsStore::from_file(&path)
            .with_from_adapter(PyTorchToBurnAdapter)
            .allow_partial(true);
        let result = model
            .load_from(&mut store)
            .map_err(|e| anyhow::anyhow!("{e}"))
            .with_context(|| {
                format!(
                    "{} does not fit the CLIP {tower} tower described by config.json",
                    path.display()
                )
            })?;
        anyhow::ensure!(
            result.errors.is_empty(),
            "{} does not fit the CLIP {tower} tower described by config.json: {}",
            path.display(),
            result
                .errors
                .iter()
                .map(|e| format!("{e:?}"))
                .collect::<Vec<_>>()
                .join("; ")
        );
        anyhow::ensure!(
            result.missing.is_empty(),
            "{} lacks {} tensors of the CLIP {tower} tower, e.g. {}",
            path.display(),
            result.missing.len(),
            result
                .missing
                .iter()
                .take(3)
                .map(|(p, _)| p.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
        // Half-precision checkpoints load as f16; compute in f32 as the
        // reference does (f16 weights upcast to f32).
        Ok(model.map(&mut UpcastToF32))
    }
}

/// BLAKE3 of a model folder's weights and configs, remembered per process by
/// (path, length, modification time) of each file: hashing 600 MB is ~0.5 s,
/// and `search` and the viewer's text queries open the same folder repeatedly.
fn fingerprint(dir: &Path) -> anyhow::Result<String> {
    use std::collections::HashMap;
    use std::sync::OnceLock;
    type Stamp = Vec<(PathBuf, u64, Option<std::time::SystemTime>)>;
    static KNOWN: OnceLock<Mutex<HashMap<Stamp, String>>> = OnceLock::new();

    let files: Vec<PathBuf> = [ModelDir::CONFIG, ModelDir::PREPROCESSOR, ModelDir::WEIGHTS]
        .iter()
        .map(|name| dir.join(name))
        .filter(|path| path.is_file())
        .collect();
    let stamp: Stamp = files
        .iter()
        .map(|path| {
            let meta = std::fs::metadata(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            Ok((path.clone(), meta.len(), meta.modified().ok()))
        })
        .collect::<anyhow::Result<_>>()?;
    let known = KNOWN.get_or_init(Default::default);
    if let Some(hit) = known.lock().expect("fingerprint memo").get(&stamp) {
        return Ok(hit.clone());
    }
    let mut hasher = blake3::Hasher::new();
    for path in &files {
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        hasher.update(name.as_bytes());
        hasher
            .update_mmap_rayon(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
    }
    let fingerprint = hasher.finalize().to_hex()[..16].to_string();
    known
        .lock()
        .expect("fingerprint memo")
        .insert(stamp, fingerprint.clone());
    Ok(fingerprint)
}

struct UpcastToF32;

impl ModuleMapper for UpcastToF32 {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        param.map(|tensor| {
            if tensor.dtype() == DType::F32 {
                tensor
            } else {
                tensor.cast(FloatDType::F32)
            }
        })
    }
}

/// Runs the image tower on a batch of preprocessed images (`[n][3·s·s]`) and
/// returns raw (unnormalised) embeddings.
pub fn image_features(
    model: &ClipVision,
    device: &Device,
    image_size: usize,
    inputs: &[Vec<f32>],
) -> Vec<Vec<f32>> {
    if inputs.is_empty() {
        return Vec::new();
    }
    let n = inputs.len();
    let mut flat = Vec::with_capacity(n * 3 * image_size * image_size);
    for input in inputs {
        flat.extend_from_slice(input);
    }
    let pixels = Tensor::<4>::from_data(
        TensorData::new(flat, [n, 3, image_size, image_size]),
        device,
    );
    rows(model.forward(pixels))
}

/// Runs the text tower on tokenized prompts; raw (unnormalised) embeddings.
pub fn text_features(
    model: &ClipText,
    device: &Device,
    prompts: &[tokenizer::ClipTokens],
) -> Vec<Vec<f32>> {
    if prompts.is_empty() {
        return Vec::new();
    }
    // Only as long as the longest prompt: causal attention means the padding
    // after a prompt's end token never changes its embedding.
    let seq = prompts
        .iter()
        .map(|p| p.eos_position + 1)
        .max()
        .unwrap_or(1)
        .min(model.context_length());
    let ids: Vec<i64> = prompts
        .iter()
        .flat_map(|p| p.ids[..seq].iter().map(|&id| id as i64))
        .collect();
    let ids = Tensor::<2, Int>::from_data(TensorData::new(ids, [prompts.len(), seq]), device);
    let eos: Vec<usize> = prompts.iter().map(|p| p.eos_position).collect();
    rows(model.forward(ids, &eos))
}

fn rows(t: Tensor<2>) -> Vec<Vec<f32>> {
    let [n, d] = t.dims();
    let data = t
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("f32 tensor data");
    (0..n).map(|i| data[i * d..(i + 1) * d].to_vec()).collect()
}

/// The CLIP image embedder behind `--embedder clip`.
pub struct ClipEmbedder {
    model: Mutex<ClipVision>,
    device: ComputeDevice,
    model_dir: ModelDir,
    batch: usize,
    id: String,
    dim: usize,
}

impl ClipEmbedder {
    pub fn load(
        model_dir: ModelDir,
        device: ComputeDevice,
        batch: Option<usize>,
    ) -> anyhow::Result<Self> {
        let model = model_dir.load_vision(&device.device)?;
        let dim = model_dir.config.projection_dim;
        let id = format!("clip-{}", model_dir.fingerprint);
        let batch = batch.unwrap_or_else(|| default_batch(&device)).max(1);
        Ok(Self {
            model: Mutex::new(model),
            device,
            model_dir,
            batch,
            id,
            dim,
        })
    }
}

impl Embedder for ClipEmbedder {
    fn id(&self) -> String {
        self.id.clone()
    }

    fn dim(&self) -> usize {
        self.dim
    }

    fn description(&self) -> String {
        format!(
            "CLIP {} ({}) on {}",
            self.model_dir
                .dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            self.id,
            self.device.description
        )
    }

    fn default_duplicate_threshold(&self) -> f32 {
        DEFAULT_DUPLICATE_THRESHOLD
    }

    fn preprocess(&self, image: &DynamicImage) -> Vec<f32> {
        preprocess::preprocess(image, &self.model_dir.preprocess)
    }

    fn embed_batch(&self, batch: Vec<Vec<f32>>) -> anyhow::Result<Vec<Vec<f32>>> {
        let model = self.model.lock().expect("CLIP model lock");
        let size = self.model_dir.preprocess.crop_size as usize;
        let mut out = Vec::with_capacity(batch.len());
        for chunk in batch.chunks(self.batch) {
            for mut v in image_features(&model, &self.device.device, size, chunk) {
                crate::l2_normalize(&mut v);
                out.push(v);
            }
        }
        Ok(out)
    }
}

/// Embeds text prompts with the text tower; each row L2-normalised.
pub struct ClipTextEncoder {
    model: ClipText,
    tokenizer: ClipTokenizer,
    device: ComputeDevice,
}

impl ClipTextEncoder {
    pub fn load(model_dir: &ModelDir, device: ComputeDevice) -> anyhow::Result<Self> {
        Ok(Self {
            model: model_dir.load_text(&device.device)?,
            tokenizer: model_dir.tokenizer()?,
            device,
        })
    }

    pub fn embed(&self, prompts: &[&str]) -> anyhow::Result<Vec<Vec<f32>>> {
        let tokens = prompts
            .iter()
            .map(|p| self.tokenizer.encode(p))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let mut out = text_features(&self.model, &self.device.device, &tokens);
        for v in &mut out {
            crate::l2_normalize(v);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::{self, DecodeLimits};

    fn fixtures() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/clip")
    }

    fn expected() -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("expected.json")).unwrap())
            .unwrap()
    }

    fn floats(v: &serde_json::Value) -> Vec<f32> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap() as f32)
            .collect()
    }

    /// The data of a little-endian float32 `.npy` of any shape.
    fn npy_data(path: &Path) -> Vec<f32> {
        let bytes = std::fs::read(path).unwrap();
        let header = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
        bytes[10 + header..]
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect()
    }

    fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
        assert_eq!(a.len(), b.len());
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max)
    }

    /// Given Hugging Face's own `pixel_values`, the image embeddings match
    /// `get_image_features` to 1e-4.
    fn check_image_tower(device: &Device, model: &str) {
        let dir = ModelDir::open(&fixtures().join(model)).unwrap();
        let tower = dir.load_vision(device).unwrap();
        let pixels = npy_data(&fixtures().join("pixel_values.npy"));
        let inputs: Vec<Vec<f32>> = pixels.chunks(3 * 224 * 224).map(<[f32]>::to_vec).collect();
        let got = image_features(&tower, device, 224, &inputs);
        let expected = expected();
        let images = expected["images"].as_array().unwrap();
        assert_eq!(got.len(), images.len());
        let mut worst = 0.0f32;
        for (row, image) in got.iter().zip(images) {
            let want = floats(&image[model]["image_embeds"]);
            let diff = max_abs_diff(row, &want);
            assert!(
                diff <= 1e-4,
                "{model} {}: max abs diff {diff}",
                image["file"]
            );
            worst = worst.max(diff);
        }
        eprintln!("{model} image tower: max abs diff {worst:e}");
    }

    fn check_text_tower(device: &Device) {
        let dir = ModelDir::open(&fixtures().join("tiny")).unwrap();
        let tower = dir.load_text(device).unwrap();
        let tokenizer = dir.tokenizer().unwrap();
        let expected = expected();
        let prompts = expected["prompts"].as_array().unwrap();
        let tokens: Vec<_> = prompts
            .iter()
            .map(|p| tokenizer.encode(p["text"].as_str().unwrap()).unwrap())
            .collect();
        let got = text_features(&tower, device, &tokens);
        let mut worst = 0.0f32;
        for (row, prompt) in got.iter().zip(prompts) {
            let want = floats(&prompt["tiny"]["text_embeds"]);
            let diff = max_abs_diff(row, &want);
            assert!(diff <= 1e-4, "{}: max abs diff {diff}", prompt["text"]);
            worst = worst.max(diff);
        }
        eprintln!("tiny text tower: max abs diff {worst:e}");
        // One prompt alone (its own, shorter sequence) gives the same vector.
        let alone = text_features(&tower, device, &tokens[..1]);
        assert!(max_abs_diff(&alone[0], &got[0]) <= 1e-5);
    }

    #[test]
    fn image_tower_matches_transformers_on_cpu() {
        check_image_tower(&Device::flex(), "tiny");
        // Real ViT-B/32 widths, f16 weights upcast to f32.
        check_image_tower(&Device::flex(), "vitb32-1layer");
    }

    #[test]
    fn text_tower_matches_transformers_on_cpu() {
        check_text_tower(&Device::flex());
    }

    /// The same towers through wgpu. CI has no GPU: there this runs on Mesa's
    /// lavapipe, which `.ci/run` installs.
    #[test]
    fn towers_match_transformers_on_wgpu() {
        let device = ComputeDevice::select(DeviceChoice::Gpu)
            .expect("a wgpu adapter (on a machine without a GPU: apt install mesa-vulkan-drivers)");
        eprintln!("wgpu device: {}", device.description);
        check_image_tower(&device.device, "tiny");
        check_image_tower(&device.device, "vitb32-1layer");
        check_text_tower(&device.device);
    }

    /// From image files on disk (decode + preprocess + model), the normalised
    /// embeddings have cosine ≥ 0.9999 with Hugging Face's.
    #[test]
    fn image_files_embed_like_transformers_end_to_end() {
        let expected = expected();
        for model in ["tiny", "vitb32-1layer"] {
            let dir = ModelDir::open(&fixtures().join(model)).unwrap();
            let embedder = ClipEmbedder::load(dir, ComputeDevice::cpu(), Some(3)).unwrap();
            let limits = DecodeLimits::default();
            let images = expected["images"].as_array().unwrap();
            let inputs: Vec<Vec<f32>> = images
                .iter()
                .map(|image| {
                    let path = fixtures().join(image["file"].as_str().unwrap());
                    let bytes = decode::read_file(&path, &limits).unwrap();
                    embedder.preprocess(&decode::decode(&bytes, &limits).unwrap())
                })
                .collect();
            let got = embedder.embed_batch(inputs).unwrap();
            let mut lowest = 1.0f32;
            for (row, image) in got.iter().zip(images) {
                let want = floats(&image[model]["image_embeds_normalized"]);
                let cosine = crate::dot(row, &want);
                assert!(
                    cosine >= 0.9999,
                    "{model} {}: cosine {cosine}",
                    image["file"]
                );
                lowest = lowest.min(cosine);
            }
            eprintln!("{model} from image files: lowest cosine {lowest}");
        }
    }

    #[test]
    fn text_embeddings_are_normalised_and_rank_like_transformers() {
        let dir = ModelDir::open(&fixtures().join("tiny")).unwrap();
        let encoder = ClipTextEncoder::load(&dir, ComputeDevice::cpu()).unwrap();
        let expected = expected();
        let prompts = expected["prompts"].as_array().unwrap();
        let texts: Vec<&str> = prompts
            .iter()
            .map(|p| p["text"].as_str().unwrap())
            .collect();
        let got = encoder.embed(&texts).unwrap();
        for (row, prompt) in got.iter().zip(prompts) {
            let want = floats(&prompt["tiny"]["text_embeds_normalized"]);
            assert!(crate::dot(row, &want) >= 0.9999);
            assert!((crate::dot(row, row) - 1.0).abs() < 1e-5);
        }
    }

    #[test]
    fn incomplete_or_mismatched_model_folders_are_refused_with_a_reason() {
        let empty = tempfile::tempdir().unwrap();
        let err = ModelDir::open(empty.path()).unwrap_err();
        assert!(format!("{err:#}").contains("model fetch"), "{err:#}");

        // A config that does not describe the weights: shapes disagree.
        let wrong = tempfile::tempdir().unwrap();
        let tiny = fixtures().join("tiny");
        std::fs::copy(
            tiny.join("model.safetensors"),
            wrong.path().join("model.safetensors"),
        )
        .unwrap();
        let config = std::fs::read_to_string(tiny.join("config.json"))
            .unwrap()
            .replace("\"intermediate_size\": 128", "\"intermediate_size\": 96");
        std::fs::write(wrong.path().join("config.json"), config).unwrap();
        let dir = ModelDir::open(wrong.path()).unwrap();
        let err = dir.load_vision(&Device::flex()).unwrap_err();
        assert!(format!("{err:#}").contains("does not fit"), "{err:#}");

        // A vision-only checkpoint has no text tower, and says so.
        let vision_only = ModelDir::open(&fixtures().join("vitb32-1layer")).unwrap();
        let err = vision_only.load_text(&Device::flex()).unwrap_err();
        assert!(format!("{err:#}").contains("no text tower"), "{err:#}");
    }

    #[test]
    fn the_cache_key_follows_the_weights() {
        let a = ModelDir::open(&fixtures().join("tiny")).unwrap();
        let b = ModelDir::open(&fixtures().join("vitb32-1layer")).unwrap();
        assert_ne!(a.fingerprint, b.fingerprint);
        assert_eq!(
            a.fingerprint,
            ModelDir::open(&fixtures().join("tiny"))
                .unwrap()
                .fingerprint
        );
    }
}
