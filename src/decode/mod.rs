//! Stage 2: read a file, hash its bytes and decode it, refusing what would hurt.
//!
//! Every failure becomes a human-readable reason (the file is then listed as
//! skipped); nothing here panics on bad input. Memory is bounded: the header is
//! checked against [`DecodeLimits`] before any pixel buffer is allocated, so a PNG
//! that claims to be 60000×60000 is refused, not allocated.

use std::io::{Cursor, Read};
use std::path::Path;

use image::{DynamicImage, ImageDecoder, ImageError, ImageReader, Limits};

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

/// Reads a whole file, refusing empty and oversized ones. The error is the reason
/// shown to the user.
pub fn read_file(path: &Path, limits: &DecodeLimits) -> Result<Vec<u8>, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("cannot open file: {e}"))?;
    let len = file
        .metadata()
        .map_err(|e| format!("cannot read file information: {e}"))?
        .len();
    if len == 0 {
        return Err("empty file (0 bytes)".to_owned());
    }
    if len > limits.max_file_bytes {
        return Err(format!(
            "file is {} MiB, larger than the {} MiB limit",
            len >> 20,
            limits.max_file_bytes >> 20
        ));
    }
    let mut bytes = Vec::with_capacity(len as usize);
    // `take` guards against a file that grows while we read it.
    file.take(limits.max_file_bytes + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("read error: {e}"))?;
    if bytes.is_empty() {
        return Err("empty file (0 bytes)".to_owned());
    }
    Ok(bytes)
}

/// Decodes an image from memory: format sniffed from the bytes (not the
/// extension), EXIF orientation applied, first frame of animations.
pub fn decode(bytes: &[u8], limits: &DecodeLimits) -> Result<DynamicImage, String> {
    let reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| format!("read error: {e}"))?;
    let Some(format) = reader.format() else {
        return Err("not an image: the content matches no supported image format".to_owned());
    };
    // The JPEG decoder fills a cut-off file with grey instead of failing: an
    // image without its end marker is truncated, and is refused as such.
    if format == image::ImageFormat::Jpeg && !has_jpeg_end_marker(bytes) {
        return Err("truncated JPEG file (no end-of-image marker)".to_owned());
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
        return Err(format!(
            "{format_name} header claims an empty {width}×{height} image"
        ));
    }
    if width > limits.max_side || height > limits.max_side {
        return Err(too_large(width, height, limits));
    }
    if decoder.total_bytes() > limits.max_alloc {
        return Err(format!(
            "{width}×{height} image needs {} MiB decoded, more than the {} MiB limit",
            decoder.total_bytes() >> 20,
            limits.max_alloc >> 20
        ));
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

fn too_large(width: u32, height: u32, limits: &DecodeLimits) -> String {
    format!(
        "image header claims {width}×{height} pixels, larger than the {max}×{max} limit (refused before decoding)",
        max = limits.max_side
    )
}

fn describe(format: &str, err: ImageError, limits: &DecodeLimits) -> String {
    match err {
        ImageError::Limits(e) => format!(
            "{format} image exceeds the decoder's memory limits ({e}; at most {}×{} pixels and {} MiB)",
            limits.max_side,
            limits.max_side,
            limits.max_alloc >> 20
        ),
        ImageError::Unsupported(e) => format!("{format} variant not supported: {e}"),
        ImageError::IoError(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            format!("truncated {format} file (ends before the image data does)")
        }
        ImageError::IoError(e) => format!("truncated or unreadable {format} file: {e}"),
        ImageError::Decoding(e) => {
            let text = e.to_string();
            if text.to_ascii_lowercase().contains("eof")
                || text.to_ascii_lowercase().contains("end of")
                || text.to_ascii_lowercase().contains("truncat")
            {
                format!("truncated {format} file: {text}")
            } else {
                format!("corrupt {format} file: {text}")
            }
        }
        other => format!("cannot decode {format} file: {other}"),
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
    fn sixteen_bit_grayscale_decodes() {
        let img = DynamicImage::ImageLuma16(ImageBuffer::from_pixel(4, 4, Luma([40_000u16])));
        let decoded = decode(&png_bytes(&img), &DecodeLimits::default()).unwrap();
        assert_eq!(decoded.color(), image::ColorType::L16);
    }

    #[test]
    fn text_and_noise_are_refused_with_a_reason() {
        let reason = decode(b"hello, I am text", &DecodeLimits::default()).unwrap_err();
        assert!(reason.starts_with("not an image"), "{reason}");
    }

    #[test]
    fn truncated_png_is_refused_with_a_reason() {
        let img = DynamicImage::ImageRgb8(ImageBuffer::from_fn(64, 64, |x, y| {
            Rgb([(x * 4) as u8, (y * 4) as u8, ((x ^ y) * 4) as u8])
        }));
        let bytes = png_bytes(&img);
        let reason = decode(&bytes[..bytes.len() / 2], &DecodeLimits::default()).unwrap_err();
        assert!(reason.contains("PNG"), "{reason}");
    }

    #[test]
    fn huge_header_is_refused_before_allocating() {
        let reason =
            decode(&huge_png_header(60_000, 60_000), &DecodeLimits::default()).unwrap_err();
        assert!(reason.contains("60000×60000"), "{reason}");
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
