//! Stage 2: read a file, hash its bytes and decode it, refusing what would hurt.
//!
//! Every failure becomes a [`SkipReason`] (the file is then listed as skipped);
//! nothing here panics on bad input. Memory is bounded: the header is checked
//! against [`DecodeLimits`] before any pixel buffer is allocated, so a PNG that
//! claims to be 60000×60000 is refused, not allocated.

pub mod grey;
pub mod phash;
pub mod quality;

use std::io::{Cursor, Read};
use std::path::Path;

use image::{DynamicImage, ImageDecoder, ImageError, ImageReader, Limits};

use grey::GreyThumbnail;
use phash::{Fingerprint, PerceptualHash};
use quality::ImageStats;

/// Why a file is not in the map. `Display` is the sentence shown to the user;
/// [`SkipReason::kind`] groups similar reasons for counts.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SkipReason {
    #[error("not an image file extension")]
    NotImageExtension,
    #[error("not a regular file (device, socket or pipe)")]
    NotRegularFile,
    #[error("symbolic link points to nothing (dangling link)")]
    DanglingLink,
    #[error("symbolic link cannot be followed: {0}")]
    LinkNotFollowed(String),
    #[error("folder not readable: {0}")]
    FolderUnreadable(String),
    /// Opening, reading or statting the file failed.
    #[error("{0}")]
    Unreadable(String),
    #[error("empty file (0 bytes)")]
    Empty,
    #[error("file is {size_mib} MiB, larger than the {limit_mib} MiB limit")]
    FileTooLarge { size_mib: u64, limit_mib: u64 },
    #[error("not an image: the content matches no supported image format")]
    NotAnImage,
    /// The file ends before its image data does.
    #[error("{0}")]
    Truncated(String),
    #[error("{0}")]
    Corrupt(String),
    #[error("{0}")]
    Unsupported(String),
    /// Too many pixels, or too much memory once decoded.
    #[error("{0}")]
    TooLarge(String),
}

impl SkipReason {
    /// A short, stable name for the kind of problem (report counts, summaries).
    pub fn kind(&self) -> &'static str {
        match self {
            SkipReason::NotImageExtension => "not an image file extension",
            SkipReason::NotRegularFile => "not a regular file",
            SkipReason::DanglingLink => "dangling symbolic link",
            SkipReason::LinkNotFollowed(_) => "symbolic link not followed",
            SkipReason::FolderUnreadable(_) => "folder not readable",
            SkipReason::Unreadable(_) => "unreadable file",
            SkipReason::Empty => "empty file",
            SkipReason::FileTooLarge { .. } => "file too large",
            SkipReason::NotAnImage => "not an image",
            SkipReason::Truncated(_) => "truncated image",
            SkipReason::Corrupt(_) => "corrupt image",
            SkipReason::Unsupported(_) => "unsupported image variant",
            SkipReason::TooLarge(_) => "image too large",
        }
    }
}

/// A small RGBA copy of an image, made while it is decoded (the viewer's
/// billboards and galleries).
#[derive(Clone, Debug, PartialEq)]
pub struct Thumbnail {
    pub width: u32,
    pub height: u32,
    /// `width * height` RGBA pixels, row-major, sRGB.
    pub rgba: Vec<u8>,
}

impl Thumbnail {
    /// Fits `image` into `size`×`size`, keeping its aspect ratio.
    pub fn of(image: &DynamicImage, size: u32) -> Self {
        let small = image.thumbnail(size, size).to_rgba8();
        Self {
            width: small.width(),
            height: small.height(),
            rgba: small.into_raw(),
        }
    }
}

/// What an image looks like, beyond its embedding: the perceptual
/// fingerprint the duplicate stage compares and the statistics the quality
/// flags come from. Made from one grey thumbnail while the image is decoded
/// for its embedding, whatever the embedder, and kept in the embedding cache
/// (it depends on the bytes only), so a cached run has it without decoding.
#[derive(Clone, Debug, PartialEq)]
pub struct ImageLooks {
    pub fingerprint: Fingerprint,
    pub stats: ImageStats,
}

/// First byte of [`ImageLooks::to_bytes`]: a layout change makes old rows
/// unreadable (recomputed), never misread.
const LOOKS_FORMAT: u8 = 1;
const LOOKS_BYTES: usize = 1 + 8 + 4 * 2 + 4 * 5 + Fingerprint::SIDE * Fingerprint::SIDE;

impl ImageLooks {
    pub fn of(image: &DynamicImage) -> Self {
        let thumb = GreyThumbnail::of(image);
        Self {
            fingerprint: Fingerprint::of_thumbnail(&thumb),
            stats: ImageStats::of_thumbnail(&thumb),
        }
    }

    /// The cache's row: format byte, hash, size, statistics (sharpness NaN
    /// when there is none), the 32×32 grey square; little-endian.
    pub fn to_bytes(&self) -> Vec<u8> {
        let s = &self.stats;
        let mut out = Vec::with_capacity(LOOKS_BYTES);
        out.push(LOOKS_FORMAT);
        out.extend_from_slice(&self.fingerprint.hash.0.to_le_bytes());
        out.extend_from_slice(&s.width.to_le_bytes());
        out.extend_from_slice(&s.height.to_le_bytes());
        for v in [s.mean, s.std, s.p05, s.p99, s.sharpness.unwrap_or(f32::NAN)] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&self.fingerprint.grey[..]);
        out
    }

    /// `None` for a row of another format or length (it is then recomputed).
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        if bytes.len() != LOOKS_BYTES || bytes[0] != LOOKS_FORMAT {
            return None;
        }
        let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
        let f32_at = |at: usize| f32::from_bits(u32_at(at));
        let hash = u64::from_le_bytes(bytes[1..9].try_into().expect("8 bytes"));
        let sharpness = f32_at(33);
        let mut grey = Box::new([0u8; Fingerprint::SIDE * Fingerprint::SIDE]);
        grey.copy_from_slice(&bytes[37..]);
        Some(Self {
            fingerprint: Fingerprint {
                hash: PerceptualHash(hash),
                grey,
            },
            stats: ImageStats {
                width: u32_at(9),
                height: u32_at(13),
                mean: f32_at(17),
                std: f32_at(21),
                p05: f32_at(25),
                p99: f32_at(29),
                sharpness: (!sharpness.is_nan()).then_some(sharpness),
            },
        })
    }
}

/// BLAKE3 hash of a file's bytes: the identity of an image in the cache and for
/// exact-duplicate detection.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContentHash(pub [u8; 32]);

impl ContentHash {
    pub fn of(bytes: &[u8]) -> Self {
        Self(*blake3::hash(bytes).as_bytes())
    }

    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl std::fmt::Debug for ContentHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ContentHash({}…)", &self.to_hex()[..12])
    }
}

/// What the decoder may spend on one image.
#[derive(Clone, Copy, Debug)]
pub struct DecodeLimits {
    /// Largest file read into memory.
    pub max_file_bytes: u64,
    /// Largest width and height accepted.
    pub max_side: u32,
    /// Largest decoded pixel buffer, in bytes.
    pub max_alloc: u64,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        Self {
            max_file_bytes: 512 << 20,
            max_side: 20_000,
            max_alloc: 512 << 20,
        }
    }
}

/// Reads a whole file, refusing empty and oversized ones.
pub fn read_file(path: &Path, limits: &DecodeLimits) -> Result<Vec<u8>, SkipReason> {
    let file = std::fs::File::open(path)
        .map_err(|e| SkipReason::Unreadable(format!("cannot open file: {e}")))?;
    let len = file
        .metadata()
        .map_err(|e| SkipReason::Unreadable(format!("cannot read file information: {e}")))?
        .len();
    if len == 0 {
        return Err(SkipReason::Empty);
    }
    if len > limits.max_file_bytes {
        return Err(SkipReason::FileTooLarge {
            size_mib: len >> 20,
            limit_mib: limits.max_file_bytes >> 20,
        });
    }
    let mut bytes = Vec::with_capacity(len as usize);
    // `take` guards against a file that grows while we read it.
    file.take(limits.max_file_bytes + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| SkipReason::Unreadable(format!("read error: {e}")))?;
    if bytes.is_empty() {
        return Err(SkipReason::Empty);
    }
    Ok(bytes)
}

/// Decodes an image from memory: format sniffed from the bytes (not the
/// extension), EXIF orientation applied, first frame of animations.
pub fn decode(bytes: &[u8], limits: &DecodeLimits) -> Result<DynamicImage, SkipReason> {
    let reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| SkipReason::Unreadable(format!("read error: {e}")))?;
    let Some(format) = reader.format() else {
        return Err(SkipReason::NotAnImage);
    };
    // The JPEG decoder fills a cut-off file with grey instead of failing: an
    // image without its end marker is truncated, and is refused as such.
    if format == image::ImageFormat::Jpeg && !has_jpeg_end_marker(bytes) {
        return Err(SkipReason::Truncated(
            "truncated JPEG file (no end-of-image marker)".to_owned(),
        ));
    }
    let mut reader = reader;
    let mut image_limits = Limits::default();
    image_limits.max_image_width = Some(limits.max_side);
    image_limits.max_image_height = Some(limits.max_side);
    image_limits.max_alloc = Some(limits.max_alloc);
    reader.limits(image_limits);
    let format_name = format!("{format:?}").to_uppercase();

    let mut decoder = reader.into_decoder().map_err(|e| match e {
        // Name the claimed size: read it again from the header alone.
        ImageError::Limits(_) => match header_dimensions(bytes) {
            Some((w, h)) if w > limits.max_side || h > limits.max_side => too_large(w, h, limits),
            _ => describe(&format_name, e, limits),
        },
        e => describe(&format_name, e, limits),
    })?;
    let (width, height) = decoder.dimensions();
    if width == 0 || height == 0 {
        return Err(SkipReason::Corrupt(format!(
            "{format_name} header claims an empty {width}×{height} image"
        )));
    }
    if width > limits.max_side || height > limits.max_side {
        return Err(too_large(width, height, limits));
    }
    if decoder.total_bytes() > limits.max_alloc {
        return Err(SkipReason::TooLarge(format!(
            "{width}×{height} image needs {} MiB decoded, more than the {} MiB limit",
            decoder.total_bytes() >> 20,
            limits.max_alloc >> 20
        )));
    }
    // Orientation problems (a broken EXIF block) are not worth losing the image.
    let orientation = decoder.orientation().ok();
    let mut image =
        DynamicImage::from_decoder(decoder).map_err(|e| describe(&format_name, e, limits))?;
    if let Some(orientation) = orientation {
        image.apply_orientation(orientation);
    }
    Ok(image)
}

/// JPEG files end with FF D9; some cameras append data after it, so the last
/// 64 KiB are searched.
fn has_jpeg_end_marker(bytes: &[u8]) -> bool {
    let tail = &bytes[bytes.len().saturating_sub(64 << 10)..];
    tail.windows(2).any(|w| w == [0xFF, 0xD9])
}

/// Width and height from the header, parsed without limits: decoders read only
/// the header here and allocate no pixel buffer.
fn header_dimensions(bytes: &[u8]) -> Option<(u32, u32)> {
    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .ok()?;
    reader.no_limits();
    reader.into_dimensions().ok()
}

fn too_large(width: u32, height: u32, limits: &DecodeLimits) -> SkipReason {
    SkipReason::TooLarge(format!(
        "image header claims {width}×{height} pixels, larger than the {max}×{max} limit (refused before decoding)",
        max = limits.max_side
    ))
}

fn describe(format: &str, err: ImageError, limits: &DecodeLimits) -> SkipReason {
    match err {
        ImageError::Limits(e) => SkipReason::TooLarge(format!(
            "{format} image exceeds the decoder's memory limits ({e}; at most {}×{} pixels and {} MiB)",
            limits.max_side,
            limits.max_side,
            limits.max_alloc >> 20
        )),
        ImageError::Unsupported(e) => {
            SkipReason::Unsupported(format!("{format} variant not supported: {e}"))
        }
        ImageError::IoError(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            SkipReason::Truncated(format!(
                "truncated {format} file (ends before the image data does)"
            ))
        }
        ImageError::IoError(e) => {
            SkipReason::Truncated(format!("truncated or unreadable {format} file: {e}"))
        }
        ImageError::Decoding(e) => {
            // The decoders say "truncated" in their own words only.
            let text = e.to_string();
            let lower = text.to_ascii_lowercase();
            if lower.contains("eof") || lower.contains("end of") || lower.contains("truncat") {
                SkipReason::Truncated(format!("truncated {format} file: {text}"))
            } else {
                SkipReason::Corrupt(format!("corrupt {format} file: {text}"))
            }
        }
        other => SkipReason::Corrupt(format!("cannot decode {format} file: {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{ImageBuffer, Luma, Rgb};

    fn png_bytes(image: &DynamicImage) -> Vec<u8> {
        let mut out = Vec::new();
        image
            .write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png)
            .unwrap();
        out
    }

    #[test]
    fn decodes_by_content_not_extension() {
        let img = DynamicImage::ImageRgb8(ImageBuffer::from_pixel(5, 3, Rgb([10, 20, 30])));
        let decoded = decode(&png_bytes(&img), &DecodeLimits::default()).unwrap();
        assert_eq!((decoded.width(), decoded.height()), (5, 3));
    }

    #[test]
    fn looks_round_trip_through_bytes_and_refuse_other_layouts() {
        let img = DynamicImage::ImageRgb8(ImageBuffer::from_fn(90, 60, |x, y| {
            Rgb([(x * 3) as u8, (y * 4) as u8, ((x * y) % 251) as u8])
        }));
        let looks = ImageLooks::of(&img);
        assert_eq!((looks.stats.width, looks.stats.height), (90, 60));
        let bytes = looks.to_bytes();
        assert_eq!(ImageLooks::from_bytes(&bytes), Some(looks.clone()));
        // A flat image has no sharpness: the None survives the NaN encoding.
        let flat = ImageLooks::of(&DynamicImage::ImageRgb8(ImageBuffer::from_pixel(
            9,
            9,
            Rgb([5, 5, 5]),
        )));
        assert_eq!(flat.stats.sharpness, None);
        assert_eq!(ImageLooks::from_bytes(&flat.to_bytes()), Some(flat));
        let mut other = bytes.clone();
        other[0] = LOOKS_FORMAT + 1;
        assert_eq!(ImageLooks::from_bytes(&other), None);
        assert_eq!(ImageLooks::from_bytes(&bytes[..bytes.len() - 1]), None);
    }

    #[test]
    fn sixteen_bit_grayscale_decodes() {
        let img = DynamicImage::ImageLuma16(ImageBuffer::from_pixel(4, 4, Luma([40_000u16])));
        let decoded = decode(&png_bytes(&img), &DecodeLimits::default()).unwrap();
        assert_eq!(decoded.color(), image::ColorType::L16);
    }

    #[test]
    fn text_and_noise_are_refused_with_a_reason() {
        let reason = decode(b"hello, I am text", &DecodeLimits::default()).unwrap_err();
        assert_eq!(reason, SkipReason::NotAnImage);
        assert!(reason.to_string().starts_with("not an image"), "{reason}");
    }

    #[test]
    fn truncated_png_is_refused_with_a_reason() {
        let img = DynamicImage::ImageRgb8(ImageBuffer::from_fn(64, 64, |x, y| {
            Rgb([(x * 4) as u8, (y * 4) as u8, ((x ^ y) * 4) as u8])
        }));
        let bytes = png_bytes(&img);
        let reason = decode(&bytes[..bytes.len() / 2], &DecodeLimits::default()).unwrap_err();
        assert!(reason.to_string().contains("PNG"), "{reason}");
    }

    #[test]
    fn huge_header_is_refused_before_allocating() {
        let reason =
            decode(&huge_png_header(60_000, 60_000), &DecodeLimits::default()).unwrap_err();
        assert_eq!(reason.kind(), "image too large");
        assert!(reason.to_string().contains("60000×60000"), "{reason}");
    }

    /// A PNG signature and IHDR claiming `w`×`h` RGBA, then nothing useful.
    pub(crate) fn huge_png_header(w: u32, h: u32) -> Vec<u8> {
        let mut ihdr = Vec::new();
        ihdr.extend_from_slice(&w.to_be_bytes());
        ihdr.extend_from_slice(&h.to_be_bytes());
        ihdr.extend_from_slice(&[8, 6, 0, 0, 0]);
        let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
        push_chunk(&mut out, b"IHDR", &ihdr);
        push_chunk(&mut out, b"IDAT", &[0x78, 0x9c, 0x03, 0x00]);
        push_chunk(&mut out, b"IEND", &[]);
        out
    }

    fn push_chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let mut crc_input = kind.to_vec();
        crc_input.extend_from_slice(data);
        out.extend_from_slice(&crc_input);
        out.extend_from_slice(&crc32(&crc_input).to_be_bytes());
    }

    fn crc32(data: &[u8]) -> u32 {
        let mut crc = 0xFFFF_FFFFu32;
        for &byte in data {
            crc ^= byte as u32;
            for _ in 0..8 {
                crc = if crc & 1 != 0 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }
}
