//! The embedding cache: an SQLite database in the user's cache folder.
//!
//! Embeddings are keyed by (content hash, embedder id), so a renamed or moved file
//! is still a hit and a changed file is a miss. Each batch is written in one
//! transaction: a killed run loses at most the batch in flight.
//!
//! Opening distinguishes what went wrong ([`CacheError`]): only a database that
//! is really damaged (or not an embedscope cache at all) is moved aside, never
//! deleted, and a fresh one created, with a warning. A database another
//! embedscope is writing (busy) is waited for, then read without writing; one
//! made by a newer embedscope is left alone and the run goes on without it;
//! one made by an older embedscope is migrated in place (schema 1 → 2 adds
//! the `looks` table: rows written before it are recomputed as images are
//! decoded again).
//!
//! Besides the vectors, each image's looks ([`ImageLooks`]: perceptual hash,
//! grey square, quality statistics) are kept by content hash alone, since
//! they do not depend on the embedder.

pub mod analysis;
pub mod thumbnails;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use rusqlite::{Connection, ErrorCode, OpenFlags, params};

use crate::decode::{ContentHash, ImageLooks};

/// Bumped when the table layout changes. 2: the `looks` table.
const SCHEMA_VERSION: i64 = 2;

const CREATE_LOOKS: &str = "CREATE TABLE IF NOT EXISTS looks (
     hash  BLOB PRIMARY KEY,
     looks BLOB NOT NULL
 ) WITHOUT ROWID;";

/// How long a busy database is waited for before it is read without writing.
const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

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

/// Why the cache could not be used as it is.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// Damaged, or not an embedscope cache: safe to move aside.
    #[error("the embedding cache {path} is damaged ({detail})")]
    Corrupt { path: PathBuf, detail: String },
    /// Another process holds the write lock past [`BUSY_TIMEOUT`].
    #[error("the embedding cache {path} is busy (another embedscope is writing to it)")]
    Busy { path: PathBuf },
    /// Written by a newer embedscope: left untouched.
    #[error(
        "the embedding cache {path} was made by a newer embedscope (schema {found}, this one \
         knows {SCHEMA_VERSION}): update embedscope, or pass --cache with another file"
    )]
    NewerSchema { path: PathBuf, found: i64 },
    /// Anything else (permissions, a full disk): reported, nothing moved.
    #[error("the embedding cache {path} cannot be used: {detail}")]
    Unusable { path: PathBuf, detail: String },
}

impl CacheError {
    fn from_sqlite(path: &Path, err: rusqlite::Error) -> Self {
        let path = path.to_path_buf();
        match err.sqlite_error_code() {
            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => CacheError::Busy { path },
            Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase) => CacheError::Corrupt {
                path,
                detail: err.to_string(),
            },
            _ => CacheError::Unusable {
                path,
                detail: err.to_string(),
            },
        }
    }
}

pub struct EmbeddingCache {
    conn: Connection,
    path: PathBuf,
    /// Opened while another process was writing: vectors are read, not stored.
    read_only: bool,
    /// The `looks` table exists (false for a schema-1 database opened read
    /// only: it could not be migrated then).
    has_looks: bool,
}

/// One cached vector plus the image size it came from.
#[derive(Clone, Debug, PartialEq)]
pub struct CachedEmbedding {
    pub width: u32,
    pub height: u32,
    pub vector: Vec<f32>,
}

impl EmbeddingCache {
    /// Opens (or creates) the cache at `path`. The second value is a warning
    /// for the user when the cache is not used as usual (moved aside, read
    /// only).
    pub fn open(path: &Path) -> Result<(Self, Option<String>), CacheError> {
        Self::open_with_timeout(path, BUSY_TIMEOUT)
    }

    /// [`EmbeddingCache::open`], waiting at most `busy_timeout` for another
    /// writer.
    pub fn open_with_timeout(
        path: &Path,
        busy_timeout: std::time::Duration,
    ) -> Result<(Self, Option<String>), CacheError> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| CacheError::Unusable {
                path: path.to_path_buf(),
                detail: format!("cannot create the folder {}: {e}", parent.display()),
            })?;
        }
        match Self::open_checked(path, busy_timeout) {
            Ok(cache) => Ok((cache, None)),
            Err(CacheError::Corrupt { detail, .. }) => {
                let aside = move_aside(path)?;
                let cache = Self::open_checked(path, busy_timeout)?;
                let warning = format!(
                    "the embedding cache {} was damaged ({detail}); it was moved to {} and a new one was started",
                    path.display(),
                    aside.display()
                );
                Ok((cache, Some(warning)))
            }
            Err(CacheError::Busy { .. }) => {
                let cache = Self::open_read_only(path, busy_timeout)?;
                let warning = format!(
                    "the embedding cache {} is busy (another embedscope is writing to it): \
                     reading it without storing this run's vectors",
                    path.display()
                );
                Ok((cache, Some(warning)))
            }
            Err(other) => Err(other),
        }
    }

    fn open_checked(path: &Path, busy_timeout: std::time::Duration) -> Result<Self, CacheError> {
        let sqlite = |e| CacheError::from_sqlite(path, e);
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE,
        )
        .map_err(sqlite)?;
        conn.busy_timeout(busy_timeout).map_err(sqlite)?;
        let check: String = conn
            .query_row("PRAGMA quick_check", [], |row| row.get(0))
            .map_err(sqlite)?;
        if check != "ok" {
            return Err(CacheError::Corrupt {
                path: path.to_path_buf(),
                detail: format!("integrity check: {check}"),
            });
        }
        // WAL: readers never wait for the writer (the viewer and the CLI on
        // one cache). Setting it again on a WAL database writes nothing.
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(sqlite)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(sqlite)?;
        match check_schema(&conn, path)? {
            // Only a new or an older database is written to on open, so
            // opening a current one that another process is writing does not
            // wait for its lock.
            Schema::Empty => {
                conn.execute_batch(&format!(
                    "CREATE TABLE IF NOT EXISTS embeddings (
                         hash     BLOB NOT NULL,
                         embedder TEXT NOT NULL,
                         width    INTEGER NOT NULL,
                         height   INTEGER NOT NULL,
                         vector   BLOB NOT NULL,
                         PRIMARY KEY (hash, embedder)
                     ) WITHOUT ROWID;
                     {CREATE_LOOKS}"
                ))
                .map_err(sqlite)?;
                conn.pragma_update(None, "user_version", SCHEMA_VERSION)
                    .map_err(sqlite)?;
            }
            // Schema 1 lacks the looks: add the table, keep every vector. One
            // transaction, so a killed migration leaves schema 1 as it was; a
            // busy database is read as schema 1 (see `open`).
            Schema::Old(1) => conn
                .execute_batch(&format!(
                    "BEGIN IMMEDIATE; {CREATE_LOOKS} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
                ))
                .map_err(sqlite)?,
            Schema::Old(_) | Schema::Current => {}
        }
        Ok(Self {
            conn,
            path: path.to_path_buf(),
            read_only: false,
            has_looks: true,
        })
    }

    fn open_read_only(path: &Path, busy_timeout: std::time::Duration) -> Result<Self, CacheError> {
        let sqlite = |e| CacheError::from_sqlite(path, e);
        let conn =
            Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(sqlite)?;
        conn.busy_timeout(busy_timeout).map_err(sqlite)?;
        let schema = check_schema(&conn, path)?;
        if schema == Schema::Empty {
            return Err(CacheError::Busy {
                path: path.to_path_buf(),
            });
        }
        Ok(Self {
            conn,
            path: path.to_path_buf(),
            read_only: true,
            has_looks: schema == Schema::Current,
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
    ) -> Result<HashMap<ContentHash, CachedEmbedding>, CacheError> {
        let sqlite = |e| CacheError::from_sqlite(&self.path, e);
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT width, height, vector FROM embeddings WHERE hash = ?1 AND embedder = ?2",
            )
            .map_err(sqlite)?;
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
                Err(e) => return Err(sqlite(e)),
            }
        }
        Ok(found)
    }

    /// The looks stored for these hashes; missing (or unreadable) ones are
    /// absent from the map.
    pub fn get_looks(
        &self,
        hashes: &[ContentHash],
    ) -> Result<HashMap<ContentHash, ImageLooks>, CacheError> {
        let mut found = HashMap::new();
        if !self.has_looks {
            return Ok(found);
        }
        let sqlite = |e| CacheError::from_sqlite(&self.path, e);
        let mut stmt = self
            .conn
            .prepare_cached("SELECT looks FROM looks WHERE hash = ?1")
            .map_err(sqlite)?;
        for hash in hashes {
            match stmt.query_row(params![&hash.0[..]], |row| row.get::<_, Vec<u8>>(0)) {
                // A row of another layout is treated as missing and rewritten.
                Ok(blob) => {
                    if let Some(looks) = ImageLooks::from_bytes(&blob) {
                        found.insert(*hash, looks);
                    }
                }
                Err(rusqlite::Error::QueryReturnedNoRows) => {}
                Err(e) => return Err(sqlite(e)),
            }
        }
        Ok(found)
    }

    /// Stores looks in one transaction (nothing when read-only).
    pub fn put_looks(&mut self, items: &[(ContentHash, &ImageLooks)]) -> Result<(), CacheError> {
        if self.read_only || !self.has_looks || items.is_empty() {
            return Ok(());
        }
        let path = self.path.clone();
        let sqlite = |e| CacheError::from_sqlite(&path, e);
        let tx = self.conn.transaction().map_err(sqlite)?;
        {
            let mut stmt = tx
                .prepare_cached("INSERT OR REPLACE INTO looks (hash, looks) VALUES (?1, ?2)")
                .map_err(sqlite)?;
            for (hash, looks) in items {
                stmt.execute(params![&hash.0[..], looks.to_bytes()])
                    .map_err(sqlite)?;
            }
        }
        tx.commit().map_err(sqlite)?;
        Ok(())
    }

    /// Whether this run's vectors are stored (false while another process
    /// held the database when it was opened).
    pub fn writable(&self) -> bool {
        !self.read_only
    }

    /// Stores a batch in one transaction (nothing when read-only).
    pub fn put_many<V: AsRef<[f32]>>(
        &mut self,
        embedder: &str,
        items: &[(ContentHash, u32, u32, V)],
    ) -> Result<(), CacheError> {
        if self.read_only || items.is_empty() {
            return Ok(());
        }
        let path = self.path.clone();
        let sqlite = |e| CacheError::from_sqlite(&path, e);
        let tx = self.conn.transaction().map_err(sqlite)?;
        {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO embeddings (hash, embedder, width, height, vector)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .map_err(sqlite)?;
            for (hash, width, height, vector) in items {
                let blob: Vec<u8> = vector
                    .as_ref()
                    .iter()
                    .flat_map(|x| x.to_le_bytes())
                    .collect();
                stmt.execute(params![&hash.0[..], embedder, width, height, blob])
                    .map_err(sqlite)?;
            }
        }
        tx.commit().map_err(sqlite)?;
        Ok(())
    }

    /// Stops storing: after a write failed mid-run (the disk filled up,
    /// another process took the lock), the run goes on with what it has.
    pub fn stop_writing(&mut self) {
        self.read_only = true;
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

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Schema {
    /// A new database: no tables yet.
    Empty,
    /// Made by an older embedscope: migrated on open.
    Old(i64),
    Current,
}

/// Refuses a database made by a newer embedscope, and one whose tables are
/// not an embedscope cache (user_version 0 with tables: someone else's file).
fn check_schema(conn: &Connection, path: &Path) -> Result<Schema, CacheError> {
    let sqlite = |e| CacheError::from_sqlite(path, e);
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .map_err(sqlite)?;
    let tables: i64 = conn
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table'",
            [],
            |row| row.get(0),
        )
        .map_err(sqlite)?;
    if version > SCHEMA_VERSION {
        return Err(CacheError::NewerSchema {
            path: path.to_path_buf(),
            found: version,
        });
    }
    if tables == 0 {
        return Ok(Schema::Empty);
    }
    if version == 1 {
        return Ok(Schema::Old(version));
    }
    if version != SCHEMA_VERSION {
        return Err(CacheError::Corrupt {
            path: path.to_path_buf(),
            detail: format!("schema version {version}, not an embedscope cache"),
        });
    }
    Ok(Schema::Current)
}

/// Renames a damaged database (and its WAL side files) to `<name>.corrupt-<time>`.
fn move_aside(path: &Path) -> Result<PathBuf, CacheError> {
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let aside = path.with_extension(format!("sqlite.corrupt-{stamp}"));
    if path.exists() {
        std::fs::rename(path, &aside).map_err(|e| CacheError::Unusable {
            path: path.to_path_buf(),
            detail: format!("it is damaged and could not be moved aside ({e}); delete it by hand"),
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
                &[
                    (hash(1), 3, 4, &[0.5f32, -0.25]),
                    (hash(2), 5, 6, &[1.0, 0.0]),
                ],
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

    fn looks() -> ImageLooks {
        let img = image::DynamicImage::ImageRgb8(image::RgbImage::from_fn(40, 30, |x, y| {
            image::Rgb([(x * 6) as u8, (y * 8) as u8, ((x * y) % 200) as u8])
        }));
        ImageLooks::of(&img)
    }

    #[test]
    fn looks_round_trip_by_hash_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cache.sqlite");
        let (mut cache, _) = EmbeddingCache::open(&path).unwrap();
        let l = looks();
        cache.put_looks(&[(hash(1), &l)]).unwrap();
        drop(cache);
        let (cache, _) = EmbeddingCache::open(&path).unwrap();
        let got = cache.get_looks(&[hash(1), hash(2)]).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[&hash(1)], l);
    }

    /// The table layout embedscope wrote before the looks were kept.
    fn schema_one(path: &Path) {
        let conn = Connection::open(path).unwrap();
        conn.execute_batch(
            "CREATE TABLE embeddings (
                 hash BLOB NOT NULL, embedder TEXT NOT NULL, width INTEGER NOT NULL,
                 height INTEGER NOT NULL, vector BLOB NOT NULL, PRIMARY KEY (hash, embedder)
             ) WITHOUT ROWID;
             INSERT INTO embeddings VALUES (x'0101010101010101010101010101010101010101010101010101010101010101', 'e', 3, 4, x'0000803f');
             PRAGMA user_version = 1;",
        )
        .unwrap();
    }

    #[test]
    fn a_schema_one_cache_is_migrated_in_place_keeping_its_vectors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cache.sqlite");
        schema_one(&path);
        let (mut cache, warning) = EmbeddingCache::open(&path).unwrap();
        assert!(warning.is_none(), "{warning:?}");
        let got = cache.get_many("e", 1, &[hash(1)]).unwrap();
        assert_eq!(got[&hash(1)].vector, vec![1.0]);
        // The old rows have no looks: the run recomputes and stores them.
        assert!(cache.get_looks(&[hash(1)]).unwrap().is_empty());
        cache.put_looks(&[(hash(1), &looks())]).unwrap();
        assert_eq!(cache.get_looks(&[hash(1)]).unwrap().len(), 1);
        drop(cache);
        let version: i64 = Connection::open(&path)
            .unwrap()
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(!names.iter().any(|n| n.contains("corrupt")), "{names:?}");
    }

    #[test]
    fn a_busy_schema_one_cache_is_read_without_looks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cache.sqlite");
        schema_one(&path);
        // Another (older) embedscope in the middle of writing a batch.
        let writer = Connection::open(&path).unwrap();
        writer
            .execute_batch(
                "BEGIN IMMEDIATE; INSERT INTO embeddings VALUES (x'00', 'e', 1, 1, x'0000803f');",
            )
            .unwrap();
        let short = std::time::Duration::from_millis(50);
        let (mut cache, warning) = EmbeddingCache::open_with_timeout(&path, short).unwrap();
        assert!(warning.unwrap().contains("busy"));
        assert_eq!(cache.get_many("e", 1, &[hash(1)]).unwrap().len(), 1);
        assert!(cache.get_looks(&[hash(1)]).unwrap().is_empty());
        cache.put_looks(&[(hash(1), &looks())]).unwrap();
        writer.execute_batch("COMMIT").unwrap();
        drop(cache);
        let version: i64 = Connection::open(&path)
            .unwrap()
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .unwrap();
        assert_eq!(version, 1, "left as it was while busy");
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
        cache.put_many("e", &[(hash(9), 1, 1, &[1.0f32])]).unwrap();
        let moved: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().contains("corrupt"))
            .collect();
        assert_eq!(moved.len(), 1, "the damaged file is kept, not deleted");
    }

    #[test]
    fn a_newer_schema_is_refused_and_left_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cache.sqlite");
        drop(EmbeddingCache::open(&path).unwrap());
        Connection::open(&path)
            .unwrap()
            .pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        let before = std::fs::read(&path).unwrap();
        let err = EmbeddingCache::open(&path).err().expect("refused");
        assert!(
            matches!(err, CacheError::NewerSchema { found, .. } if found == SCHEMA_VERSION + 1)
        );
        assert!(err.to_string().contains("newer embedscope"), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), before);
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "nothing moved aside"
        );
    }

    #[test]
    fn a_busy_cache_is_read_but_not_moved_aside_or_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cache.sqlite");
        let (mut first, _) = EmbeddingCache::open(&path).unwrap();
        first.put_many("e", &[(hash(1), 1, 1, &[1.0f32])]).unwrap();
        // Another process in the middle of writing a batch.
        let writer = Connection::open(&path).unwrap();
        writer
            .execute_batch(
                "BEGIN IMMEDIATE; INSERT INTO embeddings VALUES (x'00', 'e', 1, 1, x'0000803f');",
            )
            .unwrap();
        let short = std::time::Duration::from_millis(50);
        let (mut second, warning) = EmbeddingCache::open_with_timeout(&path, short).unwrap();
        assert!(
            warning.is_none(),
            "opening an existing cache writes nothing"
        );
        assert_eq!(second.get_many("e", 1, &[hash(1)]).unwrap().len(), 1);
        let err = second
            .put_many("e", &[(hash(2), 1, 1, &[1.0f32])])
            .unwrap_err();
        assert!(matches!(err, CacheError::Busy { .. }), "{err}");
        writer.execute_batch("COMMIT").unwrap();
        assert!(path.exists());
        let aside = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .any(|e| e.file_name().to_string_lossy().contains("corrupt"));
        assert!(!aside, "a busy cache is never moved aside");
    }
}
