//! The viewer under Xvfb with Mesa's software Vulkan (lavapipe).

use std::path::Path;

use crate::support::*;

#[test]
fn viewer_screenshot_shows_the_point_cloud_and_the_panel() {
    let data = tempfile::tempdir().unwrap();
    copy_subset(20, data.path());
    let before = snapshot(data.path());
    let work = tempfile::tempdir().unwrap();
    let png = work.path().join("shot.png");
    viewer(
        &[
            "view",
            data.path().to_str().unwrap(),
            "--screenshot",
            png.to_str().unwrap(),
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
    let background = image::Rgb([18u8, 19, 23]);
    let near = |a: &image::Rgb<u8>, b: &image::Rgb<u8>| {
        a.0.iter().zip(b.0).all(|(x, y)| x.abs_diff(y) <= 6)
    };
    // The 3D view (left of the panel): mostly background, with coloured
    // splats of several cluster colours.
    let view_width = shot.width() - 420;
    let mut background_pixels = 0usize;
    let mut colours: HashMap<[u8; 3], usize> = HashMap::new();
    for y in 0..shot.height() {
        for x in 0..view_width {
            let p = shot.get_pixel(x, y);
            if near(p, &background) {
                background_pixels += 1;
            } else {
                // Quantised, so anti-aliasing does not count as a colour.
                *colours.entry(p.0.map(|v| v / 32)).or_default() += 1;
            }
        }
    }
    let view_pixels = (view_width * shot.height()) as usize;
    assert!(
        background_pixels > view_pixels / 2,
        "the view is mostly background ({background_pixels} of {view_pixels})"
    );
    let drawn: usize = colours.values().sum();
    assert!(
        drawn > 2_000,
        "points are drawn: {drawn} non-background pixels"
    );
    let distinct = colours.values().filter(|&&c| c > 100).count();
    assert!(distinct >= 3, "points in several colours: {colours:?}");
    // The panel (right): egui's panel fill differs from the 3D background, and
    // its text makes many bright pixels.
    let mut panel_bright = 0usize;
    let mut panel_background = 0usize;
    for y in 0..shot.height() {
        for x in shot.width() - 360..shot.width() {
            let p = shot.get_pixel(x, y);
            if near(p, &background) {
                panel_background += 1;
            }
            if p.0.iter().all(|&v| v > 150) {
                panel_bright += 1;
            }
        }
    }
    assert!(
        panel_bright > 500,
        "the panel shows text: {panel_bright} bright pixels"
    );
    assert!(
        panel_background < (360 * shot.height() as usize) / 10,
        "the panel is not the 3D background"
    );
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
            data.path().to_str().unwrap(),
            "--reducer",
            "pca",
            "--no-thumbnails",
            "--click-point",
            &index.to_string(),
            "--print-selection",
            "--screenshot",
            png.to_str().unwrap(),
        ],
        work.path(),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("no selection printed: {stdout}"));
    let selection: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(selection["selected"], index, "{selection}");
    let path = selection["path"].as_str().unwrap();
    assert!(data.path().join(path).is_file(), "{path}");
    assert!(png.is_file());
}

#[test]
fn viewer_on_a_folder_without_images_still_opens_and_settles() {
    let data = tempfile::tempdir().unwrap();
    std::fs::write(data.path().join("notes.txt"), b"not an image").unwrap();
    let work = tempfile::tempdir().unwrap();
    let png = work.path().join("empty.png");
    // The script waits for the analysis to be shown: an empty result must
    // count as shown (no points to move, no thumbnails to wait for).
    viewer(
        &[
            data.path().to_str().unwrap(),
            "--screenshot",
            png.to_str().unwrap(),
        ],
        work.path(),
    );
    assert!(png.is_file());
}
