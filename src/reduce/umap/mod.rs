//! UMAP: the fuzzy simplicial set (graph) comes from `umap-rs`; the layout is
//! optimised here with umap-learn's SGD schedule (attractive samples along graph
//! edges, negative sampling, linearly decaying learning rate), in parallel yet
//! deterministic (see [`sgd`]). `umap-rs`'s own optimiser draws from the thread
//! RNG and runs Hogwild, so a seeded run could not be reproduced with it.

use ndarray::ArrayView2;
use serde::Serialize;
use umap_rs::{GraphParams, ManifoldParams, OptimizationParams, Umap, UmapConfig};

use crate::Embeddings;
use crate::geometry::Point3;
use crate::neighbours::KnnGraph;
use crate::progress::{CancelToken, ProgressEvent, ProgressSink, Stage};
use crate::rng::Rng;

mod sgd;

/// Below this, UMAP's neighbourhood graph means little; PCA is used instead.
pub const MIN_POINTS: usize = 4;

#[derive(Clone, Debug, Serialize)]
pub struct UmapParams {
    /// Neighbourhood size, the point itself included (as in umap-learn).
    pub n_neighbors: usize,
    pub min_dist: f32,
    pub spread: f32,
    /// `None`: 500 up to 10,000 points, 200 above (umap-learn's rule).
    pub n_epochs: Option<usize>,
    pub learning_rate: f32,
    pub negative_sample_rate: usize,
    pub repulsion_strength: f32,
}

impl Default for UmapParams {
    fn default() -> Self {
        Self {
            n_neighbors: 15,
            min_dist: 0.1,
            spread: 1.0,
            n_epochs: None,
            learning_rate: 1.0,
            negative_sample_rate: 5,
            repulsion_strength: 1.0,
        }
    }
}

pub fn umap(
    embeddings: &Embeddings,
    knn: &KnnGraph,
    init: &[Point3],
    params: &UmapParams,
    seed: u64,
    progress: &dyn ProgressSink,
    cancel: &CancelToken,
) -> anyhow::Result<Vec<Point3>> {
    let n = embeddings.n;
    // umap-rs needs more samples than neighbours (the point itself included).
    let n_neighbors = params.n_neighbors.min(n - 1).max(2);
    let n_epochs = params
        .n_epochs
        .unwrap_or(if n <= 10_000 { 500 } else { 200 })
        .max(1);

    // umap-learn's kNN lists start with the point itself at distance 0.
    let others = n_neighbors - 1;
    anyhow::ensure!(
        knn.k >= others.min(n - 1),
        "internal: the neighbour graph holds {} neighbours, UMAP needs {others}",
        knn.k
    );
    let mut knn_indices = Vec::with_capacity(n * n_neighbors);
    let mut knn_dists = Vec::with_capacity(n * n_neighbors);
    for i in 0..n {
        knn_indices.push(i as u32);
        knn_dists.push(0.0);
        for slot in 0..others {
            if slot < knn.k {
                knn_indices.push(knn.indices[i * knn.k + slot]);
                knn_dists.push(knn.distances[i * knn.k + slot]);
            } else {
                knn_indices.push(u32::MAX);
                knn_dists.push(f32::INFINITY);
            }
        }
    }
    let config = UmapConfig {
        n_components: 3,
        manifold: ManifoldParams {
            min_dist: params.min_dist,
            spread: params.spread,
            ..Default::default()
        },
        graph: GraphParams {
            n_neighbors,
            ..Default::default()
        },
        optimization: OptimizationParams {
            n_epochs: Some(n_epochs),
            learning_rate: params.learning_rate,
            negative_sample_rate: params.negative_sample_rate,
            repulsion_strength: params.repulsion_strength,
        },
    };
    let data = ArrayView2::from_shape((n, embeddings.dim), &embeddings.data)?;
    let indices = ArrayView2::from_shape((n, n_neighbors), &knn_indices)?;
    let dists = ArrayView2::from_shape((n, n_neighbors), &knn_dists)?;
    let manifold = Umap::new(config).learn_manifold(data, indices, dists);
    cancel.check()?;
    let (a, b) = manifold.curve_params();

    // Edges of the symmetric graph, weak ones dropped as umap-learn does.
    let graph = manifold.graph();
    let max_weight = graph.data().iter().copied().fold(0.0f32, f32::max);
    let mut edges = Vec::new();
    for (row, vec) in graph.outer_iterator().enumerate() {
        for (col, &w) in vec.iter() {
            if w > 0.0 && w >= max_weight / n_epochs as f32 {
                edges.push((row as u32, col as u32, w));
            }
        }
    }

    let mut rng = Rng::new(seed);
    let mut embedding = initial_layout(init, &mut rng);
    let mut optimiser = sgd::Sgd::new(
        &edges,
        n,
        max_weight,
        sgd::SgdParams {
            a,
            b,
            gamma: params.repulsion_strength,
            initial_alpha: params.learning_rate,
            negative_sample_rate: params.negative_sample_rate,
            n_epochs,
        },
    );
    progress.event(ProgressEvent::Started {
        stage: Stage::Layout,
        total: Some(n_epochs as u64),
    });
    for epoch in 0..n_epochs {
        super::epoch_checkpoint(epoch, 5, progress, cancel)?;
        optimiser.epoch(&mut embedding, epoch, seed);
    }
    progress.event(ProgressEvent::Advanced {
        stage: Stage::Layout,
        done: n_epochs as u64,
    });
    Ok(embedding)
}

/// umap-learn's treatment of a supplied initialisation: scaled so the largest
/// coordinate is 10, a little noise to break ties, then each axis mapped to [0, 10].
fn initial_layout(init: &[Point3], rng: &mut Rng) -> Vec<Point3> {
    let largest = init
        .iter()
        .flatten()
        .fold(0.0f32, |m, x| m.max(x.abs()))
        .max(1e-12);
    let mut layout: Vec<Point3> = init
        .iter()
        .map(|p| p.map(|x| x * 10.0 / largest + 1e-4 * rng.normal_f32()))
        .collect();
    for axis in 0..3 {
        let (lo, hi) = layout
            .iter()
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), p| {
                (lo.min(p[axis]), hi.max(p[axis]))
            });
        let span = (hi - lo).max(1e-12);
        for p in &mut layout {
            p[axis] = 10.0 * (p[axis] - lo) / span;
        }
    }
    layout
}
