//! The offline default embedder: raw pixel brightness, as in the classic MNIST
//! t-SNE/UMAP walkthroughs, generalised to any image.
//!
//! Each image is turned to grayscale (alpha composited over black), resized to a
//! small square, flattened, mean-centred and L2-normalised. Mean-centring makes the
//! cosine of two images their pixel correlation, so a brightened or darkened copy
//! stays close to its original.

use image::imageops::{self, FilterType};
use image::{DynamicImage, ImageBuffer, Luma};

use super::Embedder;

/// Side used when every image of the folder is MNIST-sized (at most 28×28).
pub const MNIST_SIDE: u32 = 28;
/// Side used otherwise.
pub const DEFAULT_SIDE: u32 = 32;

#[derive(Clone, Debug)]
pub struct PixelEmbedder {
    side: u32,
}

impl PixelEmbedder {
    pub fn new(side: u32) -> Self {
        assert!(side > 0);
        Self { side }
    }

    /// 28×28 when all sampled images are at most 28×28 (MNIST and its kin: no
    /// resampling at all), 32×32 otherwise.
    pub fn for_sizes(sizes: &[(u32, u32)]) -> Self {
        let small = !sizes.is_empty()
            && sizes
                .iter()
                .all(|&(w, h)| w <= MNIST_SIDE && h <= MNIST_SIDE);
        Self::new(if small { MNIST_SIDE } else { DEFAULT_SIDE })
    }

    pub fn side(&self) -> u32 {
        self.side
    }
}

impl Embedder for PixelEmbedder {
    fn id(&self) -> String {
        format!("pixels-v1-{}x{}", self.side, self.side)
    }

    fn dim(&self) -> usize {
        (self.side * self.side) as usize
    }

    fn default_duplicate_threshold(&self) -> f32 {
        DEFAULT_PIXEL_DUPLICATE_THRESHOLD
    }

    fn preprocess(&self, image: &DynamicImage) -> Vec<f32> {
        let gray = grayscale_over_black(image);
        let resized = if gray.width() == self.side && gray.height() == self.side {
            gray
        } else {
            imageops::resize(&gray, self.side, self.side, FilterType::Triangle)
        };
        let mut v = resized.into_raw();
        centre_and_normalise(&mut v);
        v
    }

    fn embed_batch(&self, batch: Vec<Vec<f32>>) -> anyhow::Result<Vec<Vec<f32>>> {
        // Preprocessing already produced the final vectors.
        Ok(batch)
    }
}

/// Measured on MNIST with planted copies (see README, "Duplicates").
pub const DEFAULT_PIXEL_DUPLICATE_THRESHOLD: f32 = 0.98;

fn grayscale_over_black(image: &DynamicImage) -> ImageBuffer<Luma<f32>, Vec<f32>> {
    let with_alpha = image.to_luma_alpha32f();
    let (w, h) = with_alpha.dimensions();
    let data = with_alpha
        .pixels()
        .map(|p| (p.0[0] * p.0[1]).clamp(0.0, 1.0))
        .collect();
    ImageBuffer::from_raw(w, h, data).expect("buffer size matches dimensions")
}

/// Subtracts the mean and scales to unit length. A flat image (no contrast) has
/// no direction of its own: it maps to the uniform unit vector, so all flat images
/// are alike and unlike any image with content.
fn centre_and_normalise(v: &mut [f32]) {
    let n = v.len() as f32;
    let mean = v.iter().sum::<f32>() / n;
    for x in v.iter_mut() {
        *x -= mean;
    }
    let norm = crate::l2_normalize(v);
    if norm < 1e-6 {
        let uniform = 1.0 / n.sqrt();
        v.iter_mut().for_each(|x| *x = uniform);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{GrayImage, RgbaImage};

    fn digit(seed: u32) -> DynamicImage {
        DynamicImage::ImageLuma8(GrayImage::from_fn(28, 28, |x, y| {
            Luma([if (x * 7 + y * 3 + seed) % 11 < 4 {
                220
            } else {
                10
            }])
        }))
    }

    #[test]
    fn output_is_unit_length_and_has_the_right_size() {
        let e = PixelEmbedder::new(28);
        let v = e.preprocess(&digit(1));
        assert_eq!(v.len(), 784);
        assert!((crate::dot(&v, &v) - 1.0).abs() < 1e-5);
    }

    #[test]
    fn brightness_shift_barely_changes_the_vector() {
        let e = PixelEmbedder::new(28);
        let a = e.preprocess(&digit(1));
        let mut brighter = digit(1).to_luma8();
        brighter
            .pixels_mut()
            .for_each(|p| p.0[0] = p.0[0].saturating_add(20));
        let b = e.preprocess(&DynamicImage::ImageLuma8(brighter));
        assert!(crate::dot(&a, &b) > 0.99);
        let c = e.preprocess(&digit(5));
        assert!(crate::dot(&a, &c) < 0.9);
    }

    #[test]
    fn flat_and_transparent_images_do_not_produce_nan() {
        let e = PixelEmbedder::new(32);
        let flat =
            DynamicImage::ImageRgba8(RgbaImage::from_pixel(10, 10, image::Rgba([9, 9, 9, 0])));
        let v = e.preprocess(&flat);
        assert!(v.iter().all(|x| x.is_finite()));
        assert!((crate::dot(&v, &v) - 1.0).abs() < 1e-5);
    }

    #[test]
    fn size_follows_the_data() {
        assert_eq!(PixelEmbedder::for_sizes(&[(28, 28), (20, 28)]).side(), 28);
        assert_eq!(PixelEmbedder::for_sizes(&[(28, 28), (640, 480)]).side(), 32);
        assert_eq!(PixelEmbedder::for_sizes(&[]).side(), 32);
    }
}
