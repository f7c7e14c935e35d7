//! The library pipeline on real MNIST digits, hostile files and planted
//! duplicates: quality, reproducibility, tiny inputs, cancellation, the cache.

use std::collections::HashMap;

use embedscope::analyze::DuplicateGroup;
use embedscope::pipeline::analyze;
use embedscope::progress::{CancelToken, NoProgress, is_cancelled};
use embedscope::reduce::ReducerKind;

use crate::support::*;

#[test]
fn mnist_subset_umap_quality() {
    let (images, accuracy, trust) = umap_quality(&mnist_2k());
    assert_eq!(images, 2000);
    // Measured 0.905 / 0.981. 2,000 digits hold less structure than 10,000:
    // umap-learn scores 0.904 / 0.979 on the same vectors. The 10k test below
    // holds the 0.93 / 0.96 bar.
    assert!(accuracy >= 0.88, "10-NN accuracy {accuracy}");
    assert!(trust >= 0.96, "trustworthiness {trust}");
}

/// The product's quality bar on the full 10,000 digits. Needs the shared
/// dataset next to the repository, so it is opt-in; CI runs it.
#[test]
#[ignore = "needs ../shared/datasets/mnist-10k: cargo test -- --ignored"]
fn mnist_10k_umap_quality() {
    let dir = repo().join("../shared/datasets/mnist-10k");
    assert!(
        dir.is_dir(),
        "{} is missing: this test needs the 10,000 MNIST digits there",
        dir.display()
    );
    let (images, accuracy, trust) = umap_quality(&dir);
    assert_eq!(images, 10_000);
    assert!(accuracy >= 0.93, "10-NN accuracy {accuracy}");
    assert!(trust >= 0.96, "trustworthiness {trust}");
}

#[test]
fn seeded_runs_are_reproducible_for_every_reducer() {
    let data = tempfile::tempdir().unwrap();
    copy_subset(30, data.path());
    let cache = tempfile::tempdir().unwrap();
    for reducer in [ReducerKind::Umap, ReducerKind::Tsne, ReducerKind::Pca] {
        let mut opts = options(reducer, cache.path());
        let first = analyze(data.path(), &opts, &NoProgress, &CancelToken::new()).unwrap();
        let second = analyze(data.path(), &opts, &NoProgress, &CancelToken::new()).unwrap();
        assert_eq!(first.layout.used, reducer);
        assert_eq!(
            first.layout.points, second.layout.points,
            "{reducer:?} differs between runs"
        );
        assert_eq!(first.clusters.labels, second.clusters.labels);
        opts.seed += 1;
        if reducer == ReducerKind::Umap {
            let other = analyze(data.path(), &opts, &NoProgress, &CancelToken::new()).unwrap();
            assert_ne!(first.layout.points, other.layout.points, "the seed is used");
        }
    }
}

#[test]
fn tiny_folders_get_a_layout_not_a_panic() {
    let files = mnist_files(1);
    let cache = tempfile::tempdir().unwrap();
    for n in [0usize, 1, 2, 3, 5, 9] {
        let data = tempfile::tempdir().unwrap();
        for (i, (_, path)) in files.iter().take(n).enumerate() {
            std::fs::copy(path, data.path().join(format!("{i}.png"))).unwrap();
        }
        for reducer in [ReducerKind::Umap, ReducerKind::Tsne, ReducerKind::Pca] {
            let a = analyze(
                data.path(),
                &options(reducer, cache.path()),
                &NoProgress,
                &CancelToken::new(),
            )
            .unwrap_or_else(|e| panic!("{n} images, {reducer:?}: {e:#}"));
            assert_eq!(a.layout.points.len(), n);
            assert!(
                a.layout.points.iter().flatten().all(|x| x.is_finite()),
                "{n} {reducer:?}"
            );
            assert_eq!(a.clusters.labels.len(), n);
            if n >= 2 && reducer != ReducerKind::Pca {
                // Distinct digits must not collapse onto one point.
                assert_ne!(a.layout.points[0], a.layout.points[1], "{n} {reducer:?}");
            }
        }
    }
}

#[test]
fn cancelling_stops_the_pipeline() {
    let cancel = CancelToken::new();
    cancel.cancel();
    let cache = tempfile::tempdir().unwrap();
    let err = analyze(
        &mnist_2k(),
        &options(ReducerKind::Umap, cache.path()),
        &NoProgress,
        &cancel,
    )
    .unwrap_err();
    assert!(is_cancelled(&err), "{err:#}");
}

#[test]
fn hostile_folder_yields_every_good_image_and_a_reason_for_every_bad_one() {
    let fixtures = repo().join("tests/fixtures/images");
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures.join("manifest.json")).unwrap())
            .unwrap();
    let data = tempfile::tempdir().unwrap();
    let root = data.path();
    let mut expect_ok: HashMap<String, (u64, u64)> = HashMap::new();
    let mut expect_skip = Vec::new();
    let mut either = Vec::new();
    for file in manifest["files"].as_array().unwrap() {
        let name = file["name"].as_str().unwrap().to_owned();
        std::fs::copy(fixtures.join(&name), root.join(&name)).unwrap();
        match file["expected"].as_str().unwrap() {
            "ok" => {
                expect_ok.insert(
                    name,
                    (
                        file["width"].as_u64().unwrap(),
                        file["height"].as_u64().unwrap(),
                    ),
                );
            }
            "skip" => expect_skip.push(name),
            _ => either.push(name),
        }
    }
    // Unicode names, nested folders, a non-image, a hidden file, links.
    std::fs::create_dir_all(root.join("sous-dossier/日本")).unwrap();
    std::fs::copy(
        fixtures.join("gray.png"),
        root.join("sous-dossier/日本/数字 ü 🙂.png"),
    )
    .unwrap();
    expect_ok.insert("sous-dossier/日本/数字 ü 🙂.png".into(), (48, 40));
    std::fs::write(root.join("notes.txt"), "not an image").unwrap();
    std::fs::copy(fixtures.join("gray.png"), root.join(".hidden.png")).unwrap();
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(root, root.join("sous-dossier/loop")).unwrap();
        std::os::unix::fs::symlink(root.join("gone.png"), root.join("dangling.png")).unwrap();
        expect_skip.push("dangling.png".into());
    }
    expect_skip.push("notes.txt".into());
    let before = snapshot(root);

    let cache = tempfile::tempdir().unwrap();
    let a = analyze(
        root,
        &options(ReducerKind::Umap, cache.path()),
        &NoProgress,
        &CancelToken::new(),
    )
    .unwrap();

    let read: HashMap<&str, (u64, u64)> = a
        .folder
        .images
        .iter()
        .map(|r| (r.relative.as_str(), (r.width as u64, r.height as u64)))
        .collect();
    let skipped: HashMap<&str, String> = a
        .folder
        .skipped
        .iter()
        .map(|s| (s.path.as_str(), s.reason.to_string()))
        .collect();
    for (name, size) in &expect_ok {
        assert_eq!(
            read.get(name.as_str()),
            Some(size),
            "{name} should be read at {size:?}; skipped: {:?}",
            skipped.get(name.as_str())
        );
    }
    for name in &expect_skip {
        let reason = skipped
            .get(name.as_str())
            .unwrap_or_else(|| panic!("{name} should be skipped"));
        assert!(!reason.is_empty());
        println!("skipped {name}: {reason}");
    }
    for name in &either {
        assert!(
            read.contains_key(name.as_str()) || skipped.contains_key(name.as_str()),
            "{name} vanished"
        );
    }
    assert!(
        skipped["huge_header.png"].contains("60000×60000"),
        "{}",
        skipped["huge_header.png"]
    );
    assert!(skipped["empty.jpg"].contains("empty"));
    assert!(
        skipped["truncated.jpg"].contains("truncated"),
        "{}",
        skipped["truncated.jpg"]
    );
    assert!(skipped["not_really.jpg"].contains("not an image"));
    assert!(!read.contains_key(".hidden.png"));
    assert_eq!(
        read.len() + skipped.len(),
        expect_ok.len() + expect_skip.len() + either.len()
    );
    assert!(
        a.folder.warnings.iter().any(|w| w.contains("loop")),
        "{:?}",
        a.folder.warnings
    );
    // Bounded memory: trusting the 60000×60000 header alone would take 14 GB.
    if let Some(peak) = peak_rss_bytes() {
        assert!(peak < 3 << 30, "peak memory {} MiB", peak >> 20);
    }
    assert_eq!(before, snapshot(root), "the dataset folder was modified");
}

#[test]
fn planted_duplicates_are_found_with_precision_one() {
    let data = tempfile::tempdir().unwrap();
    let root = data.path();
    // 40 distinct digits, then copies of 6 of them.
    let files = mnist_files(4);
    let mut family: HashMap<String, usize> = HashMap::new();
    for (i, (label, path)) in files.iter().enumerate() {
        let name = format!("{label}_{i:03}.png");
        std::fs::copy(path, root.join(&name)).unwrap();
        family.insert(name, i);
    }
    let planted_from = [0usize, 5, 14, 22, 31, 39];
    for &i in &planted_from {
        let stem = format!("{}_{i:03}", files[i].0);
        for name in planted_copies(&files[i].1, root, &stem) {
            family.insert(name, i);
        }
    }
    let cache = tempfile::tempdir().unwrap();
    let a = analyze(
        root,
        &options(ReducerKind::Pca, cache.path()),
        &NoProgress,
        &CancelToken::new(),
    )
    .unwrap();
    let path = |i: usize| a.folder.images[i].relative.clone();
    let groups: &[DuplicateGroup] = &a.duplicates;
    for g in groups {
        let families: std::collections::HashSet<usize> =
            g.members.iter().map(|&m| family[&path(m)]).collect();
        assert_eq!(
            families.len(),
            1,
            "false duplicate group: {:?}",
            g.members.iter().map(|&m| path(m)).collect::<Vec<_>>()
        );
    }
    for &i in &planted_from {
        let name = format!("{}_{i:03}.png", files[i].0);
        let original = a
            .folder
            .images
            .iter()
            .position(|r| r.relative == name)
            .unwrap();
        let group = a.duplicate_labels[original];
        assert!(group >= 0, "planted family {i} not found");
        let members: Vec<String> = groups[group as usize]
            .members
            .iter()
            .map(|&m| path(m))
            .collect();
        println!(
            "family {i}: {members:?}, weakest cosine {}",
            groups[group as usize].weakest.cosine
        );
        assert_eq!(
            members.len(),
            5,
            "all four copies of {i} found: {members:?}"
        );
    }
    assert_eq!(groups.len(), planted_from.len());
}

#[test]
fn a_corrupt_cache_is_moved_aside_and_the_run_succeeds() {
    let data = tempfile::tempdir().unwrap();
    copy_subset(2, data.path());
    let cache = tempfile::tempdir().unwrap();
    std::fs::write(cache.path().join("cache.sqlite"), vec![0x42u8; 8192]).unwrap();
    let a = analyze(
        data.path(),
        &options(ReducerKind::Pca, cache.path()),
        &NoProgress,
        &CancelToken::new(),
    )
    .unwrap();
    assert_eq!(a.folder.images.len(), 20);
    assert!(
        a.folder.warnings.iter().any(|w| w.contains("damaged")),
        "{:?}",
        a.folder.warnings
    );
}

#[test]
fn every_stage_reports_start_and_finish_in_order() {
    use embedscope::progress::{ProgressEvent, Stage};
    use std::sync::Mutex;
    let data = tempfile::tempdir().unwrap();
    copy_subset(5, data.path());
    let cache = tempfile::tempdir().unwrap();
    let events = Mutex::new(Vec::new());
    let sink = |e: ProgressEvent| events.lock().unwrap().push(e);
    let a = analyze(
        data.path(),
        &options(ReducerKind::Umap, cache.path()),
        &sink,
        &CancelToken::new(),
    )
    .unwrap();
    let events = events.into_inner().unwrap();
    let finished: Vec<Stage> = events
        .iter()
        .filter_map(|e| match e {
            ProgressEvent::Finished { stage, .. } => Some(*stage),
            _ => None,
        })
        .collect();
    assert_eq!(
        finished,
        Stage::ALL.to_vec(),
        "each stage finishes once, in pipeline order"
    );
    for stage in Stage::ALL {
        let started = events
            .iter()
            .position(|e| matches!(e, ProgressEvent::Started { stage: s, .. } if *s == stage))
            .unwrap_or_else(|| panic!("{stage:?} never started"));
        let ended = events
            .iter()
            .position(|e| matches!(e, ProgressEvent::Finished { stage: s, .. } if *s == stage))
            .unwrap();
        assert!(started < ended, "{stage:?}");
        assert!(a.timings.contains_key(stage.key()));
    }
    // A viewer gets points before the optimiser runs: the PCA preview comes
    // while the layout stage is running, one point per image.
    let layout_started = events
        .iter()
        .position(|e| {
            matches!(
                e,
                ProgressEvent::Started {
                    stage: Stage::Layout,
                    ..
                }
            )
        })
        .unwrap();
    let layout_finished = events
        .iter()
        .position(|e| {
            matches!(
                e,
                ProgressEvent::Finished {
                    stage: Stage::Layout,
                    ..
                }
            )
        })
        .unwrap();
    let preview = events
        .iter()
        .position(|e| matches!(e, ProgressEvent::LayoutPreview(_)))
        .expect("UMAP sends its PCA initialisation as a preview");
    assert!(layout_started < preview && preview < layout_finished);
    if let ProgressEvent::LayoutPreview(points) = &events[preview] {
        assert_eq!(points.len(), a.folder.images.len());
    }
    // The layout reports its epochs, so a progress bar can move.
    assert!(
        events.iter().any(
            |e| matches!(e, ProgressEvent::Advanced { stage: Stage::Layout, done } if *done > 0)
        )
    );
}

/// Thumbnails go into the store once per image (also for images whose
/// embedding was cached), and a second run decodes nothing; the second open
/// also reuses the whole analysis.
#[test]
fn thumbnails_are_stored_once_and_a_second_run_reuses_everything() {
    let data = tempfile::tempdir().unwrap();
    copy_subset(2, data.path());
    let cache = tempfile::tempdir().unwrap();
    let mut opts = options(ReducerKind::Pca, cache.path());
    // Off by default (the CLI needs none).
    let plain = analyze(data.path(), &opts, &NoProgress, &CancelToken::new()).unwrap();
    assert!(plain.folder.thumbnail_store.is_none());
    assert!(!plain.reused);
    opts.thumbnail_size = Some(16);
    let cached = analyze(data.path(), &opts, &NoProgress, &CancelToken::new()).unwrap();
    assert_eq!(cached.folder.cache.misses, 0, "second run reads the cache");
    assert!(
        cached.reused,
        "same embeddings, same parameters: the analysis is reused"
    );
    assert_eq!(cached.layout.points, plain.layout.points);
    assert_eq!(cached.clusters.labels, plain.clusters.labels);
    let store = embedscope::cache::thumbnails::ThumbnailStore::open(
        cached.folder.thumbnail_store.as_ref().unwrap(),
    )
    .unwrap();
    let hashes: Vec<_> = cached.folder.images.iter().map(|r| r.hash).collect();
    let thumbnails = store.get_many(&hashes, 16).unwrap();
    assert_eq!(thumbnails.len(), cached.folder.images.len());
    for t in thumbnails.values() {
        // MNIST digits are 28×28: square thumbnails of the requested size.
        assert_eq!((t.width, t.height), (16, 16));
        assert_eq!(t.rgba.len(), 16 * 16 * 4);
        assert!(t.rgba.iter().any(|&v| v > 128), "a digit has bright pixels");
    }
}
