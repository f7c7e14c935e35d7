//! Label issues: for every labelled image, how likely its given label is
//! wrong, and the label it most likely has instead.
//!
//! How the score is computed (the README's column docs say the same):
//!
//! 1. For each image and each class seen among its neighbours, the *class
//!    radius* is the mean distance to its 3 nearest neighbours carrying that
//!    label (fewer if the class is that small). A class with fewer members in
//!    the neighbour list than it needs is filled up with the distance of the
//!    last neighbour, a lower bound of where the rest are.
//! 2. A k-nearest-neighbour density estimate turns radii into class
//!    probabilities: `p(c | image) ∝ radius_c^(-s)`. The class prior is
//!    already in it (a large class has its members closer). A class with no
//!    member among the neighbours counts as if its members were just past the
//!    last neighbour: the most it could weigh. (Leaving such classes out
//!    instead halves the fitted noise rate on MNIST: the calibration needs them.)
//! 3. The labels are assumed right except for a fraction `ε` that were
//!    replaced by another class at random. The sharpness `s` and the noise
//!    rate `ε` are fitted to the dataset by maximum likelihood of its own given
//!    labels (a grid and golden-section search over `s`, EM for `ε`), so the
//!    scores are calibrated without a held-out set.
//! 4. The score is the posterior probability that the given label is one of
//!    the replaced ones:
//!    `ε/(C-1)·(1-p) / (ε/(C-1)·(1-p) + (1-ε)·p)` with `p = p(given | image)`.
//!    Above 0.5 the label is more likely wrong than right; the scores add up
//!    to about the number of wrong labels (`noise_rate × labelled`).
//!
//! The suggested label is the other class with the highest probability (the
//! nearest class radius): what the label most likely should be if it is
//! wrong.
//!
//! 5. Copies (cosine above 0.999) filed under different labels override the
//!    model: the share of an image's group of copies labelled otherwise is a
//!    floor for its score, and the group's most common other label the
//!    suggestion (see [`copies_disagree`]).
//!
//! Why radii and not neighbour votes: a vote fraction ties at 0 for every
//! image whose neighbours all disagree with it, and those are exactly the
//! ones to rank. The radius ratio keeps ranking them: an image whose given
//! class is nowhere near ranks above one whose given class is just a little
//! further than another. Measured on MNIST with planted errors, this beats
//! cleanlab's confident learning on 5-fold kNN probabilities and plain kNN
//! disagreement (see the curation report). Using the 3rd-nearest member
//! rather than the nearest one keeps a single near-copy (or a second wrongly
//! labelled copy) from vouching for a wrong label.
//!
//! Cost: O(n·k) to read the graph, then O(n·classes present) per step of the
//! one-dimensional fit, about 40 steps. The graph should be wider than the 15
//! neighbours UMAP uses: [`NEIGHBOURS`] (50) is what was measured to pay.

use rayon::prelude::*;

use crate::Embeddings;
use crate::neighbours::KnnGraph;
use crate::progress::{CancelToken, Cancelled};

/// Neighbours per image the score was tuned with: 30 loses about 1 point of
/// precision, 100 gains under half a point, 15 loses 4 (MNIST, pixels).
pub const NEIGHBOURS: usize = 50;

/// Members of a class averaged into its radius.
const MEMBERS: usize = 3;

/// Radii below this (exact copies) are clamped so their logarithm is finite.
const MIN_RADIUS: f32 = 1e-4;

/// Images per parallel work item: fixed, so the partial sums (and hence the
/// fitted parameters) are the same on any number of threads.
const CHUNK: usize = 4096;

#[derive(Clone, Debug, Default)]
pub struct LabelIssues {
    /// Per image: probability that its given label is wrong, in [0, 1]. `None`
    /// for an image without a label, and for one none of whose neighbours has a
    /// label (nothing to compare it with).
    pub score: Vec<Option<f32>>,
    /// Per image: the most likely other label. `None` where `score` is `None`
    /// or where every labelled neighbour has the image's own label.
    pub suggested: Vec<Option<u32>>,
    /// Per image: how many times farther the given class is than the
    /// suggested one (their radii's ratio; above 1, the suggested class is
    /// closer). `None` where `suggested` is `None`. It keeps ordering the
    /// blatant cases where `score` has saturated at 1.0 (see [`Self::worst_first`]).
    pub ratio: Vec<Option<f32>>,
    /// Fitted fraction of labelled images whose label is wrong.
    pub noise_rate: f32,
    /// Fitted exponent `s` of `p(c) ∝ radius_c^(-s)`.
    pub sharpness: f32,
}

impl LabelIssues {
    /// Images with a score, most suspicious first: by score, then by ratio
    /// (the score rounds to 1.0 in f32 for the clearest cases), then by index.
    pub fn worst_first(&self) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.score.len())
            .filter(|&i| self.score[i].is_some())
            .collect();
        let key = |i: usize| (self.score[i].unwrap_or(0.0), self.ratio[i].unwrap_or(0.0));
        order.sort_by(|&a, &b| {
            let (ka, kb) = (key(a), key(b));
            kb.0.total_cmp(&ka.0)
                .then(kb.1.total_cmp(&ka.1))
                .then(a.cmp(&b))
        });
        order
    }
}

/// What one image's neighbours say: for each other class present, the log of
/// its radius minus the log of the given class's radius.
struct Evidence {
    /// Offsets into `deltas` per image (`n + 1` entries); an image without
    /// evidence has `usable[i] == false`.
    offsets: Vec<usize>,
    deltas: Vec<f32>,
    /// The class of each delta.
    classes: Vec<u32>,
    /// Per image: how many classes (other than the given one) have no member
    /// among its neighbours, and their log radius relative to the given
    /// class's (all of them are put at the list's edge).
    absent: Vec<(u32, f32)>,
    usable: Vec<bool>,
}

/// Scores every labelled image. `given[i]` is image `i`'s label (`None` when
/// it has none), each below `n_classes`. Uses every neighbour the graph has;
/// build it with [`NEIGHBOURS`] or more.
pub fn label_issues(
    embeddings: &Embeddings,
    knn: &KnnGraph,
    given: &[Option<u32>],
    n_classes: usize,
    cancel: &CancelToken,
) -> anyhow::Result<LabelIssues> {
    let n = embeddings.n;
    anyhow::ensure!(
        knn.n == n && knn.indices.len() == n * knn.k && knn.distances.len() == n * knn.k,
        "the neighbour graph ({} images) does not match the embeddings ({n} images); \
         rebuild it from the same embeddings",
        knn.n
    );
    anyhow::ensure!(
        given.len() == n,
        "{} labels were given for {n} images; give one label (or none) per image",
        given.len()
    );
    let mut members = vec![0usize; n_classes];
    for (i, label) in given.iter().enumerate() {
        if let Some(c) = *label {
            anyhow::ensure!(
                (c as usize) < n_classes,
                "image {i} has label {c}, but there are only {n_classes} classes"
            );
            members[c as usize] += 1;
        }
    }
    let present = members.iter().filter(|&&m| m > 0).count();
    let labelled: usize = members.iter().sum();
    if present < 2 {
        // One class (or none): no label can be mistaken for another.
        return Ok(LabelIssues {
            score: given.iter().map(|g| g.map(|_| 0.0)).collect(),
            suggested: vec![None; n],
            ratio: vec![None; n],
            noise_rate: 0.0,
            sharpness: 0.0,
        });
    }

    let evidence = gather(knn, given, &members, present, cancel)?;
    let wrong_share = 1.0 / (present - 1) as f64;
    let (sharpness, noise) = fit(&evidence, wrong_share, labelled, cancel)?;

    let mut score = vec![None; n];
    let mut suggested = vec![None; n];
    let mut ratio = vec![None; n];
    for i in 0..n {
        if !evidence.usable[i] {
            continue;
        }
        let range = evidence.offsets[i]..evidence.offsets[i + 1];
        let p = p_given(
            &evidence.deltas[range.clone()],
            evidence.absent[i],
            sharpness,
        );
        score[i] = Some(posterior_wrong(p, noise, wrong_share) as f32);
        // The nearest other class; ties go to the smaller class id.
        if let Some((&delta, &c)) = evidence.deltas[range.clone()]
            .iter()
            .zip(&evidence.classes[range])
            .min_by(|a, b| a.0.total_cmp(b.0).then(a.1.cmp(b.1)))
        {
            suggested[i] = Some(c);
            ratio[i] = Some((-delta).exp());
        }
    }
    copies_disagree(knn, given, &mut score, &mut suggested, &mut ratio);
    Ok(LabelIssues {
        score,
        suggested,
        ratio,
        noise_rate: noise as f32,
        sharpness: sharpness as f32,
    })
}

/// Copies of an image (cosine above 0.999) that carry another label: one
/// picture cannot be both. The model above sees two labels equally near and
/// calls the place ambiguous, not wrong (80 copies of one digit, half filed
/// under 4 and half under 9, scored 0.001 each). So within each group of
/// copies ([`super::copy_groups`]: a group larger than a neighbour list is
/// counted whole), the share of the group labelled otherwise
/// is a floor for an image's score: a group split half and half is all
/// flagged (0.5); a lone dissenter among nine copies scores 0.9, and the nine
/// 0.1. The suggestion is then the group's most common other label (ties to
/// the smaller class id).
fn copies_disagree(
    knn: &KnnGraph,
    given: &[Option<u32>],
    score: &mut [Option<f32>],
    suggested: &mut [Option<u32>],
    ratio: &mut [Option<f32>],
) {
    let group = super::copy_groups(knn);
    // (group, label) of every labelled image with a copy, sorted: each
    // group's label counts are runs.
    let mut members: Vec<(usize, u32)> = group
        .iter()
        .zip(given)
        .filter_map(|(g, c)| Some(((*g)?, (*c)?)))
        .collect();
    if members.is_empty() {
        return;
    }
    members.sort_unstable();
    let mut counts: std::collections::HashMap<usize, Vec<(u32, usize)>> =
        std::collections::HashMap::new();
    for run in members.chunk_by(|a, b| a == b) {
        counts
            .entry(run[0].0)
            .or_default()
            .push((run[0].1, run.len()));
    }
    for (i, (g, own)) in group.iter().zip(given).enumerate() {
        let (Some(g), Some(own)) = (*g, *own) else {
            continue;
        };
        let labels = &counts[&g];
        if labels.len() < 2 {
            continue;
        }
        let total: usize = labels.iter().map(|&(_, m)| m).sum();
        let mine = labels
            .iter()
            .find(|&&(c, _)| c == own)
            .map_or(0, |&(_, m)| m);
        let share = (total - mine) as f32 / total as f32;
        if score[i].is_some_and(|s| s >= share) {
            continue;
        }
        // The most common other label; ties to the smaller id (labels are
        // sorted, and only a strictly larger count replaces the best).
        let mut best: Option<(u32, usize)> = None;
        for &(c, m) in labels.iter().filter(|&&(c, _)| c != own) {
            if best.is_none_or(|(_, b)| m > b) {
                best = Some((c, m));
            }
        }
        score[i] = Some(share);
        suggested[i] = best.map(|(c, _)| c);
        // Both labels sit at distance zero: neither class is nearer.
        ratio[i] = Some(ratio[i].unwrap_or(1.0).max(1.0));
    }
}

/// Reads the graph once: per labelled image, the log radius of each class
/// present relative to its given class.
fn gather(
    knn: &KnnGraph,
    given: &[Option<u32>],
    members: &[usize],
    present: usize,
    cancel: &CancelToken,
) -> Result<Evidence, Cancelled> {
    let n = knn.n;
    let starts: Vec<usize> = (0..n).step_by(CHUNK).collect();
    type Part = (Vec<usize>, Vec<f32>, Vec<u32>, Vec<(u32, f32)>, Vec<bool>);
    let parts: Vec<Part> = starts
        .par_iter()
        .map(|&start| {
            cancel.check()?;
            let mut lens = Vec::new();
            let mut deltas = Vec::new();
            let mut classes = Vec::new();
            let mut absent = Vec::new();
            let mut usable = Vec::new();
            // (class, members found, sum of their distances), in order of appearance.
            let mut seen: Vec<(u32, usize, f32)> = Vec::new();
            for i in start..(start + CHUNK).min(n) {
                let before = deltas.len();
                let gone = match given[i] {
                    Some(own) => image_evidence(
                        knn,
                        i,
                        own,
                        given,
                        members,
                        &mut seen,
                        &mut deltas,
                        &mut classes,
                    ),
                    None => None,
                };
                lens.push(deltas.len() - before);
                usable.push(gone.is_some());
                absent.push(gone.map_or((0, 0.0), |(edge, found)| {
                    // Classes present in the data but not among the neighbours.
                    ((present - 1 - found) as u32, edge)
                }));
            }
            Ok((lens, deltas, classes, absent, usable))
        })
        .collect::<Result<_, Cancelled>>()?;

    let mut evidence = Evidence {
        offsets: Vec::with_capacity(n + 1),
        deltas: Vec::new(),
        classes: Vec::new(),
        absent: Vec::with_capacity(n),
        usable: Vec::with_capacity(n),
    };
    evidence.offsets.push(0);
    for (lens, deltas, classes, absent, usable) in parts {
        for len in lens {
            let last = *evidence.offsets.last().unwrap_or(&0);
            evidence.offsets.push(last + len);
        }
        evidence.deltas.extend(deltas);
        evidence.classes.extend(classes);
        evidence.absent.extend(absent);
        evidence.usable.extend(usable);
    }
    Ok(evidence)
}

/// Pushes image `i`'s deltas for the other classes among its neighbours.
/// Returns the log radius of an absent class (the list's edge) relative to the
/// given class's, and how many other classes were found; `None` when no
/// neighbour has a label.
#[allow(clippy::too_many_arguments)]
fn image_evidence(
    knn: &KnnGraph,
    i: usize,
    own: u32,
    given: &[Option<u32>],
    members: &[usize],
    seen: &mut Vec<(u32, usize, f32)>,
    deltas: &mut Vec<f32>,
    classes: &mut Vec<u32>,
) -> Option<(f32, usize)> {
    seen.clear();
    let mut last = None;
    let mut any_label = false;
    for (j, d) in knn.neighbours(i) {
        last = Some(d);
        let Some(c) = given.get(j).copied().flatten() else {
            continue;
        };
        any_label = true;
        let need = wanted(c, own, members);
        match seen.iter_mut().find(|s| s.0 == c) {
            Some(s) if s.1 < need => {
                s.1 += 1;
                s.2 += d;
            }
            Some(_) => {}
            None => seen.push((c, 1, d)),
        }
    }
    let (Some(edge), true) = (last, any_label) else {
        return None;
    };
    // Missing members are at least as far as the last neighbour.
    let radius = |c: u32, found: usize, sum: f32| {
        let need = wanted(c, own, members);
        let r = (sum + need.saturating_sub(found) as f32 * edge) / need as f32;
        r.max(MIN_RADIUS).ln()
    };
    let own_log = seen
        .iter()
        .find(|s| s.0 == own)
        .map(|s| radius(own, s.1, s.2))
        .unwrap_or_else(|| radius(own, 0, 0.0));
    let mut others = 0;
    for &(c, found, sum) in seen.iter() {
        if c != own {
            deltas.push(radius(c, found, sum) - own_log);
            classes.push(c);
            others += 1;
        }
    }
    Some((edge.max(MIN_RADIUS).ln() - own_log, others))
}

/// How many members of class `c` make its radius for an image labelled `own`:
/// 3, or all the others if the class is smaller. An image alone in its class
/// still needs one, which it can only find at the list's edge.
fn wanted(c: u32, own: u32, members: &[usize]) -> usize {
    let others = members[c as usize] - usize::from(c == own);
    others.clamp(1, MEMBERS)
}

/// `p(given)` from the other classes' log-radius differences, those present
/// among the neighbours and `absent.0` more at relative log radius `absent.1`.
fn p_given(deltas: &[f32], absent: (u32, f32), sharpness: f64) -> f64 {
    let rest: f64 = deltas
        .iter()
        .map(|&d| (-sharpness * d as f64).exp())
        .sum::<f64>()
        + absent.0 as f64 * (-sharpness * absent.1 as f64).exp();
    1.0 / (1.0 + rest)
}

/// Posterior that the label was replaced, given `p = p(given | image)`.
fn posterior_wrong(p: f64, noise: f64, wrong_share: f64) -> f64 {
    let wrong = (1.0 - p) * noise * wrong_share;
    let right = p * (1.0 - noise);
    if wrong + right > 0.0 {
        wrong / (wrong + right)
    } else {
        0.0
    }
}

/// Maximum-likelihood sharpness and noise rate. For each sharpness the noise
/// rate is profiled out by EM; the sharpness is searched on a log grid, then
/// refined by golden section around the best grid point.
fn fit(
    e: &Evidence,
    wrong_share: f64,
    labelled: usize,
    cancel: &CancelToken,
) -> Result<(f64, f64), Cancelled> {
    // Never quite zero noise: the scores would all become 0 and stop ranking.
    let floor = (0.1 / labelled.max(1) as f64).min(1e-3);
    let evaluate = |log_s: f64| -> Result<(f64, f64), Cancelled> {
        let p = p_all(e, log_s.exp(), cancel)?;
        Ok(profile_noise(&p, wrong_share, floor))
    };
    const GRID: usize = 28;
    let (lo, hi) = (0.5f64.ln(), 500f64.ln());
    let step = (hi - lo) / (GRID - 1) as f64;
    let mut best = (f64::NEG_INFINITY, 0usize, 0.05);
    for g in 0..GRID {
        let (ll, noise) = evaluate(lo + step * g as f64)?;
        if ll > best.0 {
            best = (ll, g, noise);
        }
    }
    // Golden section on [best - 1 step, best + 1 step].
    let (mut a, mut b) = (
        lo + step * (best.1 as f64 - 1.0).max(0.0),
        lo + step * ((best.1 + 1).min(GRID - 1) as f64),
    );
    let ratio = (5f64.sqrt() - 1.0) / 2.0;
    let mut x1 = b - ratio * (b - a);
    let mut x2 = a + ratio * (b - a);
    let mut f1 = evaluate(x1)?;
    let mut f2 = evaluate(x2)?;
    for _ in 0..12 {
        if f1.0 >= f2.0 {
            b = x2;
            (x2, f2) = (x1, f1);
            x1 = b - ratio * (b - a);
            f1 = evaluate(x1)?;
        } else {
            a = x1;
            (x1, f1) = (x2, f2);
            x2 = a + ratio * (b - a);
            f2 = evaluate(x2)?;
        }
    }
    let mut found = (best.0, lo + step * best.1 as f64, best.2);
    for (x, (ll, noise)) in [(x1, f1), (x2, f2)] {
        if ll > found.0 {
            found = (ll, x, noise);
        }
    }
    Ok((found.1.exp(), found.2))
}

/// `p(given)` of every usable image (unusable ones are skipped).
fn p_all(e: &Evidence, sharpness: f64, cancel: &CancelToken) -> Result<Vec<f64>, Cancelled> {
    let n = e.usable.len();
    let starts: Vec<usize> = (0..n).step_by(CHUNK).collect();
    let parts: Vec<Vec<f64>> = starts
        .par_iter()
        .map(|&start| {
            cancel.check()?;
            Ok((start..(start + CHUNK).min(n))
                .filter(|&i| e.usable[i])
                .map(|i| {
                    p_given(
                        &e.deltas[e.offsets[i]..e.offsets[i + 1]],
                        e.absent[i],
                        sharpness,
                    )
                })
                .collect())
        })
        .collect::<Result<_, Cancelled>>()?;
    Ok(parts.concat())
}

/// EM for the noise rate at fixed `p`s; returns (log-likelihood, noise rate).
/// Sequential sums in image order, so the result does not depend on threads.
fn profile_noise(p: &[f64], wrong_share: f64, floor: f64) -> (f64, f64) {
    if p.is_empty() {
        return (0.0, floor);
    }
    let mut noise = 0.05f64;
    for _ in 0..200 {
        let mean: f64 = p
            .iter()
            .map(|&p| posterior_wrong(p, noise, wrong_share))
            .sum::<f64>()
            / p.len() as f64;
        let next = mean.clamp(floor, 0.5);
        let done = (next - noise).abs() < 1e-7;
        noise = next;
        if done {
            break;
        }
    }
    let ll = p
        .iter()
        .map(|&p| {
            (p * (1.0 - noise) + (1.0 - p) * noise * wrong_share)
                .max(1e-300)
                .ln()
        })
        .sum();
    (ll, noise)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::neighbours::{self, KnnMethod};
    use crate::progress::NoProgress;
    use crate::rng::Rng;

    /// `classes` Gaussian blobs in `dim` dimensions, `per` images each; then
    /// `wrong` images (every `step`-th) get a random other label.
    fn blobs(
        classes: usize,
        per: usize,
        dim: usize,
        spread: f32,
        wrong: usize,
        seed: u64,
    ) -> (Embeddings, Vec<Option<u32>>, Vec<usize>) {
        let mut rng = Rng::new(seed);
        let centres: Vec<Vec<f32>> = (0..classes)
            .map(|_| (0..dim).map(|_| rng.normal_f32()).collect())
            .collect();
        let n = classes * per;
        let mut data = Vec::with_capacity(n * dim);
        let mut labels = Vec::with_capacity(n);
        for i in 0..n {
            let c = i % classes;
            let mut row: Vec<f32> = centres[c]
                .iter()
                .map(|x| x + spread * rng.normal_f32())
                .collect();
            crate::l2_normalize(&mut row);
            data.extend(row);
            labels.push(Some(c as u32));
        }
        let step = n / wrong;
        let mut planted = Vec::new();
        for t in 0..wrong {
            let i = t * step + 1;
            let c = labels[i].unwrap() as usize;
            let other = (c + 1 + rng.below(classes - 1)) % classes;
            labels[i] = Some(other as u32);
            planted.push(i);
        }
        (Embeddings::new(n, dim, data), labels, planted)
    }

    fn graph(e: &Embeddings, k: usize) -> KnnGraph {
        neighbours::build(e, k, KnnMethod::Exact, 0, &NoProgress, &CancelToken::new()).unwrap()
    }

    #[test]
    fn planted_label_errors_rank_on_top_with_the_right_suggestion() {
        // Overlapping blobs: some clean images sit among another class, so a
        // score that ranked by vote fraction alone would tie them with the
        // planted ones.
        let (e, labels, planted) = blobs(6, 300, 16, 0.45, 36, 3);
        let g = graph(&e, NEIGHBOURS);
        let r = label_issues(&e, &g, &labels, 6, &CancelToken::new()).unwrap();
        let order = r.worst_first();
        for w in order.windows(2) {
            assert!(r.score[w[0]] >= r.score[w[1]]);
        }
        let hits = order[..planted.len()]
            .iter()
            .filter(|i| planted.contains(i))
            .count();
        assert!(hits >= 33, "{hits} of 36 planted errors in the top 36");
        // Calibrated: the fitted rate and the score mass are near 2%.
        assert!((0.01..0.035).contains(&r.noise_rate), "{}", r.noise_rate);
        let mass: f32 = r.score.iter().flatten().sum();
        assert!((20.0..55.0).contains(&mass), "score mass {mass}");
        // The suggestion is the true class for the planted ones found.
        let true_class = |i: usize| (i % 6) as u32;
        let right = planted
            .iter()
            .filter(|&&i| r.suggested[i] == Some(true_class(i)))
            .count();
        assert!(right >= 33, "{right} right suggestions");
        for &i in &planted {
            assert!(
                r.ratio[i].unwrap() > 1.0,
                "the suggested class is the closer one"
            );
        }
        for s in r.score.iter().flatten() {
            assert!((0.0..=1.0).contains(s));
        }
    }

    #[test]
    fn clean_labels_give_a_low_noise_rate_and_low_scores() {
        let (e, mut labels, planted) = blobs(4, 200, 12, 0.3, 8, 5);
        for &i in &planted {
            labels[i] = Some((i % 4) as u32); // undo: all labels right
        }
        let g = graph(&e, 30);
        let r = label_issues(&e, &g, &labels, 4, &CancelToken::new()).unwrap();
        assert!(r.noise_rate < 0.005, "{}", r.noise_rate);
        assert!(r.score.iter().flatten().all(|&s| s < 0.5));
    }

    #[test]
    fn unlabelled_images_get_nothing_and_do_not_vote() {
        let (e, mut labels, planted) = blobs(3, 100, 8, 0.3, 6, 9);
        for i in (0..labels.len()).step_by(4) {
            if !planted.contains(&i) {
                labels[i] = None;
            }
        }
        let g = graph(&e, 30);
        let r = label_issues(&e, &g, &labels, 3, &CancelToken::new()).unwrap();
        for (i, label) in labels.iter().enumerate() {
            assert_eq!(label.is_none(), r.score[i].is_none(), "image {i}");
            if label.is_none() {
                assert_eq!(r.suggested[i], None);
            }
        }
        for &i in &planted {
            assert!(r.score[i].unwrap() > 0.5, "planted {i}: {:?}", r.score[i]);
        }
    }

    #[test]
    fn same_result_on_any_thread_count() {
        let (e, labels, _) = blobs(5, 2000, 8, 0.6, 100, 11);
        let g = graph(&e, 20);
        let run = |threads| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap()
                .install(|| label_issues(&e, &g, &labels, 5, &CancelToken::new()).unwrap())
        };
        let (a, b) = (run(1), run(3));
        assert_eq!(a.score, b.score);
        assert_eq!(a.suggested, b.suggested);
        assert_eq!(a.noise_rate, b.noise_rate);
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        let (e, labels, _) = blobs(2, 20, 4, 0.3, 2, 1);
        let g = graph(&e, 5);
        let cancel = CancelToken::new();
        let err = label_issues(&e, &g, &labels[..10], 2, &cancel).unwrap_err();
        assert!(err.to_string().contains("one label"), "{err}");
        let mut bad = labels.clone();
        bad[3] = Some(7);
        let err = label_issues(&e, &g, &bad, 2, &cancel).unwrap_err();
        assert!(err.to_string().contains("only 2 classes"), "{err}");
        let other = graph(&blobs(2, 10, 4, 0.3, 2, 1).0, 5);
        assert!(label_issues(&e, &other, &labels, 2, &cancel).is_err());
    }

    #[test]
    fn degenerate_inputs() {
        let cancel = CancelToken::new();
        // Empty.
        let e = Embeddings::new(0, 4, vec![]);
        let g = graph(&e, 5);
        let r = label_issues(&e, &g, &[], 3, &cancel).unwrap();
        assert!(r.score.is_empty());
        // One class only: nothing can be mislabelled.
        let (e, labels, _) = blobs(2, 10, 4, 0.3, 2, 1);
        let g = graph(&e, 5);
        let one: Vec<Option<u32>> = labels.iter().map(|_| Some(0)).collect();
        let r = label_issues(&e, &g, &one, 1, &cancel).unwrap();
        assert!(r.score.iter().all(|s| *s == Some(0.0)));
        // A single image per class, and graphs wider than the data.
        let e = neighbours::tests::random_unit_rows(3, 4, 2);
        let g = graph(&e, 10);
        let r = label_issues(&e, &g, &[Some(0), Some(1), Some(2)], 3, &cancel).unwrap();
        assert!(r.score.iter().all(|s| s.is_some_and(|s| s.is_finite())));
        // No labelled neighbour at all: two far-apart pairs, one labelled
        // image in each, one neighbour per image.
        let mut data = vec![1.0, 0.0, 0.995, 0.0998, 0.0, 1.0, 0.0998, 0.995];
        for row in data.chunks_mut(2) {
            crate::l2_normalize(row);
        }
        let e = Embeddings::new(4, 2, data);
        let g = graph(&e, 1);
        let r = label_issues(&e, &g, &[Some(0), None, Some(1), None], 2, &cancel).unwrap();
        assert_eq!(r.score, vec![None; 4]);
    }

    /// Copies filed under two labels are flagged whatever the neighbourhood
    /// says: split ten and ten, all of them; one against nine, the one.
    #[test]
    fn copies_with_another_label_are_flagged() {
        let (mut e, mut labels, _) = blobs(3, 100, 8, 0.3, 3, 5);
        // Row 0 (class 0) and 19 copies of it, 9 filed as class 0 and 10 as
        // class 2: ten and ten. Row 3 (class 0) and 9 copies, one filed as
        // class 1: nine against one.
        let (a, b) = (e.row(0).to_vec(), e.row(3).to_vec());
        assert_eq!((labels[0], labels[3]), (Some(0), Some(0)));
        let first = e.n;
        for t in 0..19 {
            e.data.extend_from_slice(&a);
            labels.push(Some(if t < 9 { 0 } else { 2 }));
        }
        let lone = first + 19;
        for t in 0..9 {
            e.data.extend_from_slice(&b);
            labels.push(Some(if t == 0 { 1 } else { 0 }));
        }
        e.n += 28;
        // With 10 neighbours the group of 20 is larger than any one list.
        for k in [40, 10] {
            let g = graph(&e, k);
            let r = label_issues(&e, &g, &labels, 3, &CancelToken::new()).unwrap();
            let flag = crate::analyze::LABEL_ISSUE_FLAG;
            for i in std::iter::once(0).chain(first..lone) {
                let s = r.score[i].unwrap();
                assert!(s >= flag, "k {k}, copy {i} of the split group: {s}");
                let want = if labels[i] == Some(0) { 2 } else { 0 };
                assert_eq!(r.suggested[i], Some(want), "k {k}, copy {i}");
            }
            assert!(r.score[lone].unwrap() >= 0.85, "{:?}", r.score[lone]);
            assert_eq!(r.suggested[lone], Some(0));
            for i in std::iter::once(3).chain(lone + 1..lone + 9) {
                let s = r.score[i].unwrap();
                assert!(s < flag, "k {k}, majority copy {i}: {s}");
            }
        }
    }

    #[test]
    fn cancelled_stops() {
        let (e, labels, _) = blobs(2, 20, 4, 0.3, 2, 1);
        let g = graph(&e, 5);
        let cancel = CancelToken::new();
        cancel.cancel();
        let err = label_issues(&e, &g, &labels, 2, &cancel).unwrap_err();
        assert!(crate::progress::is_cancelled(&err));
    }
}
