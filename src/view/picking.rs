//! Hover and click: which point is under the cursor.
//!
//! "What you see is what you hit": a point drawn as a thumbnail billboard is
//! hit anywhere on its rectangle; any other point on the disc the splat
//! shader draws for it (a camera-facing disc of its radius, never smaller
//! than its minimum size on screen, see [`Disc`]). The front-most hit wins.
//!
//! Nothing scans every point per frame: the hovered point is recomputed
//! only when the cursor, the camera, the points or their styles changed, and
//! then through the spatial index (spatial.rs) once the layout has settled.
//! [`pick`] is the brute-force definition the index is tested against.

use bevy::ecs::system::SystemParam;
use bevy::prelude::*;
use bevy::window::PrimaryWindow;

use super::camera::{Orbit, OrbitGoal, ViewCamera};
use super::layout::Positions;
use super::points::{BaseCloud, PointCloud};
use super::spatial::{Disc, SpatialIndex, hit_depth};
use super::state::{PointerOverUi, ViewState};
use super::thumbnails::Billboards;

/// Seconds within which a second click is a double-click.
const DOUBLE_CLICK_SECONDS: f64 = 0.4;
/// A press that moved further than this (logical pixels) is a drag, not a click.
const CLICK_SLOP: f32 = 4.0;
/// Without a spatial index (the layout still moving), maps up to this size
/// are scanned; larger ones pick nothing for that second.
const SCAN_UP_TO: usize = 50_000;

pub struct PickingPlugin;

impl Plugin for PickingPlugin {
    fn build(&self, app: &mut App) {
        app.add_plugins(super::spatial::SpatialPlugin).add_systems(
            Update,
            (hover_point, click_point)
                .chain()
                .in_set(PickingSystems)
                .after(super::thumbnails::BillboardSystems)
                .after(super::spatial::SpatialSystems)
                .after(super::camera::CameraSystems),
        );
    }
}

/// Hover and click; the overlay that shows them runs after.
#[derive(SystemSet, Clone, Debug, PartialEq, Eq, Hash)]
pub struct PickingSystems;

/// Projects world points to logical window pixels, as the camera draws them.
#[derive(Clone, Copy, Debug)]
pub struct Projector {
    pub view_from_world: Mat4,
    pub clip_from_view: Mat4,
    /// The camera's viewport, in logical pixels.
    pub viewport: Rect,
}

impl Projector {
    pub fn new(camera: &Camera, transform: &GlobalTransform, window_size: Vec2) -> Self {
        Self {
            view_from_world: transform.to_matrix().inverse(),
            clip_from_view: camera.clip_from_view(),
            viewport: camera
                .logical_viewport_rect()
                .unwrap_or(Rect::from_corners(Vec2::ZERO, window_size)),
        }
    }

    /// Screen position (logical pixels, y down) and view depth of `p`; `None`
    /// behind the camera.
    pub fn project(&self, p: Vec3) -> Option<(Vec2, f32)> {
        let view = self.view_from_world * p.extend(1.0);
        let depth = -view.z;
        if depth <= 1e-4 {
            return None;
        }
        let clip = self.clip_from_view * view;
        let ndc = Vec2::new(clip.x, clip.y) / clip.w;
        let size = self.viewport.size();
        let screen = self.viewport.min + Vec2::new((ndc.x + 1.0) * 0.5, (1.0 - ndc.y) * 0.5) * size;
        Some((screen, depth))
    }

    /// On-screen radius (logical pixels) of a disc of `radius` at `depth`.
    pub fn screen_radius(&self, radius: f32, depth: f32) -> f32 {
        // clip_from_view[1][1] is the focal length in NDC units (1 / tan(fov/2)).
        radius * self.clip_from_view.y_axis.y / depth * self.viewport.height() * 0.5
    }
}

/// The front-most point whose disc (from `disc_of`; radius 0 = hidden)
/// contains `cursor`; of points at the same depth, the first.
pub fn pick(
    points: &[Vec3],
    disc_of: impl Fn(usize) -> Disc,
    projector: &Projector,
    cursor: Vec2,
) -> Option<usize> {
    let mut best: Option<(usize, f32)> = None;
    for (i, p) in points.iter().enumerate() {
        if let Some(depth) = hit_depth(*p, disc_of(i), projector, cursor)
            && best.is_none_or(|(_, d)| depth < d)
        {
            best = Some((i, depth));
        }
    }
    best.map(|(i, _)| i)
}

/// Everything picking reads: the view, the points as drawn, the billboards.
#[derive(SystemParam)]
pub struct Picker<'w, 's> {
    window: Single<'w, 's, &'static Window, With<PrimaryWindow>>,
    camera: Single<'w, 's, (&'static Camera, &'static GlobalTransform), With<ViewCamera>>,
    positions: Res<'w, Positions>,
    cloud: Single<'w, 's, &'static PointCloud, With<BaseCloud>>,
    billboards: Res<'w, Billboards>,
    index: Res<'w, SpatialIndex>,
}

/// What a hover result depends on: while none of it changes, it stands.
#[derive(Clone, PartialEq)]
struct HoverInputs {
    cursor: Option<Vec2>,
    view: Mat4,
    viewport: Option<Rect>,
    positions: u64,
    styles: u64,
    billboards: u64,
    grid: bool,
}

impl Picker<'_, '_> {
    fn inputs(&self) -> HoverInputs {
        HoverInputs {
            cursor: self.window.cursor_position(),
            view: self.camera.1.to_matrix(),
            viewport: self.camera.0.logical_viewport_rect(),
            positions: self.cloud.positions_generation,
            styles: self.cloud.styles_generation,
            billboards: self.billboards.generation,
            grid: self.index.grid_for(&self.positions).is_some(),
        }
    }

    /// The point under the cursor, if any.
    pub fn under_cursor(&self) -> Option<usize> {
        let cursor = self.window.cursor_position()?;
        let (camera, transform) = *self.camera;
        let projector = Projector::new(camera, transform, self.window.size());
        let points = &self.positions.current;
        let styles = &self.cloud.styles;
        if styles.len() != points.len() {
            return None; // a new image set, styled next frame
        }
        let scale = self.window.scale_factor();
        // Styles give the minimum size in physical pixels (the shader's);
        // picking works in logical ones.
        let disc_of = |i: usize| Disc {
            radius: styles[i].radius,
            min_pixels: styles[i].min_pixels / scale,
        };
        let splat = match self.index.grid_for(&self.positions) {
            Some(grid) => {
                let mut bounds = self.cloud.bounds;
                bounds.max_min_pixels /= scale;
                grid.pick(points, disc_of, bounds, &projector, cursor)
            }
            None if points.len() <= SCAN_UP_TO => pick(points, disc_of, &projector, cursor)
                .and_then(|i| Some((i, projector.project(points[i])?.1))),
            None => None,
        };
        let billboard = self.billboards.at(cursor);
        match (splat, billboard) {
            (Some(s), Some(b)) => Some(if b.1 <= s.1 { b.0 } else { s.0 }),
            (s, b) => s.or(b).map(|(i, _)| i),
        }
    }
}

fn hover_point(
    picker: Picker,
    over_ui: Res<PointerOverUi>,
    mut state: ResMut<ViewState>,
    mut last: Local<Option<HoverInputs>>,
) {
    let hovered = if over_ui.pointer {
        None
    } else {
        let inputs = picker.inputs();
        if last.as_ref() == Some(&inputs) {
            return; // nothing moved: the answer stands
        }
        *last = Some(inputs);
        picker.under_cursor()
    };
    if over_ui.pointer {
        *last = None;
    }
    // Only a real change marks the state changed.
    if state.hovered != hovered {
        state.hovered = hovered;
    }
}

#[derive(Default)]
struct ClickTracker {
    pressed_at: Option<Vec2>,
    last_click: Option<(f64, Option<usize>)>,
}

fn click_point(
    mut tracker: Local<ClickTracker>,
    time: Res<Time<Real>>,
    buttons: Res<ButtonInput<MouseButton>>,
    picker: Picker,
    mut goal: Single<(&Orbit, &mut OrbitGoal), With<ViewCamera>>,
    over_ui: Res<PointerOverUi>,
    mut state: ResMut<ViewState>,
) {
    let cursor = picker.window.cursor_position();
    if buttons.just_pressed(MouseButton::Left) {
        tracker.pressed_at = if over_ui.pointer { None } else { cursor };
    }
    if !buttons.just_released(MouseButton::Left) {
        return;
    }
    let (Some(pressed), Some(released)) = (tracker.pressed_at.take(), cursor) else {
        return;
    };
    if pressed.distance(released) > CLICK_SLOP {
        return; // that was a rotation
    }
    let hit = picker.under_cursor();
    let now = time.elapsed_secs_f64();
    let double = tracker
        .last_click
        .is_some_and(|(t, p)| now - t < DOUBLE_CLICK_SECONDS && p == hit);
    tracker.last_click = Some((now, hit));
    state.selected = hit;
    if double && let Some(i) = hit {
        let (orbit, goal) = &mut *goal;
        goal.0 = orbit.fly_to(picker.positions.current[i], 1.5);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn disc(radius: f32) -> impl Fn(usize) -> Disc {
        move |_| Disc {
            radius,
            min_pixels: 0.0,
        }
    }

    fn projector_looking_down_minus_z(distance: f32) -> Projector {
        let camera = Transform::from_xyz(0.0, 0.0, distance).looking_at(Vec3::ZERO, Vec3::Y);
        Projector {
            view_from_world: camera.to_matrix().inverse(),
            clip_from_view: Mat4::perspective_infinite_reverse_rh(
                std::f32::consts::FRAC_PI_4,
                1280.0 / 800.0,
                0.01,
            ),
            viewport: Rect::new(0.0, 0.0, 1280.0, 800.0),
        }
    }

    #[test]
    fn the_centre_projects_to_the_middle_of_the_viewport() {
        let p = projector_looking_down_minus_z(10.0);
        let (screen, depth) = p.project(Vec3::ZERO).unwrap();
        assert!((screen - Vec2::new(640.0, 400.0)).length() < 1e-3);
        assert!((depth - 10.0).abs() < 1e-4);
        // Up in the world is up on screen (smaller y), right is right.
        assert!(p.project(Vec3::Y).unwrap().0.y < 400.0);
        assert!(p.project(Vec3::X).unwrap().0.x > 640.0);
        assert!(p.project(Vec3::new(0.0, 0.0, 20.0)).is_none(), "behind");
    }

    #[test]
    fn screen_radius_matches_the_projected_disc_edge() {
        let p = projector_looking_down_minus_z(10.0);
        let (centre, depth) = p.project(Vec3::ZERO).unwrap();
        let (edge, _) = p.project(Vec3::new(0.3, 0.0, 0.0)).unwrap();
        let expected = edge.distance(centre);
        assert!((p.screen_radius(0.3, depth) - expected).abs() < 1e-2);
    }

    #[test]
    fn a_click_inside_the_disc_hits_and_outside_misses() {
        let p = projector_looking_down_minus_z(10.0);
        let points = [Vec3::ZERO];
        let r = p.screen_radius(0.1, 10.0);
        let centre = Vec2::new(640.0, 400.0);
        assert_eq!(
            pick(&points, disc(0.1), &p, centre + Vec2::new(r * 0.9, 0.0)),
            Some(0)
        );
        assert_eq!(
            pick(&points, disc(0.1), &p, centre + Vec2::new(r * 1.1, 0.0)),
            None
        );
        // A bigger splat is hit further out.
        assert_eq!(
            pick(&points, disc(0.2), &p, centre + Vec2::new(r * 1.1, 0.0)),
            Some(0)
        );
        // A hidden point is never hit.
        assert_eq!(pick(&points, disc(0.0), &p, centre), None);
    }

    #[test]
    fn a_tiny_far_splat_is_hit_at_its_minimum_size() {
        let p = projector_looking_down_minus_z(10.0);
        let points = [Vec3::ZERO];
        let centre = Vec2::new(640.0, 400.0);
        let tiny = |min_pixels| {
            move |_| Disc {
                radius: 1e-4,
                min_pixels,
            }
        };
        let cursor = centre + Vec2::new(2.5, 0.0);
        assert_eq!(pick(&points, tiny(0.0), &p, cursor), None);
        assert_eq!(pick(&points, tiny(3.0), &p, cursor), Some(0));
        assert_eq!(pick(&points, tiny(2.0), &p, cursor), None);
    }

    #[test]
    fn the_front_most_point_wins() {
        let p = projector_looking_down_minus_z(10.0);
        // Three points on the view axis; index 1 is nearest the camera.
        let points = [
            Vec3::new(0.0, 0.0, -2.0),
            Vec3::new(0.0, 0.0, 3.0),
            Vec3::ZERO,
        ];
        assert_eq!(
            pick(&points, disc(0.1), &p, Vec2::new(640.0, 400.0)),
            Some(1)
        );
        // Hide it: the next one behind wins.
        assert_eq!(
            pick(
                &points,
                |i| Disc {
                    radius: if i == 1 { 0.0 } else { 0.1 },
                    min_pixels: 0.0,
                },
                &p,
                Vec2::new(640.0, 400.0)
            ),
            Some(2)
        );
    }
}
