//! PCA to 3D by block power (subspace) iteration. Up to 2,048 dimensions the
//! D×D covariance is formed once with one SGEMM and iterated on; wider
//! embeddings are iterated on the centred data itself, so the covariance is
//! never formed for them. Deterministic: fixed seeded start, fixed-order
//! reductions, and a sign convention on each component.

use ndarray::linalg::general_mat_mul;
use ndarray::{Array2, ArrayView2};
use rayon::prelude::*;

use crate::Embeddings;
use crate::geometry::Point3;
use crate::rng::Rng;

const ITERATIONS: usize = 100;
/// Rows per partial sum; fixed so the floating-point sum order never changes.
const CHUNK: usize = 512;

/// Projects every row onto the top three principal components. Fewer than three
/// meaningful components (tiny or degenerate input) leave the rest at zero.
pub fn project(embeddings: &Embeddings, seed: u64) -> anyhow::Result<Vec<Point3>> {
    let (n, dim) = (embeddings.n, embeddings.dim);
    if n == 0 {
        return Ok(Vec::new());
    }
    let mean = column_means(embeddings);
    let components = top_components(embeddings, &mean, seed);
    let points = (0..n)
        .into_par_iter()
        .map(|i| {
            let row = embeddings.row(i);
            let mut p = [0.0f32; 3];
            for (c, comp) in components.iter().enumerate() {
                p[c] = (0..dim).map(|d| (row[d] - mean[d]) * comp[d]).sum();
            }
            p
        })
        .collect();
    Ok(points)
}

fn column_means(e: &Embeddings) -> Vec<f32> {
    let partials: Vec<Vec<f64>> = e
        .data
        .par_chunks(CHUNK * e.dim.max(1))
        .map(|chunk| {
            let mut s = vec![0.0f64; e.dim];
            for row in chunk.chunks_exact(e.dim.max(1)) {
                for (acc, x) in s.iter_mut().zip(row) {
                    *acc += *x as f64;
                }
            }
            s
        })
        .collect();
    let mut mean = vec![0.0f64; e.dim];
    for p in partials {
        for (m, x) in mean.iter_mut().zip(p) {
            *m += x;
        }
    }
    mean.into_iter().map(|m| (m / e.n as f64) as f32).collect()
}

/// Top-3 eigenvectors of the covariance, by subspace iteration with
/// Gram–Schmidt, ordered by eigenvalue. Degenerate directions come back as zeros.
fn top_components(e: &Embeddings, mean: &[f32], seed: u64) -> Vec<Vec<f32>> {
    let dim = e.dim;
    let wanted = 3.min(dim);
    let mut rng = Rng::new(seed ^ 0x5043_4121);
    let mut basis: Vec<Vec<f64>> = (0..wanted)
        .map(|_| (0..dim).map(|_| rng.normal_f32() as f64).collect())
        .collect();
    orthonormalise(&mut basis);
    // Narrow embeddings: form the covariance once with one SGEMM, then iterate on
    // it cheaply. Wide ones: iterate on the data, never forming D×D.
    let covariance = (dim <= COVARIANCE_MAX_DIM).then(|| covariance_matrix(e, mean));
    let apply = |basis: &[Vec<f64>]| match &covariance {
        Some(c) => basis
            .iter()
            .map(|v| {
                c.chunks_exact(dim)
                    .map(|row| row.iter().zip(v).map(|(a, b)| *a as f64 * b).sum())
                    .collect()
            })
            .collect(),
        None => covariance_times(e, mean, basis),
    };
    let iterations = if covariance.is_some() {
        300
    } else {
        ITERATIONS
    };
    for _ in 0..iterations {
        let mut next = apply(&basis);
        orthonormalise(&mut next);
        let change = next
            .iter()
            .zip(&basis)
            .flat_map(|(a, b)| a.iter().zip(b).map(|(x, y)| (x - y).abs()))
            .fold(0.0f64, f64::max);
        basis = next;
        if change < 1e-7 {
            break;
        }
    }
    // Order by Rayleigh quotient (variance along the direction).
    let images = apply(&basis);
    let mut scored: Vec<(f64, Vec<f64>)> = basis
        .into_iter()
        .zip(images)
        .map(|(v, cv)| (v.iter().zip(&cv).map(|(a, b)| a * b).sum::<f64>(), v))
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0));
    let mut out: Vec<Vec<f32>> = scored
        .into_iter()
        .map(|(variance, mut v)| {
            if variance <= 1e-12 {
                v.iter_mut().for_each(|x| *x = 0.0);
            }
            // Sign convention: the largest entry is positive.
            let biggest = v
                .iter()
                .copied()
                .fold(0.0f64, |m, x| if x.abs() > m.abs() { x } else { m });
            let sign = if biggest < 0.0 { -1.0 } else { 1.0 };
            v.into_iter().map(|x| (x * sign) as f32).collect()
        })
        .collect();
    while out.len() < 3 {
        out.push(vec![0.0; dim]);
    }
    out
}

/// Row ranges the covariance product is split into.
const COVARIANCE_PARTS: usize = 4;

/// Largest width for which the D×D covariance is formed explicitly.
const COVARIANCE_MAX_DIM: usize = 2048;

/// Xcᵀ Xc / n by SGEMM (deterministic: single-threaded, fixed order).
fn covariance_matrix(e: &Embeddings, mean: &[f32]) -> Vec<f32> {
    let (n, dim) = (e.n, e.dim);
    let centred: Vec<f32> = e
        .data
        .chunks_exact(dim)
        .flat_map(|row| row.iter().zip(mean).map(|(x, m)| x - m))
        .collect();
    // Four fixed row ranges in parallel, summed in order: deterministic on any
    // number of threads.
    let parts: Vec<Vec<f32>> = (0..COVARIANCE_PARTS)
        .into_par_iter()
        .map(|part| {
            let rows = part * n / COVARIANCE_PARTS..(part + 1) * n / COVARIANCE_PARTS;
            let block = &centred[rows.start * dim..rows.end * dim];
            let block =
                ArrayView2::from_shape((rows.len(), dim), block).expect("the block is rows × dim");
            let mut c = Array2::<f32>::zeros((dim, dim));
            general_mat_mul(1.0 / n as f32, &block.t(), &block, 0.0, &mut c);
            c.into_raw_vec_and_offset().0
        })
        .collect();
    let mut c = vec![0.0f32; dim * dim];
    for part in parts {
        for (total, x) in c.iter_mut().zip(part) {
            *total += x;
        }
    }
    c
}

/// Returns C·v for each v in `basis`, C = Xcᵀ Xc / n (Xc = centred data).
fn covariance_times(e: &Embeddings, mean: &[f32], basis: &[Vec<f64>]) -> Vec<Vec<f64>> {
    let dim = e.dim;
    let m = basis.len();
    let partials: Vec<Vec<f64>> = e
        .data
        .par_chunks(CHUNK * dim.max(1))
        .map(|chunk| {
            let mut acc = vec![0.0f64; m * dim];
            for row in chunk.chunks_exact(dim.max(1)) {
                for (c, v) in basis.iter().enumerate() {
                    let proj: f64 = row
                        .iter()
                        .zip(mean)
                        .zip(v)
                        .map(|((x, mu), w)| (*x - *mu) as f64 * w)
                        .sum();
                    let out = &mut acc[c * dim..(c + 1) * dim];
                    for ((o, x), mu) in out.iter_mut().zip(row).zip(mean) {
                        *o += proj * (*x - *mu) as f64;
                    }
                }
            }
            acc
        })
        .collect();
    let mut total = vec![0.0f64; m * dim];
    for p in partials {
        for (t, x) in total.iter_mut().zip(p) {
            *t += x;
        }
    }
    total
        .chunks_exact(dim.max(1))
        .take(m)
        .map(|c| c.iter().map(|x| x / e.n as f64).collect())
        .collect()
}

fn orthonormalise(basis: &mut [Vec<f64>]) {
    for i in 0..basis.len() {
        for j in 0..i {
            let (done, rest) = basis.split_at_mut(i);
            let proj: f64 = rest[0].iter().zip(&done[j]).map(|(a, b)| a * b).sum();
            for (a, b) in rest[0].iter_mut().zip(&done[j]) {
                *a -= proj * b;
            }
        }
        let norm = basis[i].iter().map(|x| x * x).sum::<f64>().sqrt();
        if norm > 1e-300 {
            basis[i].iter_mut().for_each(|x| *x /= norm);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovers_the_dominant_axes() {
        // Points spread 10:3:1 along three orthogonal axes of a 6-D space.
        let mut rng = Rng::new(3);
        let mut data = Vec::new();
        let n = 2000;
        for _ in 0..n {
            let (a, b, c) = (
                rng.normal_f32() * 10.0,
                rng.normal_f32() * 3.0,
                rng.normal_f32(),
            );
            data.extend([a, 0.0, b, 0.0, c, 0.01 * rng.normal_f32()]);
        }
        // Centre the columns so the projections equal the coordinates.
        for col in 0..6 {
            let mean = (0..n).map(|i| data[i * 6 + col]).sum::<f32>() / n as f32;
            (0..n).for_each(|i| data[i * 6 + col] -= mean);
        }
        let e = Embeddings::new(n, 6, data.clone());
        let p = project(&e, 1).unwrap();
        // Sample noise tilts the axes a little: compare by correlation.
        let corr = |axis: usize, col: usize| {
            let x: Vec<f64> = p.iter().map(|q| q[axis] as f64).collect();
            let y: Vec<f64> = (0..n).map(|i| data[i * 6 + col] as f64).collect();
            let xy: f64 = x.iter().zip(&y).map(|(a, b)| a * b).sum();
            let xx: f64 = x.iter().map(|a| a * a).sum();
            let yy: f64 = y.iter().map(|b| b * b).sum();
            (xy / (xx * yy).sqrt()).abs()
        };
        assert!(corr(0, 0) > 0.999, "{}", corr(0, 0));
        assert!(corr(1, 2) > 0.99, "{}", corr(1, 2));
        assert!(corr(2, 4) > 0.99, "{}", corr(2, 4));
        assert_eq!(project(&e, 1).unwrap(), p, "deterministic");
    }

    #[test]
    fn tiny_and_degenerate_inputs() {
        assert!(
            project(&Embeddings::new(0, 4, vec![]), 0)
                .unwrap()
                .is_empty()
        );
        let one = project(&Embeddings::new(1, 2, vec![1.0, 0.0]), 0).unwrap();
        assert_eq!(one, vec![[0.0; 3]]);
        let two = project(&Embeddings::new(2, 2, vec![1.0, 0.0, 0.0, 1.0]), 0).unwrap();
        assert!(two.iter().flatten().all(|x| x.is_finite()));
        assert!((two[0][0] - two[1][0]).abs() > 1.0, "{two:?}");
        let same = project(&Embeddings::new(3, 2, vec![0.5; 6]), 0).unwrap();
        assert!(same.iter().flatten().all(|x| *x == 0.0));
    }
}
