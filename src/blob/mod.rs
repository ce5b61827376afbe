//! Artifact storage: content-addressed blobs in a local directory.
//!
//! Layout under the data directory: `blobs/<aa>/<sha256>` for published bytes,
//! `tmp/` for uploads in flight, `scratch/<job>-<attempt>/` for a job attempt's
//! partial outputs. Files are hard-linked into place, so a blob is either absent or
//! complete.

mod hashing;

pub use hashing::{HashingWriter, SinkError, UploadSink, Uploaded};

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use uuid::Uuid;

/// The local blob directory.
#[derive(Clone, Debug)]
pub struct BlobStore {
    root: PathBuf,
}

impl BlobStore {
    /// Opens (and creates) the blob directories under `data_dir`.
    pub fn open(data_dir: &Path) -> io::Result<BlobStore> {
        let store = BlobStore {
            root: data_dir.to_path_buf(),
        };
        std::fs::create_dir_all(store.root.join("blobs"))?;
        std::fs::create_dir_all(store.tmp_dir())?;
        std::fs::create_dir_all(store.root.join("scratch"))?;
        Ok(store)
    }

    /// Where the blob `sha256` lives.
    pub fn path(&self, sha256: &str) -> PathBuf {
        let prefix = sha256.get(..2).unwrap_or("xx");
        self.root.join("blobs").join(prefix).join(sha256)
    }

    /// The directory for uploads in flight.
    pub fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// A new temporary file for an upload; it disappears when dropped.
    pub fn temp_file(&self) -> io::Result<tempfile::NamedTempFile> {
        tempfile::Builder::new()
            .prefix("upload-")
            .tempfile_in(self.tmp_dir())
    }

    /// A fresh, empty scratch directory for one attempt of a job.
    pub fn scratch_dir(&self, job: Uuid, attempt: i32) -> io::Result<PathBuf> {
        let dir = self.root.join("scratch").join(format!("{job}-{attempt}"));
        if dir.exists() {
            std::fs::remove_dir_all(&dir)?;
        }
        std::fs::create_dir_all(&dir)?;
        Ok(dir)
    }

    /// Links a complete file into place as blob `sha256`, unless that blob exists.
    /// Called before the database refers to the blob, and again after (see
    /// `Store::collect_blob`): a concurrent collection may have removed it meanwhile.
    pub fn place(&self, file: &Path, sha256: &str) -> io::Result<()> {
        let dest = self.path(sha256);
        if dest.exists() {
            return Ok(());
        }
        std::fs::create_dir_all(dest.parent().expect("blob paths have a parent"))?;
        match std::fs::hard_link(file, &dest) {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
            other => other,
        }
    }

    /// Deletes the bytes of blob `sha256` (absent is fine).
    pub fn remove(&self, sha256: &str) -> io::Result<()> {
        match std::fs::remove_file(self.path(sha256)) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }

    /// Removes upload temporaries untouched for `age` (left by a process that died);
    /// returns how many it removed.
    pub fn remove_stale_uploads(&self, age: Duration) -> io::Result<usize> {
        let mut removed = 0;
        for (path, _) in entries_older_than(&self.tmp_dir(), age)? {
            if std::fs::remove_file(path).is_ok() {
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Scratch folders untouched for `age`, with the job and attempt they belong to.
    pub fn stale_scratch(&self, age: Duration) -> io::Result<Vec<(PathBuf, Uuid, i32)>> {
        Ok(entries_older_than(&self.root.join("scratch"), age)?
            .into_iter()
            .filter_map(|(path, name)| {
                let (job, attempt) = name.rsplit_once('-')?;
                Some((
                    path.clone(),
                    Uuid::parse_str(job).ok()?,
                    attempt.parse().ok()?,
                ))
            })
            .collect())
    }

    /// Checks that the blob directory is writable (for `/readyz`).
    pub fn check(&self) -> io::Result<()> {
        let probe = tempfile::Builder::new()
            .prefix("ready-")
            .tempfile_in(self.tmp_dir())?;
        probe.close()
    }
}

/// Entries of `dir` (path and file name) not modified for `age`.
fn entries_older_than(dir: &Path, age: Duration) -> io::Result<Vec<(PathBuf, String)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.metadata()?.modified()?.elapsed().unwrap_or_default() >= age {
            out.push((
                entry.path(),
                entry.file_name().to_string_lossy().into_owned(),
            ));
        }
    }
    Ok(out)
}

/// Whether `name` is a plain 64-digit lowercase hex digest.
pub fn is_sha256(name: &str) -> bool {
    name.len() == 64 && name.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn place_is_idempotent_and_remove_tolerates_absence() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = BlobStore::open(dir.path()).unwrap();
        let mut tmp = blobs.temp_file().unwrap();
        std::io::Write::write_all(&mut tmp, b"hello").unwrap();
        let sha = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";
        blobs.place(tmp.path(), sha).unwrap();
        blobs.place(tmp.path(), sha).unwrap();
        assert_eq!(std::fs::read(blobs.path(sha)).unwrap(), b"hello");
        drop(tmp);
        assert_eq!(std::fs::read(blobs.path(sha)).unwrap(), b"hello");
        blobs.remove(sha).unwrap();
        blobs.remove(sha).unwrap();
        assert!(!blobs.path(sha).exists());
        assert!(is_sha256(sha) && !is_sha256("../etc/passwd"));
        blobs.check().unwrap();
    }

    #[test]
    fn stale_leftovers_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = BlobStore::open(dir.path()).unwrap();
        let (_, kept) = blobs.temp_file().unwrap().keep().unwrap();
        let job = Uuid::now_v7();
        let scratch = blobs.scratch_dir(job, 2).unwrap();
        assert_eq!(
            blobs
                .remove_stale_uploads(Duration::from_secs(3600))
                .unwrap(),
            0
        );
        assert!(blobs
            .stale_scratch(Duration::from_secs(3600))
            .unwrap()
            .is_empty());
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(
            blobs
                .remove_stale_uploads(Duration::from_millis(10))
                .unwrap(),
            1
        );
        assert!(!kept.exists());
        assert_eq!(
            blobs.stale_scratch(Duration::from_millis(10)).unwrap(),
            vec![(scratch, job, 2)]
        );
    }
}
