//! CLIP (ViT-B/32 and kin) on Burn.
//!
//! The CPU side must match Hugging Face exactly: the image preprocessing
//! (`CLIPImageProcessor`, [`preprocess`]) and the tokenizer (`CLIPTokenizer`,
//! [`tokenizer`]). The towers ([`model`]) load a Hugging Face model directory
//! (`config.json`, `model.safetensors`, `tokenizer.json`) through Burn's store and
//! run on wgpu or Burn's CPU backend ([`device`]). On the CPU the image tower
//! runs through [`cpu`], a hand-written forward pass over the same weights,
//! 1.4–1.6× Burn's speed there ([`ImageTower`]); Burn's model stays the
//! reference and the GPU path.

pub mod config;
pub mod cpu;
pub mod device;
pub mod fetch;
pub mod hub_cache;
pub mod model;
pub mod preprocess;
pub mod random;
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
    /// The safetensors file(s) holding the weights.
    pub weights: Weights,
    /// BLAKE3 of the weights and configs: embeddings are cached per model.
    pub fingerprint: String,
}

/// Where the weights are: one file, or shards listed by an index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Weights {
    Single(PathBuf),
    /// `model.safetensors.index.json` and the shards its `weight_map` names.
    Sharded {
        index: PathBuf,
        shards: Vec<PathBuf>,
    },
}

impl Weights {
    pub fn files(&self) -> Vec<&Path> {
        match self {
            Weights::Single(path) => vec![path.as_path()],
            Weights::Sharded { index, shards } => std::iter::once(index.as_path())
                .chain(shards.iter().map(PathBuf::as_path))
                .collect(),
        }
    }

    /// The files tensors are read from (not the index).
    fn tensor_files(&self) -> Vec<&Path> {
        match self {
            Weights::Single(path) => vec![path.as_path()],
            Weights::Sharded { shards, .. } => shards.iter().map(PathBuf::as_path).collect(),
        }
    }
}

impl ModelDir {
    pub const WEIGHTS: &'static str = "model.safetensors";
    pub const WEIGHTS_INDEX: &'static str = "model.safetensors.index.json";
    pub const PYTORCH_WEIGHTS: &'static str = "pytorch_model.bin";
    pub const CONFIG: &'static str = "config.json";
    pub const TOKENIZER: &'static str = "tokenizer.json";
    pub const PREPROCESSOR: &'static str = "preprocessor_config.json";

    /// Checks a model folder without loading the weights: every problem is
    /// an error naming the file and the field, never a panic later.
    pub fn open(dir: &Path) -> anyhow::Result<Self> {
        anyhow::ensure!(
            dir.is_dir(),
            "the CLIP model folder {} does not exist",
            dir.display()
        );
        anyhow::ensure!(
            dir.join(Self::CONFIG).is_file(),
            "{} has no config.json: a CLIP model folder holds config.json, model.safetensors \
             and tokenizer.json in the Hugging Face layout (`embedscope model fetch` downloads one)",
            dir.display()
        );
        let weights = Self::find_weights(dir)?;
        let config = ClipConfig::from_file(&dir.join(Self::CONFIG))?;
        let image_size = config.vision().map(|v| v.image_size as u32).unwrap_or(224);
        let preprocess = match dir.join(Self::PREPROCESSOR) {
            p if p.is_file() => {
                let preprocess = ClipPreprocessConfig::from_file(&p)?;
                check_preprocess(&preprocess, image_size, &p)?;
                preprocess
            }
            _ => ClipPreprocessConfig::for_image_size(image_size),
        };
        let fingerprint = fingerprint(dir, &weights)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            config,
            preprocess,
            weights,
            fingerprint,
        })
    }

    fn find_weights(dir: &Path) -> anyhow::Result<Weights> {
        let single = dir.join(Self::WEIGHTS);
        if single.is_file() {
            return Ok(Weights::Single(single));
        }
        let index = dir.join(Self::WEIGHTS_INDEX);
        if index.is_file() {
            return sharded_weights(&index);
        }
        if dir.join(Self::PYTORCH_WEIGHTS).is_file()
            || dir.join("pytorch_model.bin.index.json").is_file()
        {
            let shown = dir.display();
            anyhow::bail!(
                "{shown} holds only pytorch_model.bin (PyTorch's pickle format), which embedscope \
                 does not read. Convert it once to safetensors with transformers:\n  \
                 python -c \"from transformers import CLIPModel as M; \
                 M.from_pretrained('{shown}').save_pretrained('{shown}', safe_serialization=True)\"\n\
                 or download the safetensors version: `embedscope model fetch --repo ORG/NAME`"
            );
        }
        anyhow::bail!(
            "{} has no model.safetensors (nor model.safetensors.index.json): a CLIP model folder \
             holds config.json, model.safetensors and tokenizer.json in the Hugging Face layout \
             (`embedscope model fetch` downloads one)",
            dir.display()
        )
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
        let model = catch_panics("building the CLIP image tower", || {
            ClipVision::init(&self.config, device)
        })?;
        self.load_weights(model, Tower::Vision)
    }

    pub fn load_text(&self, device: &Device) -> anyhow::Result<ClipText> {
        let model = catch_panics("building the CLIP text tower", || {
            ClipText::init(&self.config, device)
        })?;
        self.load_weights(model, Tower::Text)
    }

    fn load_weights<M: Module + ModuleSnapshot>(
        &self,
        mut model: M,
        tower: Tower,
    ) -> anyhow::Result<M> {
        let files = self.weights.tensor_files();
        let mut missing: Option<std::collections::BTreeSet<String>> = None;
        let mut extra = Vec::new();
        for path in &files {
            // PyTorch stores Linear weights [out, in] and LayerNorm weight/bias;
            // the adapter transposes and renames them to Burn's [in, out], gamma/beta.
            let mut store = SafetensorsStore::from_file(*path)
                .with_from_adapter(PyTorchToBurnAdapter)
                .allow_partial(true);
            let result = catch_panics("reading the CLIP weights", || {
                model
                    .load_from(&mut store)
                    .map_err(|e| anyhow::anyhow!("{e}"))
            })
            .with_context(|| {
                format!(
                    "{} does not fit the CLIP {} tower described by config.json",
                    path.display(),
                    tower.name()
                )
            })?;
            anyhow::ensure!(
                result.errors.is_empty(),
                "{} does not fit the CLIP {} tower described by config.json: {}",
                path.display(),
                tower.name(),
                result
                    .errors
                    .iter()
                    .map(|e| format!("{e:?}"))
                    .collect::<Vec<_>>()
                    .join("; ")
            );
            // With shards, a tensor is missing only if no shard has it.
            let here: std::collections::BTreeSet<String> =
                result.missing.iter().map(|(p, _)| p.clone()).collect();
            missing = Some(match missing {
                None => here,
                Some(before) => before.intersection(&here).cloned().collect(),
            });
            extra.extend(
                result
                    .unused
                    .iter()
                    .filter(|name| tower.owns(name))
                    .cloned(),
            );
        }
        let missing = missing.unwrap_or_default();
        let shown = self
            .weights
            .tensor_files()
            .first()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        anyhow::ensure!(
            missing.is_empty(),
            "{shown} lacks {} tensors of the CLIP {} tower, e.g. {}",
            missing.len(),
            tower.name(),
            missing
                .iter()
                .take(3)
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        );
        anyhow::ensure!(
            extra.is_empty(),
            "{shown} has {} tensors under the CLIP {} tower's names that this model does not have \
             (e.g. {}): config.json describes another architecture than the weights",
            extra.len(),
            tower.name(),
            extra.iter().take(3).cloned().collect::<Vec<_>>().join(", ")
        );
        // Half-precision checkpoints (f16, bf16) load as such; compute in f32
        // as the reference does (the weights upcast to f32).
        catch_panics("converting the CLIP weights to f32", || {
            Ok(model.map(&mut UpcastToF32))
        })
    }
}

/// Which tower a load is for, and which tensor names are its own (an unused
/// tensor with such a name means the config and the weights disagree).
#[derive(Clone, Copy)]
enum Tower {
    Vision,
    Text,
}

impl Tower {
    fn name(self) -> &'static str {
        match self {
            Tower::Vision => "vision",
            Tower::Text => "text",
        }
    }

    fn owns(self, tensor: &str) -> bool {
        // Buffers older checkpoints saved along with the weights.
        if tensor.ends_with("position_ids") {
            return false;
        }
        match self {
            Tower::Vision => {
                tensor.starts_with("vision_model.") || tensor.starts_with("visual_projection")
            }
            Tower::Text => {
                tensor.starts_with("text_model.") || tensor.starts_with("text_projection")
            }
        }
    }
}

/// The shards `model.safetensors.index.json`'s `weight_map` names, each present.
fn sharded_weights(index: &Path) -> anyhow::Result<Weights> {
    let text = std::fs::read_to_string(index)
        .with_context(|| format!("cannot read {}", index.display()))?;
    let json: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", index.display()))?;
    let map = json
        .get("weight_map")
        .and_then(|m| m.as_object())
        .with_context(|| format!("{} has no weight_map object", index.display()))?;
    let dir = index.parent().unwrap_or(Path::new("."));
    let mut shards: Vec<PathBuf> = Vec::new();
    for (tensor, file) in map {
        let file = file.as_str().with_context(|| {
            format!(
                "{}: weight_map[{tensor:?}] is not a file name",
                index.display()
            )
        })?;
        anyhow::ensure!(
            !file.contains(['/', '\\']) && file.ends_with(".safetensors"),
            "{}: weight_map[{tensor:?}] names {file:?}, not a .safetensors file in this folder",
            index.display()
        );
        let path = dir.join(file);
        if !shards.contains(&path) {
            anyhow::ensure!(
                path.is_file(),
                "{} names the shard {file}, which is missing: download the model again",
                index.display()
            );
            shards.push(path);
        }
    }
    anyhow::ensure!(
        !shards.is_empty(),
        "{}: weight_map is empty",
        index.display()
    );
    shards.sort();
    Ok(Weights::Sharded {
        index: index.to_path_buf(),
        shards,
    })
}

/// The image processor must produce what the image tower takes: a crop of
/// `image_size`, from a resize at least that large.
fn check_preprocess(p: &ClipPreprocessConfig, image_size: u32, path: &Path) -> anyhow::Result<()> {
    anyhow::ensure!(
        p.crop_size == image_size,
        "{}: crop_size is {} but config.json's vision_config.image_size is {image_size}: the \
         image tower takes {image_size}×{image_size} images (the two files come from different models?)",
        path.display(),
        p.crop_size
    );
    anyhow::ensure!(
        p.shortest_edge >= p.crop_size,
        "{}: size (shortest_edge) is {}, smaller than crop_size {}: the centre crop would run \
         off the image",
        path.display(),
        p.shortest_edge,
        p.crop_size
    );
    anyhow::ensure!(
        p.std.iter().all(|s| *s > 0.0 && s.is_finite()) && p.mean.iter().all(|m| m.is_finite()),
        "{}: image_std must be positive and image_mean finite",
        path.display()
    );
    Ok(())
}

/// Runs `work`, turning a panic (a shape Burn did not expect, a backend
/// failure, a broken invariant in the CPU forward pass) into an error that
/// says what was being done.
pub(crate) fn catch_panics<T>(
    doing: &str,
    work: impl FnOnce() -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)) {
        Ok(result) => result,
        Err(payload) => {
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "no message".into());
            Err(anyhow::anyhow!(
                "{doing} failed with a panic ({message}); the model folder may not match its \
                 config.json, or the device ran out of memory"
            ))
        }
    }
}

/// BLAKE3 of a model folder's weights and configs, remembered per process by
/// (path, length, modification time) of each file: hashing 600 MB is ~0.5 s,
/// and `search` and the viewer's text queries open the same folder repeatedly.
fn fingerprint(dir: &Path, weights: &Weights) -> anyhow::Result<String> {
    use std::collections::HashMap;
    use std::sync::OnceLock;
    type Stamp = Vec<(PathBuf, u64, Option<std::time::SystemTime>)>;
    static KNOWN: OnceLock<Mutex<HashMap<Stamp, String>>> = OnceLock::new();

    let files: Vec<PathBuf> = [ModelDir::CONFIG, ModelDir::PREPROCESSOR]
        .iter()
        .map(|name| dir.join(name))
        .filter(|path| path.is_file())
        .chain(weights.files().into_iter().map(Path::to_path_buf))
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
    if let Some(hit) = known.lock().unwrap_or_else(|p| p.into_inner()).get(&stamp) {
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
        .unwrap_or_else(|p| p.into_inner())
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

/// Which forward pass runs the image tower.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageEngine {
    /// The CPU forward pass ([`cpu`]) on the CPU, Burn's model on a GPU.
    Auto,
    /// Burn's model on any device: the reference, which `bench-clip --burn`
    /// times against the CPU forward pass.
    Burn,
}

/// The image tower, loaded for the device it runs on.
pub enum ImageTower {
    Burn {
        /// Forward passes only read the model; the lock is there because
        /// Burn's modules are not `Sync`. Both variants are boxed: the
        /// structs are 0.5–1 kB.
        model: Box<Mutex<ClipVision>>,
        device: Device,
        description: String,
    },
    Cpu {
        tower: Box<cpu::CpuVision>,
        description: String,
    },
}

impl ImageTower {
    pub fn load(
        model_dir: &ModelDir,
        device: &ComputeDevice,
        engine: ImageEngine,
    ) -> anyhow::Result<Self> {
        let model = model_dir.load_vision(&device.device)?;
        if device.is_gpu || engine == ImageEngine::Burn {
            return Ok(Self::Burn {
                model: Box::new(Mutex::new(model)),
                device: device.device.clone(),
                description: device.description.clone(),
            });
        }
        // The weights are copied out of the Burn model, which is then dropped:
        // its loader keeps the checks on the checkpoint (shapes, missing and
        // foreign tensors, f16/bf16 upcast) in one place.
        let tower = catch_panics("copying the CLIP image tower's weights", || {
            cpu::CpuVision::from_burn(&model, &model_dir.config)
        })?;
        Ok(Self::Cpu {
            tower: Box::new(tower),
            description: format!(
                "CPU (embedscope's forward pass on gemm, {} threads)",
                rayon::current_num_threads()
            ),
        })
    }

    /// Where and how the tower runs, for the user.
    pub fn description(&self) -> &str {
        match self {
            Self::Burn { description, .. } | Self::Cpu { description, .. } => description,
        }
    }

    /// Raw (unnormalised) embeddings of preprocessed images (`[n][3·s·s]`,
    /// `s` the config's image size); a panic inside becomes an error.
    pub fn features(
        &self,
        inputs: &[Vec<f32>],
        image_size: usize,
    ) -> anyhow::Result<Vec<Vec<f32>>> {
        match self {
            Self::Burn { model, device, .. } => {
                // A panic in an earlier pass leaves the model usable: it is only read.
                let model = model.lock().unwrap_or_else(|p| p.into_inner());
                catch_panics("the CLIP image tower", || {
                    Ok(image_features(&model, device, image_size, inputs))
                })
            }
            Self::Cpu { tower, .. } => {
                catch_panics("the CLIP image tower (CPU forward pass)", || {
                    tower.image_features(inputs)
                })
            }
        }
    }
}

/// Runs Burn's image tower on a batch of preprocessed images (`[n][3·s·s]`)
/// and returns raw (unnormalised) embeddings.
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
    tower: ImageTower,
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
        let tower = ImageTower::load(&model_dir, &device, ImageEngine::Auto)?;
        let dim = model_dir.config.projection_dim;
        let id = format!("clip-{}", model_dir.fingerprint);
        let batch = batch.unwrap_or_else(|| default_batch(&device)).max(1);
        Ok(Self {
            tower,
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
            self.tower.description()
        )
    }

    fn default_duplicate_threshold(&self) -> f32 {
        DEFAULT_DUPLICATE_THRESHOLD
    }

    fn preprocess(&self, image: &DynamicImage) -> Vec<f32> {
        preprocess::preprocess(image, &self.model_dir.preprocess)
    }

    fn embed_batch(&self, batch: Vec<Vec<f32>>) -> anyhow::Result<Vec<Vec<f32>>> {
        let size = self.model_dir.preprocess.crop_size as usize;
        let mut out = Vec::with_capacity(batch.len());
        for chunk in batch.chunks(self.batch) {
            for mut v in self.tower.features(chunk, size)? {
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
        self.embed_tokens(&tokens)
    }

    /// The prompt's tokens (77 at most: `truncated` says whether it was cut).
    pub fn tokenize(&self, prompt: &str) -> anyhow::Result<tokenizer::ClipTokens> {
        self.tokenizer.encode(prompt)
    }

    pub fn embed_tokens(&self, tokens: &[tokenizer::ClipTokens]) -> anyhow::Result<Vec<Vec<f32>>> {
        let mut out = catch_panics("the CLIP text tower", || {
            Ok(text_features(&self.model, &self.device.device, tokens))
        })?;
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

    pub(crate) fn fixtures() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/clip")
    }

    pub(crate) fn expected() -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("expected.json")).unwrap())
            .unwrap()
    }

    pub(crate) fn floats(v: &serde_json::Value) -> Vec<f32> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap() as f32)
            .collect()
    }

    /// The data of a little-endian float32 `.npy` of any shape.
    pub(crate) fn npy_data(path: &Path) -> Vec<f32> {
        let bytes = std::fs::read(path).unwrap();
        let header = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
        bytes[10 + header..]
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect()
    }

    pub(crate) fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
        assert_eq!(a.len(), b.len());
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max)
    }

    /// Hugging Face's own `pixel_values` for the fixture images, one row each.
    pub(crate) fn fixture_pixels() -> Vec<Vec<f32>> {
        npy_data(&fixtures().join("pixel_values.npy"))
            .chunks(3 * 224 * 224)
            .map(<[f32]>::to_vec)
            .collect()
    }

    /// Asserts that `got` (one row per fixture image) matches `model`'s
    /// `get_image_features` to 1e-4; returns the largest difference.
    pub(crate) fn assert_image_embeds_match(model: &str, got: &[Vec<f32>]) -> f32 {
        let expected = expected();
        let images = expected["images"].as_array().unwrap();
        assert_eq!(got.len(), images.len());
        let mut worst = 0.0f32;
        for (row, image) in got.iter().zip(images) {
            let diff = max_abs_diff(row, &floats(&image[model]["image_embeds"]));
            assert!(
                diff <= 1e-4,
                "{model} {}: max abs diff {diff}",
                image["file"]
            );
            worst = worst.max(diff);
        }
        worst
    }

    /// Given Hugging Face's own `pixel_values`, the image embeddings match
    /// `get_image_features` to 1e-4.
    fn check_image_tower(device: &Device, model: &str) {
        let dir = ModelDir::open(&fixtures().join(model)).unwrap();
        let tower = dir.load_vision(device).unwrap();
        let got = image_features(&tower, device, 224, &fixture_pixels());
        let worst = assert_image_embeds_match(model, &got);
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

    /// On the CPU the embedder's tower is the hand-written forward pass; it
    /// and Burn's model (`bench-clip --burn`) give the same embeddings.
    #[test]
    fn the_cpu_tower_is_the_forward_pass_and_agrees_with_burn() {
        let dir = ModelDir::open(&fixtures().join("vitb32-1layer")).unwrap();
        let cpu = ImageTower::load(&dir, &ComputeDevice::cpu(), ImageEngine::Auto).unwrap();
        let burn = ImageTower::load(&dir, &ComputeDevice::cpu(), ImageEngine::Burn).unwrap();
        assert!(matches!(cpu, ImageTower::Cpu { .. }));
        assert!(matches!(burn, ImageTower::Burn { .. }));
        let inputs = fixture_pixels();
        let got = cpu.features(&inputs, 224).unwrap();
        let want = burn.features(&inputs, 224).unwrap();
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(&want) {
            let diff = max_abs_diff(g, w);
            assert!(
                diff <= 1e-4,
                "CPU forward pass vs Burn: max abs diff {diff}"
            );
        }
        // A wrongly sized input is an error from either, not a panic.
        assert!(cpu.features(&[vec![0.0; 12]], 224).is_err());
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

    /// A copy of the tiny model whose weights are rewritten by `edit`
    /// (tensor name → dtype and bytes) into the files `split` decides.
    fn rewritten_tiny(
        edit: impl Fn(
            &str,
            safetensors::Dtype,
            Vec<u8>,
            Vec<usize>,
        ) -> Option<(String, safetensors::Dtype, Vec<u8>, Vec<usize>)>,
        shards: usize,
    ) -> tempfile::TempDir {
        let tiny = fixtures().join("tiny");
        let out = tempfile::tempdir().unwrap();
        for name in ["config.json", "preprocessor_config.json", "tokenizer.json"] {
            std::fs::copy(tiny.join(name), out.path().join(name)).unwrap();
        }
        let bytes = std::fs::read(tiny.join("model.safetensors")).unwrap();
        let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let mut tensors: Vec<(String, safetensors::Dtype, Vec<u8>, Vec<usize>)> = Vec::new();
        let mut names = file.names();
        names.sort();
        for name in names {
            let view = file.tensor(name).unwrap();
            if let Some(t) = edit(
                name,
                view.dtype(),
                view.data().to_vec(),
                view.shape().to_vec(),
            ) {
                tensors.push(t);
            }
        }
        let write = |list: &[(String, safetensors::Dtype, Vec<u8>, Vec<usize>)], path: &Path| {
            let views: Vec<(String, safetensors::tensor::TensorView)> = list
                .iter()
                .map(|(n, d, b, s)| {
                    (
                        n.clone(),
                        safetensors::tensor::TensorView::new(*d, s.clone(), b).unwrap(),
                    )
                })
                .collect();
            safetensors::serialize_to_file(views, None, path).unwrap();
        };
        if shards <= 1 {
            write(&tensors, &out.path().join("model.safetensors"));
        } else {
            let mut map = serde_json::Map::new();
            let per = tensors.len().div_ceil(shards);
            for (k, chunk) in tensors.chunks(per).enumerate() {
                let name = format!("model-{:05}-of-{shards:05}.safetensors", k + 1);
                write(chunk, &out.path().join(&name));
                for (tensor, ..) in chunk {
                    map.insert(tensor.clone(), serde_json::Value::String(name.clone()));
                }
            }
            let index = serde_json::json!({ "metadata": {}, "weight_map": map });
            std::fs::write(
                out.path().join("model.safetensors.index.json"),
                serde_json::to_string(&index).unwrap(),
            )
            .unwrap();
        }
        out
    }

    fn tiny_image_embeddings(dir: &Path) -> Vec<Vec<f32>> {
        let model = ModelDir::open(dir).unwrap();
        let side = model.preprocess.crop_size as usize;
        let embedder = ClipEmbedder::load(model, ComputeDevice::cpu(), None).unwrap();
        let inputs: Vec<Vec<f32>> = (0..3)
            .map(|i| {
                (0..3 * side * side)
                    .map(|j| ((i * 7 + j) % 13) as f32 / 13.0 - 0.5)
                    .collect()
            })
            .collect();
        embedder.embed_batch(inputs).unwrap()
    }

    #[test]
    fn sharded_checkpoints_load_like_one_file() {
        let keep = |n: &str, d, b, s| Some((n.to_owned(), d, b, s));
        let sharded = rewritten_tiny(keep, 3);
        let dir = ModelDir::open(sharded.path()).unwrap();
        assert!(matches!(&dir.weights, Weights::Sharded { shards, .. } if shards.len() == 3));
        let whole = tiny_image_embeddings(&fixtures().join("tiny"));
        assert_eq!(tiny_image_embeddings(sharded.path()), whole);
        // A shard the index names but the folder lacks.
        let first = sharded.path().join("model-00001-of-00003.safetensors");
        std::fs::remove_file(first).unwrap();
        let err = ModelDir::open(sharded.path()).unwrap_err();
        assert!(format!("{err:#}").contains("missing"), "{err:#}");
    }

    #[test]
    fn bf16_weights_are_converted_and_embed_close_to_f32() {
        let to_bf16 = |n: &str, d: safetensors::Dtype, b: Vec<u8>, s| {
            if d != safetensors::Dtype::F32 {
                return Some((n.to_owned(), d, b, s));
            }
            let halves: Vec<u8> = b
                .chunks_exact(4)
                .flat_map(|c| {
                    let x = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
                    half::bf16::from_f32(x).to_le_bytes()
                })
                .collect();
            Some((n.to_owned(), safetensors::Dtype::BF16, halves, s))
        };
        let bf16 = rewritten_tiny(to_bf16, 1);
        let got = tiny_image_embeddings(bf16.path());
        let want = tiny_image_embeddings(&fixtures().join("tiny"));
        for (g, w) in got.iter().zip(&want) {
            let cosine = crate::dot(g, w);
            assert!(cosine > 0.99, "bf16 against f32: cosine {cosine}");
        }
    }

    #[test]
    fn missing_and_foreign_tensors_are_named() {
        let drop_one = |n: &str, d, b, s| {
            (n != "vision_model.post_layernorm.weight").then(|| (n.to_owned(), d, b, s))
        };
        let missing = rewritten_tiny(drop_one, 1);
        let err = ModelDir::open(missing.path())
            .unwrap()
            .load_vision(&Device::flex())
            .unwrap_err();
        let message = format!("{err:#}");
        assert!(
            message.contains("lacks 1 tensors") && message.contains("post_layernorm"),
            "{message}"
        );

        let foreign = |n: &str, d, b: Vec<u8>, s: Vec<usize>| {
            let renamed = n.replace("encoder.layers.1.", "encoder.layers.7.");
            Some((renamed, d, b, s))
        };
        let extra = rewritten_tiny(foreign, 1);
        let err = ModelDir::open(extra.path())
            .unwrap()
            .load_vision(&Device::flex())
            .unwrap_err();
        assert!(format!("{err:#}").contains("layers"), "{err:#}");
    }

    #[test]
    fn folder_problems_name_the_file_and_field() {
        let tiny = fixtures().join("tiny");
        let copy = |dir: &Path| {
            for name in ["config.json", "model.safetensors", "tokenizer.json"] {
                std::fs::copy(tiny.join(name), dir.join(name)).unwrap();
            }
        };
        // A crop that is not the tower's image size (today's panic, exit 101).
        let bad = tempfile::tempdir().unwrap();
        copy(bad.path());
        std::fs::write(
            bad.path().join("preprocessor_config.json"),
            r#"{"crop_size": {"height": 24, "width": 24}, "size": {"shortest_edge": 24}}"#,
        )
        .unwrap();
        let err = ModelDir::open(bad.path()).unwrap_err();
        let message = format!("{err:#}");
        assert!(
            message.contains("preprocessor_config.json")
                && message.contains("crop_size")
                && message.contains("image_size"),
            "{message}"
        );
        std::fs::write(
            bad.path().join("preprocessor_config.json"),
            r#"{"crop_size": 224, "size": 200}"#,
        )
        .unwrap();
        let err = ModelDir::open(bad.path()).unwrap_err();
        assert!(format!("{err:#}").contains("shortest_edge"), "{err:#}");

        // Only PyTorch's pickle: the message gives the conversion command.
        let pickle = tempfile::tempdir().unwrap();
        std::fs::copy(tiny.join("config.json"), pickle.path().join("config.json")).unwrap();
        std::fs::write(pickle.path().join("pytorch_model.bin"), b"PK\x03\x04").unwrap();
        let err = ModelDir::open(pickle.path()).unwrap_err();
        assert!(format!("{err:#}").contains("save_pretrained"), "{err:#}");
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
