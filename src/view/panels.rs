//! The egui side panel: progress and Cancel, what was skipped, colouring and
//! legend, search, the selected image with its neighbours, clusters,
//! duplicate groups (live threshold, exports) and layout settings. The 3D
//! view's viewport is the window minus the panel, so nothing hides under it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bevy::camera::Viewport;
use bevy::prelude::*;
use bevy::window::PrimaryWindow;
use bevy_egui::{EguiContexts, EguiPrimaryContextPass, egui};

use super::camera::{HomeView, Orbit, OrbitGoal, ViewCamera};
use super::layout::Positions;
use super::loading::{Dataset, OpenFolder, Settings};
use super::points::Classes;
use super::state::{ColorBy, Duplicates, PointerOverUi, ViewState, palette};
use super::welcome::FolderDialog;
use crate::choice::Choice;
use crate::embed::EmbedderKind;
use crate::output::duplicates::{ExportKind, export};
use crate::pipeline::Analysis;
use crate::progress::Stage;
use crate::reduce::ReducerKind;

/// Width of the side panel when the window opens, in logical pixels.
const PANEL_WIDTH: f32 = 380.0;
/// Side of the thumbnails shown in the panel.
const THUMB: f32 = 48.0;

pub struct PanelsPlugin;

impl Plugin for PanelsPlugin {
    fn build(&self, app: &mut App) {
        app.init_resource::<PanelTextures>()
            .init_resource::<SelectedImage>()
            .init_resource::<Exports>()
            .init_resource::<TextSearch>()
            .add_systems(Update, load_selected_image)
            .add_systems(EguiPrimaryContextPass, side_panel);
    }
}

/// egui textures of thumbnails shown in the panel, read from the thumbnail
/// store on first use.
#[derive(Resource, Default)]
struct PanelTextures {
    /// The analysis (by the dataset's generation) the textures belong to.
    generation: u64,
    store: Option<Mutex<crate::cache::thumbnails::ThumbnailStore>>,
    thumbs: HashMap<usize, egui::TextureHandle>,
}

impl PanelTextures {
    fn thumb(&mut self, ctx: &egui::Context, a: &Analysis, i: usize) -> Option<egui::TextureId> {
        if let Some(handle) = self.thumbs.get(&i) {
            return Some(handle.id());
        }
        let store = self.store.as_ref()?.lock().ok()?;
        let hash = a.folder.images.get(i)?.hash;
        let t = store
            .get_many(&[hash], super::thumbnails::THUMBNAIL_SIZE)
            .ok()?
            .remove(&hash)?;
        drop(store);
        let image = egui::ColorImage::from_rgba_unmultiplied(
            [t.width as usize, t.height as usize],
            &t.rgba,
        );
        let handle = ctx.load_texture(format!("thumb-{i}"), image, egui::TextureOptions::LINEAR);
        let id = handle.id();
        self.thumbs.insert(i, handle);
        Some(id)
    }

    /// Forgets the textures of another analysis and opens this one's store.
    fn follow(&mut self, generation: u64, a: Option<&Analysis>) {
        if self.generation == generation {
            return;
        }
        self.generation = generation;
        self.thumbs.clear();
        self.store = a
            .and_then(|a| a.folder.thumbnail_store.as_ref())
            .and_then(|path| crate::cache::thumbnails::ThumbnailStore::open(path).ok())
            .map(Mutex::new);
    }
}

/// Decoded pixels, or why the image cannot be shown.
type Decoded = Result<egui::ColorImage, String>;

/// The selected image at display size, decoded on a worker thread.
#[derive(Resource, Default)]
struct SelectedImage {
    key: Option<(u64, usize)>,
    pending: Option<Arc<Mutex<Option<Decoded>>>>,
    shown: Option<Result<egui::TextureHandle, String>>,
    /// Pixels not yet turned into a texture (needs the egui context).
    ready: Option<Result<egui::ColorImage, String>>,
}

fn load_selected_image(
    dataset: Res<Dataset>,
    state: Res<ViewState>,
    mut selected: ResMut<SelectedImage>,
) {
    let key = dataset
        .analysis
        .as_ref()
        .zip(state.selected)
        .map(|(_, i)| (dataset.generation, i));
    if key != selected.key {
        selected.key = key;
        selected.shown = None;
        selected.ready = None;
        selected.pending = None;
        if let (Some(a), Some(i)) = (&dataset.analysis, state.selected)
            && let Some(record) = a.folder.images.get(i)
        {
            let path = a.folder.root.join(&record.relative);
            let slot = Arc::new(Mutex::new(None));
            let out = slot.clone();
            let limits = a.options.limits;
            std::thread::spawn(move || {
                let result = crate::decode::read_file(&path, &limits)
                    .and_then(|bytes| crate::decode::decode(&bytes, &limits))
                    .map_err(|reason| reason.to_string())
                    .map(|image| {
                        let small = image.thumbnail(512, 512).to_rgba8();
                        egui::ColorImage::from_rgba_unmultiplied(
                            [small.width() as usize, small.height() as usize],
                            small.as_raw(),
                        )
                    });
                *out.lock().unwrap() = Some(result);
            });
            selected.pending = Some(slot);
        }
    }
    let done = selected
        .pending
        .as_ref()
        .and_then(|slot| slot.lock().unwrap().take());
    if let Some(result) = done {
        selected.pending = None;
        selected.ready = Some(result);
    }
}

/// Export dialogs run on their own thread; their outcome is shown here.
#[derive(Resource, Default, Clone)]
struct Exports(Arc<Mutex<ExportState>>);

#[derive(Default)]
struct ExportState {
    busy: bool,
    message: Option<String>,
}

/// The CLIP text query: run by the library's `rank_by_text` on a thread.
#[derive(Resource, Default, Clone)]
struct TextSearch(Arc<Mutex<TextSearchState>>);

#[derive(Default)]
struct TextSearchState {
    /// The analysis the results belong to.
    source: usize,
    query: String,
    busy: bool,
    message: Option<String>,
    results: Vec<(usize, f32)>,
    matches: Option<Arc<std::collections::HashSet<usize>>>,
}

/// Images ranked by a text query, best first.
const TEXT_MATCHES: usize = 50;

fn text_search_section(
    ui: &mut egui::Ui,
    view: &mut ViewState,
    a: &Arc<Analysis>,
    search: &TextSearch,
) {
    let mut s = search.0.lock().unwrap();
    let source = Arc::as_ptr(a) as usize;
    if s.source != source {
        // A new map: old results point at other images.
        s.source = source;
        s.results.clear();
        s.matches = None;
        s.message = None;
    }
    let clip = a.folder.embedder_id.starts_with("clip-");
    ui.horizontal(|ui| {
        ui.label("Text");
        let edit = ui.add_enabled(
            clip && !s.busy,
            egui::TextEdit::singleline(&mut s.query).hint_text("a photo of a dog"),
        );
        let enter = edit.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
        let find = ui
            .add_enabled(
                clip && !s.busy && !s.query.trim().is_empty(),
                egui::Button::new("Find"),
            )
            .clicked();
        if (find || enter) && clip && !s.busy && !s.query.trim().is_empty() {
            s.busy = true;
            s.message = None;
            let (analysis, query, shared) = (a.clone(), s.query.clone(), search.0.clone());
            std::thread::spawn(move || {
                let result = crate::search::rank_by_text(
                    &analysis.folder,
                    &analysis.options.clip,
                    &query,
                    TEXT_MATCHES,
                );
                let mut s = shared.lock().unwrap();
                s.busy = false;
                if s.source != Arc::as_ptr(&analysis) as usize {
                    return; // the map changed meanwhile
                }
                match result {
                    Ok(results) => {
                        s.matches = Some(Arc::new(results.iter().map(|r| r.0).collect()));
                        s.results = results;
                    }
                    Err(err) => s.message = Some(format!("{err:#}")),
                }
            });
        }
    });
    if !clip {
        ui.label(
            "Text search needs the CLIP embedder: `embedscope model fetch`, then choose \
             CLIP under Layout and Re-run.",
        );
    }
    if s.busy {
        ui.horizontal(|ui| {
            ui.spinner();
            ui.label("embedding the text…");
        });
    }
    if let Some(message) = &s.message {
        ui.colored_label(egui::Color32::from_rgb(230, 120, 100), message);
    }
    if !s.results.is_empty() {
        ui.label(format!(
            "best {} matches highlighted; click one to select it",
            s.results.len()
        ));
        for &(i, score) in s.results.iter().take(10) {
            let name = a.folder.images.get(i).map_or("", |r| r.relative.as_str());
            if ui.link(format!("{score:.3}  {name}")).clicked() {
                view.selected = Some(i);
            }
        }
        if ui.button("Clear text search").clicked() {
            s.results.clear();
            s.matches = None;
        }
    }
    view.text_matches = s.matches.clone();
}

#[allow(clippy::too_many_arguments)]
fn side_panel(
    mut contexts: EguiContexts,
    dataset: Res<Dataset>,
    mut state: ResMut<ViewState>,
    mut duplicates: ResMut<Duplicates>,
    mut settings: ResMut<Settings>,
    mut textures: ResMut<PanelTextures>,
    mut selected: ResMut<SelectedImage>,
    mut over_ui: ResMut<PointerOverUi>,
    mut open: MessageWriter<OpenFolder>,
    classes: Res<Classes>,
    positions: Res<Positions>,
    dialog: Res<FolderDialog>,
    (exports, text_search): (Res<Exports>, Res<TextSearch>),
    window: Single<&Window, With<PrimaryWindow>>,
    mut camera: Single<(&mut Camera, &Orbit, &mut OrbitGoal), With<ViewCamera>>,
    home: Res<HomeView>,
) -> Result {
    let ctx = contexts.ctx_mut()?.clone();
    let (cam, orbit, goal) = &mut *camera;
    if dataset.folder.is_none() {
        // The welcome screen owns the window.
        set_viewport(cam, &window, 0.0);
        over_ui.pointer = pointer_on_ui(&ctx, 0.0);
        over_ui.typing = ctx.egui_wants_keyboard_input();
        return Ok(());
    }
    textures.follow(dataset.generation, dataset.analysis.as_deref());
    let mut view = state.clone();
    let mut rerun = false;
    let mut regrouped = false;
    let mut ui = egui::Ui::new(
        ctx.clone(),
        "embedscope-panel".into(),
        egui::UiBuilder::new()
            .layer_id(egui::LayerId::background())
            .max_rect(ctx.viewport_rect()),
    );
    let panel = egui::Panel::right("embedscope-side")
        .resizable(true)
        .default_size(PANEL_WIDTH)
        // A wide widget must not grow the panel over the view.
        .size_range(280.0..=PANEL_WIDTH * 1.5)
        .show(&mut ui, |ui| {
            egui::ScrollArea::vertical().show(ui, |ui| {
                header(ui, &dataset, &dialog);
                progress_section(ui, &dataset);
                let Some(analysis) = dataset.analysis.clone() else {
                    return;
                };
                problems_section(ui, &analysis, &dataset.warnings);
                if analysis.folder.images.is_empty() {
                    return;
                }
                view_section(ui, &mut view, goal, &home, &analysis, &classes, &duplicates);
                text_search_section(ui, &mut view, &analysis, &text_search);
                selection_section(
                    ui,
                    &ctx,
                    &mut view,
                    &analysis,
                    &duplicates,
                    &mut textures,
                    &mut selected,
                );
                clusters_section(
                    ui,
                    &ctx,
                    &mut view,
                    orbit,
                    goal,
                    &analysis,
                    &positions,
                    &mut textures,
                );
                // Only a regrouping marks the duplicates changed (which
                // recolours every point), not each frame the panel is drawn.
                regrouped = duplicates_section(
                    ui,
                    &ctx,
                    &mut view,
                    &analysis,
                    duplicates.bypass_change_detection(),
                    &mut textures,
                    &exports,
                );
                rerun = layout_section(ui, &mut settings, dataset.running());
            });
        });
    if regrouped {
        duplicates.set_changed();
    }
    let panel_width = panel.response.rect.width();
    set_viewport(cam, &window, panel_width);
    hover_label(&ctx, &dataset, &view);
    over_ui.pointer = pointer_on_ui(&ctx, panel_width);
    over_ui.typing = ctx.egui_wants_keyboard_input();
    if view != *state {
        *state = view;
    }
    if rerun && let Some(folder) = dataset.folder.clone() {
        open.write(OpenFolder(folder));
    }
    Ok(())
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

fn colour32(c: Color) -> egui::Color32 {
    let c = c.to_srgba();
    egui::Color32::from_rgb(
        (c.red * 255.0) as u8,
        (c.green * 255.0) as u8,
        (c.blue * 255.0) as u8,
    )
}

fn swatch(ui: &mut egui::Ui, colour: Color) {
    let (rect, _) = ui.allocate_exact_size(egui::vec2(12.0, 12.0), egui::Sense::hover());
    ui.painter()
        .circle_filled(rect.center(), 5.5, colour32(colour));
}

fn header(ui: &mut egui::Ui, dataset: &Dataset, dialog: &FolderDialog) {
    ui.horizontal(|ui| {
        ui.heading("embedscope");
        if ui
            .add_enabled(!dialog.is_open(), egui::Button::new("Open folder…"))
            .clicked()
        {
            dialog.ask();
        }
    });
    if let Some(folder) = &dataset.folder {
        ui.label(egui::RichText::new(folder.display().to_string()).monospace());
    }
    ui.separator();
}

fn progress_section(ui: &mut egui::Ui, dataset: &Dataset) {
    egui::CollapsingHeader::new("Progress")
        .id_salt("progress")
        .default_open(true)
        .show(ui, |ui| {
            egui::Grid::new("stages").num_columns(2).show(ui, |ui| {
                for stage in Stage::ALL {
                    let s = dataset.stage(stage);
                    ui.label(stage.label());
                    let bar =
                        match (&s.finished, s.total) {
                            (Some((seconds, summary)), _) => egui::ProgressBar::new(1.0)
                                .text(format!("{summary} ({seconds:.1}s)")),
                            (None, Some(total)) if s.started && total > 0 => {
                                egui::ProgressBar::new(s.done as f32 / total as f32)
                                    .text(format!("{} / {total}", s.done))
                            }
                            (None, _) if s.started => egui::ProgressBar::new(0.0)
                                .animate(true)
                                .text(if s.done > 0 {
                                    format!("{}", s.done)
                                } else {
                                    "working…".to_owned()
                                }),
                            _ => egui::ProgressBar::new(0.0).text("waiting"),
                        };
                    ui.add(bar.desired_width(250.0));
                    ui.end_row();
                }
            });
            if dataset.running() && ui.button("Cancel").clicked() {
                dataset.cancel();
            }
            if let Some(error) = &dataset.error {
                ui.colored_label(egui::Color32::from_rgb(255, 110, 90), error);
            }
        });
}

fn problems_section(ui: &mut egui::Ui, a: &Analysis, warnings: &[String]) {
    let f = &a.folder;
    if f.images.is_empty() {
        ui.colored_label(
            egui::Color32::from_rgb(255, 190, 90),
            format!(
                "No images found in {}. {} files were skipped (reasons below). Open a folder that holds PNG, JPEG, GIF, WebP, BMP or TIFF images.",
                f.root.display(),
                f.skipped.len()
            ),
        );
    }
    if !f.skipped.is_empty() {
        egui::CollapsingHeader::new(format!("Skipped files ({})", f.skipped.len()))
            .id_salt("skipped")
            .default_open(f.images.is_empty())
            .show(ui, |ui| {
                egui::ScrollArea::vertical()
                    .id_salt("skipped-list")
                    .max_height(180.0)
                    .show_rows(ui, 18.0, f.skipped.len(), |ui, rows| {
                        for s in &f.skipped[rows] {
                            ui.label(format!("{} — {}", s.path, s.reason));
                        }
                    });
            });
    }
    if !warnings.is_empty() {
        egui::CollapsingHeader::new(format!("Warnings ({})", warnings.len()))
            .id_salt("warnings")
            .show(ui, |ui| {
                for w in warnings.iter().take(50) {
                    ui.label(w);
                }
            });
    }
}

fn view_section(
    ui: &mut egui::Ui,
    view: &mut ViewState,
    goal: &mut OrbitGoal,
    home: &HomeView,
    a: &Analysis,
    classes: &Classes,
    duplicates: &Duplicates,
) {
    egui::CollapsingHeader::new("View")
        .id_salt("view")
        .default_open(true)
        .show(ui, |ui| {
            ui.horizontal(|ui| {
                ui.label("Colour by");
                ui.selectable_value(&mut view.color_by, ColorBy::Cluster, "cluster");
                ui.selectable_value(&mut view.color_by, ColorBy::Folder, "folder");
                ui.selectable_value(&mut view.color_by, ColorBy::Duplicates, "duplicates");
            });
            ui.add(
                egui::Slider::new(&mut view.splat_size, 0.005..=0.2)
                    .logarithmic(true)
                    .text("point size"),
            );
            ui.horizontal(|ui| {
                ui.checkbox(&mut view.show_thumbnails, "thumbnails")
                    .on_hover_text("Images instead of dots for the points nearest the camera");
                if ui.button("Reset view (R)").clicked() {
                    goal.0 = home.0;
                }
            });
            ui.label(format!(
                "{} images · {} laid out with {}",
                a.folder.images.len(),
                a.folder.embedder_id,
                a.layout.used.name()
            ));
            legend(ui, view, a, classes, duplicates);
            ui.horizontal(|ui| {
                ui.label("Search");
                ui.add(
                    egui::TextEdit::singleline(&mut view.filter).hint_text("part of a file name"),
                );
            });
            if !view.filter.is_empty() {
                let needle = view.filter.to_lowercase();
                let hits = a
                    .folder
                    .images
                    .iter()
                    .filter(|r| r.relative.to_lowercase().contains(&needle))
                    .count();
                ui.label(format!("{hits} matching images highlighted"));
            }
        });
}

fn legend(
    ui: &mut egui::Ui,
    view: &ViewState,
    a: &Analysis,
    classes: &Classes,
    duplicates: &Duplicates,
) {
    ui.horizontal_wrapped(|ui| match view.color_by {
        ColorBy::Cluster => {
            for (id, members) in a.clusters.members.iter().enumerate().take(24) {
                swatch(ui, palette(id as i32));
                ui.label(format!("{id} ({})", members.len()));
            }
            if a.clusters.members.len() > 24 {
                ui.label(format!("… {} more", a.clusters.members.len() - 24));
            }
            swatch(ui, palette(-1));
            ui.label(format!("none ({})", a.clusters.noise()));
        }
        ColorBy::Folder => {
            for (id, name) in classes.names.iter().enumerate().take(40) {
                swatch(ui, palette(id as i32));
                ui.label(name);
            }
        }
        ColorBy::Duplicates => {
            let in_groups = duplicates.labels.iter().filter(|l| **l >= 0).count();
            swatch(ui, Color::srgb(1.0, 0.3, 0.25));
            ui.label(format!("in a duplicate group ({in_groups})"));
            swatch(ui, Color::srgb(0.35, 0.37, 0.42));
            ui.label("unique");
        }
    });
}

fn thumb_button(
    ui: &mut egui::Ui,
    ctx: &egui::Context,
    textures: &mut PanelTextures,
    a: &Analysis,
    i: usize,
    caption: &str,
) -> bool {
    let name = &a.folder.images[i].relative;
    let response = match textures.thumb(ctx, a, i) {
        Some(id) => ui.add(egui::Button::image(
            egui::Image::new((id, egui::vec2(THUMB, THUMB))).maintain_aspect_ratio(true),
        )),
        None => ui.button(short_name(name)),
    };
    response
        .on_hover_text(format!("{name}\n{caption}"))
        .clicked()
}

fn short_name(relative: &str) -> &str {
    relative.rsplit('/').next().unwrap_or(relative)
}

fn selection_section(
    ui: &mut egui::Ui,
    ctx: &egui::Context,
    view: &mut ViewState,
    a: &Analysis,
    duplicates: &Duplicates,
    textures: &mut PanelTextures,
    selected: &mut SelectedImage,
) {
    egui::CollapsingHeader::new("Selection")
        .id_salt("selection")
        .default_open(true)
        .show(ui, |ui| {
            let Some(i) = view.selected.filter(|&i| i < a.folder.images.len()) else {
                ui.weak("Click a point to see its image. Drag to turn, right-drag to pan, wheel to zoom, double-click to fly to a point.");
                return;
            };
            let record = &a.folder.images[i];
            if let Some(ready) = selected.ready.take() {
                selected.shown = Some(ready.map(|img| ctx.load_texture("selected", img, egui::TextureOptions::LINEAR)));
            }
            match &selected.shown {
                Some(Ok(texture)) => {
                    let size = texture.size_vec2();
                    let scale = (ui.available_width() / size.x).min(280.0 / size.y).min(4.0);
                    ui.image((texture.id(), size * scale));
                }
                Some(Err(reason)) => {
                    ui.colored_label(egui::Color32::from_rgb(255, 150, 90), format!("cannot show this image: {reason}"));
                }
                None => {
                    ui.spinner();
                }
            }
            let path = a.folder.root.join(&record.relative);
            ui.label(egui::RichText::new(&record.relative).monospace());
            ui.label(format!("{} × {} pixels", record.width, record.height));
            let cluster = a.clusters.labels[i];
            let group = duplicates.labels.get(i).copied().unwrap_or(-1);
            ui.label(format!(
                "cluster {} · duplicate group {}",
                if cluster < 0 { "none".to_owned() } else { cluster.to_string() },
                if group < 0 { "none".to_owned() } else { group.to_string() },
            ));
            ui.horizontal(|ui| {
                if ui.button("Open").clicked() {
                    open_with_system(&path, false);
                }
                if ui.button("Show in folder").clicked() {
                    open_with_system(&path, true);
                }
            });
            ui.label("Nearest neighbours:");
            ui.horizontal_wrapped(|ui| {
                for (j, distance) in a.knn.neighbours(i).take(10) {
                    let cosine = crate::neighbours::KnnGraph::cosine_of_distance(distance);
                    if thumb_button(ui, ctx, textures, a, j, &format!("cosine {cosine:.3}")) {
                        view.selected = Some(j);
                    }
                }
            });
        });
}

/// Opens `path` with the desktop's default application (or its folder).
fn open_with_system(path: &Path, folder: bool) {
    let target: PathBuf = if folder {
        path.parent().unwrap_or(path).to_path_buf()
    } else {
        path.to_path_buf()
    };
    let program = if cfg!(target_os = "macos") {
        "open"
    } else if cfg!(windows) {
        "explorer"
    } else {
        "xdg-open"
    };
    if let Err(err) = std::process::Command::new(program).arg(&target).spawn() {
        warn!("could not run {program} {}: {err}", target.display());
    }
}

#[allow(clippy::too_many_arguments)]
fn clusters_section(
    ui: &mut egui::Ui,
    ctx: &egui::Context,
    view: &mut ViewState,
    orbit: &Orbit,
    goal: &mut OrbitGoal,
    a: &Analysis,
    positions: &Positions,
    textures: &mut PanelTextures,
) {
    egui::CollapsingHeader::new(format!("Clusters ({})", a.clusters.members.len()))
        .id_salt("clusters")
        .show(ui, |ui| {
            if a.clusters.members.is_empty() {
                ui.weak("No clusters: too few images, or none dense enough.");
                return;
            }
            if view.highlighted_cluster.is_some() && ui.button("Clear highlight").clicked() {
                view.highlighted_cluster = None;
            }
            for (id, members) in a.clusters.members.iter().enumerate() {
                let id32 = id as i32;
                ui.horizontal(|ui| {
                    let mut shown = !view.hidden_clusters.contains(&id32);
                    if ui
                        .checkbox(&mut shown, "")
                        .on_hover_text("show / hide")
                        .changed()
                    {
                        if shown {
                            view.hidden_clusters.remove(&id32);
                        } else {
                            view.hidden_clusters.insert(id32);
                        }
                    }
                    swatch(ui, palette(id32));
                    let selected = view.highlighted_cluster == Some(id32);
                    if ui
                        .selectable_label(
                            selected,
                            format!("cluster {id} · {} images", members.len()),
                        )
                        .clicked()
                    {
                        view.highlighted_cluster = Some(id32);
                        if let Some((centre, radius)) = extent(members, positions) {
                            goal.0 = orbit.fly_to(centre, (radius * 3.5).max(1.0));
                            goal.0.distance = (radius * 3.5).max(1.0);
                        }
                    }
                });
                ui.horizontal(|ui| {
                    let step = (members.len() / 6).max(1);
                    for &m in members.iter().step_by(step).take(6) {
                        if thumb_button(ui, ctx, textures, a, m, "") {
                            view.selected = Some(m);
                        }
                    }
                });
            }
        });
}

/// Centre and RMS radius of some points, as drawn now.
fn extent(members: &[usize], positions: &Positions) -> Option<(Vec3, f32)> {
    let points: Vec<Vec3> = members
        .iter()
        .filter_map(|&m| positions.current.get(m).copied())
        .collect();
    if points.is_empty() {
        return None;
    }
    let centre = points.iter().copied().sum::<Vec3>() / points.len() as f32;
    let radius = (points
        .iter()
        .map(|p| p.distance_squared(centre))
        .sum::<f32>()
        / points.len() as f32)
        .sqrt();
    Some((centre, radius))
}

#[allow(clippy::too_many_arguments)]
fn duplicates_section(
    ui: &mut egui::Ui,
    ctx: &egui::Context,
    view: &mut ViewState,
    a: &Analysis,
    duplicates: &mut Duplicates,
    textures: &mut PanelTextures,
    exports: &Exports,
) -> bool {
    let mut regrouped = false;
    egui::CollapsingHeader::new(format!("Duplicates ({} groups)", duplicates.groups.len()))
        .id_salt("duplicates")
        .default_open(view.color_by == ColorBy::Duplicates)
        .show(ui, |ui| {
            let mut threshold = duplicates.threshold;
            let slider = ui.add(egui::Slider::new(&mut threshold, 0.80..=1.0).text("cosine ≥"));
            if slider.changed() && threshold != duplicates.threshold {
                // The library regroups; it only walks the kNN pairs, so it is quick.
                let hashes: Vec<_> = a.folder.images.iter().map(|r| r.hash).collect();
                let (labels, groups) = crate::analyze::find_duplicates(&a.folder.embeddings, &a.knn, &hashes, threshold);
                *duplicates = Duplicates { threshold, labels, groups };
                regrouped = true;
            }
            ui.weak("Only the files' nearest neighbours are compared. embedscope never deletes or moves a file: export a list and decide.");
            let state = exports.0.lock().unwrap();
            let busy = state.busy;
            if let Some(message) = &state.message {
                ui.label(message);
            }
            drop(state);
            ui.horizontal(|ui| {
                for (label, kind, name) in [
                    ("Export CSV…", ExportKind::Csv, "duplicates.csv"),
                    ("Export JSON…", ExportKind::Json, "duplicates.json"),
                    ("Keep-one list…", ExportKind::Others, "duplicates-to-review.txt"),
                ] {
                    let enabled = !busy && !duplicates.groups.is_empty();
                    let button = ui.add_enabled(enabled, egui::Button::new(label));
                    let button = if kind == ExportKind::Others {
                        button.on_hover_text("Every member of every group except the one to keep (most pixels, then shortest path)")
                    } else {
                        button
                    };
                    if button.clicked() {
                        start_export(exports, kind, name, a, duplicates);
                    }
                }
            });
            egui::ScrollArea::vertical().id_salt("dup-groups").max_height(360.0).show(ui, |ui| {
                for g in duplicates.groups.iter().take(200) {
                    ui.label(format!(
                        "group {} · {} images · cosine ≥ {:.3}{}",
                        g.id,
                        g.members.len(),
                        g.weakest.cosine,
                        if g.exact { " · exact copies" } else { "" }
                    ));
                    ui.horizontal_wrapped(|ui| {
                        for &m in g.members.iter().take(12) {
                            if thumb_button(ui, ctx, textures, a, m, "") {
                                view.selected = Some(m);
                            }
                        }
                    });
                }
            });
        });
    regrouped
}

fn start_export(
    exports: &Exports,
    kind: ExportKind,
    name: &str,
    a: &Analysis,
    duplicates: &Duplicates,
) {
    let shared = exports.0.clone();
    shared.lock().unwrap().busy = true;
    let (name, folder, groups, images, threshold) = (
        name.to_owned(),
        a.folder.root.clone(),
        duplicates.groups.clone(),
        a.folder.images.clone(),
        duplicates.threshold,
    );
    std::thread::spawn(move || {
        let chosen = rfd::FileDialog::new().set_file_name(&name).save_file();
        let message =
            chosen.map(
                |path| match export(kind, &path, &folder, &groups, &images, threshold) {
                    Ok(()) => format!("Saved {}", path.display()),
                    Err(err) => format!("Not saved: {err:#}"),
                },
            );
        let mut state = shared.lock().unwrap();
        state.busy = false;
        if message.is_some() {
            state.message = message;
        }
    });
}

/// Returns true when the user asked for a re-run with new settings.
fn layout_section(ui: &mut egui::Ui, settings: &mut Settings, running: bool) -> bool {
    let mut rerun = false;
    egui::CollapsingHeader::new("Layout settings")
        .id_salt("layout")
        .show(ui, |ui| {
            let o = &mut settings.0;
            ui.horizontal(|ui| {
                ui.label("Method");
                ui.selectable_value(&mut o.reducer, ReducerKind::Umap, "UMAP");
                ui.selectable_value(&mut o.reducer, ReducerKind::Tsne, "t-SNE");
                ui.selectable_value(&mut o.reducer, ReducerKind::Pca, "PCA");
            });
            match o.reducer {
                ReducerKind::Umap => {
                    ui.add(egui::Slider::new(&mut o.reduce.umap.n_neighbors, 2..=100).text("neighbours"));
                    ui.add(egui::Slider::new(&mut o.reduce.umap.min_dist, 0.0..=1.0).text("min distance"));
                }
                ReducerKind::Tsne => {
                    ui.add(egui::Slider::new(&mut o.reduce.tsne.perplexity, 2.0..=100.0).text("perplexity"));
                }
                ReducerKind::Pca => {}
            }
            ui.horizontal(|ui| {
                ui.label("Embedder");
                ui.selectable_value(&mut o.embedder, EmbedderKind::Pixels, "pixels");
                // Offered when its weights are there (two file checks a frame).
                match o.clip.find_model() {
                    Ok(dir) => {
                        ui.selectable_value(&mut o.embedder, EmbedderKind::Clip, "CLIP")
                            .on_hover_text(format!("weights in {}", dir.display()));
                    }
                    Err(err) => {
                        ui.add_enabled(false, egui::Button::new("CLIP"))
                            .on_disabled_hover_text(format!("{err:#}"));
                    }
                }
            });
            ui.weak("Embeddings come from the cache when they were computed before: only the layout is redone.");
            rerun = ui.add_enabled(!running, egui::Button::new("Re-run")).clicked();
        });
    rerun
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
                ui.label(short_name(&record.relative));
            });
        });
}
