//! What the user is looking at, shared by the plugins: colouring, splat size,
//! hover and selection, hidden clusters, the filename filter, and the
//! duplicate grouping at the threshold chosen in the panel.

use std::collections::HashSet;

use bevy::prelude::*;

use crate::analyze::DuplicateGroup;

pub struct StatePlugin {
    pub color_by: ColorBy,
}

impl Plugin for StatePlugin {
    fn build(&self, app: &mut App) {
        app.insert_resource(ViewState {
            color_by: self.color_by,
            ..default()
        })
        .init_resource::<Duplicates>()
        .init_resource::<PointerOverUi>()
        .add_systems(
            Update,
            follow_analysis.after(super::loading::LoadingSystems),
        );
    }
}

/// A new analysis brings its own duplicate groups; a selection or filter
/// made on another image set means nothing there.
fn follow_analysis(
    dataset: Res<super::loading::Dataset>,
    mut duplicates: ResMut<Duplicates>,
    mut state: ResMut<ViewState>,
    mut shown: Local<u64>,
) {
    if *shown == dataset.generation {
        return;
    }
    *shown = dataset.generation;
    let Some(analysis) = &dataset.analysis else {
        *duplicates = Duplicates::default();
        state.selected = None;
        state.hovered = None;
        return;
    };
    if duplicates.labels.len() != analysis.duplicate_labels.len() {
        state.selected = None;
        state.hovered = None;
        state.hidden_clusters.clear();
        state.highlighted_cluster = None;
    }
    *duplicates = Duplicates {
        threshold: analysis.duplicate_threshold,
        labels: analysis.duplicate_labels.clone(),
        groups: analysis.duplicates.clone(),
    };
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ColorBy {
    #[default]
    Cluster,
    /// The first folder of the image's path (its class in a labelled dataset).
    Folder,
    Duplicates,
}

impl crate::choice::Choice for ColorBy {
    const ALL: &'static [Self] = &[ColorBy::Cluster, ColorBy::Folder, ColorBy::Duplicates];

    fn name(self) -> &'static str {
        match self {
            ColorBy::Cluster => "cluster",
            ColorBy::Folder => "folder",
            ColorBy::Duplicates => "duplicates",
        }
    }

    fn help(self) -> &'static str {
        match self {
            ColorBy::Cluster => "the cluster each point belongs to",
            ColorBy::Folder => "the image's top folder (its class in a labelled dataset)",
            ColorBy::Duplicates => "exact and near-duplicate copies",
        }
    }
}

#[derive(Resource, Debug, Clone, PartialEq)]
pub struct ViewState {
    pub color_by: ColorBy,
    /// Splat radius in world units (the layout is scaled to a radius of ~4).
    pub splat_size: f32,
    pub hovered: Option<usize>,
    pub selected: Option<usize>,
    /// Cluster picked in the panel: the others are dimmed.
    pub highlighted_cluster: Option<i32>,
    pub hidden_clusters: HashSet<i32>,
    /// Case-insensitive substring of the relative path; non-matching points dim.
    pub filter: String,
    /// The images a CLIP text query matched; the others dim.
    pub text_matches: Option<std::sync::Arc<HashSet<usize>>>,
    pub show_thumbnails: bool,
}

impl Default for ViewState {
    fn default() -> Self {
        Self {
            color_by: ColorBy::Cluster,
            splat_size: 0.05,
            hovered: None,
            selected: None,
            highlighted_cluster: None,
            hidden_clusters: HashSet::new(),
            filter: String::new(),
            text_matches: None,
            show_thumbnails: true,
        }
    }
}

/// Duplicate groups as currently shown: the pipeline's, or regrouped by the
/// library's `find_duplicates` at the panel's threshold.
#[derive(Resource, Debug, Default)]
pub struct Duplicates {
    pub threshold: f32,
    /// Per image: group id or -1.
    pub labels: Vec<i32>,
    pub groups: Vec<DuplicateGroup>,
}

/// What egui claims: while the pointer is over a panel the 3D view ignores
/// it, and while a text field has focus the view's keys are off.
#[derive(Resource, Debug, Default)]
pub struct PointerOverUi {
    pub pointer: bool,
    pub typing: bool,
}

/// Distinct colours for ids 0, 1, 2, …: the golden-ratio hue walk keeps
/// neighbouring ids apart; noise (-1) is grey.
pub fn palette(id: i32) -> Color {
    if id < 0 {
        return Color::srgb(0.42, 0.42, 0.45);
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

/// The class label of an image: the first component of its relative path
/// (as `quality` and `bench` use it); files at the top level have none.
pub fn folder_label(relative: &str) -> Option<&str> {
    relative.split_once('/').map(|(first, _)| first)
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
    fn folder_label_is_the_first_path_component() {
        assert_eq!(folder_label("7/7_0001.png"), Some("7"));
        assert_eq!(folder_label("a/b/c.jpg"), Some("a"));
        assert_eq!(folder_label("top.png"), None);
    }
}
