//! Parquet sources: one file, or a folder of parts with one schema (what
//! pyarrow, pandas, Polars, Spark, Ray Data and DuckDB write).
//!
//! The file's footer gives the schema and the row counts; the needed columns
//! only (vector, path, scalar metadata) are then streamed in record batches of
//! a few MB, each row's vector normalised straight into the [`Collector`].

use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow, bail};
use arrow_array::cast::AsArray;
use arrow_array::temporal_conversions::{as_date, as_datetime, as_time};
use arrow_array::types::*;
use arrow_array::{Array, ArrowPrimitiveType, RecordBatch};
use arrow_buffer::NullBuffer;
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use half::f16;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};

use super::{
    Collector, EMPTY_VECTOR, ExternalEmbeddings, ImageLinks, MetadataColumn, MetadataValues,
    NULL_ELEMENT, NULL_PATH, NULL_VECTOR, PATH_COLUMN_NAMES, ReadOptions, SourceKind,
    is_hidden_part,
};
use crate::progress::{CancelToken, ProgressEvent, ProgressSink, Stage};

/// The `.parquet` files of a source: the file itself, or a folder's non-hidden
/// `*.parquet` entries sorted by name (Spark's `part-00000-…` order).
pub(super) fn parquet_files(source: &Path) -> anyhow::Result<Vec<PathBuf>> {
    if source.is_file() {
        return Ok(vec![source.to_path_buf()]);
    }
    let entries =
        std::fs::read_dir(source).with_context(|| format!("cannot list {}", source.display()))?;
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot list {}", source.display()))?;
        let path = entry.path();
        let name = entry.file_name();
        if is_hidden_part(&name.to_string_lossy())
            || !super::has_extension(&path, "parquet")
            || !path.is_file()
        {
            continue;
        }
        files.push(path);
    }
    files.sort();
    if files.is_empty() {
        bail!("{} holds no .parquet file", source.display());
    }
    Ok(files)
}

/// Opens a file and reads its footer.
pub(super) fn open(path: &Path) -> anyhow::Result<ParquetRecordBatchReaderBuilder<File>> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let not_readable = |e: &dyn std::fmt::Display| {
        anyhow!(
            "{} is not a readable Parquet file ({e}): it may be truncated or still being written; re-export it",
            path.display()
        )
    };
    match std::panic::catch_unwind(move || ParquetRecordBatchReaderBuilder::try_new(file)) {
        Ok(Ok(builder)) => Ok(builder),
        Ok(Err(e)) => Err(not_readable(&e)),
        Err(panic) => Err(not_readable(&panic_message(&panic))),
    }
}

/// The next batch, with a decoder panic turned into an error. arrow-rs 60
/// still panics on some damaged pages (the fuzz test found an out-of-range
/// slice in its fixed-length byte array decoder, which float16 columns use);
/// the reader is dropped after one, so no broken state is observed.
pub(super) fn next_batch(
    reader: &mut ParquetRecordBatchReader,
    file: &Path,
    column: &str,
) -> anyhow::Result<Option<RecordBatch>> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| reader.next())) {
        Ok(None) => Ok(None),
        Ok(Some(Ok(batch))) => Ok(Some(batch)),
        Ok(Some(Err(e))) => Err(corrupt(file, column, e)),
        Err(panic) => Err(corrupt(file, column, panic_message(&panic))),
    }
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    let text = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_default();
    format!("the Parquet decoder failed: {text}")
}

/// The element type of a vector column.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum FloatKind {
    F16,
    F32,
    F64,
}

/// `Some` when `dt` is a FixedSizeList, List or LargeList of float16/32/64.
pub(super) fn vector_type(dt: &DataType) -> Option<(FloatKind, Option<usize>)> {
    let (item, width) = match dt {
        DataType::FixedSizeList(item, width) => (item, usize::try_from(*width).ok()),
        DataType::List(item) | DataType::LargeList(item) => (item, None),
        _ => return None,
    };
    let kind = match item.data_type() {
        DataType::Float16 => FloatKind::F16,
        DataType::Float32 => FloatKind::F32,
        DataType::Float64 => FloatKind::F64,
        _ => return None,
    };
    Some((kind, width))
}

/// What a metadata column becomes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum MetaKind {
    Int,
    Float,
    Bool,
    Text,
}

/// How a scalar column is carried, or why it is not.
fn metadata_kind(dt: &DataType) -> Result<MetaKind, &'static str> {
    use DataType::*;
    Ok(match dt {
        Int8 | Int16 | Int32 | Int64 | UInt8 | UInt16 | UInt32 | UInt64 => MetaKind::Int,
        Float16 | Float32 | Float64 | Decimal128(..) => MetaKind::Float,
        Boolean => MetaKind::Bool,
        Utf8 | LargeUtf8 | Utf8View => MetaKind::Text,
        Date32 | Date64 | Timestamp(..) | Time32(..) | Time64(..) => MetaKind::Text,
        Dictionary(_, value) if matches!(**value, Utf8 | LargeUtf8 | Utf8View) => MetaKind::Text,
        Null => return Err("it is all nulls"),
        Binary | LargeBinary | BinaryView | FixedSizeBinary(_) => {
            return Err("binary columns are not carried");
        }
        List(_) | LargeList(_) | ListView(_) | LargeListView(_) | FixedSizeList(..) | Struct(_)
        | Map(..) | Union(..) | RunEndEncoded(..) => {
            return Err("nested columns are not carried");
        }
        _ => return Err("its type is not supported"),
    })
}

/// Which columns to read and what each is for, decided from the first file.
#[derive(Debug)]
pub(super) struct Plan {
    /// The vector column (absent for clip-retrieval's metadata files).
    pub vector: Option<(String, FloatKind, Option<usize>)>,
    pub path: Option<String>,
    /// Metadata columns: name, kind, the type in the first file.
    pub metadata: Vec<(String, MetaKind, DataType)>,
    /// Notes on columns left out.
    pub notes: Vec<String>,
}

fn describe_columns(schema: &Schema) -> String {
    schema
        .fields()
        .iter()
        .map(|f| format!("{} ({})", f.name(), f.data_type()))
        .collect::<Vec<_>>()
        .join(", ")
}

fn is_string(dt: &DataType) -> bool {
    matches!(
        dt,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
    ) || matches!(dt, DataType::Dictionary(_, v) if is_string(v))
}

impl Plan {
    /// Picks the columns from `schema` (the first file's).
    pub fn resolve(
        schema: &Schema,
        options: &ReadOptions,
        file: &Path,
        need_vector: bool,
    ) -> anyhow::Result<Plan> {
        let fields = schema.fields();
        let vector = if !need_vector {
            None
        } else if let Some(name) = &options.vector_column {
            let field = schema.field_with_name(name).map_err(|_| {
                anyhow!(
                    "{}: no column named '{name}' (--vector-column); its columns are: {}",
                    file.display(),
                    describe_columns(schema)
                )
            })?;
            let (kind, width) = vector_type(field.data_type()).ok_or_else(|| {
                anyhow!(
                    "{}: column '{name}' is {}, not a list of floats (float16, float32 or float64), so it cannot be the vector column",
                    file.display(),
                    field.data_type()
                )
            })?;
            Some((name.clone(), kind, width))
        } else {
            let candidates: Vec<&Field> = fields
                .iter()
                .filter(|f| vector_type(f.data_type()).is_some())
                .map(|f| f.as_ref())
                .collect();
            match candidates.as_slice() {
                [one] => {
                    let (kind, width) = vector_type(one.data_type()).expect("checked above");
                    Some((one.name().clone(), kind, width))
                }
                [] => bail!(
                    "{}: no vector column: expected one column of float lists (FixedSizeList or List of float32, float16 or float64); its columns are: {}",
                    file.display(),
                    describe_columns(schema)
                ),
                several => bail!(
                    "{}: several columns hold vectors ({}): choose one with --vector-column NAME",
                    file.display(),
                    several
                        .iter()
                        .map(|f| f.name().as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            }
        };

        let path = if let Some(name) = &options.path_column {
            let field = schema.field_with_name(name).map_err(|_| {
                anyhow!(
                    "{}: no column named '{name}' (--path-column); its columns are: {}",
                    file.display(),
                    describe_columns(schema)
                )
            })?;
            if !is_string(field.data_type()) {
                bail!(
                    "{}: column '{name}' is {}, not strings, so it cannot be the path column",
                    file.display(),
                    field.data_type()
                );
            }
            Some(name.clone())
        } else {
            PATH_COLUMN_NAMES
                .iter()
                .find(|name| {
                    schema
                        .field_with_name(name)
                        .is_ok_and(|f| is_string(f.data_type()))
                })
                .map(|s| s.to_string())
        };

        let mut metadata = Vec::new();
        let mut notes = Vec::new();
        for field in fields {
            let name = field.name();
            if vector.as_ref().is_some_and(|v| &v.0 == name) || path.as_ref() == Some(name) {
                continue;
            }
            // pandas writes a non-default index as `__index_level_0__`: row
            // bookkeeping, not a property of the image.
            if name.starts_with("__index_level_") {
                continue;
            }
            match metadata_kind(field.data_type()) {
                Ok(kind) => metadata.push((name.clone(), kind, field.data_type().clone())),
                Err(why) => notes.push(format!(
                    "{}: column '{name}' ({}) left out: {why}",
                    file.display(),
                    field.data_type()
                )),
            }
        }
        Ok(Plan {
            vector,
            path,
            metadata,
            notes,
        })
    }

    /// Checks that another part has the columns this plan reads, with types
    /// that map the same way (a part with `large_string` where the first had
    /// `string` is fine; one whose vector column is missing is not).
    pub fn check_part(&self, schema: &Schema, file: &Path, first: &Path) -> anyhow::Result<()> {
        let lookup = |name: &str| {
            schema.field_with_name(name).map_err(|_| {
                anyhow!(
                    "{}: no column '{name}', which {} has: every part must have the same columns",
                    file.display(),
                    first.display()
                )
            })
        };
        if let Some((name, kind, width)) = &self.vector {
            let field = lookup(name)?;
            match vector_type(field.data_type()) {
                Some((k, w)) if k == *kind && (w == *width || w.is_none() || width.is_none()) => {}
                _ => bail!(
                    "{}: column '{name}' is {} where {} has {}: every part must have the same vector type and width",
                    file.display(),
                    field.data_type(),
                    first.display(),
                    schema_type_of(name, *kind, *width)
                ),
            }
        }
        if let Some(name) = &self.path {
            let field = lookup(name)?;
            if !is_string(field.data_type()) {
                bail!(
                    "{}: path column '{name}' is {}, not strings",
                    file.display(),
                    field.data_type()
                );
            }
        }
        for (name, kind, _) in &self.metadata {
            let field = lookup(name)?;
            if metadata_kind(field.data_type()) != Ok(*kind) {
                bail!(
                    "{}: column '{name}' is {} here but {:?} in {}: every part must have the same column types",
                    file.display(),
                    field.data_type(),
                    kind,
                    first.display()
                );
            }
        }
        Ok(())
    }

    /// The reader for one file, reading only this plan's columns.
    pub fn reader(
        &self,
        builder: ParquetRecordBatchReaderBuilder<File>,
        file: &Path,
    ) -> anyhow::Result<ParquetRecordBatchReader> {
        let wanted: Vec<&str> = self
            .vector
            .iter()
            .map(|v| v.0.as_str())
            .chain(self.path.as_deref())
            .chain(self.metadata.iter().map(|m| m.0.as_str()))
            .collect();
        let roots: Vec<usize> = builder
            .parquet_schema()
            .root_schema()
            .get_fields()
            .iter()
            .enumerate()
            .filter(|(_, f)| wanted.contains(&f.name()))
            .map(|(i, _)| i)
            .collect();
        check_codecs(builder.metadata(), &wanted, file)?;
        let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
        // About 8 MB of vectors per batch: large enough that per-batch costs
        // vanish, small enough to stay out of the memory budget.
        let batch_rows = match &self.vector {
            Some((_, _, Some(width))) => (8 << 20) / (4 * (*width).max(1)),
            _ => 8192,
        }
        .clamp(1024, 65536);
        builder
            .with_projection(mask)
            .with_batch_size(batch_rows)
            .build()
            .map_err(|e| corrupt(file, self.vector_name(), e))
    }

    pub fn vector_name(&self) -> &str {
        self.vector.as_ref().map(|v| v.0.as_str()).unwrap_or("")
    }

    /// Empty metadata columns to append to.
    pub fn metadata_columns(&self) -> Vec<MetadataColumn> {
        self.metadata
            .iter()
            .map(|(name, kind, dt)| MetadataColumn {
                name: name.clone(),
                source_type: dt.to_string(),
                values: match kind {
                    MetaKind::Int => MetadataValues::Int(Vec::new()),
                    MetaKind::Float => MetadataValues::Float(Vec::new()),
                    MetaKind::Bool => MetadataValues::Bool(Vec::new()),
                    MetaKind::Text => MetadataValues::Text(Vec::new()),
                },
            })
            .collect()
    }
}

/// Refuses, before reading, a column compressed with LZO (which arrow-rs does
/// not implement), with a message that says how to rewrite it; otherwise the
/// failure would come mid-read as "not yet implemented".
fn check_codecs(
    metadata: &parquet::file::metadata::ParquetMetaData,
    wanted: &[&str],
    file: &Path,
) -> anyhow::Result<()> {
    use parquet::basic::Compression;
    for row_group in metadata.row_groups() {
        for column in row_group.columns() {
            let root = column.column_path().parts().first().map(String::as_str);
            if !root.is_some_and(|r| wanted.contains(&r)) {
                continue;
            }
            let codec = match column.compression() {
                Compression::LZO => "LZO",
                _ => continue,
            };
            bail!(
                "{}: column '{}' is compressed with {codec}, which embedscope does not read; rewrite the file with snappy or zstd (pyarrow: pq.write_table(table, path, compression=\"zstd\"); Spark: spark.sql.parquet.compression.codec=zstd)",
                file.display(),
                root.unwrap_or_default()
            );
        }
    }
    Ok(())
}

fn schema_type_of(_name: &str, kind: FloatKind, width: Option<usize>) -> String {
    let item = match kind {
        FloatKind::F16 => "Float16",
        FloatKind::F32 => "Float32",
        FloatKind::F64 => "Float64",
    };
    match width {
        Some(w) => format!("FixedSizeList({w} x {item})"),
        None => format!("List({item})"),
    }
}

/// The message for a file that fails mid-read.
pub(super) fn corrupt(file: &Path, column: &str, e: impl std::fmt::Display) -> anyhow::Error {
    let column = if column.is_empty() {
        String::new()
    } else {
        format!(", reading column '{column}'")
    };
    anyhow!(
        "{}: the file is corrupt or truncated{column} ({e}); re-export it",
        file.display()
    )
}

/// Reads a `.parquet` file or a folder of parts.
pub(super) fn read_parquet_source(
    source: &Path,
    options: &ReadOptions,
    progress: &dyn ProgressSink,
    cancel: &CancelToken,
) -> anyhow::Result<ExternalEmbeddings> {
    let files = parquet_files(source)?;
    let mut builders = Vec::with_capacity(files.len());
    for file in &files {
        builders.push(open(file)?);
    }
    let plan = Plan::resolve(builders[0].schema(), options, &files[0], true)?;
    for (file, builder) in files.iter().zip(&builders).skip(1) {
        plan.check_part(builder.schema(), file, &files[0])?;
    }
    let total: u64 = builders
        .iter()
        .map(|b| b.metadata().file_metadata().num_rows().max(0) as u64)
        .sum();
    let vector_name = plan.vector_name().to_owned();
    if total == 0 {
        bail!(
            "{}: no rows: {} empty (column '{vector_name}')",
            source.display(),
            if files.len() == 1 {
                "the file is"
            } else {
                "every part is"
            },
        );
    }
    progress.event(ProgressEvent::Started {
        stage: Stage::Embed,
        total: Some(total),
    });
    let bytes = files
        .iter()
        .map(|f| std::fs::metadata(f).map(|m| m.len()).unwrap_or(0))
        .sum();
    let mut collector = Collector::new(total, bytes);
    let mut metadata = plan.metadata_columns();
    let mut warnings = plan.notes.clone();
    for (file, builder) in files.iter().zip(builders) {
        let mut reader = plan.reader(builder, file)?;
        let mut row_in_file = 0u64;
        while let Some(batch) = next_batch(&mut reader, file, &vector_name)? {
            cancel.check()?;
            let column = batch
                .column_by_name(&vector_name)
                .ok_or_else(|| corrupt(file, &vector_name, "column missing from the batch"))?;
            let vectors = VectorView::new(column.as_ref())
                .ok_or_else(|| corrupt(file, &vector_name, "unexpected vector layout"))?;
            let paths = path_strings(&batch, &plan, file)?;
            let keep = collect_rows(
                &mut collector,
                batch.num_rows(),
                file,
                row_in_file,
                paths.as_ref(),
                |collector, r, row| vectors.push_row(collector, r, file, &vector_name, row),
            )?;
            append_metadata(&batch, &keep, &mut metadata, file, &mut warnings)?;
            row_in_file += batch.num_rows() as u64;
            progress.event(ProgressEvent::Advanced {
                stage: Stage::Embed,
                done: collector.next_row,
            });
        }
    }
    let rows_read = collector.next_row;
    let (embeddings, ids, skipped) = collector.finish(source, &vector_name)?;
    Ok(ExternalEmbeddings {
        embeddings,
        ids,
        paths_are_files: plan.path.is_some(),
        metadata,
        skipped,
        warnings,
        source: source.to_path_buf(),
        kind: SourceKind::Parquet,
        files,
        vector_column: vector_name,
        path_column: plan.path.clone(),
        rows_read,
        images: ImageLinks::default(),
    })
}

/// The path strings of a batch, when the plan has a path column.
pub(super) fn path_strings<'a>(
    batch: &'a RecordBatch,
    plan: &Plan,
    file: &Path,
) -> anyhow::Result<Option<Strings<'a>>> {
    let Some(name) = &plan.path else {
        return Ok(None);
    };
    let column = batch
        .column_by_name(name)
        .ok_or_else(|| corrupt(file, name, "column missing from the batch"))?;
    Strings::new(column.as_ref())
        .map(Some)
        .ok_or_else(|| corrupt(file, name, "the path column is not strings"))
}

/// Runs over the `n` rows of a batch: gives each an id (path or row number),
/// asks `push` to add its vector, records skips. Returns which rows were kept.
/// `push` returns `Err` for a fatal problem (mixed widths) and `Ok(Err(reason))`
/// for a row to skip.
pub(super) fn collect_rows(
    collector: &mut Collector,
    n: usize,
    file: &Path,
    first_row_in_file: u64,
    paths: Option<&Strings<'_>>,
    mut push: impl FnMut(&mut Collector, usize, u64) -> anyhow::Result<Result<(), &'static str>>,
) -> anyhow::Result<Vec<bool>> {
    let mut keep = vec![false; n];
    for (r, kept) in keep.iter_mut().enumerate() {
        let global = collector.next_row;
        collector.next_row += 1;
        let row_in_file = first_row_in_file + r as u64;
        let (id, outcome) = match paths {
            Some(paths) => match paths.get(r) {
                Some(p) => (p.to_owned(), push(collector, r, row_in_file)?),
                None => (global.to_string(), Err(NULL_PATH)),
            },
            None => (global.to_string(), push(collector, r, row_in_file)?),
        };
        match outcome {
            Ok(()) => {
                collector.ids.push(id);
                *kept = true;
            }
            Err(reason) => collector.skip(file, row_in_file, id, reason),
        }
    }
    Ok(keep)
}

/// A string column of any of Arrow's layouts.
pub(super) enum Strings<'a> {
    Utf8(&'a arrow_array::StringArray),
    Large(&'a arrow_array::LargeStringArray),
    View(&'a arrow_array::StringViewArray),
    /// Dictionary-encoded (pandas categories): key per row, then the values.
    Dict {
        keys: Vec<usize>,
        nulls: Option<NullBuffer>,
        values: Box<Strings<'a>>,
    },
}

impl<'a> Strings<'a> {
    pub fn new(array: &'a dyn Array) -> Option<Self> {
        Some(match array.data_type() {
            DataType::Utf8 => Strings::Utf8(array.as_string_opt::<i32>()?),
            DataType::LargeUtf8 => Strings::Large(array.as_string_opt::<i64>()?),
            DataType::Utf8View => Strings::View(array.as_string_view_opt()?),
            DataType::Dictionary(..) => {
                let dict = array.as_any_dictionary_opt()?;
                let values = Strings::new(dict.values().as_ref())?;
                if matches!(values, Strings::Dict { .. }) {
                    return None;
                }
                Strings::Dict {
                    keys: dict.normalized_keys(),
                    nulls: array.logical_nulls(),
                    values: Box::new(values),
                }
            }
            _ => return None,
        })
    }

    /// Row `i`'s string, `None` for a null (or, defensively, an index out of range).
    pub fn get(&self, i: usize) -> Option<&'a str> {
        fn pick<'b, A: Array>(
            a: &'b A,
            i: usize,
            value: impl Fn(usize) -> &'b str,
        ) -> Option<&'b str> {
            (i < a.len() && a.is_valid(i)).then(|| value(i))
        }
        match self {
            Strings::Utf8(a) => pick(*a, i, |i| a.value(i)),
            Strings::Large(a) => pick(*a, i, |i| a.value(i)),
            Strings::View(a) => pick(*a, i, |i| a.value(i)),
            Strings::Dict {
                keys,
                nulls,
                values,
            } => {
                if nulls.as_ref().is_some_and(|n| i >= n.len() || n.is_null(i)) {
                    return None;
                }
                values.get(*keys.get(i)?)
            }
        }
    }
}

/// A batch's vector column: values of one float type plus the row layout.
pub(super) struct VectorView<'a> {
    values: Floats<'a>,
    value_nulls: Option<&'a NullBuffer>,
    nulls: Option<&'a NullBuffer>,
    layout: Layout<'a>,
}

enum Floats<'a> {
    F16(&'a [f16]),
    F32(&'a [f32]),
    F64(&'a [f64]),
}

enum Layout<'a> {
    Fixed(usize),
    Offsets32(&'a [i32]),
    Offsets64(&'a [i64]),
}

impl<'a> VectorView<'a> {
    pub fn new(array: &'a dyn Array) -> Option<Self> {
        let (child, layout) = match array.data_type() {
            DataType::FixedSizeList(_, width) => {
                let list = array.as_fixed_size_list_opt()?;
                (list.values(), Layout::Fixed(usize::try_from(*width).ok()?))
            }
            DataType::List(_) => {
                let list = array.as_list_opt::<i32>()?;
                (list.values(), Layout::Offsets32(list.value_offsets()))
            }
            DataType::LargeList(_) => {
                let list = array.as_list_opt::<i64>()?;
                (list.values(), Layout::Offsets64(list.value_offsets()))
            }
            _ => return None,
        };
        let values = match child.data_type() {
            DataType::Float16 => Floats::F16(child.as_primitive_opt::<Float16Type>()?.values()),
            DataType::Float32 => Floats::F32(child.as_primitive_opt::<Float32Type>()?.values()),
            DataType::Float64 => Floats::F64(child.as_primitive_opt::<Float64Type>()?.values()),
            _ => return None,
        };
        Some(Self {
            values,
            value_nulls: child.nulls().filter(|n| n.null_count() > 0),
            nulls: array.nulls().filter(|n| n.null_count() > 0),
            layout,
        })
    }

    /// The value range of row `r`, `None` when the offsets are inconsistent.
    fn range(&self, r: usize) -> Option<(usize, usize)> {
        let (start, end) = match self.layout {
            Layout::Fixed(width) => (r.checked_mul(width)?, (r + 1).checked_mul(width)?),
            Layout::Offsets32(o) => (
                usize::try_from(*o.get(r)?).ok()?,
                usize::try_from(*o.get(r + 1)?).ok()?,
            ),
            Layout::Offsets64(o) => (
                usize::try_from(*o.get(r)?).ok()?,
                usize::try_from(*o.get(r + 1)?).ok()?,
            ),
        };
        (start <= end).then_some((start, end))
    }

    /// Adds row `r` to the collector (see [`collect_rows`] for the result).
    pub fn push_row(
        &self,
        collector: &mut Collector,
        r: usize,
        file: &Path,
        column: &str,
        row_in_file: u64,
    ) -> anyhow::Result<Result<(), &'static str>> {
        if self.nulls.is_some_and(|n| r >= n.len() || n.is_null(r)) {
            return Ok(Err(NULL_VECTOR));
        }
        let (start, end) = self.range(r).ok_or_else(|| {
            corrupt(
                file,
                column,
                format!("bad list offsets at row {row_in_file}"),
            )
        })?;
        if start == end {
            return Ok(Err(EMPTY_VECTOR));
        }
        collector.check_width(end - start, file, column, row_in_file)?;
        if let Some(nulls) = self.value_nulls
            && (end > nulls.len() || (start..end).any(|i| nulls.is_null(i)))
        {
            return Ok(Err(NULL_ELEMENT));
        }
        let short = || {
            corrupt(
                file,
                column,
                format!("row {row_in_file} points past the values"),
            )
        };
        Ok(match self.values {
            Floats::F16(v) => collector.push_f16(v.get(start..end).ok_or_else(short)?),
            Floats::F32(v) => collector.push_f32(v.get(start..end).ok_or_else(short)?),
            Floats::F64(v) => collector.push_f64(v.get(start..end).ok_or_else(short)?),
        })
    }
}

/// Appends the kept rows of each metadata column of `batch`.
pub(super) fn append_metadata(
    batch: &RecordBatch,
    keep: &[bool],
    columns: &mut [MetadataColumn],
    file: &Path,
    warnings: &mut Vec<String>,
) -> anyhow::Result<()> {
    for column in columns.iter_mut() {
        let array = batch
            .column_by_name(&column.name)
            .ok_or_else(|| corrupt(file, &column.name, "column missing from the batch"))?;
        let lost = append_values(array.as_ref(), keep, &mut column.values)
            .map_err(|e| corrupt(file, &column.name, e))?;
        if lost > 0 {
            warnings.push(format!(
                "{}: column '{}': {lost} value{} out of range (above the largest 64-bit integer, or a date chrono cannot represent) left empty",
                file.display(),
                column.name,
                if lost == 1 { "" } else { "s" }
            ));
        }
    }
    Ok(())
}

/// Pushes `get(i)` for each kept row, `None` where `array` is null.
fn push_kept<T>(
    out: &mut Vec<Option<T>>,
    array: &dyn Array,
    keep: &[bool],
    mut get: impl FnMut(usize) -> Option<T>,
) {
    let nulls = array.logical_nulls();
    for (i, _) in keep.iter().enumerate().filter(|(_, k)| **k) {
        let valid = nulls.as_ref().is_none_or(|n| n.is_valid(i));
        out.push(if valid { get(i) } else { None });
    }
}

fn ints<T: ArrowPrimitiveType>(
    array: &dyn Array,
    keep: &[bool],
    out: &mut Vec<Option<i64>>,
    lost: &mut usize,
) -> Result<(), String>
where
    T::Native: TryInto<i64>,
{
    let a = array
        .as_primitive_opt::<T>()
        .ok_or("unexpected integer layout")?;
    push_kept(out, array, keep, |i| {
        let v = a.value(i).try_into().ok();
        *lost += usize::from(v.is_none());
        v
    });
    Ok(())
}

fn floats<T: ArrowPrimitiveType>(
    array: &dyn Array,
    keep: &[bool],
    out: &mut Vec<Option<f64>>,
    to_f64: impl Fn(T::Native) -> f64,
) -> Result<(), String> {
    let a = array
        .as_primitive_opt::<T>()
        .ok_or("unexpected float layout")?;
    push_kept(out, array, keep, |i| Some(to_f64(a.value(i))));
    Ok(())
}

/// Dates and times as ISO 8601 text.
fn temporal<T: ArrowPrimitiveType>(
    array: &dyn Array,
    keep: &[bool],
    out: &mut Vec<Option<String>>,
    lost: &mut usize,
    format: impl Fn(i64) -> Option<String>,
) -> Result<(), String>
where
    T::Native: Into<i64>,
{
    let a = array
        .as_primitive_opt::<T>()
        .ok_or("unexpected date/time layout")?;
    push_kept(out, array, keep, |i| {
        let v = format(a.value(i).into());
        *lost += usize::from(v.is_none());
        v
    });
    Ok(())
}

fn timestamp<T: ArrowPrimitiveType>(
    array: &dyn Array,
    keep: &[bool],
    out: &mut Vec<Option<String>>,
    lost: &mut usize,
    utc: bool,
) -> Result<(), String>
where
    T::Native: Into<i64>,
{
    temporal::<T>(array, keep, out, lost, |v| {
        as_datetime::<T>(v).map(|t| {
            let mut s = t.format("%Y-%m-%dT%H:%M:%S%.f").to_string();
            if utc {
                s.push('Z');
            }
            s
        })
    })
}

/// Appends the kept rows of `array` to `out`; returns how many values were
/// out of range (stored as null).
fn append_values(
    array: &dyn Array,
    keep: &[bool],
    out: &mut MetadataValues,
) -> Result<usize, String> {
    let mut lost = 0;
    match (array.data_type(), out) {
        (DataType::Int8, MetadataValues::Int(o)) => ints::<Int8Type>(array, keep, o, &mut lost)?,
        (DataType::Int16, MetadataValues::Int(o)) => ints::<Int16Type>(array, keep, o, &mut lost)?,
        (DataType::Int32, MetadataValues::Int(o)) => ints::<Int32Type>(array, keep, o, &mut lost)?,
        (DataType::Int64, MetadataValues::Int(o)) => ints::<Int64Type>(array, keep, o, &mut lost)?,
        (DataType::UInt8, MetadataValues::Int(o)) => ints::<UInt8Type>(array, keep, o, &mut lost)?,
        (DataType::UInt16, MetadataValues::Int(o)) => {
            ints::<UInt16Type>(array, keep, o, &mut lost)?
        }
        (DataType::UInt32, MetadataValues::Int(o)) => {
            ints::<UInt32Type>(array, keep, o, &mut lost)?
        }
        (DataType::UInt64, MetadataValues::Int(o)) => {
            ints::<UInt64Type>(array, keep, o, &mut lost)?
        }
        (DataType::Float16, MetadataValues::Float(o)) => {
            floats::<Float16Type>(array, keep, o, |v| f64::from(v.to_f32()))?
        }
        (DataType::Float32, MetadataValues::Float(o)) => {
            floats::<Float32Type>(array, keep, o, f64::from)?
        }
        (DataType::Float64, MetadataValues::Float(o)) => {
            floats::<Float64Type>(array, keep, o, |v| v)?
        }
        (DataType::Decimal128(_, scale), MetadataValues::Float(o)) => {
            let div = 10f64.powi(i32::from(*scale));
            floats::<Decimal128Type>(array, keep, o, |v| v as f64 / div)?
        }
        (DataType::Boolean, MetadataValues::Bool(o)) => {
            let a = array.as_boolean_opt().ok_or("unexpected boolean layout")?;
            push_kept(o, array, keep, |i| Some(a.value(i)));
        }
        (DataType::Date32, MetadataValues::Text(o)) => {
            temporal::<Date32Type>(array, keep, o, &mut lost, |v| {
                as_date::<Date32Type>(v).map(|d| d.to_string())
            })?
        }
        (DataType::Date64, MetadataValues::Text(o)) => {
            temporal::<Date64Type>(array, keep, o, &mut lost, |v| {
                as_date::<Date64Type>(v).map(|d| d.to_string())
            })?
        }
        (DataType::Time32(unit), MetadataValues::Text(o)) => match unit {
            TimeUnit::Second => temporal::<Time32SecondType>(array, keep, o, &mut lost, |v| {
                as_time::<Time32SecondType>(v).map(|t| t.to_string())
            })?,
            _ => temporal::<Time32MillisecondType>(array, keep, o, &mut lost, |v| {
                as_time::<Time32MillisecondType>(v).map(|t| t.to_string())
            })?,
        },
        (DataType::Time64(unit), MetadataValues::Text(o)) => match unit {
            TimeUnit::Microsecond => {
                temporal::<Time64MicrosecondType>(array, keep, o, &mut lost, |v| {
                    as_time::<Time64MicrosecondType>(v).map(|t| t.to_string())
                })?
            }
            _ => temporal::<Time64NanosecondType>(array, keep, o, &mut lost, |v| {
                as_time::<Time64NanosecondType>(v).map(|t| t.to_string())
            })?,
        },
        (DataType::Timestamp(unit, tz), MetadataValues::Text(o)) => {
            let utc = tz.is_some();
            match unit {
                TimeUnit::Second => {
                    timestamp::<TimestampSecondType>(array, keep, o, &mut lost, utc)?
                }
                TimeUnit::Millisecond => {
                    timestamp::<TimestampMillisecondType>(array, keep, o, &mut lost, utc)?
                }
                TimeUnit::Microsecond => {
                    timestamp::<TimestampMicrosecondType>(array, keep, o, &mut lost, utc)?
                }
                TimeUnit::Nanosecond => {
                    timestamp::<TimestampNanosecondType>(array, keep, o, &mut lost, utc)?
                }
            }
        }
        (_, MetadataValues::Text(o)) => {
            let strings = Strings::new(array).ok_or("unexpected string layout")?;
            for (i, _) in keep.iter().enumerate().filter(|(_, k)| **k) {
                o.push(strings.get(i).map(str::to_owned));
            }
        }
        (dt, out) => {
            return Err(format!(
                "type {dt} does not match the {} column of the first part",
                out.kind()
            ));
        }
    }
    Ok(lost)
}
