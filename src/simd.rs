//! Dot products of `f32` rows with SIMD chosen at run time: AVX-512 or
//! AVX2+FMA on x86-64, NEON on aarch64, plain scalar code elsewhere.
//!
//! Built on `pulp` (already in the main crate's tree through `gemm`): one
//! generic kernel is compiled once per instruction set and [`pulp::Arch`]
//! picks the best one the CPU has. `wide` (also in the tree) was the
//! alternative, but it only uses the instruction sets the binary is compiled
//! for: on a default x86-64 build that is SSE2, without FMA or AVX, so it was
//! measured no faster than the scalar loop (77–83 against 35–54 ns for pulp's
//! AVX-512 path, per 784-wide dot), and `-C target-cpu=native` would make the
//! binary crash on older CPUs.
//!
//! Results are the same bit for bit on AVX2, AVX-512 and NEON, and whichever
//! entry point computes them: element `e` of a row is accumulated with a fused
//! multiply-add into logical lane `e % 16`, whatever the register width, and the
//! 16 lanes are summed in one fixed pairwise tree. A graph built on a laptop
//! therefore matches one built on a server, and NN-descent meets the same value
//! whenever it meets the same pair. (CPUs without AVX2/FMA take a scalar path,
//! unfused, and may differ in the last bit there.)
//!
//! Hot loops should not call [`dot`] per pair (each call re-dispatches); they
//! run inside [`pulp::Arch::dispatch`] with a [`pulp::WithSimd`] task and use
//! [`Dots`], whose methods inline into the chosen instruction set.

use pulp::{Arch, Simd, WithSimd};

/// Number of logical accumulator lanes.
const LANES: usize = 16;

/// The best instruction set of this CPU, detected once.
pub fn arch() -> Arch {
    static ARCH: std::sync::OnceLock<Arch> = std::sync::OnceLock::new();
    *ARCH.get_or_init(Arch::new)
}

/// Dot product of two equally long rows (dispatches on every call; use
/// [`Dots`] inside a dispatched task for many pairs).
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    struct One<'a>(&'a [f32], &'a [f32]);
    impl WithSimd for One<'_> {
        type Output = f32;
        #[inline(always)]
        fn with_simd<S: Simd>(self, simd: S) -> f32 {
            Dots(simd).dot(self.0, self.1)
        }
    }
    arch().dispatch(One(a, b))
}

/// Dot-product kernels for one instruction set `S`; make one inside
/// [`pulp::WithSimd::with_simd`]. All rows passed must have the same length
/// (checked: a mismatch panics rather than reading out of bounds).
#[derive(Clone, Copy, Debug)]
pub struct Dots<S: Simd>(pub S);

impl<S: Simd> Dots<S> {
    /// `a · b`.
    #[inline(always)]
    pub fn dot(self, a: &[f32], b: &[f32]) -> f32 {
        self.tile::<1, 1>([a], [b])[0][0]
    }

    /// `out[j] = a · b[j]`. `a` is loaded once per four rows.
    #[inline(always)]
    pub fn dot_many(self, a: &[f32], b: &[&[f32]], out: &mut [f32]) {
        assert_eq!(b.len(), out.len());
        let mut rows = b.chunks_exact(4);
        let mut outs = out.chunks_exact_mut(4);
        for (rows, outs) in (&mut rows).zip(&mut outs) {
            let r = self.tile::<1, 4>([a], [rows[0], rows[1], rows[2], rows[3]]);
            outs.copy_from_slice(&r[0]);
        }
        for (row, o) in rows.remainder().iter().zip(outs.into_remainder()) {
            *o = self.dot(a, row);
        }
    }

    /// The dot products of each of the first `first` rows with every later
    /// row: `out[i * m + j] = rows[i] · rows[j]` for `i < first`, `i < j < m`,
    /// where `m = rows.len()` and `out` holds `m × m` values (the others are
    /// left unspecified).
    ///
    /// Wide rows are computed in register tiles (4 × 4 rows on AVX-512, 2 × 2
    /// on AVX2 and NEON): each load of a row's piece feeds several products,
    /// so rows are read from cache fewer times (measured at 784 wide, rows in
    /// L2: 35 ns per pair, against 39 for one row against many and 54 alone).
    #[inline(always)]
    pub fn upper(self, rows: &[&[f32]], first: usize, out: &mut [f32]) {
        let m = rows.len();
        if rows.first().is_some_and(|r| r.len() < 256) {
            // Short rows stay in L1 anyway, and the tiles' many reductions
            // cost more than they save (64 wide: 6.8 ns per pair in tiles,
            // 4.6 one row against many).
            assert!(out.len() >= m * m, "out must hold rows.len()² values");
            for i in 0..first.min(m) {
                self.dot_many(
                    rows[i],
                    &rows[i + 1..],
                    &mut out[i * m + i + 1..(i + 1) * m],
                );
            }
            return;
        }
        match S::F32_LANES {
            16 => self.upper_tiled::<4, 4>(rows, first, out),
            8 | 4 => self.upper_tiled::<2, 2>(rows, first, out),
            _ => self.upper_tiled::<1, 1>(rows, first, out),
        }
    }

    #[inline(always)]
    fn upper_tiled<const TI: usize, const TJ: usize>(
        self,
        rows: &[&[f32]],
        first: usize,
        out: &mut [f32],
    ) {
        let m = rows.len();
        let first = first.min(m);
        assert!(out.len() >= m * m, "out must hold rows.len()² values");
        let mut i0 = 0;
        while i0 < first {
            let ti = (first - i0).min(TI);
            // Pairs (i, j > i) of this band of rows; a tile may also compute
            // some j ≤ i, which are not needed but cost less than splitting it.
            let mut j0 = i0 + 1;
            while j0 < m {
                let tj = (m - j0).min(TJ);
                if ti == TI && tj == TJ {
                    let a: [&[f32]; TI] = std::array::from_fn(|i| rows[i0 + i]);
                    let b: [&[f32]; TJ] = std::array::from_fn(|j| rows[j0 + j]);
                    let t = self.tile::<TI, TJ>(a, b);
                    for (i, t) in t.iter().enumerate() {
                        out[(i0 + i) * m + j0..(i0 + i) * m + j0 + TJ].copy_from_slice(t);
                    }
                } else {
                    for i in i0..i0 + ti {
                        for j in j0..j0 + tj {
                            out[i * m + j] = self.dot(rows[i], rows[j]);
                        }
                    }
                }
                j0 += TJ;
            }
            i0 += TI;
        }
    }

    /// `a[i] · b[j]` for a tile of rows.
    #[inline(always)]
    fn tile<const TI: usize, const TJ: usize>(
        self,
        a: [&[f32]; TI],
        b: [&[f32]; TJ],
    ) -> [[f32; TJ]; TI] {
        // The match on a constant is resolved at compile time.
        match S::F32_LANES {
            16 => self.tile_in::<TI, TJ, 1>(a, b),
            8 => self.tile_in::<TI, TJ, 2>(a, b),
            4 => self.tile_in::<TI, TJ, 4>(a, b),
            _ => self.tile_scalar::<TI, TJ>(a, b),
        }
    }

    /// `R` registers of `S::F32_LANES` lanes make the `LANES` logical lanes:
    /// full register `v` of a row holds elements of logical lanes
    /// `(v % R) * W ..`, and the partial last one continues that pattern.
    // Index loops over several parallel arrays: iterator adaptors would need
    // closures, which this kernel must avoid (see below).
    #[allow(clippy::needless_range_loop)]
    #[inline(always)]
    fn tile_in<const TI: usize, const TJ: usize, const R: usize>(
        self,
        a: [&[f32]; TI],
        b: [&[f32]; TJ],
    ) -> [[f32; TJ]; TI] {
        debug_assert_eq!(R * S::F32_LANES, LANES);
        let simd = self.0;
        let len = a[0].len();
        fn split<S: Simd>(row: &[f32], len: usize) -> (&[S::f32s], &[f32]) {
            assert_eq!(row.len(), len, "dot product of rows of different widths");
            S::as_simd_f32s(row)
        }
        let mut av = [(&[][..], &[][..]); TI];
        for i in 0..TI {
            av[i] = split::<S>(a[i], len);
        }
        let mut bv = [(&[][..], &[][..]); TJ];
        for j in 0..TJ {
            bv[j] = split::<S>(b[j], len);
        }
        let whole = av[0].0.len();
        let zero = simd.splat_f32s(0.0);
        let mut acc = [[[zero; R]; TJ]; TI];
        let full = whole / R * R;
        // No closures in this loop: they would not inherit the instruction set
        // of the dispatched function, and the FMA intrinsic would become a call
        // (measured: 7× slower).
        let mut v = 0;
        while v < full {
            for r in 0..R {
                let mut x = [zero; TI];
                for i in 0..TI {
                    x[i] = av[i].0[v + r];
                }
                for j in 0..TJ {
                    let y = bv[j].0[v + r];
                    for i in 0..TI {
                        acc[i][j][r] = simd.mul_add_e_f32s(x[i], y, acc[i][j][r]);
                    }
                }
            }
            v += R;
        }
        for r in 0..whole - full {
            let mut x = [zero; TI];
            for i in 0..TI {
                x[i] = av[i].0[full + r];
            }
            for j in 0..TJ {
                let y = bv[j].0[full + r];
                for i in 0..TI {
                    acc[i][j][r] = simd.mul_add_e_f32s(x[i], y, acc[i][j][r]);
                }
            }
        }
        if !av[0].1.is_empty() {
            let r = whole - full;
            let mut x = [zero; TI];
            for i in 0..TI {
                x[i] = simd.partial_load_f32s(av[i].1);
            }
            for j in 0..TJ {
                let y = simd.partial_load_f32s(bv[j].1);
                for i in 0..TI {
                    acc[i][j][r] = simd.mul_add_e_f32s(x[i], y, acc[i][j][r]);
                }
            }
        }
        // The fixed tree of `reduce`: its levels that pair whole registers are
        // register additions; the last register's lanes are summed in scalar.
        let mut out = [[0.0f32; TJ]; TI];
        for i in 0..TI {
            for j in 0..TJ {
                let regs = &mut acc[i][j];
                let mut width = R;
                while width > 1 {
                    width /= 2;
                    for r in 0..width {
                        regs[r] = simd.add_f32s(regs[r], regs[r + width]);
                    }
                }
                let mut lanes = [0.0f32; LANES];
                let (dst, _) = S::as_mut_simd_f32s(&mut lanes[..S::F32_LANES]);
                dst[0] = regs[0];
                out[i][j] = reduce_prefix(&mut lanes, S::F32_LANES);
            }
        }
        out
    }

    /// Same logical lanes without SIMD registers (CPUs without AVX2/NEON).
    #[inline(always)]
    fn tile_scalar<const TI: usize, const TJ: usize>(
        self,
        a: [&[f32]; TI],
        b: [&[f32]; TJ],
    ) -> [[f32; TJ]; TI] {
        let mut out = [[0.0f32; TJ]; TI];
        for i in 0..TI {
            for j in 0..TJ {
                assert_eq!(
                    a[i].len(),
                    b[j].len(),
                    "dot product of rows of different widths"
                );
                let mut lanes = [0.0f32; LANES];
                for (e, (x, y)) in a[i].iter().zip(b[j]).enumerate() {
                    lanes[e % LANES] += x * y;
                }
                out[i][j] = reduce_prefix(&mut lanes, LANES);
            }
        }
        out
    }
}

/// Sums `lanes[..width]` (a power of two) in the pairwise tree: lane `l` takes
/// lane `l + h` for h = width/2, …, 1. Applied to all 16 logical lanes this is
/// the reduction every kernel computes.
#[inline(always)]
fn reduce_prefix(lanes: &mut [f32; LANES], width: usize) -> f32 {
    let mut half = width / 2;
    while half > 0 {
        for l in 0..half {
            lanes[l] += lanes[l + half];
        }
        half /= 2;
    }
    lanes[0]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    fn row(len: usize, rng: &mut Rng) -> Vec<f32> {
        (0..len).map(|_| rng.normal_f32()).collect()
    }

    fn is_scalar() -> bool {
        format!("{:?}", arch()).starts_with("Scalar")
    }

    #[test]
    fn dot_matches_f64_for_every_tail_length() {
        let mut rng = Rng::new(1);
        for len in (0..140).chain([511, 512, 513, 784]) {
            let a = row(len, &mut rng);
            let b = row(len, &mut rng);
            let got = dot(&a, &b) as f64;
            let want: f64 = a.iter().zip(&b).map(|(x, y)| *x as f64 * *y as f64).sum();
            assert!(
                (got - want).abs() <= 1e-5 * (1.0 + (len as f64).sqrt()),
                "len {len}: {got} vs {want}"
            );
        }
    }

    /// The documented order, written out in scalar code with fused
    /// multiply-adds: every SIMD path must give exactly these bits.
    fn model(a: &[f32], b: &[f32]) -> f32 {
        let mut lanes = [0.0f32; LANES];
        for (e, (x, y)) in a.iter().zip(b).enumerate() {
            lanes[e % LANES] = x.mul_add(*y, lanes[e % LANES]);
        }
        reduce_prefix(&mut lanes, LANES)
    }

    struct All<'a>(&'a [Vec<f32>]);
    impl WithSimd for All<'_> {
        /// (dot, dot_many, upper) for every pair i < j.
        type Output = Vec<(usize, usize, f32, f32, f32)>;
        fn with_simd<S: Simd>(self, simd: S) -> Self::Output {
            let d = Dots(simd);
            let rows: Vec<&[f32]> = self.0.iter().map(|r| r.as_slice()).collect();
            let m = rows.len();
            let mut gram = vec![f32::NAN; m * m];
            d.upper(&rows, m, &mut gram);
            let mut out = Vec::new();
            for i in 0..m {
                let mut many = vec![0.0; m - i - 1];
                d.dot_many(rows[i], &rows[i + 1..], &mut many);
                for j in i + 1..m {
                    out.push((
                        i,
                        j,
                        d.dot(rows[i], rows[j]),
                        many[j - i - 1],
                        gram[i * m + j],
                    ));
                }
            }
            out
        }
    }

    #[test]
    fn every_kernel_gives_the_same_bits_as_the_documented_order() {
        let mut rng = Rng::new(2);
        for len in [1, 7, 15, 16, 17, 31, 33, 64, 100, 300, 784] {
            // 11 rows: partial tiles on every side.
            let rows: Vec<Vec<f32>> = (0..11).map(|_| row(len, &mut rng)).collect();
            for (i, j, single, many, gram) in arch().dispatch(All(&rows)) {
                assert_eq!(single.to_bits(), many.to_bits(), "len {len} ({i}, {j})");
                assert_eq!(single.to_bits(), gram.to_bits(), "len {len} ({i}, {j})");
                if !is_scalar() {
                    let want = model(&rows[i], &rows[j]);
                    assert_eq!(single.to_bits(), want.to_bits(), "len {len} ({i}, {j})");
                }
                // Symmetric: the same pair met the other way round.
                assert_eq!(single.to_bits(), dot(&rows[j], &rows[i]).to_bits());
            }
        }
    }

    #[test]
    fn upper_with_fewer_first_rows_fills_those_rows() {
        struct Upper<'a>(&'a [Vec<f32>], usize);
        impl WithSimd for Upper<'_> {
            type Output = Vec<f32>;
            fn with_simd<S: Simd>(self, simd: S) -> Vec<f32> {
                let rows: Vec<&[f32]> = self.0.iter().map(|r| r.as_slice()).collect();
                let mut out = vec![f32::NAN; rows.len() * rows.len()];
                Dots(simd).upper(&rows, self.1, &mut out);
                out
            }
        }
        let mut rng = Rng::new(4);
        let rows: Vec<Vec<f32>> = (0..13).map(|_| row(40, &mut rng)).collect();
        for first in [0, 1, 5, 13, 20] {
            let out = arch().dispatch(Upper(&rows, first));
            for i in 0..first.min(13) {
                for j in i + 1..13 {
                    assert_eq!(out[i * 13 + j].to_bits(), dot(&rows[i], &rows[j]).to_bits());
                }
            }
        }
    }

    #[test]
    #[should_panic(expected = "different widths")]
    fn rows_of_different_widths_panic_instead_of_reading_past_the_end() {
        dot(&[1.0; 20], &[1.0; 19]);
    }
}
