//! A uniform 3D grid over the settled point positions, so that hover,
//! click and the choice of thumbnail billboards never scan a million points
//! per frame.
//!
//! Picking keeps "what you see is what you hit": a point is hit when the
//! cursor falls inside the disc the splat shader draws for it (see
//! [`Disc`]), exactly as the brute-force [`super::picking::pick`] decides; the
//! grid only skips the cells that cannot hold such a point. The billboard
//! walk visits the points in view strictly nearest-first, loading cells
//! lazily in order of their nearest possible depth.
//!
//! The grid is built once per settled layout, in the background (a sort of
//! a million keys takes a few hundred milliseconds on a slow machine).

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::ops::ControlFlow;

use bevy::prelude::*;

use super::layout::Positions;
use super::picking::Projector;
use super::tasks::Task;
use crate::progress::CancelToken;

/// Points per occupied cell the grid aims for (on evenly spread points).
const POINTS_PER_CELL: f32 = 16.0;
/// Cells along one axis at most (only occupied cells are stored).
const MAX_CELLS_PER_AXIS: u32 = 128;
/// Share of the points left out at each end when sizing the grid, so one
/// far outlier does not make every cell huge (outliers go to edge cells).
const SIZING_QUANTILE: f32 = 0.005;

/// Keeps a [`PointGrid`] over the settled positions, built in the background
/// each time a layout settles.
pub struct SpatialPlugin;

impl Plugin for SpatialPlugin {
    fn build(&self, app: &mut App) {
        app.init_resource::<SpatialIndex>().add_systems(
            Update,
            maintain_index
                .in_set(SpatialSystems)
                .after(super::layout::LayoutSystems),
        );
    }
}

#[derive(SystemSet, Clone, Debug, PartialEq, Eq, Hash)]
pub struct SpatialSystems;

/// The grid of the positions shown, once they have settled.
#[derive(Resource, Default)]
pub struct SpatialIndex {
    grid: Option<PointGrid>,
    /// The [`Positions::generation`] the grid indexes (or failed to).
    built_for: Option<u64>,
    building: Option<(u64, Task<PointGrid>)>,
}

impl SpatialIndex {
    /// The grid, if it indexes exactly the positions drawn now.
    pub fn grid_for(&self, positions: &Positions) -> Option<&PointGrid> {
        self.grid.as_ref().filter(|g| {
            positions.settled()
                && self.built_for == Some(positions.generation())
                && g.len() == positions.current.len()
        })
    }
}

fn maintain_index(positions: Res<Positions>, mut index: ResMut<SpatialIndex>) {
    let generation = positions.generation();
    if !positions.settled() || index.built_for == Some(generation) {
        return;
    }
    if let Some((building_for, task)) = index.building.as_mut()
        && *building_for == generation
    {
        let Some(outcome) = task.poll() else {
            return;
        };
        index.building = None;
        index.built_for = Some(generation);
        match outcome {
            Ok(grid) => index.grid = Some(grid),
            // Without a grid, small maps are scanned and large ones wait:
            // nothing is lost but speed. Say why.
            Err(err) => warn!("the spatial index could not be built: {err}"),
        }
        return;
    }
    // A new layout (a replaced task is cancelled when dropped). The copy is
    // what the grid's cells describe: the settled positions, exactly.
    let points = positions.current.clone();
    index.grid = None;
    index.building = Some((
        generation,
        Task::spawn("spatial-index", move |cancel| {
            PointGrid::build(&points, cancel)
        }),
    ));
}

/// How a point is drawn and hit: a camera-facing disc of `radius` world
/// units, never smaller than `min_pixels` logical pixels on screen. A radius
/// of 0 hides the point.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Disc {
    pub radius: f32,
    pub min_pixels: f32,
}

impl Disc {
    /// The disc's radius on screen, in logical pixels, at view `depth`.
    pub fn screen_radius(&self, projector: &Projector, depth: f32) -> f32 {
        projector
            .screen_radius(self.radius, depth)
            .max(self.min_pixels)
    }
}

/// Upper bounds over every point's [`Disc`], for the grid's cell tests.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct DiscBounds {
    pub max_radius: f32,
    pub max_min_pixels: f32,
}

/// One occupied cell: a bounding sphere of its points, and where they are
/// listed in [`PointGrid::order`].
#[derive(Clone, Copy, Debug)]
struct Cell {
    centre: Vec3,
    radius: f32,
    start: u32,
    end: u32,
}

/// The grid: occupied cells only, each with the indices of its points.
#[derive(Debug, Default)]
pub struct PointGrid {
    cells: Vec<Cell>,
    order: Vec<u32>,
    /// Number of points indexed: a grid over other points is not used.
    len: usize,
}

impl PointGrid {
    /// Indexes `points`; checks `cancel` between passes.
    pub fn build(points: &[Vec3], cancel: &CancelToken) -> anyhow::Result<Self> {
        let n = points.len();
        if n == 0 {
            return Ok(Self::default());
        }
        let (lo, hi) = sizing_bounds(points);
        let extent = (hi - lo).max(Vec3::splat(1e-6));
        // Cells of equal side whose count over the box is about n / 16.
        let wanted = (n as f32 / POINTS_PER_CELL).max(1.0);
        let side = (extent.x * extent.y * extent.z / wanted).cbrt().max(1e-6);
        let dims = (extent / side)
            .ceil()
            .clamp(Vec3::ONE, Vec3::splat(MAX_CELLS_PER_AXIS as f32))
            .as_uvec3();
        let scale = dims.as_vec3() / extent;
        cancel.check()?;
        let mut keyed: Vec<(u32, u32)> = points
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let c = ((*p - lo) * scale)
                    .floor()
                    .clamp(Vec3::ZERO, (dims - UVec3::ONE).as_vec3())
                    .as_uvec3();
                ((c.z * dims.y + c.y) * dims.x + c.x, i as u32)
            })
            .collect();
        cancel.check()?;
        keyed.sort_unstable();
        cancel.check()?;
        let order: Vec<u32> = keyed.iter().map(|&(_, i)| i).collect();
        let mut cells = Vec::new();
        let mut start = 0usize;
        while start < n {
            let key = keyed[start].0;
            let mut end = start;
            let (mut min, mut max) = (Vec3::INFINITY, Vec3::NEG_INFINITY);
            while end < n && keyed[end].0 == key {
                let p = points[keyed[end].1 as usize];
                min = min.min(p);
                max = max.max(p);
                end += 1;
            }
            cells.push(Cell {
                centre: (min + max) * 0.5,
                radius: (max - min).length() * 0.5,
                start: start as u32,
                end: end as u32,
            });
            start = end;
        }
        Ok(Self {
            cells,
            order,
            len: n,
        })
    }

    /// Number of points indexed.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn members(&self, cell: &Cell) -> &[u32] {
        &self.order[cell.start as usize..cell.end as usize]
    }

    /// The front-most point whose disc contains `cursor`, and its depth:
    /// the same answer as [`super::picking::pick`] over the same points,
    /// found by testing only the cells the cursor's cone can reach.
    pub fn pick(
        &self,
        points: &[Vec3],
        disc_of: impl Fn(usize) -> Disc,
        bounds: DiscBounds,
        projector: &Projector,
        cursor: Vec2,
    ) -> Option<(usize, f32)> {
        let ray = cursor_ray(projector, cursor)?;
        let world_per_pixel = world_per_pixel(projector);
        // Cells the cone can reach, nearest possible depth first.
        let mut reachable: Vec<(f32, usize)> = Vec::new();
        for (c, cell) in self.cells.iter().enumerate() {
            let centre = projector.view_from_world.transform_point3(cell.centre);
            let depth = -centre.z;
            if depth + cell.radius <= 1e-4 {
                continue; // wholly behind the camera
            }
            // The widest disc in this cell, in world units: at its far edge
            // a min-pixel disc is widest.
            let far = depth + cell.radius;
            let reach = bounds
                .max_radius
                .max(bounds.max_min_pixels * world_per_pixel * far);
            let along = centre.dot(ray).max(0.0);
            let off_ray = (centre - ray * along).length();
            // A small slack keeps rounding from losing a point on the edge.
            if off_ray <= (cell.radius + reach) * 1.001 + 1e-5 {
                reachable.push((depth - cell.radius, c));
            }
        }
        reachable.sort_unstable_by(|a, b| a.0.total_cmp(&b.0));
        let mut best: Option<(usize, f32)> = None;
        for (nearest, c) in reachable {
            if best.is_some_and(|(_, d)| d < nearest) {
                break; // every later cell lies behind the hit
            }
            for &i in self.members(&self.cells[c]) {
                let i = i as usize;
                if let Some(depth) = hit_depth(points[i], disc_of(i), projector, cursor)
                    && best.is_none_or(|(bi, d)| depth < d || (depth == d && i < bi))
                {
                    best = Some((i, depth));
                }
            }
        }
        best
    }

    /// Visits the points in the viewport (in front of the camera), nearest
    /// the camera first, with their screen position and depth, until `visit`
    /// breaks. Cells are loaded only when a point in them could be next, so
    /// a visit that stops after a thousand points touches few cells.
    pub fn nearest_first(
        &self,
        points: &[Vec3],
        projector: &Projector,
        mut visit: impl FnMut(usize, Vec2, f32) -> ControlFlow<()>,
    ) {
        let focal = focal_pixels(projector);
        let viewport = projector.viewport;
        let mut cells: BinaryHeap<Reverse<(Depth, usize)>> = self
            .cells
            .iter()
            .enumerate()
            .filter_map(|(c, cell)| {
                let centre = projector.view_from_world.transform_point3(cell.centre);
                let depth = -centre.z;
                let nearest = depth - cell.radius;
                if depth + cell.radius <= 1e-4 {
                    return None;
                }
                // A cell in front of the camera whose sphere projects
                // outside the viewport holds nothing to visit.
                if nearest > 1e-3 {
                    let (screen, _) = projector.project(cell.centre)?;
                    // Off the view axis a sphere's image reaches further
                    // from its centre's image, by the centre's slope.
                    let slope = centre.truncate().length() / depth;
                    let reach = cell.radius * focal * (1.0 + slope) / nearest;
                    let grown = Rect::from_corners(
                        viewport.min - Vec2::splat(reach),
                        viewport.max + Vec2::splat(reach),
                    );
                    if !grown.contains(screen) {
                        return None;
                    }
                }
                Some(Reverse((Depth(nearest), c)))
            })
            .collect();
        let mut pending: BinaryHeap<Reverse<(Depth, u32)>> = BinaryHeap::new();
        loop {
            // Load every cell that could hold a point nearer than the
            // nearest one pending.
            while let Some(Reverse((Depth(nearest), c))) = cells.peek().copied() {
                if pending
                    .peek()
                    .is_some_and(|Reverse((Depth(d), _))| *d < nearest)
                {
                    break;
                }
                cells.pop();
                for &i in self.members(&self.cells[c]) {
                    if let Some((screen, depth)) = projector.project(points[i as usize])
                        && viewport.contains(screen)
                    {
                        pending.push(Reverse((Depth(depth), i)));
                    }
                }
            }
            let Some(Reverse((Depth(depth), i))) = pending.pop() else {
                return;
            };
            let i = i as usize;
            let screen = projector.project(points[i]).map_or(Vec2::ZERO, |s| s.0);
            if visit(i, screen, depth).is_break() {
                return;
            }
        }
    }
}

/// The depth of `p` if its disc contains `cursor`.
pub fn hit_depth(p: Vec3, disc: Disc, projector: &Projector, cursor: Vec2) -> Option<f32> {
    if disc.radius <= 0.0 {
        return None;
    }
    let (screen, depth) = projector.project(p)?;
    let r = disc.screen_radius(projector, depth);
    (screen.distance_squared(cursor) <= r * r).then_some(depth)
}

/// The same visit as [`PointGrid::nearest_first`] without a grid: every
/// point projected and sorted (for small sets, and to test the grid).
pub fn nearest_first_brute(
    points: &[Vec3],
    projector: &Projector,
    mut visit: impl FnMut(usize, Vec2, f32) -> ControlFlow<()>,
) {
    let mut in_view: Vec<(f32, usize, Vec2)> = points
        .iter()
        .enumerate()
        .filter_map(|(i, p)| {
            let (screen, depth) = projector.project(*p)?;
            projector
                .viewport
                .contains(screen)
                .then_some((depth, i, screen))
        })
        .collect();
    in_view.sort_unstable_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    for (depth, i, screen) in in_view {
        if visit(i, screen, depth).is_break() {
            return;
        }
    }
}

/// A depth ordered by `total_cmp`, for the heaps.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Depth(f32);

impl Eq for Depth {}

impl PartialOrd for Depth {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Depth {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.total_cmp(&other.0)
    }
}

/// Focal length in logical pixels: a unit at depth 1 spans this many.
pub fn focal_pixels(projector: &Projector) -> f32 {
    projector.clip_from_view.y_axis.y * projector.viewport.height() * 0.5
}

/// World units per logical pixel at depth 1.
fn world_per_pixel(projector: &Projector) -> f32 {
    1.0 / focal_pixels(projector).max(1e-6)
}

/// Unit direction, in view space, of the ray from the camera through
/// `cursor`; `None` for a degenerate projection.
fn cursor_ray(projector: &Projector, cursor: Vec2) -> Option<Vec3> {
    let size = projector.viewport.size();
    if size.x <= 0.0 || size.y <= 0.0 {
        return None;
    }
    let uv = (cursor - projector.viewport.min) / size;
    let ndc = Vec2::new(uv.x * 2.0 - 1.0, 1.0 - uv.y * 2.0);
    // Reverse-Z: ndc z = 1 is the near plane, a finite point on the ray.
    let on_near = projector.clip_from_view.inverse() * ndc.extend(1.0).extend(1.0);
    let on_near = on_near.truncate() / on_near.w;
    on_near.try_normalize()
}

/// The box holding all but the `SIZING_QUANTILE` most extreme points on each
/// side of each axis (sampled for large sets).
fn sizing_bounds(points: &[Vec3]) -> (Vec3, Vec3) {
    let stride = (points.len() / 100_000).max(1);
    let mut axes: [Vec<f32>; 3] = Default::default();
    for p in points.iter().step_by(stride) {
        for (axis, v) in axes.iter_mut().zip(p.to_array()) {
            axis.push(v);
        }
    }
    let (mut lo, mut hi) = (Vec3::ZERO, Vec3::ZERO);
    for (a, values) in axes.iter_mut().enumerate() {
        let len = values.len();
        let cut = ((len as f32 * SIZING_QUANTILE) as usize).min((len - 1) / 2);
        let (_, low, _) = values.select_nth_unstable_by(cut, f32::total_cmp);
        lo[a] = *low;
        let (_, high, _) = values.select_nth_unstable_by(len - 1 - cut, f32::total_cmp);
        hi[a] = *high;
    }
    (lo, hi)
}

#[cfg(test)]
mod tests {
    /// A visitor of (index, screen position, depth) that can stop the walk.
    type Visit<'a> = &'a mut dyn FnMut(usize, Vec2, f32) -> ControlFlow<()>;

    use super::super::picking::pick;
    use super::*;
    use crate::rng::Rng;

    fn projector(eye: Vec3, target: Vec3) -> Projector {
        let camera = Transform::from_translation(eye).looking_at(target, Vec3::Y);
        Projector {
            view_from_world: camera.to_matrix().inverse(),
            clip_from_view: Mat4::perspective_infinite_reverse_rh(
                std::f32::consts::FRAC_PI_4,
                1000.0 / 800.0,
                0.01,
            ),
            viewport: Rect::new(280.0, 0.0, 1280.0, 800.0),
        }
    }

    /// Clusters of different spreads plus a few far outliers.
    fn cloud(n: usize, seed: u64) -> Vec<Vec3> {
        let mut rng = Rng::new(seed);
        let centres: Vec<Vec3> = (0..6)
            .map(|_| Vec3::new(rng.normal_f32(), rng.normal_f32(), rng.normal_f32()) * 3.0)
            .collect();
        (0..n)
            .map(|i| {
                if i % 500 == 7 {
                    return Vec3::new(40.0, -30.0, 25.0) * rng.unit_f32();
                }
                let spread = 0.2 + (i % 6) as f32 * 0.3;
                centres[i % 6]
                    + Vec3::new(rng.normal_f32(), rng.normal_f32(), rng.normal_f32()) * spread
            })
            .collect()
    }

    fn disc(i: usize) -> Disc {
        match i % 11 {
            0 => Disc {
                radius: 0.0,
                min_pixels: 1.0,
            },
            1 => Disc {
                radius: 0.2,
                min_pixels: 9.0,
            },
            _ => Disc {
                radius: 0.03,
                min_pixels: 1.5,
            },
        }
    }

    const BOUNDS: DiscBounds = DiscBounds {
        max_radius: 0.2,
        max_min_pixels: 9.0,
    };

    #[test]
    fn grid_pick_agrees_with_brute_force() {
        let points = cloud(5_000, 3);
        let grid = PointGrid::build(&points, &CancelToken::new()).unwrap();
        assert_eq!(grid.len(), points.len());
        let mut rng = Rng::new(9);
        let mut hits = 0;
        for view in 0..6 {
            // From far outside, from inside the cloud, and from the side.
            let eye = match view {
                0 => Vec3::new(0.0, 3.0, 25.0),
                1 => Vec3::new(0.5, 0.2, 0.3),
                2 => Vec3::new(-14.0, 1.0, 2.0),
                3 => Vec3::new(3.0, 9.0, -6.0),
                4 => Vec3::new(0.0, 0.0, 60.0),
                _ => Vec3::new(2.0, -1.0, 4.0),
            };
            let p = projector(eye, Vec3::ZERO);
            for _ in 0..300 {
                // Half the cursors aim at a point, half anywhere.
                let cursor = if rng.below(2) == 0 {
                    let target = points[rng.below(points.len())];
                    match p.project(target) {
                        Some((s, _)) => s + Vec2::new(rng.normal_f32(), rng.normal_f32()) * 2.0,
                        None => continue,
                    }
                } else {
                    Vec2::new(280.0 + rng.unit_f32() * 1000.0, rng.unit_f32() * 800.0)
                };
                let brute = pick(&points, disc, &p, cursor);
                let fast = grid.pick(&points, disc, BOUNDS, &p, cursor).map(|h| h.0);
                assert_eq!(fast, brute, "view {view}, cursor {cursor}");
                hits += usize::from(brute.is_some());
            }
        }
        assert!(hits > 500, "the test must exercise hits, got {hits}");
    }

    #[test]
    fn grid_walk_is_nearest_first_like_brute_force() {
        let points = cloud(4_000, 5);
        let grid = PointGrid::build(&points, &CancelToken::new()).unwrap();
        for eye in [
            Vec3::new(0.0, 3.0, 25.0),
            Vec3::new(0.5, 0.2, 0.3),
            Vec3::new(-9.0, 2.0, -3.0),
        ] {
            let p = projector(eye, Vec3::ZERO);
            let collect = |walk: &dyn Fn(Visit)| {
                let mut seen = Vec::new();
                walk(&mut |i, _, d| {
                    seen.push((i, d));
                    if seen.len() == 700 {
                        ControlFlow::Break(())
                    } else {
                        ControlFlow::Continue(())
                    }
                });
                seen
            };
            let fast = collect(&|f| grid.nearest_first(&points, &p, f));
            let brute = collect(&|f| nearest_first_brute(&points, &p, f));
            assert_eq!(fast.len(), brute.len());
            // Same depths in the same order (ties may swap indices).
            for (a, b) in fast.iter().zip(&brute) {
                assert_eq!(a.1, b.1, "eye {eye}");
            }
            assert!(fast.windows(2).all(|w| w[0].1 <= w[1].1));
        }
    }

    #[test]
    fn a_walk_over_everything_visits_each_point_in_view_once() {
        let points = cloud(3_000, 8);
        let grid = PointGrid::build(&points, &CancelToken::new()).unwrap();
        let p = projector(Vec3::new(1.0, 0.5, 6.0), Vec3::ZERO);
        let mut fast = Vec::new();
        grid.nearest_first(&points, &p, |i, _, _| {
            fast.push(i);
            ControlFlow::Continue(())
        });
        let mut brute = Vec::new();
        nearest_first_brute(&points, &p, |i, _, _| {
            brute.push(i);
            ControlFlow::Continue(())
        });
        fast.sort_unstable();
        brute.sort_unstable();
        assert_eq!(fast, brute);
        assert!(brute.len() > 100 && brute.len() < points.len());
    }

    #[test]
    fn degenerate_inputs_give_empty_or_single_cells() {
        let cancel = CancelToken::new();
        assert!(PointGrid::build(&[], &cancel).unwrap().is_empty());
        let same = vec![Vec3::ONE; 50];
        let grid = PointGrid::build(&same, &cancel).unwrap();
        assert_eq!(grid.cells.len(), 1);
        let p = projector(Vec3::new(0.0, 0.0, 5.0), Vec3::ONE);
        let (cursor, _) = p.project(Vec3::ONE).unwrap();
        let hit = grid.pick(&same, disc, BOUNDS, &p, cursor).map(|h| h.0);
        assert_eq!(hit, pick(&same, disc, &p, cursor));
        assert!(hit.is_some());
    }

    #[test]
    fn a_cancelled_build_stops() {
        let cancel = CancelToken::new();
        cancel.cancel();
        assert!(PointGrid::build(&cloud(100, 1), &cancel).is_err());
    }
}
