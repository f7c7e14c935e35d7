//! What the user is looking at, shared by the plugins: colouring, filters,
//! splat size, hover and the focused image, hidden clusters, and the
//! duplicate grouping at the threshold chosen in the panel. (The
//! multi-selection is [`super::selection::Selection`].)

use std::collections::HashSet;

use bevy::prelude::*;

use crate::analyze::DuplicateGroup;

pub struct StatePlugin {
    pub color_by: ColorBy,
    /// A metadata column to colour by (overrides `color_by`).
    pub color_column: Option<String>,
}

impl Plugin for StatePlugin {
    fn build(&self, app: &mut App) {
        app.insert_resource(ViewState {
            color_by: if self.color_column.is_some() {
                ColorBy::Column
            } else {
                self.color_by
            },
            color_column: self.color_column.clone(),
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
    // Text matches are rows of the old analysis' embeddings.
    state.text_matches = None;
    // A column the new source lacks colours and filters nothing: drop it
    // (a re-run of the same source keeps both).
    let has_column = |name: &str| analysis.folder.metadata.iter().any(|m| m.name == name);
    if let Some(name) = state.color_column.clone()
        && !has_column(&name)
    {
        warn!("this source has no column {name:?}: colouring by cluster");
        state.color_column = None;
        if state.color_by == ColorBy::Column {
            state.color_by = ColorBy::Cluster;
        }
    }
    if let Some(filter) = state.column_filter.clone()
        && !has_column(&filter.column)
    {
        state.column_filter = None;
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
    /// The label each image was given (class folder or `--labels`).
    Label,
    /// How likely the given label is wrong, on a colour map.
    LabelIssue,
    /// How unlike the rest an image is, on a colour map.
    Outlier,
    /// Given versus suggested label: images whose neighbours suggest another
    /// label show that label; the rest stays dim.
    Suggested,
    /// A metadata column of the source ([`ViewState::color_column`]). Not in
    /// [`Choice::ALL`](crate::choice::Choice::ALL): it needs a column name
    /// (`--color-column NAME`, or the panel's list of columns).
    Column,
}

impl crate::choice::Choice for ColorBy {
    const ALL: &'static [Self] = &[
        ColorBy::Cluster,
        ColorBy::Folder,
        ColorBy::Duplicates,
        ColorBy::Label,
        ColorBy::LabelIssue,
        ColorBy::Outlier,
        ColorBy::Suggested,
    ];

    fn name(self) -> &'static str {
        match self {
            ColorBy::Cluster => "cluster",
            ColorBy::Folder => "folder",
            ColorBy::Duplicates => "duplicates",
            ColorBy::Label => "label",
            ColorBy::LabelIssue => "label-issue",
            ColorBy::Outlier => "outlier",
            ColorBy::Suggested => "suggested",
            ColorBy::Column => "column",
        }
    }

    fn help(self) -> &'static str {
        match self {
            ColorBy::Cluster => "the cluster each point belongs to",
            ColorBy::Folder => "the image's top folder (its class in a labelled dataset)",
            ColorBy::Duplicates => "exact and near-duplicate copies",
            ColorBy::Label => "the label each image was given (class folder or --labels)",
            ColorBy::LabelIssue => "how likely the given label is wrong (colour map)",
            ColorBy::Outlier => "how unlike the rest an image is (colour map)",
            ColorBy::Suggested => {
                "the label the neighbours suggest, where it differs from the given one"
            }
            ColorBy::Column => "a metadata column of the source",
        }
    }
}

impl ColorBy {
    /// The words in the panel's menu.
    pub fn title(self) -> &'static str {
        match self {
            ColorBy::Cluster => "cluster",
            ColorBy::Folder => "folder",
            ColorBy::Duplicates => "duplicates",
            ColorBy::Label => "given label",
            ColorBy::LabelIssue => "label-issue score",
            ColorBy::Outlier => "outlier score",
            ColorBy::Suggested => "given vs suggested label",
            ColorBy::Column => "column",
        }
    }
}

/// Which flagged images stay bright; the others dim.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IssueFilter {
    /// Flagged by any analysis.
    Any,
    LabelIssue,
    Outlier,
    Duplicate,
    /// Any quality flag, or one.
    Quality(Option<crate::analyze::QualityFlag>),
}

impl IssueFilter {
    pub fn title(self) -> String {
        match self {
            IssueFilter::Any => "only flagged (any issue)".into(),
            IssueFilter::LabelIssue => "label issues".into(),
            IssueFilter::Outlier => "outliers".into(),
            IssueFilter::Duplicate => "duplicates".into(),
            IssueFilter::Quality(None) => "any quality flag".into(),
            IssueFilter::Quality(Some(flag)) => format!("quality: {}", flag.name()),
        }
    }

    /// Every filter the panel offers.
    pub fn all() -> Vec<IssueFilter> {
        let mut all = vec![
            IssueFilter::Any,
            IssueFilter::LabelIssue,
            IssueFilter::Outlier,
            IssueFilter::Duplicate,
            IssueFilter::Quality(None),
        ];
        all.extend(
            crate::analyze::QualityFlag::ALL
                .iter()
                .map(|&f| IssueFilter::Quality(Some(f))),
        );
        all
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
    /// Only images with this issue stay bright.
    pub issue_filter: Option<IssueFilter>,
    /// The metadata column [`ColorBy::Column`] colours by.
    pub color_column: Option<String>,
    /// Only images whose metadata passes this stay bright.
    pub column_filter: Option<super::columns::ColumnFilter>,
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
            issue_filter: None,
            color_column: None,
            column_filter: None,
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

/// What the 3D view must leave alone: while the pointer is over a panel, or
/// drives a box or lasso selection, the orbit camera and hover ignore it;
/// while a text field has focus the view's keys are off.
#[derive(Resource, Debug, Default)]
pub struct PointerOverUi {
    pub pointer: bool,
    pub typing: bool,
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
    fn folder_label_is_the_first_path_component() {
        assert_eq!(folder_label("7/7_0001.png"), Some("7"));
        assert_eq!(folder_label("a/b/c.jpg"), Some("a"));
        assert_eq!(folder_label("top.png"), None);
    }
}
