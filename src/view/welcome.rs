//! Opening a dataset without the command line: the welcome screen ("Open
//! folder…" through the native dialog, recent folders), drag-and-drop of a
//! folder or file onto the window, and the freedesktop entry written by
//! `embedscope install-desktop` so a folder opens from the file manager.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bevy::prelude::*;
use bevy::window::FileDragAndDrop;
use bevy_egui::{EguiContexts, EguiPrimaryContextPass, egui};

use super::loading::{Dataset, OpenFolder, folder_of};

/// Recent folders kept in the list.
const RECENT_LIMIT: usize = 12;

pub struct WelcomePlugin;

impl Plugin for WelcomePlugin {
    fn build(&self, app: &mut App) {
        app.init_resource::<FolderDialog>()
            .add_systems(Update, (open_dropped_folders, open_chosen_folder))
            .add_systems(EguiPrimaryContextPass, welcome_screen);
    }
}

/// The native folder dialog runs on its own thread (it blocks until the user
/// answers); its answer is picked up by a system.
#[derive(Resource, Default, Clone)]
pub struct FolderDialog(Arc<Mutex<DialogState>>);

#[derive(Default)]
struct DialogState {
    open: bool,
    chosen: Option<PathBuf>,
}

impl FolderDialog {
    pub fn ask(&self) {
        {
            let mut state = self.0.lock().unwrap();
            if state.open {
                return;
            }
            state.open = true;
        }
        let shared = self.0.clone();
        std::thread::spawn(move || {
            let chosen = rfd::FileDialog::new()
                .set_title("Open an image folder")
                .pick_folder();
            let mut state = shared.lock().unwrap();
            state.open = false;
            state.chosen = chosen;
        });
    }

    pub fn is_open(&self) -> bool {
        self.0.lock().unwrap().open
    }
}

fn open_chosen_folder(dialog: Res<FolderDialog>, mut open: MessageWriter<OpenFolder>) {
    if let Some(folder) = dialog.0.lock().unwrap().chosen.take() {
        open.write(OpenFolder(folder));
    }
}

fn open_dropped_folders(
    mut drops: MessageReader<FileDragAndDrop>,
    mut open: MessageWriter<OpenFolder>,
) {
    // Dropping many files at once means their folder, once.
    let dropped = drops.read().filter_map(|d| match d {
        FileDragAndDrop::DroppedFile { path_buf, .. } => Some(folder_of(path_buf)),
        _ => None,
    });
    if let Some(folder) = dropped.last() {
        open.write(OpenFolder(folder));
    }
}

fn welcome_screen(
    mut contexts: EguiContexts,
    dataset: Res<Dataset>,
    dialog: Res<FolderDialog>,
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
            ui.label("Every image is embedded, laid out in 3D, grouped into clusters and checked for near-duplicates. Your folder is only read, never changed.");
            ui.add_space(8.0);
            let button = ui.add_enabled(!dialog.is_open(), egui::Button::new("Open folder…"));
            if button.clicked() {
                dialog.ask();
            }
            ui.label("…or drop a folder (or any file in it) onto this window.");
            ui.add_space(8.0);
            ui.separator();
            ui.label("Recent folders (double-click to open):");
            if recent.is_empty() {
                ui.weak("none yet");
            }
            for folder in recent.iter() {
                let exists = folder.is_dir();
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
