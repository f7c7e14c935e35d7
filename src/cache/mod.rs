//! The embedding cache: an SQLite database in the user's cache folder.
//!
//! Embeddings are keyed by (content hash, embedder id), so a renamed or moved file
//! is still a hit and a changed file is a miss. Each batch is written in one
//! transaction: a killed run loses at most the batch in flight. A database that
//! cannot be opened or fails SQLite's integrity check is moved aside (never
//! deleted) and a fresh one is created, with a warning.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use rusqlite::{Connection, OpenFlags, params};

use crate::decode::ContentHash;

/// Bumped when the table layout changes; an older database is moved aside.
const SCHEMA_VERSION: i64 = 1;

/// Where embedscope keeps caches and default outputs: `$EMBEDSCOPE_CACHE_DIR`, or
/// the platform cache folder (`~/.cache/embedscope` on Linux).
pub fn default_cache_dir() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("EMBEDSCOPE_CACHE_DIR") {
        return Ok(PathBuf::from(dir));
    }
    dirs::cache_dir()
        .map(|d| d.join("embedscope"))
        .context("no cache folder is known for this user: set EMBEDSCOPE_CACHE_DIR or pass --out")
}

pub struct EmbeddingCache {
    conn: Connection,
    path: PathBuf,
}

/// One cached vector plus the image size it came from.
#[derive(Clone, Debug, PartialEq)]
pub struct CachedEmbedding {
    pub width: u32,
    pub height: u32,
    pub vector: Vec<f32>,
}

impl EmbeddingCache {
    /// Opens (or creates) the cache at `path`. The second value is a warning when
    /// a damaged database had to be moved aside.
    pub fn open(path: &Path) -> anyhow::Result<(Self, Option<String>)> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create the cache folder {}", parent.display()))?;
        }
        match Self::open_checked(path) {
            Ok(cache) => Ok((cache, None)),
            Err(problem) => {
                let aside = move_aside(path)?;
                let cache = Self::open_checked(path).with_context(|| {
                    format!("cannot create a new embedding cache at {}", path.display())
                })?;
                let warning = format!(
                    "the embedding cache {} was damaged ({problem:#}); it was moved to {} and a new one was started",
                    path.display(),
                    aside.display()
                );
                Ok((cache, Some(warning)))
            }
        }
    }

    fn open_checked(path: &Path) -> anyhow::Result<Self> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE,
        )?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        let check: String = conn.query_row("PRAGMA quick_check", [], |row| row.get(0))?;
        if check != "ok" {
            anyhow::bail!("integrity check: {check}");
        }
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        let version: i64 = conn.query_row("PRAGMA user_version", [], |row| row.get(0))?;
        let tables: i64 = conn.query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table'",
            [],
            |row| row.get(0),
        )?;
        if tables > 0 && version != SCHEMA_VERSION {
            anyhow::bail!("schema version {version}, expected {SCHEMA_VERSION}");
        }
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS embeddings (
                 hash     BLOB NOT NULL,
                 embedder TEXT NOT NULL,
                 width    INTEGER NOT NULL,
                 height   INTEGER NOT NULL,
                 vector   BLOB NOT NULL,
                 PRIMARY KEY (hash, embedder)
             ) WITHOUT ROWID;",
        )?;
        conn.pragma_update(None, "user_version", SCHEMA_VERSION)?;
        Ok(Self {
            conn,
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Looks up many hashes at once; missing ones are absent from the map.
    pub fn get_many(
        &self,
        embedder: &str,
        dim: usize,
        hashes: &[ContentHash],
    ) -> anyhow::Result<HashMap<ContentHash, CachedEmbedding>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT width, height, vector FROM embeddings WHERE hash = ?1 AND embedder = ?2",
        )?;
        let mut found = HashMap::new();
        for hash in hashes {
            let row = stmt.query_row(params![&hash.0[..], embedder], |row| {
                Ok((
                    row.get::<_, u32>(0)?,
                    row.get::<_, u32>(1)?,
                    row.get::<_, Vec<u8>>(2)?,
                ))
            });
            match row {
                Ok((width, height, blob)) => {
                    // A vector of the wrong length is treated as missing and rewritten.
                    if blob.len() == dim * 4 {
                        let vector = blob
                            .chunks_exact(4)
                            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                            .collect();
                        found.insert(
                            *hash,
                            CachedEmbedding {
                                width,
                                height,
                                vector,
                            },
                        );
                    }
                }
                Err(rusqlite::Error::QueryReturnedNoRows) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(found)
    }

    /// Stores a batch in one transaction.
    pub fn put_many(
        &mut self,
        embedder: &str,
        items: &[(ContentHash, u32, u32, &[f32])],
    ) -> anyhow::Result<()> {
        let tx = self.conn.transaction()?;
        {
            let mut stmt = tx.prepare_cached(
                "INSERT OR REPLACE INTO embeddings (hash, embedder, width, height, vector)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            for (hash, width, height, vector) in items {
                let blob: Vec<u8> = vector.iter().flat_map(|x| x.to_le_bytes()).collect();
                stmt.execute(params![&hash.0[..], embedder, width, height, blob])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Number of vectors stored for `embedder`.
    #[cfg(test)]
    fn count(&self, embedder: &str) -> anyhow::Result<u64> {
        let count: i64 = self.conn.query_row(
            "SELECT count(*) FROM embeddings WHERE embedder = ?1",
            [embedder],
            |row| row.get(0),
        )?;
        Ok(count as u64)
    }
}

/// Renames a damaged database (and its WAL side files) to `<name>.corrupt-<time>`.
fn move_aside(path: &Path) -> anyhow::Result<PathBuf> {
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let aside = path.with_extension(format!("sqlite.corrupt-{stamp}"));
    if path.exists() {
        std::fs::rename(path, &aside).with_context(|| {
            format!(
                "the embedding cache {} is damaged and could not be moved aside; delete it by hand",
                path.display()
            )
        })?;
    }
    for suffix in ["-wal", "-shm"] {
        let side = PathBuf::from(format!("{}{suffix}", path.display()));
        if side.exists() {
            let _ = std::fs::rename(&side, format!("{}{suffix}", aside.display()));
        }
    }
    Ok(aside)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(n: u8) -> ContentHash {
        ContentHash([n; 32])
    }

    #[test]
    fn round_trips_and_keys_by_embedder() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cache.sqlite");
        let (mut cache, warning) = EmbeddingCache::open(&path).unwrap();
        assert!(warning.is_none());
        cache
            .put_many(
                "e1",
                &[(hash(1), 3, 4, &[0.5, -0.25]), (hash(2), 5, 6, &[1.0, 0.0])],
            )
            .unwrap();
        drop(cache);
        let (cache, _) = EmbeddingCache::open(&path).unwrap();
        let got = cache.get_many("e1", 2, &[hash(1), hash(3)]).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[&hash(1)].vector, vec![0.5, -0.25]);
        assert_eq!((got[&hash(1)].width, got[&hash(1)].height), (3, 4));
        assert!(cache.get_many("e2", 2, &[hash(1)]).unwrap().is_empty());
        // A different dimension is a miss, not garbage.
        assert!(cache.get_many("e1", 3, &[hash(1)]).unwrap().is_empty());
        assert_eq!(cache.count("e1").unwrap(), 2);
    }

    #[test]
    fn a_corrupt_database_is_moved_aside_and_rebuilt() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cache.sqlite");
        std::fs::write(
            &path,
            b"this is not an sqlite database, just junk bytes".repeat(100),
        )
        .unwrap();
        let (mut cache, warning) = EmbeddingCache::open(&path).unwrap();
        let warning = warning.expect("a warning about the damaged cache");
        assert!(warning.contains("moved to"), "{warning}");
        cache.put_many("e", &[(hash(9), 1, 1, &[1.0])]).unwrap();
        let moved: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().contains("corrupt"))
            .collect();
        assert_eq!(moved.len(), 1, "the damaged file is kept, not deleted");
    }
}
