//! Stage 1: find the image files under a folder.
//!
//! The walk (`walkdir`) is deterministic (entries sorted by name, depth first),
//! skips hidden files and folders, follows symbolic links but never into a loop
//! nor twice into the same folder, and turns every problem (dangling link,
//! permission denied, non-image file) into a listed [`Skipped`] entry or a
//! warning instead of an error. It only reads the folder.

use std::cell::RefCell;
use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::Serialize;
use walkdir::{DirEntry, WalkDir};

pub mod labels;

use crate::decode::SkipReason;
use crate::progress::{CancelToken, ProgressEvent, ProgressSink, Stage};

/// Extensions (lower case) of the formats the decoder understands.
pub const IMAGE_EXTENSIONS: &[&str] = &[
    "jpg", "jpeg", "jpe", "jfif", "png", "apng", "gif", "webp", "bmp", "dib", "tif", "tiff",
];

/// An image file found by the scan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScannedFile {
    /// Where to read it (the folder joined with `relative`).
    pub path: PathBuf,
    /// Path relative to the scanned folder, `/`-separated, UTF-8.
    pub relative: String,
    /// Size in bytes as reported by the file system.
    pub size: u64,
}

/// A file that will not be in the map, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skipped {
    pub path: String,
    pub reason: SkipReason,
}

impl Serialize for Skipped {
    /// `{"path", "reason" (the sentence), "kind" (the short category)}`.
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut s = serializer.serialize_struct("Skipped", 3)?;
        s.serialize_field("path", &self.path)?;
        s.serialize_field("reason", &self.reason.to_string())?;
        s.serialize_field("kind", self.reason.kind())?;
        s.end()
    }
}

#[derive(Debug, Default)]
pub struct ScanResult {
    pub files: Vec<ScannedFile>,
    pub skipped: Vec<Skipped>,
    pub warnings: Vec<String>,
    /// Hidden files and folders passed over (names starting with `.`).
    pub hidden: usize,
}

pub fn is_image_extension(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .map(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
        .unwrap_or(false)
}

/// Walks `root` recursively and returns its image files in a stable order.
pub fn scan(
    root: &Path,
    progress: &dyn ProgressSink,
    cancel: &CancelToken,
) -> anyhow::Result<ScanResult> {
    let meta = fs::metadata(root).with_context(|| {
        format!(
            "cannot open {}: check that the folder exists",
            root.display()
        )
    })?;
    if !meta.is_dir() {
        bail!(
            "{} is a file, not a folder: pass the folder that holds your images",
            root.display()
        );
    }
    progress.event(ProgressEvent::Started {
        stage: Stage::Scan,
        total: None,
    });
    // What the entry filter learns; it runs inside the walk, hence the cell.
    let pruned = RefCell::new(Pruned::default());
    let walk = WalkDir::new(root)
        .follow_links(true)
        // Byte order of the names: stable across runs and platforms.
        .sort_by(|a, b| {
            a.file_name()
                .as_encoded_bytes()
                .cmp(b.file_name().as_encoded_bytes())
        })
        .into_iter()
        .filter_entry(|entry| pruned.borrow_mut().keep(entry, root));

    let mut result = ScanResult::default();
    for (seen, entry) in walk.enumerate() {
        if seen % 1024 == 0 {
            cancel.check()?;
        }
        match entry {
            Ok(entry) => {
                if entry.depth() == 0 || entry.file_type().is_dir() {
                    continue;
                }
                let relative = relative_path(root, entry.path(), &mut result.warnings);
                if !entry.file_type().is_file() {
                    result.skip(relative, SkipReason::NotRegularFile);
                } else if !is_image_extension(entry.path()) {
                    result.skip(relative, SkipReason::NotImageExtension);
                } else {
                    let size = match entry.metadata() {
                        Ok(m) => m.len(),
                        Err(err) => {
                            let reason = format!("cannot read file information: {err}");
                            result.skip(relative, SkipReason::Unreadable(reason));
                            continue;
                        }
                    };
                    result.files.push(ScannedFile {
                        path: entry.into_path(),
                        relative,
                        size,
                    });
                    if result.files.len().is_multiple_of(256) {
                        progress.event(ProgressEvent::Advanced {
                            stage: Stage::Scan,
                            done: result.files.len() as u64,
                        });
                    }
                }
            }
            Err(err) => result.walk_error(root, err),
        }
    }
    let pruned = pruned.into_inner();
    result.hidden = pruned.hidden;
    result.warnings.extend(pruned.warnings);
    Ok(result)
}

/// The entry filter's state: hidden entries passed over, and the folders
/// already entered by (device, inode), so a second link to a folder (not only
/// a loop, which `walkdir` detects itself) does not list its images twice.
#[derive(Default)]
struct Pruned {
    hidden: usize,
    visited_dirs: HashSet<(u64, u64)>,
    warnings: Vec<String>,
}

impl Pruned {
    fn keep(&mut self, entry: &DirEntry, root: &Path) -> bool {
        if entry.depth() == 0 {
            if let Ok(meta) = entry.metadata() {
                self.visited_dirs.insert(dir_identity(entry.path(), &meta));
            }
            return true;
        }
        if entry.file_name().as_encoded_bytes().starts_with(b".") {
            self.hidden += 1;
            return false;
        }
        if entry.file_type().is_dir()
            && let Ok(meta) = entry.metadata()
            && !self.visited_dirs.insert(dir_identity(entry.path(), &meta))
        {
            let relative = relative_path(root, entry.path(), &mut Vec::new());
            self.warnings.push(format!(
                "{relative}/: folder already visited (symbolic link loop or second link to it), not entered again"
            ));
            return false;
        }
        true
    }
}

impl ScanResult {
    fn skip(&mut self, relative: String, reason: SkipReason) {
        self.skipped.push(Skipped {
            path: relative,
            reason,
        });
    }

    /// An entry the walk could not follow: a dangling link, a folder it may
    /// not read, a loop.
    fn walk_error(&mut self, root: &Path, err: walkdir::Error) {
        let Some(path) = err.path().map(Path::to_path_buf) else {
            self.warnings
                .push(format!("error while listing {}: {err}", root.display()));
            return;
        };
        let relative = relative_path(root, &path, &mut self.warnings);
        let shown = if relative.is_empty() { "." } else { &relative };
        if err.loop_ancestor().is_some() {
            self.warnings.push(format!(
                "{shown}/: folder already visited (symbolic link loop or second link to it), not entered again"
            ));
            return;
        }
        let is_link = fs::symlink_metadata(&path)
            .map(|m| m.file_type().is_symlink())
            .unwrap_or(false);
        let io = err
            .io_error()
            .map(|e| e.to_string())
            .unwrap_or_else(|| err.to_string());
        if is_link {
            let reason = match fs::metadata(&path) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => SkipReason::DanglingLink,
                _ => SkipReason::LinkNotFollowed(io),
            };
            self.warnings.push(format!("{shown}: {reason}"));
            self.skip(relative, reason);
        } else if path.is_dir() {
            self.warnings.push(format!(
                "cannot read folder {shown}: {io} (its images are left out)"
            ));
            self.skip(format!("{shown}/"), SkipReason::FolderUnreadable(io));
        } else {
            self.skip(
                relative,
                SkipReason::Unreadable(format!("cannot read file information: {io}")),
            );
        }
    }
}

/// `path` relative to `root`, `/`-separated; a name that is not UTF-8 is
/// shown lossily, with a warning.
fn relative_path(root: &Path, path: &Path, warnings: &mut Vec<String>) -> String {
    let rest = path.strip_prefix(root).unwrap_or(path);
    let mut parts = Vec::new();
    for part in rest.components() {
        let os = part.as_os_str();
        match os.to_str() {
            Some(s) => parts.push(s.to_owned()),
            None => {
                let lossy = os.to_string_lossy().into_owned();
                warnings.push(format!(
                    "file name is not valid UTF-8, shown as {lossy:?} in the outputs"
                ));
                parts.push(lossy);
            }
        }
    }
    parts.join("/")
}

#[cfg(unix)]
fn dir_identity(_path: &Path, meta: &fs::Metadata) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    (meta.dev(), meta.ino())
}

#[cfg(not(unix))]
fn dir_identity(path: &Path, _meta: &fs::Metadata) -> (u64, u64) {
    use std::hash::{Hash, Hasher};
    let canonical = fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let mut h = std::collections::hash_map::DefaultHasher::new();
    canonical.hash(&mut h);
    (0, h.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::progress::NoProgress;

    fn touch(path: &Path) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, b"x").unwrap();
    }

    #[test]
    fn finds_images_in_order_and_skips_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        touch(&root.join("b/2.PNG"));
        touch(&root.join("b/1.jpg"));
        touch(&root.join("a.JpEg"));
        touch(&root.join("notes.txt"));
        touch(&root.join(".hidden.png"));
        touch(&root.join(".git/x.png"));
        let result = scan(root, &NoProgress, &CancelToken::new()).unwrap();
        let found: Vec<_> = result.files.iter().map(|f| f.relative.as_str()).collect();
        assert_eq!(found, ["a.JpEg", "b/1.jpg", "b/2.PNG"]);
        assert_eq!(result.hidden, 2);
        assert_eq!(result.skipped.len(), 1);
        assert_eq!(result.skipped[0].path, "notes.txt");
    }

    #[cfg(unix)]
    #[test]
    fn symlink_loops_and_dangling_links_do_not_hang_or_fail() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        touch(&root.join("sub/img.png"));
        std::os::unix::fs::symlink(root, root.join("sub/loop")).unwrap();
        std::os::unix::fs::symlink(root.join("missing.png"), root.join("dangling.png")).unwrap();
        std::os::unix::fs::symlink(root.join("sub/img.png"), root.join("alias.png")).unwrap();
        let result = scan(root, &NoProgress, &CancelToken::new()).unwrap();
        let found: Vec<_> = result.files.iter().map(|f| f.relative.as_str()).collect();
        assert_eq!(found, ["alias.png", "sub/img.png"]);
        assert!(
            result
                .skipped
                .iter()
                .any(|s| s.path == "dangling.png" && s.reason == SkipReason::DanglingLink)
        );
        assert!(result.warnings.iter().any(|w| w.contains("sub/loop")));
    }

    #[cfg(unix)]
    #[test]
    fn a_second_link_to_a_folder_is_not_walked_twice() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        touch(&root.join("real/img.png"));
        touch(&root.join("other/.hidden/x.png"));
        std::os::unix::fs::symlink(root.join("real"), root.join("other/again")).unwrap();
        let result = scan(root, &NoProgress, &CancelToken::new()).unwrap();
        let found: Vec<_> = result.files.iter().map(|f| f.relative.as_str()).collect();
        // "other" sorts first, so the folder is listed under its link once.
        assert_eq!(found, ["other/again/img.png"]);
        assert_eq!(result.hidden, 1);
        assert!(
            result.warnings.iter().any(|w| w.starts_with("real/")),
            "{:?}",
            result.warnings
        );
    }

    #[test]
    fn a_file_is_not_a_folder() {
        let dir = tempfile::tempdir().unwrap();
        touch(&dir.path().join("one.png"));
        let err = scan(
            &dir.path().join("one.png"),
            &NoProgress,
            &CancelToken::new(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("not a folder"), "{err}");
    }

    #[test]
    fn cancelling_stops_the_walk() {
        let dir = tempfile::tempdir().unwrap();
        touch(&dir.path().join("a.png"));
        let cancel = CancelToken::new();
        cancel.cancel();
        let err = scan(dir.path(), &NoProgress, &cancel).unwrap_err();
        assert!(crate::progress::is_cancelled(&err));
    }
}
