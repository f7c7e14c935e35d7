//! The viewer under Xvfb with Mesa's software Vulkan (lavapipe), driven by
//! `--script` (src/view/script.rs): real input messages through the real
//! camera, picking, selection and panel code, and the resulting state printed
//! as JSON.
//!
//! Screenshots are compared with committed references in
//! tests/fixtures/screenshots/ with a per-pixel tolerance and a budget of
//! differing pixels. After a deliberate change to what the viewer draws,
//! refresh them with `EMBEDSCOPE_UPDATE_SCREENSHOTS=1 cargo test viewer_`
//! and look at the new PNGs before committing them.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::support::*;

/// A channel differing by more than this counts the pixel as different
/// (antialiasing and float rounding in software rendering stay below it).
const CHANNEL_TOLERANCE: u8 = 40;
/// Share of the pixels that may differ from the reference.
const DIFF_BUDGET: f64 = 0.01;

fn arg(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// The lines of JSON a scripted run printed, in order.
fn printed(out: &std::process::Output) -> Vec<Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn indices(v: &Value) -> BTreeSet<usize> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as usize)
        .collect()
}

/// Compares `shot` with tests/fixtures/screenshots/`name`.png, or writes the
/// reference when EMBEDSCOPE_UPDATE_SCREENSHOTS is set.
fn assert_matches_reference(shot: &Path, name: &str) {
    let reference = repo()
        .join("tests/fixtures/screenshots")
        .join(format!("{name}.png"));
    if std::env::var_os("EMBEDSCOPE_UPDATE_SCREENSHOTS").is_some() {
        std::fs::create_dir_all(reference.parent().unwrap()).unwrap();
        std::fs::copy(shot, &reference).unwrap();
        println!("updated {}", reference.display());
        return;
    }
    let actual = image::open(shot).unwrap().to_rgb8();
    let expected = image::open(&reference)
        .unwrap_or_else(|e| {
            panic!(
                "no reference {} ({e}): make it with EMBEDSCOPE_UPDATE_SCREENSHOTS=1 cargo test {name}",
                reference.display()
            )
        })
        .to_rgb8();
    assert_eq!(actual.dimensions(), expected.dimensions(), "{name}: size");
    let mut diff = image::RgbImage::new(actual.width(), actual.height());
    let mut differing = 0usize;
    for (x, y, a) in actual.enumerate_pixels() {
        let e = expected.get_pixel(x, y);
        let off =
            a.0.iter()
                .zip(e.0)
                .any(|(p, q)| p.abs_diff(q) > CHANNEL_TOLERANCE);
        if off {
            differing += 1;
            diff.put_pixel(x, y, image::Rgb([255, 0, 255]));
        } else {
            diff.put_pixel(x, y, image::Rgb(a.0.map(|v| v / 4)));
        }
    }
    let share = differing as f64 / (actual.width() * actual.height()) as f64;
    if share > DIFF_BUDGET {
        let dir = std::env::temp_dir().join("embedscope-screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        let (kept, marked) = (
            dir.join(format!("{name}.png")),
            dir.join(format!("{name}-diff.png")),
        );
        std::fs::copy(shot, &kept).unwrap();
        diff.save(&marked).unwrap();
        panic!(
            "{name}: {:.2}% of the pixels differ from {} (budget {:.2}%); see {} and {}",
            share * 100.0,
            reference.display(),
            DIFF_BUDGET * 100.0,
            kept.display(),
            marked.display()
        );
    }
}

/// 20 digits of each class, three of the 1s moved into the 7 folder (label
/// errors to find).
fn labelled_folder(dir: &Path) {
    copy_subset(20, dir);
    let mut ones: Vec<PathBuf> = std::fs::read_dir(dir.join("1"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    ones.sort();
    for path in ones.iter().take(3) {
        std::fs::rename(path, dir.join("7").join(path.file_name().unwrap())).unwrap();
    }
}

#[test]
fn viewer_screenshot_matches_the_reference() {
    let data = tempfile::tempdir().unwrap();
    copy_subset(20, data.path());
    let before = snapshot(data.path());
    let work = tempfile::tempdir().unwrap();
    let png = work.path().join("shot.png");
    viewer(
        &[
            "view",
            arg(data.path()),
            "--reducer",
            "pca",
            "--screenshot",
            arg(&png),
        ],
        work.path(),
    );
    assert_eq!(
        snapshot(data.path()),
        before,
        "the dataset folder is never written to"
    );
    let shot = image::open(&png).unwrap().to_rgb8();
    assert!(
        shot.width() >= 1280 && shot.height() >= 800,
        "{:?}",
        shot.dimensions()
    );
    assert_matches_reference(&png, "map");
}

#[test]
fn viewer_issues_panel_matches_the_reference() {
    let data = tempfile::tempdir().unwrap();
    labelled_folder(data.path());
    let work = tempfile::tempdir().unwrap();
    let png = work.path().join("issues.png");
    viewer(
        &[
            "view",
            arg(data.path()),
            "--reducer",
            "pca",
            "--script",
            &format!(
                "colour-by label-issue; show issues:label-issues; wait; screenshot {}",
                arg(&png)
            ),
        ],
        work.path(),
    );
    assert_matches_reference(&png, "issues");
}

#[test]
fn viewer_click_on_a_point_selects_it() {
    let data = tempfile::tempdir().unwrap();
    copy_subset(10, data.path());
    let work = tempfile::tempdir().unwrap();
    let png = work.path().join("click.png");
    let index = 37;
    let out = viewer(
        &[
            "view",
            arg(data.path()),
            "--reducer",
            "pca",
            "--no-thumbnails",
            "--click-point",
            &index.to_string(),
            "--print-selection",
            "--screenshot",
            arg(&png),
        ],
        work.path(),
    );
    let selection = printed(&out).pop().expect("a selection is printed");
    assert_eq!(selection["selected"], index, "{selection}");
    let path = selection["path"].as_str().unwrap();
    assert!(data.path().join(path).is_file(), "{path}");
    assert!(png.is_file());
}

#[test]
fn viewer_drag_turns_and_wheel_zooms_and_double_click_flies() {
    let data = tempfile::tempdir().unwrap();
    copy_subset(5, data.path());
    let work = tempfile::tempdir().unwrap();
    let out = viewer(
        &[
            "view",
            arg(data.path()),
            "--reducer",
            "pca",
            "--no-thumbnails",
            "--script",
            "print; drag left 0.3,0.5 0.4,0.5 0.5,0.5; wait; print; \
             wheel 2; wait; print; key R; wait; print; double-click-point 7; wait; print",
        ],
        work.path(),
    );
    let states = printed(&out);
    assert_eq!(states.len(), 5, "{states:?}");
    let camera = |k: usize| &states[k]["camera"];
    let viewport = floats(&states[0]["viewport"]);
    let width = viewport[2] - viewport[0];

    // Dragging right by a fifth of the view turns the camera (yaw falls by
    // 0.006 rad a pixel), and nothing else.
    let (before, turned) = (camera(0), camera(1));
    let turn = turned["yaw"].as_f64().unwrap() - before["yaw"].as_f64().unwrap();
    let expected = -0.2 * width * 0.006;
    assert!(
        (turn - expected).abs() < 0.02,
        "turned {turn}, expected {expected}"
    );
    assert!((turned["pitch"].as_f64().unwrap() - before["pitch"].as_f64().unwrap()).abs() < 1e-3);
    assert!(
        (turned["distance"].as_f64().unwrap() / before["distance"].as_f64().unwrap() - 1.0).abs()
            < 1e-3
    );
    assert_eq!(states[1]["selected"], Value::Null, "a drag is not a click");

    // Two notches at the centre zoom in by 0.85² toward the target.
    let zoomed = camera(2);
    let ratio = zoomed["distance"].as_f64().unwrap() / turned["distance"].as_f64().unwrap();
    assert!((ratio - 0.85f64.powi(2)).abs() < 0.01, "zoom ratio {ratio}");
    let moved: f64 = floats(&zoomed["target"])
        .iter()
        .zip(floats(&turned["target"]))
        .map(|(a, b)| (a - b).powi(2))
        .sum::<f64>()
        .sqrt();
    assert!(
        moved < 0.05,
        "the target stays under the cursor: moved {moved}"
    );

    // R goes home.
    let home = &states[3]["home"];
    assert!(
        (camera(3)["distance"].as_f64().unwrap() - home["distance"].as_f64().unwrap()).abs() < 1e-3
    );
    assert!((camera(3)["yaw"].as_f64().unwrap() - home["yaw"].as_f64().unwrap()).abs() < 1e-3);

    // A double-click selects the point under the cursor and flies to it.
    let flown = &states[4];
    assert_ne!(flown["selected"], Value::Null, "{flown}");
    let target = floats(&flown["camera"]["target"]);
    let point = floats(&flown["selected_position"]);
    for (t, p) in target.iter().zip(&point) {
        assert!((t - p).abs() < 1e-2, "target {target:?}, point {point:?}");
    }
    assert!(flown["camera"]["distance"].as_f64().unwrap() <= 1.5 + 1e-3);
}

#[test]
fn viewer_opens_a_dropped_folder() {
    let first = tempfile::tempdir().unwrap();
    copy_subset(3, first.path());
    let second = tempfile::tempdir().unwrap();
    copy_subset(5, second.path());
    // A dropped image file stands for its folder.
    let image = std::fs::read_dir(second.path().join("4"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let work = tempfile::tempdir().unwrap();
    let out = viewer(
        &[
            "view",
            arg(first.path()),
            "--reducer",
            "pca",
            "--no-thumbnails",
            "--script",
            &format!(
                "print; drop {}; wait; print; drop {}; wait; print",
                arg(second.path()),
                arg(&image)
            ),
        ],
        work.path(),
    );
    let states = printed(&out);
    assert_eq!(states[0]["points"], 30);
    assert_eq!(states[1]["folder"], arg(second.path()));
    assert_eq!(states[1]["points"], 50);
    assert_eq!(states[2]["folder"], arg(&second.path().join("4")));
    assert_eq!(states[2]["points"], 5);
}

/// The points whose printed projection lies inside `outline` (even-odd
/// rule, written here independently of the viewer's).
fn inside_outline(projections: &Value, outline: &[(f64, f64)]) -> BTreeSet<usize> {
    let inside = |x: f64, y: f64| {
        let mut inside = false;
        let mut j = outline.len() - 1;
        for i in 0..outline.len() {
            let ((xi, yi), (xj, yj)) = (outline[i], outline[j]);
            if (yi > y) != (yj > y) && x < xi + (y - yi) * (xj - xi) / (yj - yi) {
                inside = !inside;
            }
            j = i;
        }
        inside
    };
    projections
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
        .filter_map(|(i, p)| {
            let p = p.as_array()?;
            inside(p[0].as_f64()?, p[1].as_f64()?).then_some(i)
        })
        .collect()
}

/// The outline the viewer used, checked against the one the script drew.
fn outline_of(state: &Value, fractions: &[(f64, f64)]) -> Vec<(f64, f64)> {
    let viewport = floats(&state["viewport"]);
    let (w, h) = (viewport[2] - viewport[0], viewport[3] - viewport[1]);
    let used: Vec<(f64, f64)> = state["last_outline"]
        .as_array()
        .unwrap_or_else(|| panic!("no outline: {state}"))
        .iter()
        .map(|p| (p[0].as_f64().unwrap(), p[1].as_f64().unwrap()))
        .collect();
    for &(fx, fy) in fractions {
        let (x, y) = (viewport[0] + fx * w, viewport[1] + fy * h);
        assert!(
            used.iter()
                .any(|&(ux, uy)| (ux - x).abs() <= 1.5 && (uy - y).abs() <= 1.5),
            "the outline {used:?} passes through ({x}, {y})"
        );
    }
    used
}

#[test]
fn viewer_lasso_and_box_select_exactly_the_points_inside() {
    let data = tempfile::tempdir().unwrap();
    copy_subset(20, data.path());
    let work = tempfile::tempdir().unwrap();
    let lasso = [
        (0.25, 0.2),
        (0.75, 0.25),
        (0.6, 0.8),
        (0.5, 0.45),
        (0.3, 0.75),
    ];
    let add_box = [(0.05, 0.05), (0.35, 0.5)];
    let take_box = [(0.4, 0.3), (0.7, 0.7)];
    let path = |p: &[(f64, f64)]| {
        p.iter()
            .map(|(x, y)| format!("{x},{y}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let out = viewer(
        &[
            "view",
            arg(data.path()),
            "--reducer",
            "pca",
            "--no-thumbnails",
            "--script",
            &format!(
                "shape lasso; drag left ctrl {}; wait; print projections; \
                 shape box; drag left shift {}; wait; print projections; \
                 drag left alt {}; wait; print projections",
                path(&lasso),
                path(&add_box),
                path(&take_box)
            ),
        ],
        work.path(),
    );
    let states = printed(&out);
    assert_eq!(states.len(), 3);
    // A selection drag does not turn the camera.
    assert_eq!(states[0]["camera"], states[2]["camera"]);

    let lassoed = inside_outline(&states[0]["projections"], &outline_of(&states[0], &lasso));
    assert!(
        lassoed.len() >= 5,
        "the lasso covers some points: {lassoed:?}"
    );
    assert_eq!(indices(&states[0]["selection"]), lassoed);

    let boxed = inside_outline(&states[1]["projections"], &outline_of(&states[1], &add_box));
    let added: BTreeSet<usize> = lassoed.union(&boxed).copied().collect();
    assert_eq!(indices(&states[1]["selection"]), added);

    let taken = inside_outline(
        &states[2]["projections"],
        &outline_of(&states[2], &take_box),
    );
    assert!(!taken.is_empty());
    let left: BTreeSet<usize> = added.difference(&taken).copied().collect();
    assert_eq!(indices(&states[2]["selection"]), left);
}

#[test]
fn viewer_selection_exports_and_tags_read_back_and_survive_a_reopen() {
    let data = tempfile::tempdir().unwrap();
    labelled_folder(data.path());
    let before = snapshot(data.path());
    let work = tempfile::tempdir().unwrap();
    let out_dir = work.path().join("exports");
    let script = format!(
        "drag left ctrl 0.2,0.2 0.8,0.2 0.8,0.8 0.2,0.8; wait; tag sevens; \
         export-selection {out}; export-tags {out}; relabel sevens 7 {out}; wait; print",
        out = arg(&out_dir)
    );
    let args = [
        "view",
        arg(data.path()),
        "--reducer",
        "pca",
        "--no-thumbnails",
    ];
    let run = |script: &str| {
        let mut all = args.to_vec();
        all.extend(["--script", script]);
        printed(&viewer(&all, work.path()))
    };
    let state = run(&script).pop().unwrap();
    let selected = indices(&state["selection"]);
    assert!(selected.len() >= 10, "{state}");
    assert_eq!(
        state["tags"],
        serde_json::json!([["sevens", selected.len()]])
    );

    // The exports read back as the selected images.
    let csv_text = std::fs::read_to_string(out_dir.join("selection.csv")).unwrap();
    let mut reader = csv::Reader::from_reader(csv_text.as_bytes());
    let paths: BTreeSet<String> = reader.records().map(|r| r.unwrap()[0].to_owned()).collect();
    assert_eq!(paths.len(), selected.len());
    let listed: BTreeSet<String> = std::fs::read_to_string(out_dir.join("selection-paths.txt"))
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(listed, paths);
    let json: Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("selection.json")).unwrap())
            .unwrap();
    assert_eq!(json["count"], selected.len());
    for p in &paths {
        assert!(data.path().join(p).is_file(), "{p}");
    }
    let tagged: BTreeSet<String> = csv::Reader::from_path(out_dir.join("tags.csv"))
        .unwrap()
        .records()
        .map(|r| {
            let r = r.unwrap();
            assert_eq!(&r[1], "sevens");
            r[0].to_owned()
        })
        .collect();
    assert_eq!(tagged, paths);
    // The relabel file: every image, the tagged ones labelled 7.
    let relabel: Vec<(String, String)> = csv::Reader::from_path(out_dir.join("labels-7.csv"))
        .unwrap()
        .deserialize()
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(relabel.len(), 200);
    for (path, label) in &relabel {
        let expected = if paths.contains(path) {
            "7"
        } else {
            &path[..1]
        };
        assert_eq!(label, expected, "{path}");
    }

    // The tags live in the results folder, never in the dataset...
    let tags_file = PathBuf::from(state["tags_file"].as_str().unwrap());
    assert!(
        tags_file.starts_with(work.path()),
        "{}",
        tags_file.display()
    );
    assert!(tags_file.is_file());
    assert_eq!(
        snapshot(data.path()),
        before,
        "the dataset folder is untouched"
    );
    // ...and come back when the folder is reopened.
    let reopened = run("wait; print").pop().unwrap();
    assert_eq!(reopened["tags"], state["tags"]);
    assert_eq!(reopened["tags_file"], state["tags_file"]);
}

#[test]
fn viewer_on_a_folder_without_images_still_opens_and_settles() {
    let data = tempfile::tempdir().unwrap();
    std::fs::write(data.path().join("notes.txt"), b"not an image").unwrap();
    let work = tempfile::tempdir().unwrap();
    let png = work.path().join("empty.png");
    // The script waits for the analysis to be shown: an empty result must
    // count as shown (no points to move, no thumbnails to wait for).
    viewer(&[arg(data.path()), "--screenshot", arg(&png)], work.path());
    assert!(png.is_file());
}

/// Metadata columns of a Parquet source colour the points and filter them:
/// categories, ranges (on small integers too), substrings, floats on the
/// colour map with nulls grey.
#[test]
fn viewer_colours_by_and_filters_on_metadata_columns() {
    let source = repo().join("tests/fixtures/parquet/metadata_types.parquet");
    let work = tempfile::tempdir().unwrap();
    let script = "wait; colour-by column:category; filter-column i32 15..35; print projections; \
                  filter-column category =x; print projections; \
                  filter-column caption ~CAT; print projections; \
                  colour-by column:f64; filter-column f64 ..2; print projections; \
                  filter-column off; print projections";
    let out = viewer(&[arg(&source), "--script", script], work.path());
    let states = printed(&out);
    assert_eq!(states.len(), 5, "{states:?}");
    let bright: Vec<BTreeSet<usize>> = states.iter().map(|s| indices(&s["bright"])).collect();
    // i32 = [10, 20, 30, null]; category = [x, y, x, null];
    // caption = ["a cat", null, "", "ünïcödé"]; f64 = [1e300, -0.25, 3, null].
    assert_eq!(bright[0], BTreeSet::from([1, 2]));
    assert_eq!(bright[1], BTreeSet::from([0, 2]));
    assert_eq!(bright[2], BTreeSet::from([0]));
    assert_eq!(bright[3], BTreeSet::from([1]));
    assert_eq!(bright[4], BTreeSet::from([0, 1, 2, 3]));
    assert_eq!(states[0]["colour_by"], "column");
    assert_eq!(states[0]["colour_column"], "category");
    let colours = |s: &Value| -> Vec<Vec<f64>> {
        s["colours"]
            .as_array()
            .unwrap()
            .iter()
            .map(floats)
            .collect()
    };
    let grey = |c: &Vec<f64>| (c[0] - c[1]).abs() < 0.01 && (c[2] - c[0]).abs() < 0.05;
    // By category, filtered to x: the two x rows share a colour; y and the
    // null (grey) are dimmed.
    let by_category = colours(&states[1]);
    assert_eq!(by_category[0], by_category[2]);
    assert!(
        !grey(&by_category[0]) && grey(&by_category[3]),
        "{by_category:?}"
    );
    // By f64 on the colour map, unfiltered: the highest value (1e300) is
    // lightest, -0.25 and 3 are both near the dark end of that range, the
    // null is the same grey.
    let by_f64 = colours(&states[4]);
    let light = |c: &Vec<f64>| 0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2];
    assert!(light(&by_f64[1]) <= light(&by_f64[2]), "{by_f64:?}");
    assert!(light(&by_f64[2]) < light(&by_f64[0]), "{by_f64:?}");
    assert!(grey(&by_f64[3]), "{by_f64:?}");
}
