//! The `embedscope` command: its files, messages and exit codes.

use std::path::Path;

use crate::support::*;

#[test]
fn cli_writes_points_embeddings_and_report_and_reuses_the_cache() {
    let data = tempfile::tempdir().unwrap();
    copy_subset(3, data.path());
    std::fs::write(data.path().join("0/broken.png"), b"\x89PNG\r\n\x1a\nnope").unwrap();
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("out");
    let before = snapshot(data.path());
    let folder = data.path().to_str().unwrap();

    let run = embedscope(
        &["analyze", folder, "--out", out.to_str().unwrap(), "--quiet"],
        work.path(),
    );
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(stdout.contains("images read      30"), "{stdout}");
    assert!(stdout.contains("images skipped   1"), "{stdout}");

    let csv = std::fs::read_to_string(out.join("points.csv")).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "path,x,y,z,cluster,duplicate_group,label,suggested_label,label_issue_score,outlier_score,issues"
    );
    assert_eq!(lines.len(), 31);
    assert!(lines[1].starts_with("0/"));
    for line in &lines[1..] {
        let fields: Vec<&str> = line.split(',').collect();
        assert_eq!(fields.len(), 11, "{line}");
        for f in &fields[1..4] {
            assert!(f.parse::<f32>().unwrap().is_finite());
        }
        fields[4].parse::<i32>().unwrap();
        fields[5].parse::<i32>().unwrap();
        // Class folders are the labels: the given label is the folder.
        assert_eq!(fields[6], &fields[0][..1], "{line}");
        assert!(!fields[7].is_empty());
        let score: f32 = fields[8].parse().unwrap();
        assert!((0.0..=1.0).contains(&score));
        assert!(fields[9].parse::<f32>().unwrap() >= 0.0);
    }
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    let ranked = report["issues"]["label_issues"]["ranked"]
        .as_array()
        .unwrap();
    assert_eq!(ranked.len(), 30);
    let scores: Vec<f64> = ranked
        .iter()
        .map(|r| r["score"].as_f64().unwrap())
        .collect();
    assert!(
        scores.windows(2).all(|w| w[0] >= w[1]),
        "most suspicious first"
    );
    assert_eq!(
        report["issues"]["outliers"]["ranked"]
            .as_array()
            .unwrap()
            .len(),
        30
    );
    let mut npy = std::fs::File::open(out.join("embeddings.npy")).unwrap();
    let (rows, cols, values) = embedscope::output::read_npy_f32(&mut npy).unwrap();
    assert_eq!((rows, cols), (30, 784));
    let norm: f32 = values[..784].iter().map(|x| x * x).sum();
    assert!((norm - 1.0).abs() < 1e-4);

    assert_eq!(report["counts"]["images"], 30);
    assert_eq!(report["skipped"][0]["path"], "0/broken.png");
    assert!(
        report["skipped"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("PNG")
    );
    for key in [
        "scan",
        "embed",
        "neighbours",
        "layout",
        "clusters",
        "duplicates",
        "issues",
    ] {
        assert!(
            report["timings"][key].as_f64().unwrap() >= 0.0,
            "timing {key}"
        );
    }
    assert_eq!(report["parameters"]["reducer"], "umap");
    assert_eq!(report["cache"]["embedded"], 30);

    // Second run: every embedding from the cache.
    let again = embedscope(
        &["analyze", folder, "--out", out.to_str().unwrap(), "--quiet"],
        work.path(),
    );
    let stdout = String::from_utf8_lossy(&again.stdout);
    assert!(stdout.contains("from cache     30"), "{stdout}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["cache"]["reused"], 30);
    assert_eq!(
        csv,
        std::fs::read_to_string(out.join("points.csv")).unwrap(),
        "same seed, same result"
    );

    // An output folder inside the dataset is refused before any work.
    let inside = data.path().join("results");
    let refused = embedscope(
        &["analyze", folder, "--out", inside.to_str().unwrap()],
        work.path(),
    );
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("inside the dataset folder"));
    assert_eq!(
        before,
        snapshot(data.path()),
        "the dataset folder was modified"
    );

    // Default output goes to the cache folder and is printed.
    let default = embedscope(
        &["analyze", folder, "--quiet", "--reducer", "pca"],
        work.path(),
    );
    let stdout = String::from_utf8_lossy(&default.stdout);
    let printed = stdout
        .lines()
        .find_map(|l| l.strip_prefix("output"))
        .unwrap()
        .trim()
        .to_owned();
    assert!(Path::new(&printed).starts_with(work.path()), "{printed}");
    assert!(Path::new(&printed).join("points.csv").is_file());
}

#[test]
fn cli_explains_what_is_wrong() {
    let work = tempfile::tempdir().unwrap();
    let missing = embedscope(&["analyze", "/no/such/folder"], work.path());
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("check that the folder exists"));

    let clip = embedscope(
        &[
            "analyze",
            mnist_2k().to_str().unwrap(),
            "--embedder",
            "clip",
        ],
        work.path(),
    );
    assert!(!clip.status.success());
    let message = String::from_utf8_lossy(&clip.stderr);
    assert!(message.contains("embedscope model fetch"), "{message}");
    assert!(message.contains("--model DIR"), "{message}");
    assert!(message.contains("--embedder pixels"), "{message}");

    let empty = tempfile::tempdir().unwrap();
    std::fs::write(empty.path().join("readme.txt"), "hi").unwrap();
    let none = embedscope(
        &["analyze", empty.path().to_str().unwrap(), "--quiet"],
        work.path(),
    );
    assert_eq!(none.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&none.stderr).contains("no images found"));

    let bad = embedscope(
        &[
            "analyze",
            empty.path().to_str().unwrap(),
            "--dup-threshold",
            "3",
        ],
        work.path(),
    );
    assert!(String::from_utf8_lossy(&bad.stderr).contains("between -1 and 1"));
}

#[test]
fn cli_opens_the_viewer_without_taking_subcommand_names_for_folders() {
    // `--help` of the bare command mentions the viewer and still lists the subcommands.
    let work = tempfile::tempdir().unwrap();
    let help = embedscope(&["--help"], work.path());
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(help.status.success());
    for word in ["analyze", "bench", "view", "install-desktop", "[SOURCE]"] {
        assert!(text.contains(word), "{word} missing from:\n{text}");
    }
    // A missing folder is refused before any window opens, with advice.
    let missing = work.path().join("nope");
    let run = embedscope(&[missing.to_str().unwrap()], work.path());
    assert!(!run.status.success());
    assert!(String::from_utf8_lossy(&run.stderr).contains("does not exist"));
    // install-desktop writes the entry where it is told.
    let home = work.path().join("share");
    let run = embedscope(
        &["install-desktop", "--data-home", home.to_str().unwrap()],
        work.path(),
    );
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let entry = std::fs::read_to_string(home.join("applications/embedscope.desktop")).unwrap();
    assert!(entry.contains("MimeType=inode/directory;"));
    assert!(
        home.join("icons/hicolor/256x256/apps/embedscope.png")
            .is_file()
    );
}

/// Embeddings computed elsewhere: a Parquet file in, `points.parquet` out
/// (with the embeddings), and that file read back as a source: the round trip
/// a Spark or Ray job makes.
#[test]
fn cli_reads_parquet_embeddings_and_writes_points_parquet_that_reads_back() {
    let parquet = repo().join("tests/fixtures/parquet");
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("out");
    let source = parquet.join("row_groups.parquet");
    let run = embedscope(
        &[
            "analyze",
            source.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--reducer",
            "pca",
            "--parquet-embeddings",
            "--quiet",
        ],
        work.path(),
    );
    assert_succeeded(&run);
    let mut csv = csv::Reader::from_path(out.join("points.csv")).unwrap();
    let headers: Vec<String> = csv.headers().unwrap().iter().map(String::from).collect();
    assert_eq!(
        headers.last().map(String::as_str),
        Some("idx"),
        "{headers:?}"
    );
    let rows: Vec<csv::StringRecord> = csv.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 100);
    assert!(out.join("points.parquet").is_file());

    // Read back: the `embedding` column is found by type, the metadata keeps
    // `idx`, and our own columns of the first run come back as metadata under
    // a `source_` prefix where the new run writes its own.
    let again = work.path().join("again");
    let points = out.join("points.parquet");
    let run = embedscope(
        &[
            "analyze",
            points.to_str().unwrap(),
            "--out",
            again.to_str().unwrap(),
            "--reducer",
            "pca",
            "--quiet",
        ],
        work.path(),
    );
    assert_succeeded(&run);
    let mut csv = csv::Reader::from_path(again.join("points.csv")).unwrap();
    let headers: Vec<String> = csv.headers().unwrap().iter().map(String::from).collect();
    for wanted in ["source_x", "source_cluster", "idx"] {
        assert!(
            headers.iter().any(|h| h == wanted),
            "{wanted} in {headers:?}"
        );
    }
    let first: Vec<csv::StringRecord> = csv::Reader::from_path(out.join("points.csv"))
        .unwrap()
        .records()
        .map(Result::unwrap)
        .collect();
    let second: Vec<csv::StringRecord> = csv.records().map(Result::unwrap).collect();
    assert_eq!(second.len(), 100);
    // Same rows in the same order, paths included.
    for (a, b) in first.iter().zip(&second) {
        assert_eq!(a.get(0), b.get(0));
    }
}

#[test]
fn cli_names_the_file_when_a_parquet_source_has_no_vectors() {
    let parquet = repo().join("tests/fixtures/parquet");
    let work = tempfile::tempdir().unwrap();
    let source = parquet.join("no_vector.parquet");
    let out = work.path().join("out");
    let run = embedscope(
        &[
            "analyze",
            source.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--quiet",
        ],
        work.path(),
    );
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("no_vector.parquet"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(!out.join("points.csv").exists());
}
