//! Thumbnails kept on disk: an SQLite database next to the embedding cache
//! (`thumbnails.sqlite`), keyed by the image's content hash and the
//! thumbnail size, so a thumbnail is made once per image, whatever folder it
//! is seen in, and a viewer only holds the few it draws.
//!
//! Thumbnails are stored compressed: JPEG (quality 88) when opaque, PNG when
//! they have transparency. A 64-pixel JPEG is 2–4 KB, so 100,000 images take
//! a few hundred MB on disk instead of 1.6 GB of raw pixels in memory.

use std::collections::HashMap;
use std::io::Cursor;
use std::path::{Path, PathBuf};

use image::{DynamicImage, ImageFormat, RgbaImage};
use rusqlite::{Connection, OpenFlags, params};

use super::CacheError;
use crate::decode::{ContentHash, Thumbnail};

/// JPEG quality of opaque thumbnails: artefacts stay invisible at 64 px.
const JPEG_QUALITY: u8 = 88;

/// Where thumbnails are kept by default: `thumbnails.sqlite` in the cache folder.
pub fn default_path() -> anyhow::Result<PathBuf> {
    Ok(super::default_cache_dir()?.join("thumbnails.sqlite"))
}

pub struct ThumbnailStore {
    conn: Connection,
    path: PathBuf,
}

impl ThumbnailStore {
    /// Opens (or creates) the store. A damaged store holds nothing that
    /// cannot be made again, so it is replaced.
    pub fn open(path: &Path) -> Result<Self, CacheError> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| CacheError::Unusable {
                path: path.to_path_buf(),
                detail: format!("cannot create the folder {}: {e}", parent.display()),
            })?;
        }
        match Self::open_checked(path) {
            Err(CacheError::Corrupt { .. }) => {
                for suffix in ["", "-wal", "-shm"] {
                    let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
                }
                Self::open_checked(path)
            }
            other => other,
        }
    }

    fn open_checked(path: &Path) -> Result<Self, CacheError> {
        let sqlite = |e| CacheError::from_sqlite(path, e);
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE,
        )
        .map_err(sqlite)?;
        conn.busy_timeout(super::BUSY_TIMEOUT).map_err(sqlite)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(sqlite)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(sqlite)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS thumbnails (
                 hash   BLOB NOT NULL,
                 size   INTEGER NOT NULL,
                 width  INTEGER NOT NULL,
                 height INTEGER NOT NULL,
                 data   BLOB NOT NULL,
                 PRIMARY KEY (hash, size)
             ) WITHOUT ROWID;",
        )
        .map_err(sqlite)?;
        Ok(Self {
            conn,
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Which of `hashes` have a thumbnail of `size` already.
    pub fn present(
        &self,
        hashes: &[ContentHash],
        size: u32,
    ) -> Result<std::collections::HashSet<ContentHash>, CacheError> {
        let sqlite = |e| CacheError::from_sqlite(&self.path, e);
        let mut stmt = self
            .conn
            .prepare_cached("SELECT 1 FROM thumbnails WHERE hash = ?1 AND size = ?2")
            .map_err(sqlite)?;
        let mut found = std::collections::HashSet::new();
        for hash in hashes {
            if stmt.exists(params![&hash.0[..], size]).map_err(sqlite)? {
                found.insert(*hash);
            }
        }
        Ok(found)
    }

    /// The stored thumbnails of `hashes`, decoded; missing or undecodable ones
    /// are absent from the map.
    pub fn get_many(
        &self,
        hashes: &[ContentHash],
        size: u32,
    ) -> Result<HashMap<ContentHash, Thumbnail>, CacheError> {
        let sqlite = |e| CacheError::from_sqlite(&self.path, e);
        let mut stmt = self
            .conn
            .prepare_cached("SELECT data FROM thumbnails WHERE hash = ?1 AND size = ?2")
            .map_err(sqlite)?;
        let mut found = HashMap::new();
        for hash in hashes {
            let row = stmt.query_row(params![&hash.0[..], size], |row| row.get::<_, Vec<u8>>(0));
            match row {
                Ok(data) => {
                    if let Some(t) = decode_thumbnail(&data) {
                        found.insert(*hash, t);
                    }
                }
                Err(rusqlite::Error::QueryReturnedNoRows) => {}
                Err(e) => return Err(sqlite(e)),
            }
        }
        Ok(found)
    }

    /// Stores a batch in one transaction.
    pub fn put_many(
        &mut self,
        items: &[(ContentHash, &Thumbnail)],
        size: u32,
    ) -> Result<(), CacheError> {
        if items.is_empty() {
            return Ok(());
        }
        // Compress before taking the write lock.
        let encoded: Vec<(ContentHash, u32, u32, Vec<u8>)> = items
            .iter()
            .filter_map(|(h, t)| encode_thumbnail(t).map(|data| (*h, t.width, t.height, data)))
            .collect();
        let path = self.path.clone();
        let sqlite = |e| CacheError::from_sqlite(&path, e);
        let tx = self.conn.transaction().map_err(sqlite)?;
        {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO thumbnails (hash, size, width, height, data)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .map_err(sqlite)?;
            for (hash, width, height, data) in &encoded {
                stmt.execute(params![&hash.0[..], size, width, height, data])
                    .map_err(sqlite)?;
            }
        }
        tx.commit().map_err(sqlite)
    }
}

/// JPEG when every pixel is opaque, PNG otherwise.
pub fn encode_thumbnail(t: &Thumbnail) -> Option<Vec<u8>> {
    let rgba = RgbaImage::from_raw(t.width, t.height, t.rgba.clone())?;
    let opaque = rgba.pixels().all(|p| p.0[3] == 255);
    let mut out = Vec::new();
    let written = if opaque {
        let rgb = DynamicImage::ImageRgba8(rgba).to_rgb8();
        let mut encoder =
            image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, JPEG_QUALITY);
        encoder.encode_image(&rgb).is_ok()
    } else {
        rgba.write_to(&mut Cursor::new(&mut out), ImageFormat::Png)
            .is_ok()
    };
    written.then_some(out)
}

pub fn decode_thumbnail(data: &[u8]) -> Option<Thumbnail> {
    let image = image::load_from_memory(data).ok()?.to_rgba8();
    Some(Thumbnail {
        width: image.width(),
        height: image.height(),
        rgba: image.into_raw(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn thumb(w: u32, h: u32, alpha: u8) -> Thumbnail {
        Thumbnail {
            width: w,
            height: h,
            rgba: (0..w * h)
                .flat_map(|i| [(i * 7) as u8, (i * 3) as u8, 200, alpha])
                .collect(),
        }
    }

    #[test]
    fn thumbnails_round_trip_by_hash_and_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("thumbnails.sqlite");
        let mut store = ThumbnailStore::open(&path).unwrap();
        let (a, b) = (ContentHash([1; 32]), ContentHash([2; 32]));
        let opaque = thumb(64, 40, 255);
        let see_through = thumb(10, 20, 100);
        store
            .put_many(&[(a, &opaque), (b, &see_through)], 64)
            .unwrap();
        drop(store);
        let store = ThumbnailStore::open(&path).unwrap();
        assert_eq!(
            store
                .present(&[a, b, ContentHash([3; 32])], 64)
                .unwrap()
                .len(),
            2
        );
        assert!(
            store.present(&[a], 32).unwrap().is_empty(),
            "keyed by size too"
        );
        let got = store.get_many(&[a, b], 64).unwrap();
        let (ga, gb) = (&got[&a], &got[&b]);
        assert_eq!((ga.width, ga.height), (64, 40));
        // PNG is lossless; JPEG is close.
        assert_eq!(gb.rgba, see_through.rgba);
        // JPEG's error is small on average; single pixels at sharp edges of
        // the test pattern may be off by more (ringing).
        let errors: Vec<i32> = ga
            .rgba
            .iter()
            .zip(&opaque.rgba)
            .map(|(x, y)| (*x as i32 - *y as i32).abs())
            .collect();
        let mean = errors.iter().sum::<i32>() as f64 / errors.len() as f64;
        assert!(mean < 4.0, "JPEG mean error {mean}");
        assert!(errors.iter().all(|&e| e < 80), "JPEG max error");
    }

    #[test]
    fn a_damaged_store_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("thumbnails.sqlite");
        std::fs::write(&path, b"not sqlite at all".repeat(200)).unwrap();
        let mut store = ThumbnailStore::open(&path).unwrap();
        store
            .put_many(&[(ContentHash([9; 32]), &thumb(4, 4, 255))], 64)
            .unwrap();
    }
}
