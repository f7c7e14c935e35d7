//! Box and lasso selection in the 3D view, and the multi-selection they make.
//!
//! A selection drag is a left-drag with a modifier (a plain left-drag turns
//! the view): Ctrl (or ⌘) starts a new selection, Shift adds to it, Alt
//! takes away from it. The shape is a lasso or a box (B switches; the panel
//! shows which). While dragging, the path is drawn over the view; when the
//! button is released the visible points are projected once (O(n), not per
//! frame) and those inside the screen-space polygon are selected.
//!
//! [`Selection`] is what other plugins read (the panel's gallery and exports,
//! the overlay that marks selected points); its `Res` change detection says
//! when it changed.

use bevy::ecs::system::SystemParam;
use bevy::prelude::*;
use bevy::window::PrimaryWindow;
use bevy_egui::{EguiContexts, EguiPrimaryContextPass, egui};

use super::camera::ViewCamera;
use super::layout::Positions;
use super::loading::Dataset;
use super::picking::Projector;
use super::state::{PointerOverUi, ViewState};

/// A drag shorter than this (logical pixels) selects nothing: it was a click.
const MIN_DRAG: f32 = 4.0;
/// The lasso records a cursor position once it moved this far (logical px).
const LASSO_STEP: f32 = 2.0;

pub struct SelectionPlugin;

impl Plugin for SelectionPlugin {
    fn build(&self, app: &mut App) {
        app.init_resource::<Selection>()
            .init_resource::<SelectionDrag>()
            .add_systems(
                Update,
                (follow_analysis, switch_shape, drag_selection)
                    .chain()
                    .in_set(SelectionSystems)
                    .after(super::loading::LoadingSystems)
                    .after(super::layout::LayoutSystems)
                    // A selection drag must claim the pointer before the
                    // orbit camera sees the press.
                    .before(super::camera::CameraSystems),
            )
            .add_systems(EguiPrimaryContextPass, draw_drag);
    }
}

#[derive(SystemSet, Clone, Debug, PartialEq, Eq, Hash)]
pub struct SelectionSystems;

/// The selected images (indices into the analysis shown), sorted, unique.
#[derive(Resource, Debug, Default)]
pub struct Selection {
    indices: Vec<usize>,
    /// Images in the analysis the selection belongs to.
    images: usize,
    /// Counts changes (the panel edits it without marking it changed every
    /// frame, and marks it when this moved).
    revision: u64,
}

/// How a drag combines with the current selection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SelectionOp {
    Replace,
    Add,
    Subtract,
}

impl Selection {
    pub fn indices(&self) -> &[usize] {
        &self.indices
    }

    pub fn len(&self) -> usize {
        self.indices.len()
    }

    pub fn is_empty(&self) -> bool {
        self.indices.is_empty()
    }

    pub fn contains(&self, i: usize) -> bool {
        self.indices.binary_search(&i).is_ok()
    }

    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// Combines `hits` (any order, repeats allowed) with the selection.
    pub fn apply(&mut self, op: SelectionOp, mut hits: Vec<usize>) {
        hits.sort_unstable();
        hits.dedup();
        self.revision += 1;
        self.indices = match op {
            SelectionOp::Replace => hits,
            SelectionOp::Add => {
                let mut all = std::mem::take(&mut self.indices);
                all.extend(hits);
                all.sort_unstable();
                all.dedup();
                all
            }
            SelectionOp::Subtract => std::mem::take(&mut self.indices)
                .into_iter()
                .filter(|i| hits.binary_search(i).is_err())
                .collect(),
        };
    }

    pub fn clear(&mut self) {
        self.revision += 1;
        self.indices.clear();
    }
}

/// The shape a selection drag draws.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum DragShape {
    #[default]
    Lasso,
    Box,
}

impl DragShape {
    pub fn name(self) -> &'static str {
        match self {
            DragShape::Lasso => "lasso",
            DragShape::Box => "box",
        }
    }
}

/// The selection drag in progress, the shape the next one draws, and the
/// last one's outline (shown until the camera moves: it is in screen space).
#[derive(Resource, Debug, Default)]
pub struct SelectionDrag {
    pub shape: DragShape,
    active: Option<ActiveDrag>,
    last: Option<(Vec<Vec2>, GlobalTransform)>,
}

#[derive(Debug)]
struct ActiveDrag {
    op: SelectionOp,
    shape: DragShape,
    /// Cursor positions, logical pixels.
    path: Vec<Vec2>,
}

impl SelectionDrag {
    /// True while a selection drag holds the pointer.
    pub fn active(&self) -> bool {
        self.active.is_some()
    }

    /// The outline of the last finished drag, logical pixels.
    pub fn last_outline(&self) -> Option<&[Vec2]> {
        self.last.as_ref().map(|(outline, _)| outline.as_slice())
    }

    /// The outline being drawn, and how it will combine.
    fn outline(&self) -> Option<(Vec<Vec2>, SelectionOp)> {
        let drag = self.active.as_ref()?;
        Some((polygon_of(drag.shape, &drag.path), drag.op))
    }
}

/// The modifiers held say whether a left-drag selects, and how.
pub fn op_of(keys: &ButtonInput<KeyCode>) -> Option<SelectionOp> {
    let any = |codes: [KeyCode; 2]| keys.any_pressed(codes);
    if any([KeyCode::ShiftLeft, KeyCode::ShiftRight]) {
        Some(SelectionOp::Add)
    } else if any([KeyCode::AltLeft, KeyCode::AltRight]) {
        Some(SelectionOp::Subtract)
    } else if any([KeyCode::ControlLeft, KeyCode::ControlRight])
        || any([KeyCode::SuperLeft, KeyCode::SuperRight])
    {
        Some(SelectionOp::Replace)
    } else {
        None
    }
}

/// The polygon a drag along `path` encloses: the path itself for a lasso
/// (closed back to its start), the rectangle spanned by its ends for a box.
pub fn polygon_of(shape: DragShape, path: &[Vec2]) -> Vec<Vec2> {
    match (shape, path.first(), path.last()) {
        (DragShape::Box, Some(&a), Some(&b)) => {
            vec![a, Vec2::new(b.x, a.y), b, Vec2::new(a.x, b.y)]
        }
        _ => path.to_vec(),
    }
}

/// Whether `p` is inside `polygon` (even-odd rule, so a lasso that crosses
/// itself leaves its twisted parts out, as drawing programs do).
pub fn inside(polygon: &[Vec2], p: Vec2) -> bool {
    let mut inside = false;
    let n = polygon.len();
    if n < 3 {
        return false;
    }
    let mut j = n - 1;
    for i in 0..n {
        let (a, b) = (polygon[i], polygon[j]);
        if (a.y > p.y) != (b.y > p.y) {
            let x = a.x + (p.y - a.y) * (b.x - a.x) / (b.y - a.y);
            if p.x < x {
                inside = !inside;
            }
        }
        j = i;
    }
    inside
}

/// The points (for which `visible` holds) whose projection falls inside
/// `polygon`; points behind the camera are never inside.
pub fn points_inside(
    points: &[Vec3],
    visible: impl Fn(usize) -> bool,
    projector: &Projector,
    polygon: &[Vec2],
) -> Vec<usize> {
    if polygon.len() < 3 {
        return Vec::new();
    }
    let bounds = polygon
        .iter()
        .fold(Rect::from_center_size(polygon[0], Vec2::ZERO), |r, &p| {
            r.union_point(p)
        });
    points
        .iter()
        .enumerate()
        .filter(|&(i, _)| visible(i))
        .filter_map(|(i, &p)| {
            let (screen, _) = projector.project(p)?;
            (bounds.contains(screen) && inside(polygon, screen)).then_some(i)
        })
        .collect()
}

/// A selection made on another image set means nothing here.
fn follow_analysis(dataset: Res<Dataset>, mut selection: ResMut<Selection>) {
    if !dataset.is_changed() {
        return;
    }
    let images = dataset
        .analysis
        .as_ref()
        .map_or(0, |a| a.folder.images.len());
    if images != selection.images {
        *selection = Selection {
            indices: Vec::new(),
            images,
            revision: selection.revision + 1,
        };
    }
}

fn switch_shape(
    keys: Res<ButtonInput<KeyCode>>,
    over_ui: Res<PointerOverUi>,
    mut drag: ResMut<SelectionDrag>,
) {
    if keys.just_pressed(KeyCode::KeyB) && !over_ui.typing {
        drag.shape = match drag.shape {
            DragShape::Lasso => DragShape::Box,
            DragShape::Box => DragShape::Lasso,
        };
    }
}

#[derive(SystemParam)]
struct DragInput<'w, 's> {
    buttons: Res<'w, ButtonInput<MouseButton>>,
    keys: Res<'w, ButtonInput<KeyCode>>,
    window: Single<'w, 's, &'static Window, With<PrimaryWindow>>,
}

/// What a finished drag selects among.
#[derive(SystemParam)]
struct Targets<'w, 's> {
    camera: Single<'w, 's, (&'static Camera, &'static GlobalTransform), With<ViewCamera>>,
    positions: Res<'w, Positions>,
    dataset: Res<'w, Dataset>,
    state: Res<'w, ViewState>,
}

impl Targets<'_, '_> {
    /// The visible points inside `polygon`, or `None` when the points shown
    /// are not the analysis' (a preview of another image set).
    fn inside(&self, polygon: &[Vec2], window: &Window) -> Option<Vec<usize>> {
        let a = self.dataset.analysis.as_ref()?;
        let points = &self.positions.current;
        if a.folder.images.len() != points.len() {
            return None;
        }
        let (camera, transform) = *self.camera;
        let projector = Projector::new(camera, transform, window.size());
        let hidden = &self.state.hidden_clusters;
        let clusters = &a.clusters.labels;
        Some(points_inside(
            points,
            |i| !hidden.contains(&clusters[i]),
            &projector,
            polygon,
        ))
    }
}

fn drag_selection(
    input: DragInput,
    targets: Targets,
    mut drag: ResMut<SelectionDrag>,
    mut over_ui: ResMut<PointerOverUi>,
    mut selection: ResMut<Selection>,
) {
    let cursor = input.window.cursor_position();
    if input.buttons.just_pressed(MouseButton::Left)
        && !over_ui.pointer
        && let (Some(op), Some(at)) = (op_of(&input.keys), cursor)
    {
        let shape = drag.shape;
        drag.active = Some(ActiveDrag {
            op,
            shape,
            path: vec![at],
        });
        drag.last = None;
    }
    let Some(active) = drag.active.as_mut() else {
        return;
    };
    // The drag is ours: the camera must not turn, hover must not flicker.
    over_ui.pointer = true;
    if let Some(at) = cursor
        && active
            .path
            .last()
            .is_none_or(|l| l.distance(at) >= LASSO_STEP)
    {
        active.path.push(at);
    }
    if input.buttons.pressed(MouseButton::Left) {
        return;
    }
    let Some(done) = drag.active.take() else {
        return;
    };
    let polygon = polygon_of(done.shape, &done.path);
    let (first, last) = (done.path[0], *done.path.last().unwrap_or(&done.path[0]));
    let extent = done
        .path
        .iter()
        .fold(0.0f32, |m, p| m.max(p.distance(first)));
    if extent < MIN_DRAG || (done.shape == DragShape::Box && first.distance(last) < MIN_DRAG) {
        return;
    }
    if let Some(hits) = targets.inside(&polygon, &input.window) {
        selection.apply(done.op, hits);
        drag.last = Some((polygon, *targets.camera.1));
    }
}

/// Draws the drag's outline over the view (and the last one, until the
/// camera moves).
fn draw_drag(
    mut contexts: EguiContexts,
    drag: Res<SelectionDrag>,
    camera: Single<&GlobalTransform, With<ViewCamera>>,
) -> Result {
    let (outline, op, settled) = match (drag.outline(), &drag.last) {
        (Some((outline, op)), _) => (outline, op, false),
        (None, Some((outline, at))) if at == *camera => {
            (outline.clone(), SelectionOp::Replace, true)
        }
        _ => return Ok(()),
    };
    if outline.len() < 2 {
        return Ok(());
    }
    let ctx = contexts.ctx_mut()?;
    let painter = ctx.layer_painter(egui::LayerId::new(
        egui::Order::Foreground,
        egui::Id::new("selection-drag"),
    ));
    let colour = match op {
        SelectionOp::Replace | SelectionOp::Add => egui::Color32::from_rgb(255, 215, 64),
        SelectionOp::Subtract => egui::Color32::from_rgb(255, 110, 90),
    };
    let colour = if settled {
        colour.gamma_multiply(0.55)
    } else {
        colour
    };
    let points: Vec<egui::Pos2> = outline.iter().map(|p| egui::pos2(p.x, p.y)).collect();
    painter.add(egui::Shape::closed_line(
        points,
        egui::Stroke::new(1.5, colour),
    ));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_replace_add_and_subtract() {
        let mut s = Selection::default();
        s.apply(SelectionOp::Replace, vec![5, 1, 5, 3]);
        assert_eq!(s.indices(), [1, 3, 5]);
        s.apply(SelectionOp::Add, vec![2, 3]);
        assert_eq!(s.indices(), [1, 2, 3, 5]);
        s.apply(SelectionOp::Subtract, vec![1, 5, 9]);
        assert_eq!(s.indices(), [2, 3]);
        assert!(s.contains(3) && !s.contains(1));
        s.apply(SelectionOp::Replace, vec![]);
        assert!(s.is_empty());
    }

    #[test]
    fn the_even_odd_rule_decides_inside() {
        let square = polygon_of(
            DragShape::Box,
            &[
                Vec2::new(10.0, 10.0),
                Vec2::new(5.0, 50.0),
                Vec2::new(30.0, 30.0),
            ],
        );
        assert_eq!(square.len(), 4);
        assert!(inside(&square, Vec2::new(20.0, 20.0)));
        assert!(!inside(&square, Vec2::new(40.0, 20.0)));
        assert!(!inside(&square, Vec2::new(20.0, 5.0)));
        // An L-shaped lasso: its notch is outside.
        let l = [
            Vec2::new(0.0, 0.0),
            Vec2::new(10.0, 0.0),
            Vec2::new(10.0, 5.0),
            Vec2::new(5.0, 5.0),
            Vec2::new(5.0, 10.0),
            Vec2::new(0.0, 10.0),
        ];
        assert!(inside(&l, Vec2::new(2.0, 8.0)));
        assert!(inside(&l, Vec2::new(8.0, 2.0)));
        assert!(!inside(&l, Vec2::new(8.0, 8.0)));
        assert!(!inside(&l[..2], Vec2::new(1.0, 0.0)), "no area");
    }

    #[test]
    fn a_lasso_selects_the_visible_points_projected_inside_it() {
        let camera = Transform::from_xyz(0.0, 0.0, 10.0).looking_at(Vec3::ZERO, Vec3::Y);
        let projector = Projector {
            view_from_world: camera.to_matrix().inverse(),
            clip_from_view: Mat4::perspective_infinite_reverse_rh(
                std::f32::consts::FRAC_PI_4,
                1.0,
                0.01,
            ),
            viewport: Rect::new(0.0, 0.0, 800.0, 800.0),
        };
        let points = [
            Vec3::ZERO,                // centre of the screen
            Vec3::new(0.5, 0.0, 0.0),  // right of it
            Vec3::new(-3.0, 0.0, 0.0), // far left
            Vec3::new(0.0, 0.0, 20.0), // behind the camera
            Vec3::new(0.1, 0.1, -5.0), // behind the centre, further away
        ];
        let around_centre = polygon_of(
            DragShape::Box,
            &[Vec2::new(300.0, 300.0), Vec2::new(500.0, 500.0)],
        );
        let all = points_inside(&points, |_| true, &projector, &around_centre);
        assert_eq!(all, [0, 1, 4]);
        let visible = points_inside(&points, |i| i != 1, &projector, &around_centre);
        assert_eq!(visible, [0, 4]);
        for (i, p) in points.iter().enumerate() {
            let expected = projector
                .project(*p)
                .is_some_and(|(s, _)| inside(&around_centre, s));
            assert_eq!(all.contains(&i), expected, "point {i}");
        }
    }
}
