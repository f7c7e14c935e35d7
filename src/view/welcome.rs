//! Opening a dataset without the command line: the welcome screen ("Open
//! folder…" through the native dialog, a path field, recent folders),
//! drag-and-drop of a folder or file onto the window, and the freedesktop
//! entry written by `embedscope install-desktop` so a folder opens from the
//! file manager.
//!
//! The native dialog goes through the XDG desktop portal (falling back to
//! zenity). On a minimal desktop with neither, rfd returns "nothing chosen"
//! at once, exactly as when the user cancels: [`no_dialog_shown`] tells the
//! two apart, so the user is told to type or paste the path instead of
//! seeing nothing happen. The path field is always there.

use std::path::{Path, PathBuf};
use std::time::Instant;

use bevy::prelude::*;
use bevy::window::FileDragAndDrop;
use bevy_egui::{EguiContexts, EguiPrimaryContextPass, egui};

use super::loading::{Dataset, OpenFolder, source_of};
use super::tasks::Task;

/// Recent folders kept in the list.
const RECENT_LIMIT: usize = 12;
/// A dialog answered faster than this was never on screen.
const NO_DIALOG_SECONDS: f64 = 0.3;

pub struct WelcomePlugin;

impl Plugin for WelcomePlugin {
    fn build(&self, app: &mut App) {
        app.init_resource::<FolderDialog>()
            .init_resource::<PathField>()
            .add_systems(Update, (open_dropped_folders, open_chosen_folder))
            .add_systems(EguiPrimaryContextPass, welcome_screen);
    }
}

/// The native folder dialog, on a background task (it blocks until the user
/// answers).
#[derive(Resource, Default)]
pub struct FolderDialog {
    asking: Option<Task<DialogAnswer>>,
    /// Why no dialog appeared, for the user.
    pub problem: Option<String>,
}

struct DialogAnswer {
    chosen: Option<PathBuf>,
    seconds: f64,
}

impl FolderDialog {
    pub fn ask(&mut self) {
        if self.asking.is_some() {
            return;
        }
        self.problem = None;
        self.asking = Some(Task::spawn("folder-dialog", |_| {
            let start = Instant::now();
            let chosen = rfd::FileDialog::new()
                .set_title("Open an image folder")
                .pick_folder();
            Ok(DialogAnswer {
                chosen,
                seconds: start.elapsed().as_secs_f64(),
            })
        }));
    }

    pub fn is_open(&self) -> bool {
        self.asking.is_some()
    }
}

/// Whether a dialog that returned nothing after `seconds` was never shown:
/// it came back at once, and neither a file-chooser portal nor zenity (rfd's
/// fallback) exists to show one.
pub fn no_dialog_shown(seconds: f64, zenity: bool, portal: bool) -> bool {
    seconds < NO_DIALOG_SECONDS && !zenity && !portal
}

/// `zenity` is on the PATH.
fn zenity_installed() -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join("zenity").is_file()))
}

/// A session bus is there and the desktop portal's D-Bus service is
/// installed (in one of the XDG data folders).
fn portal_installed() -> bool {
    if std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_none() {
        return false;
    }
    let dirs =
        std::env::var("XDG_DATA_DIRS").unwrap_or_else(|_| "/usr/local/share:/usr/share".into());
    dirs.split(':').filter(|d| !d.is_empty()).any(|dir| {
        Path::new(dir)
            .join("dbus-1/services/org.freedesktop.portal.Desktop.service")
            .is_file()
    })
}

fn open_chosen_folder(mut dialog: ResMut<FolderDialog>, mut open: MessageWriter<OpenFolder>) {
    let Some(outcome) = dialog.asking.as_mut().and_then(|t| t.poll()) else {
        return;
    };
    dialog.asking = None;
    match outcome {
        Ok(DialogAnswer {
            chosen: Some(folder),
            ..
        }) => {
            open.write(OpenFolder(folder));
        }
        Ok(DialogAnswer {
            chosen: None,
            seconds,
        }) => {
            if no_dialog_shown(seconds, zenity_installed(), portal_installed()) {
                dialog.problem = Some(
                    "No folder dialog can be shown on this desktop (no file-chooser portal, \
                     xdg-desktop-portal, and no zenity). Type or paste the folder's path below, \
                     or drop the folder onto this window."
                        .into(),
                );
            }
        }
        Err(err) => dialog.problem = Some(format!("The folder dialog failed: {err}")),
    }
}

/// The path typed or pasted into a path field.
#[derive(Resource, Default)]
pub struct PathField {
    pub text: String,
    pub problem: Option<String>,
}

impl PathField {
    /// The source the typed path names, or why it names none.
    pub fn source(&self) -> Result<PathBuf, String> {
        let typed = self.text.trim().trim_matches(['"', '\'']);
        if typed.is_empty() {
            return Err("type or paste the path of a folder first".into());
        }
        let path = match typed.strip_prefix("~/") {
            Some(rest) => dirs::home_dir().map_or_else(|| PathBuf::from(typed), |h| h.join(rest)),
            None => PathBuf::from(typed),
        };
        if !path.exists() {
            return Err(format!("{} does not exist", path.display()));
        }
        Ok(source_of(&path))
    }
}

/// A text field for a folder (or .parquet) path and its Open button.
pub fn path_field(ui: &mut egui::Ui, field: &mut PathField, open: &mut MessageWriter<OpenFolder>) {
    ui.horizontal(|ui| {
        let edit = ui.add(
            egui::TextEdit::singleline(&mut field.text)
                .hint_text("/path/to/images or embeddings.parquet")
                .desired_width(ui.available_width() - 60.0),
        );
        let enter = edit.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
        if ui.button("Open").clicked() || enter {
            match field.source() {
                Ok(source) => {
                    field.problem = None;
                    open.write(OpenFolder(source));
                }
                Err(problem) => field.problem = Some(problem),
            }
        }
    });
    if let Some(problem) = &field.problem {
        ui.colored_label(egui::Color32::from_rgb(255, 150, 90), problem);
    }
}

fn open_dropped_folders(
    mut drops: MessageReader<FileDragAndDrop>,
    mut open: MessageWriter<OpenFolder>,
) {
    // Dropping many files at once means their folder, once.
    let dropped = drops.read().filter_map(|d| match d {
        FileDragAndDrop::DroppedFile { path_buf, .. } => Some(source_of(path_buf)),
        _ => None,
    });
    if let Some(folder) = dropped.last() {
        open.write(OpenFolder(folder));
    }
}

fn welcome_screen(
    mut contexts: EguiContexts,
    dataset: Res<Dataset>,
    (mut dialog, mut field): (ResMut<FolderDialog>, ResMut<PathField>),
    mut open: MessageWriter<OpenFolder>,
    mut recent: Local<Option<Vec<PathBuf>>>,
) -> Result {
    if dataset.folder.is_some() {
        *recent = None;
        return Ok(());
    }
    let recent = recent.get_or_insert_with(recent_folders);
    let ctx = contexts.ctx_mut()?;
    egui::Window::new("embedscope")
        .collapsible(false)
        .resizable(false)
        .anchor(egui::Align2::CENTER_CENTER, [0.0, 0.0])
        .show(ctx, |ui| {
            ui.heading("Turn a folder of images into a 3D map");
            ui.label("Every image is embedded, laid out in 3D, grouped into clusters and checked for near-duplicates, odd ones out and label errors. Your folder is only read, never changed.");
            ui.add_space(8.0);
            let button = ui.add_enabled(!dialog.is_open(), egui::Button::new("Open folder…"));
            if button.clicked() {
                dialog.ask();
            }
            if let Some(problem) = &dialog.problem {
                ui.colored_label(egui::Color32::from_rgb(255, 150, 90), problem);
            }
            ui.label("…or type or paste its path:");
            path_field(ui, &mut field, &mut open);
            ui.label("…or drop a folder (or any file in it) onto this window.");
            ui.add_space(8.0);
            ui.separator();
            ui.label("Recent folders (double-click to open):");
            if recent.is_empty() {
                ui.weak("none yet");
            }
            for folder in recent.iter() {
                let exists = folder.exists();
                let label = ui.add_enabled(
                    exists,
                    egui::Button::selectable(false, folder.display().to_string()),
                );
                if label.double_clicked() {
                    open.write(OpenFolder(folder.clone()));
                }
            }
        });
    Ok(())
}

fn recent_file() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("EMBEDSCOPE_CACHE_DIR") {
        return Some(PathBuf::from(dir).join("recent-folders.txt"));
    }
    Some(
        dirs::config_dir()?
            .join("embedscope")
            .join("recent-folders.txt"),
    )
}

/// The folders opened last, most recent first.
pub fn recent_folders() -> Vec<PathBuf> {
    recent_file()
        .and_then(|f| std::fs::read_to_string(f).ok())
        .map(|text| parse_recent(&text))
        .unwrap_or_default()
}

fn parse_recent(text: &str) -> Vec<PathBuf> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(PathBuf::from)
        .collect()
}

/// `folder` first, then the others, without repeats, at most [`RECENT_LIMIT`].
fn updated_recent(previous: Vec<PathBuf>, folder: &Path) -> Vec<PathBuf> {
    let mut list = vec![folder.to_path_buf()];
    list.extend(previous.into_iter().filter(|p| p != folder));
    list.truncate(RECENT_LIMIT);
    list
}

/// Puts `folder` at the top of the recent list. Failing to save the list is
/// not worth bothering the user about.
pub fn remember_recent(folder: &Path) {
    let folder = std::path::absolute(folder).unwrap_or_else(|_| folder.to_path_buf());
    let Some(file) = recent_file() else {
        return;
    };
    let list = updated_recent(recent_folders(), &folder);
    let text: String = list.iter().map(|p| format!("{}\n", p.display())).collect();
    if let Some(dir) = file.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let _ = crate::output::write_atomically(&file, |w| {
        w.write_all(text.as_bytes())?;
        Ok(())
    });
}

/// `$XDG_DATA_HOME`, else `~/.local/share`.
pub fn default_data_home() -> anyhow::Result<PathBuf> {
    dirs::data_dir().ok_or_else(|| {
        anyhow::anyhow!("no data folder is known for this user: pass --data-home DIR")
    })
}

/// The freedesktop entry: folders open with `exe FOLDER`.
pub fn desktop_entry(exe: &Path) -> String {
    format!(
        "[Desktop Entry]\n\
         Type=Application\n\
         Name=embedscope\n\
         GenericName=Image map\n\
         Comment=Turn a folder of images into a 3D map: clusters and near-duplicates\n\
         Exec=\"{}\" %f\n\
         Icon=embedscope\n\
         Terminal=false\n\
         MimeType=inode/directory;\n\
         Categories=Graphics;Viewer;\n",
        exe.display()
    )
}

/// Writes `applications/embedscope.desktop` and the icon under `data_home`;
/// returns the files written.
pub fn install_desktop_entry(data_home: &Path, exe: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let entry = data_home.join("applications").join("embedscope.desktop");
    let icon = data_home.join("icons/hicolor/256x256/apps/embedscope.png");
    for (path, bytes) in [
        (&entry, desktop_entry(exe).into_bytes()),
        (&icon, include_bytes!("../../assets/icon.png").to_vec()),
    ] {
        let dir = path.parent().expect("a file inside data_home");
        std::fs::create_dir_all(dir).map_err(|e| {
            anyhow::anyhow!(
                "cannot create {}: {e}; pass a writable --data-home",
                dir.display()
            )
        })?;
        crate::output::write_atomically(path, |w| {
            w.write_all(&bytes)?;
            Ok(())
        })?;
    }
    // Refresh the desktop's caches where the tools exist; without them the
    // entry is still picked up at next login.
    let _ = std::process::Command::new("update-desktop-database")
        .arg(data_home.join("applications"))
        .output();
    Ok(vec![entry, icon])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_recent_list_puts_the_newest_first_without_repeats() {
        let previous = parse_recent("/a\n/b\n\n/c\n");
        let list = updated_recent(previous, Path::new("/b"));
        assert_eq!(list, vec![PathBuf::from("/b"), "/a".into(), "/c".into()]);
        let many: Vec<PathBuf> = (0..30).map(|i| PathBuf::from(format!("/{i}"))).collect();
        assert_eq!(updated_recent(many, Path::new("/new")).len(), RECENT_LIMIT);
    }

    #[test]
    fn a_dialog_that_came_back_at_once_without_portal_or_zenity_was_never_shown() {
        assert!(no_dialog_shown(0.01, false, false));
        assert!(
            !no_dialog_shown(0.01, true, false),
            "zenity would have shown one"
        );
        assert!(!no_dialog_shown(0.01, false, true), "the portal would have");
        assert!(
            !no_dialog_shown(2.0, false, false),
            "the user took time: a cancel"
        );
    }

    #[test]
    fn the_path_field_opens_folders_files_and_refuses_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("a.png");
        std::fs::write(&image, b"x").unwrap();
        let field = |text: &str| PathField {
            text: text.into(),
            problem: None,
        };
        assert_eq!(
            field(&format!("  '{}' ", dir.path().display()))
                .source()
                .unwrap(),
            dir.path()
        );
        assert_eq!(field(image.to_str().unwrap()).source().unwrap(), dir.path());
        assert!(field("").source().is_err());
        let missing = field(dir.path().join("nope").to_str().unwrap()).source();
        assert!(missing.unwrap_err().contains("does not exist"));
    }

    #[test]
    fn the_desktop_entry_opens_folders_with_embedscope() {
        let dir = tempfile::tempdir().unwrap();
        let exe = Path::new("/opt/embed scope/embedscope");
        let written = install_desktop_entry(dir.path(), exe).unwrap();
        let entry = std::fs::read_to_string(&written[0]).unwrap();
        assert!(entry.contains("MimeType=inode/directory;"));
        assert!(entry.contains("Exec=\"/opt/embed scope/embedscope\" %f"));
        assert!(entry.contains("Icon=embedscope"));
        let icon = std::fs::read(&written[1]).unwrap();
        assert_eq!(&icon[1..4], b"PNG");
    }
}
