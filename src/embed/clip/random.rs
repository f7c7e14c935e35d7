//! A CLIP image tower with random weights, written in the Hugging Face
//! layout: the model the speed benchmarks time where the real weights cannot
//! be downloaded (a GPU box without internet, CI). Speed does not depend on
//! the values; the shapes are the real ones.

use std::path::Path;

use anyhow::Context;
use burn::store::{BurnToPyTorchAdapter, ModuleSnapshot, SafetensorsStore};
use burn::tensor::Device;

use super::{ClipConfig, ClipVision};

/// The image towers of OpenAI's CLIP checkpoints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VisionPreset {
    VitB32,
    VitB16,
    VitL14,
}

impl VisionPreset {
    pub fn parse(name: &str) -> anyhow::Result<Self> {
        match name.to_ascii_lowercase().replace(['/', '_'], "-").as_str() {
            "vit-b-32" | "b32" => Ok(Self::VitB32),
            "vit-b-16" | "b16" => Ok(Self::VitB16),
            "vit-l-14" | "l14" => Ok(Self::VitL14),
            other => {
                anyhow::bail!("unknown preset {other:?}: choose vit-b-32, vit-b-16 or vit-l-14")
            }
        }
    }

    /// `config.json` of a `CLIPVisionModelWithProjection` of this shape.
    pub fn config_json(self) -> serde_json::Value {
        let (hidden, layers, heads, intermediate, patch, projection) = match self {
            Self::VitB32 => (768, 12, 12, 3072, 32, 512),
            Self::VitB16 => (768, 12, 12, 3072, 16, 512),
            Self::VitL14 => (1024, 24, 16, 4096, 14, 768),
        };
        serde_json::json!({
            "architectures": ["CLIPVisionModelWithProjection"],
            "model_type": "clip_vision_model",
            "hidden_size": hidden,
            "intermediate_size": intermediate,
            "num_hidden_layers": layers,
            "num_attention_heads": heads,
            "image_size": 224,
            "patch_size": patch,
            "num_channels": 3,
            "hidden_act": "quick_gelu",
            "layer_norm_eps": 1e-5,
            "projection_dim": projection,
        })
    }
}

/// Writes `config.json`, `preprocessor_config.json` and `model.safetensors`
/// (random weights) into `dir`.
pub fn write_random_vision_model(dir: &Path, preset: VisionPreset) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let config_json = preset.config_json();
    let text = serde_json::to_string_pretty(&config_json)?;
    let config = ClipConfig::from_json(&text)?;
    crate::output::write_atomically(&dir.join(super::ModelDir::CONFIG), |w| {
        Ok(w.write_all(text.as_bytes())?)
    })?;
    let preprocessor = serde_json::json!({
        "crop_size": {"height": 224, "width": 224},
        "size": {"shortest_edge": 224},
        "do_center_crop": true,
        "do_normalize": true,
        "do_resize": true,
        "image_mean": [0.48145466, 0.4578275, 0.40821073],
        "image_std": [0.26862954, 0.26130258, 0.27577711],
        "image_processor_type": "CLIPImageProcessor",
    });
    crate::output::write_atomically(&dir.join(super::ModelDir::PREPROCESSOR), |w| {
        Ok(w.write_all(serde_json::to_string_pretty(&preprocessor)?.as_bytes())?)
    })?;
    let model = ClipVision::init(&config, &Device::flex())?;
    let weights = dir.join(super::ModelDir::WEIGHTS);
    let mut store = SafetensorsStore::from_file(&weights).with_to_adapter(BurnToPyTorchAdapter);
    model
        .save_into(&mut store)
        .map_err(|e| anyhow::anyhow!("{e}"))
        .with_context(|| format!("cannot write {}", weights.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_random_tower_loads_back_through_the_hugging_face_layout() {
        let dir = tempfile::tempdir().unwrap();
        // The real shapes are ~350 MB; check the round trip on a small one.
        let mut json = VisionPreset::VitB32.config_json();
        json["num_hidden_layers"] = 1.into();
        json["hidden_size"] = 64.into();
        json["num_attention_heads"] = 4.into();
        json["intermediate_size"] = 128.into();
        json["projection_dim"] = 32.into();
        let config = ClipConfig::from_json(&json.to_string()).unwrap();
        let model = ClipVision::init(&config, &Device::flex()).unwrap();
        std::fs::write(dir.path().join("config.json"), json.to_string()).unwrap();
        let mut store = SafetensorsStore::from_file(dir.path().join("model.safetensors"))
            .with_to_adapter(BurnToPyTorchAdapter);
        model.save_into(&mut store).unwrap();
        let loaded = super::super::ModelDir::open(dir.path()).unwrap();
        loaded.load_vision(&Device::flex()).unwrap();
        assert_eq!(
            VisionPreset::parse("ViT-B/32").unwrap(),
            VisionPreset::VitB32
        );
        assert!(VisionPreset::parse("vit-h-14").is_err());
    }
}
