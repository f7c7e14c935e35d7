//! The model's shape, read from a Hugging Face `config.json`, so ViT-B/32,
//! ViT-B/16 and ViT-L/14 checkpoints in the same layout all load.
//!
//! Absent fields take `transformers`' defaults for `CLIPTextConfig` and
//! `CLIPVisionConfig` (which are ViT-B/32's): older checkpoints omit many of them.

use std::path::Path;

use anyhow::Context;
use serde::Deserialize;

#[derive(Clone, Debug, Deserialize)]
pub struct ClipConfig {
    #[serde(default = "default_projection_dim")]
    pub projection_dim: usize,
    /// Vision-only checkpoints (`CLIPVisionModelWithProjection`) have no text tower.
    #[serde(default)]
    pub text_config: Option<TextConfig>,
    #[serde(default)]
    pub vision_config: Option<VisionConfig>,
    /// `CLIPVisionModelWithProjection` saves the vision fields at the top level.
    #[serde(flatten)]
    pub top_level: serde_json::Map<String, serde_json::Value>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct VisionConfig {
    #[serde(default = "vision_defaults::hidden_size")]
    pub hidden_size: usize,
    #[serde(default = "vision_defaults::intermediate_size")]
    pub intermediate_size: usize,
    #[serde(default = "vision_defaults::num_hidden_layers")]
    pub num_hidden_layers: usize,
    #[serde(default = "vision_defaults::num_attention_heads")]
    pub num_attention_heads: usize,
    #[serde(default = "vision_defaults::image_size")]
    pub image_size: usize,
    #[serde(default = "vision_defaults::patch_size")]
    pub patch_size: usize,
    #[serde(default = "vision_defaults::num_channels")]
    pub num_channels: usize,
    #[serde(default = "default_layer_norm_eps")]
    pub layer_norm_eps: f64,
    #[serde(default = "default_hidden_act")]
    pub hidden_act: String,
}

#[derive(Clone, Debug, Deserialize)]
pub struct TextConfig {
    #[serde(default = "text_defaults::vocab_size")]
    pub vocab_size: usize,
    #[serde(default = "text_defaults::hidden_size")]
    pub hidden_size: usize,
    #[serde(default = "text_defaults::intermediate_size")]
    pub intermediate_size: usize,
    #[serde(default = "text_defaults::num_hidden_layers")]
    pub num_hidden_layers: usize,
    #[serde(default = "text_defaults::num_attention_heads")]
    pub num_attention_heads: usize,
    #[serde(default = "text_defaults::max_position_embeddings")]
    pub max_position_embeddings: usize,
    #[serde(default = "default_layer_norm_eps")]
    pub layer_norm_eps: f64,
    #[serde(default = "default_hidden_act")]
    pub hidden_act: String,
}

fn default_projection_dim() -> usize {
    512
}
fn default_layer_norm_eps() -> f64 {
    1e-5
}
fn default_hidden_act() -> String {
    "quick_gelu".into()
}

mod vision_defaults {
    pub fn hidden_size() -> usize {
        768
    }
    pub fn intermediate_size() -> usize {
        3072
    }
    pub fn num_hidden_layers() -> usize {
        12
    }
    pub fn num_attention_heads() -> usize {
        12
    }
    pub fn image_size() -> usize {
        224
    }
    pub fn patch_size() -> usize {
        32
    }
    pub fn num_channels() -> usize {
        3
    }
}

mod text_defaults {
    pub fn vocab_size() -> usize {
        49408
    }
    pub fn hidden_size() -> usize {
        512
    }
    pub fn intermediate_size() -> usize {
        2048
    }
    pub fn num_hidden_layers() -> usize {
        12
    }
    pub fn num_attention_heads() -> usize {
        8
    }
    pub fn max_position_embeddings() -> usize {
        77
    }
}

/// The activation inside each encoder MLP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// `x * sigmoid(1.702 x)`: OpenAI's CLIP checkpoints.
    QuickGelu,
    /// The exact (erf) GELU some re-trained checkpoints use.
    Gelu,
}

impl Activation {
    pub fn parse(name: &str) -> anyhow::Result<Self> {
        match name {
            "quick_gelu" => Ok(Self::QuickGelu),
            "gelu" => Ok(Self::Gelu),
            other => anyhow::bail!(
                "unsupported hidden_act {other:?} in config.json (embedscope knows quick_gelu and gelu)"
            ),
        }
    }
}

impl ClipConfig {
    pub fn from_file(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        Self::from_json(&text).with_context(|| format!("{} is not a CLIP config", path.display()))
    }

    pub fn from_json(text: &str) -> anyhow::Result<Self> {
        let mut config: ClipConfig = serde_json::from_str(text)?;
        let model_type = config.top_level.get("model_type").and_then(|v| v.as_str());
        if config.vision_config.is_none() && model_type == Some("clip_vision_model") {
            let top = serde_json::Value::Object(config.top_level.clone());
            config.vision_config = Some(serde_json::from_value(top)?);
        }
        if let Some(model_type) = model_type {
            anyhow::ensure!(
                model_type.starts_with("clip"),
                "model_type is {model_type:?}, not a CLIP model"
            );
        }
        let vision = config
            .vision()
            .context("config.json has no vision_config: embedscope needs CLIP's image tower")?;
        // Absurd sizes would divide by zero or allocate terabytes: refuse
        // them here, with the field's name, before any tensor exists.
        let bounded = |section: &str, field: &str, value: usize, max: usize| {
            anyhow::ensure!(
                (1..=max).contains(&value),
                "{section}.{field} is {value}: expected 1 to {max}"
            );
            Ok(())
        };
        bounded("config", "projection_dim", config.projection_dim, 16_384)?;
        bounded("vision_config", "hidden_size", vision.hidden_size, 16_384)?;
        bounded(
            "vision_config",
            "intermediate_size",
            vision.intermediate_size,
            65_536,
        )?;
        bounded(
            "vision_config",
            "num_hidden_layers",
            vision.num_hidden_layers,
            256,
        )?;
        bounded(
            "vision_config",
            "num_attention_heads",
            vision.num_attention_heads,
            256,
        )?;
        bounded("vision_config", "image_size", vision.image_size, 4_096)?;
        bounded(
            "vision_config",
            "patch_size",
            vision.patch_size,
            vision.image_size,
        )?;
        anyhow::ensure!(
            vision.num_channels == 3,
            "vision_config.num_channels is {}: CLIP takes RGB images (3)",
            vision.num_channels
        );
        if let Some(text) = &config.text_config {
            bounded("text_config", "hidden_size", text.hidden_size, 16_384)?;
            bounded(
                "text_config",
                "intermediate_size",
                text.intermediate_size,
                65_536,
            )?;
            bounded(
                "text_config",
                "num_hidden_layers",
                text.num_hidden_layers,
                256,
            )?;
            bounded(
                "text_config",
                "num_attention_heads",
                text.num_attention_heads,
                256,
            )?;
            bounded("text_config", "vocab_size", text.vocab_size, 1 << 22)?;
            bounded(
                "text_config",
                "max_position_embeddings",
                text.max_position_embeddings,
                65_536,
            )?;
        }
        anyhow::ensure!(
            vision.hidden_size % vision.num_attention_heads == 0
                && vision.image_size % vision.patch_size == 0,
            "inconsistent vision_config: hidden_size {} / heads {}, image {} / patch {}",
            vision.hidden_size,
            vision.num_attention_heads,
            vision.image_size,
            vision.patch_size
        );
        Activation::parse(&vision.hidden_act)?;
        if let Some(text) = &config.text_config {
            anyhow::ensure!(
                text.hidden_size % text.num_attention_heads == 0,
                "inconsistent text_config: hidden_size {} / heads {}",
                text.hidden_size,
                text.num_attention_heads
            );
            Activation::parse(&text.hidden_act)?;
        }
        Ok(config)
    }

    pub fn vision(&self) -> Option<&VisionConfig> {
        self.vision_config.as_ref()
    }

    pub fn text(&self) -> Option<&TextConfig> {
        self.text_config.as_ref()
    }
}

impl VisionConfig {
    pub fn patches_per_side(&self) -> usize {
        self.image_size / self.patch_size
    }

    /// Patches plus the class token.
    pub fn num_positions(&self) -> usize {
        self.patches_per_side() * self.patches_per_side() + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_full_and_vision_only_configs() {
        let fixtures =
            std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/clip");
        let tiny = ClipConfig::from_file(&fixtures.join("tiny/config.json")).unwrap();
        assert_eq!(tiny.projection_dim, 32);
        let vision = tiny.vision().unwrap();
        assert_eq!(
            (
                vision.hidden_size,
                vision.num_hidden_layers,
                vision.num_positions()
            ),
            (64, 2, 50)
        );
        assert_eq!(tiny.text().unwrap().vocab_size, 1000);

        let vitb = ClipConfig::from_file(&fixtures.join("vitb32-1layer/config.json")).unwrap();
        assert_eq!(vitb.projection_dim, 512);
        assert!(vitb.text().is_none());
        let vision = vitb.vision().unwrap();
        assert_eq!(
            (
                vision.hidden_size,
                vision.num_attention_heads,
                vision.intermediate_size
            ),
            (768, 12, 3072)
        );
    }

    #[test]
    fn missing_fields_take_vit_b32_defaults_and_bad_ones_are_refused() {
        let config =
            ClipConfig::from_json(r#"{"model_type":"clip","text_config":{},"vision_config":{}}"#)
                .unwrap();
        assert_eq!(config.vision().unwrap().num_positions(), 50);
        assert_eq!(config.text().unwrap().hidden_size, 512);
        let err = ClipConfig::from_json(r#"{"model_type":"bert"}"#).unwrap_err();
        assert!(format!("{err:#}").contains("not a CLIP model"));
        let err = ClipConfig::from_json(r#"{"vision_config":{"hidden_act":"relu"}}"#).unwrap_err();
        assert!(format!("{err:#}").contains("unsupported hidden_act"));
        for (json, field) in [
            (r#"{"vision_config":{"patch_size":0}}"#, "patch_size"),
            (
                r#"{"vision_config":{"hidden_size":1000000000}}"#,
                "hidden_size",
            ),
            (r#"{"vision_config":{"num_channels":1}}"#, "num_channels"),
            (
                r#"{"vision_config":{},"text_config":{"num_attention_heads":0}}"#,
                "num_attention_heads",
            ),
        ] {
            let err = ClipConfig::from_json(json).unwrap_err();
            assert!(format!("{err:#}").contains(field), "{json}: {err:#}");
        }
    }
}
