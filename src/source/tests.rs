//! Reads the fixtures written by `make_parquet_fixtures.py` (pyarrow, pandas,
//! numpy) under tests/fixtures/parquet/. Every vector there is
//! `value(row, j) = ((row * 7 + j * 3) % 11) - 5 + 0.5`.

use super::*;
use crate::progress::{NoProgress, ProgressEvent};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/parquet")
        .join(name)
}

fn value(row: usize, j: usize) -> f32 {
    (((row * 7 + j * 3) % 11) as f32) - 5.0 + 0.5
}

fn expected_row(row: usize, dim: usize) -> Vec<f32> {
    let mut v: Vec<f32> = (0..dim).map(|j| value(row, j)).collect();
    l2_normalize(&mut v);
    v
}

fn read_with(name: &str, options: &ReadOptions) -> anyhow::Result<ExternalEmbeddings> {
    read(&fixture(name), options, &NoProgress, &CancelToken::new())
}

fn read_ok(name: &str) -> ExternalEmbeddings {
    read_with(name, &ReadOptions::default()).unwrap_or_else(|e| panic!("{name}: {e:#}"))
}

fn read_err(name: &str) -> String {
    match read_with(name, &ReadOptions::default()) {
        Ok(e) => panic!("{name}: expected an error, read {} rows", e.embeddings.n),
        Err(e) => format!("{e:#}"),
    }
}

/// Checks kept row `i` against source row `row` (tolerance for float16).
fn assert_row(e: &ExternalEmbeddings, i: usize, row: usize, tolerance: f32) {
    let want = expected_row(row, e.embeddings.dim);
    let got = e.embeddings.row(i);
    for (j, (a, b)) in got.iter().zip(&want).enumerate() {
        assert!(
            (a - b).abs() <= tolerance,
            "row {i} (source row {row}) value {j}: got {a}, want {b}"
        );
    }
    let norm = dot(got, got).sqrt();
    assert!((norm - 1.0).abs() < 1e-5, "row {i} has norm {norm}");
}

fn text(e: &ExternalEmbeddings, name: &str) -> Vec<Option<String>> {
    match &e.metadata.iter().find(|m| m.name == name).unwrap().values {
        MetadataValues::Text(v) => v.clone(),
        other => panic!("{name} is {}", other.kind()),
    }
}

#[test]
fn fixed_size_list_f32_with_paths_that_partly_resolve() {
    let e = read_ok("fixed_f32.parquet");
    assert_eq!(e.kind, SourceKind::Parquet);
    assert_eq!((e.embeddings.n, e.embeddings.dim), (10, 8));
    assert_eq!(e.vector_column, "embedding");
    assert_eq!(e.path_column.as_deref(), Some("path"));
    assert!(e.paths_are_files);
    assert_eq!(e.ids[3], "images/img_03.png");
    for i in 0..10 {
        assert_row(&e, i, i, 1e-6);
    }
    assert!(e.skipped.is_empty());
    assert!(e.metadata.is_empty());
    // 6 of the 10 images exist beside the file.
    assert_eq!(e.images.resolved, 6);
    assert_eq!(
        e.images.exists,
        [
            true, true, true, true, true, true, false, false, false, false
        ]
    );
    assert_eq!(e.image_path(0), Some(fixture("images/img_00.png")));
    assert_eq!(e.image_path(7), None);
    assert!(
        e.warnings
            .iter()
            .any(|w| w.contains("6 of 10 paths resolve")),
        "{:?}",
        e.warnings
    );
}

#[test]
fn images_root_moves_where_paths_resolve() {
    let options = ReadOptions {
        images_root: Some(fixture("images/..")),
        ..Default::default()
    };
    assert_eq!(
        read_with("fixed_f32.parquet", &options)
            .unwrap()
            .images
            .resolved,
        6
    );
    let options = ReadOptions {
        images_root: Some(fixture("parts")),
        ..Default::default()
    };
    let e = read_with("fixed_f32.parquet", &options).unwrap();
    assert_eq!(e.images.resolved, 0);
    assert!(
        e.warnings
            .iter()
            .any(|w| w.contains("0 of 10 paths resolve"))
    );
}

#[test]
fn image_lookup_stops_when_nothing_resolves() {
    let ids: Vec<String> = (0..5000).map(|i| format!("nowhere/{i}.png")).collect();
    let links = link_images(&ids, true, Some(fixture("")), &CancelToken::new()).unwrap();
    assert_eq!((links.resolved, links.checked), (0, 4096));
    let mut ids = ids;
    ids[4095] = "images/img_01.png".into();
    let links = link_images(&ids, true, Some(fixture("")), &CancelToken::new()).unwrap();
    assert_eq!((links.resolved, links.checked), (1, 5000));
    assert!(links.exists[4095]);
}

#[test]
fn pandas_list_f32_zstd_with_filepath_and_large_strings() {
    let e = read_ok("list_f32.parquet");
    assert_eq!((e.embeddings.n, e.embeddings.dim), (7, 8));
    assert_eq!(e.vector_column, "vec");
    assert_eq!(e.path_column.as_deref(), Some("filepath"));
    assert_eq!(e.ids[6], "photos/6.jpg");
    for i in 0..7 {
        assert_row(&e, i, i, 1e-6);
    }
    assert_eq!(text(&e, "label")[4].as_deref(), Some("class_1"));
    assert_eq!(e.images.resolved, 0);
}

#[test]
fn float16_within_half_precision() {
    let e = read_ok("float16.parquet");
    assert_eq!((e.embeddings.n, e.embeddings.dim), (5, 8));
    assert_eq!(e.path_column.as_deref(), Some("image_path"));
    assert_eq!(e.ids[0], "/abs/dir/0.png");
    // The fixture stores value / 3 rounded to float16 (relative error up to
    // 2^-11 per value): the normalised rows match within float16's precision.
    for i in 0..5 {
        assert_row(&e, i, i, 2e-3);
    }
    let exact: f32 = (0..5)
        .map(|i| {
            let want = expected_row(i, 8);
            let got = e.embeddings.row(i);
            got.iter()
                .zip(&want)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f32::max)
        })
        .fold(0.0, f32::max);
    assert!(exact > 1e-6, "float16 rounding should show: {exact}");
}

#[test]
fn float64_large_list_gzip_with_file_name() {
    let e = read_ok("float64.parquet");
    assert_eq!((e.embeddings.n, e.embeddings.dim), (6, 8));
    assert_eq!(e.path_column.as_deref(), Some("file_name"));
    for i in 0..6 {
        assert_row(&e, i, i, 1e-6);
    }
}

#[test]
fn ray_and_arrow_tensor_extension_columns() {
    // Ray Data's tensor column: extension over large_list<float>.
    let e = read_ok("ray_tensor.parquet");
    assert_eq!((e.embeddings.n, e.embeddings.dim), (3, 8));
    assert_eq!(e.vector_column, "embedding");
    assert_row(&e, 1, 1, 1e-6);
    // Arrow's canonical fixed_shape_tensor: extension over fixed_size_list;
    // the pandas index column beside it is not metadata.
    let e = read_ok("fixed_shape_tensor.parquet");
    assert_eq!(e.ids, ["t/0.png", "t/1.png", "t/2.png"]);
    assert_row(&e, 2, 2, 1e-6);
    assert!(e.metadata.is_empty(), "{:?}", e.metadata);
}

#[test]
fn several_row_groups_in_order() {
    let e = read_ok("row_groups.parquet");
    assert_eq!((e.embeddings.n, e.embeddings.dim), (100, 12));
    for i in 0..100 {
        assert_row(&e, i, i, 1e-6);
        assert_eq!(e.ids[i], format!("r/{i:03}.png"));
    }
    let MetadataValues::Int(idx) = &e.metadata[0].values else {
        panic!("idx is not int")
    };
    assert_eq!(
        idx.iter().map(|v| v.unwrap()).collect::<Vec<_>>(),
        (0..100).collect::<Vec<_>>()
    );
    assert_eq!(e.metadata[0].source_type, "Int64");
}

#[test]
fn folder_of_parts_sorted_and_markers_skipped() {
    assert_eq!(detect(&fixture("parts")), SourceKind::Parquet);
    let e = read_ok("parts");
    assert_eq!(e.files.len(), 3, "{:?}", e.files);
    assert!(e.files[0].ends_with("part-00000-c000.snappy.parquet"));
    assert_eq!((e.embeddings.n, e.embeddings.dim), (12, 8));
    for i in 0..12 {
        assert_row(&e, i, i, 1e-6);
        assert_eq!(e.ids[i], format!("p/{i}.png"));
    }
    let MetadataValues::Int(part) = &e.metadata[0].values else {
        panic!()
    };
    assert_eq!(part, &[0, 0, 0, 0, 1, 1, 1, 2, 2, 2, 2, 2].map(Some));
}

#[test]
fn parts_with_different_widths_name_the_file_and_column() {
    let err = read_err("parts_mismatch");
    assert!(err.contains("part-1.parquet"), "{err}");
    assert!(err.contains("'embedding'"), "{err}");
    assert!(err.contains("part-0.parquet"), "{err}");
}

#[test]
fn no_path_column_numbers_rows() {
    let e = read_ok("no_path.parquet");
    assert!(!e.paths_are_files);
    assert_eq!(e.path_column, None);
    assert_eq!(e.ids, ["0", "1", "2", "3"]);
    assert_eq!(text(&e, "id")[2].as_deref(), Some("item-2"));
    assert!(
        e.warnings.iter().any(|w| w.contains("no path column")),
        "{:?}",
        e.warnings
    );
    assert_eq!(e.images.resolved, 0);
    assert_eq!(e.image_path(0), None);
}

#[test]
fn path_column_can_be_named_or_wrong() {
    let options = ReadOptions {
        path_column: Some("id".into()),
        ..Default::default()
    };
    let e = read_with("no_path.parquet", &options).unwrap();
    assert_eq!(e.ids[1], "item-1");
    assert!(e.metadata.is_empty());
    let options = ReadOptions {
        path_column: Some("nope".into()),
        ..Default::default()
    };
    let err = format!("{:#}", read_with("no_path.parquet", &options).unwrap_err());
    assert!(
        err.contains("no column named 'nope'") && err.contains("no_path.parquet"),
        "{err}"
    );
}

#[test]
fn metadata_of_every_type() {
    let e = read_ok("metadata_types.parquet");
    let get = |name: &str| &e.metadata.iter().find(|m| m.name == name).unwrap().values;
    assert_eq!(
        get("i8"),
        &MetadataValues::Int(vec![Some(1), Some(-2), None, Some(4)])
    );
    assert_eq!(
        get("i32"),
        &MetadataValues::Int(vec![Some(10), Some(20), Some(30), None])
    );
    // 2^63 + 5 does not fit an i64: null, with a warning.
    assert_eq!(
        get("u64"),
        &MetadataValues::Int(vec![Some(1), Some(2), Some(3), None])
    );
    assert!(
        e.warnings
            .iter()
            .any(|w| w.contains("'u64': 1 value out of range"))
    );
    assert_eq!(
        get("f32"),
        &MetadataValues::Float(vec![Some(0.5), None, Some(1.5), Some(2.5)])
    );
    assert_eq!(
        get("f64"),
        &MetadataValues::Float(vec![Some(1e300), Some(-0.25), Some(3.0), None])
    );
    assert_eq!(
        get("flag"),
        &MetadataValues::Bool(vec![Some(true), Some(false), None, Some(true)])
    );
    let s =
        |v: &[Option<&str>]| MetadataValues::Text(v.iter().map(|s| s.map(String::from)).collect());
    assert_eq!(
        get("caption"),
        &s(&[Some("a cat"), None, Some(""), Some("ünïcödé")])
    );
    assert_eq!(
        get("category"),
        &s(&[Some("x"), Some("y"), Some("x"), None])
    );
    assert_eq!(
        get("day"),
        &s(&[
            Some("2024-01-02"),
            None,
            Some("1969-12-31"),
            Some("2000-02-29")
        ])
    );
    assert_eq!(
        get("when"),
        &s(&[
            Some("2024-01-02T03:04:05"),
            None,
            Some("2024-01-02T03:04:05.250"),
            Some("1970-01-01T00:00:00")
        ])
    );
    assert_eq!(
        get("when_utc"),
        &s(&[Some("2024-01-02T03:04:05Z"), None, None, None])
    );
    // Nested and binary columns are left out, each with a note.
    let names: Vec<&str> = e.metadata.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "i8", "i32", "u64", "f32", "f64", "flag", "caption", "category", "day", "when",
            "when_utc"
        ]
    );
    for column in ["extra", "tags", "raw"] {
        assert!(
            e.warnings
                .iter()
                .any(|w| w.contains(&format!("'{column}'")) && w.contains("left out")),
            "{column}: {:?}",
            e.warnings
        );
    }
    assert_eq!(
        e.metadata
            .iter()
            .find(|m| m.name == "category")
            .unwrap()
            .source_type,
        "Dictionary(Int32, Utf8)"
    );
}

#[test]
fn bad_rows_are_skipped_with_their_reason() {
    let e = read_ok("bad_rows.parquet");
    let reasons: Vec<(u64, &str, &str)> = e
        .skipped
        .iter()
        .map(|s| (s.row, s.id.as_str(), s.reason.as_str()))
        .collect();
    assert_eq!(
        reasons,
        [
            (1, "bad/1.png", NAN_VALUE),
            (3, "bad/3.png", ZERO_VECTOR),
            (4, "bad/4.png", INFINITE_VALUE),
            (5, "bad/5.png", NULL_VECTOR),
        ]
    );
    assert!(e.skipped[0].file.ends_with("bad_rows.parquet"));
    assert_eq!(e.ids, ["bad/0.png", "bad/2.png", "bad/6.png"]);
    assert_row(&e, 0, 0, 1e-6);
    assert_row(&e, 1, 2, 1e-6);
    // 3e38 in every place overflows the squared norm: still a unit vector,
    // all components equal.
    let huge = e.embeddings.row(2);
    for x in huge {
        assert!((x - 1.0 / 8f32.sqrt()).abs() < 1e-6, "{huge:?}");
    }
    assert_eq!(e.rows_read, 7);
}

#[test]
fn mixed_widths_is_an_error_naming_file_column_and_row() {
    let err = read_err("mixed_widths.parquet");
    assert!(err.contains("mixed_widths.parquet"), "{err}");
    assert!(
        err.contains("'embedding'") && err.contains("row 2") && err.contains("7 values"),
        "{err}"
    );
}

#[test]
fn no_vector_column_is_an_error_listing_columns() {
    let err = read_err("no_vector.parquet");
    assert!(
        err.contains("no_vector.parquet") && err.contains("no vector column"),
        "{err}"
    );
    assert!(err.contains("score (Float64)"), "{err}");
}

#[test]
fn two_vector_columns_ask_for_a_choice() {
    let err = read_err("two_vectors.parquet");
    assert!(
        err.contains("--vector-column") && err.contains("img, txt"),
        "{err}"
    );
    let options = ReadOptions {
        vector_column: Some("txt".into()),
        ..Default::default()
    };
    let e = read_with("two_vectors.parquet", &options).unwrap();
    assert_row(&e, 0, 5, 1e-6);
    assert!(
        e.warnings
            .iter()
            .any(|w| w.contains("'img'") && w.contains("nested"))
    );
    let options = ReadOptions {
        vector_column: Some("path".into()),
        ..Default::default()
    };
    let err = format!(
        "{:#}",
        read_with("two_vectors.parquet", &options).unwrap_err()
    );
    assert!(
        err.contains("'path' is Utf8, not a list of floats"),
        "{err}"
    );
}

#[test]
fn empty_file_is_an_error() {
    let err = read_err("empty.parquet");
    assert!(
        err.contains("empty.parquet") && err.contains("no rows") && err.contains("'embedding'"),
        "{err}"
    );
}

#[test]
fn truncated_and_random_files_are_errors_not_panics() {
    for name in ["truncated.parquet", "random.parquet"] {
        let err = read_err(name);
        assert!(
            err.contains(name) && err.contains("not a readable Parquet file"),
            "{err}"
        );
    }
}

#[test]
fn brotli_is_read() {
    let e = read_ok("brotli.parquet");
    assert_eq!((e.embeddings.n, e.embeddings.dim), (3, 8));
    assert_row(&e, 2, 2, 1e-6);
}

#[test]
fn clip_retrieval_folder_float16_npy_and_metadata() {
    let e = read_ok("clip");
    assert_eq!(e.kind, SourceKind::ClipRetrieval);
    assert_eq!((e.embeddings.n, e.embeddings.dim), (7, 8));
    assert_eq!(e.vector_column, "img_emb");
    assert_eq!(e.path_column.as_deref(), Some("image_path"));
    for i in 0..7 {
        assert_row(&e, i, i, 1e-6);
        assert_eq!(e.ids[i], format!("/data/imgs/{i:05}.jpg"));
    }
    assert_eq!(text(&e, "caption")[5].as_deref(), Some("caption 5"));
    let MetadataValues::Int(w) = &e
        .metadata
        .iter()
        .find(|m| m.name == "width")
        .unwrap()
        .values
    else {
        panic!()
    };
    assert_eq!(w[6], Some(262));
    // text_emb is not read.
    assert_eq!(e.files.len(), 4);
    assert!(
        e.files
            .iter()
            .all(|f| !f.to_string_lossy().contains("text_emb"))
    );
}

#[test]
fn clip_retrieval_mismatched_rows_and_missing_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let copy = |from: &str, to: &str| {
        std::fs::create_dir_all(dir.path().join(to).parent().unwrap()).unwrap();
        std::fs::copy(fixture(from), dir.path().join(to)).unwrap();
    };
    copy("clip/img_emb/img_emb_0.npy", "img_emb/img_emb_0.npy");
    copy("clip/img_emb/img_emb_1.npy", "img_emb/img_emb_1.npy");
    copy(
        "clip/metadata/metadata_0.parquet",
        "metadata/metadata_0.parquet",
    );
    let err = format!(
        "{:#}",
        read(
            dir.path(),
            &ReadOptions::default(),
            &NoProgress,
            &CancelToken::new()
        )
        .unwrap_err()
    );
    assert!(
        err.contains("img_emb_1.npy") && err.contains("metadata_1.parquet"),
        "{err}"
    );
    // Metadata of part 0 put against the embeddings of part 1 (3 vs 4 rows).
    copy(
        "clip/metadata/metadata_0.parquet",
        "metadata/metadata_1.parquet",
    );
    let err = format!(
        "{:#}",
        read(
            dir.path(),
            &ReadOptions::default(),
            &NoProgress,
            &CancelToken::new()
        )
        .unwrap_err()
    );
    assert!(
        err.contains("has 4 rows but") && err.contains("has 3"),
        "{err}"
    );
    // No metadata folder at all: numbered rows.
    std::fs::remove_dir_all(dir.path().join("metadata")).unwrap();
    let e = read(
        dir.path(),
        &ReadOptions::default(),
        &NoProgress,
        &CancelToken::new(),
    )
    .unwrap();
    assert_eq!(e.ids, ["0", "1", "2", "3", "4", "5", "6"]);
    assert!(!e.paths_are_files);
}

#[test]
fn lone_npy_with_and_without_metadata() {
    assert_eq!(detect(&fixture("lone.npy")), SourceKind::Npy);
    let e = read_ok("lone.npy");
    assert_eq!((e.embeddings.n, e.embeddings.dim), (5, 8));
    assert_eq!(e.ids, ["0", "1", "2", "3", "4"]);
    for i in 0..5 {
        assert_row(&e, i, i, 1e-6);
    }
    let e = read_ok("with_meta.npy");
    assert_eq!(e.ids, ["x.png", "y.png", "z.png"]);
    assert_row(&e, 2, 2, 1e-6);
    assert_eq!(
        e.metadata[0].values,
        MetadataValues::Int(vec![Some(1), Some(2), Some(3)])
    );
}

#[test]
fn truncated_npy_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(fixture("lone.npy")).unwrap();
    let path = dir.path().join("cut.npy");
    std::fs::write(&path, &bytes[..bytes.len() - 10]).unwrap();
    let err = format!(
        "{:#}",
        read(
            &path,
            &ReadOptions::default(),
            &NoProgress,
            &CancelToken::new()
        )
        .unwrap_err()
    );
    assert!(
        err.contains("cut.npy") && err.contains("truncated"),
        "{err}"
    );
    std::fs::write(&path, b"\x93NUMPY\x01\x00\xff\xff").unwrap();
    assert!(
        read(
            &path,
            &ReadOptions::default(),
            &NoProgress,
            &CancelToken::new()
        )
        .is_err()
    );
}

#[test]
fn detect_tells_sources_apart() {
    assert_eq!(detect(&fixture("fixed_f32.parquet")), SourceKind::Parquet);
    assert_eq!(detect(&fixture("clip")), SourceKind::ClipRetrieval);
    assert_eq!(detect(&fixture("images")), SourceKind::ImageFolder);
    assert_eq!(
        detect(&fixture("images/img_00.png")),
        SourceKind::ImageFolder
    );
    assert_eq!(detect(&fixture("does-not-exist")), SourceKind::Unknown);
    assert_eq!(detect(&fixture("clip/metadata")), SourceKind::Parquet);
    // A folder with images at its top level is an image folder even with a
    // Parquet file beside them.
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(fixture("images/img_00.png"), dir.path().join("a.png")).unwrap();
    std::fs::copy(
        fixture("fixed_f32.parquet"),
        dir.path().join("meta.parquet"),
    )
    .unwrap();
    assert_eq!(detect(dir.path()), SourceKind::ImageFolder);
    // Images only in subfolders: left to the image scan.
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("cats")).unwrap();
    assert_eq!(detect(dir.path()), SourceKind::ImageFolder);
    // A Parquet file without the extension is recognised by its magic bytes.
    let renamed = dir.path().join("part-00000");
    std::fs::copy(fixture("fixed_f32.parquet"), &renamed).unwrap();
    assert_eq!(detect(&renamed), SourceKind::Parquet);
    let err = format!(
        "{:#}",
        read(
            &fixture("images"),
            &ReadOptions::default(),
            &NoProgress,
            &CancelToken::new()
        )
        .unwrap_err()
    );
    assert!(err.contains("holds images"), "{err}");
}

#[test]
fn progress_and_cancellation() {
    let events = std::sync::Mutex::new(Vec::new());
    let sink = |e: ProgressEvent| events.lock().unwrap().push(e);
    read(
        &fixture("row_groups.parquet"),
        &ReadOptions::default(),
        &sink,
        &CancelToken::new(),
    )
    .unwrap();
    let events = events.into_inner().unwrap();
    assert!(matches!(
        events[0],
        ProgressEvent::Started {
            stage: Stage::Embed,
            total: Some(100)
        }
    ));
    assert!(
        events
            .iter()
            .any(|e| matches!(e, ProgressEvent::Advanced { done: 100, .. }))
    );
    assert!(matches!(
        events.last(),
        Some(ProgressEvent::Finished { .. })
    ));
    let cancel = CancelToken::new();
    cancel.cancel();
    let err = read(
        &fixture("row_groups.parquet"),
        &ReadOptions::default(),
        &NoProgress,
        &cancel,
    )
    .unwrap_err();
    assert!(crate::progress::is_cancelled(&err));
}

#[test]
fn collector_normalises_and_rejects() {
    let mut c = Collector::new(4, 1000);
    c.check_width(3, Path::new("f"), "v", 0).unwrap();
    assert_eq!(c.push_f32(&[3.0, 4.0, 0.0]), Ok(()));
    assert_eq!(c.push_f32(&[0.0, 0.0, 0.0]), Err(ZERO_VECTOR));
    assert_eq!(
        c.push_f32(&[1e-30, 0.0, 0.0]),
        Ok(()),
        "tiny values underflow the squared norm"
    );
    assert_eq!(
        c.push_f64(&[1e300, -1e300, 0.0]),
        Ok(()),
        "beyond float32's range"
    );
    assert_eq!(c.push_f64(&[f64::NAN, 0.0, 0.0]), Err(NAN_VALUE));
    assert_eq!(
        c.push_f16(&[half::f16::INFINITY, half::f16::ONE, half::f16::ONE]),
        Err(INFINITE_VALUE)
    );
    assert_eq!(&c.data[..3], &[0.6, 0.8, 0.0]);
    assert_eq!(&c.data[3..6], &[1.0, 0.0, 0.0]);
    let s = 1.0 / 2f32.sqrt();
    assert!((c.data[6] - s).abs() < 1e-7 && (c.data[7] + s).abs() < 1e-7);
    assert_eq!(c.data.len(), 9, "rejected rows leave nothing behind");
    let err = c
        .check_width(4, Path::new("f.parquet"), "v", 9)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("f.parquet") && err.contains("'v'") && err.contains("row 9"),
        "{err}"
    );
}

/// Flips, truncates and overwrites bytes of valid fixtures: every result must
/// be an error or a read, never a panic. Deterministic (a fixed seed); 3000
/// rounds by default (about 1 in 1500 damaged files makes arrow-rs 60 panic,
/// which the reader must turn into an error), `EMBEDSCOPE_FUZZ_ROUNDS=N` for more.
#[test]
fn fuzzed_files_never_panic() {
    let rounds: usize = std::env::var("EMBEDSCOPE_FUZZ_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(3000);
    let dir = tempfile::tempdir().unwrap();
    let mut rng = crate::rng::Rng::new(7);
    let sources = [
        "fixed_f32.parquet",
        "list_f32.parquet",
        "metadata_types.parquet",
        "float16.parquet",
        "lone.npy",
    ];
    let mut errors = 0;
    let mut decoder_panics = 0;
    for round in 0..rounds {
        let name = sources[round % sources.len()];
        let mut bytes = std::fs::read(fixture(name)).unwrap();
        match rng.below(3) {
            0 => bytes.truncate(rng.below(bytes.len())),
            1 => {
                for _ in 0..1 + rng.below(8) {
                    let at = rng.below(bytes.len());
                    bytes[at] ^= 1 << rng.below(8);
                }
            }
            _ => {
                let at = rng.below(bytes.len());
                let len = rng.below(64).min(bytes.len() - at);
                for b in &mut bytes[at..at + len] {
                    *b = rng.below(256) as u8;
                }
            }
        }
        let ext = if name.ends_with(".npy") {
            "npy"
        } else {
            "parquet"
        };
        let path = dir.path().join(format!("fuzz{round}.{ext}"));
        std::fs::write(&path, &bytes).unwrap();
        // Keep the folder small on long runs.
        let _cleanup = Cleanup(&path);
        let result = std::panic::catch_unwind(|| {
            read(
                &path,
                &ReadOptions::default(),
                &NoProgress,
                &CancelToken::new(),
            )
            .map(|e| e.embeddings.n)
        });
        match result {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                errors += 1;
                let message = format!("{e:#}");
                assert!(message.contains(&format!("fuzz{round}")), "{message}");
                decoder_panics += usize::from(message.contains("decoder failed"));
            }
            Err(_) => panic!("round {round}: reading a damaged {name} panicked"),
        }
    }
    eprintln!(
        "{errors} of {rounds} damaged files refused, {decoder_panics} of them after a decoder panic"
    );
    assert!(
        errors > rounds / 6,
        "only {errors} of {rounds} damaged files were refused"
    );
}

struct Cleanup<'a>(&'a Path);

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(self.0);
    }
}
