//! Orbit camera: left-drag rotates around the target, right/middle-drag pans,
//! the wheel zooms toward the point under the cursor, R (or the panel's
//! button) resets the view, and a double-click on a point flies to it
//! (picking asks for that through [`OrbitGoal`]). Input moves a goal; the
//! camera eases toward it every frame, so every move is smooth.

use bevy::core_pipeline::tonemapping::Tonemapping;
use bevy::ecs::system::SystemParam;
use bevy::input::mouse::{AccumulatedMouseScroll, MouseScrollUnit};
use bevy::prelude::*;
use bevy::render::view::{Msaa, NoIndirectDrawing};
use bevy::window::PrimaryWindow;

use super::layout::{LAYOUT_RADIUS, Positions};
use super::redraw::FrameStep;
use super::state::PointerOverUi;
use bevy::camera::visibility::RenderLayers;
use bevy::camera::{CameraOutputMode, ClearColorConfig};
use bevy::render::render_resource::BlendState;

/// Vertical field of view.
pub const FOV_Y: f32 = std::f32::consts::FRAC_PI_4;
/// Fraction of the remaining way covered per second (exponential easing).
const EASING_PER_SECOND: f32 = 10.0;
/// Room left around the map at the home view: a share of the viewport,
/// and at least half a thumbnail billboard, in logical pixels.
const HOME_MARGIN_SHARE: f32 = 0.03;
const HOME_MARGIN_PIXELS: f32 = 28.0;

pub struct CameraPlugin;

impl Plugin for CameraPlugin {
    fn build(&self, app: &mut App) {
        app.init_resource::<HomeView>()
            .add_systems(Startup, spawn_cameras)
            .add_systems(
                Update,
                (frame_the_layout, steer_orbit, ease_toward_goal)
                    .chain()
                    .in_set(CameraSystems)
                    .after(super::layout::LayoutSystems),
            );
    }
}

#[derive(SystemSet, Clone, Debug, PartialEq, Eq, Hash)]
pub struct CameraSystems;

/// Where the camera is: a point it looks at, two angles and a distance.
#[derive(Component, Clone, Copy, Debug, PartialEq)]
pub struct Orbit {
    pub target: Vec3,
    /// Around the vertical axis, radians.
    pub yaw: f32,
    /// Above the horizontal plane, radians.
    pub pitch: f32,
    pub distance: f32,
}

/// The camera that shows the points (the panel has its own).
#[derive(Component)]
pub struct ViewCamera;

/// The view that shows the whole layout in the camera's viewport: where R
/// and "Reset view" go, and where a new dataset starts.
#[derive(Resource, Clone, Copy, Debug, Default)]
pub struct HomeView(pub Orbit);

/// Where the camera is heading; [`Orbit`] eases toward it.
#[derive(Component, Clone, Copy, Debug, PartialEq)]
pub struct OrbitGoal(pub Orbit);

impl Default for Orbit {
    fn default() -> Self {
        Self::home()
    }
}

impl Orbit {
    /// The whole layout in view, seen slightly from above.
    pub fn home() -> Self {
        Self {
            target: Vec3::ZERO,
            yaw: 0.5,
            pitch: 0.3,
            distance: LAYOUT_RADIUS * 3.6,
        }
    }

    pub fn rotation(&self) -> Quat {
        Quat::from_euler(EulerRot::YXZ, self.yaw, -self.pitch, 0.0)
    }

    pub fn transform(&self) -> Transform {
        let rotation = self.rotation();
        Transform {
            translation: self.target + rotation * Vec3::Z * self.distance,
            rotation,
            ..default()
        }
    }

    /// Drag by `delta` logical pixels: a full window width turns about 1.2 turns.
    pub fn rotate(&mut self, delta: Vec2) {
        const RADIANS_PER_PIXEL: f32 = 0.006;
        self.yaw -= delta.x * RADIANS_PER_PIXEL;
        self.pitch = (self.pitch + delta.y * RADIANS_PER_PIXEL).clamp(-1.55, 1.55);
    }

    /// Drag by `delta` logical pixels in a viewport `viewport_height` tall: the
    /// target moves so the content under the cursor follows it.
    pub fn pan(&mut self, delta: Vec2, viewport_height: f32) {
        let world_per_pixel = 2.0 * self.distance * (FOV_Y / 2.0).tan() / viewport_height.max(1.0);
        let rotation = self.rotation();
        let right = rotation * Vec3::X;
        let up = rotation * Vec3::Y;
        self.target += (-right * delta.x + up * delta.y) * world_per_pixel;
    }

    /// Scales the distance by `factor` (< 1 zooms in) keeping `anchor` (the
    /// point under the cursor, on the plane through the target facing the
    /// camera) at the same place on screen.
    pub fn zoom_toward(&mut self, factor: f32, anchor: Vec3) {
        let factor = factor.clamp(0.2, 5.0);
        let distance = (self.distance * factor).clamp(0.05, LAYOUT_RADIUS * 40.0);
        let applied = distance / self.distance;
        self.target = anchor + (self.target - anchor) * applied;
        self.distance = distance;
    }

    /// Moves toward `goal` by the fraction `t` of the way.
    pub fn ease(&self, goal: &Orbit, t: f32) -> Orbit {
        let dyaw = yaw_delta(self.yaw, goal.yaw);
        Orbit {
            target: self.target.lerp(goal.target, t),
            yaw: self.yaw + dyaw * t,
            pitch: self.pitch + (goal.pitch - self.pitch) * t,
            // Distances ease in log space, so a big zoom feels even.
            distance: (self.distance.ln() + (goal.distance.ln() - self.distance.ln()) * t).exp(),
        }
    }

    /// True once there is nothing visible left to ease.
    pub fn close_to(&self, goal: &Orbit) -> bool {
        self.target.distance(goal.target) < 1e-3 * self.distance
            && yaw_delta(self.yaw, goal.yaw).abs() < 1e-3
            && (self.pitch - goal.pitch).abs() < 1e-3
            && (self.distance / goal.distance - 1.0).abs() < 1e-3
    }

    /// The home view for points within `radius` of the origin, seen through
    /// a viewport of width / height `aspect`: the whole sphere fits.
    pub fn framing(radius: f32, aspect: f32) -> Orbit {
        let half_y = FOV_Y / 2.0;
        let half_x = (half_y.tan() * aspect.max(0.1)).atan();
        Orbit {
            distance: radius / half_x.min(half_y).sin(),
            ..Orbit::home()
        }
    }

    /// The home view of `points` through a viewport of `size` logical
    /// pixels: seen from the home angles, the camera aims at the centre of
    /// the points' image and backs off just enough that they fill the
    /// viewport, less a margin (room for a billboard's half at the edge).
    /// A few extreme points (0.2% a side) may fall outside, so that one
    /// outlier does not shrink the whole map.
    pub fn fit(points: &[Vec3], size: Vec2) -> Orbit {
        let home = Orbit::home();
        if points.is_empty() || size.x < 1.0 || size.y < 1.0 {
            return Orbit::framing(LAYOUT_RADIUS, size.x / size.y.max(1.0));
        }
        let rotation = home.rotation();
        let (right, up, back) = (rotation * Vec3::X, rotation * Vec3::Y, rotation * Vec3::Z);
        // Tangents of the half-angles actually usable, margins taken off.
        let usable = |extent: f32| {
            let margin = (extent * HOME_MARGIN_SHARE).max(HOME_MARGIN_PIXELS);
            ((extent - 2.0 * margin) / extent).max(0.2)
        };
        let tan_y = (FOV_Y / 2.0).tan() * usable(size.y);
        let tan_x = (FOV_Y / 2.0).tan() * size.x / size.y * usable(size.x);
        // Point i fits if |x_i - cx| <= tan_x (D - z_i) (and the same for y),
        // D the camera's distance from the target, (cx, cy) the target's
        // offset across the view. The smallest D: half the sum of the
        // largest z + x/tan and z - x/tan; cx: half their difference.
        let stride = (points.len() / 200_000).max(1);
        let mut bounds: [Vec<f32>; 4] = Default::default();
        for p in points.iter().step_by(stride) {
            let (x, y, z) = (p.dot(right), p.dot(up), p.dot(back));
            bounds[0].push(z + x / tan_x);
            bounds[1].push(z - x / tan_x);
            bounds[2].push(z + y / tan_y);
            bounds[3].push(z - y / tan_y);
        }
        let [a_plus, a_minus, b_plus, b_minus] = bounds.map(|mut v| {
            let skip = v.len() * 2 / 1000;
            let k = v.len() - 1 - skip;
            *v.select_nth_unstable_by(k, f32::total_cmp).1
        });
        let cx = (a_plus - a_minus) * 0.5 * tan_x;
        let cy = (b_plus - b_minus) * 0.5 * tan_y;
        let distance = ((a_plus + a_minus) * 0.5).max((b_plus + b_minus) * 0.5);
        Orbit {
            target: right * cx + up * cy,
            distance: distance.max(0.5),
            ..home
        }
    }

    /// The goal that brings `point` to the centre, close enough to tell its
    /// neighbours apart.
    pub fn fly_to(&self, point: Vec3, distance: f32) -> Orbit {
        Orbit {
            target: point,
            distance: distance.min(self.distance),
            ..*self
        }
    }
}

/// The signed turn from yaw `a` to yaw `b` the short way round.
fn yaw_delta(a: f32, b: f32) -> f32 {
    use std::f32::consts::{PI, TAU};
    (b - a + PI).rem_euclid(TAU) - PI
}

fn spawn_cameras(mut commands: Commands) {
    let orbit = Orbit::home();
    commands.spawn((
        ViewCamera,
        Camera3d::default(),
        Projection::Perspective(PerspectiveProjection {
            fov: FOV_Y,
            near: 0.01,
            ..default()
        }),
        orbit.transform(),
        orbit,
        OrbitGoal(orbit),
        // Without the tonemapping LUTs feature, any other tonemapper is blank.
        Tonemapping::None,
        // Software renderers pay ~3× for MSAA; the splats cut their own discs.
        Msaa::Off,
        // The points are drawn with a direct (not indirect) instanced draw.
        NoIndirectDrawing,
    ));
    // egui draws over the whole window with its own camera, so the 3D
    // camera's viewport can leave out the panel.
    commands.spawn((
        bevy_egui::PrimaryEguiContext,
        Camera2d,
        RenderLayers::none(),
        Camera {
            order: 1,
            output_mode: CameraOutputMode::Write {
                blend_state: Some(BlendState::ALPHA_BLENDING),
                clear_color: ClearColorConfig::None,
            },
            clear_color: ClearColorConfig::Custom(Color::NONE),
            ..default()
        },
        Tonemapping::None,
        Msaa::Off,
    ));
}

/// Keeps [`HomeView`] fitted to the layout and the viewport, and brings the
/// camera there when a new image set appears, or when the home moves while
/// the camera is still at it (the final layout replacing the preview, the
/// panel taking its share of the window).
fn frame_the_layout(
    positions: Res<Positions>,
    mut home: ResMut<HomeView>,
    mut camera: Single<(&Camera, &mut OrbitGoal), With<ViewCamera>>,
    mut fitted_for: Local<Option<(u64, UVec2)>>,
    mut framed: Local<usize>,
) {
    let (cam, goal) = &mut *camera;
    let size = cam
        .logical_viewport_size()
        .unwrap_or(Vec2::new(1280.0, 800.0));
    let key = (positions.generation(), size.round().as_uvec2());
    if *fitted_for != Some(key) && positions.settled() {
        *fitted_for = Some(key);
        let previous = home.0;
        home.0 = Orbit::fit(positions.targets(), size);
        if goal.0 == previous {
            goal.0 = home.0;
        }
    }
    let count = positions.current.len();
    if count != *framed && count > 0 {
        *framed = count;
        goal.0 = home.0;
    }
}

/// Last cursor position while a button is held, to turn motion into drags.
#[derive(Default)]
struct Drag {
    last: Option<Vec2>,
}

/// The input that steers the orbit.
#[derive(SystemParam)]
struct OrbitInput<'w, 's> {
    buttons: Res<'w, ButtonInput<MouseButton>>,
    keys: Res<'w, ButtonInput<KeyCode>>,
    scroll: Res<'w, AccumulatedMouseScroll>,
    over_ui: Res<'w, PointerOverUi>,
    window: Single<'w, 's, &'static Window, With<PrimaryWindow>>,
}

fn steer_orbit(
    mut drag: Local<Drag>,
    input: OrbitInput,
    home: Res<HomeView>,
    mut camera: Single<(&Camera, &GlobalTransform, &mut OrbitGoal), With<ViewCamera>>,
) {
    let OrbitInput {
        buttons,
        keys,
        scroll,
        over_ui,
        window,
    } = input;
    let (camera, transform, goal) = &mut *camera;
    // Typing "r" in the search field is not a reset.
    if keys.just_pressed(KeyCode::KeyR) && !over_ui.typing {
        goal.0 = home.0;
    }
    let cursor = window.cursor_position();
    let held = [MouseButton::Left, MouseButton::Right, MouseButton::Middle]
        .iter()
        .any(|b| buttons.pressed(*b));
    // A drag belongs to the view only if it started there.
    if buttons.get_just_pressed().next().is_some() {
        drag.last = if over_ui.pointer { None } else { cursor };
    }
    if !held {
        drag.last = None;
    }
    if let (Some(last), Some(now)) = (drag.last, cursor) {
        let delta = now - last;
        if buttons.pressed(MouseButton::Left) {
            goal.0.rotate(delta);
        } else {
            goal.0.pan(delta, window.height());
        }
        drag.last = Some(now);
    }
    if scroll.delta.y != 0.0 && !over_ui.pointer {
        let notches = match scroll.unit {
            MouseScrollUnit::Line => scroll.delta.y,
            MouseScrollUnit::Pixel => scroll.delta.y / 40.0,
        };
        let factor = 0.85f32.powf(notches);
        let forward = transform.forward();
        let anchor = cursor
            .and_then(|c| camera.viewport_to_world(transform, c).ok())
            .and_then(|ray| {
                let plane = InfinitePlane3d::new(*forward);
                ray.plane_intersection_point(goal.0.target, plane)
            })
            .unwrap_or(goal.0.target);
        goal.0.zoom_toward(factor, anchor);
    }
}

fn ease_toward_goal(
    step: Res<FrameStep>,
    mut camera: Single<(&mut Orbit, &OrbitGoal, &mut Transform), With<ViewCamera>>,
) {
    let (orbit, goal, transform) = &mut *camera;
    if **orbit == goal.0 {
        return;
    }
    let t = 1.0 - (-EASING_PER_SECOND * step.seconds).exp();
    **orbit = if orbit.close_to(&goal.0) {
        goal.0
    } else {
        orbit.ease(&goal.0, t)
    };
    **transform = orbit.transform();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn project(orbit: &Orbit, p: Vec3) -> Vec2 {
        let view = orbit.transform().to_matrix().inverse();
        let proj = Mat4::perspective_infinite_reverse_rh(FOV_Y, 1.6, 0.01);
        let clip = proj * view * p.extend(1.0);
        Vec2::new(clip.x, clip.y) / clip.w
    }

    #[test]
    fn the_camera_looks_at_its_target_from_its_distance() {
        let orbit = Orbit {
            target: Vec3::new(1.0, 2.0, 3.0),
            yaw: 0.7,
            pitch: -0.4,
            distance: 5.0,
        };
        let t = orbit.transform();
        assert!((t.translation.distance(orbit.target) - 5.0).abs() < 1e-4);
        let towards = (orbit.target - t.translation).normalize();
        assert!(t.forward().dot(towards) > 0.9999);
        assert!(project(&orbit, orbit.target).length() < 1e-4);
    }

    #[test]
    fn the_home_view_fits_the_layout_in_a_narrow_viewport() {
        // The sphere's edge points, sideways and upward, stay in view, and the
        // tighter of the two nearly touches the border: the view is not wasted.
        for aspect in [0.5, 1.0, 2.0] {
            let home = Orbit::framing(5.0, aspect);
            let rotation = home.rotation();
            let view = home.transform().to_matrix().inverse();
            let proj = Mat4::perspective_infinite_reverse_rh(FOV_Y, aspect, 0.01);
            let ndc = |p: Vec3| {
                let clip = proj * view * p.extend(1.0);
                Vec2::new(clip.x, clip.y) / clip.w
            };
            let x = ndc(home.target + rotation * Vec3::X * 5.0).x;
            let y = ndc(home.target + rotation * Vec3::Y * 5.0).y;
            assert!(x <= 1.0 && y <= 1.0, "aspect {aspect}: {x} {y}");
            assert!(x.max(y) > 0.9, "aspect {aspect}: {x} {y}");
        }
    }

    #[test]
    fn the_home_view_fills_the_viewport_with_the_points() {
        // A flat, off-centre, elongated cloud: the fit centres it and makes
        // its image touch the margins, where a bounding sphere would not.
        let points: Vec<Vec3> = (0..2000)
            .map(|i| {
                let t = i as f32 / 2000.0;
                Vec3::new(
                    3.0 + 8.0 * (t - 0.5),
                    1.0 + (t * 40.0).sin(),
                    0.5 * (t * 7.0).cos(),
                )
            })
            .collect();
        for size in [Vec2::new(1000.0, 800.0), Vec2::new(600.0, 900.0)] {
            let home = Orbit::fit(&points, size);
            let view = home.transform().to_matrix().inverse();
            let proj = Mat4::perspective_infinite_reverse_rh(FOV_Y, size.x / size.y, 0.01);
            let (mut lo, mut hi) = (Vec2::INFINITY, Vec2::NEG_INFINITY);
            for p in &points {
                let clip = proj * view * p.extend(1.0);
                let ndc = Vec2::new(clip.x, clip.y) / clip.w;
                let px = (ndc * 0.5 + 0.5) * size;
                lo = lo.min(px);
                hi = hi.max(px);
            }
            let margin = (size * HOME_MARGIN_SHARE).max(Vec2::splat(HOME_MARGIN_PIXELS));
            // Inside the margins (a few extreme points may be left out),
            let tolerance = 0.02 * size;
            assert!(
                lo.x >= margin.x - tolerance.x && lo.y >= margin.y - tolerance.y,
                "{size}: {lo}"
            );
            assert!(
                hi.x <= size.x - margin.x + tolerance.x && hi.y <= size.y - margin.y + tolerance.y,
                "{size}: {hi}"
            );
            // centred, and touching the margins in one direction at least.
            let (left, right) = (lo.x, size.x - hi.x);
            let (top, bottom) = (lo.y, size.y - hi.y);
            assert!(
                (left - right).abs() < 0.05 * size.x,
                "{size}: {left} {right}"
            );
            assert!(
                (top - bottom).abs() < 0.05 * size.y,
                "{size}: {top} {bottom}"
            );
            let slack = (left - margin.x).min(top - margin.y);
            assert!(slack < 0.03 * size.x.min(size.y), "{size}: slack {slack}");
        }
        // Nothing to fit: the old sphere framing.
        assert_eq!(
            Orbit::fit(&[], Vec2::new(800.0, 800.0)).distance,
            Orbit::framing(LAYOUT_RADIUS, 1.0).distance
        );
    }

    #[test]
    fn zooming_keeps_the_anchor_in_place_on_screen() {
        let mut orbit = Orbit::home();
        // A point on the plane through the target facing the camera.
        let rotation = orbit.rotation();
        let anchor = orbit.target + rotation * Vec3::new(1.5, -0.8, 0.0);
        let before = project(&orbit, anchor);
        orbit.zoom_toward(0.5, anchor);
        let after = project(&orbit, anchor);
        assert!((before - after).length() < 1e-4, "{before} vs {after}");
        assert!((orbit.distance - Orbit::home().distance * 0.5).abs() < 1e-4);
    }

    #[test]
    fn panning_moves_content_with_the_cursor() {
        let mut orbit = Orbit::home();
        let p = orbit.target;
        orbit.pan(Vec2::new(100.0, 0.0), 800.0);
        // Dragging right moves the scene right: the old target is now right of centre.
        assert!(project(&orbit, p).x > 0.0);
        let mut orbit = Orbit::home();
        orbit.pan(Vec2::new(0.0, 100.0), 800.0);
        // Dragging down (screen y grows downward) moves the scene down.
        assert!(project(&orbit, p).y < 0.0);
    }

    #[test]
    fn rotation_keeps_the_distance_and_clamps_the_pitch() {
        let mut orbit = Orbit::home();
        orbit.rotate(Vec2::new(300.0, 10_000.0));
        assert!(orbit.pitch <= 1.55);
        let t = orbit.transform();
        assert!((t.translation.distance(orbit.target) - orbit.distance).abs() < 1e-3);
    }

    #[test]
    fn easing_converges_and_turns_the_short_way() {
        let from = Orbit {
            yaw: 3.0,
            ..Orbit::home()
        };
        let goal = Orbit {
            yaw: -3.0,
            target: Vec3::ONE,
            distance: 2.0,
            ..Orbit::home()
        };
        let step = from.ease(&goal, 0.5);
        // 3.0 → -3.0 the short way crosses π, so yaw grows.
        assert!(step.yaw > 3.0);
        let mut o = from;
        for _ in 0..200 {
            o = o.ease(&goal, 0.2);
        }
        assert!(o.close_to(&goal));
        let fly = o.fly_to(Vec3::new(3.0, 0.0, 0.0), 1.0);
        assert_eq!(fly.target, Vec3::new(3.0, 0.0, 0.0));
        assert!(fly.distance <= 1.0);
    }
}
