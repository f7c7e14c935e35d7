use super::*;
use crate::progress::NoProgress;
use crate::source::{ReadOptions, SourceKind, detect, read};
use crate::{CancelToken, l2_normalize};

use arrow_array::Array;
use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, Int32Type};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

/// A small table with every optional part: n points, k neighbours, dim 4.
struct Sample {
    paths: Vec<String>,
    points: Vec<Point3>,
    clusters: Vec<i32>,
    duplicates: Vec<i32>,
    labels: Vec<Option<String>>,
    suggested: Vec<Option<String>>,
    label_scores: Vec<Option<f32>>,
    outlier_scores: Vec<Option<f32>>,
    issues: Vec<String>,
    metadata: Vec<MetadataColumn>,
    embeddings: Embeddings,
    k: usize,
    indices: Vec<u32>,
    distances: Vec<f32>,
}

fn sample(n: usize) -> Sample {
    sample_padded(n, true)
}

/// `pad`: replace row 0's last neighbour by the padding `KnnGraph` uses.
fn sample_padded(n: usize, pad: bool) -> Sample {
    let dim = 4;
    let mut data = Vec::with_capacity(n * dim);
    for i in 0..n {
        let mut row: Vec<f32> = (0..dim)
            .map(|j| ((i * 5 + j * 3) % 7) as f32 + 1.0)
            .collect();
        l2_normalize(&mut row);
        data.extend(row);
    }
    let embeddings = Embeddings::new(n, dim, data);
    // Exact neighbours by brute force; row 0 padded to test the padding rule.
    let k = 3.min(n.saturating_sub(1));
    let mut indices = Vec::new();
    let mut distances = Vec::new();
    for i in 0..n {
        let mut others: Vec<(f32, u32)> = (0..n)
            .filter(|&j| j != i)
            .map(|j| {
                let cos = crate::dot(embeddings.row(i), embeddings.row(j));
                ((2.0 - 2.0 * cos).max(0.0).sqrt(), j as u32)
            })
            .collect();
        others.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        for (d, j) in others.into_iter().take(k) {
            indices.push(j);
            distances.push(d);
        }
    }
    if pad && n > 1 {
        indices[k - 1] = u32::MAX;
        distances[k - 1] = f32::INFINITY;
    }
    Sample {
        paths: (0..n).map(|i| format!("img/{i}.png")).collect(),
        points: (0..n)
            .map(|i| [i as f32, -(i as f32), 0.5 * i as f32])
            .collect(),
        clusters: (0..n).map(|i| (i % 3) as i32 - 1).collect(),
        duplicates: (0..n).map(|i| if i < 2 { 0 } else { -1 }).collect(),
        labels: (0..n).map(|i| Some(format!("c{}", i % 2))).collect(),
        suggested: (0..n).map(|i| (i == 1).then(|| "c0".to_owned())).collect(),
        label_scores: (0..n)
            .map(|i| (i % 2 == 0).then_some(i as f32 / 10.0))
            .collect(),
        outlier_scores: (0..n).map(|i| Some(i as f32)).collect(),
        issues: (0..n)
            .map(|i| {
                if i == 1 {
                    "label".into()
                } else {
                    String::new()
                }
            })
            .collect(),
        metadata: vec![
            MetadataColumn {
                name: "width".into(),
                source_type: "Int32".into(),
                values: MetadataValues::Int(
                    (0..n).map(|i| (i != 2).then_some(i as i64 * 10)).collect(),
                ),
            },
            MetadataColumn {
                name: "score".into(),
                source_type: "Float64".into(),
                values: MetadataValues::Float((0..n).map(|i| Some(i as f64 + 0.25)).collect()),
            },
            MetadataColumn {
                name: "ok".into(),
                source_type: "Boolean".into(),
                values: MetadataValues::Bool((0..n).map(|i| Some(i % 2 == 0)).collect()),
            },
            // Clashes with the curation column: written as `source_label`.
            MetadataColumn {
                name: "label".into(),
                source_type: "Utf8".into(),
                values: MetadataValues::Text(
                    (0..n)
                        .map(|i| (i != 0).then(|| format!("orig{i}")))
                        .collect(),
                ),
            },
        ],
        embeddings,
        k,
        indices,
        distances,
    }
}

/// A reader over written bytes (through a temporary file: `File` is a
/// `ChunkReader` without another dependency).
fn reader_of(buf: Vec<u8>) -> ParquetRecordBatchReaderBuilder<std::fs::File> {
    let mut file = tempfile::tempfile().unwrap();
    std::io::Write::write_all(&mut file, &buf).unwrap();
    ParquetRecordBatchReaderBuilder::try_new(file).unwrap()
}

fn table(s: &Sample) -> PointsTable<'_> {
    PointsTable {
        paths: &s.paths,
        points: &s.points,
        clusters: &s.clusters,
        duplicate_groups: &s.duplicates,
        curation: Some(CurationColumns {
            labels: &s.labels,
            suggested_labels: &s.suggested,
            label_issue_scores: &s.label_scores,
            outlier_scores: &s.outlier_scores,
            issues: &s.issues,
        }),
        metadata: &s.metadata,
        embeddings: Some(&s.embeddings),
        neighbors: Some(NeighborLists {
            k: s.k,
            indices: &s.indices,
            distances: &s.distances,
            distances_are_chord: true,
        }),
    }
}

#[test]
fn columns_and_types_in_order() {
    let s = sample(10);
    let mut buf = Vec::new();
    let written = write_points_parquet(&table(&s), &mut buf).unwrap();
    assert_eq!(written.rows, 10);
    assert_eq!(
        written.renamed,
        [("label".to_owned(), "source_label".to_owned())]
    );
    assert_eq!(
        written.columns,
        [
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
            "width",
            "score",
            "ok",
            "source_label",
            "embedding",
            "neighbors"
        ]
    );
    let reader = reader_of(buf);
    let schema = reader.schema().clone();
    let types: Vec<String> = schema
        .fields()
        .iter()
        .map(|f| f.data_type().to_string())
        .collect();
    assert_eq!(
        &types[..6],
        ["Utf8", "Float32", "Float32", "Float32", "Int32", "Int32"]
    );
    assert_eq!(&types[11..14], ["Int64", "Float64", "Boolean"]);
    assert!(matches!(
        schema.field(15).data_type(),
        DataType::FixedSizeList(_, 4)
    ));
    let DataType::Struct(fields) = schema.field(16).data_type() else {
        panic!("neighbors is not a struct")
    };
    assert_eq!(fields[0].name(), "ids");
    assert_eq!(
        fields[0].data_type(),
        &DataType::List(item(DataType::Int32))
    );
    assert_eq!(fields[1].name(), "distances");
    assert_eq!(
        fields[1].data_type(),
        &DataType::List(item(DataType::Float32))
    );
    let batches: Vec<RecordBatch> = reader.build().unwrap().map(|b| b.unwrap()).collect();
    let batch = &batches[0];
    let nb = batch.column(16).as_struct();
    let ids = nb.column(0).as_list::<i32>();
    let dists = nb.column(1).as_list::<i32>();
    // Row 0 had its last neighbour padded: two left. Others: three.
    assert_eq!(ids.value_length(0), 2);
    assert_eq!(ids.value_length(1), 3);
    let row1 = ids.value(1);
    let row1 = row1.as_primitive::<Int32Type>();
    assert_eq!(
        row1.values(),
        &s.indices[3..6]
            .iter()
            .map(|&j| j as i32)
            .collect::<Vec<_>>()[..]
    );
    // Chord distances written as cosine distances 1 - cos.
    let d1 = dists.value(1);
    let d1 = d1.as_primitive::<Float32Type>();
    for (j, d) in d1.values().iter().enumerate() {
        let other = s.indices[3 + j] as usize;
        let cos = crate::dot(s.embeddings.row(1), s.embeddings.row(other));
        assert!((d - (1.0 - cos)).abs() < 1e-5, "{d} vs {}", 1.0 - cos);
    }
    // Nulls where the slices have None.
    assert!(batch.column(7).is_null(0) && batch.column(7).is_valid(1));
    assert!(batch.column(8).is_null(1));
    assert!(batch.column(11).is_null(2));
    assert!(batch.column(14).is_null(0));
}

#[test]
fn round_trip_through_our_reader() {
    let s = sample(10);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("points.parquet");
    write_points_parquet(&table(&s), std::fs::File::create(&path).unwrap()).unwrap();
    // points.parquet is itself a valid embedscope source.
    assert_eq!(detect(&path), SourceKind::Parquet);
    let e = read(
        &path,
        &ReadOptions::default(),
        &NoProgress,
        &CancelToken::new(),
    )
    .unwrap();
    assert_eq!(e.vector_column, "embedding");
    assert_eq!(e.ids, s.paths);
    assert_eq!(e.embeddings.dim, 4);
    for (a, b) in e.embeddings.data.iter().zip(&s.embeddings.data) {
        assert!((a - b).abs() < 1e-6);
    }
    let get = |name: &str| &e.metadata.iter().find(|m| m.name == name).unwrap().values;
    assert_eq!(
        get("cluster"),
        &MetadataValues::Int(s.clusters.iter().map(|&c| Some(c as i64)).collect())
    );
    assert_eq!(get("width"), &s.metadata[0].values);
    assert_eq!(get("score"), &s.metadata[1].values);
    assert_eq!(get("ok"), &s.metadata[2].values);
    assert_eq!(get("source_label"), &s.metadata[3].values);
    assert_eq!(
        get("suggested_label"),
        &MetadataValues::Text(s.suggested.clone())
    );
    let MetadataValues::Float(x) = get("x") else {
        panic!()
    };
    assert_eq!(x[3], Some(3.0));
    // The neighbors struct is nested: left out with a note.
    assert!(e.warnings.iter().any(|w| w.contains("'neighbors'")));
}

#[test]
fn minimal_table_and_row_groups() {
    // No curation, metadata, embedding or neighbours; more rows than a group.
    let n = ROW_GROUP_ROWS + 10;
    let paths: Vec<String> = (0..n).map(|i| i.to_string()).collect();
    let points = vec![[0.0, 1.0, 2.0]; n];
    let minus = vec![-1; n];
    let t = PointsTable {
        paths: &paths,
        points: &points,
        clusters: &minus,
        duplicate_groups: &minus,
        curation: None,
        metadata: &[],
        embeddings: None,
        neighbors: None,
    };
    let mut buf = Vec::new();
    let written = write_points_parquet(&t, &mut buf).unwrap();
    assert_eq!(
        written.columns,
        ["path", "x", "y", "z", "cluster", "duplicate_group"]
    );
    assert_eq!(written.row_groups, 2);
    let reader = reader_of(buf);
    let meta = reader.metadata();
    assert_eq!(meta.num_row_groups(), 2);
    assert_eq!(meta.row_group(0).num_rows(), ROW_GROUP_ROWS as i64);
    assert_eq!(
        meta.row_group(0).column(0).compression(),
        parquet::basic::Compression::ZSTD(ZstdLevel::try_new(1).unwrap())
    );
}

#[test]
fn empty_table_writes_a_valid_file() {
    let t = PointsTable {
        paths: &[],
        points: &[],
        clusters: &[],
        duplicate_groups: &[],
        curation: None,
        metadata: &[],
        embeddings: None,
        neighbors: None,
    };
    let mut buf = Vec::new();
    let written = write_points_parquet(&t, &mut buf).unwrap();
    assert_eq!((written.rows, written.row_groups), (0, 0));
    let reader = reader_of(buf);
    assert_eq!(reader.metadata().file_metadata().num_rows(), 0);
    assert_eq!(reader.schema().fields().len(), 6);
}

#[test]
fn mismatched_lengths_and_bad_neighbours_are_errors() {
    let s = sample(5);
    let mut t = table(&s);
    t.clusters = &s.clusters[..4];
    let err = write_points_parquet(&t, Vec::new())
        .unwrap_err()
        .to_string();
    assert!(err.contains("'cluster' has 4 values for 5 paths"), "{err}");
    let mut bad = s.indices.clone();
    bad[4] = 99;
    let mut t = table(&s);
    t.neighbors = Some(NeighborLists {
        k: s.k,
        indices: &bad,
        distances: &s.distances,
        distances_are_chord: false,
    });
    let err = write_points_parquet(&t, Vec::new())
        .unwrap_err()
        .to_string();
    assert!(err.contains("neighbour index 99"), "{err}");
}

/// Writes the sample to `$EMBEDSCOPE_ROUNDTRIP_OUT` (default: a temporary
/// folder) and, when `EMBEDSCOPE_PYTHON` names a Python with pyarrow, runs
/// tests/fixtures/parquet/check_points_parquet.py on it: pyarrow/pandas read every column and
/// the `neighbors` column is in Embedding Atlas's shape.
#[test]
fn round_trip_through_pyarrow_when_available() {
    // No padding: Embedding Atlas's PageRank stacks the rows (same count each).
    let s = sample_padded(50, false);
    let dir = tempfile::tempdir().unwrap();
    let out = std::env::var_os("EMBEDSCOPE_ROUNDTRIP_OUT")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| dir.path().join("points.parquet"));
    write_points_parquet(&table(&s), std::fs::File::create(&out).unwrap()).unwrap();
    let Some(python) = std::env::var_os("EMBEDSCOPE_PYTHON") else {
        eprintln!("EMBEDSCOPE_PYTHON not set: pyarrow check skipped");
        return;
    };
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/parquet/check_points_parquet.py");
    let status = std::process::Command::new(python)
        .arg(&script)
        .arg(&out)
        .status()
        .unwrap();
    assert!(
        status.success(),
        "{} failed on {}",
        script.display(),
        out.display()
    );
}

use std::path::Path;
