//! How images look, end to end: photo copies the pixel cosine misses are
//! grouped by their perceptual evidence with the reason given, quality flags
//! reach the curation, and a cached run (also one from a cache written before
//! the looks were kept) has the same evidence.

use std::path::Path;

use embedscope::analyze::{DuplicateReason, QualityFlag};
use embedscope::pipeline::analyze;
use embedscope::progress::{CancelToken, NoProgress};
use embedscope::reduce::ReducerKind;
use embedscope::rng::Rng;
use image::imageops::{self, FilterType};
use image::{Rgb, RgbImage};

use crate::support::*;

/// A textured "photo": smooth blobs plus seeded value noise on a 10-px grid,
/// detail that a 32×32 grey square still shows, as a real photo's would.
fn photo(w: u32, h: u32, seed: u64) -> RgbImage {
    let mut rng = Rng::new(seed);
    let blobs: Vec<(f32, f32, f32, f32)> = (0..6)
        .map(|_| {
            (
                rng.unit_f32(),
                rng.unit_f32(),
                0.05 + 0.2 * rng.unit_f32(),
                200.0 * rng.unit_f32() - 100.0,
            )
        })
        .collect();
    let (gw, gh) = (w / 10 + 2, h / 10 + 2);
    let grid: Vec<f32> = (0..gw * gh).map(|_| 60.0 * rng.unit_f32()).collect();
    RgbImage::from_fn(w, h, |x, y| {
        let (fx, fy) = (x as f32 / w as f32, y as f32 / h as f32);
        let mut v = 100.0;
        for &(cx, cy, r, amp) in &blobs {
            v += amp * (-((fx - cx).powi(2) + (fy - cy).powi(2)) / (r * r)).exp();
        }
        let (gx, gy) = (x as f32 / 10.0, y as f32 / 10.0);
        let (x0, y0) = (gx as u32, gy as u32);
        let (tx, ty) = (gx.fract(), gy.fract());
        let g = |i: u32, j: u32| grid[(j * gw + i) as usize];
        let top = g(x0, y0) * (1.0 - tx) + g(x0 + 1, y0) * tx;
        let bottom = g(x0, y0 + 1) * (1.0 - tx) + g(x0 + 1, y0 + 1) * tx;
        let v = (v + top * (1.0 - ty) + bottom * ty).clamp(0.0, 255.0) as u8;
        Rgb([v, v.saturating_sub(10), v / 2])
    })
}

/// 40 distinct photos, a 4% crop of the first, and a dark photo of its own.
fn planted_folder(root: &Path) {
    let photos: Vec<RgbImage> = (0..40).map(|s| photo(200, 150, 100 + s)).collect();
    for (i, p) in photos.iter().enumerate() {
        p.save(root.join(format!("p{i:02}.png"))).unwrap();
    }
    imageops::crop_imm(&photos[0], 4, 3, 192, 144)
        .to_image()
        .save(root.join("p00_crop.png"))
        .unwrap();
    imageops::resize(&photos[1], 100, 75, FilterType::Lanczos3)
        .save(root.join("p01_half.png"))
        .unwrap();
    let dark = photo(200, 150, 999);
    RgbImage::from_fn(200, 150, |x, y| {
        Rgb(dark.get_pixel(x, y).0.map(|c| (f32::from(c) * 0.12) as u8))
    })
    .save(root.join("z_dark.png"))
    .unwrap();
}

#[test]
fn photo_crops_are_grouped_by_their_looks_and_a_cached_run_keeps_them() {
    let data = tempfile::tempdir().unwrap();
    planted_folder(data.path());
    let cache = tempfile::tempdir().unwrap();
    let opts = options(ReducerKind::Pca, cache.path());
    let a = analyze(data.path(), &opts, &NoProgress, &CancelToken::new()).unwrap();
    let index = |name: &str| {
        a.folder
            .images
            .iter()
            .position(|r| r.relative == name)
            .unwrap()
    };
    assert!(a.perceptual.gate.open, "{:?}", a.perceptual.gate);
    let members: Vec<Vec<&str>> = a
        .duplicates
        .iter()
        .map(|g| {
            g.members
                .iter()
                .map(|&m| a.folder.images[m].relative.as_str())
                .collect()
        })
        .collect();
    assert!(
        members.contains(&vec!["p00.png", "p00_crop.png"]),
        "{members:?}"
    );
    assert!(
        members.contains(&vec!["p01.png", "p01_half.png"]),
        "{members:?}"
    );
    assert_eq!(members.len(), 2, "no false group: {members:?}");
    let crop = &a.duplicates[a.duplicate_labels[index("p00.png")] as usize].pairs[0];
    // A crop moves every pixel: the cosine misses it, the looks do not.
    assert!(crop.cosine < a.duplicate_threshold, "{crop:?}");
    assert!(
        matches!(
            crop.reason,
            DuplicateReason::HashDistance { .. } | DuplicateReason::AlignedDetail { .. }
        ),
        "{crop:?}"
    );
    // Quality flags: the dark photo, and nothing among the clean ones.
    let dark = index("z_dark.png");
    assert!(
        a.curation.flags[dark].contains(&QualityFlag::Dark),
        "{:?}",
        a.curation.flags[dark]
    );
    let flagged: Vec<&str> = (0..a.folder.images.len())
        .filter(|&i| i != dark && !a.curation.flags[i].is_empty())
        .map(|i| a.folder.images[i].relative.as_str())
        .collect();
    assert!(flagged.is_empty(), "{flagged:?}");
    let report = embedscope::output::build_report(&a);
    assert_eq!(report["issues"]["quality"]["dark"]["count"], 1);
    assert_eq!(
        report["issues"]["quality"]["dark"]["images"][0],
        "z_dark.png"
    );
    let reasons: Vec<&str> = report["duplicate_groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["pairs"].as_array().unwrap())
        .map(|p| p["reason"]["kind"].as_str().unwrap())
        .collect();
    assert!(
        reasons.contains(&"hash_distance") || reasons.contains(&"aligned_detail"),
        "{reasons:?}"
    );

    // Cached: nothing embedded again, the same looks, the same evidence.
    let again = analyze(data.path(), &opts, &NoProgress, &CancelToken::new()).unwrap();
    assert_eq!(again.folder.cache.misses, 0);
    assert_eq!(again.folder.looks, a.folder.looks);
    assert_eq!(again.perceptual.links, a.perceptual.links);
    assert_eq!(again.curation.flags, a.curation.flags);

    // A cache written before the looks were kept: the vectors are reused,
    // the looks made again from the pixels (and stored for the next run).
    let db = rusqlite::Connection::open(cache.path().join("cache.sqlite")).unwrap();
    db.execute("DELETE FROM looks", []).unwrap();
    drop(db);
    let old = analyze(data.path(), &opts, &NoProgress, &CancelToken::new()).unwrap();
    assert_eq!(old.folder.cache.misses, 0);
    assert_eq!(old.folder.looks, a.folder.looks);
    assert_eq!(old.perceptual.links, a.perceptual.links);
    let db = rusqlite::Connection::open(cache.path().join("cache.sqlite")).unwrap();
    let kept: i64 = db
        .query_row("SELECT count(*) FROM looks", [], |row| row.get(0))
        .unwrap();
    assert_eq!(kept as usize, a.folder.images.len());
}

#[test]
fn mnist_digits_gain_no_group_from_their_hashes() {
    // Digits crowd together in hash space (a "1" is within a few bits of
    // most other "1"s): the gate keeps the hashes out, and the groups are the
    // cosine's alone.
    let data = tempfile::tempdir().unwrap();
    copy_subset(20, data.path());
    let cache = tempfile::tempdir().unwrap();
    let a = analyze(
        data.path(),
        &options(ReducerKind::Pca, cache.path()),
        &NoProgress,
        &CancelToken::new(),
    )
    .unwrap();
    assert!(!a.perceptual.gate.open, "{:?}", a.perceptual.gate);
    assert!(a.perceptual.links.is_empty());
    for g in &a.duplicates {
        for p in &g.pairs {
            assert!(
                matches!(
                    p.reason,
                    DuplicateReason::SameBytes
                        | DuplicateReason::Cosine { .. }
                        | DuplicateReason::Chained
                ),
                "{p:?}"
            );
        }
    }
    // No quality flag fires on clean digits.
    assert!(a.curation.flags.iter().all(|f| f.is_empty()));
}

#[test]
fn embeddings_read_from_files_have_no_looks_and_rest_on_the_cosine() {
    let npy = repo().join("tests/fixtures/parquet/lone.npy");
    let cache = tempfile::tempdir().unwrap();
    let a = analyze(
        &npy,
        &options(ReducerKind::Pca, cache.path()),
        &NoProgress,
        &CancelToken::new(),
    )
    .unwrap();
    assert_eq!(a.folder.images.len(), 5);
    assert!(a.folder.looks.is_empty());
    assert!(!a.perceptual.gate.open && a.perceptual.links.is_empty());
    assert!(
        a.perceptual.gate.reason.contains("read from files"),
        "{}",
        a.perceptual.gate.reason
    );
    assert!(a.curation.flags.iter().all(|f| f.is_empty()));
    assert!(
        a.curation
            .notes
            .iter()
            .any(|n| n.contains("quality flags were skipped")),
        "{:?}",
        a.curation.notes
    );
    let report = embedscope::output::build_report(&a);
    assert_eq!(report["issues"]["quality"]["images_looked_at"], 0);
    assert_eq!(report["duplicate_evidence"]["perceptual_used"], false);
}
