//! What went wrong reading the folder: no images, skipped files, warnings.

use bevy_egui::egui;

use super::Cx;
use super::widgets::WARN;
use crate::pipeline::Analysis;

pub(super) fn show(ui: &mut egui::Ui, cx: &mut Cx, a: &Analysis) {
    let f = &a.folder;
    if f.images.is_empty() {
        ui.add(
            egui::Label::new(
                egui::RichText::new(format!(
                    "No images found in {}. {} files were skipped (reasons below). Open a folder \
                     that holds PNG, JPEG, GIF, WebP, BMP or TIFF images.",
                    f.root.display(),
                    f.skipped.len()
                ))
                .color(WARN),
            )
            .wrap(),
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
                            ui.add(
                                egui::Label::new(format!("{} — {}", s.path, s.reason)).truncate(),
                            );
                        }
                    });
            });
    }
    let warnings = &cx.dataset.warnings;
    if !warnings.is_empty() {
        egui::CollapsingHeader::new(format!("Warnings ({})", warnings.len()))
            .id_salt("warnings")
            .show(ui, |ui| {
                for w in warnings.iter().take(50) {
                    ui.add(egui::Label::new(w).wrap());
                }
            });
    }
}
