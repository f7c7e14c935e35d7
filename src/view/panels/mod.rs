//! The egui side panel, one module per section: [`header`] (open, progress,
//! errors), [`problems`] (skipped files, warnings), [`view_options`]
//! (colouring, legend, filters), [`search`] (CLIP text search), [`focus`]
//! (the clicked image and its neighbours), [`selection`] (the box/lasso
//! selection: gallery, exports, tagging), [`clusters`], [`issues`] (label
//! issues, outliers, quality, duplicates), [`tags`], [`layout_settings`];
//! [`thumbs`] and [`widgets`] are shared.
//!
//! One system draws the panel; the sections get a [`Cx`] (the data shown and
//! what they may change) instead of long parameter lists. The 3D view's
//! viewport is the window minus the panel, so nothing hides under it. The
//! panel scrolls as a whole, so an opened image never pushes the rest out of
//! reach.

mod clusters;
mod focus;
mod header;
mod issues;
mod layout_settings;
mod problems;
mod search;
mod selection;
mod tags;
mod thumbs;
mod view_options;
mod widgets;

use std::sync::Arc;

use bevy::camera::Viewport;
use bevy::ecs::system::SystemParam;
use bevy::prelude::*;
use bevy::window::PrimaryWindow;
use bevy_egui::{EguiContexts, EguiPrimaryContextPass, egui};

use super::camera::{HomeView, Orbit, OrbitGoal, ViewCamera};
use super::colour::{Facts, PointFacts};
use super::exports::Exports;
use super::layout::Positions;
use super::loading::{Dataset, OpenFolder, Settings};
use super::points::Classes;
use super::selection::{Selection, SelectionDrag};
use super::state::{Duplicates, PointerOverUi, ViewState};
use super::tags::TagBook;
use super::welcome::{FolderDialog, PathField};
use crate::pipeline::Analysis;

pub use issues::IssueTab;

/// Width of the side panel when the window opens, in logical pixels.
const PANEL_WIDTH: f32 = 380.0;

pub struct PanelsPlugin;

impl Plugin for PanelsPlugin {
    fn build(&self, app: &mut App) {
        app.init_resource::<PanelUi>()
            .init_resource::<thumbs::PanelThumbs>()
            .init_resource::<focus::FocusImage>()
            .init_resource::<search::TextSearch>()
            .init_resource::<issues::Regroup>()
            .init_resource::<layout_settings::ModelLookup>()
            .add_systems(
                Update,
                (
                    thumbs::receive_thumbnails,
                    focus::load_focused_image,
                    search::receive_matches,
                    issues::finish_regrouping,
                )
                    .after(super::loading::LoadingSystems),
            )
            .add_systems(EguiPrimaryContextPass, side_panel);
    }
}

/// The panel's sections, for requests to open one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Section {
    View,
    Search,
    Focus,
    Selection,
    Clusters,
    Issues,
    Tags,
    Layout,
}

impl Section {
    const ALL: [Section; 8] = [
        Section::View,
        Section::Search,
        Section::Focus,
        Section::Selection,
        Section::Clusters,
        Section::Issues,
        Section::Tags,
        Section::Layout,
    ];

    fn id(self) -> &'static str {
        match self {
            Section::View => "view",
            Section::Search => "search",
            Section::Focus => "focus",
            Section::Selection => "selection",
            Section::Clusters => "clusters",
            Section::Issues => "issues",
            Section::Tags => "tags",
            Section::Layout => "layout",
        }
    }
}

/// What the panel remembers between frames besides egui's own state:
/// requests to open sections, the Issues tab, the text being typed.
#[derive(Resource, Default)]
pub struct PanelUi {
    /// Sections to open on the next frame.
    open: Vec<Section>,
    pub issues_tab: IssueTab,
    /// The quality tab lists this flag only (none: every flag).
    pub quality_flag: Option<crate::analyze::QualityFlag>,
    /// The tag name typed in the selection section.
    pub tag_name: String,
    /// The label typed for a relabel export, and the tag it is for.
    pub relabel: (String, String),
    /// The filename filter whose matches were last counted, and the count.
    filter_hits: Option<(u64, String, usize)>,
    /// The column filter whose matches were last counted, and the count.
    column_hits: Option<(u64, crate::view::columns::ColumnFilter, usize)>,
    /// A run was working when the panel was last drawn.
    was_running: bool,
}

impl PanelUi {
    /// Opens a section (`issues`, `selection`, …), or an Issues tab
    /// (`issues:outliers`).
    pub fn show(&mut self, what: &str) -> Result<(), String> {
        let (name, tab) = what.split_once(':').unwrap_or((what, ""));
        let section = Section::ALL
            .into_iter()
            .find(|s| s.id() == name)
            .ok_or_else(|| format!("no panel section named {name}"))?;
        if !tab.is_empty() {
            if section != Section::Issues {
                return Err(format!("{name} has no tabs"));
            }
            self.issues_tab = IssueTab::named(tab).ok_or_else(|| format!("no Issues tab {tab}"))?;
        }
        self.open.push(section);
        Ok(())
    }

    /// Whether `section` was asked to open (once).
    fn take_request(&mut self, section: Section) -> bool {
        let requested = self.open.contains(&section);
        self.open.retain(|s| *s != section);
        requested
    }
}

/// A collapsing section, opened and scrolled to when `requested`.
fn section<R>(
    ui: &mut egui::Ui,
    section: Section,
    title: impl Into<egui::WidgetText>,
    default_open: bool,
    requested: bool,
    body: impl FnOnce(&mut egui::Ui) -> R,
) -> Option<R> {
    let shown = egui::CollapsingHeader::new(title)
        .id_salt(section.id())
        .default_open(default_open)
        .open(requested.then_some(true))
        .show(ui, body);
    if requested {
        // Asked for from elsewhere (a script, a button): bring it into view.
        shown.header_response.scroll_to_me(Some(egui::Align::TOP));
    }
    shown.body_returned
}

/// What a section sees and may change.
struct Cx<'a, 'w, 'm> {
    pub ctx: &'a egui::Context,
    pub dataset: &'a Dataset,
    pub facts: Option<&'a Facts>,
    pub classes: &'a Classes,
    pub positions: &'a Positions,
    pub home: &'a HomeView,
    /// Seconds since start (real time).
    pub now: f64,
    /// A copy of the view state, written back when a section changed it.
    pub view: &'a mut ViewState,
    pub selection: &'a mut Selection,
    pub drag: &'a mut SelectionDrag,
    pub duplicates: &'a Duplicates,
    pub settings: &'a mut Settings,
    pub tags: &'a mut TagBook,
    pub exports: &'a mut Exports,
    pub jobs: &'a mut Jobs<'w>,
    pub ui: &'a mut PanelUi,
    pub orbit: &'a Orbit,
    pub goal: &'a mut OrbitGoal,
    pub open: &'a mut MessageWriter<'m, OpenFolder>,
}

impl Cx<'_, '_, '_> {
    /// Focuses image `i` and flies the camera to it.
    pub fn fly_to(&mut self, i: usize) {
        self.view.selected = Some(i);
        if let Some(&point) = self.positions.current.get(i) {
            self.goal.0 = self.orbit.fly_to(point, 1.5);
        }
    }
}

/// The data the panel shows.
#[derive(SystemParam)]
struct Shown<'w> {
    dataset: Res<'w, Dataset>,
    facts: Res<'w, PointFacts>,
    classes: Res<'w, Classes>,
    positions: Res<'w, Positions>,
    home: Res<'w, HomeView>,
    time: Res<'w, Time<Real>>,
}

/// What the panel edits.
#[derive(SystemParam)]
struct Edits<'w> {
    view: ResMut<'w, ViewState>,
    selection: ResMut<'w, Selection>,
    drag: ResMut<'w, SelectionDrag>,
    duplicates: Res<'w, Duplicates>,
    settings: ResMut<'w, Settings>,
    tags: ResMut<'w, TagBook>,
    exports: ResMut<'w, Exports>,
    over_ui: ResMut<'w, PointerOverUi>,
}

/// The panel's background work and dialogs.
#[derive(SystemParam)]
struct Jobs<'w> {
    pub thumbs: ResMut<'w, thumbs::PanelThumbs>,
    pub focus: ResMut<'w, focus::FocusImage>,
    pub search: ResMut<'w, search::TextSearch>,
    pub regroup: ResMut<'w, issues::Regroup>,
    pub models: ResMut<'w, layout_settings::ModelLookup>,
    pub dialog: ResMut<'w, FolderDialog>,
    pub path: ResMut<'w, PathField>,
}

/// The window and the 3D camera, whose viewport the panel leaves free.
#[derive(SystemParam)]
struct View3d<'w, 's> {
    window: Single<'w, 's, &'static Window, With<PrimaryWindow>>,
    camera: Single<
        'w,
        's,
        (&'static mut Camera, &'static Orbit, &'static mut OrbitGoal),
        With<ViewCamera>,
    >,
}

fn side_panel(
    mut contexts: EguiContexts,
    shown: Shown,
    mut edits: Edits,
    mut jobs: Jobs,
    mut panel_ui: ResMut<PanelUi>,
    mut view3d: View3d,
    mut open: MessageWriter<OpenFolder>,
) -> Result {
    let ctx = contexts.ctx_mut()?.clone();
    let window: &Window = &view3d.window;
    let (cam, orbit, goal) = &mut *view3d.camera;
    if shown.dataset.folder.is_none() {
        // The welcome screen owns the window.
        set_viewport(cam, window, 0.0);
        edits.over_ui.pointer = pointer_on_ui(&ctx, 0.0);
        edits.over_ui.typing = ctx.egui_wants_keyboard_input();
        return Ok(());
    }
    let analysis = shown.dataset.analysis.clone();
    let n = analysis.as_ref().map_or(0, |a| a.folder.images.len());
    jobs.thumbs.follow(analysis.as_deref());
    let mut view = edits.view.clone();
    // Edited without marking them changed every frame; marked below when
    // they really changed.
    let selection = edits.selection.bypass_change_detection();
    let revision = selection.revision();
    let mut ui = egui::Ui::new(
        ctx.clone(),
        "embedscope-panel".into(),
        egui::UiBuilder::new()
            .layer_id(egui::LayerId::background())
            .max_rect(ctx.viewport_rect()),
    );
    let panel = {
        let mut cx = Cx {
            ctx: &ctx,
            dataset: &shown.dataset,
            facts: shown.facts.for_count(n),
            classes: &shown.classes,
            positions: &shown.positions,
            home: &shown.home,
            now: shown.time.elapsed_secs_f64(),
            view: &mut view,
            selection,
            drag: edits.drag.bypass_change_detection(),
            duplicates: &edits.duplicates,
            settings: edits.settings.bypass_change_detection(),
            tags: &mut edits.tags,
            exports: &mut edits.exports,
            jobs: &mut jobs,
            ui: &mut panel_ui,
            orbit,
            goal,
            open: &mut open,
        };
        egui::Panel::right("embedscope-side")
            .resizable(true)
            .default_size(PANEL_WIDTH)
            // A wide widget must not grow the panel over the view.
            .size_range(280.0..=PANEL_WIDTH * 1.5)
            .show(&mut ui, |ui| {
                egui::ScrollArea::vertical()
                    .id_salt("panel-scroll")
                    .auto_shrink([false, false])
                    .show(ui, |ui| sections(ui, &mut cx, analysis.as_ref()));
            })
    };
    if edits.selection.revision() != revision {
        edits.selection.set_changed();
    }
    let panel_width = panel.response.rect.width();
    set_viewport(cam, window, panel_width);
    hover_label(&ctx, &shown.dataset, &view);
    edits.over_ui.pointer = pointer_on_ui(&ctx, panel_width) || edits.drag.active();
    edits.over_ui.typing = ctx.egui_wants_keyboard_input();
    if view != *edits.view {
        *edits.view = view;
    }
    jobs.thumbs.end_frame(&ctx);
    Ok(())
}

fn sections(ui: &mut egui::Ui, cx: &mut Cx, analysis: Option<&Arc<Analysis>>) {
    ui.set_max_width(ui.available_width());
    header::show(ui, cx);
    let Some(a) = analysis else {
        return;
    };
    problems::show(ui, cx, a);
    if a.folder.images.is_empty() {
        return;
    }
    view_options::show(ui, cx, a);
    search::show(ui, cx, a);
    focus::show(ui, cx, a);
    selection::show(ui, cx, a);
    clusters::show(ui, cx, a);
    issues::show(ui, cx, a);
    tags::show(ui, cx, a);
    layout_settings::show(ui, cx);
}

/// Whether the pointer is on the panel, on an egui window, or dragging a
/// widget. (egui's own `is_pointer_over_egui` counts the whole background
/// layer the panel is drawn in.)
fn pointer_on_ui(ctx: &egui::Context, panel_width: f32) -> bool {
    let on_panel_or_window = ctx.pointer_hover_pos().is_some_and(|p| {
        p.x >= ctx.viewport_rect().max.x - panel_width
            || ctx.layer_id_at(p).is_some_and(|layer| {
                !matches!(layer.order, egui::Order::Background | egui::Order::Tooltip)
            })
    });
    on_panel_or_window || ctx.egui_is_using_pointer()
}

/// The 3D view gets the window left of the panel.
fn set_viewport(camera: &mut Camera, window: &Window, panel_width: f32) {
    let size = window.physical_size();
    let panel = (panel_width * window.scale_factor()).round() as u32;
    if size.x <= panel + 16 || size.y == 0 {
        return;
    }
    let viewport = Viewport {
        physical_position: UVec2::ZERO,
        physical_size: UVec2::new(size.x - panel, size.y),
        ..default()
    };
    let same = camera.viewport.as_ref().is_some_and(|v| {
        v.physical_position == viewport.physical_position
            && v.physical_size == viewport.physical_size
    });
    if !same {
        camera.viewport = Some(viewport);
    }
}

fn hover_label(ctx: &egui::Context, dataset: &Dataset, view: &ViewState) {
    let (Some(a), Some(i)) = (&dataset.analysis, view.hovered) else {
        return;
    };
    let Some(record) = a.folder.images.get(i) else {
        return;
    };
    let Some(pos) = ctx.pointer_hover_pos() else {
        return;
    };
    egui::Area::new("hovered-point".into())
        .order(egui::Order::Tooltip)
        .fixed_pos(pos + egui::vec2(14.0, 10.0))
        .interactable(false)
        .show(ctx, |ui| {
            egui::Frame::popup(ui.style()).show(ui, |ui| {
                ui.label(widgets::short_name(&record.relative));
            });
        });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_and_tabs_are_opened_by_name_once() {
        let mut ui = PanelUi::default();
        ui.show("issues:outliers").unwrap();
        assert_eq!(ui.issues_tab, IssueTab::Outliers);
        assert!(ui.take_request(Section::Issues));
        assert!(!ui.take_request(Section::Issues), "a request is used once");
        ui.show("selection").unwrap();
        assert!(ui.take_request(Section::Selection));
        assert!(ui.show("nowhere").is_err());
        assert!(ui.show("issues:nothing").is_err());
        assert!(ui.show("tags:outliers").is_err());
    }
}
