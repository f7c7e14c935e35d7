//! Hover and click: which point is under the cursor.
//!
//! The test is done on the CPU with the same geometry the splat shader draws:
//! a disc of the point's radius, facing the camera, centred on the point. Its
//! image on screen is a circle around the projected centre whose radius
//! shrinks with depth; the front-most disc that contains the cursor wins.

use bevy::prelude::*;
use bevy::window::PrimaryWindow;

use super::camera::{Orbit, OrbitGoal, ViewCamera};
use super::layout::Positions;
use super::loading::Dataset;
use super::state::{PointerOverUi, ViewState};
use super::thumbnails::{Atlas, BILLBOARD_HALF};

/// Seconds within which a second click is a double-click.
const DOUBLE_CLICK_SECONDS: f64 = 0.4;
/// A press that moved further than this (logical pixels) is a drag, not a click.
const CLICK_SLOP: f32 = 4.0;

pub struct PickingPlugin;

impl Plugin for PickingPlugin {
    fn build(&self, app: &mut App) {
        app.add_systems(
            Update,
            (hover_point, click_point)
                .chain()
                .after(super::layout::LayoutSystems)
                .before(super::points::PointSystems)
                .after(super::camera::CameraSystems),
        );
    }
}

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

/// The front-most point whose disc (radius from `radius_of`, 0 = hidden)
/// contains `cursor`.
pub fn pick(
    points: &[Vec3],
    radius_of: impl Fn(usize) -> f32,
    projector: &Projector,
    cursor: Vec2,
) -> Option<usize> {
    let mut best: Option<(usize, f32)> = None;
    for (i, p) in points.iter().enumerate() {
        let radius = radius_of(i);
        if radius <= 0.0 {
            continue;
        }
        let Some((screen, depth)) = projector.project(*p) else {
            continue;
        };
        if best.is_some_and(|(_, d)| d <= depth) {
            continue;
        }
        let r = projector.screen_radius(radius, depth);
        if screen.distance_squared(cursor) <= r * r {
            best = Some((i, depth));
        }
    }
    best.map(|(i, _)| i)
}

/// The radius picking uses for point `i`: its billboard's when it is drawn
/// as an image, else the splat size; 0 when hidden.
fn pick_radius(state: &ViewState, dataset: &Dataset, atlas: &Atlas, i: usize) -> f32 {
    let hidden = dataset
        .analysis
        .as_ref()
        .and_then(|a| a.clusters.labels.get(i))
        .is_some_and(|c| state.hidden_clusters.contains(c));
    if hidden {
        0.0
    } else if atlas.billboarded.get(i).copied().unwrap_or(false) {
        BILLBOARD_HALF
    } else {
        state.splat_size
    }
}

fn point_under_cursor(
    window: &Window,
    camera: (&Camera, &GlobalTransform),
    positions: &Positions,
    state: &ViewState,
    dataset: &Dataset,
    atlas: &Atlas,
) -> Option<usize> {
    let cursor = window.cursor_position()?;
    let projector = Projector::new(camera.0, camera.1, window.size());
    pick(
        &positions.current,
        |i| pick_radius(state, dataset, atlas, i),
        &projector,
        cursor,
    )
}

fn hover_point(
    window: Single<&Window, With<PrimaryWindow>>,
    camera: Single<(&Camera, &GlobalTransform), With<ViewCamera>>,
    positions: Res<Positions>,
    dataset: Res<Dataset>,
    atlas: Res<Atlas>,
    over_ui: Res<PointerOverUi>,
    mut state: ResMut<ViewState>,
) {
    let hovered = if over_ui.pointer {
        None
    } else {
        point_under_cursor(&window, *camera, &positions, &state, &dataset, &atlas)
    };
    // Only a real change marks the state changed (and rebuilds the instances).
    if state.hovered != hovered {
        state.hovered = hovered;
    }
}

#[derive(Default)]
struct ClickTracker {
    pressed_at: Option<Vec2>,
    last_click: Option<(f64, Option<usize>)>,
}

#[allow(clippy::too_many_arguments)]
fn click_point(
    mut tracker: Local<ClickTracker>,
    time: Res<Time<Real>>,
    buttons: Res<ButtonInput<MouseButton>>,
    window: Single<&Window, With<PrimaryWindow>>,
    camera: Single<(&Camera, &GlobalTransform, &Orbit, &mut OrbitGoal), With<ViewCamera>>,
    positions: Res<Positions>,
    dataset: Res<Dataset>,
    atlas: Res<Atlas>,
    over_ui: Res<PointerOverUi>,
    mut state: ResMut<ViewState>,
) {
    let cursor = window.cursor_position();
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
    let (cam, transform, orbit, mut goal) = camera.into_inner();
    let hit = point_under_cursor(
        &window,
        (cam, transform),
        &positions,
        &state,
        &dataset,
        &atlas,
    );
    let now = time.elapsed_secs_f64();
    let double = tracker
        .last_click
        .is_some_and(|(t, p)| now - t < DOUBLE_CLICK_SECONDS && p == hit);
    tracker.last_click = Some((now, hit));
    state.selected = hit;
    if double && let Some(i) = hit {
        goal.0 = orbit.fly_to(positions.current[i], 1.5);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
            pick(&points, |_| 0.1, &p, centre + Vec2::new(r * 0.9, 0.0)),
            Some(0)
        );
        assert_eq!(
            pick(&points, |_| 0.1, &p, centre + Vec2::new(r * 1.1, 0.0)),
            None
        );
        // A bigger splat is hit further out.
        assert_eq!(
            pick(&points, |_| 0.2, &p, centre + Vec2::new(r * 1.1, 0.0)),
            Some(0)
        );
        // A hidden point is never hit.
        assert_eq!(pick(&points, |_| 0.0, &p, centre), None);
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
        assert_eq!(pick(&points, |_| 0.1, &p, Vec2::new(640.0, 400.0)), Some(1));
        // Hide it: the next one behind wins.
        assert_eq!(
            pick(
                &points,
                |i| if i == 1 { 0.0 } else { 0.1 },
                &p,
                Vec2::new(640.0, 400.0)
            ),
            Some(2)
        );
    }
}
