//! Embeddings computed elsewhere: read a Parquet file, a folder of Parquet parts,
//! clip-retrieval's output folder or a lone `.npy`, instead of embedding images.
//!
//! At hundreds of thousands to millions of images the embeddings come from a
//! cluster job (clip-retrieval, Ray Data, Spark) as Parquet or `.npy`; this
//! module turns them into the pipeline's [`Embeddings`] (L2-normalised rows, one
//! `Vec<f32>`), one id per row (its path, or its row number), and the other
//! scalar columns as metadata, ready for the kNN → layout → analyze stages.
//!
//! - [`detect`] says what a path is ([`SourceKind`]); the caller picks the scan
//!   (image folder) or [`read`] (everything else).
//! - Bad rows (null, NaN, infinite, all-zero vectors) are skipped and listed
//!   ([`SkippedRow`]); a bad *file* (corrupt, truncated, empty, no vector column,
//!   mixed widths) is an error that names the file and the column. Nothing here
//!   panics on bad input.
//! - Memory: vectors are streamed batch by batch into one `Vec<f32>` reserved
//!   once from the row counts in the files' footers, so reading N×D float32
//!   needs about N·D·4 bytes plus the ids and metadata.

mod clip_retrieval;
mod npy;
mod parquet;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::bail;
use serde::Serialize;

use crate::progress::{CancelToken, ProgressEvent, ProgressSink, Stage};
use crate::{Embeddings, dot, l2_normalize};

/// What a path given to embedscope holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SourceKind {
    /// A folder of images (or an image file: its folder). The scan decides
    /// whether it really holds images.
    ImageFolder,
    /// A `.parquet` file, or a folder of `*.parquet` parts with one schema.
    Parquet,
    /// clip-retrieval's output folder: `img_emb/img_emb_<N>.npy` and
    /// `metadata/metadata_<N>.parquet`.
    ClipRetrieval,
    /// A lone `.npy` matrix (optionally with `<same stem>.parquet` beside it).
    Npy,
    /// Missing, unreadable, or a file of another kind.
    Unknown,
}

impl SourceKind {
    /// What a person reads in a message ("a Parquet source").
    pub fn describe(self) -> &'static str {
        match self {
            SourceKind::ImageFolder => "an image folder",
            SourceKind::Parquet => "Parquet",
            SourceKind::ClipRetrieval => "clip-retrieval output",
            SourceKind::Npy => "a .npy matrix",
            SourceKind::Unknown => "an unrecognised path",
        }
    }
}

/// Says what `path` is, looking at names and at most the first bytes of one
/// file; never fails (a path it cannot read is [`SourceKind::Unknown`]).
///
/// A folder is clip-retrieval output when it has `img_emb/img_emb_*.npy`; it is
/// an image folder as soon as an image file sits at its top level (a dataset
/// with a `metadata.parquet` beside its images is still a dataset of images);
/// it is Parquet when its top level holds `*.parquet` parts; anything else is
/// left to the image scan (images in subfolders, as in `mnist/<digit>/`).
pub fn detect(path: &Path) -> SourceKind {
    let Ok(meta) = std::fs::metadata(path) else {
        return SourceKind::Unknown;
    };
    if meta.is_file() {
        return if has_extension(path, "parquet") || has_parquet_magic(path) {
            SourceKind::Parquet
        } else if has_extension(path, "npy") {
            SourceKind::Npy
        } else if crate::scan::is_image_extension(path) {
            SourceKind::ImageFolder
        } else {
            SourceKind::Unknown
        };
    }
    if !clip_retrieval::embedding_parts(path).is_empty() {
        return SourceKind::ClipRetrieval;
    }
    let Ok(entries) = std::fs::read_dir(path) else {
        return SourceKind::Unknown;
    };
    let mut parquet = false;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let entry_path = entry.path();
        if is_hidden_part(&name.to_string_lossy()) || !entry_path.is_file() {
            continue;
        }
        if crate::scan::is_image_extension(&entry_path) {
            return SourceKind::ImageFolder;
        }
        parquet |= has_extension(&entry_path, "parquet");
    }
    if parquet {
        SourceKind::Parquet
    } else {
        SourceKind::ImageFolder
    }
}

fn has_extension(path: &Path, ext: &str) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case(ext))
}

fn has_parquet_magic(path: &Path) -> bool {
    use std::io::Read;
    let mut magic = [0u8; 4];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok()
        && &magic == b"PAR1"
}

/// Hadoop's rule, which Spark and pyarrow's dataset reader follow: names that
/// start with `.` or `_` (`_SUCCESS`, `_committed_*`, `.part-0.crc`) are not data.
fn is_hidden_part(name: &str) -> bool {
    name.starts_with('.') || name.starts_with('_')
}

/// How to read a source; every field is optional.
#[derive(Clone, Debug, Default)]
pub struct ReadOptions {
    /// The embedding column (`--vector-column`); by default the one column
    /// whose type is a list of floats.
    pub vector_column: Option<String>,
    /// The column of image paths (`--path-column`); by default the first of
    /// `path`, `filepath`, `image_path`, `file_name` that holds strings.
    pub path_column: Option<String>,
    /// Where relative image paths resolve (`--images-root`); by default the
    /// folder of the source (the Parquet file's folder, or the folder itself).
    pub images_root: Option<PathBuf>,
}

/// Names tried, in order, for the path column.
pub const PATH_COLUMN_NAMES: &[&str] = &["path", "filepath", "image_path", "file_name"];

/// The embeddings of a source, ready for the kNN stage.
#[derive(Debug)]
pub struct ExternalEmbeddings {
    /// L2-normalised rows, one per kept row, in source order (parts by name).
    pub embeddings: Embeddings,
    /// One per kept row: its path, or its row number ("0", "1", ...: the row's
    /// index over the whole source, counting skipped rows, so it stays stable).
    pub ids: Vec<String>,
    /// True when `ids` are paths from a path column.
    pub paths_are_files: bool,
    /// The other scalar columns, one value per kept row.
    pub metadata: Vec<MetadataColumn>,
    /// Rows left out, with the reason.
    pub skipped: Vec<SkippedRow>,
    /// Things the user should know (columns skipped, ids numbered, paths that
    /// do not resolve...).
    pub warnings: Vec<String>,
    /// The path the user gave.
    pub source: PathBuf,
    pub kind: SourceKind,
    /// The files read, in order.
    pub files: Vec<PathBuf>,
    /// The column the vectors came from (`img_emb/*.npy` for clip-retrieval).
    pub vector_column: String,
    pub path_column: Option<String>,
    /// Rows in the source, kept and skipped.
    pub rows_read: u64,
    /// Which ids are image files on this machine (for thumbnails).
    pub images: ImageLinks,
}

impl ExternalEmbeddings {
    /// The image file of kept row `i`, when its path resolved to a file.
    pub fn image_path(&self, i: usize) -> Option<PathBuf> {
        if !self.images.exists.get(i).copied().unwrap_or(false) {
            return None;
        }
        Some(resolve_image(self.images.base.as_deref(), &self.ids[i]))
    }
}

/// Where the ids point on disk.
#[derive(Clone, Debug, Default)]
pub struct ImageLinks {
    /// Relative paths are joined to this (the images root, or the source's folder).
    pub base: Option<PathBuf>,
    /// Per kept row: does its path name an existing file?
    pub exists: Vec<bool>,
    /// How many do (`exists` counted).
    pub resolved: usize,
    /// How many were looked at: all of them, unless none of the first
    /// thousands resolved and the rest were not tried.
    pub checked: usize,
}

fn resolve_image(base: Option<&Path>, id: &str) -> PathBuf {
    let p = Path::new(id);
    match base {
        Some(base) if p.is_relative() => base.join(p),
        _ => p.to_path_buf(),
    }
}

/// A row that is not in the map.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SkippedRow {
    /// The file it is in.
    pub file: String,
    /// Its index within that file (0-based).
    pub row: u64,
    /// Its path, or its row number over the source.
    pub id: String,
    pub reason: String,
}

/// A scalar column carried from the source to the output.
#[derive(Clone, Debug, PartialEq)]
pub struct MetadataColumn {
    pub name: String,
    /// The column's type in the source, as Arrow names it ("Int32",
    /// "Timestamp(µs)", "Dictionary(Int32, Utf8)"), for the report.
    pub source_type: String,
    pub values: MetadataValues,
}

/// One value per kept row; `None` where the source has a null (or a value that
/// does not fit: a UInt64 above i64::MAX, a date out of range).
#[derive(Clone, Debug, PartialEq)]
pub enum MetadataValues {
    /// All integer types.
    Int(Vec<Option<i64>>),
    /// float16/32/64 and decimals.
    Float(Vec<Option<f64>>),
    Bool(Vec<Option<bool>>),
    /// Strings, dictionary-encoded strings (pandas categories), and dates,
    /// times and timestamps written as ISO 8601 (`2024-01-02T03:04:05.25`, with
    /// a `Z` when the column has a time zone: the instant in UTC).
    Text(Vec<Option<String>>),
}

impl MetadataValues {
    pub fn len(&self) -> usize {
        match self {
            MetadataValues::Int(v) => v.len(),
            MetadataValues::Float(v) => v.len(),
            MetadataValues::Bool(v) => v.len(),
            MetadataValues::Text(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Value `i` as text, empty for a null (the CSV outputs).
    pub fn text(&self, i: usize) -> String {
        match self {
            MetadataValues::Int(v) => v[i].map(|x| x.to_string()),
            MetadataValues::Float(v) => v[i].map(|x| x.to_string()),
            MetadataValues::Bool(v) => v[i].map(|x| x.to_string()),
            MetadataValues::Text(v) => v[i].clone(),
        }
        .unwrap_or_default()
    }

    /// "int", "float", "bool" or "text".
    pub fn kind(&self) -> &'static str {
        match self {
            MetadataValues::Int(_) => "int",
            MetadataValues::Float(_) => "float",
            MetadataValues::Bool(_) => "bool",
            MetadataValues::Text(_) => "text",
        }
    }
}

/// Reads the embeddings of a Parquet file or folder, clip-retrieval output, or
/// a `.npy` file. Reports progress under [`Stage::Embed`] (reading replaces
/// decoding and embedding) and checks `cancel` between batches.
pub fn read(
    source: &Path,
    options: &ReadOptions,
    progress: &dyn ProgressSink,
    cancel: &CancelToken,
) -> anyhow::Result<ExternalEmbeddings> {
    let start = Instant::now();
    let kind = detect(source);
    // The readers turn decoder panics into errors per file and column; this is
    // the backstop for any other panic inside arrow-rs on a damaged file.
    let read_kind = || match kind {
        SourceKind::Parquet => parquet::read_parquet_source(source, options, progress, cancel),
        SourceKind::ClipRetrieval => {
            clip_retrieval::read_clip_retrieval(source, options, progress, cancel)
        }
        SourceKind::Npy => clip_retrieval::read_lone_npy(source, options, progress, cancel),
        SourceKind::ImageFolder => bail!(
            "{} holds images, not embeddings: embedscope embeds it itself (drop the embeddings option)",
            source.display()
        ),
        SourceKind::Unknown => {
            if !source.exists() {
                bail!("cannot open {}: check that it exists", source.display());
            }
            bail!(
                "{} is not an embeddings source: give a .parquet file, a folder of .parquet parts, clip-retrieval's output folder (with img_emb/) or a .npy file",
                source.display()
            )
        }
    };
    let mut out = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(read_kind)) {
        Ok(result) => result?,
        Err(_) => bail!(
            "reading {} failed inside the Parquet decoder: a file is damaged; re-export it",
            source.display()
        ),
    };
    out.kind = kind;
    out.source = source.to_path_buf();
    if !out.paths_are_files {
        out.warnings.push(format!(
            "{} has no path column ({}): rows are numbered 0, 1, 2, ... and shown as dots; name one with --path-column",
            source.display(),
            PATH_COLUMN_NAMES.join(", ")
        ));
    }
    let base = options.images_root.clone().or_else(|| {
        let dir = if source.is_dir() {
            source
        } else {
            source.parent()?
        };
        Some(dir.to_path_buf())
    });
    out.images = link_images(&out.ids, out.paths_are_files, base, cancel)?;
    if out.paths_are_files && out.images.resolved < out.ids.len() {
        out.warnings
            .push(unresolved_warning(&out, options.images_root.is_some()));
    }
    progress.event(ProgressEvent::Finished {
        stage: Stage::Embed,
        seconds: start.elapsed().as_secs_f64(),
        summary: format!(
            "read {} vectors of {} dimensions from {} file{}{}",
            out.embeddings.n,
            out.embeddings.dim,
            out.files.len(),
            if out.files.len() == 1 { "" } else { "s" },
            if out.skipped.is_empty() {
                String::new()
            } else {
                format!(", skipped {} rows", out.skipped.len())
            }
        ),
    });
    Ok(out)
}

/// "120 of 1000 paths resolve ..." with a hint at what to do.
fn unresolved_warning(out: &ExternalEmbeddings, root_given: bool) -> String {
    let links = &out.images;
    let relative = out
        .ids
        .iter()
        .take(links.checked.max(1))
        .any(|id| Path::new(id).is_relative());
    let place = match (&links.base, relative) {
        (Some(base), true) => format!(" (relative paths are looked up under {})", base.display()),
        _ => String::new(),
    };
    let counted = if links.checked < out.ids.len() {
        format!(
            "none of the first {} paths resolve to a file{place}, so the rest were not tried",
            links.checked
        )
    } else {
        format!(
            "{} of {} paths resolve to a file{place}",
            links.resolved,
            out.ids.len()
        )
    };
    let hint = if root_given {
        ""
    } else {
        "; point --images-root at the folder the paths are relative to"
    };
    format!("{counted}: the others are shown as dots{hint}")
}

/// Stats the paths to see which are image files here, in chunks of [`CHUNK`]
/// (cancellable; parallel, since stats wait on the disk). When none of the
/// first chunk resolves (URLs, or paths from another machine) it stops there:
/// a million failed stats on a network drive would cost minutes for nothing.
fn link_images(
    ids: &[String],
    paths_are_files: bool,
    base: Option<PathBuf>,
    cancel: &CancelToken,
) -> anyhow::Result<ImageLinks> {
    const CHUNK: usize = 4096;
    use rayon::prelude::*;
    let mut links = ImageLinks {
        base,
        exists: vec![false; ids.len()],
        resolved: 0,
        checked: 0,
    };
    if !paths_are_files {
        return Ok(links);
    }
    for (ids, exists) in ids.chunks(CHUNK).zip(links.exists.chunks_mut(CHUNK)) {
        cancel.check()?;
        let base = links.base.as_deref();
        ids.par_iter()
            .zip(exists.par_iter_mut())
            .for_each(|(id, e)| {
                *e = !id.is_empty() && resolve_image(base, id).is_file();
            });
        links.resolved += exists.iter().filter(|e| **e).count();
        links.checked += ids.len();
        if links.resolved == 0 {
            break;
        }
    }
    Ok(links)
}

/// Collects kept rows across files: vectors (normalised) into one `Vec<f32>`,
/// ids, skipped rows. The format readers feed it row by row.
pub(crate) struct Collector {
    pub dim: Option<usize>,
    pub data: Vec<f32>,
    pub ids: Vec<String>,
    pub skipped: Vec<SkippedRow>,
    /// Row number (over the whole source) of the next row.
    pub next_row: u64,
    /// Rows the source holds in total (from the footers), to reserve once.
    pub expected_rows: u64,
    /// The size of the files read: a damaged footer may claim billions of
    /// rows, so reservations are capped by what the bytes could hold.
    pub source_bytes: u64,
    scratch: Vec<f32>,
}

pub(crate) const NULL_VECTOR: &str = "null vector";
pub(crate) const NULL_ELEMENT: &str = "null value inside the vector";
pub(crate) const NAN_VALUE: &str = "NaN value";
pub(crate) const INFINITE_VALUE: &str = "infinite value";
pub(crate) const ZERO_VECTOR: &str = "all values are zero (no direction to normalise)";
pub(crate) const EMPTY_VECTOR: &str = "empty vector";
pub(crate) const NULL_PATH: &str = "null path";

impl Collector {
    pub fn new(expected_rows: u64, source_bytes: u64) -> Self {
        Self {
            dim: None,
            data: Vec::new(),
            ids: Vec::with_capacity(expected_rows.min(source_bytes) as usize),
            skipped: Vec::new(),
            next_row: 0,
            expected_rows,
            source_bytes,
            scratch: Vec::new(),
        }
    }

    /// Fixes the width on the first vector and checks it afterwards. Reserving
    /// the whole matrix at once avoids the doubling `Vec` growth whose
    /// reallocation would briefly need 1.5–2× the vectors' memory.
    pub fn check_width(
        &mut self,
        width: usize,
        file: &Path,
        column: &str,
        row: u64,
    ) -> anyhow::Result<()> {
        match self.dim {
            None => {
                if width == 0 {
                    bail!(
                        "{}: column '{column}' holds vectors of width 0",
                        file.display()
                    );
                }
                self.dim = Some(width);
                // Float vectors barely compress, so N x D float32 takes at most
                // about 4x the bytes of any file that really holds them (2x for
                // float16); beyond that the footer is wrong, and the Vec grows.
                let floats = self.expected_rows.saturating_mul(width as u64);
                let decoded_bytes = floats.saturating_mul(4);
                if decoded_bytes <= self.source_bytes.saturating_mul(4) {
                    self.data.reserve_exact(floats as usize);
                }
                Ok(())
            }
            Some(dim) if dim == width => Ok(()),
            Some(dim) => bail!(
                "{}: column '{column}' has vectors of mixed widths: row {row} has {width} values where earlier rows have {dim}; every vector must have the same width",
                file.display()
            ),
        }
    }

    /// Records a skipped row.
    pub fn skip(&mut self, file: &Path, row_in_file: u64, id: String, reason: &str) {
        self.skipped.push(SkippedRow {
            file: file.display().to_string(),
            row: row_in_file,
            id,
            reason: reason.to_owned(),
        });
    }

    /// Appends `row` L2-normalised, or says why it cannot be.
    pub fn push_f32(&mut self, row: &[f32]) -> Result<(), &'static str> {
        if !row.iter().all(|x| x.is_finite()) {
            return Err(if row.iter().any(|x| x.is_nan()) {
                NAN_VALUE
            } else {
                INFINITE_VALUE
            });
        }
        let start = self.data.len();
        self.data.extend_from_slice(row);
        let v = &mut self.data[start..];
        let squared = dot(v, v);
        if !(squared.is_finite() && squared >= f32::MIN_POSITIVE) {
            // The squared norm overflowed (values near f32::MAX) or underflowed
            // (tiny values): scale by the largest magnitude first, so such a
            // row keeps its direction instead of becoming zeros or NaN.
            let max = v.iter().fold(0.0f32, |m, x| m.max(x.abs()));
            if max == 0.0 {
                self.data.truncate(start);
                return Err(ZERO_VECTOR);
            }
            v.iter_mut().for_each(|x| *x /= max);
        }
        l2_normalize(v);
        Ok(())
    }

    pub fn push_f16(&mut self, row: &[half::f16]) -> Result<(), &'static str> {
        use half::slice::HalfFloatSliceExt;
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.resize(row.len(), 0.0);
        row.convert_to_f32_slice(&mut scratch);
        let result = self.push_f32(&scratch);
        self.scratch = scratch;
        result
    }

    /// float64 rows are scaled by their largest magnitude before the cast to
    /// float32, so values beyond float32's range keep their direction.
    pub fn push_f64(&mut self, row: &[f64]) -> Result<(), &'static str> {
        if !row.iter().all(|x| x.is_finite()) {
            return Err(if row.iter().any(|x| x.is_nan()) {
                NAN_VALUE
            } else {
                INFINITE_VALUE
            });
        }
        let max = row.iter().fold(0.0f64, |m, x| m.max(x.abs()));
        if max == 0.0 {
            return Err(ZERO_VECTOR);
        }
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        scratch.extend(row.iter().map(|x| (x / max) as f32));
        let result = self.push_f32(&scratch);
        self.scratch = scratch;
        result
    }

    /// The finished matrix, or an error when no row survived.
    pub fn finish(
        self,
        source: &Path,
        column: &str,
    ) -> anyhow::Result<(Embeddings, Vec<String>, Vec<SkippedRow>)> {
        let Some(dim) = self.dim.filter(|_| !self.ids.is_empty()) else {
            if let Some(first) = self.skipped.first() {
                bail!(
                    "{}: no usable vector in column '{column}': all {} rows were skipped (first: row {} of {}: {})",
                    source.display(),
                    self.skipped.len(),
                    first.row,
                    first.file,
                    first.reason
                );
            }
            bail!(
                "{}: no rows: the source is empty (column '{column}')",
                source.display()
            );
        };
        let mut data = self.data;
        data.shrink_to_fit();
        let n = self.ids.len();
        debug_assert_eq!(data.len(), n * dim);
        Ok((Embeddings { n, dim, data }, self.ids, self.skipped))
    }
}

#[cfg(test)]
mod tests;
