//! Blob reference bookkeeping: a blob lives while some model file refers to it.

use super::{dispatch, Store, StoreResult};

impl Store {
    /// Forgets the blob `sha256` if no model file or dataset refers to it, calling `remove` (which
    /// deletes the stored bytes) before the deletion commits. A writer that adds a
    /// reference to the same blob concurrently is ordered by the blobs row and puts the
    /// bytes back after its commit (see `BlobStore`). Returns whether it was removed.
    pub async fn collect_blob<F>(&self, sha256: &str, remove: F) -> StoreResult<bool>
    where
        F: FnOnce() -> std::io::Result<()>,
    {
        dispatch!(self, pool => {
            let mut tx = pool.begin().await?;
            let referenced: bool =
                sqlx::query_scalar(
                    "SELECT EXISTS (SELECT 1 FROM model_files WHERE sha256 = $1) \
                     OR EXISTS (SELECT 1 FROM datasets WHERE sha256 = $1)",
                )
                    .bind(sha256)
                    .fetch_one(&mut *tx)
                    .await?;
            if referenced {
                return Ok(false);
            }
            // The blobs row is referenced by foreign keys, so a writer adding
            // a reference concurrently either waits for this deletion or makes it fail.
            sqlx::query("DELETE FROM blobs WHERE sha256 = $1")
                .bind(sha256)
                .execute(&mut *tx)
                .await?;
            if let Err(err) = remove() {
                tracing::warn!(sha256, %err, "could not remove an unreferenced blob");
            }
            tx.commit().await?;
            Ok(true)
        })
    }
}
