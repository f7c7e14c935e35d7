//! Exact kNN by blocked matrix products: each block of rows is multiplied with
//! the whole matrix (SGEMM), then the k largest similarities of each row kept.

use rayon::prelude::*;

use super::{KnnGraph, KnnMethod};
use crate::Embeddings;
use crate::progress::{CancelToken, Cancelled, ProgressEvent, ProgressSink, Stage};

/// Rows per block; a block's similarity matrix is `BLOCK × n` floats.
const BLOCK: usize = 128;

pub fn build(
    embeddings: &Embeddings,
    k: usize,
    progress: &dyn ProgressSink,
    cancel: &CancelToken,
) -> anyhow::Result<KnnGraph> {
    let n = embeddings.n;
    let dim = embeddings.dim;
    let kept = k.min(n.saturating_sub(1));
    let mut indices = vec![u32::MAX; n * k];
    let mut distances = vec![f32::INFINITY; n * k];
    let done = std::sync::atomic::AtomicU64::new(0);

    indices
        .par_chunks_mut(BLOCK * k)
        .zip(distances.par_chunks_mut(BLOCK * k))
        .enumerate()
        .try_for_each(|(block, (idx_out, dist_out))| {
            if cancel.is_cancelled() {
                return Err(Cancelled);
            }
            let start = block * BLOCK;
            let rows = (n - start).min(BLOCK);
            let mut sims = vec![0.0f32; rows * n];
            if dim > 0 && n > 0 {
                // sims[r][j] = x[start + r] · x[j]
                unsafe {
                    matrixmultiply::sgemm(
                        rows,
                        dim,
                        n,
                        1.0,
                        embeddings.data[start * dim..].as_ptr(),
                        dim as isize,
                        1,
                        embeddings.data.as_ptr(),
                        1,
                        dim as isize,
                        0.0,
                        sims.as_mut_ptr(),
                        n as isize,
                        1,
                    );
                }
            }
            let mut candidates: Vec<(f32, u32)> = Vec::with_capacity(n);
            for r in 0..rows {
                let i = start + r;
                candidates.clear();
                candidates.extend(
                    sims[r * n..(r + 1) * n]
                        .iter()
                        .enumerate()
                        .filter(|(j, _)| *j != i)
                        .map(|(j, s)| (*s, j as u32)),
                );
                // Largest similarity first; ties by index so the order is stable.
                let order = |a: &(f32, u32), b: &(f32, u32)| {
                    b.0.total_cmp(&a.0).then(a.1.cmp(&b.1))
                };
                if kept > 0 && candidates.len() > kept {
                    candidates.select_nth_unstable_by(kept - 1, order);
                }
                candidates.truncate(kept);
                candidates.sort_unstable_by(order);
                for (slot, (sim, j)) in candidates.iter().enumerate() {
                    idx_out[r * k + slot] = *j;
                    dist_out[r * k + slot] = (2.0 - 2.0 * sim).max(0.0).sqrt();
                }
            }
            let finished = done.fetch_add(rows as u64, std::sync::atomic::Ordering::Relaxed)
                + rows as u64;
            progress.event(ProgressEvent::Advanced {
                stage: Stage::Neighbours,
                done: finished,
            });
            Ok(())
        })?;
    Ok(KnnGraph {
        n,
        k,
        indices,
        distances,
        method: KnnMethod::Exact,
    })
}
