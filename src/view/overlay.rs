//! Hover and selection emphasis: a second, tiny cloud drawn over the map
//! with the same splat shader (points.rs), holding only the hovered and the
//! selected points. Pointing at a point rebuilds these few instances, never
//! the map's million.
//!
//! A point shown as a thumbnail billboard gets a halo a little larger than
//! the billboard (the halo sits at the point, the billboard slightly in
//! front of it, so only the rim shows); a plain point gets a larger disc.

use bevy::prelude::*;
use bevy::window::PrimaryWindow;

use super::layout::Positions;
use super::points::{BaseCloud, PointCloud, Style};
use super::state::ViewState;
use super::thumbnails::{BILLBOARD_HALF, Billboards, MIN_BILLBOARD_HALF_PIXELS};

/// Emphasised splats are at least this big, in logical pixels, whatever the
/// zoom: a hovered point must be seen even at a million points.
const MIN_EMPHASIS_PIXELS: f32 = 5.0;

pub struct OverlayPlugin;

impl Plugin for OverlayPlugin {
    fn build(&self, app: &mut App) {
        // After picking, so a new hover shows in the same frame.
        app.add_systems(
            Update,
            build_overlay
                .after(super::picking::PickingSystems)
                .after(super::thumbnails::BillboardSystems),
        );
    }
}

/// Marks the overlay's cloud.
#[derive(Component)]
pub struct OverlayCloud;

/// One emphasised point: which, and how it stands out.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Emphasis {
    pub index: usize,
    pub colour: [u8; 4],
    /// Multiple of the point's own radius.
    pub grow: f32,
    /// Halo around a billboard, as a multiple of its half-side: past the
    /// corners (√2) so the whole picture is framed.
    pub frame: f32,
}

const SELECTED: [u8; 4] = [255, 217, 26, 255];
const HOVERED: [u8; 4] = [255, 255, 255, 255];

/// The points to emphasise, drawn in this order (later on top): the
/// selection, then the hovered point.
pub fn emphasised(state: &ViewState) -> Vec<Emphasis> {
    let mut out = Vec::with_capacity(2);
    if let Some(index) = state.selected {
        out.push(Emphasis {
            index,
            colour: SELECTED,
            grow: 2.2,
            frame: 1.6,
        });
    }
    if let Some(index) = state.hovered {
        out.push(Emphasis {
            index,
            colour: HOVERED,
            grow: 1.8,
            frame: 1.5,
        });
    }
    out
}

/// The overlay's style for `e`, given the point's own style and whether it
/// is shown as a billboard; `scale` is the window's pixels per logical pixel.
pub fn emphasis_style(e: &Emphasis, base: &Style, billboarded: bool, scale: f32) -> Style {
    if billboarded {
        // The billboard's size is max(world half-side, minimum on screen):
        // the halo follows the same rule, a little larger.
        Style {
            colour: e.colour,
            radius: BILLBOARD_HALF * e.frame,
            min_pixels: MIN_BILLBOARD_HALF_PIXELS * e.frame * scale,
        }
    } else {
        Style {
            colour: e.colour,
            radius: base.radius * e.grow,
            min_pixels: (base.min_pixels * e.grow).max(MIN_EMPHASIS_PIXELS * scale),
        }
    }
}

/// What the overlay was built from: the emphasised points, the base cloud's
/// position and style generations, the billboards' generation, the scale.
type OverlayKey = (Vec<Emphasis>, u64, u64, u64, f32);

fn build_overlay(
    state: Res<ViewState>,
    positions: Res<Positions>,
    billboards: Res<Billboards>,
    window: Single<&Window, With<PrimaryWindow>>,
    base: Single<&PointCloud, (With<BaseCloud>, Without<OverlayCloud>)>,
    mut overlay: Single<&mut PointCloud, With<OverlayCloud>>,
    mut built_for: Local<Option<OverlayKey>>,
) {
    let wanted = emphasised(&state);
    let scale = window.scale_factor();
    let key = (
        wanted.clone(),
        base.positions_generation,
        base.styles_generation,
        billboards.generation,
        scale,
    );
    if built_for.as_ref() == Some(&key) {
        return;
    }
    let mut points = Vec::with_capacity(wanted.len());
    let mut styles = Vec::with_capacity(wanted.len());
    for e in &wanted {
        let (Some(p), Some(style)) = (positions.current.get(e.index), base.styles.get(e.index))
        else {
            continue;
        };
        if style.radius <= 0.0 {
            continue; // hidden points stay hidden
        }
        points.push(*p);
        styles.push(emphasis_style(e, style, billboards.shows(e.index), scale));
    }
    overlay.set_positions(&points);
    overlay.set_styles(styles);
    *built_for = Some(key);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hover_draws_over_the_selection_and_both_outgrow_their_point() {
        let state = ViewState {
            selected: Some(3),
            hovered: Some(5),
            ..default()
        };
        let e = emphasised(&state);
        assert_eq!(
            e.iter().map(|e| e.index).collect::<Vec<_>>(),
            vec![3, 5],
            "hovered last, on top"
        );
        let base = Style {
            colour: [10, 20, 30, 40],
            radius: 0.02,
            min_pixels: 1.25,
        };
        for e in &e {
            let s = emphasis_style(e, &base, false, 1.0);
            assert!(s.radius > base.radius && s.min_pixels >= MIN_EMPHASIS_PIXELS);
            assert_eq!(s.colour[3], 255, "emphasis is opaque");
        }
        assert!(emphasised(&ViewState::default()).is_empty());
    }

    #[test]
    fn a_billboard_halo_frames_the_whole_picture() {
        let both = emphasised(&ViewState {
            selected: Some(0),
            hovered: Some(1),
            ..default()
        });
        for e in &both {
            let s = emphasis_style(e, &Style::default(), true, 2.0);
            // Beyond the corners of a square of half-side h: h·√2.
            assert!(s.radius > BILLBOARD_HALF * std::f32::consts::SQRT_2);
            assert!(s.min_pixels > MIN_BILLBOARD_HALF_PIXELS * 2.0 * std::f32::consts::SQRT_2);
        }
        // The selection's yellow rim shows around the hovered white one.
        let [selected, hovered] =
            [0, 1].map(|k| emphasis_style(&both[k], &Style::default(), true, 1.0));
        assert!(selected.radius > hovered.radius);
    }
}
