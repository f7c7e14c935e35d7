//! Scores for a layout against labels and against the original space: the
//! figures the acceptance tests and the benchmark report.
//!
//! Both follow the definitions `benches/reference.py` uses (scikit-learn's
//! `trustworthiness`, and leave-one-out 10-NN voting), so the Rust and Python
//! numbers can be compared directly.

use rayon::prelude::*;

use crate::Embeddings;
use crate::geometry::{Point3, norm2, sub};

fn dist2(a: &Point3, b: &Point3) -> f32 {
    norm2(sub(*a, *b))
}

/// The `k` nearest other points of `i` in the layout, nearest first.
fn layout_neighbours(points: &[Point3], i: usize, k: usize) -> Vec<usize> {
    let mut all: Vec<(f32, usize)> = points
        .iter()
        .enumerate()
        .filter(|(j, _)| *j != i)
        .map(|(j, p)| (dist2(&points[i], p), j))
        .collect();
    let k = k.min(all.len());
    if k == 0 {
        return Vec::new();
    }
    let order = |a: &(f32, usize), b: &(f32, usize)| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1));
    all.select_nth_unstable_by(k - 1, order);
    all.truncate(k);
    all.sort_unstable_by(order);
    all.into_iter().map(|(_, j)| j).collect()
}

/// Leave-one-out k-NN classification accuracy in the layout: each point takes
/// the majority label of its `k` nearest other points; a tie goes to the tied
/// label whose nearest member is closest.
pub fn knn_accuracy(points: &[Point3], labels: &[String], k: usize) -> f64 {
    assert_eq!(points.len(), labels.len());
    if points.len() < 2 {
        return 0.0;
    }
    let correct: usize = (0..points.len())
        .into_par_iter()
        .filter(|&i| {
            let neighbours = layout_neighbours(points, i, k);
            // (votes, rank of first appearance) per label; more votes win, then earlier.
            let mut tally: Vec<(&str, usize, usize)> = Vec::new();
            for (rank, &j) in neighbours.iter().enumerate() {
                match tally.iter_mut().find(|t| t.0 == labels[j]) {
                    Some(t) => t.1 += 1,
                    None => tally.push((&labels[j], 1, rank)),
                }
            }
            let winner = tally
                .iter()
                .max_by(|a, b| a.1.cmp(&b.1).then(b.2.cmp(&a.2)))
                .map(|t| t.0);
            winner == Some(labels[i].as_str())
        })
        .count();
    correct as f64 / points.len() as f64
}

/// Trustworthiness (Venna & Kaski; scikit-learn's definition) of the layout with
/// `k` neighbours, Euclidean in both spaces: 1 means no point's layout
/// neighbours are strangers in the original space.
pub fn trustworthiness(original: &Embeddings, points: &[Point3], k: usize) -> f64 {
    let n = points.len();
    assert_eq!(original.n, n);
    if n < 2 * k + 2 {
        return 1.0;
    }
    let norms: Vec<f32> = original.rows().map(|r| crate::dot(r, r)).collect();
    let penalty: f64 = (0..n)
        .into_par_iter()
        .map(|i| {
            // Squared Euclidean distances in the original space, to every point.
            let row = original.row(i);
            let d: Vec<f32> = (0..n)
                .map(|j| norms[i] + norms[j] - 2.0 * crate::dot(row, original.row(j)))
                .collect();
            let mut sum = 0.0;
            for j in layout_neighbours(points, i, k) {
                // Rank of j among i's original-space neighbours (1 = nearest),
                // ties broken by index as a stable sort would.
                let rank = (0..n)
                    .filter(|&m| m != i && (d[m] < d[j] || (d[m] == d[j] && m < j)))
                    .count()
                    + 1;
                if rank > k {
                    sum += (rank - k) as f64;
                }
            }
            sum
        })
        .sum();
    let (n, k) = (n as f64, k as f64);
    1.0 - 2.0 / (n * k * (2.0 * n - 3.0 * k - 1.0)) * penalty
}

/// Adjusted Rand index between cluster labels (-1, noise, counts as one more
/// group) and true labels: 1 for identical partitions, about 0 for chance.
pub fn adjusted_rand_index(clusters: &[i32], labels: &[String]) -> f64 {
    use std::collections::HashMap;
    let n = clusters.len();
    if n < 2 {
        return 1.0;
    }
    let mut table: HashMap<(i32, &str), u64> = HashMap::new();
    let mut rows: HashMap<i32, u64> = HashMap::new();
    let mut cols: HashMap<&str, u64> = HashMap::new();
    for (c, l) in clusters.iter().zip(labels) {
        *table.entry((*c, l.as_str())).or_default() += 1;
        *rows.entry(*c).or_default() += 1;
        *cols.entry(l.as_str()).or_default() += 1;
    }
    let pairs = |x: u64| (x * x.saturating_sub(1) / 2) as f64;
    let index: f64 = table.values().map(|&v| pairs(v)).sum();
    let a: f64 = rows.values().map(|&v| pairs(v)).sum();
    let b: f64 = cols.values().map(|&v| pairs(v)).sum();
    let expected = a * b / pairs(n as u64);
    let max = (a + b) / 2.0;
    if (max - expected).abs() < 1e-12 {
        return 1.0;
    }
    (index - expected) / (max - expected)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perfect_and_scrambled_layouts() {
        // Two well separated groups on a line.
        let points: Vec<Point3> = (0..40)
            .map(|i| [if i < 20 { i as f32 } else { 100.0 + i as f32 }, 0.0, 0.0])
            .collect();
        let labels: Vec<String> = (0..40).map(|i| (i / 20).to_string()).collect();
        assert_eq!(knn_accuracy(&points, &labels, 5), 1.0);
        let original = Embeddings::new(40, 3, points.iter().flatten().copied().collect());
        assert!((trustworthiness(&original, &points, 5) - 1.0).abs() < 1e-9);
        let scrambled: Vec<Point3> = (0..40)
            .map(|i| [((i * 17) % 40) as f32, 0.0, 0.0])
            .collect();
        assert!(trustworthiness(&original, &scrambled, 5) < 0.8);
    }
}
