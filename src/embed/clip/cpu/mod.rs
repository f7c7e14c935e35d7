//! CLIP's image tower as a hand-written CPU forward pass.
//!
//! Burn's flex backend runs the same model at 0.7–0.8× PyTorch's speed on the
//! CPU (`benches/run_clip.sh`, ViT-B/32 on 2 AVX-512 cores: 18.8 against 23.6
//! images/s at batch 8, 18.6 against 25.6 at batch 32; this pass: 27.2 and
//! 30.0): each op allocates and writes a new tensor, the split into heads and
//! back copies the activations, Q, K and V are three products, and the 3-D
//! Linear inputs go through batched products. Here the same weights, read once from the loaded
//! Burn model, run through a fixed sequence of large products on the `gemm`
//! crate (the one Burn itself calls) with everything else fused around them:
//!
//! - Q, K and V are one product against a `[hidden, 3·hidden]` matrix, with
//!   the `1/sqrt(head_dim)` scale folded into Q's weights (a power of two for
//!   every CLIP, so the folding is exact);
//! - attention reads each head's Q, K and V in place from that product's
//!   output through strides, and writes its context straight into the
//!   `[tokens, hidden]` matrix the output projection reads: no layout copies;
//! - the output projection and the second MLP layer add their products
//!   straight into the hidden state (the residual connections), and their
//!   biases are added in the LayerNorm pass that precedes them;
//! - bias + quick-GELU is one vectorised pass, softmax another.
//!
//! Burn's model stays the reference (and the wgpu path); the tests compare
//! this forward pass with it and with transformers' recorded outputs.

mod kernels;

use std::sync::{Mutex, TryLockError};

use anyhow::{Context, ensure};
use burn::tensor::Tensor;
use rayon::prelude::*;

use super::config::{Activation, ClipConfig};
use super::model::ClipVision;
use kernels::{Norm, View, matmul, simd};

/// Rows per rayon task in the row-wise passes (LayerNorm, activations): large
/// enough that a task outweighs its scheduling, small enough to balance.
const ROWS_PER_TASK: usize = 16;

/// The image tower's weights, laid out for the CPU forward pass. Linear
/// weights are `[in, out]` row-major (Burn's layout).
pub struct CpuVision {
    hidden: usize,
    heads: usize,
    intermediate: usize,
    channels: usize,
    image_size: usize,
    patch: usize,
    projection_dim: usize,
    activation: Activation,
    /// `[channels·patch·patch, hidden]`: the patch convolution as a product.
    patch_weight: Vec<f32>,
    /// `[1 + patches, hidden]`: row 0 is the class embedding plus its
    /// position, the others the patch positions.
    token_bias: Vec<f32>,
    pre_norm: Norm,
    layers: Vec<Layer>,
    post_norm: Norm,
    /// `[hidden, projection_dim]`.
    projection: Vec<f32>,
    /// Activation buffers kept between calls: allocating them afresh (≈ 50 MB
    /// at batch 32) costs a page fault per 4 KiB on every call.
    scratch: Mutex<Scratch>,
}

/// The activations of one forward pass, grown to the largest batch seen.
/// Every buffer is fully written before it is read, so stale contents from a
/// previous call never leak into a result.
#[derive(Default)]
struct Scratch {
    patches: Vec<f32>,
    embedded: Vec<f32>,
    x: Vec<f32>,
    normed: Vec<f32>,
    qkv: Vec<f32>,
    context: Vec<f32>,
    mlp: Vec<f32>,
}

/// `buffer[..len]`, growing the buffer if needed.
fn sized(buffer: &mut Vec<f32>, len: usize) -> &mut [f32] {
    if buffer.len() < len {
        buffer.resize(len, 0.0);
    }
    &mut buffer[..len]
}

struct Layer {
    norm1: Norm,
    /// `[hidden, 3·hidden]`: Q (pre-scaled), K, V side by side.
    qkv_weight: Vec<f32>,
    qkv_bias: Vec<f32>,
    out_weight: Vec<f32>,
    out_bias: Vec<f32>,
    norm2: Norm,
    fc1_weight: Vec<f32>,
    fc1_bias: Vec<f32>,
    fc2_weight: Vec<f32>,
    fc2_bias: Vec<f32>,
}

fn floats<const D: usize>(tensor: Tensor<D>, what: &str) -> anyhow::Result<Vec<f32>> {
    tensor
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|e| anyhow::anyhow!("{e:?}"))
        .with_context(|| format!("cannot read the weights of {what}"))
}

/// A Linear's `[in, out]` weight and its bias (zeros where it has none).
fn linear(
    layer: &burn::nn::Linear,
    d_in: usize,
    d_out: usize,
    what: &str,
) -> anyhow::Result<(Vec<f32>, Vec<f32>)> {
    let dims = layer.weight.dims();
    ensure!(
        dims == [d_in, d_out],
        "{what} has shape {dims:?}, expected [{d_in}, {d_out}]"
    );
    let weight = floats(layer.weight.val(), what)?;
    let bias = match &layer.bias {
        Some(b) => floats(b.val(), what)?,
        None => vec![0.0; d_out],
    };
    ensure!(
        bias.len() == d_out,
        "{what}'s bias has {} values",
        bias.len()
    );
    Ok((weight, bias))
}

fn norm(layer: &burn::nn::LayerNorm, width: usize, eps: f64, what: &str) -> anyhow::Result<Norm> {
    let gamma = floats(layer.gamma.val(), what)?;
    let beta = match &layer.beta {
        Some(b) => floats(b.val(), what)?,
        None => vec![0.0; width],
    };
    ensure!(
        gamma.len() == width && beta.len() == width,
        "{what} has {} weights, expected {width}",
        gamma.len()
    );
    Ok(Norm {
        gamma,
        beta,
        eps: eps as f32,
    })
}

impl CpuVision {
    /// Copies the weights out of a loaded Burn image tower (any device; f16
    /// checkpoints are already upcast by the loader), so the checks on the
    /// checkpoint stay in one place. The Burn model can be dropped afterwards.
    pub fn from_burn(model: &ClipVision, config: &ClipConfig) -> anyhow::Result<Self> {
        let vision = config.vision().context("the config has no vision tower")?;
        let (hidden, heads) = (vision.hidden_size, vision.num_attention_heads);
        let intermediate = vision.intermediate_size;
        let (channels, patch) = (vision.num_channels, vision.patch_size);
        let positions = vision.num_positions();
        let eps = vision.layer_norm_eps;
        let vm = &model.vision_model;
        ensure!(
            hidden % heads == 0 && vision.image_size % patch == 0,
            "inconsistent vision config"
        );

        // Conv weight [hidden, channels, patch, patch] → [channels·patch², hidden].
        let conv = &vm.embeddings.patch_embedding;
        ensure!(
            conv.weight.dims() == [hidden, channels, patch, patch],
            "the patch embedding has shape {:?}",
            conv.weight.dims()
        );
        let conv_weight = floats(conv.weight.val(), "the patch embedding")?;
        let k = channels * patch * patch;
        let mut patch_weight = vec![0.0; k * hidden];
        for o in 0..hidden {
            for i in 0..k {
                patch_weight[i * hidden + o] = conv_weight[o * k + i];
            }
        }
        let class = floats(vm.embeddings.class_embedding.val(), "the class embedding")?;
        let mut token_bias = floats(
            vm.embeddings.position_embedding.weight.val(),
            "the position embedding",
        )?;
        ensure!(
            class.len() == hidden && token_bias.len() == positions * hidden,
            "the class or position embedding does not fit hidden size {hidden}"
        );
        for (p, c) in token_bias[..hidden].iter_mut().zip(&class) {
            *p += c;
        }

        let scale = 1.0 / ((hidden / heads) as f32).sqrt();
        let mut layers = Vec::with_capacity(vm.encoder.layers.len());
        for (i, l) in vm.encoder.layers.iter().enumerate() {
            let what = |name: &str| format!("encoder layer {i} {name}");
            let (q_w, q_b) = linear(&l.self_attn.q_proj, hidden, hidden, &what("q_proj"))?;
            let (k_w, k_b) = linear(&l.self_attn.k_proj, hidden, hidden, &what("k_proj"))?;
            let (v_w, v_b) = linear(&l.self_attn.v_proj, hidden, hidden, &what("v_proj"))?;
            let mut qkv_weight = Vec::with_capacity(hidden * 3 * hidden);
            for r in 0..hidden {
                let row = r * hidden..(r + 1) * hidden;
                qkv_weight.extend(q_w[row.clone()].iter().map(|w| w * scale));
                qkv_weight.extend_from_slice(&k_w[row.clone()]);
                qkv_weight.extend_from_slice(&v_w[row]);
            }
            let mut qkv_bias: Vec<f32> = q_b.iter().map(|b| b * scale).collect();
            qkv_bias.extend(k_b);
            qkv_bias.extend(v_b);
            let (out_weight, out_bias) =
                linear(&l.self_attn.out_proj, hidden, hidden, &what("out_proj"))?;
            let (fc1_weight, fc1_bias) = linear(&l.mlp.fc1, hidden, intermediate, &what("fc1"))?;
            let (fc2_weight, fc2_bias) = linear(&l.mlp.fc2, intermediate, hidden, &what("fc2"))?;
            layers.push(Layer {
                norm1: norm(&l.layer_norm1, hidden, eps, &what("layer_norm1"))?,
                qkv_weight,
                qkv_bias,
                out_weight,
                out_bias,
                norm2: norm(&l.layer_norm2, hidden, eps, &what("layer_norm2"))?,
                fc1_weight,
                fc1_bias,
                fc2_weight,
                fc2_bias,
            });
        }
        let (projection, _) = linear(
            &model.visual_projection,
            hidden,
            config.projection_dim,
            "visual_projection",
        )?;
        Ok(Self {
            hidden,
            heads,
            intermediate,
            channels,
            image_size: vision.image_size,
            patch,
            projection_dim: config.projection_dim,
            activation: Activation::parse(&vision.hidden_act)?,
            patch_weight,
            token_bias,
            pre_norm: norm(&vm.pre_layrnorm, hidden, eps, "pre_layrnorm")?,
            layers,
            post_norm: norm(&vm.post_layernorm, hidden, eps, "post_layernorm")?,
            projection,
            scratch: Mutex::new(Scratch::default()),
        })
    }

    pub fn projection_dim(&self) -> usize {
        self.projection_dim
    }

    fn grid(&self) -> usize {
        self.image_size / self.patch
    }

    fn tokens(&self) -> usize {
        self.grid() * self.grid() + 1
    }

    /// Raw (unnormalised) image embeddings of preprocessed images
    /// (`[3·size·size]` each, channel-major as `pixel_values`), as
    /// `get_image_features`.
    pub fn image_features(&self, inputs: &[Vec<f32>]) -> anyhow::Result<Vec<Vec<f32>>> {
        let pixels = self.channels * self.image_size * self.image_size;
        for (i, input) in inputs.iter().enumerate() {
            ensure!(
                input.len() == pixels,
                "image {i} has {} values; the model takes {}×{}×{} pixel values",
                input.len(),
                self.channels,
                self.image_size,
                self.image_size
            );
        }
        if inputs.is_empty() {
            return Ok(Vec::new());
        }
        let pooled = self.forward(inputs);
        let d = self.projection_dim;
        let mut out = vec![0.0; inputs.len() * d];
        matmul(
            &mut out,
            d,
            View::rows(&pooled, self.hidden),
            View::rows(&self.projection, d),
            inputs.len(),
            self.hidden,
            d,
            false,
            true,
        );
        Ok(out.chunks_exact(d).map(<[f32]>::to_vec).collect())
    }

    /// The post-LN class tokens (`pooler_output`), `[images, hidden]`.
    fn forward(&self, inputs: &[Vec<f32>]) -> Vec<f32> {
        // Concurrent callers (rare) get their own buffers instead of waiting.
        // A pass that panicked (turned into an error by the caller) poisons
        // the lock; its buffers are still fine, as every pass writes them
        // before reading.
        let mut own = Scratch::default();
        let mut shared = match self.scratch.try_lock() {
            Ok(guard) => Some(guard),
            Err(TryLockError::Poisoned(poisoned)) => Some(poisoned.into_inner()),
            Err(TryLockError::WouldBlock) => None,
        };
        let scratch = match shared.as_deref_mut() {
            Some(scratch) => scratch,
            None => &mut own,
        };
        let (d, t, b) = (self.hidden, self.tokens(), inputs.len());
        let rows = b * t;
        let Scratch {
            patches,
            embedded,
            x,
            normed,
            qkv,
            context,
            mlp,
        } = scratch;
        let x = sized(x, rows * d);
        self.embed(inputs, patches, embedded, x);
        let normed = sized(normed, rows * d);
        let qkv = sized(qkv, rows * 3 * d);
        let context = sized(context, rows * d);
        let mlp = sized(mlp, rows * self.intermediate);
        for layer in &self.layers {
            self.layer(layer, x, normed, qkv, context, mlp);
        }
        let mut pooled = vec![0.0f32; b * d];
        for (out, image) in pooled.chunks_exact_mut(d).zip(x.chunks_exact(t * d)) {
            simd(
                #[inline(always)]
                || self.post_norm.row(&image[..d], out),
            );
        }
        pooled
    }

    /// Patch embedding (the stride-`patch` convolution as one product over
    /// all patches), class token, positions and `pre_layrnorm`: `[b·t, hidden]`.
    fn embed(
        &self,
        inputs: &[Vec<f32>],
        patches: &mut Vec<f32>,
        embedded: &mut Vec<f32>,
        x: &mut [f32],
    ) {
        let (d, t, p, g) = (self.hidden, self.tokens(), self.patch, self.grid());
        let (size, k) = (self.image_size, self.channels * p * p);
        let b = inputs.len();
        // im2col: one row per patch, in the weight's (channel, y, x) order.
        let patches = sized(patches, b * g * g * k);
        patches
            .par_chunks_mut(g * g * k)
            .zip(inputs)
            .for_each(|(rows, image)| {
                for (pi, row) in rows.chunks_exact_mut(k).enumerate() {
                    let (py, px) = (pi / g, pi % g);
                    for c in 0..self.channels {
                        for ky in 0..p {
                            let src = c * size * size + (py * p + ky) * size + px * p;
                            let dst = (c * p + ky) * p;
                            row[dst..dst + p].copy_from_slice(&image[src..src + p]);
                        }
                    }
                }
            });
        let embedded = sized(embedded, b * g * g * d);
        matmul(
            embedded,
            d,
            View::rows(patches, k),
            View::rows(&self.patch_weight, d),
            b * g * g,
            k,
            d,
            false,
            true,
        );
        x.par_chunks_mut(t * d)
            .zip(embedded.par_chunks(g * g * d))
            .for_each(|(tokens, patches)| {
                simd(
                    #[inline(always)]
                    || {
                        let mut row = vec![0.0f32; d];
                        for (i, out) in tokens.chunks_exact_mut(d).enumerate() {
                            let bias = &self.token_bias[i * d..(i + 1) * d];
                            if i == 0 {
                                row.copy_from_slice(bias);
                            } else {
                                for ((r, &e), &b) in
                                    row.iter_mut().zip(&patches[(i - 1) * d..]).zip(bias)
                                {
                                    *r = e + b;
                                }
                            }
                            self.pre_norm.row(&row, out);
                        }
                    },
                )
            });
    }

    /// Multi-head self-attention of every image: `qkv` holds each token's
    /// Q (pre-scaled), K, V before their bias; `context` receives each head's
    /// output in its columns, ready for the output projection.
    fn attention(&self, qkv_bias: &[f32], qkv: &mut [f32], context: &mut [f32]) {
        let (d, t) = (self.hidden, self.tokens());
        let head_dim = d / self.heads;
        let shape = HeadShape {
            tokens: t,
            hidden: d,
            head_dim,
        };
        qkv.par_chunks_mut(ROWS_PER_TASK * 3 * d).for_each(|rows| {
            simd(
                #[inline(always)]
                || {
                    for row in rows.chunks_exact_mut(3 * d) {
                        kernels::add_row(row, qkv_bias);
                    }
                },
            )
        });
        let images = qkv.len() / (t * 3 * d);
        if images >= rayon::current_num_threads() {
            // One task per image: its context rows are a disjoint chunk, and
            // each head writes its columns of them in place.
            qkv.par_chunks(t * 3 * d)
                .zip(context.par_chunks_mut(t * d))
                .for_each(|(qkv, context)| {
                    let mut scores = vec![0.0f32; t * t];
                    for h in 0..self.heads {
                        attend(qkv, shape, h, &mut scores, &mut context[h * head_dim..], d);
                    }
                });
        } else {
            // Fewer images than threads: one task per head, each into its own
            // buffer, copied into place afterwards.
            for (qkv, context) in qkv.chunks(t * 3 * d).zip(context.chunks_mut(t * d)) {
                let outputs: Vec<Vec<f32>> = (0..self.heads)
                    .into_par_iter()
                    .map(|h| {
                        let mut scores = vec![0.0f32; t * t];
                        let mut out = vec![0.0f32; t * head_dim];
                        attend(qkv, shape, h, &mut scores, &mut out, head_dim);
                        out
                    })
                    .collect();
                for (h, out) in outputs.iter().enumerate() {
                    for (row, src) in context.chunks_exact_mut(d).zip(out.chunks_exact(head_dim)) {
                        row[h * head_dim..(h + 1) * head_dim].copy_from_slice(src);
                    }
                }
            }
        }
    }

    fn layer(
        &self,
        layer: &Layer,
        x: &mut [f32],
        normed: &mut [f32],
        qkv: &mut [f32],
        context: &mut [f32],
        mlp: &mut [f32],
    ) {
        let d = self.hidden;
        let rows = x.len() / d;

        // normed = LN1(x); x += out_proj bias (the residual gets it here, so
        // the output projection can add its product straight into x).
        norm_rows(x, normed, d, &layer.norm1, &layer.out_bias);
        matmul(
            qkv,
            3 * d,
            View::rows(normed, d),
            View::rows(&layer.qkv_weight, 3 * d),
            rows,
            d,
            3 * d,
            false,
            true,
        );
        self.attention(&layer.qkv_bias, qkv, context);
        // x += context · W_out.
        matmul(
            x,
            d,
            View::rows(context, d),
            View::rows(&layer.out_weight, d),
            rows,
            d,
            d,
            true,
            true,
        );

        // normed = LN2(x); x += fc2 bias; then the MLP.
        norm_rows(x, normed, d, &layer.norm2, &layer.fc2_bias);
        let inter = self.intermediate;
        matmul(
            mlp,
            inter,
            View::rows(normed, d),
            View::rows(&layer.fc1_weight, inter),
            rows,
            d,
            inter,
            false,
            true,
        );
        mlp.par_chunks_mut(ROWS_PER_TASK * inter).for_each(|chunk| {
            simd(
                #[inline(always)]
                || {
                    for row in chunk.chunks_exact_mut(inter) {
                        kernels::bias_activation_row(row, &layer.fc1_bias, self.activation);
                    }
                },
            )
        });
        matmul(
            x,
            d,
            View::rows(mlp, inter),
            View::rows(&layer.fc2_weight, d),
            rows,
            inter,
            d,
            true,
            true,
        );
    }
}

/// The attention's dimensions.
#[derive(Clone, Copy)]
struct HeadShape {
    tokens: usize,
    hidden: usize,
    head_dim: usize,
}

/// One head `h` of one image: `out = softmax(q·kᵀ)·v`, with q, k, v read in
/// place from the image's `[tokens, 3·hidden]` rows (q pre-scaled, biases
/// added) and `out` a `[tokens, head_dim]` block with `ldo` floats per row.
fn attend(
    qkv: &[f32],
    shape: HeadShape,
    h: usize,
    scores: &mut [f32],
    out: &mut [f32],
    ldo: usize,
) {
    let HeadShape {
        tokens: t,
        hidden: d,
        head_dim,
    } = shape;
    let q = &qkv[h * head_dim..];
    let k = &qkv[d + h * head_dim..];
    let v = &qkv[2 * d + h * head_dim..];
    matmul(
        scores,
        t,
        View::rows(q, 3 * d),
        View::transposed(k, 3 * d),
        t,
        head_dim,
        t,
        false,
        false,
    );
    simd(
        #[inline(always)]
        || {
            for row in scores.chunks_exact_mut(t) {
                kernels::softmax_row(row);
            }
        },
    );
    matmul(
        out,
        ldo,
        View::rows(scores, t),
        View::rows(v, 3 * d),
        t,
        t,
        head_dim,
        false,
        false,
    );
}

/// `normed = norm(x)` row by row, then `x += bias` (the bias of the product
/// that will be added into x next).
fn norm_rows(x: &mut [f32], normed: &mut [f32], d: usize, norm: &Norm, bias: &[f32]) {
    x.par_chunks_mut(ROWS_PER_TASK * d)
        .zip(normed.par_chunks_mut(ROWS_PER_TASK * d))
        .for_each(|(x, normed)| {
            simd(
                #[inline(always)]
                || {
                    for (row, out) in x.chunks_exact_mut(d).zip(normed.chunks_exact_mut(d)) {
                        norm.row(row, out);
                        kernels::add_row(row, bias);
                    }
                },
            )
        });
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Device, TensorData};

    use super::*;
    use crate::embed::clip::ModelDir;
    use crate::embed::clip::random::VisionPreset;

    // The parity fixtures and their readers are the Burn model's tests'.
    use crate::embed::clip::tests::{
        assert_image_embeds_match, expected, fixture_pixels, fixtures, floats as json_floats,
        max_abs_diff, npy_data,
    };

    fn cosine(a: &[f32], b: &[f32]) -> f64 {
        let dot: f64 = a.iter().zip(b).map(|(&x, &y)| x as f64 * y as f64).sum();
        let na: f64 = a.iter().map(|&x| x as f64 * x as f64).sum::<f64>().sqrt();
        let nb: f64 = b.iter().map(|&x| x as f64 * x as f64).sum::<f64>().sqrt();
        dot / (na * nb)
    }

    fn load_fixture(model: &str) -> CpuVision {
        let dir = ModelDir::open(&fixtures().join(model)).unwrap();
        let burn = dir.load_vision(&Device::flex()).unwrap();
        CpuVision::from_burn(&burn, &dir.config).unwrap()
    }

    /// Given Hugging Face's own `pixel_values`, the image embeddings match
    /// `get_image_features` to 1e-4, the bound Burn's model meets
    /// (`image_tower_matches_transformers_on_cpu`).
    #[test]
    fn image_embeddings_match_transformers() {
        let inputs = fixture_pixels();
        let expected = expected();
        let images = expected["images"].as_array().unwrap();
        for model in ["tiny", "vitb32-1layer"] {
            let got = load_fixture(model).image_features(&inputs).unwrap();
            let worst = assert_image_embeds_match(model, &got);
            let lowest = got
                .iter()
                .zip(images)
                .map(|(row, image)| cosine(row, &json_floats(&image[model]["image_embeds"])))
                .fold(1.0f64, f64::min);
            eprintln!(
                "{model} CPU image tower vs transformers: max abs diff {worst:e}, lowest cosine {lowest}"
            );
        }
    }

    /// The hidden state after the one encoder layer of vitb32-1layer (image 0)
    /// matches transformers' `hidden_states`, token by token: the embeddings
    /// (`hidden_states[0]`) and the layer's output (`hidden_states[1]`).
    #[test]
    fn encoder_layer_matches_transformers_hidden_states() {
        let cpu = load_fixture("vitb32-1layer");
        let inputs = fixture_pixels();
        let want = npy_data(&fixtures().join("debug/vitb32-1layer_vision_hidden_states_img0.npy"));
        let (t, d) = (50, 768);
        assert_eq!(want.len(), 2 * t * d);
        let mut x = vec![0.0; t * d];
        cpu.embed(&inputs[..1], &mut Vec::new(), &mut Vec::new(), &mut x);
        let diff = max_abs_diff(&x, &want[..t * d]);
        assert!(diff <= 1e-4, "embeddings: max abs diff {diff}");
        let mut normed = vec![0.0; t * d];
        let mut qkv = vec![0.0; t * 3 * d];
        let mut context = vec![0.0; t * d];
        let mut mlp = vec![0.0; t * 3072];
        cpu.layer(
            &cpu.layers[0],
            &mut x,
            &mut normed,
            &mut qkv,
            &mut context,
            &mut mlp,
        );
        let diff = max_abs_diff(&x, &want[t * d..]);
        eprintln!("vitb32-1layer layer 0 vs transformers: max abs diff {diff:e}");
        assert!(diff <= 1e-4, "layer 0 output: max abs diff {diff}");
    }

    /// A small random tower in Burn (the reference) and its CPU copy.
    fn random_tower(edit: impl Fn(&mut serde_json::Value)) -> (ClipVision, CpuVision) {
        let mut json = VisionPreset::VitB32.config_json();
        edit(&mut json);
        let config = ClipConfig::from_json(&json.to_string()).unwrap();
        let burn = ClipVision::init(&config, &Device::flex()).unwrap();
        let cpu = CpuVision::from_burn(&burn, &config).unwrap();
        (burn, cpu)
    }

    fn burn_features(burn: &ClipVision, inputs: &[Vec<f32>], size: usize) -> Vec<Vec<f32>> {
        let flat: Vec<f32> = inputs.iter().flatten().copied().collect();
        let pixels = Tensor::<4>::from_data(
            TensorData::new(flat, [inputs.len(), 3, size, size]),
            &Device::flex(),
        );
        let out = burn
            .forward(pixels)
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .unwrap();
        out.chunks_exact(out.len() / inputs.len())
            .map(<[f32]>::to_vec)
            .collect()
    }

    /// On towers and inputs the fixtures do not cover (random weights, a
    /// 64-pixel image in 16-pixel patches, both activations, a head width
    /// whose scale is not a power of two, batch 5) the CPU forward agrees with
    /// Burn's model, and an image's embedding does not depend on its batch
    /// (a lone image takes the one-task-per-head attention path).
    #[test]
    fn agrees_with_burn_on_random_towers_and_is_batch_independent() {
        let shapes = [("quick_gelu", 96, 6), ("gelu", 80, 4)];
        for (act, hidden, heads) in shapes {
            let (burn, cpu) = random_tower(|json| {
                json["hidden_act"] = act.into();
                json["hidden_size"] = hidden.into();
                json["num_attention_heads"] = heads.into();
                json["intermediate_size"] = 160.into();
                json["num_hidden_layers"] = 2.into();
                json["image_size"] = 64.into();
                json["patch_size"] = 16.into();
                json["projection_dim"] = 24.into();
            });
            let mut rng = crate::rng::Rng::new(3);
            let inputs: Vec<Vec<f32>> = (0..5)
                .map(|_| (0..3 * 64 * 64).map(|_| rng.normal_f32()).collect())
                .collect();
            let got = cpu.image_features(&inputs).unwrap();
            let want = burn_features(&burn, &inputs, 64);
            assert_eq!(got.len(), 5);
            let scale = want.iter().flatten().fold(0.0f32, |m, v| m.max(v.abs()));
            assert!(scale > 1e-3, "{act}: the reference is all zeros");
            let (mut worst, mut lowest) = (0.0f32, 1.0f64);
            for (g, w) in got.iter().zip(&want) {
                let diff = max_abs_diff(g, w);
                let cos = cosine(g, w);
                (worst, lowest) = (worst.max(diff), lowest.min(cos));
                assert!(
                    diff <= 1e-4 * scale.max(1.0) && cos >= 0.99999,
                    "{act}: CPU vs Burn max abs diff {diff} (largest value {scale}), cosine {cos}"
                );
            }
            eprintln!(
                "{act} random tower, CPU vs Burn: max abs diff {worst:e} (largest value \
                 {scale}), lowest cosine {lowest}"
            );
            let alone = cpu.image_features(&inputs[3..4]).unwrap();
            let diff = max_abs_diff(&alone[0], &got[3]);
            assert!(
                diff <= 1e-5 * scale.max(1.0),
                "{act}: batch of 1 vs 5: {diff}"
            );
        }
    }

    #[test]
    fn bad_inputs_are_errors() {
        let cpu = load_fixture("tiny");
        assert!(cpu.image_features(&[]).unwrap().is_empty());
        let err = cpu
            .image_features(&[vec![0.0; 3 * 224 * 224], vec![0.0; 10]])
            .unwrap_err();
        assert!(
            format!("{err:#}").contains("image 1 has 10 values"),
            "{err:#}"
        );
    }
}
