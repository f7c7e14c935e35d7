//! The label each image was given, for the label analyses: the class folder
//! (`FOLDER/<label>/...`, as ImageFolder and MNIST lay datasets out), or a
//! `path,label` CSV that overrides it.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Serialize;

/// Where the labels come from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum LabelSource {
    /// The top-level folder of each image, when the images sit in class
    /// folders; none otherwise.
    #[default]
    Folders,
    /// A CSV with `path` and `label` columns (paths relative to the dataset).
    Csv(PathBuf),
    /// A column of a Parquet source.
    Column(String),
    /// No labels: the label analyses are skipped.
    Off,
}

/// Per image: the index of its label in `names`, or none.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Labels {
    /// Distinct labels, sorted.
    pub names: Vec<String>,
    pub of_image: Vec<Option<u32>>,
    /// Where they came from, for people ("class folders", "labels.csv").
    pub origin: String,
}

impl Labels {
    pub fn name(&self, image: usize) -> Option<&str> {
        self.of_image
            .get(image)
            .copied()
            .flatten()
            .map(|l| self.names[l as usize].as_str())
    }

    /// Images that have a label.
    pub fn labelled(&self) -> usize {
        self.of_image.iter().filter(|l| l.is_some()).count()
    }

    fn from_names(names_of_images: Vec<Option<String>>, origin: String) -> Self {
        let mut names: Vec<String> = names_of_images.iter().flatten().cloned().collect();
        names.sort();
        names.dedup();
        let index: HashMap<&str, u32> = names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.as_str(), i as u32))
            .collect();
        let of_image = names_of_images
            .iter()
            .map(|n| n.as_deref().map(|n| index[n]))
            .collect();
        Self {
            names,
            of_image,
            origin,
        }
    }
}

/// What [`resolve`] found: the labels, or why there are none (said to the
/// user), and warnings (CSV rows that match no image, ...).
#[derive(Clone, Debug, Default)]
pub struct ResolvedLabels {
    pub labels: Option<Labels>,
    pub note: Option<String>,
    pub warnings: Vec<String>,
}

/// The labels of the images at `relative` paths (`/`-separated, relative to
/// the dataset).
pub fn resolve(source: &LabelSource, relative: &[&str]) -> anyhow::Result<ResolvedLabels> {
    match source {
        LabelSource::Off => Ok(ResolvedLabels {
            note: Some("labels turned off: the label analyses were skipped".into()),
            ..Default::default()
        }),
        LabelSource::Folders => Ok(from_folders(relative)),
        LabelSource::Csv(path) => from_csv(path, relative),
        LabelSource::Column(name) => anyhow::bail!(
            "--label-column {name}: an image folder has no columns; use --labels FILE.csv"
        ),
    }
}

/// Column names taken as labels by default in a table source.
pub const LABEL_COLUMN_NAMES: &[&str] = &["label", "labels", "class", "category", "target"];

/// The labels of rows read from a table (Parquet, clip-retrieval): a
/// `--labels` CSV keyed by the rows' ids, a named column, or by default the
/// first column called label, class, category or target.
pub fn resolve_for_table(
    source: &LabelSource,
    ids: &[String],
    columns: &[crate::source::MetadataColumn],
) -> anyhow::Result<ResolvedLabels> {
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    let column = match source {
        LabelSource::Off | LabelSource::Csv(_) => return resolve(source, &ids),
        LabelSource::Column(name) => {
            Some(columns.iter().find(|c| &c.name == name).with_context(|| {
                let names: Vec<&str> = columns.iter().map(|c| c.name.as_str()).collect();
                format!(
                    "--label-column {name}: the source has no such column (its columns: {})",
                    names.join(", ")
                )
            })?)
        }
        LabelSource::Folders => LABEL_COLUMN_NAMES
            .iter()
            .find_map(|wanted| columns.iter().find(|c| c.name.eq_ignore_ascii_case(wanted))),
    };
    let Some(column) = column else {
        return Ok(ResolvedLabels {
            labels: None,
            note: Some(
                "no label column (label, class, category, target), --label-column or --labels \
                 file: the label analyses were skipped"
                    .into(),
            ),
            warnings: Vec::new(),
        });
    };
    use crate::source::MetadataValues;
    let names: Vec<Option<String>> = match &column.values {
        MetadataValues::Text(v) => v.clone(),
        MetadataValues::Int(v) => v.iter().map(|x| x.map(|x| x.to_string())).collect(),
        MetadataValues::Bool(v) => v.iter().map(|x| x.map(|x| x.to_string())).collect(),
        MetadataValues::Float(v) => v
            .iter()
            .map(|x| x.filter(|x| x.fract() == 0.0).map(|x| format!("{x:.0}")))
            .collect(),
    };
    let labels = Labels::from_names(names, format!("column {}", column.name));
    if labels.names.len() < 2 {
        return Ok(ResolvedLabels {
            labels: None,
            note: Some(format!(
                "column {} holds fewer than two labels: the label analyses were skipped",
                column.name
            )),
            warnings: Vec::new(),
        });
    }
    let unlabelled = ids.len() - labels.labelled();
    Ok(ResolvedLabels {
        note: (unlabelled > 0)
            .then(|| format!("{unlabelled} rows have no value in column {}", column.name)),
        labels: Some(labels),
        warnings: Vec::new(),
    })
}

/// The top-level folder of each image is its label when the images sit in at
/// least two class folders; images at the top level then have none.
fn from_folders(relative: &[&str]) -> ResolvedLabels {
    let names: Vec<Option<String>> = relative
        .iter()
        .map(|r| r.split_once('/').map(|(first, _)| first.to_owned()))
        .collect();
    let labels = Labels::from_names(names, "class folders".into());
    if labels.names.len() < 2 {
        return ResolvedLabels {
            labels: None,
            note: Some(
                "no class folders (FOLDER/<label>/...) and no --labels file: the label \
                 analyses were skipped"
                    .into(),
            ),
            warnings: Vec::new(),
        };
    }
    let unlabelled = relative.len() - labels.labelled();
    let note = (unlabelled > 0).then(|| {
        format!("{unlabelled} images at the top level have no class folder, hence no label")
    });
    ResolvedLabels {
        labels: Some(labels),
        note,
        warnings: Vec::new(),
    }
}

/// A CSV with a header naming `path` (or `filepath`, `file`, `image`) and
/// `label` (or `class`) columns.
fn from_csv(path: &Path, relative: &[&str]) -> anyhow::Result<ResolvedLabels> {
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .trim(csv::Trim::All)
        .from_path(path)
        .with_context(|| format!("cannot read the labels file {}", path.display()))?;
    let headers = reader
        .headers()
        .with_context(|| format!("{} has no header row", path.display()))?
        .clone();
    let find = |names: &[&str]| {
        headers
            .iter()
            .position(|h| names.iter().any(|n| h.eq_ignore_ascii_case(n)))
    };
    let path_column = find(&[
        "path",
        "filepath",
        "file",
        "image",
        "image_path",
        "file_name",
    ])
    .with_context(|| {
        format!(
            "{} has no `path` column: the labels file needs a header `path,label`",
            path.display()
        )
    })?;
    let label_column = find(&["label", "class", "category"]).with_context(|| {
        format!(
            "{} has no `label` column: the labels file needs a header `path,label`",
            path.display()
        )
    })?;
    let mut given: BTreeMap<String, String> = BTreeMap::new();
    let mut warnings = Vec::new();
    for (row, record) in reader.records().enumerate() {
        let record = record
            .with_context(|| format!("{}: row {} is not valid CSV", path.display(), row + 2))?;
        let (Some(p), Some(l)) = (record.get(path_column), record.get(label_column)) else {
            warnings.push(format!(
                "{}: row {} has too few columns, ignored",
                path.display(),
                row + 2
            ));
            continue;
        };
        if p.is_empty() || l.is_empty() {
            continue;
        }
        given.insert(normalise_path(p), l.to_owned());
    }
    let names: Vec<Option<String>> = relative.iter().map(|r| given.get(*r).cloned()).collect();
    let matched = names.iter().filter(|n| n.is_some()).count();
    let unmatched = given.len().saturating_sub(matched);
    if unmatched > 0 {
        warnings.push(format!(
            "{unmatched} rows of {} name no image of the dataset (paths are relative to the dataset folder)",
            path.display()
        ));
    }
    let origin = path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let labels = Labels::from_names(names, origin);
    if labels.names.len() < 2 {
        return Ok(ResolvedLabels {
            labels: None,
            note: Some(format!(
                "{} gives fewer than two labels to the images: the label analyses were skipped",
                path.display()
            )),
            warnings,
        });
    }
    Ok(ResolvedLabels {
        note: (matched < relative.len()).then(|| {
            format!(
                "{} images have no row in {}",
                relative.len() - matched,
                path.display()
            )
        }),
        labels: Some(labels),
        warnings,
    })
}

/// `./a\b.png` → `a/b.png`: the form the scan gives relative paths.
fn normalise_path(p: &str) -> String {
    let p = p.replace('\\', "/");
    p.trim_start_matches("./").to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_folders_are_labels_and_top_level_images_have_none() {
        let paths = ["3/a.png", "7/b.png", "3/sub/c.png", "loose.png"];
        let r = from_folders(&paths);
        let labels = r.labels.unwrap();
        assert_eq!(labels.names, ["3", "7"]);
        assert_eq!(labels.of_image, vec![Some(0), Some(1), Some(0), None]);
        assert!(r.note.unwrap().contains("1 images at the top level"));
    }

    #[test]
    fn a_flat_folder_has_no_labels_and_says_so() {
        let r = from_folders(&["a.png", "b.png"]);
        assert!(r.labels.is_none());
        assert!(r.note.unwrap().contains("skipped"));
        let one_class = from_folders(&["cats/a.png", "cats/b.png"]);
        assert!(one_class.labels.is_none());
    }

    #[test]
    fn a_csv_overrides_and_reports_unknown_rows() {
        let dir = tempfile::tempdir().unwrap();
        let csv = dir.path().join("labels.csv");
        std::fs::write(
            &csv,
            "path,label\n./3/a.png,8\n7/b.png,7\n\"x, y.png\",3\nmissing.png,1\n",
        )
        .unwrap();
        let paths = ["3/a.png", "7/b.png", "x, y.png", "unlisted.png"];
        let r = resolve(&LabelSource::Csv(csv.clone()), &paths).unwrap();
        let labels = r.labels.unwrap();
        assert_eq!(labels.name(0), Some("8"));
        assert_eq!(labels.name(1), Some("7"));
        assert_eq!(labels.name(2), Some("3"));
        assert_eq!(labels.name(3), None);
        assert!(
            r.warnings.iter().any(|w| w.contains("1 rows")),
            "{:?}",
            r.warnings
        );
        std::fs::write(&csv, "file,category\n").unwrap();
        let err = resolve(&LabelSource::Csv(csv.clone()), &paths);
        assert!(err.unwrap().labels.is_none());
        std::fs::write(&csv, "name,kind\na,b\n").unwrap();
        let err = resolve(&LabelSource::Csv(csv), &paths).unwrap_err();
        assert!(format!("{err:#}").contains("path,label"), "{err:#}");
    }
}
