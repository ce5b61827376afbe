//! Blob reference bookkeeping: a blob lives while a model file or a dataset refers
//! to it.

use super::{dispatch, Store, StoreResult};

impl Store {
    /// Forgets the blob `sha256` if no model file or dataset refers to it, calling
    /// `remove` (which deletes the stored bytes) before the deletion commits. A writer
    /// that adds a reference to the same blob concurrently is ordered by the blobs row
    /// and puts the bytes back after its commit (see `BlobStore::place`). Returns
    /// whether the bytes were removed.
    pub async fn collect_blob<F>(&self, sha256: &str, remove: F) -> StoreResult<bool>
    where
        F: FnOnce() -> std::io::Result<()>,
    {
        dispatch!(self, pool => {
            let mut tx = pool.begin().await?;
            // The transaction starts with its write, so SQLite takes the write lock at
            // once (a read first could not be upgraded under a concurrent writer). The
            // blobs row is referenced by foreign keys: a writer adding a reference
            // concurrently either waits for this deletion or makes it fail.
            let deleted = sqlx::query(
                "DELETE FROM blobs WHERE sha256 = $1 \
                 AND NOT EXISTS (SELECT 1 FROM model_files WHERE sha256 = $1) \
                 AND NOT EXISTS (SELECT 1 FROM datasets WHERE sha256 = $1)",
            )
            .bind(sha256)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            // No row at all: bytes placed by a writer that failed before recording them.
            let unrecorded = deleted == 0
                && !sqlx::query_scalar::<_, bool>(
                    "SELECT EXISTS (SELECT 1 FROM blobs WHERE sha256 = $1)",
                )
                .bind(sha256)
                .fetch_one(&mut *tx)
                .await?;
            let collect = deleted > 0 || unrecorded;
            if collect {
                if let Err(err) = remove() {
                    tracing::warn!(sha256, %err, "could not remove an unreferenced blob");
                }
            }
            tx.commit().await?;
            Ok(collect)
        })
    }
}
