//! clip-retrieval's output folder, and a lone `.npy` matrix.
//!
//! `clip-retrieval inference` (clip_retrieval/clip_inference/writer.py) writes,
//! per partition N (zero-padded to the partition count's width):
//! `img_emb/img_emb_<N>.npy` (float16 since it casts the features with
//! `.to(torch.float16)`; older versions wrote float32), `metadata/metadata_<N>.parquet`
//! (pandas; `image_path`, then `caption` and the json-normalised metadata when
//! enabled), and `text_emb/text_emb_<N>.npy`, which embedscope ignores. Row i of
//! one matches row i of the other.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use super::npy::{NpyReader, push_row_bytes};
use super::parquet::{Plan, append_metadata, collect_rows, next_batch, open, path_strings};
use super::{Collector, ExternalEmbeddings, ImageLinks, ReadOptions, SourceKind, is_hidden_part};
use crate::progress::{CancelToken, ProgressEvent, ProgressSink, Stage};

/// `img_emb/img_emb_<N>.npy` under `dir`, ordered by N.
pub(super) fn embedding_parts(dir: &Path) -> Vec<(String, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(dir.join("img_emb")) else {
        return Vec::new();
    };
    let mut parts: Vec<(String, PathBuf)> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            if is_hidden_part(&name) {
                return None;
            }
            let n = name
                .strip_prefix("img_emb_")?
                .strip_suffix(".npy")?
                .to_owned();
            Some((n, e.path()))
        })
        .collect();
    // Numeric order (the padding makes it the name order too, but a folder
    // merged from runs with different partition counts may mix widths).
    parts.sort_by(|a, b| {
        let key = |s: &str| (s.parse::<u64>().unwrap_or(u64::MAX), s.to_owned());
        key(&a.0).cmp(&key(&b.0))
    });
    parts
}

/// One npy matrix and the metadata rows that go with it.
struct Part {
    npy: PathBuf,
    metadata: Option<PathBuf>,
}

pub(super) fn read_clip_retrieval(
    source: &Path,
    options: &ReadOptions,
    progress: &dyn ProgressSink,
    cancel: &CancelToken,
) -> anyhow::Result<ExternalEmbeddings> {
    let metadata_dir = source.join("metadata");
    let has_metadata = metadata_dir.is_dir();
    let mut parts = Vec::new();
    for (n, npy) in embedding_parts(source) {
        let metadata = metadata_dir.join(format!("metadata_{n}.parquet"));
        if has_metadata && !metadata.is_file() {
            bail!(
                "{} has no matching {}: clip-retrieval writes one metadata file per embedding file; copy it over or remove the .npy",
                npy.display(),
                metadata.display()
            );
        }
        parts.push(Part {
            npy,
            metadata: has_metadata.then_some(metadata),
        });
    }
    let mut warnings = Vec::new();
    if !has_metadata {
        warnings.push(format!(
            "{} has no metadata/ folder: images have no paths",
            source.display()
        ));
    }
    read_npy_parts(
        source, parts, "img_emb", options, warnings, progress, cancel,
    )
    .map(|mut e| {
        e.kind = SourceKind::ClipRetrieval;
        e
    })
}

/// A lone `X.npy`, with `X.parquet` beside it as its metadata when present.
pub(super) fn read_lone_npy(
    source: &Path,
    options: &ReadOptions,
    progress: &dyn ProgressSink,
    cancel: &CancelToken,
) -> anyhow::Result<ExternalEmbeddings> {
    let metadata = source.with_extension("parquet");
    let column = source
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let part = Part {
        npy: source.to_path_buf(),
        metadata: metadata.is_file().then_some(metadata),
    };
    read_npy_parts(
        source,
        vec![part],
        &column,
        options,
        Vec::new(),
        progress,
        cancel,
    )
    .map(|mut e| {
        e.kind = SourceKind::Npy;
        e
    })
}

fn read_npy_parts(
    source: &Path,
    parts: Vec<Part>,
    column: &str,
    options: &ReadOptions,
    mut warnings: Vec<String>,
    progress: &dyn ProgressSink,
    cancel: &CancelToken,
) -> anyhow::Result<ExternalEmbeddings> {
    if parts.is_empty() {
        bail!("{}: no img_emb/img_emb_<N>.npy file", source.display());
    }
    if options.vector_column.is_some() {
        warnings.push(format!(
            "--vector-column is ignored for {}: the vectors are in the .npy files",
            source.display()
        ));
    }
    // Open everything first: a mismatch is reported before minutes of reading.
    let mut opened = Vec::with_capacity(parts.len());
    let mut plan: Option<(Plan, PathBuf)> = None;
    for part in &parts {
        let npy = NpyReader::open(&part.npy)?;
        let builder = match &part.metadata {
            Some(path) => {
                let builder = open(path)?;
                match &plan {
                    None => {
                        let p = Plan::resolve(builder.schema(), options, path, false)?;
                        warnings.extend(p.notes.iter().cloned());
                        plan = Some((p, path.clone()));
                    }
                    Some((p, first)) => p.check_part(builder.schema(), path, first)?,
                }
                let rows = builder.metadata().file_metadata().num_rows().max(0) as u64;
                if rows != npy.rows {
                    bail!(
                        "{} has {} rows but {} has {rows}: row i of one must match row i of the other",
                        part.npy.display(),
                        npy.rows,
                        path.display()
                    );
                }
                Some(builder)
            }
            None => None,
        };
        opened.push((npy, builder));
    }
    let total: u64 = opened.iter().map(|(npy, _)| npy.rows).sum();
    if total == 0 {
        bail!("{}: no rows: every .npy file is empty", source.display());
    }
    progress.event(ProgressEvent::Started {
        stage: Stage::Embed,
        total: Some(total),
    });
    // .npy row counts are checked against the file sizes: reserve exactly.
    let mut collector = Collector::new(total, u64::MAX);
    let mut metadata = plan
        .as_ref()
        .map(|(p, _)| p.metadata_columns())
        .unwrap_or_default();
    let (mut s16, mut s32, mut s64) = (Vec::new(), Vec::new(), Vec::new());
    for (part, (mut npy, builder)) in parts.iter().zip(opened) {
        if npy.rows == 0 {
            continue;
        }
        collector.check_width(npy.cols, &part.npy, column, 0)?;
        let (dtype, row_bytes) = (npy.dtype, npy.cols * dtype_size(npy.dtype));
        let read_err = |e: std::io::Error| {
            anyhow::anyhow!(
                "{}: cannot read rows ({e}); the file may be truncated",
                part.npy.display()
            )
        };
        let mut row_in_file = 0u64;
        match (builder, &plan, &part.metadata) {
            (Some(builder), Some((plan, _)), Some(meta_path)) => {
                let mut reader = plan.reader(builder, meta_path)?;
                while let Some(batch) = next_batch(&mut reader, meta_path, "")? {
                    cancel.check()?;
                    let (n, bytes) = npy.read_rows(batch.num_rows()).map_err(read_err)?;
                    if n != batch.num_rows() {
                        bail!(
                            "{} ends before {}: their row counts differ",
                            part.npy.display(),
                            meta_path.display()
                        );
                    }
                    let paths = path_strings(&batch, plan, meta_path)?;
                    let keep = collect_rows(
                        &mut collector,
                        n,
                        &part.npy,
                        row_in_file,
                        paths.as_ref(),
                        |c, r, _| {
                            let row = &bytes[r * row_bytes..(r + 1) * row_bytes];
                            Ok(push_row_bytes(c, dtype, row, &mut s16, &mut s32, &mut s64))
                        },
                    )?;
                    append_metadata(&batch, &keep, &mut metadata, meta_path, &mut warnings)?;
                    row_in_file += n as u64;
                    progress.event(ProgressEvent::Advanced {
                        stage: Stage::Embed,
                        done: collector.next_row,
                    });
                }
            }
            _ => loop {
                cancel.check()?;
                let (n, bytes) = npy.read_rows(8192).map_err(read_err)?;
                if n == 0 {
                    break;
                }
                collect_rows(
                    &mut collector,
                    n,
                    &part.npy,
                    row_in_file,
                    None,
                    |c, r, _| {
                        let row = &bytes[r * row_bytes..(r + 1) * row_bytes];
                        Ok(push_row_bytes(c, dtype, row, &mut s16, &mut s32, &mut s64))
                    },
                )
                .with_context(|| format!("reading {}", part.npy.display()))?;
                row_in_file += n as u64;
                progress.event(ProgressEvent::Advanced {
                    stage: Stage::Embed,
                    done: collector.next_row,
                });
            },
        }
    }
    let rows_read = collector.next_row;
    let (embeddings, ids, skipped) = collector.finish(source, column)?;
    let path_column = plan.as_ref().and_then(|(p, _)| p.path.clone());
    let mut files = Vec::new();
    for part in parts {
        files.push(part.npy);
        files.extend(part.metadata);
    }
    Ok(ExternalEmbeddings {
        embeddings,
        ids,
        paths_are_files: path_column.is_some(),
        metadata,
        skipped,
        warnings,
        source: source.to_path_buf(),
        kind: SourceKind::ClipRetrieval,
        files,
        vector_column: column.to_owned(),
        path_column,
        rows_read,
        images: ImageLinks::default(),
    })
}

fn dtype_size(dtype: super::npy::NpyDtype) -> usize {
    use super::npy::NpyDtype::*;
    match dtype {
        F16 => 2,
        F32 => 4,
        F64 => 8,
    }
}
