//! `CLIPImageProcessor`, reproduced: RGB (alpha composited onto white, as
//! transformers 5 does), shortest side resized to 224 with Pillow's bicubic
//! filter, centre crop 224×224, scaled to [0, 1] and normalised with CLIP's
//! mean and standard deviation, laid out channels first.
//!
//! The resize is Pillow's `ImagingResample` step for step: horizontal pass
//! first, 8-bit intermediate, 22-bit fixed-point coefficients. A float resize,
//! or one in the other order (the `image` crate's), differs from Pillow by up
//! to 24/255 at hard edges, and the embeddings would drift with it.

use image::{DynamicImage, RgbImage};

/// CLIP's preprocessing constants (those of `openai/clip-vit-base-patch32`).
#[derive(Clone, Debug, PartialEq)]
pub struct ClipPreprocessConfig {
    /// The shortest side is resized to this.
    pub shortest_edge: u32,
    /// Side of the centre crop.
    pub crop_size: u32,
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

impl Default for ClipPreprocessConfig {
    // The values of the Hugging Face config, digit for digit.
    #[allow(clippy::excessive_precision)]
    fn default() -> Self {
        Self {
            shortest_edge: 224,
            crop_size: 224,
            mean: [0.481_454_66, 0.457_827_5, 0.408_210_73],
            std: [0.268_629_54, 0.261_302_58, 0.275_777_11],
        }
    }
}

impl ClipPreprocessConfig {
    /// CLIP's constants at another input size (a model folder without
    /// `preprocessor_config.json`).
    pub fn for_image_size(size: u32) -> Self {
        Self {
            shortest_edge: size,
            crop_size: size,
            ..Self::default()
        }
    }

    /// Reads a Hugging Face `preprocessor_config.json`. Old files write sizes as
    /// plain numbers, newer ones as `{"shortest_edge": n}` / `{"height", "width"}`.
    pub fn from_file(path: &std::path::Path) -> anyhow::Result<Self> {
        use anyhow::Context;
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let json: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("{} is not JSON", path.display()))?;
        let defaults = Self::default();
        let size_of = |v: &serde_json::Value, keys: &[&str]| -> Option<u32> {
            if let Some(n) = v.as_u64() {
                return Some(n as u32);
            }
            keys.iter()
                .find_map(|k| v.get(*k).and_then(|n| n.as_u64()))
                .map(|n| n as u32)
        };
        let shortest_edge = json
            .get("size")
            .and_then(|v| size_of(v, &["shortest_edge", "height"]))
            .unwrap_or(defaults.shortest_edge);
        let crop_size = json
            .get("crop_size")
            .and_then(|v| size_of(v, &["height", "shortest_edge"]))
            .unwrap_or(shortest_edge);
        let triple = |key: &str, fallback: [f32; 3]| -> anyhow::Result<[f32; 3]> {
            match json.get(key) {
                None => Ok(fallback),
                Some(v) => {
                    let values: Vec<f32> =
                        serde_json::from_value(v.clone()).with_context(|| {
                            format!("{key} in {} is not a list of numbers", path.display())
                        })?;
                    values.try_into().map_err(|_| {
                        anyhow::anyhow!("{key} in {} must have 3 values", path.display())
                    })
                }
            }
        };
        Ok(Self {
            shortest_edge,
            crop_size,
            mean: triple("image_mean", defaults.mean)?,
            std: triple("image_std", defaults.std)?,
        })
    }
}

/// The model input: 3 × crop × crop floats, channels first, normalised.
pub fn preprocess(image: &DynamicImage, config: &ClipPreprocessConfig) -> Vec<f32> {
    let cropped = resize_and_crop(image, config);
    let side = (config.crop_size * config.crop_size) as usize;
    let mut out = vec![0.0f32; 3 * side];
    for (i, pixel) in cropped.pixels().enumerate() {
        for c in 0..3 {
            out[c * side + i] = (pixel.0[c] as f32 / 255.0 - config.mean[c]) / config.std[c];
        }
    }
    out
}

/// The 8-bit image the model sees before scaling and normalisation.
pub fn resize_and_crop(image: &DynamicImage, config: &ClipPreprocessConfig) -> RgbImage {
    let rgb = to_rgb_over_white(image);
    let (w, h) = rgb.dimensions();
    // transformers' get_resize_output_image_size: the long side is truncated.
    let (new_w, new_h) = if w <= h {
        let long = (config.shortest_edge as u64 * h as u64 / w.max(1) as u64) as u32;
        (config.shortest_edge, long)
    } else {
        let long = (config.shortest_edge as u64 * w as u64 / h.max(1) as u64) as u32;
        (long, config.shortest_edge)
    };
    let resized = pillow_bicubic_resize(&rgb, new_w, new_h);
    let crop = config.crop_size;
    // transformers' center_crop: offsets rounded down.
    let left = new_w.saturating_sub(crop) / 2;
    let top = new_h.saturating_sub(crop) / 2;
    image::imageops::crop_imm(&resized, left, top, crop.min(new_w), crop.min(new_h)).to_image()
}

/// RGB with any alpha composited onto white; grey replicated to three channels.
pub fn to_rgb_over_white(image: &DynamicImage) -> RgbImage {
    if !image.color().has_alpha() {
        return image.to_rgb8();
    }
    let rgba = image.to_rgba8();
    let (w, h) = rgba.dimensions();
    RgbImage::from_fn(w, h, |x, y| {
        let p = rgba.get_pixel(x, y).0;
        let a = p[3] as u32;
        image::Rgb(std::array::from_fn(|c| {
            ((p[c] as u32 * a + 255 * (255 - a) + 127) / 255) as u8
        }))
    })
}

/// Pillow's fixed-point precision for 8-bit resampling.
const PRECISION_BITS: u32 = 32 - 8 - 2;

/// Pillow's bicubic kernel (a = -0.5).
fn bicubic(x: f64) -> f64 {
    const A: f64 = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * A
    } else {
        0.0
    }
}

/// Per output pixel: first input index, tap count, fixed-point weights
/// (Pillow's `precompute_coeffs` + `normalize_coeffs_8bpc`).
struct Coefficients {
    bounds: Vec<(usize, usize)>,
    ksize: usize,
    weights: Vec<i32>,
}

fn coefficients(in_size: u32, out_size: u32) -> Coefficients {
    const SUPPORT: f64 = 2.0;
    let scale = in_size as f64 / out_size as f64;
    let filter_scale = scale.max(1.0);
    let support = SUPPORT * filter_scale;
    let ksize = support.ceil() as usize * 2 + 1;
    let mut bounds = Vec::with_capacity(out_size as usize);
    let mut weights = vec![0i32; out_size as usize * ksize];
    let mut k = vec![0.0f64; ksize];
    for xx in 0..out_size as usize {
        let center = (xx as f64 + 0.5) * scale;
        let ss = 1.0 / filter_scale;
        // C casts truncate toward zero; both values are ≥ -0.5 here.
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize - xmin;
        let mut total = 0.0;
        for (x, kx) in k.iter_mut().enumerate().take(xmax) {
            *kx = bicubic((x as f64 + xmin as f64 - center + 0.5) * ss);
            total += *kx;
        }
        for x in 0..xmax {
            let w = if total != 0.0 { k[x] / total } else { k[x] };
            let fixed = w * (1u32 << PRECISION_BITS) as f64;
            weights[xx * ksize + x] = if w < 0.0 {
                (-0.5 + fixed) as i32
            } else {
                (0.5 + fixed) as i32
            };
        }
        bounds.push((xmin, xmax));
    }
    Coefficients {
        bounds,
        ksize,
        weights,
    }
}

#[inline]
fn clip8(acc: i64) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

/// `PIL.Image.resize((w, h), Image.BICUBIC)` on an RGB image.
pub fn pillow_bicubic_resize(input: &RgbImage, out_w: u32, out_h: u32) -> RgbImage {
    let (in_w, in_h) = input.dimensions();
    let (in_w, in_h, out_w, out_h) = (in_w as usize, in_h as usize, out_w as usize, out_h as usize);
    let src = input.as_raw();
    // Horizontal pass (rows in_h, columns out_w), 8-bit intermediate as in Pillow.
    let horizontal: Vec<u8> = if out_w != in_w {
        let c = coefficients(in_w as u32, out_w as u32);
        let mut out = vec![0u8; out_w * in_h * 3];
        for y in 0..in_h {
            let row = &src[y * in_w * 3..(y + 1) * in_w * 3];
            for xx in 0..out_w {
                let (xmin, n) = c.bounds[xx];
                let k = &c.weights[xx * c.ksize..xx * c.ksize + n];
                let mut acc = [1i64 << (PRECISION_BITS - 1); 3];
                for (x, &w) in k.iter().enumerate() {
                    let p = &row[(xmin + x) * 3..(xmin + x) * 3 + 3];
                    for ch in 0..3 {
                        acc[ch] += p[ch] as i64 * w as i64;
                    }
                }
                for ch in 0..3 {
                    out[(y * out_w + xx) * 3 + ch] = clip8(acc[ch]);
                }
            }
        }
        out
    } else {
        src.to_vec()
    };
    if out_h == in_h {
        return RgbImage::from_raw(out_w as u32, out_h as u32, horizontal).expect("size matches");
    }
    // Vertical pass.
    let c = coefficients(in_h as u32, out_h as u32);
    let stride = out_w * 3;
    let mut out = vec![0u8; out_w * out_h * 3];
    for yy in 0..out_h {
        let (ymin, n) = c.bounds[yy];
        let k = &c.weights[yy * c.ksize..yy * c.ksize + n];
        let dst = &mut out[yy * stride..(yy + 1) * stride];
        for (i, value) in dst.iter_mut().enumerate() {
            let mut acc: i64 = 1 << (PRECISION_BITS - 1);
            for (y, &w) in k.iter().enumerate() {
                acc += horizontal[(ymin + y) * stride + i] as i64 * w as i64;
            }
            *value = clip8(acc);
        }
    }
    RgbImage::from_raw(out_w as u32, out_h as u32, out).expect("size matches")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn fixtures() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/clip")
    }

    /// uint8 [8, 3, 224, 224] from `pixels_u8.npy` (format version 1, C order).
    fn reference_pixels() -> Vec<u8> {
        let bytes = std::fs::read(fixtures().join("pixels_u8.npy")).unwrap();
        let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
        let header = std::str::from_utf8(&bytes[10..10 + header_len]).unwrap();
        assert!(
            header.contains("'|u1'") && header.contains("(8, 3, 224, 224)"),
            "{header}"
        );
        bytes[10 + header_len..].to_vec()
    }

    #[test]
    fn matches_hugging_face_pixel_values_on_the_fixture_images() {
        let expected: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(fixtures().join("expected.json")).unwrap(),
        )
        .unwrap();
        let reference = reference_pixels();
        let config = ClipPreprocessConfig::default();
        let plane = 224 * 224;
        for entry in expected["images"].as_array().unwrap() {
            let index = entry["index"].as_u64().unwrap() as usize;
            let file = entry["file"].as_str().unwrap();
            let image = image::open(fixtures().join(file)).unwrap();
            let ours = resize_and_crop(&image, &config);
            assert_eq!(ours.dimensions(), (224, 224), "{file}");
            let theirs = &reference[index * 3 * plane..(index + 1) * 3 * plane];
            let mut worst = 0i32;
            let mut total = 0u64;
            for (i, p) in ours.pixels().enumerate() {
                for c in 0..3 {
                    let d = (p.0[c] as i32 - theirs[c * plane + i] as i32).abs();
                    worst = worst.max(d);
                    total += d as u64;
                }
            }
            let mean = total as f64 / (3 * plane) as f64;
            println!("{file}: max |Δ| {worst}/255, mean {mean:.4}");
            assert!(worst <= 2, "{file}: max difference {worst}/255");
        }
    }

    #[test]
    fn normalised_output_is_channels_first() {
        let image =
            DynamicImage::ImageRgb8(RgbImage::from_pixel(300, 250, image::Rgb([255, 0, 128])));
        let config = ClipPreprocessConfig::default();
        let v = preprocess(&image, &config);
        assert_eq!(v.len(), 3 * 224 * 224);
        let plane = 224 * 224;
        assert!((v[0] - (1.0 - config.mean[0]) / config.std[0]).abs() < 1e-6);
        assert!((v[plane] - (0.0 - config.mean[1]) / config.std[1]).abs() < 1e-6);
        assert!(
            (v[2 * plane + 100] - (128.0 / 255.0 - config.mean[2]) / config.std[2]).abs() < 1e-6
        );
    }
}
