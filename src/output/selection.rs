//! Selections and tags made in the viewer, as files.
//!
//! - A selection exports as CSV (the columns of `points.csv`, one row per
//!   selected image), as JSON (the same fields, typed), or as a plain list of
//!   relative paths, one per line.
//! - Tags name sets of images. They live in `tags.json` in the results folder
//!   (the one `analyze` writes to, never the dataset), keyed by relative path,
//!   so they survive a re-run and come back when the folder is reopened.
//! - Tags export as `path,tag` CSV, and one tag as a `path,label` CSV that
//!   relabels its images: the file `--labels FILE.csv` reads.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{POINT_COLUMNS, check_output_dir, issues_of, point_row, write_atomically};
use crate::pipeline::Analysis;

/// The tags file in a results folder.
pub const TAGS_FILE: &str = "tags.json";
/// The version of `tags.json` this build writes; a newer one is refused
/// rather than overwritten with less.
const TAGS_VERSION: u32 = 1;

/// How a selection is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SelectionExport {
    /// The columns of `points.csv`, one row per image.
    Csv,
    /// `{ folder, count, images: [{ path, x, y, z, cluster, ... }] }`.
    Json,
    /// Relative paths, one per line.
    Paths,
}

impl SelectionExport {
    pub const ALL: [SelectionExport; 3] = [
        SelectionExport::Csv,
        SelectionExport::Json,
        SelectionExport::Paths,
    ];

    /// The file name used when the user does not choose one.
    pub fn file_name(self) -> &'static str {
        match self {
            SelectionExport::Csv => "selection.csv",
            SelectionExport::Json => "selection.json",
            SelectionExport::Paths => "selection-paths.txt",
        }
    }
}

/// Writes the images `indices` of `analysis` as `kind`.
pub fn write_selection(
    kind: SelectionExport,
    analysis: &Analysis,
    indices: &[usize],
    w: &mut dyn Write,
) -> anyhow::Result<()> {
    let n = analysis.folder.images.len();
    if let Some(&bad) = indices.iter().find(|&&i| i >= n) {
        anyhow::bail!("image {bad} is not in this map of {n} images");
    }
    match kind {
        SelectionExport::Csv => {
            let mut csv = csv::Writer::from_writer(w);
            csv.write_record(POINT_COLUMNS)?;
            for &i in indices {
                csv.write_record(point_row(analysis, i))?;
            }
            csv.flush()?;
        }
        SelectionExport::Json => {
            let images: Vec<_> = indices.iter().map(|&i| image_json(analysis, i)).collect();
            let value = json!({
                "folder": analysis.folder.root,
                "count": indices.len(),
                "images": images,
            });
            serde_json::to_writer_pretty(&mut *w, &value)?;
            writeln!(w)?;
        }
        SelectionExport::Paths => {
            for &i in indices {
                writeln!(w, "{}", analysis.folder.images[i].relative)?;
            }
        }
    }
    Ok(())
}

/// One image's row of `points.csv`, with numbers as numbers and `null` where
/// a column does not apply.
fn image_json(analysis: &Analysis, i: usize) -> serde_json::Value {
    let c = &analysis.curation;
    let labels = c.labels.as_ref();
    let issue = c.label_issues.as_ref();
    let [x, y, z] = analysis.layout.points[i];
    json!({
        "path": analysis.folder.images[i].relative,
        "x": x,
        "y": y,
        "z": z,
        "cluster": analysis.clusters.labels[i],
        "duplicate_group": analysis.duplicate_labels[i],
        "label": labels.and_then(|l| l.name(i)),
        "suggested_label": issue
            .and_then(|s| s.suggested[i])
            .and_then(|s| labels.and_then(|l| l.names.get(s as usize))),
        "label_issue_score": issue.and_then(|s| s.score[i]),
        "outlier_score": c.outliers.get(i),
        "issues": issues_of(analysis, i),
    })
}

/// Writes a selection export to `path`, refusing a path inside the dataset.
pub fn export_selection(
    kind: SelectionExport,
    path: &Path,
    analysis: &Analysis,
    indices: &[usize],
) -> anyhow::Result<()> {
    prepare_folder_for(path, &analysis.folder.root)?;
    write_atomically(path, |w| write_selection(kind, analysis, indices, w))
}

/// Checks that `path` is outside the dataset `root` and creates its folder.
fn prepare_folder_for(path: &Path, root: &Path) -> anyhow::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    check_output_dir(dir, root)?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))
}

/// Tags by relative path: which named sets each image is in.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tags {
    pub by_path: BTreeMap<String, BTreeSet<String>>,
}

/// `tags.json` as written.
#[derive(Serialize, Deserialize)]
struct TagsFile {
    version: u32,
    /// Relative path → tag names.
    tags: BTreeMap<String, BTreeSet<String>>,
}

impl Tags {
    pub fn is_empty(&self) -> bool {
        self.by_path.is_empty()
    }

    /// Every tag name with how many images carry it, by name.
    pub fn names(&self) -> Vec<(String, usize)> {
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for tags in self.by_path.values() {
            for tag in tags {
                *counts.entry(tag).or_default() += 1;
            }
        }
        counts.into_iter().map(|(t, c)| (t.to_owned(), c)).collect()
    }

    /// Puts `tag` on `paths`; returns how many images carry it now.
    pub fn add<'a>(&mut self, tag: &str, paths: impl IntoIterator<Item = &'a str>) -> usize {
        for path in paths {
            self.by_path
                .entry(path.to_owned())
                .or_default()
                .insert(tag.to_owned());
        }
        self.paths_with(tag).len()
    }

    /// Takes `tag` off `paths`.
    pub fn remove<'a>(&mut self, tag: &str, paths: impl IntoIterator<Item = &'a str>) {
        for path in paths {
            if let Some(tags) = self.by_path.get_mut(path) {
                tags.remove(tag);
                if tags.is_empty() {
                    self.by_path.remove(path);
                }
            }
        }
    }

    /// Deletes `tag` from every image.
    pub fn delete(&mut self, tag: &str) {
        self.by_path.retain(|_, tags| {
            tags.remove(tag);
            !tags.is_empty()
        });
    }

    /// The paths carrying `tag`, sorted.
    pub fn paths_with(&self, tag: &str) -> Vec<&str> {
        self.by_path
            .iter()
            .filter(|(_, tags)| tags.contains(tag))
            .map(|(path, _)| path.as_str())
            .collect()
    }
}

/// A tag name as typed: trimmed; empty names and names with a line break
/// are refused (they would not survive a CSV round trip readably).
pub fn clean_tag_name(name: &str) -> anyhow::Result<String> {
    let name = name.trim();
    anyhow::ensure!(!name.is_empty(), "type a name for the tag first");
    anyhow::ensure!(
        !name.contains(['\n', '\r']),
        "a tag name must fit on one line"
    );
    Ok(name.to_owned())
}

/// Where the tags of a dataset live, given its results folder.
pub fn tags_file(results: &Path) -> PathBuf {
    results.join(TAGS_FILE)
}

/// Reads `tags.json`; a missing file is no tags yet.
pub fn read_tags(path: &Path) -> anyhow::Result<Tags> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Tags::default()),
        Err(err) => return Err(err).with_context(|| format!("cannot read {}", path.display())),
    };
    let file: TagsFile = serde_json::from_str(&text).with_context(|| {
        format!(
            "{} is not a tags file embedscope can read; move it aside to start over",
            path.display()
        )
    })?;
    anyhow::ensure!(
        file.version <= TAGS_VERSION,
        "{} was written by a newer embedscope (version {}); update embedscope to read it",
        path.display(),
        file.version
    );
    Ok(Tags { by_path: file.tags })
}

/// Writes `tags` to `path` (atomically), refusing a path inside the dataset
/// `root`.
pub fn write_tags(path: &Path, tags: &Tags, root: &Path) -> anyhow::Result<()> {
    prepare_folder_for(path, root)?;
    write_atomically(path, |w| {
        let file = TagsFile {
            version: TAGS_VERSION,
            tags: tags.by_path.clone(),
        };
        serde_json::to_writer_pretty(&mut *w, &file)?;
        writeln!(w)?;
        Ok(())
    })
}

/// How tags are exported.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TagExport {
    /// Every tag: `path,tag`, one row per image and tag.
    Csv,
    /// A labels file for `--labels`: every labelled image with its label,
    /// except the images of `tag`, which get `label` ("these 40 are really
    /// 7s").
    Relabel { tag: String, label: String },
}

impl TagExport {
    /// The file name used when the user does not choose one.
    pub fn file_name(&self) -> String {
        match self {
            TagExport::Csv => "tags.csv".to_owned(),
            TagExport::Relabel { label, .. } => format!("labels-{}.csv", file_safe(label)),
        }
    }
}

/// `name` with anything but letters, digits, `-` and `_` replaced by `_`.
fn file_safe(name: &str) -> String {
    name.trim()
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Writes `kind`; a relabel takes the other images' labels from `analysis`.
pub fn write_tag_export(
    kind: &TagExport,
    tags: &Tags,
    analysis: &Analysis,
    w: &mut dyn Write,
) -> anyhow::Result<()> {
    let mut csv = csv::Writer::from_writer(w);
    match kind {
        TagExport::Csv => {
            csv.write_record(["path", "tag"])?;
            for (path, names) in &tags.by_path {
                for name in names {
                    csv.write_record([path, name])?;
                }
            }
        }
        TagExport::Relabel { tag, label } => {
            let label = label.trim();
            anyhow::ensure!(!label.is_empty(), "type the label to give first");
            let tagged: BTreeSet<&str> = tags.paths_with(tag).into_iter().collect();
            anyhow::ensure!(!tagged.is_empty(), "no image carries the tag {tag:?}");
            let given = analysis.curation.labels.as_ref();
            csv.write_record(["path", "label"])?;
            for (i, image) in analysis.folder.images.iter().enumerate() {
                let path = image.relative.as_str();
                let new = if tagged.contains(path) {
                    Some(label)
                } else {
                    given.and_then(|l| l.name(i))
                };
                if let Some(new) = new {
                    csv.write_record([path, new])?;
                }
            }
        }
    }
    csv.flush()?;
    Ok(())
}

/// Writes a tag export to `path`, refusing a path inside the dataset.
pub fn export_tags(
    kind: &TagExport,
    path: &Path,
    tags: &Tags,
    analysis: &Analysis,
) -> anyhow::Result<()> {
    prepare_folder_for(path, &analysis.folder.root)?;
    write_atomically(path, |w| write_tag_export(kind, tags, analysis, w))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::{AnalyzeOptions, CacheMode, analyze};
    use crate::progress::{CancelToken, NoProgress};
    use crate::reduce::ReducerKind;
    use crate::scan::labels::{LabelSource, resolve};

    /// A map of 30 bundled digits (3 classes × 10), laid out by PCA.
    fn small_analysis(data: &Path) -> Analysis {
        let assets = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets/mnist-2k");
        for digit in ["1", "4", "7"] {
            let mut names: Vec<_> = std::fs::read_dir(assets.join(digit))
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            names.sort();
            std::fs::create_dir_all(data.join(digit)).unwrap();
            for path in names.into_iter().take(10) {
                std::fs::copy(&path, data.join(digit).join(path.file_name().unwrap())).unwrap();
            }
        }
        let options = AnalyzeOptions {
            reducer: ReducerKind::Pca,
            cache: CacheMode::Off,
            reuse_analysis: false,
            ..AnalyzeOptions::default()
        };
        analyze(data, &options, &NoProgress, &CancelToken::new()).unwrap()
    }

    fn exported(kind: SelectionExport, analysis: &Analysis, indices: &[usize]) -> String {
        let mut out = Vec::new();
        write_selection(kind, analysis, indices, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn selection_exports_read_back_as_the_selected_images() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let a = small_analysis(&data);
        let picked = [2usize, 11, 25];
        let names: Vec<&str> = picked
            .iter()
            .map(|&i| a.folder.images[i].relative.as_str())
            .collect();

        let csv_text = exported(SelectionExport::Csv, &a, &picked);
        let mut reader = csv::Reader::from_reader(csv_text.as_bytes());
        assert_eq!(reader.headers().unwrap(), POINT_COLUMNS.as_slice());
        let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
        assert_eq!(rows.len(), picked.len());
        for (row, &i) in rows.iter().zip(&picked) {
            assert_eq!(row.iter().collect::<Vec<_>>(), point_row(&a, i).to_vec());
        }

        let json: serde_json::Value =
            serde_json::from_str(&exported(SelectionExport::Json, &a, &picked)).unwrap();
        assert_eq!(json["count"], 3);
        let paths: Vec<&str> = json["images"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["path"].as_str().unwrap())
            .collect();
        assert_eq!(paths, names);
        let first = &json["images"][0];
        assert_eq!(first["cluster"], a.clusters.labels[2]);
        assert_eq!(first["label"], a.folder.images[2].relative[..1]);
        assert!(first["outlier_score"].is_number());

        let list = exported(SelectionExport::Paths, &a, &picked);
        assert_eq!(list.lines().collect::<Vec<_>>(), names);

        let mut sink = Vec::new();
        assert!(write_selection(SelectionExport::Csv, &a, &[30], &mut sink).is_err());

        // Written through the same path the viewer uses: never into the dataset.
        let out = dir.path().join("results/selection.csv");
        export_selection(SelectionExport::Csv, &out, &a, &picked).unwrap();
        assert_eq!(std::fs::read_to_string(&out).unwrap(), csv_text);
        assert!(export_selection(SelectionExport::Csv, &data.join("s.csv"), &a, &picked).is_err());
    }

    #[test]
    fn tags_survive_a_write_and_read() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("data");
        std::fs::create_dir(&root).unwrap();
        let path = tags_file(&dir.path().join("results"));
        assert_eq!(read_tags(&path).unwrap(), Tags::default(), "none yet");

        let mut tags = Tags::default();
        assert_eq!(tags.add("really 7", ["1/a.png", "1/b.png"]), 2);
        assert_eq!(tags.add("blurry", ["1/b.png", "4/c.png"]), 2);
        assert_eq!(tags.add("really 7", ["1/a.png"]), 2, "no double count");
        write_tags(&path, &tags, &root).unwrap();
        let back = read_tags(&path).unwrap();
        assert_eq!(back, tags);
        assert_eq!(
            back.names(),
            vec![("blurry".to_owned(), 2), ("really 7".to_owned(), 2)]
        );
        assert_eq!(back.paths_with("really 7"), vec!["1/a.png", "1/b.png"]);

        tags.remove("blurry", ["1/b.png"]);
        tags.delete("really 7");
        assert_eq!(tags.names(), vec![("blurry".to_owned(), 1)]);
        assert_eq!(tags.by_path.len(), 1, "images without tags are dropped");

        assert!(write_tags(&root.join(TAGS_FILE), &tags, &root).is_err());
        std::fs::write(&path, r#"{"version": 9, "tags": {}}"#).unwrap();
        let err = read_tags(&path).unwrap_err();
        assert!(format!("{err:#}").contains("newer"), "{err:#}");
        std::fs::write(&path, "not json").unwrap();
        assert!(read_tags(&path).is_err());
        assert!(clean_tag_name("  ").is_err());
        assert_eq!(clean_tag_name(" sevens ").unwrap(), "sevens");
    }

    #[test]
    fn a_relabel_export_is_a_labels_file_that_moves_the_tagged_images() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let a = small_analysis(&data);
        let relative: Vec<&str> = a
            .folder
            .images
            .iter()
            .map(|r| r.relative.as_str())
            .collect();
        // Two "1"s and a "4" are really 7s.
        let moved = [relative[0], relative[1], relative[12]];
        let mut tags = Tags::default();
        tags.add("really 7", moved);
        tags.add("other", [relative[5]]);
        let kind = TagExport::Relabel {
            tag: "really 7".into(),
            label: " 7 ".into(),
        };
        assert_eq!(kind.file_name(), "labels-7.csv");
        let file = dir.path().join("out").join(kind.file_name());
        export_tags(&kind, &file, &tags, &a).unwrap();
        assert!(export_tags(&kind, &data.join("labels.csv"), &tags, &a).is_err());

        // What `--labels FILE.csv` reads: the tagged images moved, the rest kept.
        let labels = resolve(&LabelSource::Csv(file), &relative)
            .unwrap()
            .labels
            .unwrap();
        for (i, path) in relative.iter().enumerate() {
            let expected = if moved.contains(path) {
                "7"
            } else {
                &path[..1]
            };
            assert_eq!(labels.name(i), Some(expected), "{path}");
        }

        let mut out = Vec::new();
        write_tag_export(&TagExport::Csv, &tags, &a, &mut out).unwrap();
        let mut reader = csv::Reader::from_reader(out.as_slice());
        let rows: Vec<(String, String)> = reader
            .deserialize()
            .map(|r: Result<(String, String), _>| r.unwrap())
            .collect();
        assert_eq!(rows.len(), 4);
        assert!(rows.contains(&(relative[5].to_owned(), "other".to_owned())));
        assert!(rows.contains(&(relative[12].to_owned(), "really 7".to_owned())));

        let blank = TagExport::Relabel {
            tag: "other".into(),
            label: " ".into(),
        };
        assert!(write_tag_export(&blank, &tags, &a, &mut Vec::new()).is_err());
        let unknown = TagExport::Relabel {
            tag: "nobody".into(),
            label: "3".into(),
        };
        assert!(write_tag_export(&unknown, &tags, &a, &mut Vec::new()).is_err());
    }
}
