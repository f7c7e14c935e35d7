//! Near-duplicate evidence from how images look, for copies the embedding
//! cosine misses: a 4-8% crop, a half-size or JPEG q40 copy of a textured
//! photo (a crop moves every pixel, so the pixel cosine can fall to 0.2).
//!
//! Two pieces of evidence, both from the [`Fingerprint`] made while decoding
//! (a 64-bit pHash and the 32×32 grey square it was computed from):
//!
//! * **hash distance**: Hamming distance between pHashes (imagededup's steps,
//!   so its distances carry over);
//! * **aligned correlation**: the best correlation of detail (the grey square
//!   minus its 3×3 mean) between one image and windows of the other covering
//!   92-100% of its side at offsets of 0-8%, both ways. A crop or rescale of an
//!   image aligns with it to 0.8-0.99; two different photos with the same
//!   layout (a dark diagonal across a bright corner) reach 0.4-0.7, since their
//!   detail differs even where their low frequencies, and so their hashes, agree.
//!
//! Candidate pairs come from each image's nearest hashes ([`hash_neighbours`]:
//! exact popcount below 20,000 images, the shared kNN machinery above) and
//! from the embedding's kNN graph, never from all pairs.
//!
//! **The gate.** A hash says little where images crowd together: on MNIST
//! digits 112 distinct pairs have identical hashes and 13,000 are within 4
//! bits, and aligned detail correlation between two different "1"s reaches
//! 0.9. So each image's *crowding* is measured: the share of the other images
//! whose hash is within `align_max_distance` (20) bits, i.e. how many random
//! partners would be candidates. Photos: 0.5-1% (measured on five planted
//! photo sets of 216-1,228 images); MNIST digits: 14%, whatever the sample size
//! (50 to 10,000 digits). The evidence is used only when the folder's mean
//! crowding is at most 3%, and then only for images whose own crowding is at
//! most 6% (so digits mixed into a photo folder stay out). Otherwise duplicates
//! rest on the cosine alone, as before, and the gate says why. (A gate on the
//! distance to the k-th nearest hash was tried first: it depends on the folder
//! size, and opened for MNIST subsets of 500 digits or fewer.)
//!
//! Thresholds (see the `PerceptualRule` defaults) were measured on planted
//! photo sets, side by side with imagededup; see benches/duplicates/RESULTS.md.

use rayon::prelude::*;
use serde::Serialize;

use crate::decode::phash::{Fingerprint, PerceptualHash};
use crate::neighbours::{self, KnnGraph, KnnMethod};
use crate::progress::{CancelToken, Cancelled, ProgressSink};
use crate::rng::Rng;
use crate::{Embeddings, l2_normalize};

const N: usize = Fingerprint::SIDE;
const NN: usize = N * N;

/// Below this many images the hash neighbours are found by comparing every
/// pair (0.2 s for 20,000 images on one core); above it through
/// [`neighbours::build`] on the hash bits (NN-descent at that size), which
/// is not quadratic at scale.
pub const BRUTE_FORCE_LIMIT: usize = 20_000;

/// When two images count as the same photo, from their looks.
#[derive(Clone, Debug, Serialize)]
pub struct PerceptualRule {
    /// Hash neighbours kept per image as candidates.
    pub neighbours: usize,
    /// The gate: the largest mean crowding (share of other images within
    /// `align_max_distance` bits) at which the evidence is used at all ...
    pub folder_max_crowding: f32,
    /// ... and the largest crowding of an image whose pairs may use it.
    pub image_max_crowding: f32,
    /// Hash distance that is evidence on its own (both images with contrast).
    pub hash_alone: u32,
    /// Largest hash distance at which an aligned correlation is looked for.
    pub align_max_distance: u32,
    /// Aligned correlation that is evidence (with `align_max_distance`).
    pub align_min: f32,
    /// Grey standard deviation (0-255, on the 32×32 square) below which an
    /// image is low-contrast: its hash and detail are mostly noise, so a pair
    /// with such an image needs both kinds of evidence.
    pub low_contrast: f32,
    /// Low-contrast pairs: hash distance and aligned correlation both needed ...
    pub low_contrast_distance: u32,
    pub low_contrast_align_min: f32,
    /// ... or a very close hash and a high plain correlation of the grey
    /// squares (a half-size JPEG of a dim photo loses the detail that
    /// alignment needs, but keeps its layout).
    pub low_contrast_close_distance: u32,
    pub low_contrast_grey_min: f32,
}

impl Default for PerceptualRule {
    fn default() -> Self {
        Self {
            neighbours: 16,
            folder_max_crowding: 0.03,
            image_max_crowding: 0.06,
            hash_alone: 8,
            align_max_distance: 20,
            align_min: 0.80,
            low_contrast: 20.0,
            low_contrast_distance: 10,
            low_contrast_align_min: 0.70,
            low_contrast_close_distance: 6,
            low_contrast_grey_min: 0.90,
        }
    }
}

/// Whether the folder's hashes tell images apart (see the module notes).
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Gate {
    pub open: bool,
    /// Mean share of other images within `align_max_distance` bits.
    pub crowding: f32,
    /// Images left out because they alone are crowded (digits among photos).
    pub crowded_images: usize,
    /// For people: why the evidence is used or not.
    pub reason: String,
}

/// One pair the looks say is the same photo; `a < b`.
#[derive(Clone, Copy, Debug, Serialize, PartialEq)]
pub struct PerceptualLink {
    pub a: usize,
    pub b: usize,
    pub hash_distance: u32,
    /// `None` when the hash distance decided alone (no alignment computed).
    pub aligned: Option<f32>,
}

#[derive(Clone, Debug, Serialize)]
pub struct PerceptualEvidence {
    pub gate: Gate,
    /// Sorted by (a, b).
    pub links: Vec<PerceptualLink>,
    /// Candidate pairs examined (for the report and timings).
    pub candidates: usize,
}

impl PerceptualEvidence {
    /// No evidence (no fingerprints, e.g. a run from an old cache).
    pub fn none(reason: &str) -> Self {
        Self {
            gate: Gate {
                open: false,
                crowding: 0.0,
                crowded_images: 0,
                reason: reason.to_owned(),
            },
            links: Vec::new(),
            candidates: 0,
        }
    }

    /// The link between `a` and `b`, if any.
    pub fn link(&self, a: usize, b: usize) -> Option<&PerceptualLink> {
        let key = (a.min(b), a.max(b));
        self.links
            .binary_search_by(|l| (l.a, l.b).cmp(&key))
            .ok()
            .map(|i| &self.links[i])
    }
}

/// Each image's nearest hashes, nearest first (ties: smaller index first),
/// and its crowding.
#[derive(Clone, Debug)]
pub struct HashNeighbours {
    pub k: usize,
    /// `n × k`, padded with `u32::MAX` when there are fewer than k others.
    pub indices: Vec<u32>,
    pub distances: Vec<u8>,
    /// Per image: the share of other images within `radius` bits (exact up to
    /// `BRUTE_FORCE_LIMIT` images, else from `CROWDING_SAMPLE` seeded partners).
    pub crowding: Vec<f32>,
    pub radius: u32,
}

impl HashNeighbours {
    pub fn of(&self, i: usize) -> impl Iterator<Item = (usize, u32)> + '_ {
        let range = i * self.k..(i + 1) * self.k;
        self.indices[range.clone()]
            .iter()
            .zip(&self.distances[range])
            .filter(|(j, _)| **j != u32::MAX)
            .map(|(j, d)| (*j as usize, u32::from(*d)))
    }
}

/// Partners per image for the crowding of large folders.
pub const CROWDING_SAMPLE: usize = 1024;

/// The `k` nearest hashes of every image, and each image's crowding within
/// `radius` bits (use the rule's `align_max_distance`).
pub fn hash_neighbours(
    hashes: &[PerceptualHash],
    k: usize,
    radius: u32,
    progress: &dyn ProgressSink,
    cancel: &CancelToken,
) -> anyhow::Result<HashNeighbours> {
    hash_neighbours_with(hashes, k, radius, BRUTE_FORCE_LIMIT, progress, cancel)
}

fn hash_neighbours_with(
    hashes: &[PerceptualHash],
    k: usize,
    radius: u32,
    brute_force_limit: usize,
    progress: &dyn ProgressSink,
    cancel: &CancelToken,
) -> anyhow::Result<HashNeighbours> {
    let n = hashes.len();
    let kept = k.min(n.saturating_sub(1));
    let mut indices = vec![u32::MAX; n * k];
    let mut distances = vec![u8::MAX; n * k];
    let mut crowding = vec![0.0f32; n];
    if kept == 0 {
        return Ok(HashNeighbours {
            k,
            indices,
            distances,
            crowding,
            radius,
        });
    }
    if n <= brute_force_limit {
        // One row per image: a bounded list of (distance, index) and the
        // crowding; the result does not depend on the thread count. Rows in
        // chunks so a cancel is seen within a few milliseconds.
        let rows: Vec<(Vec<(u32, u32)>, f32)> = (0..n)
            .collect::<Vec<_>>()
            .par_chunks(256)
            .map(|chunk| {
                if cancel.is_cancelled() {
                    return Err(Cancelled);
                }
                Ok(chunk
                    .iter()
                    .map(|&i| nearest_by_popcount(hashes, i, kept, radius))
                    .collect::<Vec<_>>())
            })
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .flatten()
            .collect();
        for (i, (row, crowd)) in rows.into_iter().enumerate() {
            crowding[i] = crowd;
            for (slot, (d, j)) in row.into_iter().enumerate() {
                indices[i * k + slot] = j;
                distances[i * k + slot] = d as u8;
            }
        }
    } else {
        // ±1/8 per bit: unit vectors whose cosine is 1 - 2·hamming/64, so the
        // cosine kNN is the Hamming kNN, found by the crate's own kNN stage.
        let data: Vec<f32> = hashes
            .iter()
            .flat_map(|h| {
                (0..64)
                    .rev()
                    .map(move |b| if (h.0 >> b) & 1 == 1 { 0.125 } else { -0.125 })
            })
            .collect();
        let e = Embeddings::new(n, 64, data);
        let graph = neighbours::build(&e, kept, KnnMethod::Auto, 0, progress, cancel)?;
        crowding = sampled_crowding(hashes, radius);
        for i in 0..n {
            // Exact distances from the hashes, re-sorted with the index tie-break.
            let mut row: Vec<(u32, u32)> = graph
                .neighbours(i)
                .map(|(j, _)| (hashes[i].distance(hashes[j]), j as u32))
                .collect();
            row.sort_unstable();
            for (slot, (d, j)) in row.into_iter().enumerate() {
                indices[i * k + slot] = j;
                distances[i * k + slot] = d as u8;
            }
        }
    }
    Ok(HashNeighbours {
        k,
        indices,
        distances,
        crowding,
        radius,
    })
}

/// Each image's crowding within `radius` from `CROWDING_SAMPLE` seeded
/// random partners: the same on any thread count. At least two images.
fn sampled_crowding(hashes: &[PerceptualHash], radius: u32) -> Vec<f32> {
    let n = hashes.len();
    (0..n)
        .into_par_iter()
        .map(|i| {
            let mut rng = Rng::fork(0x5EED_C20D, i as u64);
            let near = (0..CROWDING_SAMPLE)
                .filter(|_| {
                    let mut j = rng.below(n - 1);
                    if j >= i {
                        j += 1;
                    }
                    hashes[i].distance(hashes[j]) <= radius
                })
                .count();
            near as f32 / CROWDING_SAMPLE as f32
        })
        .collect()
}

/// Below this many images the exact neighbour search is cheap (4 million
/// popcounts): the gate is always decided on it.
const SAMPLED_GATE_MIN: usize = 2_000;

/// The gate from sampled crowding alone, when the sample already shows it
/// closed with a wide margin (mean crowding over twice the limit; the
/// sample's error on the mean is far below that): the hash neighbour search
/// is then skipped. Measured on MNIST-10k: 1.1 s of neighbour search saved
/// (crowding 14% against the 3% limit). `None`: search, and decide exactly.
pub fn clearly_closed(hashes: &[PerceptualHash], rule: &PerceptualRule) -> Option<Gate> {
    if hashes.len() < SAMPLED_GATE_MIN {
        return None;
    }
    let crowding = sampled_crowding(hashes, rule.align_max_distance);
    let g = gate_of(&crowding, rule.align_max_distance, rule);
    (!g.open && g.crowding > 2.0 * rule.folder_max_crowding).then_some(g)
}

/// The k nearest (distance, index) of image i and its crowding within `radius`.
fn nearest_by_popcount(
    hashes: &[PerceptualHash],
    i: usize,
    k: usize,
    radius: u32,
) -> (Vec<(u32, u32)>, f32) {
    // Counting sort by distance (0-64): exact, and ties come out by index.
    let mut counts = [0u32; 65];
    let h = hashes[i];
    for (j, other) in hashes.iter().enumerate() {
        if j != i {
            counts[h.distance(*other) as usize] += 1;
        }
    }
    let mut cutoff = 0usize;
    let mut seen = 0u32;
    while cutoff < 64 && (seen + counts[cutoff]) < k as u32 {
        seen += counts[cutoff];
        cutoff += 1;
    }
    let mut row: Vec<(u32, u32)> = hashes
        .iter()
        .enumerate()
        .filter(|&(j, _)| j != i)
        .filter_map(|(j, other)| {
            let d = h.distance(*other);
            (d as usize <= cutoff).then_some((d, j as u32))
        })
        .collect();
    row.sort_unstable();
    row.truncate(k);
    let near: u32 = counts[..=(radius.min(64) as usize)].iter().sum();
    (row, near as f32 / (hashes.len() - 1) as f32)
}

/// Decides the gate from the images' crowding.
pub fn gate(neighbours: &HashNeighbours, rule: &PerceptualRule) -> Gate {
    gate_of(&neighbours.crowding, neighbours.radius, rule)
}

/// The gate from each image's crowding within `radius` bits.
fn gate_of(crowding: &[f32], radius: u32, rule: &PerceptualRule) -> Gate {
    let n = crowding.len();
    if n < 2 {
        return Gate {
            open: false,
            crowding: 0.0,
            crowded_images: 0,
            reason: "fewer than two images".to_owned(),
        };
    }
    let mean = crowding.iter().map(|&c| f64::from(c)).sum::<f64>() / n as f64;
    let crowded = crowding
        .iter()
        .filter(|&&c| c > rule.image_max_crowding)
        .count();
    let open = mean <= f64::from(rule.folder_max_crowding);
    let pct = |v: f64| 100.0 * v;
    let reason = if open {
        format!(
            "perceptual hashes tell these images apart: on average {:.1}% of other images are \
             within {} bits (at most {:.0}% allowed); {crowded} crowded images left out",
            pct(mean),
            radius,
            pct(f64::from(rule.folder_max_crowding)),
        )
    } else {
        format!(
            "perceptual evidence not used: on average {:.1}% of other images are within {} bits \
             of an image's hash (more than {:.0}%), so hashes do not tell these images apart \
             (small centred shapes such as digits or icons do this); duplicates rest on the \
             cosine alone",
            pct(mean),
            radius,
            pct(f64::from(rule.folder_max_crowding)),
        )
    };
    Gate {
        open,
        crowding: mean as f32,
        crowded_images: crowded,
        reason,
    }
}

/// The pairs that look like the same photo. `extra` adds candidate pairs from
/// another kNN graph (the embedding's); pairs further apart in hash than
/// `align_max_distance` are never links.
pub fn perceptual_links(
    fingerprints: &[&Fingerprint],
    neighbours: &HashNeighbours,
    extra: Option<&KnnGraph>,
    rule: &PerceptualRule,
    cancel: &CancelToken,
) -> Result<PerceptualEvidence, Cancelled> {
    let n = fingerprints.len();
    let gate = gate(neighbours, rule);
    if !gate.open {
        return Ok(PerceptualEvidence {
            gate,
            links: Vec::new(),
            candidates: 0,
        });
    }
    let far = rule.align_max_distance.max(rule.hash_alone);
    let usable = |i: usize| neighbours.crowding[i] <= rule.image_max_crowding;
    let mut candidates: Vec<(usize, usize, u32)> = Vec::new();
    for i in (0..n).filter(|&i| usable(i)) {
        for (j, d) in neighbours.of(i) {
            if d <= far && usable(j) {
                candidates.push((i.min(j), i.max(j), d));
            }
        }
        if let Some(graph) = extra {
            for (j, _) in graph.neighbours(i) {
                let d = fingerprints[i].hash.distance(fingerprints[j].hash);
                if d <= far && j != i && j < n && usable(j) {
                    candidates.push((i.min(j), i.max(j), d));
                }
            }
        }
    }
    candidates.sort_unstable();
    candidates.dedup();
    let count = candidates.len();

    // Squares are prepared per pair, not kept for every image (12 KiB each:
    // 1.2 GB at 100,000 images); candidates are sorted by `a`, so a chunk
    // prepares each `a` once.
    let links: Vec<Option<PerceptualLink>> = candidates
        .par_chunks(512)
        .map(|chunk| {
            if cancel.is_cancelled() {
                return Err(Cancelled);
            }
            let mut current: Option<(usize, Prepared)> = None;
            Ok(chunk
                .iter()
                .map(|&(a, b, d)| {
                    if current.as_ref().is_none_or(|(i, _)| *i != a) {
                        current = Some((a, Prepared::new(fingerprints[a])));
                    }
                    let pa = &current.as_ref().expect("set above").1;
                    decide(pa, &Prepared::new(fingerprints[b]), a, b, d, rule)
                })
                .collect::<Vec<_>>())
        })
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .flatten()
        .collect();
    Ok(PerceptualEvidence {
        gate,
        links: links.into_iter().flatten().collect(),
        candidates: count,
    })
}

/// The rule for one candidate pair.
fn decide(
    pa: &Prepared,
    pb: &Prepared,
    a: usize,
    b: usize,
    d: u32,
    rule: &PerceptualRule,
) -> Option<PerceptualLink> {
    let contrasted = pa.contrast >= rule.low_contrast && pb.contrast >= rule.low_contrast;
    let link = |aligned| PerceptualLink {
        a,
        b,
        hash_distance: d,
        aligned,
    };
    if contrasted {
        if d <= rule.hash_alone {
            return Some(link(None));
        }
        if d <= rule.align_max_distance {
            let r = aligned_correlation(pa, pb, rule.align_min);
            return (r >= rule.align_min).then(|| link(Some(r)));
        }
        None
    } else {
        if d <= rule.low_contrast_close_distance
            && crate::dot(&pa.plain, &pb.plain) >= rule.low_contrast_grey_min
        {
            return Some(link(None));
        }
        if d <= rule.low_contrast_distance {
            let r = aligned_correlation(pa, pb, rule.low_contrast_align_min);
            return (r >= rule.low_contrast_align_min).then(|| link(Some(r)));
        }
        None
    }
}

/// One image's square, ready for alignment.
pub struct Prepared {
    /// Detail: the grey square minus its 3×3 mean.
    detail: Vec<f32>,
    /// `detail`, centred and L2-normalised: the target windows are compared to.
    whole: Vec<f32>,
    /// The grey square, centred and L2-normalised (the pixel embedding of a
    /// photo, whatever embedder the run uses).
    plain: Vec<f32>,
    /// Grey standard deviation of the square (0-255).
    contrast: f32,
}

impl Prepared {
    pub fn new(fp: &Fingerprint) -> Self {
        let grey: Vec<f32> = fp.grey.iter().map(|&g| f32::from(g)).collect();
        let mean = grey.iter().sum::<f32>() / NN as f32;
        let contrast =
            (grey.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / NN as f32).sqrt();
        let mut plain: Vec<f32> = grey.iter().map(|v| v - mean).collect();
        if l2_normalize(&mut plain) < 1e-6 {
            plain.iter_mut().for_each(|v| *v = 0.0);
        }
        let detail = highpass(&grey);
        let mut whole = detail.clone();
        let m = whole.iter().sum::<f32>() / NN as f32;
        whole.iter_mut().for_each(|v| *v -= m);
        if l2_normalize(&mut whole) < 1e-6 {
            whole.iter_mut().for_each(|v| *v = 0.0);
        }
        Self {
            detail,
            whole,
            plain,
            contrast,
        }
    }

    /// Grey standard deviation of the square (0-255).
    pub fn contrast(&self) -> f32 {
        self.contrast
    }
}

/// Window sides tried (fractions of the image side) and offsets per axis.
/// Measured: 3 scales × 5×5 offsets find every planted 4% and 8% crop; a
/// 3×3 grid loses some 8% crops.
const SCALES: [f32; 3] = [1.0, 0.96, 0.92];
const STEPS: usize = 5;

/// Best correlation of detail between the whole of one image and a window of
/// the other, both ways; stops early once `enough` is reached.
pub fn aligned_correlation(a: &Prepared, b: &Prepared, enough: f32) -> f32 {
    let mut best = -1.0f32;
    let mut window = vec![0.0f32; NN];
    for &s in &SCALES {
        let offsets: Vec<f32> = if s >= 1.0 {
            vec![0.0]
        } else {
            (0..STEPS)
                .map(|i| (1.0 - s) * i as f32 / (STEPS - 1) as f32)
                .collect()
        };
        for (x, y) in [(a, b), (b, a)] {
            for &oy in &offsets {
                for &ox in &offsets {
                    sample_window(&x.detail, s, ox, oy, &mut window);
                    best = best.max(correlation(&window, &y.whole));
                    if best >= enough {
                        return best;
                    }
                }
            }
            if s >= 1.0 {
                // The whole-to-whole comparison is symmetric: once is enough.
                break;
            }
        }
    }
    best
}

/// Correlation of `x` with a centred unit vector `target`: the target has
/// zero mean, so x's mean drops out of the product and only its norm is needed.
fn correlation(x: &[f32], target: &[f32]) -> f32 {
    let (mut sum, mut sum2) = (0.0f32, 0.0f32);
    for &v in x {
        sum += v;
        sum2 += v * v;
    }
    let var = sum2 - sum * sum / NN as f32;
    if var <= 1e-6 {
        return 0.0;
    }
    crate::dot(x, target) / var.sqrt()
}

/// Samples `square` over the window [ox, ox+s]×[oy, oy+s] (fractions of the
/// side) onto an N×N grid, bilinearly, pixel centre to pixel centre. Sampling
/// the detail image directly (instead of high-passing every window) is what
/// makes this cheap; the difference is a sub-pixel change of the filter.
fn sample_window(square: &[f32], s: f32, ox: f32, oy: f32, out: &mut [f32]) {
    let coord = |o: f32, i: usize| {
        let c = (o + s * (i as f32 + 0.5) / N as f32) * N as f32 - 0.5;
        let c = c.clamp(0.0, (N - 1) as f32);
        let c0 = (c.floor() as usize).min(N - 2);
        (c0, c - c0 as f32)
    };
    let mut xs = [(0usize, 0.0f32); N];
    for (i, x) in xs.iter_mut().enumerate() {
        *x = coord(ox, i);
    }
    for (r, row) in out.chunks_exact_mut(N).enumerate() {
        let (y0, fy) = coord(oy, r);
        let top = &square[y0 * N..(y0 + 1) * N];
        let bottom = &square[(y0 + 1) * N..(y0 + 2) * N];
        for (o, &(x0, fx)) in row.iter_mut().zip(&xs) {
            let t = top[x0] + (top[x0 + 1] - top[x0]) * fx;
            let b = bottom[x0] + (bottom[x0 + 1] - bottom[x0]) * fx;
            *o = t + (b - t) * fy;
        }
    }
}

/// The square minus its 3×3 mean (edges replicated): what is left is detail.
/// Separable: a 3-tap row sum, then a 3-tap column sum of the row sums.
fn highpass(x: &[f32]) -> Vec<f32> {
    let mut rows = vec![0.0f32; NN];
    for (src, dst) in x.chunks_exact(N).zip(rows.chunks_exact_mut(N)) {
        dst[0] = 2.0 * src[0] + src[1];
        for c in 1..N - 1 {
            dst[c] = src[c - 1] + src[c] + src[c + 1];
        }
        dst[N - 1] = src[N - 2] + 2.0 * src[N - 1];
    }
    let mut out = vec![0.0f32; NN];
    for r in 0..N {
        let up = r.saturating_sub(1);
        let down = (r + 1).min(N - 1);
        for c in 0..N {
            let sum = rows[up * N + c] + rows[r * N + c] + rows[down * N + c];
            out[r * N + c] = x[r * N + c] - sum / 9.0;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::progress::NoProgress;
    use crate::rng::Rng;
    use image::imageops::{self, FilterType};
    use image::{DynamicImage, Rgb, RgbImage};

    /// A textured "photo": smooth blobs plus seeded value noise (random
    /// levels on a 10-px grid, bilinearly joined): detail a 32×32 square
    /// still shows, as a real photo's would.
    fn photo(w: u32, h: u32, seed: u64) -> RgbImage {
        let mut rng = Rng::new(seed);
        let blobs: Vec<(f32, f32, f32, f32)> = (0..6)
            .map(|_| {
                (
                    rng.unit_f32(),
                    rng.unit_f32(),
                    0.05 + 0.2 * rng.unit_f32(),
                    200.0 * rng.unit_f32() - 100.0,
                )
            })
            .collect();
        let (gw, gh) = (w / 10 + 2, h / 10 + 2);
        let grid: Vec<f32> = (0..gw * gh).map(|_| 60.0 * rng.unit_f32()).collect();
        RgbImage::from_fn(w, h, |x, y| {
            let (fx, fy) = (x as f32 / w as f32, y as f32 / h as f32);
            let mut v = 100.0;
            for &(cx, cy, r, amp) in &blobs {
                v += amp * (-((fx - cx).powi(2) + (fy - cy).powi(2)) / (r * r)).exp();
            }
            let (gx, gy) = (x as f32 / 10.0, y as f32 / 10.0);
            let (x0, y0) = (gx as u32, gy as u32);
            let (tx, ty) = (gx.fract(), gy.fract());
            let g = |i: u32, j: u32| grid[(j * gw + i) as usize];
            let top = g(x0, y0) * (1.0 - tx) + g(x0 + 1, y0) * tx;
            let bottom = g(x0, y0 + 1) * (1.0 - tx) + g(x0 + 1, y0 + 1) * tx;
            let v = (v + top * (1.0 - ty) + bottom * ty).clamp(0.0, 255.0) as u8;
            Rgb([v, v, v])
        })
    }

    fn fp(img: &RgbImage) -> Fingerprint {
        Fingerprint::of(&DynamicImage::ImageRgb8(img.clone()))
    }

    #[test]
    fn crops_align_and_different_photos_do_not() {
        let base = photo(240, 180, 1);
        let crop = imageops::crop_imm(&base, 7, 3, 221, 166).to_image(); // 8% off
        let half = imageops::resize(&base, 120, 90, FilterType::Lanczos3);
        let (pb, pc, ph) = (
            Prepared::new(&fp(&base)),
            Prepared::new(&fp(&crop)),
            Prepared::new(&fp(&half)),
        );
        assert!(
            aligned_correlation(&pb, &pc, 1.0) > 0.8,
            "crop: {}",
            aligned_correlation(&pb, &pc, 1.0)
        );
        assert!(aligned_correlation(&pb, &ph, 1.0) > 0.8);
        for seed in 2..6 {
            let other = Prepared::new(&fp(&photo(240, 180, seed)));
            let r = aligned_correlation(&pb, &other, 1.0);
            assert!(r < 0.6, "seed {seed}: {r}");
        }
    }

    #[test]
    fn brute_force_neighbours_are_exact_with_index_ties() {
        let hashes: Vec<PerceptualHash> = [0b0000u64, 0b0001, 0b0011, 0b0001, 0b1111]
            .iter()
            .map(|&h| PerceptualHash(h))
            .collect();
        let nn = hash_neighbours(&hashes, 3, 1, &NoProgress, &CancelToken::new()).unwrap();
        let row: Vec<(usize, u32)> = nn.of(0).collect();
        assert_eq!(row, vec![(1, 1), (3, 1), (2, 2)]);
        // Image 0 has two of its four others within 1 bit.
        assert_eq!(nn.crowding[0], 0.5);
        let row: Vec<(usize, u32)> = nn.of(4).collect();
        assert_eq!(row, vec![(2, 2), (1, 3), (3, 3)]);
    }

    #[test]
    fn both_neighbour_paths_agree() {
        let mut rng = Rng::new(9);
        let hashes: Vec<PerceptualHash> =
            (0..300).map(|_| PerceptualHash(rng.next_u64())).collect();
        let brute = hash_neighbours(&hashes, 5, 20, &NoProgress, &CancelToken::new()).unwrap();
        let large =
            hash_neighbours_with(&hashes, 5, 20, 0, &NoProgress, &CancelToken::new()).unwrap();
        for i in 0..300 {
            let a: Vec<u32> = brute.of(i).map(|(_, d)| d).collect();
            let b: Vec<u32> = large.of(i).map(|(_, d)| d).collect();
            assert_eq!(a, b, "row {i}");
        }
    }

    #[test]
    fn crowded_hashes_close_the_gate() {
        let rule = PerceptualRule::default();
        let r = rule.align_max_distance;
        // 200 images within 2 bits of each other: digits-like crowding.
        let crowded: Vec<PerceptualHash> =
            (0..200u64).map(|i| PerceptualHash(1 << (i % 3))).collect();
        let nn = hash_neighbours(
            &crowded,
            rule.neighbours,
            r,
            &NoProgress,
            &CancelToken::new(),
        )
        .unwrap();
        let g = gate(&nn, &rule);
        assert!(!g.open && g.reason.contains("not used"), "{g:?}");
        // 200 random hashes: about 32 ± 4 bits apart, almost never within 20.
        let mut rng = Rng::new(3);
        let spread: Vec<PerceptualHash> =
            (0..200).map(|_| PerceptualHash(rng.next_u64())).collect();
        let nn = hash_neighbours(
            &spread,
            rule.neighbours,
            r,
            &NoProgress,
            &CancelToken::new(),
        )
        .unwrap();
        let g = gate(&nn, &rule);
        assert!(g.open && g.crowded_images == 0, "{g:?}");
    }

    #[test]
    fn a_clearly_crowded_folder_is_closed_without_the_neighbour_search() {
        let rule = PerceptualRule::default();
        // 3,000 images within 2 bits of each other: digits-like crowding.
        let crowded: Vec<PerceptualHash> =
            (0..3000u64).map(|i| PerceptualHash(1 << (i % 3))).collect();
        let g = clearly_closed(&crowded, &rule).expect("closed from the sample");
        let nn = hash_neighbours(
            &crowded,
            rule.neighbours,
            rule.align_max_distance,
            &NoProgress,
            &CancelToken::new(),
        )
        .unwrap();
        let exact = gate(&nn, &rule);
        assert!(!g.open && !exact.open);
        assert!(
            (g.crowding - exact.crowding).abs() < 0.01,
            "{} vs {}",
            g.crowding,
            exact.crowding
        );
        // Spread hashes, and small folders, are decided exactly.
        let mut rng = Rng::new(4);
        let spread: Vec<PerceptualHash> =
            (0..3000).map(|_| PerceptualHash(rng.next_u64())).collect();
        assert!(clearly_closed(&spread, &rule).is_none());
        assert!(clearly_closed(&crowded[..500], &rule).is_none());
    }

    #[test]
    fn sampled_crowding_matches_the_exact_one() {
        // Half the images share one hash, half are random: crowding ≈ 0.5 and ≈ 0.
        let mut rng = Rng::new(5);
        let hashes: Vec<PerceptualHash> = (0..2000)
            .map(|i| PerceptualHash(if i % 2 == 0 { 0 } else { rng.next_u64() }))
            .collect();
        let exact = hash_neighbours(&hashes, 4, 20, &NoProgress, &CancelToken::new()).unwrap();
        let sampled =
            hash_neighbours_with(&hashes, 4, 20, 0, &NoProgress, &CancelToken::new()).unwrap();
        assert!(
            (exact.crowding[0] - 0.5).abs() < 0.01,
            "{}",
            exact.crowding[0]
        );
        assert!(exact.crowding[1] < 0.05, "{}", exact.crowding[1]);
        for i in 0..2000 {
            assert!(
                (exact.crowding[i] - sampled.crowding[i]).abs() < 0.06,
                "image {i}"
            );
        }
        // Seeded: the same sample every time.
        let again =
            hash_neighbours_with(&hashes, 4, 20, 0, &NoProgress, &CancelToken::new()).unwrap();
        assert_eq!(sampled.crowding, again.crowding);
    }

    #[test]
    fn links_find_planted_copies_only_when_the_gate_is_open() {
        let mut images: Vec<RgbImage> = (0..40).map(|s| photo(200, 150, 100 + s)).collect();
        images.push(imageops::crop_imm(&images[0], 4, 3, 192, 144).to_image());
        images.push(imageops::resize(&images[1], 100, 75, FilterType::Lanczos3));
        let fps: Vec<Fingerprint> = images.iter().map(fp).collect();
        let hashes: Vec<PerceptualHash> = fps.iter().map(|f| f.hash).collect();
        let rule = PerceptualRule::default();
        let nn = hash_neighbours(
            &hashes,
            rule.neighbours,
            rule.align_max_distance,
            &NoProgress,
            &CancelToken::new(),
        )
        .unwrap();
        let ev = perceptual_links(
            &fps.iter().collect::<Vec<_>>(),
            &nn,
            None,
            &rule,
            &CancelToken::new(),
        )
        .unwrap();
        assert!(ev.gate.open, "{:?}", ev.gate);
        let pairs: Vec<(usize, usize)> = ev.links.iter().map(|l| (l.a, l.b)).collect();
        assert!(pairs.contains(&(0, 40)), "{pairs:?}");
        assert!(pairs.contains(&(1, 41)), "{pairs:?}");
        assert_eq!(pairs.len(), 2, "no other pair: {:?}", ev.links);
        assert!(ev.link(40, 0).is_some());

        let closed = PerceptualRule {
            folder_max_crowding: 0.0,
            ..rule
        };
        let ev = perceptual_links(
            &fps.iter().collect::<Vec<_>>(),
            &nn,
            None,
            &closed,
            &CancelToken::new(),
        )
        .unwrap();
        assert!(ev.links.is_empty() && !ev.gate.open);
    }

    #[test]
    fn cancelled_runs_stop() {
        let hashes: Vec<PerceptualHash> = (0..1000u64).map(PerceptualHash).collect();
        let cancel = CancelToken::new();
        cancel.cancel();
        assert!(hash_neighbours(&hashes, 5, 20, &NoProgress, &cancel).is_err());
    }

    #[test]
    fn tiny_inputs_do_not_panic() {
        let rule = PerceptualRule::default();
        for n in 0..3 {
            let fps: Vec<Fingerprint> = (0..n).map(|s| fp(&photo(50, 40, s as u64))).collect();
            let hashes: Vec<PerceptualHash> = fps.iter().map(|f| f.hash).collect();
            let nn = hash_neighbours(
                &hashes,
                rule.neighbours,
                rule.align_max_distance,
                &NoProgress,
                &CancelToken::new(),
            )
            .unwrap();
            let ev = perceptual_links(
                &fps.iter().collect::<Vec<_>>(),
                &nn,
                None,
                &rule,
                &CancelToken::new(),
            )
            .unwrap();
            assert!(ev.links.is_empty());
        }
    }
}
