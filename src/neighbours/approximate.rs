//! Approximate kNN with an HNSW index (`instant-distance`), for large folders
//! where the exact n² product would take too long.
//!
//! Wide embeddings are indexed through a seeded random projection to
//! [`PROJECTED_DIM`] dimensions (distances there cost a fraction), and the
//! candidates the index returns are re-ranked with exact full-width cosines.

use instant_distance::{Builder, Point, Search};
use rayon::prelude::*;

use super::{KnnGraph, KnnMethod};
use crate::Embeddings;
use crate::progress::{CancelToken, Cancelled, ProgressEvent, ProgressSink, Stage};

#[derive(Clone, Copy)]
struct Row<'a>(&'a [f32]);

impl Point for Row<'_> {
    fn distance(&self, other: &Self) -> f32 {
        // Chord distance between unit vectors.
        (2.0 - 2.0 * crate::dot(self.0, other.0)).max(0.0).sqrt()
    }
}

pub fn build(
    embeddings: &Embeddings,
    k: usize,
    seed: u64,
    progress: &dyn ProgressSink,
    cancel: &CancelToken,
) -> anyhow::Result<KnnGraph> {
    let n = embeddings.n;
    let projected = (embeddings.dim > PROJECTED_DIM * 3 / 2).then(|| project(embeddings, seed));
    let searched = projected.as_ref().unwrap_or(embeddings);
    let points: Vec<Row> = searched.rows().map(Row).collect();
    let ids: Vec<u32> = (0..n as u32).collect();
    let ef_search = (8 * (k + 1)).max(64);
    let index = Builder::default()
        .ef_construction(128)
        .ef_search(ef_search)
        .seed(seed)
        .build(points.clone(), ids);
    cancel.check()?;

    let mut indices = vec![u32::MAX; n * k];
    let mut distances = vec![f32::INFINITY; n * k];
    let done = std::sync::atomic::AtomicU64::new(0);
    indices
        .par_chunks_mut(k)
        .zip(distances.par_chunks_mut(k))
        .enumerate()
        .try_for_each_init(Search::default, |search, (i, (idx_out, dist_out))| {
            if i % 1024 == 0 && cancel.is_cancelled() {
                return Err(Cancelled);
            }
            // Candidates from the index, ranked by the exact distance.
            let mut found: Vec<(f32, u32)> = index
                .search(&points[i], search)
                .map(|item| *item.value)
                .filter(|j| *j as usize != i)
                .map(|j| {
                    let cos = embeddings.cosine(i, j as usize);
                    ((2.0 - 2.0 * cos).max(0.0).sqrt(), j)
                })
                .collect();
            found.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            for (slot, (d, j)) in found.into_iter().take(k).enumerate() {
                idx_out[slot] = j;
                dist_out[slot] = d;
            }
            if i % 1024 == 1023 {
                let finished = done.fetch_add(1024, std::sync::atomic::Ordering::Relaxed) + 1024;
                progress.event(ProgressEvent::Advanced {
                    stage: Stage::Neighbours,
                    done: finished,
                });
            }
            Ok(())
        })?;
    Ok(KnnGraph {
        n,
        k,
        indices,
        distances,
        method: KnnMethod::Approximate,
    })
}

/// Width of the space the HNSW index is built in.
const PROJECTED_DIM: usize = 128;

/// Rows multiplied by a seeded Gaussian matrix (dim × PROJECTED_DIM), then
/// L2-normalised: cosine order is approximately kept (Johnson–Lindenstrauss).
fn project(e: &Embeddings, seed: u64) -> Embeddings {
    let mut rng = crate::rng::Rng::new(seed ^ 0x4A4C_5052);
    let matrix: Vec<f32> = (0..e.dim * PROJECTED_DIM)
        .map(|_| rng.normal_f32())
        .collect();
    let mut out = vec![0.0f32; e.n * PROJECTED_DIM];
    out.par_chunks_mut(PROJECTED_DIM)
        .zip(e.data.par_chunks(e.dim))
        .for_each(|(dst, row)| {
            for (d, x) in row.iter().enumerate() {
                let weights = &matrix[d * PROJECTED_DIM..(d + 1) * PROJECTED_DIM];
                for (o, w) in dst.iter_mut().zip(weights) {
                    *o += x * w;
                }
            }
            crate::l2_normalize(dst);
        });
    Embeddings::new(e.n, PROJECTED_DIM, out)
}
