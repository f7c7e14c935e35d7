//! Finished analyses kept on disk, so opening the same data again (the viewer
//! after `analyze`, a second viewer session, a re-run with the same settings)
//! skips the neighbours, the layout and the clusters.
//!
//! An entry is keyed by a BLAKE3 of everything the result depends on: the
//! embedding matrix itself, the embedder, the parameters, and
//! [`FORMAT_VERSION`] (bumped whenever an algorithm's output changes). It is
//! one file, `analyses/<key>.bin`: a JSON header, then the raw arrays, written
//! atomically. The folder keeps the [`KEPT`] most recently used entries.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::Embeddings;
use crate::geometry::Point3;
use crate::neighbours::{KnnGraph, KnnMethod};
use crate::reduce::ReducerKind;

/// Bumped when what a key stands for changes (algorithms, the file layout).
pub const FORMAT_VERSION: u32 = 1;
/// Entries kept; older ones are deleted when a new one is written.
const KEPT: usize = 12;
const MAGIC: &[u8; 8] = b"ESANLYS1";

/// The expensive, deterministic part of an analysis.
#[derive(Clone, Debug)]
pub struct CachedAnalysis {
    pub knn: KnnGraph,
    pub layout: Vec<Point3>,
    pub reducer_used: ReducerKind,
    pub layout_note: Option<String>,
    pub cluster_labels: Vec<i32>,
    pub min_cluster_size: usize,
    /// Seconds the stages took when computed (report them as such).
    pub timings: Vec<(String, f64)>,
}

#[derive(Serialize, Deserialize)]
struct Header {
    n: usize,
    k: usize,
    knn_method: KnnMethod,
    reducer_used: ReducerKind,
    layout_note: Option<String>,
    min_cluster_size: usize,
    timings: Vec<(String, f64)>,
}

/// The key of an analysis of `embeddings` by `embedder_id` with `parameters`
/// (anything serialisable that decides the result).
pub fn key(embeddings: &Embeddings, embedder_id: &str, parameters: &impl Serialize) -> String {
    let mut hasher = blake3::Hasher::new();
    hasher.update(&FORMAT_VERSION.to_le_bytes());
    hasher.update(embedder_id.as_bytes());
    hasher.update(&(embeddings.n as u64).to_le_bytes());
    hasher.update(&(embeddings.dim as u64).to_le_bytes());
    hasher.update(&serde_json::to_vec(parameters).unwrap_or_default());
    // The vectors decide everything; hash their bytes (1 GB/s a core).
    hasher.update_rayon(bytemuck::cast_slice(&embeddings.data));
    hasher.finalize().to_hex()[..32].to_owned()
}

/// The folder entries live in: `<cache>/analyses`.
pub fn default_dir() -> anyhow::Result<PathBuf> {
    Ok(super::default_cache_dir()?.join("analyses"))
}

fn entry_path(dir: &Path, key: &str) -> PathBuf {
    dir.join(format!("{key}.bin"))
}

/// The entry for `key`, if there is a readable one. A damaged entry is
/// deleted (it is only a cache) and reported as missing.
pub fn load(dir: &Path, key: &str) -> Option<CachedAnalysis> {
    let path = entry_path(dir, key);
    let file = std::fs::File::open(&path).ok()?;
    match read_entry(std::io::BufReader::new(file)) {
        Ok(entry) => {
            // Mark it recently used, so trimming keeps it.
            let _ = std::fs::File::options()
                .append(true)
                .open(&path)
                .and_then(|f| f.set_modified(std::time::SystemTime::now()));
            Some(entry)
        }
        Err(_) => {
            let _ = std::fs::remove_file(&path);
            None
        }
    }
}

/// Writes the entry for `key` atomically, then trims the folder.
pub fn store(dir: &Path, key: &str, entry: &CachedAnalysis) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    crate::output::write_atomically(&entry_path(dir, key), |w| write_entry(w, entry))?;
    trim(dir);
    Ok(())
}

fn write_entry(w: &mut dyn Write, e: &CachedAnalysis) -> anyhow::Result<()> {
    let header = Header {
        n: e.knn.n,
        k: e.knn.k,
        knn_method: e.knn.method,
        reducer_used: e.reducer_used,
        layout_note: e.layout_note.clone(),
        min_cluster_size: e.min_cluster_size,
        timings: e.timings.clone(),
    };
    let json = serde_json::to_vec(&header)?;
    w.write_all(MAGIC)?;
    w.write_all(&(json.len() as u64).to_le_bytes())?;
    w.write_all(&json)?;
    for x in &e.knn.indices {
        w.write_all(&x.to_le_bytes())?;
    }
    for x in &e.knn.distances {
        w.write_all(&x.to_le_bytes())?;
    }
    for p in &e.layout {
        for x in p {
            w.write_all(&x.to_le_bytes())?;
        }
    }
    for x in &e.cluster_labels {
        w.write_all(&x.to_le_bytes())?;
    }
    Ok(())
}

fn read_entry(mut r: impl Read) -> anyhow::Result<CachedAnalysis> {
    let mut magic = [0u8; 8];
    r.read_exact(&mut magic)?;
    anyhow::ensure!(&magic == MAGIC, "not an analysis cache entry");
    let mut len = [0u8; 8];
    r.read_exact(&mut len)?;
    let len = u64::from_le_bytes(len) as usize;
    anyhow::ensure!(len < 1 << 24, "header too long");
    let mut json = vec![0u8; len];
    r.read_exact(&mut json)?;
    let h: Header = serde_json::from_slice(&json)?;
    let words = |count: usize, r: &mut dyn Read| -> anyhow::Result<Vec<[u8; 4]>> {
        let mut bytes = vec![0u8; count * 4];
        r.read_exact(&mut bytes)?;
        Ok(bytes
            .chunks_exact(4)
            .map(|c| [c[0], c[1], c[2], c[3]])
            .collect())
    };
    let indices = words(h.n * h.k, &mut r)?
        .into_iter()
        .map(u32::from_le_bytes)
        .collect();
    let distances = words(h.n * h.k, &mut r)?
        .into_iter()
        .map(f32::from_le_bytes)
        .collect();
    let flat: Vec<f32> = words(h.n * 3, &mut r)?
        .into_iter()
        .map(f32::from_le_bytes)
        .collect();
    let layout = flat.chunks_exact(3).map(|c| [c[0], c[1], c[2]]).collect();
    let cluster_labels = words(h.n, &mut r)?
        .into_iter()
        .map(i32::from_le_bytes)
        .collect();
    let mut rest = [0u8; 1];
    anyhow::ensure!(r.read(&mut rest)? == 0, "trailing bytes");
    Ok(CachedAnalysis {
        knn: KnnGraph {
            n: h.n,
            k: h.k,
            indices,
            distances,
            method: h.knn_method,
        },
        layout,
        reducer_used: h.reducer_used,
        layout_note: h.layout_note,
        cluster_labels,
        min_cluster_size: h.min_cluster_size,
        timings: h.timings,
    })
}

/// Deletes all but the [`KEPT`] most recently used entries.
fn trim(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut files: Vec<(std::time::SystemTime, PathBuf)> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "bin"))
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    if files.len() <= KEPT {
        return;
    }
    files.sort_by_key(|f| std::cmp::Reverse(f.0));
    for (_, path) in files.into_iter().skip(KEPT) {
        let _ = std::fs::remove_file(path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(n: usize) -> CachedAnalysis {
        CachedAnalysis {
            knn: KnnGraph {
                n,
                k: 2,
                indices: (0..n * 2).map(|i| (i % n) as u32).collect(),
                distances: (0..n * 2).map(|i| i as f32 * 0.5).collect(),
                method: KnnMethod::Exact,
            },
            layout: (0..n).map(|i| [i as f32, -(i as f32), 0.25]).collect(),
            reducer_used: ReducerKind::Umap,
            layout_note: Some("note".into()),
            cluster_labels: (0..n).map(|i| i as i32 - 1).collect(),
            min_cluster_size: 5,
            timings: vec![("layout".into(), 1.5)],
        }
    }

    #[test]
    fn entries_round_trip_and_damaged_ones_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let e = Embeddings::new(3, 2, vec![1.0, 0.0, 0.0, 1.0, 0.6, 0.8]);
        let k1 = key(&e, "pixels", &("umap", 42));
        assert_ne!(
            k1,
            key(&e, "pixels", &("umap", 43)),
            "parameters are in the key"
        );
        assert_ne!(
            k1,
            key(&e, "clip", &("umap", 42)),
            "the embedder is in the key"
        );
        store(dir.path(), &k1, &entry(3)).unwrap();
        let back = load(dir.path(), &k1).unwrap();
        assert_eq!(back.knn.indices, entry(3).knn.indices);
        assert_eq!(back.knn.distances, entry(3).knn.distances);
        assert_eq!(back.layout, entry(3).layout);
        assert_eq!(back.cluster_labels, entry(3).cluster_labels);
        assert_eq!(back.layout_note.as_deref(), Some("note"));
        // Cut short: treated as absent, and removed.
        let path = entry_path(dir.path(), &k1);
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 3]).unwrap();
        assert!(load(dir.path(), &k1).is_none());
        assert!(!path.exists());
    }

    #[test]
    fn the_folder_keeps_a_bounded_number_of_entries() {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..KEPT + 3 {
            store(dir.path(), &format!("key{i:02}"), &entry(2)).unwrap();
        }
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), KEPT);
    }
}
