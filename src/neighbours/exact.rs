//! Exact kNN by blocked matrix products. The similarity matrix is symmetric,
//! so only the blocks on and above the diagonal are computed (SGEMM through
//! `ndarray`, whose kernel is `matrixmultiply`'s), each one
//! feeding the top-k lists of its rows and of its columns: half the work of
//! the full product.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use ndarray::linalg::general_mat_mul;
use ndarray::{ArrayView2, ArrayViewMut2};
use rayon::prelude::*;

use super::{KnnGraph, KnnMethod};
use crate::Embeddings;
use crate::progress::{CancelToken, Cancelled, ProgressEvent, ProgressSink, Stage};

/// Rows per block; a block pair's similarities are `BLOCK × BLOCK` floats.
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
    let n_blocks = n.div_ceil(BLOCK);
    let range = |b: usize| b * BLOCK..((b + 1) * BLOCK).min(n);
    // One lock per row block. The top-k lists do not depend on the order in
    // which candidates arrive, so the result is the same on any thread count.
    let lists: Vec<Mutex<Vec<TopK>>> = (0..n_blocks)
        .map(|b| Mutex::new((0..range(b).len()).map(|_| TopK::new(kept)).collect()))
        .collect();
    let pairs: Vec<(usize, usize)> = (0..n_blocks)
        .flat_map(|a| (a..n_blocks).map(move |b| (a, b)))
        .collect();
    let done = AtomicU64::new(0);
    let total_pairs = pairs.len() as u64;

    pairs
        .par_iter()
        .try_for_each_init(Vec::new, |sims, &(a, b)| {
            if cancel.is_cancelled() {
                return Err(Cancelled);
            }
            let (rows, cols) = (range(a), range(b));
            sims.clear();
            sims.resize(rows.len() * cols.len(), 0.0f32);
            if dim > 0 {
                let mut out = ArrayViewMut2::from_shape((rows.len(), cols.len()), &mut sims[..])
                    .expect("the buffer was sized for the block pair");
                general_mat_mul(
                    1.0,
                    &block(embeddings, &rows),
                    &block(embeddings, &cols).t(),
                    0.0,
                    &mut out,
                );
            }
            {
                let mut mine = lists[a].lock().unwrap();
                for (r, list) in mine.iter_mut().enumerate() {
                    let i = rows.start + r;
                    let row = &sims[r * cols.len()..(r + 1) * cols.len()];
                    for (c, &sim) in row.iter().enumerate() {
                        let j = cols.start + c;
                        if j != i {
                            list.offer(sim, j as u32);
                        }
                    }
                }
            }
            if a != b {
                let mut theirs = lists[b].lock().unwrap();
                for (c, list) in theirs.iter_mut().enumerate() {
                    for r in 0..rows.len() {
                        list.offer(sims[r * cols.len() + c], (rows.start + r) as u32);
                    }
                }
            }
            let finished = done.fetch_add(1, Ordering::Relaxed) + 1;
            progress.event(ProgressEvent::Advanced {
                stage: Stage::Neighbours,
                done: finished * n as u64 / total_pairs,
            });
            Ok(())
        })?;

    let mut indices = vec![u32::MAX; n * k];
    let mut distances = vec![f32::INFINITY; n * k];
    for (b, lists) in lists.into_iter().enumerate() {
        for (r, list) in lists.into_inner().unwrap().iter().enumerate() {
            let i = b * BLOCK + r;
            for (slot, &(sim, j)) in list.sorted().iter().enumerate() {
                indices[i * k + slot] = j;
                distances[i * k + slot] = chord(sim);
            }
        }
    }
    Ok(KnnGraph {
        n,
        k,
        indices,
        distances,
        method: KnnMethod::Exact,
    })
}

/// For each query row, the chord distances to its `k` nearest rows that are at
/// least `min_distance` away, nearest first (nearer rows, the query itself
/// among them, are left out; fewer than `k` if fewer rows are that far). One
/// pass over the data for all the queries: blocks of rows times the queries
/// as one matrix product, each block feeding every query's top-k.
pub fn nearest_beyond(
    embeddings: &Embeddings,
    queries: &[usize],
    k: usize,
    min_distance: f32,
    cancel: &CancelToken,
) -> Result<Vec<Vec<f32>>, Cancelled> {
    let (n, dim) = (embeddings.n, embeddings.dim);
    if queries.is_empty() {
        return Ok(Vec::new());
    }
    // chord >= min_distance  <=>  cos <= 1 - min_distance² / 2.
    let most_similar = 1.0 - min_distance * min_distance / 2.0;
    let q: Vec<f32> = queries
        .iter()
        .flat_map(|&i| embeddings.row(i).iter().copied())
        .collect();
    let q = ArrayView2::from_shape((queries.len(), dim), &q).expect("whole rows");
    let fresh = || (0..queries.len()).map(|_| TopK::new(k)).collect::<Vec<_>>();
    let blocks: Vec<usize> = (0..n.div_ceil(BLOCK)).collect();
    let lists = blocks
        .par_iter()
        .try_fold(
            || (fresh(), Vec::new()),
            |(mut lists, mut sims): (Vec<TopK>, Vec<f32>), &b| {
                if cancel.is_cancelled() {
                    return Err(Cancelled);
                }
                let rows = b * BLOCK..((b + 1) * BLOCK).min(n);
                sims.clear();
                sims.resize(rows.len() * queries.len(), 0.0);
                if dim > 0 {
                    let mut out =
                        ArrayViewMut2::from_shape((rows.len(), queries.len()), &mut sims[..])
                            .expect("the buffer was sized for the block");
                    general_mat_mul(1.0, &block(embeddings, &rows), &q.t(), 0.0, &mut out);
                }
                for (r, row) in sims.chunks_exact(queries.len()).enumerate() {
                    for (list, &sim) in lists.iter_mut().zip(row) {
                        if sim <= most_similar {
                            list.offer(sim, (rows.start + r) as u32);
                        }
                    }
                }
                Ok((lists, sims))
            },
        )
        .map(|r| r.map(|(lists, _)| lists))
        .try_reduce(fresh, |mut a, b| {
            for (a, b) in a.iter_mut().zip(b) {
                for &(sim, j) in b.sorted() {
                    a.offer(sim, j);
                }
            }
            Ok(a)
        })?;
    Ok(lists
        .iter()
        .map(|list| list.sorted().iter().map(|&(sim, _)| chord(sim)).collect())
        .collect())
}

/// Rows `rows` of the embeddings as a matrix.
fn block<'a>(embeddings: &'a Embeddings, rows: &std::ops::Range<usize>) -> ArrayView2<'a, f32> {
    let dim = embeddings.dim;
    ArrayView2::from_shape(
        (rows.len(), dim),
        &embeddings.data[rows.start * dim..rows.end * dim],
    )
    .expect("a block of whole rows")
}

/// The chord (euclidean) distance between unit vectors of cosine `sim`.
fn chord(sim: f32) -> f32 {
    (2.0 - 2.0 * sim).max(0.0).sqrt()
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
