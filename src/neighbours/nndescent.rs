//! Approximate kNN by NN-descent (Dong, Moses & Li 2011), started from a
//! random-projection forest, as pynndescent does.
//!
//! 1. **Forest.** Each tree splits its points by the hyperplane halfway between
//!    two random points of the node (rows are unit vectors, so the plane's
//!    normal is their difference) until a leaf holds at most `leaf_size`
//!    points. Every pair within a leaf is a first guess.
//! 2. **Descent.** Each round, every point samples up to `max_candidates`
//!    neighbours and reverse neighbours, split into *new* ones (not yet joined)
//!    and *old* ones. The local join compares new with new and new with old
//!    candidates: a neighbour of a neighbour is likely a neighbour. It stops
//!    after `n_iters` rounds, or when a round changed fewer than
//!    `delta · k · n` graph entries.
//!
//! **Determinism.** The output depends on the seed only, never on the thread
//! count: random choices are pure functions of the seed and what they are for
//! (a node of a tree, a point, a candidate edge), not of the order in which
//! threads reach them. Work runs in blocks of fixed size: within a block, the
//! graph is only read (distances are computed and proposed updates gathered in
//! parallel), then the updates are applied in their fixed generation order,
//! each thread owning a fixed range of rows. The distances come from
//! [`crate::simd`], which gives the same bits on AVX2, AVX-512 and NEON.
//!
//! Rows are unit vectors, so neighbours are ranked by cosine (dot product), and
//! the graph stores chord distances `sqrt(2 - 2·cos)`, nearest first, ties to
//! the smaller index.

use pulp::{Simd, WithSimd};
use rayon::prelude::*;

use super::{KnnGraph, KnnMethod};
use crate::Embeddings;
use crate::progress::{CancelToken, Cancelled, ProgressEvent, ProgressSink, Stage};
use crate::rng::Rng;
use crate::simd::{Dots, arch};

/// Tuning knobs; [`Params::new`] gives the defaults, chosen to reach a
/// recall@15 of about 0.95 or better against the exact graph (README, Benchmarks).
#[derive(Clone, Debug, PartialEq)]
pub struct Params {
    /// Random-projection trees in the initial forest.
    pub n_trees: usize,
    /// Most points in a leaf of those trees.
    pub leaf_size: usize,
    /// Most new (and, separately, old) candidates a point joins per round.
    pub max_candidates: usize,
    /// Most descent rounds.
    pub n_iters: usize,
    /// Stop when a round changes fewer than `delta · k · n` graph entries.
    pub delta: f32,
    /// Wider rows are split in the forest by their seeded random projection
    /// to this many dimensions (0: never). Leaf pairs are still compared at
    /// full width; the projection only decides which points share a leaf.
    pub forest_dim: usize,
}

impl Params {
    /// pynndescent's defaults for `n` points and `k` neighbours.
    pub fn new(n: usize, k: usize) -> Self {
        let log10 = (n.max(1) as f64).log10();
        let log2 = (n.max(1) as f64).log2();
        Self {
            n_trees: ((2.0 * log10).round() as usize).clamp(3, 12),
            leaf_size: (5 * k).clamp(60, 256),
            max_candidates: k.clamp(1, 60),
            n_iters: (log2.round() as usize).max(5),
            delta: 0.001,
            forest_dim: FOREST_DIM,
        }
    }
}

/// The k-nearest-neighbour graph of `embeddings` (unit rows) by NN-descent
/// with the default [`Params`].
pub fn build(
    embeddings: &Embeddings,
    k: usize,
    seed: u64,
    progress: &dyn ProgressSink,
    cancel: &CancelToken,
) -> anyhow::Result<KnnGraph> {
    build_with(
        embeddings,
        k,
        seed,
        &Params::new(embeddings.n, k),
        progress,
        cancel,
    )
}

/// Below this many points (or when k is a large share of them), the graph is
/// computed exactly: it is cheap there, and NN-descent needs enough points for
/// its sampling to make sense.
const BRUTE_FORCE_MAX_N: usize = 256;

/// [`build`] with explicit parameters.
pub fn build_with(
    embeddings: &Embeddings,
    k: usize,
    seed: u64,
    params: &Params,
    progress: &dyn ProgressSink,
    cancel: &CancelToken,
) -> anyhow::Result<KnnGraph> {
    build_with_stats(embeddings, k, seed, params, progress, cancel).map(|(graph, _)| graph)
}

/// What a run did, for benchmarks and tuning.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    /// Seconds spent building the forest, joining its leaves, and per round.
    pub forest_seconds: f64,
    pub leaves_seconds: f64,
    pub round_seconds: Vec<f64>,
    /// Graph entries that changed in each round.
    pub round_changes: Vec<usize>,
    /// Distances computed (leaf pairs and local joins).
    pub distances: u64,
}

/// [`build_with`], also returning [`Stats`].
pub fn build_with_stats(
    embeddings: &Embeddings,
    k: usize,
    seed: u64,
    params: &Params,
    progress: &dyn ProgressSink,
    cancel: &CancelToken,
) -> anyhow::Result<(KnnGraph, Stats)> {
    let n = embeddings.n;
    check_input(embeddings)?;
    let mut stats = Stats::default();
    if k == 0 || n <= 1 {
        return Ok((to_graph(n, k, &vec![EMPTY_SLOT; n * k]), stats));
    }
    let slots = if n <= BRUTE_FORCE_MAX_N || k.saturating_mul(4) >= n {
        brute_force(embeddings, k)
    } else {
        descend(embeddings, k, seed, params, progress, cancel, &mut stats)?
    };
    progress.event(ProgressEvent::Advanced {
        stage: Stage::Neighbours,
        done: n as u64,
    });
    Ok((to_graph(n, k, &slots), stats))
}

fn check_input(e: &Embeddings) -> anyhow::Result<()> {
    anyhow::ensure!(
        e.data.len() == e.n * e.dim,
        "embedding matrix holds {} values, expected {} rows × {} = {}",
        e.data.len(),
        e.n,
        e.dim,
        e.n * e.dim
    );
    anyhow::ensure!(
        e.n < MAX_POINTS,
        "{} images is more than the {} the neighbour graph supports; split the folder",
        e.n,
        MAX_POINTS
    );
    if let Some(bad) = e
        .data
        .par_chunks(e.dim.max(1))
        .position_first(|row| row.iter().any(|x| !x.is_finite()))
    {
        anyhow::bail!(
            "embedding row {bad} contains NaN or infinite values; delete the embedding cache \
             and re-run, or remove that image"
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// The graph under construction: n rows of k slots, each row sorted by
// (key, index), where key = -cosine (smaller is nearer). The top bit of the
// index marks an entry not yet joined ("new").

#[derive(Clone, Copy, Debug, PartialEq)]
struct Slot {
    key: f32,
    idx: u32,
}

const NEW: u32 = 1 << 31;
const EMPTY: u32 = NEW - 1;
/// Indices must stay below the empty marker and fit beside the flag.
const MAX_POINTS: usize = EMPTY as usize;
const EMPTY_SLOT: Slot = Slot {
    key: f32::INFINITY,
    idx: EMPTY,
};

impl Slot {
    #[inline(always)]
    fn id(self) -> u32 {
        self.idx & !NEW
    }
    #[inline(always)]
    fn is_new(self) -> bool {
        self.idx & NEW != 0
    }
    #[inline(always)]
    fn is_empty(self) -> bool {
        self.id() == EMPTY
    }
}

/// Would (key, cand) enter this row? Strictly better than the worst entry
/// (or than an empty slot); NaN never enters.
#[inline(always)]
fn beats_worst(row: &[Slot], cand: u32, key: f32) -> bool {
    let worst = row[row.len() - 1];
    key < worst.key || (key == worst.key && cand < worst.id())
}

/// Inserts `cand` (flagged new) if it beats the worst entry and is not already
/// there. The result does not depend on the order of insertions: a row always
/// holds the best k distinct (key, index) pairs it was offered.
#[inline]
fn insert(row: &mut [Slot], cand: u32, key: f32) -> bool {
    if !beats_worst(row, cand, key) || row.iter().any(|s| s.id() == cand) {
        return false;
    }
    let pos = row.partition_point(|s| s.key < key || (s.key == key && s.id() < cand));
    let last = row.len() - 1;
    row.copy_within(pos..last, pos + 1);
    row[pos] = Slot {
        key,
        idx: cand | NEW,
    };
    true
}

fn to_graph(n: usize, k: usize, slots: &[Slot]) -> KnnGraph {
    let mut indices = vec![u32::MAX; n * k];
    let mut distances = vec![f32::INFINITY; n * k];
    for ((slot, i), d) in slots.iter().zip(&mut indices).zip(&mut distances) {
        if !slot.is_empty() {
            *i = slot.id();
            *d = (2.0 + 2.0 * slot.key).max(0.0).sqrt();
        }
    }
    KnnGraph {
        n,
        k,
        indices,
        distances,
        method: KnnMethod::Approximate,
    }
}

/// Exact graph for small inputs, by all pairs.
fn brute_force(e: &Embeddings, k: usize) -> Vec<Slot> {
    struct Rows<'a> {
        e: &'a Embeddings,
        i: usize,
        row: &'a mut [Slot],
    }
    impl WithSimd for Rows<'_> {
        type Output = ();
        #[inline(always)]
        fn with_simd<S: Simd>(self, simd: S) {
            let dots = Dots(simd);
            let a = self.e.row(self.i);
            for j in (0..self.e.n).filter(|&j| j != self.i) {
                let key = -dots.dot(a, self.e.row(j));
                insert(self.row, j as u32, key);
            }
        }
    }
    let mut slots = vec![EMPTY_SLOT; e.n * k];
    slots
        .par_chunks_mut(k)
        .enumerate()
        .for_each(|(i, row)| arch().dispatch(Rows { e, i, row }));
    slots
}

// ---------------------------------------------------------------------------
// Seeded hashing: every random choice is a function of (seed, purpose, ids).

/// SplitMix64's finaliser: a bijective 64-bit mixer.
#[inline(always)]
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[inline(always)]
fn hash3(seed: u64, a: u64, b: u64) -> u64 {
    mix(mix(seed ^ a.wrapping_mul(0xD6E8_FEB8_6659_FD93)) ^ b)
}

// Streams of `Rng::fork`, one per purpose.
const STREAM_TREES: u64 = 1;
const STREAM_FILL: u64 = 2;
const STREAM_SAMPLE: u64 = 3;
const STREAM_PROJECT: u64 = 4;

// ---------------------------------------------------------------------------
// The descent.

/// Points whose joins are computed between two applications of updates; the
/// thresholds used to filter proposals are those at the block's start. Fixed,
/// so that the result does not depend on the thread count.
const JOIN_BLOCK: usize = 8192;
/// Points (or leaves) per parallel task within a block.
const JOIN_CHUNK: usize = 128;
const LEAF_CHUNK: usize = 8;
/// Leaves per block of the initialisation.
const LEAF_BLOCK: usize = 512;
/// Row ranges updates are routed to; each is applied by one task.
const RANGES: usize = 32;

/// A proposed graph entry: `cand` at `key` in the row of `target`.
#[derive(Clone, Copy)]
struct Update {
    target: u32,
    cand: u32,
    key: f32,
}

/// Proposals of one task, one list per row range, in generation order.
struct Proposals {
    rows_per_range: usize,
    buckets: Vec<Vec<Update>>,
    /// Distances computed to make them.
    dots: u64,
}

impl Proposals {
    fn new(rows_per_range: usize) -> Self {
        Self {
            rows_per_range,
            buckets: (0..RANGES).map(|_| Vec::new()).collect(),
            dots: 0,
        }
    }

    /// Proposes p and q to each other where the current graph would take them.
    #[inline(always)]
    fn offer(&mut self, graph: &[Slot], k: usize, p: u32, q: u32, key: f32) {
        if p == q {
            return;
        }
        for (target, cand) in [(p, q), (q, p)] {
            let row = &graph[target as usize * k..(target as usize + 1) * k];
            if beats_worst(row, cand, key) {
                self.buckets[target as usize / self.rows_per_range].push(Update {
                    target,
                    cand,
                    key,
                });
            }
        }
    }
}

/// Applies every task's proposals, tasks in order; each row range in parallel.
/// Returns how many entries went in.
fn apply(graph: &mut [Slot], k: usize, rows_per_range: usize, tasks: &[Proposals]) -> usize {
    graph
        .par_chunks_mut(rows_per_range * k)
        .enumerate()
        .map(|(r, rows)| {
            let base = r * rows_per_range;
            let mut changed = 0;
            for task in tasks {
                for u in &task.buckets[r] {
                    let at = (u.target as usize - base) * k;
                    changed += insert(&mut rows[at..at + k], u.cand, u.key) as usize;
                }
            }
            changed
        })
        .sum()
}

struct Progress<'a> {
    sink: &'a dyn ProgressSink,
    n: usize,
}

impl Progress<'_> {
    /// `fraction` of the whole stage is done.
    fn at(&self, fraction: f64) {
        self.sink.event(ProgressEvent::Advanced {
            stage: Stage::Neighbours,
            done: (self.n as f64 * fraction.clamp(0.0, 1.0)) as u64,
        });
    }
}

// Shares of the progress bar: the forest, the leaf joins, the rounds.
const FOREST_SHARE: f64 = 0.1;
const LEAVES_SHARE: f64 = 0.2;

fn descend(
    e: &Embeddings,
    k: usize,
    seed: u64,
    params: &Params,
    progress: &dyn ProgressSink,
    cancel: &CancelToken,
    stats: &mut Stats,
) -> anyhow::Result<Vec<Slot>> {
    let n = e.n;
    let clock = std::time::Instant::now();
    let progress = Progress { sink: progress, n };
    let rows_per_range = n.div_ceil(RANGES);
    let mut graph = vec![EMPTY_SLOT; n * k];

    // 1. The forest's leaves, and every pair within a leaf.
    let forest = Forest::build(e, params, seed, cancel)?;
    progress.at(FOREST_SHARE);
    stats.forest_seconds = clock.elapsed().as_secs_f64();
    let leaves = forest.leaves();
    for (b, block) in leaves.chunks(LEAF_BLOCK).enumerate() {
        cancel.check()?;
        let tasks: Vec<Proposals> = block
            .par_chunks(LEAF_CHUNK)
            .map(|chunk| {
                arch().dispatch(LeafJoin {
                    e,
                    graph: &graph,
                    k,
                    leaves: chunk,
                    out: Proposals::new(rows_per_range),
                })
            })
            .collect();
        stats.distances += tasks.iter().map(|t| t.dots).sum::<u64>();
        apply(&mut graph, k, rows_per_range, &tasks);
        let done = ((b + 1) * LEAF_BLOCK).min(leaves.len()) as f64 / leaves.len() as f64;
        progress.at(FOREST_SHARE + LEAVES_SHARE * done);
    }
    // Points are joined in the first tree's leaf order: consecutive points
    // then share many candidates, whose rows may still be in cache. (On the
    // loaded test machine the gain was within noise; it costs nothing.)
    let order = forest.perms.into_iter().next().unwrap_or_default();
    cancel.check()?;

    // Points the leaves left short of k neighbours get random ones.
    fill_random(e, &mut graph, k, seed);
    stats.leaves_seconds = clock.elapsed().as_secs_f64() - stats.forest_seconds;

    // 2. The rounds of local joins.
    let max_candidates = params.max_candidates.max(1);
    let mut new_candidates = vec![EMPTY; n * max_candidates];
    let mut old_candidates = vec![EMPTY; n * max_candidates];
    for round in 0..params.n_iters {
        cancel.check()?;
        let round_progress = |fraction: f64| {
            progress.at(FOREST_SHARE
                + LEAVES_SHARE
                + (1.0 - FOREST_SHARE - LEAVES_SHARE) * (round as f64 + fraction)
                    / params.n_iters as f64)
        };
        sample_candidates(
            &mut graph,
            k,
            max_candidates,
            hash3(seed, STREAM_SAMPLE, round as u64),
            &mut new_candidates,
            &mut old_candidates,
        );
        let mut changed = 0;
        for start in (0..n).step_by(JOIN_BLOCK) {
            cancel.check()?;
            let end = (start + JOIN_BLOCK).min(n);
            let tasks: Vec<Proposals> = order[start..end]
                .par_chunks(JOIN_CHUNK)
                .map(|points| {
                    arch().dispatch(LocalJoin {
                        e,
                        graph: &graph,
                        k,
                        max_candidates,
                        new_candidates: &new_candidates,
                        old_candidates: &old_candidates,
                        points,
                        out: Proposals::new(rows_per_range),
                    })
                })
                .collect();
            stats.distances += tasks.iter().map(|t| t.dots).sum::<u64>();
            changed += apply(&mut graph, k, rows_per_range, &tasks);
            round_progress(end as f64 / n as f64);
        }
        stats.round_changes.push(changed);
        stats.round_seconds.push(
            clock.elapsed().as_secs_f64()
                - stats.forest_seconds
                - stats.leaves_seconds
                - stats.round_seconds.iter().sum::<f64>(),
        );
        if (changed as f64) <= params.delta as f64 * k as f64 * n as f64 {
            break;
        }
    }
    Ok(graph)
}

/// Every pair of points in a few leaves.
struct LeafJoin<'a> {
    e: &'a Embeddings,
    graph: &'a [Slot],
    k: usize,
    leaves: &'a [&'a [u32]],
    out: Proposals,
}

impl WithSimd for LeafJoin<'_> {
    type Output = Proposals;
    #[inline(always)]
    fn with_simd<S: Simd>(mut self, simd: S) -> Proposals {
        let dots = Dots(simd);
        let mut rows: Vec<&[f32]> = Vec::new();
        let mut sims: Vec<f32> = Vec::new();
        for leaf in self.leaves {
            // A leaf can only outgrow leaf_size at the depth limit; its pairs
            // are then taken in pieces so that `sims` stays small.
            for piece in leaf.chunks(MAX_LEAF_PIECE) {
                let m = piece.len();
                rows.clear();
                rows.extend(piece.iter().map(|&q| self.e.row(q as usize)));
                sims.resize(m * m, 0.0);
                dots.upper(&rows, m, &mut sims);
                self.out.dots += (m * (m - 1) / 2) as u64;
                for (a, &p) in piece.iter().enumerate() {
                    for (b, &q) in piece.iter().enumerate().skip(a + 1) {
                        self.out.offer(self.graph, self.k, p, q, -sims[a * m + b]);
                    }
                }
            }
        }
        self.out
    }
}

/// Most points of a leaf joined as one piece.
const MAX_LEAF_PIECE: usize = 512;

/// The local join of a range of points: new × new and new × old candidates.
struct LocalJoin<'a> {
    e: &'a Embeddings,
    graph: &'a [Slot],
    k: usize,
    max_candidates: usize,
    new_candidates: &'a [u32],
    old_candidates: &'a [u32],
    points: &'a [u32],
    out: Proposals,
}

impl<'a> WithSimd for LocalJoin<'a> {
    type Output = Proposals;
    #[inline(always)]
    fn with_simd<S: Simd>(mut self, simd: S) -> Proposals {
        let dots = Dots(simd);
        let mc = self.max_candidates;
        let mut ids: Vec<u32> = Vec::with_capacity(2 * mc);
        let mut rows: Vec<&[f32]> = Vec::with_capacity(2 * mc);
        let mut sims: Vec<f32> = Vec::with_capacity(4 * mc * mc);
        for &i in self.points {
            let i = i as usize;
            let list = |c: &'a [u32]| {
                let l = &c[i * mc..(i + 1) * mc];
                &l[..l.iter().position(|&x| x == EMPTY).unwrap_or(mc)]
            };
            let new = list(self.new_candidates);
            if new.is_empty() {
                continue;
            }
            let old = list(self.old_candidates);
            // new × new (each pair once) and new × old, from one tile product.
            ids.clear();
            ids.extend_from_slice(new);
            ids.extend_from_slice(old);
            rows.clear();
            rows.extend(ids.iter().map(|&q| self.e.row(q as usize)));
            let m = ids.len();
            sims.resize(m * m, 0.0);
            dots.upper(&rows, new.len(), &mut sims);
            for (a, &p) in new.iter().enumerate() {
                self.out.dots += (m - a - 1) as u64;
                for (b, &q) in ids.iter().enumerate().skip(a + 1) {
                    self.out.offer(self.graph, self.k, p, q, -sims[a * m + b]);
                }
            }
        }
        self.out
    }
}

/// Fills rows that are short of k entries with random points (a point can
/// be in no leaf with enough others), as pynndescent does.
fn fill_random(e: &Embeddings, graph: &mut [Slot], k: usize, seed: u64) {
    let n = e.n;
    graph.par_chunks_mut(k).enumerate().for_each(|(i, row)| {
        if !row[k - 1].is_empty() {
            return;
        }
        let mut rng = Rng::fork(hash3(seed, STREAM_FILL, 0), i as u64);
        // A bounded number of tries: with n > 4k almost all succeed.
        for _ in 0..4 * k {
            if !row[k - 1].is_empty() {
                break;
            }
            let j = rng.below(n);
            if j != i {
                let key = -crate::simd::dot(e.row(i), e.row(j));
                insert(row, j as u32, key);
            }
        }
    });
}

/// Candidates with their sampling priority.
type Prioritised = Vec<(u64, u32)>;

/// Samples each point's candidates for a round. For point i, the *new*
/// candidates are its neighbours flagged new plus the points that hold i as a
/// new neighbour; *old* ones likewise with old flags. Each list keeps at most
/// `max_candidates` of them, chosen by a seeded hash of (round, i, j), so the
/// choice does not depend on the order they are gathered in. Neighbours chosen
/// as new candidates are then flagged old.
fn sample_candidates(
    graph: &mut [Slot],
    k: usize,
    mc: usize,
    round_seed: u64,
    new_candidates: &mut [u32],
    old_candidates: &mut [u32],
) {
    let n = graph.len() / k;
    // Reverse edges as compressed rows: for each j, the i with j in row i,
    // with the edge's new flag. Sequential, a small part of a round.
    let mut offsets = vec![0u32; n + 1];
    for s in graph.iter().filter(|s| !s.is_empty()) {
        offsets[s.id() as usize + 1] += 1;
    }
    for j in 0..n {
        offsets[j + 1] += offsets[j];
    }
    let mut reverse = vec![0u32; offsets[n] as usize];
    let mut cursor: Vec<u32> = offsets[..n].to_vec();
    for (i, row) in graph.chunks(k).enumerate() {
        for s in row.iter().filter(|s| !s.is_empty()) {
            let c = &mut cursor[s.id() as usize];
            reverse[*c as usize] = i as u32 | (s.idx & NEW);
            *c += 1;
        }
    }

    let graph_ref: &[Slot] = graph;
    new_candidates
        .par_chunks_mut(mc)
        .zip(old_candidates.par_chunks_mut(mc))
        .enumerate()
        .for_each_init(
            || (Vec::new(), Vec::new()),
            |(new, old): &mut (Prioritised, Prioritised), (i, (new_out, old_out))| {
                new.clear();
                old.clear();
                let priority = |j: u32| hash3(round_seed, i as u64, j as u64);
                let forward = graph_ref[i * k..(i + 1) * k]
                    .iter()
                    .filter(|s| !s.is_empty())
                    .map(|s| s.idx);
                let backward = reverse[offsets[i] as usize..offsets[i + 1] as usize]
                    .iter()
                    .copied();
                for flagged in forward.chain(backward) {
                    let j = flagged & !NEW;
                    let list = if flagged & NEW != 0 {
                        &mut *new
                    } else {
                        &mut *old
                    };
                    list.push((priority(j), j));
                }
                for (list, out) in [(&mut *new, &mut *new_out), (&mut *old, &mut *old_out)] {
                    list.sort_unstable();
                    list.dedup();
                    out.fill(EMPTY);
                    for (o, &(_, j)) in out.iter_mut().zip(list.iter()) {
                        *o = j;
                    }
                }
            },
        );
    let new_ref: &[u32] = new_candidates;
    graph
        .par_chunks_mut(k)
        .zip(new_ref.par_chunks(mc))
        .for_each(|(row, chosen)| {
            for s in row.iter_mut().filter(|s| s.is_new()) {
                if chosen.contains(&s.id()) {
                    s.idx &= !NEW;
                }
            }
        });
}

// ---------------------------------------------------------------------------
// The random-projection forest.

/// Depth at which a node becomes a leaf whatever its size (pynndescent's).
const MAX_DEPTH: usize = 200;
/// Nodes larger than this split their halves in parallel.
const PARALLEL_NODE: usize = 4096;
/// Margins this close to the plane take a random side (pynndescent's EPS).
const MARGIN_EPS: f32 = 1e-8;

/// A tree's permutation of the points and its leaves as ranges of it.
type Tree = (Vec<u32>, Vec<(u32, u32)>);

struct Forest {
    /// Per tree: its points, permuted so that each leaf is a contiguous run.
    perms: Vec<Vec<u32>>,
    /// Per tree: the leaves as ranges of `perms[tree]`.
    leaves: Vec<Vec<(u32, u32)>>,
}

impl Forest {
    fn build(
        e: &Embeddings,
        params: &Params,
        seed: u64,
        cancel: &CancelToken,
    ) -> Result<Self, Cancelled> {
        let leaf_size = params.leaf_size.max(2);
        let projected = (params.forest_dim > 0 && e.dim > params.forest_dim)
            .then(|| project(e, params.forest_dim, seed));
        let rows = projected.as_ref().unwrap_or(e);
        cancel.check()?;
        let trees: Vec<Tree> = (0..params.n_trees)
            .into_par_iter()
            .map(|t| {
                cancel.check()?;
                let mut perm: Vec<u32> = (0..e.n as u32).collect();
                let root_seed =
                    Rng::fork(seed, STREAM_TREES.wrapping_add(t as u64 * 16)).next_u64();
                let leaves = split(rows, &mut perm, 0, root_seed, 0, leaf_size);
                Ok((perm, leaves))
            })
            .collect::<Result<_, Cancelled>>()?;
        let (perms, leaves) = trees.into_iter().unzip();
        Ok(Self { perms, leaves })
    }

    /// Every leaf of every tree, as slices of point indices.
    fn leaves(&self) -> Vec<&[u32]> {
        self.perms
            .iter()
            .zip(&self.leaves)
            .flat_map(|(perm, leaves)| {
                leaves
                    .iter()
                    .map(move |&(a, b)| &perm[a as usize..b as usize])
            })
            .filter(|leaf| leaf.len() > 1)
            .collect()
    }
}

/// Splits the node `points` (which starts at `offset` in its tree's
/// permutation) recursively; returns its leaves, left to right.
fn split(
    e: &Embeddings,
    points: &mut [u32],
    offset: usize,
    node_seed: u64,
    depth: usize,
    leaf_size: usize,
) -> Vec<(u32, u32)> {
    let len = points.len();
    if len <= leaf_size || depth >= MAX_DEPTH {
        return vec![(offset as u32, (offset + len) as u32)];
    }
    let mut rng = Rng::new(node_seed);
    let a = rng.below(len);
    let mut b = rng.below(len - 1);
    if b >= a {
        b += 1;
    }
    let (p, q) = (e.row(points[a] as usize), e.row(points[b] as usize));
    let normal: Vec<f32> = p.iter().zip(q).map(|(x, y)| x - y).collect();
    let margins = margins(e, &normal, points);
    // pynndescent's rule: a random side within EPS of the plane, and a random
    // split when every point falls on one side (e.g. duplicates).
    let coin = |point: u32| hash3(node_seed, 0, point as u64) & 1 == 0;
    let mut left: Vec<bool> = points
        .iter()
        .zip(&margins)
        .map(|(&x, &m)| {
            if m.abs() < MARGIN_EPS {
                coin(x)
            } else {
                m > 0.0
            }
        })
        .collect();
    let n_left = left.iter().filter(|&&l| l).count();
    if n_left == 0 || n_left == len {
        left = points.iter().map(|&x| coin(x)).collect();
    }
    // Stable partition, left side first.
    let (mut l, mut r): (Vec<u32>, Vec<u32>) = (Vec::with_capacity(len), Vec::new());
    for (&x, &is_left) in points.iter().zip(&left) {
        if is_left { l.push(x) } else { r.push(x) }
    }
    if l.is_empty() || r.is_empty() {
        // Astronomically unlikely after the coin flips; halve instead.
        l.append(&mut r);
        r = l.split_off(len / 2);
    }
    let n_left = l.len();
    points[..n_left].copy_from_slice(&l);
    points[n_left..].copy_from_slice(&r);
    drop((l, r, left, margins));

    let (left_points, right_points) = points.split_at_mut(n_left);
    let (left_seed, right_seed) = (
        mix(node_seed.wrapping_mul(2)),
        mix(node_seed.wrapping_mul(2) | 1),
    );
    let mut recurse_left = || split(e, left_points, offset, left_seed, depth + 1, leaf_size);
    let mut recurse_right = || {
        split(
            e,
            right_points,
            offset + n_left,
            right_seed,
            depth + 1,
            leaf_size,
        )
    };
    let (mut leaves, right) = if len > PARALLEL_NODE {
        rayon::join(recurse_left, recurse_right)
    } else {
        (recurse_left(), recurse_right())
    };
    leaves.extend(right);
    leaves
}

/// Width of the rows the forest splits (see [`Params::forest_dim`]). Splitting
/// 784-wide rows took 2.7 of 9.3 CPU-s at 100k, most of it fetching rows
/// from memory; on 32-wide ones the forest takes 0.5 s (and the leaves it
/// gives are somewhat worse: 8.5 CPU-s in all, same recall).
const FOREST_DIM: usize = 32;

/// The rows times a seeded Gaussian matrix (dim × `to`), then L2-normalised:
/// angles are roughly kept (Johnson–Lindenstrauss), which is all a split needs.
fn project(e: &Embeddings, to: usize, seed: u64) -> Embeddings {
    struct Project<'a> {
        rows: &'a [f32],
        dim: usize,
        matrix: &'a [Vec<f32>],
        out: &'a mut [f32],
    }
    impl WithSimd for Project<'_> {
        type Output = ();
        #[inline(always)]
        fn with_simd<S: Simd>(self, simd: S) {
            let dots = Dots(simd);
            let columns: Vec<&[f32]> = self.matrix.iter().map(|c| c.as_slice()).collect();
            let to = columns.len();
            for (row, out) in self
                .rows
                .chunks_exact(self.dim)
                .zip(self.out.chunks_exact_mut(to))
            {
                dots.dot_many(row, &columns, out);
                let norm = dots.dot(out, out).sqrt();
                if norm > 0.0 {
                    out.iter_mut().for_each(|x| *x /= norm);
                }
            }
        }
    }
    let mut rng = Rng::fork(seed, STREAM_PROJECT);
    let matrix: Vec<Vec<f32>> = (0..to)
        .map(|_| (0..e.dim).map(|_| rng.normal_f32()).collect())
        .collect();
    let mut out = vec![0.0f32; e.n * to];
    const ROWS: usize = 1024;
    out.par_chunks_mut(ROWS * to)
        .zip(e.data.par_chunks(ROWS * e.dim))
        .for_each(|(out, rows)| {
            arch().dispatch(Project {
                rows,
                dim: e.dim,
                matrix: &matrix,
                out,
            })
        });
    Embeddings::new(e.n, to, out)
}

/// Signed distances of `points` to the plane through the origin with this normal.
fn margins(e: &Embeddings, normal: &[f32], points: &[u32]) -> Vec<f32> {
    struct Margins<'a> {
        e: &'a Embeddings,
        normal: &'a [f32],
        points: &'a [u32],
    }
    impl WithSimd for Margins<'_> {
        type Output = Vec<f32>;
        #[inline(always)]
        fn with_simd<S: Simd>(self, simd: S) -> Vec<f32> {
            let dots = Dots(simd);
            let mut out = vec![0.0; self.points.len()];
            let mut rows: Vec<&[f32]> = Vec::with_capacity(64);
            for (chunk, out) in self.points.chunks(64).zip(out.chunks_mut(64)) {
                rows.clear();
                rows.extend(chunk.iter().map(|&x| self.e.row(x as usize)));
                dots.dot_many(self.normal, &rows, out);
            }
            out
        }
    }
    if points.len() > 4 * PARALLEL_NODE {
        points
            .par_chunks(PARALLEL_NODE)
            .flat_map_iter(|chunk| {
                arch().dispatch(Margins {
                    e,
                    normal,
                    points: chunk,
                })
            })
            .collect()
    } else {
        arch().dispatch(Margins { e, normal, points })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::neighbours::tests::random_unit_rows;
    use crate::neighbours::{KnnMethod, recall};
    use crate::progress::NoProgress;

    fn exact(e: &Embeddings, k: usize) -> KnnGraph {
        crate::neighbours::build(e, k, KnnMethod::Exact, 0, &NoProgress, &CancelToken::new())
            .unwrap()
    }

    fn nnd(e: &Embeddings, k: usize, seed: u64) -> KnnGraph {
        build(e, k, seed, &NoProgress, &CancelToken::new()).unwrap()
    }

    /// Rows around a few centres, like real embeddings.
    fn clustered(n: usize, dim: usize, spread: f32, seed: u64) -> Embeddings {
        let centres = random_unit_rows(25, dim, seed);
        let noise = random_unit_rows(n, dim, seed + 1);
        let mut data = Vec::with_capacity(n * dim);
        for i in 0..n {
            let mut row: Vec<f32> = centres
                .row(i % 25)
                .iter()
                .zip(noise.row(i))
                .map(|(c, z)| c + spread * z)
                .collect();
            crate::l2_normalize(&mut row);
            data.extend(row);
        }
        Embeddings::new(n, dim, data)
    }

    #[test]
    fn insert_keeps_best_distinct_sorted_whatever_the_order() {
        let offers = [
            (5u32, -0.5f32),
            (3, -0.9),
            (7, -0.5),
            (3, -0.9),
            (1, 0.2),
            (9, -0.95),
        ];
        let mut rows = Vec::new();
        for rotation in 0..offers.len() {
            let mut row = vec![EMPTY_SLOT; 3];
            for o in offers.iter().cycle().skip(rotation).take(offers.len()) {
                insert(&mut row, o.0, o.1);
            }
            rows.push(row.iter().map(|s| (s.id(), s.key)).collect::<Vec<_>>());
        }
        // Best three, nearest first, the 5/7 tie to the smaller index.
        assert_eq!(rows[0], vec![(9, -0.95), (3, -0.9), (5, -0.5)]);
        assert!(rows.iter().all(|r| *r == rows[0]));
        let mut row = vec![EMPTY_SLOT; 2];
        assert!(!insert(&mut row, 4, f32::NAN));
        assert!(row[0].is_empty());
    }

    #[test]
    fn recall_is_high_on_clustered_rows() {
        let e = clustered(4000, 48, 0.7, 11);
        let r = recall(&exact(&e, 15), &nnd(&e, 15, 1));
        assert!(r > 0.97, "recall {r}");
    }

    #[test]
    fn recall_is_high_on_wide_rows() {
        let e = clustered(2000, 300, 0.6, 7);
        let r = recall(&exact(&e, 10), &nnd(&e, 10, 2));
        assert!(r > 0.95, "recall {r}");
    }

    #[test]
    fn graph_is_well_formed_and_distances_exact() {
        let e = clustered(1500, 20, 1.0, 3);
        let g = nnd(&e, 12, 5);
        assert_eq!((g.n, g.k, g.indices.len()), (1500, 12, 1500 * 12));
        for i in 0..g.n {
            let row: Vec<(usize, f32)> = g.neighbours(i).collect();
            assert_eq!(row.len(), 12, "row {i} is full");
            let mut ids: Vec<usize> = row.iter().map(|x| x.0).collect();
            assert!(!ids.contains(&i), "row {i} holds itself");
            ids.sort_unstable();
            ids.dedup();
            assert_eq!(ids.len(), 12, "row {i} has duplicates");
            for w in row.windows(2) {
                assert!(w[0].1 < w[1].1 || (w[0].1 == w[1].1 && w[0].0 < w[1].0));
            }
            for (j, d) in row {
                let cos = KnnGraph::cosine_of_distance(d);
                assert!((cos - e.cosine(i, j)).abs() < 1e-4);
            }
        }
    }

    #[test]
    fn same_output_on_one_and_three_threads() {
        let e = clustered(3000, 40, 0.8, 21);
        let run = |threads| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap()
                .install(|| nnd(&e, 15, 42))
        };
        let (one, three) = (run(1), run(3));
        assert_eq!(one.indices, three.indices);
        let bits = |g: &KnnGraph| g.distances.iter().map(|d| d.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&one), bits(&three));
        // And the seed matters.
        assert_ne!(one.indices, nnd(&e, 15, 43).indices);
    }

    #[test]
    fn small_and_degenerate_inputs() {
        for n in 0..20 {
            let e = random_unit_rows(n, 5, 1);
            for k in [0, 1, 15] {
                let g = nnd(&e, k, 0);
                assert_eq!(g.indices.len(), n * k);
                for i in 0..n {
                    assert_eq!(g.neighbours(i).count(), k.min(n.saturating_sub(1)));
                }
            }
        }
        // Identical rows (every margin zero) and k close to n go through the
        // descent without panicking; the rows still fill up.
        let dup = Embeddings::new(600, 4, [0.5f32; 4].repeat(600));
        let g = nnd(&dup, 10, 0);
        assert!((0..600).all(|i| g.neighbours(i).count() == 10));
        // Zero width: every cosine is 0.
        let g = nnd(&Embeddings::new(300, 0, vec![]), 5, 0);
        assert_eq!(g.neighbours(7).count(), 5);
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        let mut e = random_unit_rows(500, 8, 1);
        e.data[8 * 123 + 2] = f32::NAN;
        let err = build(&e, 10, 0, &NoProgress, &CancelToken::new()).unwrap_err();
        assert!(err.to_string().contains("row 123"), "{err}");
        let short = Embeddings {
            n: 10,
            dim: 8,
            data: vec![0.0; 79],
        };
        assert!(build(&short, 3, 0, &NoProgress, &CancelToken::new()).is_err());
    }

    #[test]
    fn cancels_and_reports_progress() {
        let e = clustered(3000, 16, 0.8, 5);
        let cancel = CancelToken::new();
        cancel.cancel();
        let err = build(&e, 10, 0, &NoProgress, &cancel).unwrap_err();
        assert!(crate::progress::is_cancelled(&err));

        let seen = std::sync::Mutex::new(Vec::new());
        let sink = |ev: ProgressEvent| {
            if let ProgressEvent::Advanced { stage, done } = ev {
                assert_eq!(stage, Stage::Neighbours);
                seen.lock().unwrap().push(done);
            }
        };
        build(&e, 10, 0, &sink, &CancelToken::new()).unwrap();
        let seen = seen.into_inner().unwrap();
        assert!(seen.len() > 3);
        assert!(seen.windows(2).all(|w| w[0] <= w[1]), "{seen:?}");
        assert_eq!(*seen.last().unwrap(), 3000);
    }

    #[test]
    fn default_params_follow_pynndescent() {
        let p = Params::new(100_000, 15);
        assert_eq!(
            (p.n_trees, p.leaf_size, p.max_candidates, p.n_iters),
            (10, 75, 15, 17)
        );
        assert_eq!(Params::new(1_000_000, 15).n_trees, 12);
    }
}
