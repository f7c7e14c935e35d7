//! What colour each point is: the palette for ids (clusters, folders,
//! labels), a perceptually uniform colour map for scores, the per-image
//! facts those need (computed once per analysis, in the background), and
//! [`Look`], which turns them into a radius and a colour per point.

use std::sync::Arc;

use bevy::ecs::system::SystemParam;
use bevy::prelude::*;

use super::columns::{ColumnColour, ColumnFacts, Matcher};
use super::loading::Dataset;
use super::points::Classes;
use super::state::{ColorBy, Duplicates, IssueFilter, ViewState};
use super::tasks::Task;
use crate::analyze::{LABEL_ISSUE_FLAG, QualityFlag};
use crate::pipeline::Analysis;

pub struct ColourPlugin;

impl Plugin for ColourPlugin {
    fn build(&self, app: &mut App) {
        app.init_resource::<PointFacts>().add_systems(
            Update,
            follow_analysis.after(super::loading::LoadingSystems),
        );
    }
}

/// Grey of points without a value (noise, no label, no score).
pub const NO_VALUE: Color = Color::srgb(0.42, 0.42, 0.45);
/// How much of its colour a dimmed point keeps.
const DIM: f32 = 0.12;

/// Distinct colours for ids 0, 1, 2, …: Tableau's ten, then a golden-ratio
/// hue walk that keeps neighbouring ids apart; noise (-1) is grey.
pub fn palette(id: i32) -> Color {
    if id < 0 {
        return NO_VALUE;
    }
    const TAB10: [(f32, f32, f32); 10] = [
        (0.12, 0.47, 0.71),
        (1.00, 0.50, 0.05),
        (0.17, 0.63, 0.17),
        (0.84, 0.15, 0.16),
        (0.58, 0.40, 0.74),
        (0.55, 0.34, 0.29),
        (0.89, 0.47, 0.76),
        (0.74, 0.74, 0.13),
        (0.09, 0.75, 0.81),
        (0.98, 0.75, 0.80),
    ];
    let id = id as usize;
    if id < TAB10.len() {
        let (r, g, b) = TAB10[id];
        return Color::srgb(r, g, b);
    }
    let hue = (id as f32 * 0.618_034 * 360.0) % 360.0;
    Color::hsl(hue, 0.65, 0.55)
}

/// Matplotlib's viridis at nine evenly spaced stops (sRGB, 0-255): its
/// lightness rises evenly from dark purple to yellow, so equal steps in a
/// score look like equal steps in colour, also to colour-blind readers.
const VIRIDIS: [[u8; 3]; 9] = [
    [68, 1, 84],
    [71, 45, 123],
    [59, 82, 139],
    [44, 114, 142],
    [33, 145, 140],
    [40, 174, 128],
    [94, 201, 98],
    [173, 220, 48],
    [253, 231, 37],
];

/// The colour map at `t` in [0, 1] (clamped; NaN is [`NO_VALUE`]).
pub fn viridis(t: f32) -> Color {
    if t.is_nan() {
        return NO_VALUE;
    }
    let x = t.clamp(0.0, 1.0) * (VIRIDIS.len() - 1) as f32;
    let i = (x.floor() as usize).min(VIRIDIS.len() - 2);
    let f = x - i as f32;
    let (a, b) = (VIRIDIS[i], VIRIDIS[i + 1]);
    let mix = |k: usize| (a[k] as f32 + (b[k] as f32 - a[k] as f32) * f) / 255.0;
    Color::srgb(mix(0), mix(1), mix(2))
}

/// Bits of [`Facts::issues`]: which analyses flagged an image. Duplicates
/// are not here: they follow the panel's threshold ([`Duplicates`]).
pub mod issue_bits {
    pub const LABEL_ISSUE: u16 = 1;
    pub const OUTLIER: u16 = 1 << 1;
    /// Quality flag `f` is bit `QUALITY_SHIFT + f as u16`.
    pub const QUALITY_SHIFT: u16 = 2;
    pub const ANY_QUALITY: u16 = 0b11_1111 << QUALITY_SHIFT;
}

pub fn quality_bit(flag: QualityFlag) -> u16 {
    1 << (issue_bits::QUALITY_SHIFT + flag as u16)
}

/// What the viewer derives from one analysis, once: lower-cased paths for
/// the filename filter, issue bits for the filters, scores for the colour
/// maps, and the rankings the Issues panel lists.
#[derive(Debug, Default)]
pub struct Facts {
    /// All relative paths lower-cased, end to end; image `i` is
    /// `paths_lower[path_ends[i]..path_ends[i + 1]]` (one string, not a
    /// million).
    paths_lower: String,
    path_ends: Vec<usize>,
    /// Per image: [`issue_bits`].
    pub issues: Vec<u16>,
    /// Per image: the given label's index, or -1.
    pub given: Vec<i32>,
    /// Per image: the label its neighbours suggest, or -1.
    pub suggested: Vec<i32>,
    /// Per image: label-issue score in [0, 1], NaN without a label.
    pub label_issue: Vec<f32>,
    /// Per image: outlier score, NaN when there is none.
    pub outlier: Vec<f32>,
    /// Lowest and highest outlier score (the colour map's ends).
    pub outlier_range: (f32, f32),
    /// Labelled images by label-issue score, most suspicious first.
    pub label_issue_rank: Vec<u32>,
    /// Images by outlier score, oddest first.
    pub outlier_rank: Vec<u32>,
    /// Images with quality flags: most flags first, then by index.
    pub quality_rank: Vec<u32>,
    /// Image indices sorted by relative path (tags are keyed by path).
    pub by_path: Vec<u32>,
    /// The source's metadata columns, to colour by and filter on.
    pub columns: Vec<ColumnFacts>,
}

impl Facts {
    pub fn compute(a: &Analysis) -> Self {
        let images = &a.folder.images;
        let n = images.len();
        let mut paths_lower = String::new();
        let mut path_ends = Vec::with_capacity(n + 1);
        path_ends.push(0);
        for r in images {
            paths_lower.push_str(&r.relative.to_lowercase());
            path_ends.push(paths_lower.len());
        }
        let c = &a.curation;
        let given: Vec<i32> = (0..n)
            .map(|i| {
                c.labels
                    .as_ref()
                    .and_then(|l| l.of_image.get(i).copied().flatten())
                    .map_or(-1, |l| l as i32)
            })
            .collect();
        let (label_issue, suggested): (Vec<f32>, Vec<i32>) = (0..n)
            .map(|i| match &c.label_issues {
                Some(s) => (
                    s.score[i].unwrap_or(f32::NAN),
                    s.suggested[i].map_or(-1, |l| l as i32),
                ),
                None => (f32::NAN, -1),
            })
            .unzip();
        let outlier: Vec<f32> = (0..n)
            .map(|i| c.outliers.get(i).copied().unwrap_or(f32::NAN))
            .collect();
        let outlier_range = outlier
            .iter()
            .filter(|v| v.is_finite())
            .fold(None, |r: Option<(f32, f32)>, &v| {
                Some(r.map_or((v, v), |(lo, hi)| (lo.min(v), hi.max(v))))
            })
            .unwrap_or((0.0, 1.0));
        let issues: Vec<u16> = (0..n)
            .map(|i| {
                let mut bits = 0;
                if label_issue[i] >= LABEL_ISSUE_FLAG {
                    bits |= issue_bits::LABEL_ISSUE;
                }
                if c.outlier_flagged.get(i).copied().unwrap_or(false) {
                    bits |= issue_bits::OUTLIER;
                }
                for &flag in c.flags.get(i).map_or(&[][..], |f| f.as_slice()) {
                    bits |= quality_bit(flag);
                }
                bits
            })
            .collect();
        let ranked = |scores: &[f32]| {
            let mut order: Vec<u32> = (0..n as u32)
                .filter(|&i| scores[i as usize].is_finite())
                .collect();
            order.sort_by(|&x, &y| {
                scores[y as usize]
                    .total_cmp(&scores[x as usize])
                    .then(x.cmp(&y))
            });
            order
        };
        let mut quality_rank: Vec<u32> = (0..n as u32)
            .filter(|&i| issues[i as usize] & issue_bits::ANY_QUALITY != 0)
            .collect();
        quality_rank.sort_by_key(|&i| {
            let flags = (issues[i as usize] & issue_bits::ANY_QUALITY).count_ones();
            (std::cmp::Reverse(flags), i)
        });
        let mut by_path: Vec<u32> = (0..n as u32).collect();
        by_path.sort_by(|&x, &y| {
            images[x as usize]
                .relative
                .cmp(&images[y as usize].relative)
        });
        let columns = a
            .folder
            .metadata
            .iter()
            .filter(|m| m.values.len() == n)
            .map(ColumnFacts::of)
            .collect();
        Self {
            columns,
            paths_lower,
            path_ends,
            issues,
            given,
            suggested,
            label_issue_rank: ranked(&label_issue),
            outlier_rank: ranked(&outlier),
            label_issue,
            outlier,
            outlier_range,
            quality_rank,
            by_path,
        }
    }

    /// Image `i`'s relative path, lower-cased.
    pub fn path_lower(&self, i: usize) -> &str {
        &self.paths_lower[self.path_ends[i]..self.path_ends[i + 1]]
    }

    pub fn len(&self) -> usize {
        self.issues.len()
    }

    /// The metadata column named `name`.
    pub fn column(&self, name: &str) -> Option<&ColumnFacts> {
        self.columns.iter().find(|c| c.name == name)
    }

    pub fn is_empty(&self) -> bool {
        self.issues.is_empty()
    }

    /// The image at `relative`, by binary search over the sorted paths.
    pub fn index_of(&self, a: &Analysis, relative: &str) -> Option<usize> {
        self.by_path
            .binary_search_by(|&i| a.folder.images[i as usize].relative.as_str().cmp(relative))
            .ok()
            .map(|k| self.by_path[k] as usize)
    }

    /// The outlier score of `i` scaled to [0, 1] between the lowest and the
    /// highest; NaN without one.
    pub fn outlier_unit(&self, i: usize) -> f32 {
        let (lo, hi) = self.outlier_range;
        (self.outlier[i] - lo) / (hi - lo).max(1e-12)
    }

    /// Image `i`'s given label is more likely wrong than right, and another
    /// label is suggested (the score is at or above the flag threshold).
    pub fn suggests_another(&self, i: usize) -> bool {
        self.suggested[i] >= 0
            && self.suggested[i] != self.given[i]
            && self.label_issue[i] >= crate::analyze::LABEL_ISSUE_FLAG
    }

    /// Whether image `i` passes the issue filter (`duplicate`: its group id
    /// at the panel's threshold, -1 for none).
    pub fn passes(&self, filter: IssueFilter, i: usize, duplicate: i32) -> bool {
        let bits = self.issues[i];
        match filter {
            IssueFilter::Any => bits != 0 || duplicate >= 0,
            IssueFilter::LabelIssue => bits & issue_bits::LABEL_ISSUE != 0,
            IssueFilter::Outlier => bits & issue_bits::OUTLIER != 0,
            IssueFilter::Duplicate => duplicate >= 0,
            IssueFilter::Quality(None) => bits & issue_bits::ANY_QUALITY != 0,
            IssueFilter::Quality(Some(flag)) => bits & quality_bit(flag) != 0,
        }
    }

    /// Images that pass `filter`.
    pub fn count(&self, filter: IssueFilter, duplicates: &[i32]) -> usize {
        (0..self.len())
            .filter(|&i| self.passes(filter, i, duplicates.get(i).copied().unwrap_or(-1)))
            .count()
    }
}

/// The [`Facts`] of the analysis shown, computed on a background thread
/// when a new analysis arrives (a million paths take a moment).
#[derive(Resource, Default)]
pub struct PointFacts {
    /// The [`Dataset::generation`] they belong to.
    pub generation: u64,
    pub facts: Option<Arc<Facts>>,
    computing: Option<Task<Facts>>,
}

impl PointFacts {
    /// The facts, when they belong to an analysis of `n` images.
    pub fn for_count(&self, n: usize) -> Option<&Facts> {
        self.facts.as_deref().filter(|f| f.len() == n)
    }

    pub fn computing(&self) -> bool {
        self.computing.is_some()
    }
}

fn follow_analysis(dataset: Res<Dataset>, mut facts: ResMut<PointFacts>) {
    if facts.generation != dataset.generation {
        let facts = facts.as_mut();
        facts.generation = dataset.generation;
        facts.facts = None;
        facts.computing = dataset
            .analysis
            .clone()
            .map(|a| Task::spawn("facts", move |_| Ok(Facts::compute(&a))));
        return;
    }
    let Some(outcome) = facts.computing.as_mut().and_then(|t| t.poll()) else {
        return;
    };
    facts.computing = None;
    match outcome {
        Ok(done) => facts.facts = Some(Arc::new(done)),
        Err(err) => warn!("the filters and score colours are unavailable: {err}"),
    }
}

/// What [`Look`] is made from, for the systems that draw points.
#[derive(SystemParam)]
pub struct LookInputs<'w> {
    pub state: Res<'w, ViewState>,
    pub dataset: Res<'w, Dataset>,
    pub duplicates: Res<'w, Duplicates>,
    pub classes: Res<'w, Classes>,
    pub facts: Res<'w, PointFacts>,
}

impl LookInputs<'_> {
    /// True when a point's look may have changed since the last frame.
    pub fn changed(&self) -> bool {
        self.state.is_changed()
            || self.dataset.is_changed()
            || self.duplicates.is_changed()
            || self.classes.is_changed()
            || self.facts.is_changed()
    }

    /// The look of `n` points: labels only when they belong to `n` images
    /// (during a re-run with another image set the preview has other
    /// points, and is drawn uncoloured).
    pub fn look(&self, n: usize) -> Look<'_> {
        self.look_for(&self.state, n)
    }

    /// [`Self::look`] for another view state (the points leave hover and
    /// selection to the overlay).
    pub fn look_for<'a>(&'a self, state: &'a ViewState, n: usize) -> Look<'a> {
        Look::of_shown(
            state,
            &self.dataset,
            &self.duplicates,
            &self.classes,
            self.facts.for_count(n),
            n,
        )
    }
}

/// What colour and size each point is drawn with.
pub struct Look<'a> {
    pub state: &'a ViewState,
    pub clusters: Option<&'a [i32]>,
    pub duplicates: Option<&'a [i32]>,
    pub classes: Option<&'a [i32]>,
    /// The analysis' facts, once computed.
    pub facts: Option<&'a Facts>,
    /// The filename filter, lower-cased once.
    filter: String,
    /// The metadata column the points are coloured by.
    colour_column: Option<&'a ColumnFacts>,
    /// The metadata column filter, ready to test rows.
    column_filter: Option<Matcher<'a>>,
}

impl<'a> Look<'a> {
    /// The look of `n` points of the analysis shown, each part used only when
    /// it belongs to `n` images (during a re-run with another image set the
    /// preview has other points, and is drawn uncoloured).
    pub fn of_shown(
        state: &'a ViewState,
        dataset: &'a Dataset,
        duplicates: &'a Duplicates,
        classes: &'a Classes,
        facts: Option<&'a Facts>,
        n: usize,
    ) -> Self {
        let analysis = dataset
            .analysis
            .as_deref()
            .filter(|a| a.folder.images.len() == n);
        let sized = |labels: &'a [i32]| (labels.len() == n).then_some(labels);
        Look::new(
            state,
            analysis.map(|a| a.clusters.labels.as_slice()),
            sized(&duplicates.labels),
            sized(&classes.of_image),
            analysis.and(facts),
        )
    }

    pub fn new(
        state: &'a ViewState,
        clusters: Option<&'a [i32]>,
        duplicates: Option<&'a [i32]>,
        classes: Option<&'a [i32]>,
        facts: Option<&'a Facts>,
    ) -> Self {
        let colour_column = facts
            .zip(state.color_column.as_deref())
            .and_then(|(f, name)| f.column(name));
        let column_filter = facts
            .zip(state.column_filter.as_ref())
            .and_then(|(f, filter)| {
                f.column(&filter.column)
                    .and_then(|c| c.matcher(&filter.rule))
            });
        Self {
            state,
            clusters,
            duplicates,
            classes,
            facts,
            filter: state.filter.trim().to_lowercase(),
            colour_column,
            column_filter,
        }
    }

    /// Radius of point `i` (0 hides it) and its linear colour. Hover and
    /// selection are not part of it: the overlay (overlay.rs) draws them, so
    /// pointing at a point never rebuilds a million styles.
    pub fn of(&self, i: usize) -> (f32, [f32; 4]) {
        let s = self.state;
        if self.hidden(i) {
            return (0.0, [0.0; 4]);
        }
        let (base, background) = self.base(i);
        let mut c = base.to_linear().to_f32_array();
        if background || self.filtered_out(i) {
            for v in &mut c[..3] {
                *v *= DIM;
            }
        }
        (s.splat_size, c)
    }

    /// Point `i` is in a hidden cluster: not drawn, not pickable.
    pub fn hidden(&self, i: usize) -> bool {
        self.clusters
            .is_some_and(|c| self.state.hidden_clusters.contains(&c[i]))
    }

    /// The points of `0..n` drawn bright: neither hidden nor dimmed.
    pub fn bright_points(&self, n: usize) -> Vec<usize> {
        (0..n)
            .filter(|&i| !self.hidden(i) && !self.dimmed(i))
            .collect()
    }

    /// Point `i` is drawn dim: a filter leaves it out, or the colouring puts
    /// it in the background.
    pub fn dimmed(&self, i: usize) -> bool {
        self.base(i).1 || self.filtered_out(i)
    }

    /// A filter (highlighted cluster, file name, text search, metadata
    /// column, issue) leaves point `i` out.
    fn filtered_out(&self, i: usize) -> bool {
        let s = self.state;
        let cluster = self.clusters.map_or(-1, |c| c[i]);
        if s.highlighted_cluster.is_some_and(|h| cluster != h) {
            return true;
        }
        if !self.filter.is_empty()
            && let Some(facts) = self.facts
            && !facts.path_lower(i).contains(&self.filter)
        {
            return true;
        }
        if s.text_matches.as_ref().is_some_and(|m| !m.contains(&i)) {
            return true;
        }
        if self.column_filter.as_ref().is_some_and(|m| !m.passes(i)) {
            return true;
        }
        if let (Some(filter), Some(facts)) = (s.issue_filter, self.facts) {
            let duplicate = self.duplicates.map_or(-1, |d| d[i]);
            return !facts.passes(filter, i, duplicate);
        }
        false
    }

    /// The colour the chosen colouring gives point `i`, and whether that
    /// colouring itself puts it in the background.
    fn base(&self, i: usize) -> (Color, bool) {
        let cluster = self.clusters.map_or(-1, |c| c[i]);
        let unlabelled = Color::srgb(0.55, 0.72, 0.95);
        let facts = self.facts;
        match (self.state.color_by, self.clusters) {
            (_, None) => (unlabelled, false),
            (ColorBy::Cluster, Some(_)) => (palette(cluster), false),
            (ColorBy::Folder, _) => (palette(self.classes.map_or(-1, |c| c[i])), false),
            (ColorBy::Duplicates, _) => match self.duplicates.map_or(-1, |d| d[i]) {
                -1 => (Color::srgb(0.35, 0.37, 0.42), false),
                _ => (Color::srgb(1.0, 0.3, 0.25), false),
            },
            (ColorBy::Label, _) => (palette(facts.map_or(-1, |f| f.given[i])), false),
            (ColorBy::LabelIssue, _) => {
                (viridis(facts.map_or(f32::NAN, |f| f.label_issue[i])), false)
            }
            (ColorBy::Outlier, _) => (
                viridis(facts.map_or(f32::NAN, |f| f.outlier_unit(i))),
                false,
            ),
            (ColorBy::Suggested, _) => match facts {
                // Where the neighbours disagree with the given label, the
                // point shows the label they suggest; the rest stays back.
                Some(f) if f.suggests_another(i) => (palette(f.suggested[i]), false),
                Some(f) => (palette(f.given[i]), true),
                None => (NO_VALUE, false),
            },
            (ColorBy::Column, _) => match self.colour_column.and_then(|c| c.colour_of(i)) {
                Some(ColumnColour::Palette(id)) => (palette(id), false),
                Some(ColumnColour::Map(t)) => (viridis(t), false),
                None => (NO_VALUE, false),
            },
        }
    }
}

/// An egui colour of a Bevy colour.
pub fn colour32(c: Color) -> bevy_egui::egui::Color32 {
    let c = c.to_srgba();
    bevy_egui::egui::Color32::from_rgb(
        (c.red * 255.0).round() as u8,
        (c.green * 255.0).round() as u8,
        (c.blue * 255.0).round() as u8,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn palette_keeps_the_first_ids_distinct_and_noise_grey() {
        let colours: Vec<[f32; 4]> = (0..20)
            .map(|i| palette(i).to_srgba().to_f32_array())
            .collect();
        for i in 0..colours.len() {
            for j in 0..i {
                assert_ne!(colours[i], colours[j], "ids {i} and {j}");
            }
        }
        let grey = palette(-1).to_srgba();
        assert!((grey.red - grey.green).abs() < 0.05);
    }

    #[test]
    fn the_colour_map_gets_lighter_evenly_from_end_to_end() {
        // Perceptual lightness (Oklab L) rises with the score, in steps of
        // similar size: no flat stretch that would hide differences.
        let lightness = |t: f32| Oklaba::from(viridis(t)).lightness;
        let steps: Vec<f32> = (0..=20)
            .map(|k| lightness(k as f32 / 20.0))
            .collect::<Vec<_>>()
            .windows(2)
            .map(|w| w[1] - w[0])
            .collect();
        assert!(steps.iter().all(|&d| d > 0.0), "{steps:?}");
        let (lo, hi) = steps
            .iter()
            .fold((f32::MAX, 0.0f32), |(lo, hi), &d| (lo.min(d), hi.max(d)));
        assert!(hi < lo * 2.5, "uneven steps {steps:?}");
        assert_eq!(viridis(-1.0), viridis(0.0), "clamped");
        assert_eq!(viridis(f32::NAN), NO_VALUE);
    }

    fn look<'a>(state: &'a ViewState, facts: Option<&'a Facts>) -> Look<'a> {
        Look::new(
            state,
            Some(&[0, 1, -1]),
            Some(&[-1, 0, 0]),
            Some(&[0, 0, 1]),
            facts,
        )
    }

    /// Three images: 0 labelled "a" and fine; 1 labelled "a" but its
    /// neighbours say "b", flagged blurry; 2 without a label, the odd one out.
    fn facts() -> Facts {
        let mut paths_lower = String::new();
        let mut path_ends = vec![0];
        for p in ["a/One.png", "a/two.png", "three.png"] {
            paths_lower.push_str(&p.to_lowercase());
            path_ends.push(paths_lower.len());
        }
        Facts {
            paths_lower,
            path_ends,
            issues: vec![
                0,
                issue_bits::LABEL_ISSUE | quality_bit(QualityFlag::Blurry),
                issue_bits::OUTLIER,
            ],
            given: vec![0, 0, -1],
            suggested: vec![0, 1, -1],
            label_issue: vec![0.1, 0.9, f32::NAN],
            outlier: vec![1.0, 2.0, 5.0],
            outlier_range: (1.0, 5.0),
            ..Facts::default()
        }
    }

    #[test]
    fn hidden_clusters_get_no_size_and_hover_changes_nothing() {
        let mut state = ViewState::default();
        state.hidden_clusters.insert(1);
        let before: Vec<_> = (0..3).map(|i| look(&state, None).of(i)).collect();
        assert_eq!(before[1].0, 0.0);
        assert!(before[0].0 > 0.0);
        // Hover and selection are the overlay's: the styles stay as they are.
        state.selected = Some(0);
        state.hovered = Some(2);
        let after: Vec<_> = (0..3).map(|i| look(&state, None).of(i)).collect();
        assert_eq!(before, after);
    }

    #[test]
    fn colours_follow_the_chosen_labels() {
        let mut state = ViewState {
            color_by: ColorBy::Duplicates,
            ..default()
        };
        let l = look(&state, None);
        assert_eq!(l.of(1).1, l.of(2).1, "both in duplicate group 0");
        assert_ne!(l.of(0).1, l.of(1).1);
        state.color_by = ColorBy::Folder;
        let l = look(&state, None);
        assert_eq!(l.of(0).1, l.of(1).1, "same folder");
        assert_ne!(l.of(1).1, l.of(2).1);
    }

    #[test]
    fn scores_use_the_colour_map_and_suggestions_stand_out() {
        let f = facts();
        let mut state = ViewState {
            color_by: ColorBy::Outlier,
            ..default()
        };
        let colour = |state: &ViewState, i| look(state, Some(&f)).of(i).1;
        let linear = |c: Color| c.to_linear().to_f32_array();
        assert_eq!(colour(&state, 0), linear(viridis(0.0)));
        assert_eq!(colour(&state, 2), linear(viridis(1.0)));
        assert_eq!(colour(&state, 1), linear(viridis(0.25)));
        state.color_by = ColorBy::LabelIssue;
        assert_eq!(colour(&state, 1), linear(viridis(0.9)));
        assert_eq!(colour(&state, 2), linear(NO_VALUE), "no label, no score");
        // Given vs suggested: image 1 shows "b" at full strength, image 0
        // (the neighbours agree) stays dim in its own colour.
        state.color_by = ColorBy::Suggested;
        assert_eq!(colour(&state, 1), linear(palette(1)));
        let agreed = colour(&state, 0);
        assert!(agreed[0] < linear(palette(0))[0] * 0.5, "{agreed:?}");
    }

    #[test]
    fn filters_dim_what_does_not_match() {
        let f = facts();
        // Bright: drawn as it would be without the filters (dimmed points
        // are scaled down by DIM).
        let bright = |state: &ViewState, i: usize| {
            let plain = ViewState {
                issue_filter: None,
                filter: String::new(),
                ..state.clone()
            };
            look(state, Some(&f)).of(i).1 == look(&plain, Some(&f)).of(i).1
        };
        let mut state = ViewState {
            issue_filter: Some(IssueFilter::Any),
            ..default()
        };
        // Image 0 has no issue and is in no duplicate group.
        assert_eq!(
            (0..3).map(|i| bright(&state, i)).collect::<Vec<_>>(),
            [false, true, true]
        );
        state.issue_filter = Some(IssueFilter::Quality(Some(QualityFlag::Blurry)));
        assert_eq!(
            (0..3).map(|i| bright(&state, i)).collect::<Vec<_>>(),
            [false, true, false]
        );
        state.issue_filter = Some(IssueFilter::Duplicate);
        assert_eq!(
            (0..3).map(|i| bright(&state, i)).collect::<Vec<_>>(),
            [false, true, true]
        );
        state.issue_filter = None;
        state.filter = " ONE ".into();
        assert_eq!(
            (0..3).map(|i| bright(&state, i)).collect::<Vec<_>>(),
            [true, false, false]
        );
        assert_eq!(f.count(IssueFilter::Outlier, &[]), 1);
    }
}
