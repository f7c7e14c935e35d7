//! CLIP's two towers as Burn modules, written the burn way: a config (here the
//! Hugging Face one, [`ClipConfig`]) and `init` functions that build modules.
//!
//! Field names mirror the Hugging Face state dict (`vision_model.encoder.layers.3.
//! self_attn.q_proj`, …) so the weights load without any key remapping; the
//! odd spelling `pre_layrnorm` is the checkpoint's own.

use burn::module::{Module, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Embedding, EmbeddingConfig, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::tensor::activation::{gelu, sigmoid};
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Device, Int, Tensor};

use super::config::{Activation, ClipConfig, TextConfig, VisionConfig};

/// The image tower and its projection into the shared embedding space.
#[derive(Module, Debug)]
pub struct ClipVision {
    pub vision_model: VisionTransformer,
    pub visual_projection: Linear,
}

/// The text tower and its projection into the shared embedding space.
#[derive(Module, Debug)]
pub struct ClipText {
    pub text_model: TextTransformer,
    pub text_projection: Linear,
}

#[derive(Module, Debug)]
pub struct VisionTransformer {
    pub embeddings: VisionEmbeddings,
    pub pre_layrnorm: LayerNorm,
    pub encoder: Encoder,
    pub post_layernorm: LayerNorm,
}

#[derive(Module, Debug)]
pub struct VisionEmbeddings {
    pub class_embedding: Param<Tensor<1>>,
    pub patch_embedding: Conv2d,
    pub position_embedding: Embedding,
}

#[derive(Module, Debug)]
pub struct TextTransformer {
    pub embeddings: TextEmbeddings,
    pub encoder: Encoder,
    pub final_layer_norm: LayerNorm,
}

#[derive(Module, Debug)]
pub struct TextEmbeddings {
    pub token_embedding: Embedding,
    pub position_embedding: Embedding,
}

#[derive(Module, Debug)]
pub struct Encoder {
    pub layers: Vec<EncoderLayer>,
}

/// A pre-norm transformer block: `x + attn(ln1(x))`, then `x + mlp(ln2(x))`.
#[derive(Module, Debug)]
pub struct EncoderLayer {
    pub layer_norm1: LayerNorm,
    pub self_attn: SelfAttention,
    pub layer_norm2: LayerNorm,
    pub mlp: Mlp,
}

#[derive(Module, Debug)]
pub struct SelfAttention {
    pub q_proj: Linear,
    pub k_proj: Linear,
    pub v_proj: Linear,
    pub out_proj: Linear,
    pub num_heads: usize,
    pub causal: bool,
}

#[derive(Module, Debug)]
pub struct Mlp {
    pub fc1: Linear,
    pub fc2: Linear,
    pub quick_gelu: bool,
}

/// The shape of one encoder stack.
struct EncoderShape {
    hidden: usize,
    intermediate: usize,
    layers: usize,
    heads: usize,
    eps: f64,
    activation: Activation,
    causal: bool,
}

impl ClipVision {
    pub fn init(config: &ClipConfig, device: &Device) -> anyhow::Result<Self> {
        let vision = config
            .vision()
            .ok_or_else(|| anyhow::anyhow!("the config has no vision tower"))?;
        Ok(Self {
            vision_model: VisionTransformer::init(vision, device)?,
            visual_projection: LinearConfig::new(vision.hidden_size, config.projection_dim)
                .with_bias(false)
                .init(device),
        })
    }

    /// `pixel_values` `[batch, 3, size, size]` → image embeddings `[batch, projection_dim]`
    /// (not normalised, as `get_image_features`).
    pub fn forward(&self, pixel_values: Tensor<4>) -> Tensor<2> {
        self.visual_projection
            .forward(self.vision_model.pooled(pixel_values))
    }
}

impl VisionTransformer {
    fn init(config: &VisionConfig, device: &Device) -> anyhow::Result<Self> {
        let hidden = config.hidden_size;
        let eps = config.layer_norm_eps;
        let layer_norm = || LayerNormConfig::new(hidden).with_epsilon(eps).init(device);
        Ok(Self {
            embeddings: VisionEmbeddings {
                class_embedding: Param::from_tensor(Tensor::zeros([hidden], device)),
                patch_embedding: Conv2dConfig::new(
                    [config.num_channels, hidden],
                    [config.patch_size, config.patch_size],
                )
                .with_stride([config.patch_size, config.patch_size])
                .with_bias(false)
                .init(device),
                position_embedding: EmbeddingConfig::new(config.num_positions(), hidden)
                    .init(device),
            },
            pre_layrnorm: layer_norm(),
            encoder: Encoder::init(
                &EncoderShape {
                    hidden,
                    intermediate: config.intermediate_size,
                    layers: config.num_hidden_layers,
                    heads: config.num_attention_heads,
                    eps,
                    activation: Activation::parse(&config.hidden_act)?,
                    causal: false,
                },
                device,
            ),
            post_layernorm: layer_norm(),
        })
    }

    /// The post-LN class token (`pooler_output`).
    pub fn pooled(&self, pixel_values: Tensor<4>) -> Tensor<2> {
        let hidden = self.embeddings.forward(pixel_values);
        let hidden = self.encoder.forward(self.pre_layrnorm.forward(hidden));
        let [batch, _, width] = hidden.dims();
        let class_token = hidden.narrow(1, 0, 1).reshape([batch, width]);
        self.post_layernorm.forward(class_token)
    }
}

impl VisionEmbeddings {
    fn forward(&self, pixel_values: Tensor<4>) -> Tensor<3> {
        let patches = self.patch_embedding.forward(pixel_values); // [b, hidden, gh, gw]
        let [batch, hidden, grid_h, grid_w] = patches.dims();
        let patches = patches
            .reshape([batch, hidden, grid_h * grid_w])
            .swap_dims(1, 2); // [b, patches, hidden]
        let class = self
            .class_embedding
            .val()
            .reshape([1, 1, hidden])
            .expand([batch, 1, hidden]);
        let tokens = Tensor::cat(vec![class, patches], 1);
        let positions = self.position_embedding.weight.val().unsqueeze_dim::<3>(0);
        tokens + positions
    }
}

impl ClipText {
    pub fn init(config: &ClipConfig, device: &Device) -> anyhow::Result<Self> {
        let text = config.text().ok_or_else(|| {
            anyhow::anyhow!("this CLIP checkpoint has no text tower (vision-only model)")
        })?;
        Ok(Self {
            text_model: TextTransformer::init(text, device)?,
            text_projection: LinearConfig::new(text.hidden_size, config.projection_dim)
                .with_bias(false)
                .init(device),
        })
    }

    /// Token ids `[batch, seq]` and each row's end-of-text position → text
    /// embeddings `[batch, projection_dim]` (not normalised, as `get_text_features`).
    pub fn forward(&self, input_ids: Tensor<2, Int>, eos_positions: &[usize]) -> Tensor<2> {
        self.text_projection
            .forward(self.text_model.pooled(input_ids, eos_positions))
    }

    pub fn context_length(&self) -> usize {
        self.text_model.embeddings.position_embedding.weight.dims()[0]
    }
}

impl TextTransformer {
    fn init(config: &TextConfig, device: &Device) -> anyhow::Result<Self> {
        let hidden = config.hidden_size;
        Ok(Self {
            embeddings: TextEmbeddings {
                token_embedding: EmbeddingConfig::new(config.vocab_size, hidden).init(device),
                position_embedding: EmbeddingConfig::new(config.max_position_embeddings, hidden)
                    .init(device),
            },
            encoder: Encoder::init(
                &EncoderShape {
                    hidden,
                    intermediate: config.intermediate_size,
                    layers: config.num_hidden_layers,
                    heads: config.num_attention_heads,
                    eps: config.layer_norm_eps,
                    activation: Activation::parse(&config.hidden_act)?,
                    causal: true,
                },
                device,
            ),
            final_layer_norm: LayerNormConfig::new(hidden)
                .with_epsilon(config.layer_norm_eps)
                .init(device),
        })
    }

    /// The final-LN hidden state at each row's end-of-text token (`pooler_output`).
    /// The causal mask means tokens after it (padding) never reach it.
    fn pooled(&self, input_ids: Tensor<2, Int>, eos_positions: &[usize]) -> Tensor<2> {
        let [batch, seq] = input_ids.dims();
        let device = input_ids.device();
        let tokens = self.embeddings.token_embedding.forward(input_ids);
        let positions = self
            .embeddings
            .position_embedding
            .weight
            .val()
            .narrow(0, 0, seq)
            .unsqueeze_dim::<3>(0);
        let hidden = self.encoder.forward(tokens + positions);
        let hidden = self.final_layer_norm.forward(hidden);
        let width = hidden.dims()[2];
        let rows: Vec<i64> = eos_positions
            .iter()
            .enumerate()
            .map(|(b, &p)| (b * seq + p) as i64)
            .collect();
        debug_assert_eq!(rows.len(), batch);
        let rows = Tensor::<1, Int>::from_data(rows.as_slice(), &device);
        hidden.reshape([batch * seq, width]).select(0, rows)
    }
}

impl Encoder {
    fn init(shape: &EncoderShape, device: &Device) -> Self {
        let layers = (0..shape.layers)
            .map(|_| EncoderLayer::init(shape, device))
            .collect();
        Self { layers }
    }

    fn forward(&self, mut hidden: Tensor<3>) -> Tensor<3> {
        for layer in &self.layers {
            hidden = layer.forward(hidden);
        }
        hidden
    }
}

impl EncoderLayer {
    fn init(shape: &EncoderShape, device: &Device) -> Self {
        let linear = |d_in, d_out| LinearConfig::new(d_in, d_out).init(device);
        let layer_norm = || {
            LayerNormConfig::new(shape.hidden)
                .with_epsilon(shape.eps)
                .init(device)
        };
        Self {
            layer_norm1: layer_norm(),
            self_attn: SelfAttention {
                q_proj: linear(shape.hidden, shape.hidden),
                k_proj: linear(shape.hidden, shape.hidden),
                v_proj: linear(shape.hidden, shape.hidden),
                out_proj: linear(shape.hidden, shape.hidden),
                num_heads: shape.heads,
                causal: shape.causal,
            },
            layer_norm2: layer_norm(),
            mlp: Mlp {
                fc1: linear(shape.hidden, shape.intermediate),
                fc2: linear(shape.intermediate, shape.hidden),
                quick_gelu: shape.activation == Activation::QuickGelu,
            },
        }
    }

    fn forward(&self, hidden: Tensor<3>) -> Tensor<3> {
        let hidden = hidden.clone() + self.self_attn.forward(self.layer_norm1.forward(hidden));
        hidden.clone() + self.mlp.forward(self.layer_norm2.forward(hidden))
    }
}

impl SelfAttention {
    fn forward(&self, hidden: Tensor<3>) -> Tensor<3> {
        let [batch, seq, width] = hidden.dims();
        let heads = self.num_heads;
        let split = |x: Tensor<3>| {
            x.reshape([batch, seq, heads, width / heads])
                .swap_dims(1, 2)
        };
        let query = split(self.q_proj.forward(hidden.clone()));
        let key = split(self.k_proj.forward(hidden.clone()));
        let value = split(self.v_proj.forward(hidden));
        // Scale 1/sqrt(head_dim), as CLIP's; the causal flag replaces the text
        // tower's explicit lower-triangular mask.
        let context = attention(
            query,
            key,
            value,
            None,
            None,
            AttentionModuleOptions {
                scale: None,
                softcap: None,
                is_causal: self.causal,
            },
        );
        let context = context.swap_dims(1, 2).reshape([batch * seq, width]);
        self.out_proj.forward(context).reshape([batch, seq, width])
    }
}

impl Mlp {
    fn forward(&self, hidden: Tensor<3>) -> Tensor<3> {
        let [batch, seq, width] = hidden.dims();
        let hidden = self.fc1.forward(hidden.reshape([batch * seq, width]));
        let hidden = if self.quick_gelu {
            hidden.clone() * sigmoid(hidden * 1.702)
        } else {
            gelu(hidden)
        };
        self.fc2.forward(hidden).reshape([batch, seq, width])
    }
}
