//! `points.parquet`: one row per point, for pandas/Polars/DuckDB and for
//! Embedding Atlas (`embedding-atlas points.parquet --x x --y y --neighbors neighbors`).
//!
//! Columns, in order:
//! - `path` (string), `x`, `y`, `z` (float32), `cluster`, `duplicate_group`
//!   (int32, -1 for noise / none);
//! - with curation: `label`, `suggested_label` (string, null where not
//!   applicable), `label_issue_score`, `outlier_score` (float32, nullable),
//!   `issues` (string);
//! - every metadata column from the source (int64, float64, bool or string;
//!   a name already taken gets a `source_` prefix);
//! - optionally `embedding` (FixedSizeList<float32, D>, the L2-normalised rows);
//! - optionally `neighbors`: `struct<ids: list<int32>, distances: list<float32>>`,
//!   the convention Embedding Atlas reads (packages/docs/tool.md: "`{"ids": [...],
//!   "distances": [...]}`... The IDs should be zero-based row indices"; its own
//!   viewer numbers rows with a DuckDB `INTEGER`, hence int32). Nearest first,
//!   the point itself left out (Embedding Atlas drops it when present), cosine
//!   distances `1 - cos` (what its own `metric="cosine"` UMAP kNN stores).
//!
//! zstd level 1 (every Parquet reader in use reads it; level 1 is as fast as
//! snappy to write and smaller), row groups of 65,536 rows. The table is built
//! and written one row group at a time, so writing adds about one row group of
//! memory, not a copy of everything.

use std::io::Write;
use std::sync::Arc;

use anyhow::{Context, bail, ensure};
use arrow_array::builder::{Float32Builder, Int32Builder};
use arrow_array::{
    ArrayRef, BooleanArray, FixedSizeListArray, Float32Array, Float64Array, Int32Array, Int64Array,
    ListArray, RecordBatch, StringArray, StructArray,
};
use arrow_buffer::OffsetBuffer;
use arrow_schema::{DataType, Field, Fields, Schema, SchemaRef};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;

use crate::Embeddings;
use crate::geometry::Point3;
use crate::source::{MetadataColumn, MetadataValues};

/// Rows per row group (and per batch built in memory).
pub const ROW_GROUP_ROWS: usize = 65_536;

/// Everything `points.parquet` holds, as plain columns (one entry per point).
#[derive(Clone, Copy, Debug)]
pub struct PointsTable<'a> {
    pub paths: &'a [String],
    pub points: &'a [Point3],
    /// Cluster per point, -1 for noise.
    pub clusters: &'a [i32],
    /// Near-duplicate group per point, -1 for none.
    pub duplicate_groups: &'a [i32],
    pub curation: Option<CurationColumns<'a>>,
    /// Carried through from the source, written in this order.
    pub metadata: &'a [MetadataColumn],
    /// Written as the `embedding` column when given.
    pub embeddings: Option<&'a Embeddings>,
    /// Written as the `neighbors` column when given.
    pub neighbors: Option<NeighborLists<'a>>,
}

/// The curation columns (label issues, outliers).
#[derive(Clone, Copy, Debug)]
pub struct CurationColumns<'a> {
    pub labels: &'a [Option<String>],
    pub suggested_labels: &'a [Option<String>],
    pub label_issue_scores: &'a [Option<f32>],
    pub outlier_scores: &'a [Option<f32>],
    /// e.g. "label_issue;outlier"; empty when none.
    pub issues: &'a [String],
}

/// `k` neighbours per point, nearest first, as in the pipeline's `KnnGraph`
/// (`indices[i * k + j]`; `u32::MAX` pads a row with fewer real neighbours and
/// is left out of the list).
#[derive(Clone, Copy, Debug)]
pub struct NeighborLists<'a> {
    pub k: usize,
    pub indices: &'a [u32],
    pub distances: &'a [f32],
    /// The distances are chord distances `|a - b|` between unit vectors (what
    /// `KnnGraph` stores): write them as cosine distances `d² / 2 = 1 - cos`.
    pub distances_are_chord: bool,
}

/// What was written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PointsWritten {
    pub rows: usize,
    pub row_groups: usize,
    /// The column names, in order.
    pub columns: Vec<String>,
    /// Metadata columns renamed because their name was taken: (source, written).
    pub renamed: Vec<(String, String)>,
}

/// Writes `table` as Parquet to `writer` (the caller writes to a temporary
/// file and renames it). Mismatched column lengths are an error, not a panic.
pub fn write_points_parquet<W: Write + Send>(
    table: &PointsTable<'_>,
    writer: W,
) -> anyhow::Result<PointsWritten> {
    let n = table.paths.len();
    check_lengths(table, n)?;

    let (schema, renamed) = schema(table);
    let mut props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(1)?))
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        // Dictionaries pay only for repetitive strings; on floats and unique
        // paths the writer would build one and then throw it away.
        .set_dictionary_enabled(false);
    for field in schema.fields() {
        let repetitive = matches!(
            field.name().as_str(),
            "label" | "suggested_label" | "issues"
        );
        let metadata_text = table.metadata.iter().any(|m| {
            matches!(m.values, MetadataValues::Text(_))
                && (m.name == *field.name()
                    || renamed
                        .iter()
                        .any(|(from, to)| from == &m.name && to == field.name()))
        });
        if repetitive || metadata_text {
            props =
                props.set_column_dictionary_enabled(ColumnPath::from(field.name().as_str()), true);
        }
    }
    let mut arrow_writer = ArrowWriter::try_new(writer, schema.clone(), Some(props.build()))
        .context("cannot start the Parquet writer")?;
    let mut row_groups = 0;
    let mut start = 0;
    while start < n || (n == 0 && row_groups == 0) {
        let end = (start + ROW_GROUP_ROWS).min(n);
        let batch = build_batch(table, &schema, start, end)?;
        arrow_writer
            .write(&batch)
            .context("cannot write points.parquet")?;
        row_groups += 1;
        start = end;
        if n == 0 {
            break;
        }
    }
    arrow_writer
        .close()
        .context("cannot finish points.parquet")?;
    Ok(PointsWritten {
        rows: n,
        row_groups: if n == 0 { 0 } else { row_groups },
        columns: schema.fields().iter().map(|f| f.name().clone()).collect(),
        renamed,
    })
}

fn check_lengths(table: &PointsTable<'_>, n: usize) -> anyhow::Result<()> {
    let check = |name: &str, len: usize| {
        ensure!(
            len == n,
            "points.parquet: column '{name}' has {len} values for {n} paths"
        );
        Ok(())
    };
    check("x/y/z", table.points.len())?;
    check("cluster", table.clusters.len())?;
    check("duplicate_group", table.duplicate_groups.len())?;
    if let Some(c) = &table.curation {
        check("label", c.labels.len())?;
        check("suggested_label", c.suggested_labels.len())?;
        check("label_issue_score", c.label_issue_scores.len())?;
        check("outlier_score", c.outlier_scores.len())?;
        check("issues", c.issues.len())?;
    }
    for m in table.metadata {
        check(&m.name, m.values.len())?;
    }
    if let Some(e) = table.embeddings {
        check("embedding", e.n)?;
        ensure!(
            e.data.len() == e.n * e.dim && e.dim > 0 && e.dim <= i32::MAX as usize,
            "points.parquet: the embedding matrix is not {} x {}",
            e.n,
            e.dim
        );
    }
    if let Some(nb) = &table.neighbors {
        ensure!(
            nb.indices.len() == n * nb.k && nb.distances.len() == n * nb.k,
            "points.parquet: the neighbour lists are not {n} x {}",
            nb.k
        );
        ensure!(
            n <= i32::MAX as usize,
            "points.parquet: too many rows for int32 neighbour ids"
        );
        if let Some(bad) = nb
            .indices
            .iter()
            .find(|&&j| j != u32::MAX && j as usize >= n)
        {
            bail!("points.parquet: neighbour index {bad} is out of range for {n} points");
        }
    }
    Ok(())
}

fn item(dt: DataType) -> Arc<Field> {
    Arc::new(Field::new("item", dt, false))
}

fn neighbor_fields() -> Fields {
    Fields::from(vec![
        Field::new("ids", DataType::List(item(DataType::Int32)), false),
        Field::new("distances", DataType::List(item(DataType::Float32)), false),
    ])
}

/// The names the metadata columns are written under: their own, or with a
/// `source_` prefix (then `source_<name>_2`, …) where a column of ours, or
/// the optional `embedding` and `neighbors`, already has it. Also the renamed
/// ones: (source, written).
pub fn metadata_column_names(
    mut taken: Vec<String>,
    metadata: &[MetadataColumn],
) -> (Vec<String>, Vec<(String, String)>) {
    taken.extend(["embedding".to_owned(), "neighbors".to_owned()]);
    let mut names = Vec::with_capacity(metadata.len());
    let mut renamed = Vec::new();
    for m in metadata {
        let mut name = m.name.clone();
        if taken.contains(&name) {
            name = format!("source_{}", m.name);
            let mut k = 2;
            while taken.contains(&name) {
                name = format!("source_{}_{k}", m.name);
                k += 1;
            }
            renamed.push((m.name.clone(), name.clone()));
        }
        taken.push(name.clone());
        names.push(name);
    }
    (names, renamed)
}

/// The schema, and metadata columns renamed because their name was taken.
fn schema(table: &PointsTable<'_>) -> (SchemaRef, Vec<(String, String)>) {
    let mut fields = vec![
        Field::new("path", DataType::Utf8, false),
        Field::new("x", DataType::Float32, false),
        Field::new("y", DataType::Float32, false),
        Field::new("z", DataType::Float32, false),
        Field::new("cluster", DataType::Int32, false),
        Field::new("duplicate_group", DataType::Int32, false),
    ];
    if table.curation.is_some() {
        fields.extend([
            Field::new("label", DataType::Utf8, true),
            Field::new("suggested_label", DataType::Utf8, true),
            Field::new("label_issue_score", DataType::Float32, true),
            Field::new("outlier_score", DataType::Float32, true),
            Field::new("issues", DataType::Utf8, false),
        ]);
    }
    let taken: Vec<String> = fields.iter().map(|f| f.name().clone()).collect();
    let (names, renamed) = metadata_column_names(taken, table.metadata);
    for (m, name) in table.metadata.iter().zip(names) {
        let dt = match m.values {
            MetadataValues::Int(_) => DataType::Int64,
            MetadataValues::Float(_) => DataType::Float64,
            MetadataValues::Bool(_) => DataType::Boolean,
            MetadataValues::Text(_) => DataType::Utf8,
        };
        fields.push(Field::new(name, dt, true));
    }
    if let Some(e) = table.embeddings {
        fields.push(Field::new(
            "embedding",
            DataType::FixedSizeList(item(DataType::Float32), e.dim as i32),
            false,
        ));
    }
    if table.neighbors.is_some() {
        fields.push(Field::new(
            "neighbors",
            DataType::Struct(neighbor_fields()),
            false,
        ));
    }
    (Arc::new(Schema::new(fields)), renamed)
}

fn strings<S: AsRef<str>>(values: &[Option<S>]) -> ArrayRef {
    Arc::new(
        values
            .iter()
            .map(|v| v.as_ref().map(|s| s.as_ref()))
            .collect::<StringArray>(),
    )
}

/// Rows `start..end` as one record batch.
fn build_batch(
    table: &PointsTable<'_>,
    schema: &SchemaRef,
    start: usize,
    end: usize,
) -> anyhow::Result<RecordBatch> {
    let range = start..end;
    let points = &table.points[range.clone()];
    let coord = |axis: usize| -> ArrayRef {
        Arc::new(points.iter().map(|p| p[axis]).collect::<Float32Array>())
    };
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(&table.paths[range.clone()])),
        coord(0),
        coord(1),
        coord(2),
        Arc::new(Int32Array::from(table.clusters[range.clone()].to_vec())),
        Arc::new(Int32Array::from(
            table.duplicate_groups[range.clone()].to_vec(),
        )),
    ];
    if let Some(c) = &table.curation {
        columns.push(strings(&c.labels[range.clone()]));
        columns.push(strings(&c.suggested_labels[range.clone()]));
        columns.push(Arc::new(Float32Array::from(
            c.label_issue_scores[range.clone()].to_vec(),
        )));
        columns.push(Arc::new(Float32Array::from(
            c.outlier_scores[range.clone()].to_vec(),
        )));
        columns.push(Arc::new(StringArray::from_iter_values(
            &c.issues[range.clone()],
        )));
    }
    for m in table.metadata {
        columns.push(match &m.values {
            MetadataValues::Int(v) => Arc::new(Int64Array::from(v[range.clone()].to_vec())),
            MetadataValues::Float(v) => Arc::new(Float64Array::from(v[range.clone()].to_vec())),
            MetadataValues::Bool(v) => Arc::new(BooleanArray::from(v[range.clone()].to_vec())),
            MetadataValues::Text(v) => strings(&v[range.clone()]),
        });
    }
    if let Some(e) = table.embeddings {
        let values = Float32Array::from(e.data[start * e.dim..end * e.dim].to_vec());
        columns.push(Arc::new(FixedSizeListArray::try_new(
            item(DataType::Float32),
            e.dim as i32,
            Arc::new(values),
            None,
        )?));
    }
    if let Some(nb) = &table.neighbors {
        columns.push(neighbors_array(nb, start, end)?);
    }
    RecordBatch::try_new(schema.clone(), columns).context("cannot assemble points.parquet")
}

/// `struct<ids: list<int32>, distances: list<float32>>` for rows `start..end`.
fn neighbors_array(nb: &NeighborLists<'_>, start: usize, end: usize) -> anyhow::Result<ArrayRef> {
    let rows = end - start;
    let mut ids = Int32Builder::with_capacity(rows * nb.k);
    let mut distances = Float32Builder::with_capacity(rows * nb.k);
    let mut lengths = Vec::with_capacity(rows);
    for i in start..end {
        let range = i * nb.k..(i + 1) * nb.k;
        let mut len = 0;
        for (&j, &d) in nb.indices[range.clone()].iter().zip(&nb.distances[range]) {
            if j == u32::MAX || j as usize == i {
                continue;
            }
            ids.append_value(j as i32);
            distances.append_value(if nb.distances_are_chord {
                d * d / 2.0
            } else {
                d
            });
            len += 1;
        }
        lengths.push(len);
    }
    let offsets = OffsetBuffer::<i32>::from_lengths(lengths);
    let ids = ListArray::try_new(
        item(DataType::Int32),
        offsets.clone(),
        Arc::new(ids.finish()),
        None,
    )?;
    let distances = ListArray::try_new(
        item(DataType::Float32),
        offsets,
        Arc::new(distances.finish()),
        None,
    )?;
    Ok(Arc::new(StructArray::try_new(
        neighbor_fields(),
        vec![Arc::new(ids), Arc::new(distances)],
        None,
    )?))
}

#[cfg(test)]
mod tests;
