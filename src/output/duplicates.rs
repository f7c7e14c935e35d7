//! Exports of duplicate groups chosen in the viewer: every group as CSV or
//! JSON, and the "keep one per group" list (the files the user may remove).
//! embedscope itself never deletes or moves a file.

use std::io::Write;
use std::path::Path;

use serde_json::json;

use crate::analyze::{DuplicateGroup, DuplicateReason};
use crate::pipeline::ImageRecord;

/// The member of `group` to keep: the most pixels, then the shortest path,
/// then the first in path order.
pub fn keeper(group: &DuplicateGroup, images: &[ImageRecord]) -> usize {
    *group
        .members
        .iter()
        .min_by(|&&a, &&b| {
            let (ra, rb) = (&images[a], &images[b]);
            let pixels = |r: &ImageRecord| u64::from(r.width) * u64::from(r.height);
            pixels(rb)
                .cmp(&pixels(ra))
                .then(ra.relative.len().cmp(&rb.relative.len()))
                .then(ra.relative.cmp(&rb.relative))
        })
        .expect("a group has members")
}

/// Why `member` is in its group, for the row of a file: its link to the
/// keeper when that is direct, else its strongest direct link (same bytes,
/// then cosine, then hash distance, then aligned detail), else chained.
pub fn member_reason(group: &DuplicateGroup, member: usize, keep: usize) -> DuplicateReason {
    let rank = |r: &DuplicateReason| match r {
        DuplicateReason::SameBytes => 0,
        DuplicateReason::Cosine { .. } => 1,
        DuplicateReason::HashDistance { .. } => 2,
        DuplicateReason::AlignedDetail { .. } => 3,
        DuplicateReason::Chained => 4,
    };
    let with_member = || {
        group
            .pairs
            .iter()
            .filter(move |p| p.a == member || p.b == member)
    };
    let to_keeper = with_member()
        .find(|p| member != keep && (p.a == keep || p.b == keep))
        .map(|p| p.reason)
        .filter(|r| *r != DuplicateReason::Chained);
    to_keeper.unwrap_or_else(|| {
        with_member()
            .min_by(|x, y| {
                rank(&x.reason)
                    .cmp(&rank(&y.reason))
                    .then(y.cosine.total_cmp(&x.cosine))
            })
            .map_or(DuplicateReason::Chained, |p| p.reason)
    })
}

/// One row per member: group, exact, the group's weakest cosine, path, keep,
/// and why the member is in the group ([`member_reason`]).
pub fn write_csv(
    groups: &[DuplicateGroup],
    images: &[ImageRecord],
    w: &mut dyn Write,
) -> anyhow::Result<()> {
    let mut csv = csv::Writer::from_writer(w);
    csv.write_record(["group", "exact", "weakest_cosine", "path", "keep", "reason"])?;
    for g in groups {
        let keep = keeper(g, images);
        for &m in &g.members {
            csv.write_record([
                g.id.to_string(),
                g.exact.to_string(),
                format!("{:.4}", g.weakest.cosine),
                images[m].relative.clone(),
                (m == keep).to_string(),
                member_reason(g, m, keep).to_string(),
            ])?;
        }
    }
    csv.flush()?;
    Ok(())
}

pub fn write_json(
    groups: &[DuplicateGroup],
    images: &[ImageRecord],
    threshold: f32,
    w: &mut dyn Write,
) -> anyhow::Result<()> {
    let groups: Vec<_> = groups
        .iter()
        .map(|g| {
            json!({
                "id": g.id,
                "exact": g.exact,
                "weakest_cosine": g.weakest.cosine,
                "keep": images[keeper(g, images)].relative,
                "paths": g.members.iter().map(|&m| &images[m].relative).collect::<Vec<_>>(),
                "pairs": g.pairs.iter().map(|p| json!({
                    "a": images[p.a].relative,
                    "b": images[p.b].relative,
                    "cosine": p.cosine,
                    "reason": p.reason,
                    "reason_text": p.reason.to_string(),
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    serde_json::to_writer_pretty(
        &mut *w,
        &json!({ "threshold": threshold, "groups": groups }),
    )?;
    writeln!(w)?;
    Ok(())
}

/// Relative paths of every member but the keeper, one per line.
pub fn write_others(
    groups: &[DuplicateGroup],
    images: &[ImageRecord],
    w: &mut dyn Write,
) -> anyhow::Result<()> {
    for g in groups {
        let keep = keeper(g, images);
        for &m in g.members.iter().filter(|&&m| m != keep) {
            writeln!(w, "{}", images[m].relative)?;
        }
    }
    Ok(())
}

/// Which export a file name asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportKind {
    Csv,
    Json,
    /// The "keep one per group" list of the others.
    Others,
}

/// Writes `kind` to `path`, refusing a path inside the dataset `folder`.
pub fn export(
    kind: ExportKind,
    path: &Path,
    folder: &Path,
    groups: &[DuplicateGroup],
    images: &[ImageRecord],
    threshold: f32,
) -> anyhow::Result<()> {
    super::check_output_dir(path.parent().unwrap_or(Path::new(".")), folder)?;
    super::write_atomically(path, |w| match kind {
        ExportKind::Csv => write_csv(groups, images, w),
        ExportKind::Json => write_json(groups, images, threshold, w),
        ExportKind::Others => write_others(groups, images, w),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyze::DuplicatePair;
    use crate::decode::ContentHash;

    fn record(path: &str, w: u32, h: u32) -> ImageRecord {
        ImageRecord {
            relative: path.into(),
            hash: ContentHash([0; 32]),
            width: w,
            height: h,
        }
    }

    fn group(members: Vec<usize>) -> DuplicateGroup {
        DuplicateGroup {
            id: 0,
            weakest: DuplicatePair {
                a: members[0],
                b: members[1],
                cosine: 0.991,
                identical: false,
                reason: DuplicateReason::Cosine { cosine: 0.991 },
            },
            pairs: members
                .iter()
                .enumerate()
                .flat_map(|(x, &a)| members[x + 1..].iter().map(move |&b| (a, b)))
                .map(|(a, b)| DuplicatePair {
                    a,
                    b,
                    cosine: 0.5,
                    identical: false,
                    // The first two look alike; the rest are chained.
                    reason: if (a, b) == (members[0], members[1]) {
                        DuplicateReason::HashDistance { distance: 3 }
                    } else {
                        DuplicateReason::Chained
                    },
                })
                .collect(),
            members,
            exact: false,
        }
    }

    #[test]
    fn the_largest_image_is_kept_and_the_others_listed() {
        let images = vec![
            record("a/small.png", 10, 10),
            record("a/big, copy.png", 20, 20),
            record("b/x.png", 20, 20),
        ];
        let groups = vec![group(vec![0, 1, 2])];
        // Same size: the shorter path wins.
        assert_eq!(keeper(&groups[0], &images), 2);
        let mut out = Vec::new();
        write_others(&groups, &images, &mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "a/small.png\na/big, copy.png\n"
        );
        let mut csv = Vec::new();
        write_csv(&groups, &images, &mut csv).unwrap();
        let csv = String::from_utf8(csv).unwrap();
        assert!(
            csv.contains("0,false,0.9910,\"a/big, copy.png\",false,hash distance 3"),
            "{csv}"
        );
        assert!(csv.contains("a/small.png,false,hash distance 3"), "{csv}");
        assert!(
            csv.contains("b/x.png,true,linked through other members"),
            "{csv}"
        );
    }

    #[test]
    fn an_export_into_the_dataset_folder_is_refused() {
        let data = tempfile::tempdir().unwrap();
        let images = vec![record("a.png", 1, 1), record("b.png", 1, 1)];
        let groups = vec![group(vec![0, 1])];
        let inside = data.path().join("dups.csv");
        let err = export(
            ExportKind::Csv,
            &inside,
            data.path(),
            &groups,
            &images,
            0.98,
        );
        assert!(err.is_err());
        assert!(!inside.exists());
        let out = tempfile::tempdir().unwrap();
        let path = out.path().join("dups.json");
        export(ExportKind::Json, &path, data.path(), &groups, &images, 0.98).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(v["groups"][0]["paths"].as_array().unwrap().len(), 2);
        assert_eq!(
            v["groups"][0]["pairs"][0]["reason"]["kind"],
            "hash_distance"
        );
        assert_eq!(v["groups"][0]["pairs"][0]["reason_text"], "hash distance 3");
    }
}
