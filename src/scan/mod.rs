//! Stage 1: find the image files under a folder.
//!
//! The walk is deterministic (entries sorted by name, depth first), skips hidden
//! files and folders, follows symbolic links but never into a loop, and turns every
//! problem (dangling link, permission denied, non-image file) into a listed
//! [`Skipped`] entry or a warning instead of an error. It only reads the folder.

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::Serialize;

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
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Skipped {
    pub path: String,
    pub reason: String,
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
    let mut walker = Walker {
        result: ScanResult::default(),
        visited_dirs: HashSet::new(),
        progress,
        cancel,
    };
    let root_id = dir_identity(root, &meta);
    walker.visited_dirs.insert(root_id);
    walker.walk(root, "")?;
    Ok(walker.result)
}

struct Walker<'a> {
    result: ScanResult,
    /// Folders already entered, by (device, inode), so link loops end.
    visited_dirs: HashSet<(u64, u64)>,
    progress: &'a dyn ProgressSink,
    cancel: &'a CancelToken,
}

impl Walker<'_> {
    fn walk(&mut self, dir: &Path, prefix: &str) -> anyhow::Result<()> {
        self.cancel.check()?;
        let entries = match fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(err) => {
                let shown = if prefix.is_empty() { "." } else { prefix };
                self.result.warnings.push(format!(
                    "cannot read folder {shown}: {err} (its images are left out)"
                ));
                self.result.skipped.push(Skipped {
                    path: format!("{shown}/"),
                    reason: format!("folder not readable: {err}"),
                });
                return Ok(());
            }
        };
        let mut names: Vec<_> = entries
            .filter_map(|entry| match entry {
                Ok(entry) => Some(entry.file_name()),
                Err(err) => {
                    self.result
                        .warnings
                        .push(format!("error while listing {}: {err}", dir.display()));
                    None
                }
            })
            .collect();
        // Byte order of the names: stable across runs and platforms.
        names.sort_by(|a, b| a.as_encoded_bytes().cmp(b.as_encoded_bytes()));

        for name in names {
            let path = dir.join(&name);
            let name_str = match name.to_str() {
                Some(s) => s.to_owned(),
                None => {
                    let lossy = name.to_string_lossy().into_owned();
                    self.result.warnings.push(format!(
                        "file name is not valid UTF-8, shown as {lossy:?} in the outputs"
                    ));
                    lossy
                }
            };
            let relative = if prefix.is_empty() {
                name_str.clone()
            } else {
                format!("{prefix}/{name_str}")
            };
            if name_str.starts_with('.') {
                self.result.hidden += 1;
                continue;
            }
            let link_meta = match fs::symlink_metadata(&path) {
                Ok(m) => m,
                Err(err) => {
                    self.skip(&relative, format!("cannot read file information: {err}"));
                    continue;
                }
            };
            // Follow links: the target's metadata decides what this entry is.
            let meta = if link_meta.file_type().is_symlink() {
                match fs::metadata(&path) {
                    Ok(m) => m,
                    Err(err) => {
                        let reason = if err.kind() == std::io::ErrorKind::NotFound {
                            "symbolic link points to nothing (dangling link)".to_owned()
                        } else {
                            format!("symbolic link cannot be followed: {err}")
                        };
                        self.result.warnings.push(format!("{relative}: {reason}"));
                        self.skip(&relative, reason);
                        continue;
                    }
                }
            } else {
                link_meta
            };

            if meta.is_dir() {
                let id = dir_identity(&path, &meta);
                if !self.visited_dirs.insert(id) {
                    self.result.warnings.push(format!(
                        "{relative}/: folder already visited (symbolic link loop or second link to it), not entered again"
                    ));
                    continue;
                }
                self.walk(&path, &relative)?;
            } else if meta.is_file() {
                if is_image_extension(&path) {
                    self.result.files.push(ScannedFile {
                        path,
                        relative,
                        size: meta.len(),
                    });
                    let found = self.result.files.len() as u64;
                    if found.is_multiple_of(256) {
                        self.progress.event(ProgressEvent::Advanced {
                            stage: Stage::Scan,
                            done: found,
                        });
                    }
                } else {
                    self.skip(&relative, "not an image file extension".to_owned());
                }
            } else {
                self.skip(
                    &relative,
                    "not a regular file (device, socket or pipe)".to_owned(),
                );
            }
        }
        Ok(())
    }

    fn skip(&mut self, relative: &str, reason: String) {
        self.result.skipped.push(Skipped {
            path: relative.to_owned(),
            reason,
        });
    }
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
                .any(|s| s.path == "dangling.png" && s.reason.contains("dangling"))
        );
        assert!(result.warnings.iter().any(|w| w.contains("sub/loop")));
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
