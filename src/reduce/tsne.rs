//! Barnes–Hut t-SNE in 3D (`bhtsne`, an octree-accelerated parallel
//! implementation), fed with our kNN graph and a PCA start scaled as
//! scikit-learn's `init="pca"` does, so no random initialisation is involved.

use std::cell::Cell;

use bhtsne::{Neighbor, tSNE};
use serde::Serialize;

use super::Point3;
use crate::neighbours::KnnGraph;
use crate::progress::{CancelToken, Cancelled, ProgressEvent, ProgressSink, Stage};

/// Below this, perplexity cannot be meaningful; PCA is used instead.
pub const MIN_POINTS: usize = 8;

#[derive(Clone, Debug, Serialize)]
pub struct TsneParams {
    pub perplexity: f32,
    pub theta: f32,
    pub epochs: usize,
}

impl Default for TsneParams {
    fn default() -> Self {
        Self {
            perplexity: 30.0,
            theta: 0.5,
            epochs: 1000,
        }
    }
}

/// Returns the layout and, when the perplexity had to be lowered for a small
/// input, a note saying so.
pub fn tsne(
    knn: &KnnGraph,
    init: &[Point3],
    params: &TsneParams,
    progress: &dyn ProgressSink,
    cancel: &CancelToken,
) -> anyhow::Result<(Vec<Point3>, Option<String>)> {
    let n = knn.n;
    // bhtsne needs n - 1 >= 3 * perplexity and a full row of 3 * perplexity neighbours.
    let max_perplexity = ((n - 1) as f32 / 3.0).floor();
    let perplexity = params.perplexity.min(max_perplexity).max(1.0);
    let note = (perplexity < params.perplexity).then(|| {
        format!(
            "perplexity lowered from {} to {perplexity} for {n} images",
            params.perplexity
        )
    });
    let k = ((3.0 * perplexity) as usize).min(knn.k).min(n - 1).max(1);
    let neighbours: Vec<Vec<Neighbor<f32>>> = (0..n)
        .map(|i| {
            knn.neighbours(i)
                .take(k)
                .map(|(index, distance)| Neighbor { index, distance })
                .collect()
        })
        .collect();
    anyhow::ensure!(
        neighbours.iter().all(|row| row.len() == k),
        "internal: the neighbour graph has short rows ({k} neighbours needed)"
    );

    // scikit-learn's PCA initialisation: first axis scaled to std 1e-4.
    let std0 = {
        let mean = init.iter().map(|p| p[0] as f64).sum::<f64>() / n as f64;
        (init
            .iter()
            .map(|p| (p[0] as f64 - mean).powi(2))
            .sum::<f64>()
            / n as f64)
            .sqrt()
    };
    let scale = if std0 > 0.0 { 1e-4 / std0 as f32 } else { 1.0 };
    let start: Vec<f32> = init.iter().flat_map(|p| p.map(|x| x * scale)).collect();

    let rows: Vec<usize> = (0..n).collect();
    let epochs = params.epochs.max(1);
    progress.event(ProgressEvent::Started {
        stage: Stage::Layout,
        total: Some(epochs as u64),
    });
    let cancelled = Cell::new(false);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut model: tSNE<f32, usize, 3> = tSNE::new(&rows);
        model
            .perplexity(perplexity)
            .epochs(epochs)
            .initial_embedding(start)
            .epoch_callback(|epoch, _| {
                if epoch % 10 == 0 {
                    progress.event(ProgressEvent::Advanced {
                        stage: Stage::Layout,
                        done: epoch as u64,
                    });
                    if cancel.is_cancelled() {
                        cancelled.set(true);
                        // bhtsne has no way to stop a fit; unwinding out of the
                        // callback is the only exit (no panic hook runs for this).
                        std::panic::resume_unwind(Box::new(Cancelled));
                    }
                }
            })
            .barnes_hut_with_neighbors(params.theta, &neighbours);
        model.embedding()
    }));
    let flat = match result {
        Ok(flat) => flat,
        Err(_) if cancelled.get() => return Err(Cancelled.into()),
        Err(panic) => std::panic::resume_unwind(panic),
    };
    let points = flat.chunks_exact(3).map(|c| [c[0], c[1], c[2]]).collect();
    Ok((points, note))
}
