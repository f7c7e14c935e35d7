//! Approximate kNN with an HNSW index (`instant-distance`), for large folders
//! where the exact n² product would take too long.

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
    let points: Vec<Row> = embeddings.rows().map(Row).collect();
    let ids: Vec<u32> = (0..n as u32).collect();
    let ef_search = (2 * (k + 1)).max(64);
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
            let mut found: Vec<(f32, u32)> = index
                .search(&points[i], search)
                .map(|item| (item.distance, *item.value))
                .filter(|(_, j)| *j as usize != i)
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
