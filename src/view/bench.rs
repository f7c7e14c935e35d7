//! Frame-time benchmark (`embedscope view --bench-points N`): a synthetic map
//! of N points in clusters, with thumbnails, is shown without running the
//! pipeline; once it is on screen the camera turns a little every frame
//! (so the billboards are re-chosen every frame, as when the user orbits)
//! and the frame times are printed as JSON. Not a test: numbers depend on
//! the machine. With `--bench-frames 0` the map is only shown, still (with
//! `--screenshot`: pictures of the density at any size).

use std::sync::Arc;

use bevy::ecs::system::SystemParam;
use bevy::prelude::*;

use super::camera::{HomeView, Orbit, OrbitGoal, ViewCamera};
use super::layout::Positions;
use super::loading::Dataset;
use super::state::ViewState;
use super::thumbnails::{Billboards, THUMBNAIL_SIZE, ThumbnailsReady};
use crate::Embeddings;
use crate::analyze::Clusters;
use crate::decode::ContentHash;
use crate::decode::Thumbnail;
use crate::neighbours::{KnnGraph, KnnMethod};
use crate::pipeline::{Analysis, AnalyzeOptions, EmbeddedFolder, ImageRecord};
use crate::reduce::{Layout, ReducerKind};
use crate::rng::Rng;

/// Frames skipped before timing (pipeline compilation, first uploads, the
/// camera moving in).
const WARM_UP_FRAMES: usize = 10;
/// Distinct synthetic thumbnails at most (see [`synthetic_analysis`]).
const DISTINCT_THUMBNAILS: usize = 100_000;

#[derive(Clone, Copy, Debug)]
pub struct BenchOptions {
    pub points: usize,
    pub frames: usize,
    pub thumbnails: bool,
}

pub struct BenchPlugin(pub BenchOptions);

impl Plugin for BenchPlugin {
    fn build(&self, app: &mut App) {
        let o = self.0;
        app.insert_resource(Dataset::shown(
            "synthetic".into(),
            Arc::new(synthetic_analysis(o.points, o.thumbnails, 7)),
        ))
        .insert_resource(Bench {
            options: o,
            seen: 0,
            times: Vec::new(),
            billboards: 0,
        })
        .add_systems(Startup, |mut state: ResMut<ViewState>| {
            state.show_thumbnails = true;
        })
        .add_systems(Last, time_frames);
    }
}

#[derive(Resource)]
struct Bench {
    options: BenchOptions,
    seen: usize,
    times: Vec<f64>,
    billboards: usize,
}

/// What the frame timer reads besides its own state.
#[derive(SystemParam)]
struct Shown<'w> {
    positions: Res<'w, Positions>,
    ready: Res<'w, ThumbnailsReady>,
    billboards: Res<'w, Billboards>,
    home: Res<'w, HomeView>,
}

fn time_frames(
    time: Res<Time<Real>>,
    mut bench: ResMut<Bench>,
    shown: Shown,
    mut camera: Single<(&Orbit, &mut OrbitGoal), With<ViewCamera>>,
    mut exit: MessageWriter<AppExit>,
) {
    // No frames to time: the map is only shown (e.g. for --screenshot).
    if bench.options.frames == 0 {
        return;
    }
    let Shown {
        positions,
        ready,
        billboards,
        home,
    } = shown;
    let (orbit, goal) = &mut *camera;
    if !(positions.settled() && ready.0 && !positions.current.is_empty()) {
        return;
    }
    if bench.seen == 0 {
        // Close enough that the nearest points are drawn as images.
        goal.0.distance = home.0.distance * 0.25;
    }
    bench.seen += 1;
    if bench.seen > WARM_UP_FRAMES {
        bench.times.push(time.delta_secs_f64() * 1000.0);
    }
    // Keep turning, as a user orbiting would.
    goal.0 = Orbit {
        yaw: orbit.yaw + 0.01,
        ..goal.0
    };
    bench.billboards = bench.billboards.max(billboards.shown.len());
    if bench.times.len() >= bench.options.frames {
        let mut t = bench.times.clone();
        t.sort_by(f64::total_cmp);
        let mean = t.iter().sum::<f64>() / t.len() as f64;
        println!(
            "{}",
            serde_json::json!({
                "points": bench.options.points,
                "thumbnails": bench.options.thumbnails,
                "frames": t.len(),
                "mean_ms": mean,
                "median_ms": t[t.len() / 2],
                "p95_ms": t[(t.len() * 95 / 100).min(t.len() - 1)],
                "fps": 1000.0 / mean,
                "billboards": bench.billboards,
            })
        );
        exit.write(AppExit::Success);
    }
}

/// `n` points in 12 Gaussian clusters, with small coloured thumbnails.
pub fn synthetic_analysis(n: usize, thumbnails: bool, seed: u64) -> Analysis {
    let mut rng = Rng::new(seed);
    let clusters = 12;
    let centres: Vec<[f32; 3]> = (0..clusters)
        .map(|_| {
            [
                rng.normal_f32() * 6.0,
                rng.normal_f32() * 6.0,
                rng.normal_f32() * 6.0,
            ]
        })
        .collect();
    let mut points = Vec::with_capacity(n);
    let mut labels = Vec::with_capacity(n);
    let mut members = vec![Vec::new(); clusters];
    for i in 0..n {
        let c = i % clusters;
        let p = centres[c];
        points.push([
            p[0] + rng.normal_f32(),
            p[1] + rng.normal_f32(),
            p[2] + rng.normal_f32(),
        ]);
        labels.push(c as i32);
        members[c].push(i);
    }
    // Up to DISTINCT_THUMBNAILS pictures, repeated beyond: a million
    // thumbnails would take longer to make than the benchmark runs, and the
    // viewer loads only the few hundred in view either way.
    let distinct = n.clamp(1, DISTINCT_THUMBNAILS);
    let hash_of = |i: usize| ContentHash::of(&((i % distinct) as u64).to_le_bytes());
    let images: Vec<ImageRecord> = (0..n)
        .map(|i| ImageRecord {
            relative: format!("c{}/{i:06}.png", i % clusters),
            hash: hash_of(i),
            width: THUMBNAIL_SIZE,
            height: THUMBNAIL_SIZE,
        })
        .collect();
    // The thumbnails go where the viewer reads them from: a store in the
    // temporary folder, made once per size and reused by later runs.
    let store_path = thumbnails.then(|| {
        std::env::temp_dir().join(format!("embedscope-bench-thumbnails-{distinct}.sqlite"))
    });
    if let Some(path) = &store_path {
        let mut store = crate::cache::thumbnails::ThumbnailStore::open(path)
            .expect("a thumbnail store in the temporary folder");
        let ends = [hash_of(0), hash_of(distinct - 1)];
        let complete = store
            .present(&ends, THUMBNAIL_SIZE)
            .is_ok_and(|found| found.len() == ends.len());
        if !complete {
            for start in (0..distinct).step_by(4096) {
                let made: Vec<(ContentHash, Thumbnail)> = (start..(start + 4096).min(distinct))
                    .map(|i| (hash_of(i), synthetic_thumbnail(i, i % clusters)))
                    .collect();
                let refs: Vec<(ContentHash, &Thumbnail)> =
                    made.iter().map(|(h, t)| (*h, t)).collect();
                store
                    .put_many(&refs, THUMBNAIL_SIZE)
                    .expect("writing synthetic thumbnails");
            }
        }
    }
    let options = AnalyzeOptions::default();
    Analysis {
        folder: EmbeddedFolder {
            root: "synthetic".into(),
            source: "synthetic".into(),
            source_kind: crate::source::SourceKind::Unknown,
            images,
            embeddings: Embeddings::new(n, 1, vec![1.0; n]),
            looks: Vec::new(),
            labels: Default::default(),
            thumbnail_store: store_path,
            embedder_id: "synthetic".into(),
            embedder_description: "synthetic points (benchmark)".into(),
            default_duplicate_threshold: 0.98,
            skipped: Vec::new(),
            warnings: Vec::new(),
            hidden: 0,
            cache: Default::default(),
            timings: Default::default(),
            metadata: Vec::new(),
            external: None,
        },
        knn: KnnGraph {
            n,
            k: 0,
            indices: Vec::new(),
            distances: Vec::new(),
            method: KnnMethod::Exact,
        },
        layout: Layout {
            points,
            requested: ReducerKind::Umap,
            used: ReducerKind::Umap,
            note: None,
        },
        clusters: Clusters {
            labels,
            members,
            min_cluster_size: 5,
        },
        duplicate_labels: vec![-1; n],
        duplicates: Vec::new(),
        duplicate_threshold: 0.98,
        perceptual: crate::analyze::PerceptualEvidence::none("synthetic points (benchmark)"),
        curation: crate::analyze::Curation {
            flags: vec![Vec::new(); n],
            ..Default::default()
        },
        options,
        timings: Default::default(),
        reused: false,
    }
}

fn synthetic_thumbnail(i: usize, cluster: usize) -> Thumbnail {
    let s = THUMBNAIL_SIZE as usize;
    let colour = super::colour::palette(cluster as i32).to_srgba();
    let base = [colour.red, colour.green, colour.blue].map(|v| (v * 255.0) as u8);
    let mut rgba = Vec::with_capacity(s * s * 4);
    for y in 0..s {
        for x in 0..s {
            // A stripe pattern that differs per image, to see the atlas works.
            let on = ((x + y + i) / 8).is_multiple_of(2);
            let v = if on { base } else { base.map(|c| c / 3) };
            rgba.extend_from_slice(&[v[0], v[1], v[2], 255]);
        }
    }
    Thumbnail {
        width: THUMBNAIL_SIZE,
        height: THUMBNAIL_SIZE,
        rgba,
    }
}
