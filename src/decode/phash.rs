//! Perceptual hash (pHash) of a decoded image: the near-duplicate evidence that
//! survives what moves every pixel (a small crop, rescaling, JPEG, brightness).
//!
//! The steps are imagededup's `PHash` (0.3.3), so its Hamming distances (and
//! the thresholds people know from it) carry over: grey, 32×32, 2-D DCT-II,
//! the top-left 8×8 coefficients, one bit per coefficient set when it is at or
//! above the median of the 63 that are not the DC term. Bits are packed row by
//! row, most significant first, so `{:016x}` prints imagededup's hex string.
//! The DC bit is always set (the DC term is the largest coefficient), so 63
//! bits carry information.
//!
//! Only 64 of the 1,024 DCT coefficients are needed, so the transform is two
//! small matrix products (8×32 by 32×32 by 32×8, about 10,000 multiply-adds)
//! with a cosine table computed once: cheaper than a full FFT-based DCT and no
//! dependency (`rustdct` would pull in `rustfft`). `image_hasher` was not used:
//! its `Mean`/`Median` DCT hash resizes and transforms differently from
//! imagededup (so distances would not match the figures we compare against),
//! and it brings `rustdct`, `base64` and `transpose` with it.

use std::sync::LazyLock;

use image::DynamicImage;
use serde::Serialize;

use super::grey::{GreyThumbnail, resample};

/// Side of the grey square the DCT runs on.
const N: usize = 32;
/// Side of the low-frequency block kept.
const K: usize = 8;

/// What the duplicate stage keeps of each image's looks: its perceptual hash
/// and the 32×32 grey square the hash was computed from (1 KiB), on which a
/// candidate pair's alignment is checked (see `analyze::perceptual`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fingerprint {
    pub hash: PerceptualHash,
    /// Row-major grey levels 0-255, aspect ratio not kept.
    pub grey: Box<[u8; N * N]>,
}

impl Fingerprint {
    pub const SIDE: usize = N;

    pub fn of(image: &DynamicImage) -> Self {
        Self::of_thumbnail(&GreyThumbnail::of(image))
    }

    pub fn of_thumbnail(thumb: &GreyThumbnail) -> Self {
        let square = grey_square(thumb);
        let hash = PerceptualHash::from_coefficients(&dct_of_square(&square));
        let mut grey = Box::new([0u8; N * N]);
        for (g, v) in grey.iter_mut().zip(&square) {
            *g = v.round().clamp(0.0, 255.0) as u8;
        }
        Self { hash, grey }
    }
}

/// 64-bit perceptual hash; bit 63 is coefficient (0,0), bit 0 coefficient (7,7).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct PerceptualHash(pub u64);

impl PerceptualHash {
    /// Hash of a decoded image (makes its own grey thumbnail; when the quality
    /// statistics are wanted too, make one [`GreyThumbnail`] and use
    /// [`PerceptualHash::of_thumbnail`]).
    pub fn of(image: &DynamicImage) -> Self {
        Self::of_thumbnail(&GreyThumbnail::of(image))
    }

    pub fn of_thumbnail(thumb: &GreyThumbnail) -> Self {
        Self::from_coefficients(&low_frequency_dct(thumb))
    }

    /// Bits from an 8×8 block of DCT coefficients (row-major).
    pub fn from_coefficients(c: &[f32; K * K]) -> Self {
        let mut ac: Vec<f32> = c[1..].to_vec();
        ac.sort_by(f32::total_cmp);
        // numpy's median of 63 values: the middle one.
        let median = ac[ac.len() / 2];
        let mut bits = 0u64;
        for &v in c {
            bits = (bits << 1) | u64::from(v >= median);
        }
        Self(bits)
    }

    /// Number of differing bits, 0 to 64.
    #[inline]
    pub fn distance(self, other: Self) -> u32 {
        (self.0 ^ other.0).count_ones()
    }

    pub fn to_hex(self) -> String {
        format!("{:016x}", self.0)
    }
}

/// `COS[u][x] = cos(π (2x + 1) u / 2N)`: the DCT-II basis, rows u < 8.
static COS: LazyLock<[[f32; N]; K]> = LazyLock::new(|| {
    let mut t = [[0.0f32; N]; K];
    for (u, row) in t.iter_mut().enumerate() {
        for (x, v) in row.iter_mut().enumerate() {
            *v = (std::f64::consts::PI * (2 * x + 1) as f64 * u as f64 / (2 * N) as f64).cos()
                as f32;
        }
    }
    t
});

/// The 8×8 lowest-frequency DCT-II coefficients of the thumbnail resized to
/// 32×32 (unnormalised, as `scipy.fftpack.dct` gives them up to a factor of 4).
pub fn low_frequency_dct(thumb: &GreyThumbnail) -> [f32; K * K] {
    dct_of_square(&grey_square(thumb))
}

fn dct_of_square(square: &[f32]) -> [f32; K * K] {
    // rows[u][x] = Σ_y COS[u][y] · img[y][x]
    let mut rows = [[0.0f32; N]; K];
    for (u, out) in rows.iter_mut().enumerate() {
        for y in 0..N {
            let c = COS[u][y];
            let line = &square[y * N..(y + 1) * N];
            for (o, &p) in out.iter_mut().zip(line) {
                *o += c * p;
            }
        }
    }
    // coef[u][v] = Σ_x rows[u][x] · COS[v][x]
    let mut coef = [0.0f32; K * K];
    for u in 0..K {
        for v in 0..K {
            coef[u * K + v] = crate::dot(&rows[u], &COS[v]);
        }
    }
    coef
}

/// The thumbnail as a 32×32 grey square on a 0-255 scale (aspect ratio not
/// kept, as imagededup), by area averaging (imagededup uses Lanczos; the
/// hashes differ by 0-2 bits of 64, measured on the planted photo sets).
fn grey_square(thumb: &GreyThumbnail) -> Vec<f32> {
    let mut square = resample(&thumb.pixels, thumb.width, thumb.height, N as u32, N as u32);
    square.iter_mut().for_each(|v| *v *= 255.0);
    square
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::imageops::{self, FilterType};
    use image::{GrayImage, Luma, Rgb, RgbImage};

    /// A smooth scene with a few shapes: what a photo looks like at 32×32.
    fn scene(w: u32, h: u32, seed: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| {
            let (fx, fy) = (x as f32 / w as f32, y as f32 / h as f32);
            let s = seed as f32;
            let blob = |cx: f32, cy: f32, r: f32| {
                (-((fx - cx).powi(2) + (fy - cy).powi(2)) / (r * r)).exp()
            };
            let v = 60.0
                + 120.0 * blob(0.3 + 0.1 * (s * 1.3).sin(), 0.4, 0.2)
                + 80.0 * blob(0.7, 0.6 + 0.1 * (s * 0.7).cos(), 0.15)
                + 40.0 * (fx * (3.0 + s)).sin()
                + 30.0 * fy;
            let v = v.clamp(0.0, 255.0) as u8;
            Rgb([v, v.saturating_sub(20), v / 2])
        })
    }

    #[test]
    fn matches_imagededup_bit_layout_on_a_gradient() {
        // Brighter to the right: the (0,1) coefficient is strongly negative
        // (cos falls across x while the image rises), (1,0) is zero.
        let img =
            DynamicImage::ImageLuma8(GrayImage::from_fn(32, 32, |x, _| Luma([(x * 8) as u8])));
        let c = low_frequency_dct(&GreyThumbnail::of(&img));
        assert!(c[0] > 0.0 && c[1] < -1000.0, "{:?}", &c[..3]);
        assert!(c[K].abs() < 1e-2);
        let h = PerceptualHash::of(&img);
        assert_eq!(h.0 >> 63, 1, "DC bit is set");
        assert_eq!(
            (h.0 >> 62) & 1,
            0,
            "the strongly negative (0,1) bit is clear"
        );
    }

    #[test]
    fn survives_resize_jpeg_like_noise_brightness_and_a_small_crop() {
        let base = scene(300, 200, 1);
        let h0 = PerceptualHash::of(&DynamicImage::ImageRgb8(base.clone()));
        let half = imageops::resize(&base, 150, 100, FilterType::Lanczos3);
        let brighter = RgbImage::from_fn(300, 200, |x, y| {
            let p = base.get_pixel(x, y).0;
            Rgb(p.map(|c| c.saturating_add(40)))
        });
        let noisy = RgbImage::from_fn(300, 200, |x, y| {
            let p = base.get_pixel(x, y).0;
            let n = ((x * 7919 + y * 104_729) % 9) as u8;
            Rgb(p.map(|c| c.saturating_add(n)))
        });
        let crop = imageops::crop_imm(&base, 6, 4, 288, 192).to_image();
        for (name, img) in [
            ("half", half),
            ("brighter", brighter),
            ("noisy", noisy),
            ("crop", crop),
        ] {
            let d = h0.distance(PerceptualHash::of(&DynamicImage::ImageRgb8(img)));
            assert!(d <= 10, "{name}: distance {d}");
        }
        let other = PerceptualHash::of(&DynamicImage::ImageRgb8(scene(300, 200, 4)));
        assert!(
            h0.distance(other) > 16,
            "a different scene: {}",
            h0.distance(other)
        );
    }

    #[test]
    fn flat_and_tiny_images_hash_without_panicking() {
        for (w, h) in [(1, 1), (1, 500), (3, 2), (32, 32)] {
            let img = DynamicImage::ImageRgb8(RgbImage::from_pixel(w, h, Rgb([7, 7, 7])));
            let _ = PerceptualHash::of(&img);
        }
    }

    #[test]
    fn distance_counts_bits() {
        assert_eq!(PerceptualHash(0b1011).distance(PerceptualHash(0b0110)), 3);
        assert_eq!(PerceptualHash(u64::MAX).distance(PerceptualHash(0)), 64);
        assert_eq!(PerceptualHash(0xff00).to_hex(), "000000000000ff00");
    }
}
