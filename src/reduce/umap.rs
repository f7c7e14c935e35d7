//! UMAP: the fuzzy simplicial set (graph) comes from `umap-rs`; the layout is
//! optimised here with umap-learn's SGD schedule (attractive samples along graph
//! edges, negative sampling, linearly decaying learning rate), driven by our own
//! seeded generator so a seeded run is reproducible. `umap-rs`'s optimiser draws
//! from the thread RNG and runs Hogwild in parallel, so it cannot be.

use ndarray::ArrayView2;
use serde::Serialize;
use umap_rs::{GraphParams, ManifoldParams, OptimizationParams, Umap, UmapConfig};

use super::Point3;
use crate::Embeddings;
use crate::neighbours::KnnGraph;
use crate::progress::{CancelToken, ProgressEvent, ProgressSink, Stage};
use crate::rng::Rng;

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
    let mut optimiser = Sgd::new(&edges, max_weight, n_epochs, params, a, b);
    progress.event(ProgressEvent::Started {
        stage: Stage::Layout,
        total: Some(n_epochs as u64),
    });
    for epoch in 0..n_epochs {
        if epoch % 5 == 0 {
            cancel.check()?;
            progress.event(ProgressEvent::Advanced {
                stage: Stage::Layout,
                done: epoch as u64,
            });
        }
        optimiser.epoch(&mut embedding, epoch, &mut rng);
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

/// State of umap-learn's `optimize_layout_euclidean` with `move_other=True`.
struct Sgd<'a> {
    edges: &'a [(u32, u32, f32)],
    epochs_per_sample: Vec<f32>,
    epoch_of_next_sample: Vec<f32>,
    epochs_per_negative_sample: Vec<f32>,
    epoch_of_next_negative_sample: Vec<f32>,
    n_epochs: usize,
    initial_alpha: f32,
    gamma: f32,
    a: f32,
    b: f32,
}

impl<'a> Sgd<'a> {
    fn new(
        edges: &'a [(u32, u32, f32)],
        max_weight: f32,
        n_epochs: usize,
        params: &UmapParams,
        a: f32,
        b: f32,
    ) -> Self {
        let epochs_per_sample: Vec<f32> = edges
            .iter()
            .map(|&(_, _, w)| n_epochs as f32 / (n_epochs as f32 * w / max_weight))
            .collect();
        let rate = params.negative_sample_rate.max(1) as f32;
        let epochs_per_negative_sample: Vec<f32> =
            epochs_per_sample.iter().map(|e| e / rate).collect();
        Self {
            edges,
            epoch_of_next_sample: epochs_per_sample.clone(),
            epoch_of_next_negative_sample: epochs_per_negative_sample.clone(),
            epochs_per_sample,
            epochs_per_negative_sample,
            n_epochs,
            initial_alpha: params.learning_rate,
            gamma: params.repulsion_strength,
            a,
            b,
        }
    }

    fn epoch(&mut self, y: &mut [Point3], epoch: usize, rng: &mut Rng) {
        let n = y.len();
        let alpha = self.initial_alpha * (1.0 - epoch as f32 / self.n_epochs as f32);
        let now = epoch as f32;
        let (a, b, gamma) = (self.a, self.b, self.gamma);
        for (e, &(head, tail, _)) in self.edges.iter().enumerate() {
            if self.epoch_of_next_sample[e] > now {
                continue;
            }
            let (j, k) = (head as usize, tail as usize);
            let current = y[j];
            let other = y[k];
            let diff = sub(current, other);
            let d2 = norm2(diff);
            let attract = if d2 > 0.0 {
                // pow via one log and one exp: d2^b and d2^(b-1) share them.
                let d2b = (b * d2.ln()).exp();
                -2.0 * a * b * (d2b / d2) / (a * d2b + 1.0)
            } else {
                0.0
            };
            let mut current = current;
            let mut other = other;
            for d in 0..3 {
                let g = clip(attract * diff[d]) * alpha;
                current[d] += g;
                other[d] -= g;
            }
            y[k] = other;
            self.epoch_of_next_sample[e] += self.epochs_per_sample[e];

            let n_negative = ((now - self.epoch_of_next_negative_sample[e])
                / self.epochs_per_negative_sample[e]) as usize;
            for _ in 0..n_negative {
                let m = rng.below(n);
                if m == j {
                    continue;
                }
                let other = y[m];
                let diff = sub(current, other);
                let d2 = norm2(diff);
                if d2 <= 0.0 {
                    continue;
                }
                let d2b = (b * d2.ln()).exp();
                let repel = 2.0 * gamma * b / ((0.001 + d2) * (a * d2b + 1.0));
                for d in 0..3 {
                    current[d] += clip(repel * diff[d]) * alpha;
                }
            }
            y[j] = current;
            self.epoch_of_next_negative_sample[e] +=
                n_negative as f32 * self.epochs_per_negative_sample[e];
        }
    }
}

#[inline]
fn sub(a: Point3, b: Point3) -> Point3 {
    [a[0] - b[0], a[1] - b[1], a[2] - b[2]]
}

#[inline]
fn norm2(v: Point3) -> f32 {
    v[0] * v[0] + v[1] * v[1] + v[2] * v[2]
}

#[inline]
fn clip(x: f32) -> f32 {
    x.clamp(-4.0, 4.0)
}
