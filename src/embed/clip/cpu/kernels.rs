//! The pieces of the CPU forward pass that are not the big matrix products'
//! arithmetic: a strided wrapper around the `gemm` crate, LayerNorm, softmax,
//! the MLP activations and a vectorisable `exp`.
//!
//! The elementwise loops are written so that LLVM vectorises them (no
//! branches, no calls into libm) and run inside [`simd`], which compiles them
//! for the widest instruction set the CPU has (AVX-512 here): the crate itself
//! is built for baseline x86-64, where they would use 4-wide SSE2 and no FMA.
//! `exp` is the expensive part: quick-GELU takes one per MLP activation
//! (≈ 150 k per image per layer), and libm's scalar `expf` made it 40 % of the
//! forward pass.

use super::super::config::Activation;

/// Runs `f` compiled for the best SIMD level the CPU supports (pulp's
/// runtime dispatch, the level detected once by [`crate::simd::arch`]). The
/// closure must be `#[inline(always)]` (and so must everything it calls):
/// only code inlined into pulp's target-feature function is compiled for
/// AVX-512; a closure left out of line stays 4-wide SSE2 without FMA
/// (measured: the MLP activation ran 4-wide).
#[inline(always)]
pub(super) fn simd<R>(f: impl FnOnce() -> R) -> R {
    crate::simd::arch().dispatch(f)
}

/// A strided matrix operand: element (r, c) is `data[r * rs + c * cs]`.
#[derive(Clone, Copy)]
pub(super) struct View<'a> {
    pub data: &'a [f32],
    pub rs: usize,
    pub cs: usize,
}

impl<'a> View<'a> {
    /// A row-major matrix with `stride` floats between rows.
    pub fn rows(data: &'a [f32], stride: usize) -> Self {
        Self {
            data,
            rs: stride,
            cs: 1,
        }
    }

    /// The transpose of a row-major matrix with `stride` floats between rows.
    pub fn transposed(data: &'a [f32], stride: usize) -> Self {
        Self {
            data,
            rs: 1,
            cs: stride,
        }
    }

    fn fits(&self, rows: usize, cols: usize) -> bool {
        rows == 0 || cols == 0 || (rows - 1) * self.rs + (cols - 1) * self.cs < self.data.len()
    }
}

/// `dst[m×n] = a[m×k] · b[k×n]`, or `dst += a · b` when `accumulate` (the
/// residual connections add the product straight into the hidden state).
/// `dst` is row-major with `ldd` floats between rows. `parallel` lets gemm
/// split the product over rayon's threads; callers already inside a parallel
/// loop pass false.
#[allow(clippy::too_many_arguments)]
pub(super) fn matmul(
    dst: &mut [f32],
    ldd: usize,
    a: View<'_>,
    b: View<'_>,
    m: usize,
    k: usize,
    n: usize,
    accumulate: bool,
    parallel: bool,
) {
    assert!(
        a.fits(m, k) && b.fits(k, n) && (m == 0 || n == 0 || (m - 1) * ldd + n <= dst.len()),
        "matmul operands smaller than {m}×{k}·{k}×{n}"
    );
    assert!(n <= ldd || m <= 1, "rows of dst overlap");
    let parallelism = if parallel {
        gemm::Parallelism::Rayon(0)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: gemm reads a[r·rs + c·cs] for r < m, c < k (and b likewise for
    // k×n) and writes dst[r·ldd + c] for r < m, c < n; the asserts above keep
    // all of them inside the slices, and dst's rows do not overlap (n ≤ ldd).
    // `dst` is borrowed mutably, so nothing else reads it meanwhile.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            ldd as isize,
            accumulate,
            a.data.as_ptr(),
            a.cs as isize,
            a.rs as isize,
            b.data.as_ptr(),
            b.cs as isize,
            b.rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// Sum of a slice with eight independent accumulators, so that it vectorises
/// without reassociation flags.
#[inline(always)]
fn sum(x: &[f32]) -> f32 {
    let mut acc = [0.0f32; 16];
    let chunks = x.chunks_exact(16);
    let rest = chunks.remainder();
    for c in chunks {
        for i in 0..16 {
            acc[i] += c[i];
        }
    }
    let mut total = 0.0;
    for a in acc {
        total += a;
    }
    for &r in rest {
        total += r;
    }
    total
}

/// Sum of squared deviations from `mean`.
#[inline(always)]
fn sum_sq_dev(x: &[f32], mean: f32) -> f32 {
    let mut acc = [0.0f32; 16];
    let chunks = x.chunks_exact(16);
    let rest = chunks.remainder();
    for c in chunks {
        for i in 0..16 {
            let d = c[i] - mean;
            acc[i] += d * d;
        }
    }
    let mut total = 0.0;
    for a in acc {
        total += a;
    }
    for &r in rest {
        total += (r - mean) * (r - mean);
    }
    total
}

/// LayerNorm's weights.
pub(super) struct Norm {
    pub gamma: Vec<f32>,
    pub beta: Vec<f32>,
    pub eps: f32,
}

impl Norm {
    /// `out = (x − mean) / sqrt(var + eps) · gamma + beta` over one row (biased
    /// variance, two passes as PyTorch's LayerNorm).
    #[inline(always)]
    pub fn row(&self, x: &[f32], out: &mut [f32]) {
        let n = x.len() as f32;
        let mean = sum(x) / n;
        let inv = 1.0 / (sum_sq_dev(x, mean) / n + self.eps).sqrt();
        for (((o, &v), &g), &b) in out.iter_mut().zip(x).zip(&self.gamma).zip(&self.beta) {
            *o = (v - mean) * inv * g + b;
        }
    }
}

const LOG2E: f32 = std::f32::consts::LOG2_E;
/// 1.5·2²³: adding it rounds to an integer, which then sits in the low
/// mantissa bits (the ulp there is 1).
const ROUND_MAGIC: f32 = 12_582_912.0;

/// `e^x` to about 1 ulp (Cephes' `expf`: x = n·ln2 + r, a degree-6
/// polynomial for e^r, 2^n put in the exponent bits), for |x| ≤ 87 and
/// clamped beyond. Branch-free so that loops over it vectorise, which libm's
/// `expf` (a call per element) does not.
#[inline(always)]
pub(super) fn exp(x: f32) -> f32 {
    let x = x.clamp(-87.0, 88.0);
    let t = x * LOG2E + ROUND_MAGIC;
    let n = t - ROUND_MAGIC;
    // ln 2 split in two so that n·ln2 is exact to f32 precision (the first
    // part is 355/512, exactly the f32 nearest 0.6933594).
    let r = x - n * 0.693_359_4 - n * -2.121_944_4e-4;
    let mut p = 1.987_569_1e-4;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5; // Cephes' 5.0000001e-1, the same f32
    let e_r = p * r * r + r + 1.0;
    // t's bits are 0x4B40_0000 + n; move n + 127 into the exponent field.
    let scale = f32::from_bits(t.to_bits().wrapping_sub(0x4B40_0000 - 127) << 23);
    e_r * scale
}

/// In place, over one row: `x = softmax(x)`.
#[inline(always)]
pub(super) fn softmax_row(x: &mut [f32]) {
    let mut max = f32::NEG_INFINITY;
    for &v in x.iter() {
        max = max.max(v);
    }
    for v in x.iter_mut() {
        *v = exp(*v - max);
    }
    let inv = 1.0 / sum(x);
    for v in x.iter_mut() {
        *v *= inv;
    }
}

/// `erf` to 1.5e-7 absolute (Abramowitz & Stegun 7.1.26), branch-free.
#[inline(always)]
fn erf(x: f32) -> f32 {
    let a = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * a);
    let mut p = 1.061_405_4;
    p = p * t - 1.453_152_1;
    p = p * t + 1.421_413_8;
    p = p * t - 0.284_496_74;
    p = p * t + 0.254_829_6;
    let y = 1.0 - p * t * exp(-a * a);
    y.copysign(x)
}

/// In place, over one row of the MLP's hidden layer: `x = act(x + bias)`.
#[inline(always)]
pub(super) fn bias_activation_row(x: &mut [f32], bias: &[f32], activation: Activation) {
    match activation {
        // v · sigmoid(1.702 v), as OpenAI's CLIP.
        Activation::QuickGelu => {
            for (v, &b) in x.iter_mut().zip(bias) {
                let u = *v + b;
                *v = u / (1.0 + exp(-1.702 * u));
            }
        }
        Activation::Gelu => {
            for (v, &b) in x.iter_mut().zip(bias) {
                let u = *v + b;
                *v = 0.5 * u * (1.0 + erf(u * std::f32::consts::FRAC_1_SQRT_2));
            }
        }
    }
}

/// `x += bias` over one row.
#[inline(always)]
pub(super) fn add_row(x: &mut [f32], bias: &[f32]) {
    for (v, &b) in x.iter_mut().zip(bias) {
        *v += b;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_within_two_ulp_of_libm() {
        let mut worst = 0.0f64;
        let mut x = -87.0f32;
        while x < 88.0 {
            let got = exp(x) as f64;
            let want = (x as f64).exp();
            worst = worst.max(((got - want) / want).abs());
            x += 0.0137;
        }
        assert!(worst < 2.5e-7, "relative error {worst:e}");
        assert_eq!(exp(0.0), 1.0);
        // Clamped, finite and ordered far out.
        assert!(exp(-1000.0) >= 0.0 && exp(-1000.0) < 1e-37);
        assert!(exp(1000.0).is_finite());
    }

    #[test]
    fn erf_and_gelu_match_f64() {
        for i in -400..=400 {
            let x = i as f32 * 0.01;
            // erf via its series in f64 is overkill; compare against the identity
            // erf(x) = 1 - erfc(x) with a high-precision numerical integral.
            let want = {
                let (n, mut s) = (4000, 0.0f64);
                for j in 0..n {
                    let t = (j as f64 + 0.5) / n as f64 * x as f64;
                    s += (-t * t).exp();
                }
                s * x as f64 / n as f64 * 2.0 / std::f64::consts::PI.sqrt()
            };
            assert!((erf(x) as f64 - want).abs() < 5e-7, "erf({x})");
        }
    }

    #[test]
    fn softmax_sums_to_one_and_keeps_order() {
        let mut row: Vec<f32> = (0..50).map(|i| (i as f32 * 0.37).sin() * 30.0).collect();
        let orig = row.clone();
        softmax_row(&mut row);
        assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        let denom: f64 = orig.iter().map(|&v| (v as f64 - 30.0).exp()).sum();
        for (p, &v) in row.iter().zip(&orig) {
            let want = (v as f64 - 30.0).exp() / denom;
            assert!((*p as f64 - want).abs() < 1e-7 + 1e-6 * want);
        }
    }

    #[test]
    fn layer_norm_matches_f64() {
        let x: Vec<f32> = (0..768)
            .map(|i| (i as f32 * 0.1).cos() * 3.0 + 1.0)
            .collect();
        let norm = Norm {
            gamma: (0..768).map(|i| 1.0 + i as f32 * 1e-3).collect(),
            beta: (0..768).map(|i| i as f32 * -1e-3).collect(),
            eps: 1e-5,
        };
        let mut out = vec![0.0; 768];
        norm.row(&x, &mut out);
        let mean = x.iter().map(|&v| v as f64).sum::<f64>() / 768.0;
        let var = x.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / 768.0;
        for i in 0..768 {
            let want = (x[i] as f64 - mean) / (var + 1e-5).sqrt() * norm.gamma[i] as f64
                + norm.beta[i] as f64;
            assert!((out[i] as f64 - want).abs() < 1e-5, "{i}");
        }
    }

    #[test]
    fn matmul_handles_strides_and_accumulation() {
        // a: 3×4 inside rows of 6; b: given transposed (5 rows of 4).
        let (m, k, n) = (3, 4, 5);
        let a: Vec<f32> = (0..3 * 6).map(|i| i as f32 * 0.5 - 2.0).collect();
        let bt: Vec<f32> = (0..5 * 4).map(|i| (i as f32).sin()).collect();
        let mut dst = vec![1.0f32; m * 7];
        matmul(
            &mut dst,
            7,
            View::rows(&a, 6),
            View::transposed(&bt, 4),
            m,
            k,
            n,
            true,
            false,
        );
        for r in 0..m {
            for c in 0..7 {
                let want = if c < n {
                    1.0 + (0..k).map(|i| a[r * 6 + i] * bt[c * 4 + i]).sum::<f32>()
                } else {
                    1.0
                };
                assert!((dst[r * 7 + c] - want).abs() < 1e-5, "({r},{c})");
            }
        }
    }

    #[test]
    #[should_panic(expected = "matmul operands")]
    fn matmul_refuses_short_operands() {
        let a = vec![0.0f32; 5];
        let b = vec![0.0f32; 4];
        let mut dst = vec![0.0f32; 4];
        matmul(
            &mut dst,
            2,
            View::rows(&a, 3),
            View::rows(&b, 2),
            2,
            3,
            2,
            false,
            false,
        );
    }
}
