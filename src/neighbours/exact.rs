//! Exact kNN by blocked matrix products: each block of rows is multiplied with
//! the whole matrix (SGEMM), then the k largest similarities of each row kept.

use rayon::prelude::*;

use super::{KnnGraph, KnnMethod};
use crate::Embeddings;
use crate::progress::{CancelToken, Cancelled, ProgressEvent, ProgressSink, Stage};

/// Rows per block; a block's similarity matrix is `BLOCK × n` floats.
const BLOCK: usize = 512;

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
            let mut best = TopK::new(kept);
            for r in 0..rows {
                let i = start + r;
                best.clear();
                for (j, &sim) in sims[r * n..(r + 1) * n].iter().enumerate() {
                    if j != i {
                        best.offer(sim, j as u32);
                    }
                }
                for (slot, &(sim, j)) in best.sorted().iter().enumerate() {
                    idx_out[r * k + slot] = j;
                    dist_out[r * k + slot] = (2.0 - 2.0 * sim).max(0.0).sqrt();
                }
            }
            let finished =
                done.fetch_add(rows as u64, std::sync::atomic::Ordering::Relaxed) + rows as u64;
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

/// The `k` largest (similarity, index) pairs seen, kept sorted best first; ties
/// go to the smaller index so the result does not depend on visiting order.
struct TopK {
    k: usize,
    items: Vec<(f32, u32)>,
}

impl TopK {
    fn new(k: usize) -> Self {
        Self {
            k,
            items: Vec::with_capacity(k + 1),
        }
    }

    fn clear(&mut self) {
        self.items.clear();
    }

    fn better(a: (f32, u32), b: (f32, u32)) -> bool {
        a.0 > b.0 || (a.0 == b.0 && a.1 < b.1)
    }

    #[inline]
    fn offer(&mut self, sim: f32, j: u32) {
        if self.k == 0 || sim.is_nan() {
            return;
        }
        if self.items.len() == self.k {
            // Most candidates fail this one comparison.
            if !Self::better((sim, j), self.items[self.k - 1]) {
                return;
            }
            self.items.pop();
        }
        let at = self.items.partition_point(|&x| Self::better(x, (sim, j)));
        self.items.insert(at, (sim, j));
    }

    fn sorted(&self) -> &[(f32, u32)] {
        &self.items
    }
}
