//! Stage 7: the files a run leaves behind, written atomically (temporary file,
//! then rename) into an output folder that is never inside the dataset.
//!
//! - `points.csv`: `path,x,y,z,cluster,duplicate_group,label,suggested_label,
//!   label_issue_score,outlier_score,issues`, then the source's metadata
//!   columns, one row per image.
//! - `points.parquet`: the same columns typed, the kNN as `neighbors`
//!   (`{ids, distances}`, as Embedding Atlas reads it) and, on request, the
//!   embeddings ([`parquet`]).
//! - `embeddings.npy`: float32 N×D, rows in the order of points.csv.
//! - `report.json`: counts, skipped files, duplicate groups, clusters,
//!   parameters and per-stage timings.
//! - `tags.json`: the tags named in the viewer, and the viewer's selection
//!   and tag exports ([`selection`]).

pub mod duplicates;
mod npy;
pub mod parquet;
mod report;
pub mod selection;

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

pub use npy::{read_npy_f32, write_npy_f32};
pub use report::build_report;

use crate::pipeline::Analysis;

/// The default output folder for `folder`: under the user's cache folder, named
/// after the folder plus a short hash of its absolute path.
pub fn default_output_dir(folder: &Path) -> anyhow::Result<PathBuf> {
    let absolute = std::fs::canonicalize(folder).unwrap_or_else(|_| folder.to_path_buf());
    let name: String = absolute
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "root".to_owned())
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let hash = blake3::hash(absolute.as_os_str().as_encoded_bytes()).to_hex();
    Ok(crate::cache::default_cache_dir()?
        .join("runs")
        .join(format!("{name}-{}", &hash[..10])))
}

/// Refuses an output folder inside (or equal to) the dataset folder: embedscope
/// never writes into the data it reads.
pub fn check_output_dir(out: &Path, folder: &Path) -> anyhow::Result<()> {
    let folder = std::fs::canonicalize(folder)
        .with_context(|| format!("cannot open {}", folder.display()))?;
    // The output folder may not exist yet: resolve its nearest existing ancestor.
    let mut existing = if out.is_absolute() {
        out.to_path_buf()
    } else {
        std::env::current_dir()?.join(out)
    };
    let mut rest = Vec::new();
    while !existing.exists() {
        match (
            existing.file_name().map(|n| n.to_owned()),
            existing.parent(),
        ) {
            (Some(name), Some(parent)) => {
                rest.push(name);
                existing = parent.to_path_buf();
            }
            _ => break,
        }
    }
    let mut resolved = std::fs::canonicalize(&existing).unwrap_or(existing);
    for name in rest.into_iter().rev() {
        resolved.push(name);
    }
    if resolved.starts_with(&folder) {
        bail!(
            "the output folder {} is inside the dataset folder {}: embedscope never writes into the folder it analyses; choose another --out (or omit it to use the cache folder)",
            out.display(),
            folder.display()
        );
    }
    Ok(())
}

/// Writes the three output files into `out`.
pub fn write_outputs(analysis: &Analysis, out: &Path) -> anyhow::Result<()> {
    write_outputs_with(analysis, out, &OutputOptions::default())
}

/// What goes into the outputs beyond the default.
#[derive(Clone, Debug, Default)]
pub struct OutputOptions {
    /// Also write the embeddings into `points.parquet` (`embedding` column);
    /// they are always in `embeddings.npy`.
    pub embeddings_in_parquet: bool,
}

/// [`write_outputs`] with options.
pub fn write_outputs_with(
    analysis: &Analysis,
    out: &Path,
    options: &OutputOptions,
) -> anyhow::Result<()> {
    check_output_dir(out, &analysis.folder.root)?;
    std::fs::create_dir_all(out)
        .with_context(|| format!("cannot create the output folder {}", out.display()))?;
    let e = &analysis.folder.embeddings;
    write_atomically(&out.join("points.csv"), |w| write_points_csv(analysis, w))?;
    write_atomically(&out.join("points.parquet"), |w| {
        write_points_parquet(analysis, options, w).map(|_| ())
    })?;
    write_atomically(&out.join("embeddings.npy"), |w| {
        write_npy_f32(w, e.n, e.dim, &e.data)
    })?;
    let report = build_report(analysis);
    write_atomically(&out.join("report.json"), |w| {
        serde_json::to_writer_pretty(&mut *w, &report)?;
        writeln!(w)?;
        Ok(())
    })?;
    Ok(())
}

/// The columns of `points.csv` (and the first ones of `points.parquet`).
pub const POINT_COLUMNS: [&str; 11] = [
    "path",
    "x",
    "y",
    "z",
    "cluster",
    "duplicate_group",
    "label",
    "suggested_label",
    "label_issue_score",
    "outlier_score",
    "issues",
];

/// One row of `points.csv`, as text; empty where a column does not apply.
pub fn point_row(analysis: &Analysis, i: usize) -> [String; 11] {
    let c = &analysis.curation;
    let [x, y, z] = analysis.layout.points[i];
    let labels = c.labels.as_ref();
    let issue = c.label_issues.as_ref();
    let label = labels.and_then(|l| l.name(i)).unwrap_or("").to_owned();
    let suggested = issue
        .and_then(|s| s.suggested[i])
        .and_then(|s| labels.map(|l| l.names[s as usize].clone()))
        .unwrap_or_default();
    // Shortest text that reads back as the same f32: a score is a percentile
    // at 1/n steps, and four decimals would tie the top 50 of 100,000 images.
    let score = |v: Option<f32>| v.map(|v| v.to_string()).unwrap_or_default();
    [
        analysis.folder.images[i].relative.clone(),
        x.to_string(),
        y.to_string(),
        z.to_string(),
        analysis.clusters.labels[i].to_string(),
        analysis.duplicate_labels[i].to_string(),
        label,
        suggested,
        score(issue.and_then(|s| s.score[i])),
        score(c.outliers.get(i).copied()),
        issues_of(analysis, i).join(";"),
    ]
}

/// The `issues` column: every flag that applies to image `i`, in a fixed
/// order: `label_issue`, `outlier`, `duplicate`, then the quality flags.
pub fn issues_of(analysis: &Analysis, i: usize) -> Vec<&'static str> {
    let c = &analysis.curation;
    let mut out = Vec::new();
    if c.label_issues
        .as_ref()
        .is_some_and(|s| s.score[i].is_some_and(|v| v >= crate::analyze::LABEL_ISSUE_FLAG))
    {
        out.push("label_issue");
    }
    if c.outlier_flagged.get(i).copied().unwrap_or(false) {
        out.push("outlier");
    }
    if analysis.duplicate_labels[i] >= 0 {
        out.push("duplicate");
    }
    if let Some(flags) = c.flags.get(i) {
        out.extend(flags.iter().map(|f| f.name()));
    }
    out
}

fn write_points_csv(analysis: &Analysis, w: &mut dyn Write) -> anyhow::Result<()> {
    let metadata = &analysis.folder.metadata;
    let (names, _) = parquet::metadata_column_names(
        POINT_COLUMNS.iter().map(|c| c.to_string()).collect(),
        metadata,
    );
    let mut csv = csv::Writer::from_writer(w);
    csv.write_record(
        POINT_COLUMNS
            .iter()
            .copied()
            .chain(names.iter().map(String::as_str)),
    )?;
    for i in 0..analysis.folder.images.len() {
        let extra = metadata.iter().map(|m| m.values.text(i));
        csv.write_record(point_row(analysis, i).into_iter().chain(extra))?;
    }
    csv.flush()?;
    Ok(())
}

/// `points.parquet`: the columns of `points.csv` typed, the metadata, the kNN
/// as `neighbors` and, on request, the embeddings.
pub fn write_points_parquet(
    analysis: &Analysis,
    options: &OutputOptions,
    w: &mut (dyn Write + Send),
) -> anyhow::Result<parquet::PointsWritten> {
    let n = analysis.folder.images.len();
    let c = &analysis.curation;
    let labels = c.labels.as_ref();
    let issue = c.label_issues.as_ref();
    let paths: Vec<String> = analysis
        .folder
        .images
        .iter()
        .map(|r| r.relative.clone())
        .collect();
    let given: Vec<Option<String>> = (0..n)
        .map(|i| labels.and_then(|l| l.name(i)).map(str::to_owned))
        .collect();
    let suggested: Vec<Option<String>> = (0..n)
        .map(|i| {
            issue
                .and_then(|s| s.suggested[i])
                .and_then(|s| labels.map(|l| l.names[s as usize].clone()))
        })
        .collect();
    let label_scores: Vec<Option<f32>> = (0..n).map(|i| issue.and_then(|s| s.score[i])).collect();
    let outlier_scores: Vec<Option<f32>> = (0..n).map(|i| c.outliers.get(i).copied()).collect();
    let issues: Vec<String> = (0..n).map(|i| issues_of(analysis, i).join(";")).collect();
    let knn = &analysis.knn;
    let table = parquet::PointsTable {
        paths: &paths,
        points: &analysis.layout.points,
        clusters: &analysis.clusters.labels,
        duplicate_groups: &analysis.duplicate_labels,
        curation: Some(parquet::CurationColumns {
            labels: &given,
            suggested_labels: &suggested,
            label_issue_scores: &label_scores,
            outlier_scores: &outlier_scores,
            issues: &issues,
        }),
        metadata: &analysis.folder.metadata,
        embeddings: options
            .embeddings_in_parquet
            .then_some(&analysis.folder.embeddings),
        neighbors: (knn.n == n && knn.k > 0).then_some(parquet::NeighborLists {
            k: knn.k,
            indices: &knn.indices,
            distances: &knn.distances,
            distances_are_chord: true,
        }),
    };
    parquet::write_points_parquet(&table, w)
}

/// Writes through a temporary file in the same folder (`tempfile`), synced,
/// then renamed over `path`, so readers see the old file or the new one, never
/// half of one. On any error the temporary file is removed.
pub fn write_atomically(
    path: &Path,
    write: impl FnOnce(&mut (dyn Write + Send)) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let mut builder = tempfile::Builder::new();
    builder.prefix(".embedscope-").suffix(".tmp");
    // A temporary file is private (0600); the outputs are ordinary files that
    // others on the machine may read, as any file the user creates (the umask
    // still applies).
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o644));
    }
    let tmp = builder
        .tempfile_in(dir)
        .with_context(|| format!("cannot write into {}", dir.display()))?;
    let mut buffered = std::io::BufWriter::new(tmp);
    write(&mut buffered)?;
    let tmp = buffered.into_inner().map_err(|e| e.into_error())?;
    tmp.as_file().sync_all()?;
    tmp.persist(path)
        .map_err(|e| e.error)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_writes_leave_the_old_file_on_error_and_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("report.json");
        write_atomically(&path, |w| Ok(w.write_all(b"old")?)).unwrap();
        let err = write_atomically(&path, |w| {
            w.write_all(b"half of a new")?;
            anyhow::bail!("disk full")
        });
        assert!(err.is_err());
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[cfg(unix)]
    #[test]
    fn outputs_are_readable_by_others_not_private_like_a_temporary_file() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("points.csv");
        write_atomically(&path, |w| Ok(w.write_all(b"path\n")?)).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o044, 0o044, "mode {mode:o}");
    }

    #[test]
    fn output_inside_the_dataset_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        assert!(check_output_dir(&data.join("out/deeper"), &data).is_err());
        assert!(check_output_dir(&data, &data).is_err());
        assert!(check_output_dir(&dir.path().join("out"), &data).is_ok());
        assert!(check_output_dir(&dir.path().join("data-out"), &data).is_ok());
    }
}
