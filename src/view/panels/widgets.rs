//! Pieces the sections share: colour swatches and the colour-map bar,
//! thumbnail buttons, the virtualised gallery, the export-folder line,
//! opening a file with the desktop.

use std::path::Path;

use bevy::prelude::*;
use bevy_egui::egui;

use super::thumbs::PanelThumbs;
use crate::pipeline::Analysis;
use crate::view::colour::{colour32, viridis};
use crate::view::exports::Exports;

/// Side of a thumbnail in a gallery, logical pixels.
pub const THUMB: f32 = 56.0;
/// A gallery cell: the thumbnail and a caption line under it.
const CELL: egui::Vec2 = egui::vec2(THUMB + 12.0, THUMB + 18.0);
/// Colour of warnings and errors.
pub const WARN: egui::Color32 = egui::Color32::from_rgb(255, 150, 90);

pub fn swatch(ui: &mut egui::Ui, colour: Color) {
    let (rect, _) = ui.allocate_exact_size(egui::vec2(12.0, 12.0), egui::Sense::hover());
    ui.painter()
        .circle_filled(rect.center(), 5.5, colour32(colour));
}

/// The colour map as a bar from `low` to `high`, with its ends labelled.
pub fn colour_bar(ui: &mut egui::Ui, low: &str, high: &str) {
    ui.horizontal(|ui| {
        ui.label(low);
        let width = (ui.available_width() - 60.0).clamp(60.0, 220.0);
        let (rect, _) = ui.allocate_exact_size(egui::vec2(width, 12.0), egui::Sense::hover());
        let steps = 48;
        for k in 0..steps {
            let x0 = rect.left() + rect.width() * k as f32 / steps as f32;
            let x1 = rect.left() + rect.width() * (k + 1) as f32 / steps as f32;
            let t = (k as f32 + 0.5) / steps as f32;
            ui.painter().rect_filled(
                egui::Rect::from_x_y_ranges(x0..=x1 + 0.5, rect.y_range()),
                0.0,
                colour32(viridis(t)),
            );
        }
        ui.label(high);
    });
}

/// The file name of a relative path.
pub fn short_name(relative: &str) -> &str {
    relative.rsplit('/').next().unwrap_or(relative)
}

/// A thumbnail button for image `i` (its name while the thumbnail loads);
/// hovering shows the path and `caption`.
pub fn thumb_button(
    ui: &mut egui::Ui,
    thumbs: &mut PanelThumbs,
    a: &Analysis,
    i: usize,
    caption: &str,
) -> egui::Response {
    let name = &a.folder.images[i].relative;
    let size = egui::vec2(THUMB, THUMB);
    let response = match thumbs.get(a, i) {
        Some(id) => ui.add(egui::Button::image(
            egui::Image::new((id, size)).maintain_aspect_ratio(true),
        )),
        None => ui.add_sized(
            size,
            egui::Button::new(egui::RichText::new(short_name(name)).small()).truncate(),
        ),
    };
    if caption.is_empty() {
        response.on_hover_text(name)
    } else {
        response.on_hover_text(format!("{name}\n{caption}"))
    }
}

/// A grid of thumbnails with a caption under each, `count` items long,
/// drawing only the rows in view (so 100k items cost what 20 rows do).
/// `item(k)` gives the k-th image and its caption. Returns the image
/// clicked.
pub fn gallery(
    ui: &mut egui::Ui,
    id: &str,
    thumbs: &mut PanelThumbs,
    a: &Analysis,
    count: usize,
    max_height: f32,
    item: impl Fn(usize) -> (usize, String),
) -> Option<usize> {
    if count == 0 {
        return None;
    }
    let spacing = ui.spacing().item_spacing;
    let per_row =
        (((ui.available_width() + spacing.x) / (CELL.x + spacing.x)).floor() as usize).max(1);
    let rows = count.div_ceil(per_row);
    let mut clicked = None;
    egui::ScrollArea::vertical()
        .id_salt(id)
        .max_height(max_height)
        .auto_shrink([false, true])
        .show_rows(ui, CELL.y, rows, |ui, range| {
            for row in range {
                ui.horizontal(|ui| {
                    for k in row * per_row..((row + 1) * per_row).min(count) {
                        let (i, caption) = item(k);
                        ui.allocate_ui_with_layout(
                            CELL,
                            egui::Layout::top_down(egui::Align::Center),
                            |ui| {
                                ui.set_min_size(CELL);
                                if thumb_button(ui, thumbs, a, i, &caption).clicked() {
                                    clicked = Some(i);
                                }
                                ui.add(
                                    egui::Label::new(egui::RichText::new(&caption).small())
                                        .truncate(),
                                );
                            },
                        );
                    }
                });
            }
        });
    clicked
}

/// Where exports go, editable; and how the last export ended.
pub fn export_folder(ui: &mut egui::Ui, exports: &mut Exports, a: &Analysis) {
    let default = crate::output::default_output_dir(&a.folder.root)
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    ui.horizontal(|ui| {
        ui.label("Export to");
        ui.add(
            egui::TextEdit::singleline(&mut exports.folder_text)
                .hint_text(default)
                .desired_width(ui.available_width()),
        )
        .on_hover_text("Exports are written here (the results folder unless you type another). Never into the dataset.");
    });
    match &exports.last {
        _ if exports.busy() => {
            ui.horizontal(|ui| {
                ui.spinner();
                ui.label("writing…");
            });
        }
        Some(Ok(path)) => {
            ui.horizontal_wrapped(|ui| {
                ui.label(format!("Saved {}", path.display()));
                if ui.small_button("Show").clicked() {
                    open_with_system(path, true);
                }
            });
        }
        Some(Err(err)) => {
            ui.add(
                egui::Label::new(egui::RichText::new(format!("Not saved: {err}")).color(WARN))
                    .wrap(),
            );
        }
        None => {}
    }
}

/// Opens `path` with the desktop's default application (or its folder).
pub fn open_with_system(path: &Path, folder: bool) {
    let target = if folder {
        path.parent().unwrap_or(path)
    } else {
        path
    };
    if let Err(err) = opener::open(target) {
        warn!("could not open {}: {err}", target.display());
    }
}
