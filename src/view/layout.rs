//! The point positions on screen: the pipeline's layout (or its PCA preview),
//! centred and scaled to a fixed size, moving smoothly when a new layout
//! replaces the previous one.

use bevy::prelude::*;

use super::loading::Dataset;
use super::redraw::FrameStep;
use crate::geometry::Point3;

/// Root-mean-square distance of the points from the centre after scaling:
/// every layout then fits the same camera framing.
pub const LAYOUT_RADIUS: f32 = 4.0;
/// Seconds a transition between two layouts takes.
const TRANSITION_SECONDS: f32 = 1.0;

pub struct LayoutPlugin;

impl Plugin for LayoutPlugin {
    fn build(&self, app: &mut App) {
        app.init_resource::<Positions>().add_systems(
            Update,
            (follow_dataset, animate_transition)
                .chain()
                .in_set(LayoutSystems)
                .after(super::loading::LoadingSystems),
        );
    }
}

/// Systems that move [`Positions`]; readers run after them.
#[derive(SystemSet, Clone, Debug, PartialEq, Eq, Hash)]
pub struct LayoutSystems;

#[derive(Resource, Default)]
pub struct Positions {
    /// Where each point is drawn (and picked) this frame.
    pub current: Vec<Vec3>,
    from: Vec<Vec3>,
    to: Vec<Vec3>,
    /// 0 → 1 over a transition; 1 when settled.
    progress: f32,
    /// The [`Dataset::layout_generation`] shown, to notice a new layout.
    generation: u64,
    /// Distance from the centre within which 98% of the points lie.
    pub radius: f32,
}

impl Positions {
    pub fn settled(&self) -> bool {
        // An empty folder has nothing to move.
        self.progress >= 1.0 || self.to.is_empty()
    }

    /// Where a point ends up once the transition is over.
    pub fn target(&self, index: usize) -> Option<Vec3> {
        self.to.get(index).copied()
    }

    /// Where every point ends up once the transition is over.
    pub fn targets(&self) -> &[Vec3] {
        &self.to
    }

    /// The [`Dataset::layout_generation`] these positions show: derived
    /// data (the spatial index, the home view) is kept per generation.
    pub fn generation(&self) -> u64 {
        self.generation
    }
}

fn follow_dataset(dataset: Res<Dataset>, mut positions: ResMut<Positions>) {
    if positions.generation == dataset.layout_generation {
        return;
    }
    let Some(points) = dataset.shown_layout() else {
        *positions = Positions {
            generation: dataset.layout_generation,
            ..default()
        };
        return;
    };
    let to = normalise(points);
    let p = positions.as_mut();
    p.generation = dataset.layout_generation;
    // Points keep their identity across layouts of the same images, so they
    // can travel; a different image set starts in place.
    if p.current.len() == to.len() {
        p.from = std::mem::take(&mut p.current);
        p.current = p.from.clone();
        p.progress = 0.0;
    } else {
        p.current = to.clone();
        p.from.clear();
        p.progress = 1.0;
    }
    p.radius = spread(&to);
    p.to = to;
}

/// The distance from the origin within which 98% of `points` lie.
pub fn spread(points: &[Vec3]) -> f32 {
    let mut d: Vec<f32> = points.iter().map(|p| p.length()).collect();
    if d.is_empty() {
        return LAYOUT_RADIUS;
    }
    let k = (d.len() * 98 / 100).min(d.len() - 1);
    d.select_nth_unstable_by(k, f32::total_cmp);
    d[k].max(1e-3)
}

fn animate_transition(step: Res<FrameStep>, mut positions: ResMut<Positions>) {
    if positions.settled() {
        return;
    }
    let p = positions.as_mut();
    // Frames can be slow (software rendering): never step past the end.
    p.progress = (p.progress + step.seconds / TRANSITION_SECONDS).min(1.0);
    let t = smoothstep(p.progress);
    for ((c, a), b) in p.current.iter_mut().zip(&p.from).zip(&p.to) {
        *c = a.lerp(*b, t);
    }
}

fn smoothstep(t: f32) -> f32 {
    t * t * (3.0 - 2.0 * t)
}

/// Centres the points on their mean and scales them to [`LAYOUT_RADIUS`].
pub fn normalise(points: &[Point3]) -> Vec<Vec3> {
    if points.is_empty() {
        return Vec::new();
    }
    let v: Vec<Vec3> = points.iter().map(|p| Vec3::from_array(*p)).collect();
    let mean = v.iter().copied().sum::<Vec3>() / v.len() as f32;
    let rms = (v.iter().map(|p| (*p - mean).length_squared()).sum::<f32>() / v.len() as f32).sqrt();
    let scale = if rms > 1e-12 {
        LAYOUT_RADIUS / rms
    } else {
        1.0
    };
    v.into_iter().map(|p| (p - mean) * scale).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalised_layouts_are_centred_with_a_fixed_radius() {
        let points: Vec<Point3> = (0..100)
            .map(|i| [i as f32 * 3.0 + 50.0, (i % 7) as f32, -20.0])
            .collect();
        let v = normalise(&points);
        let mean = v.iter().copied().sum::<Vec3>() / v.len() as f32;
        assert!(mean.length() < 1e-3);
        let rms = (v.iter().map(|p| p.length_squared()).sum::<f32>() / v.len() as f32).sqrt();
        assert!((rms - LAYOUT_RADIUS).abs() < 1e-3);
        // A single point (or all equal) stays finite.
        assert!(normalise(&[[1.0, 2.0, 3.0]])[0].is_finite());
    }
}
