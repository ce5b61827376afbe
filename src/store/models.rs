//! Models, their files and their tensors.

use std::collections::{BTreeMap, HashMap};

use sqlx::types::Json;
use uuid::Uuid;

use super::{
    dispatch, job_status, model_status, now_ms, FileRow, ModelRow, Store, StoreError, StoreResult,
    TensorRow,
};

const MODEL_COLUMNS: &str = "id, tenant_id, name, status, error, architecture, tensor_count, \
     params, bytes, dtypes, parent_id, job_id, created_at, updated_at";

/// A file to attach to a model: its blob is already in the blob store.
#[derive(Clone, Debug)]
pub struct NewFile {
    pub name: String,
    pub sha256: String,
    pub size: i64,
}

/// A tensor of a model being finalized.
#[derive(Clone, Debug)]
pub struct NewTensor {
    pub name: String,
    pub dtype: String,
    pub shape: Vec<u64>,
    pub file: String,
}

/// What finalize learned from a model's files.
#[derive(Clone, Debug, Default)]
pub struct FinalizeSummary {
    pub architecture: Option<String>,
    pub params: i64,
    pub bytes: i64,
    pub dtypes: BTreeMap<String, i64>,
    pub tensors: Vec<NewTensor>,
}

/// Records that blob `$sha` exists (the row that references to it point at).
macro_rules! record_blob {
    ($tx:expr, $sha:expr, $size:expr, $now:expr) => {
        sqlx::query(
            "INSERT INTO blobs (sha256, size, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (sha256) DO UPDATE SET size = excluded.size",
        )
        .bind($sha)
        .bind($size)
        .bind($now)
        .execute(&mut *$tx)
        .await?;
    };
}
pub(crate) use record_blob;

/// Inserts the blob rows, file rows and tensor rows of a model inside a transaction.
macro_rules! insert_contents {
    ($tx:expr, $model_id:expr, $files:expr, $tensors:expr, $now:expr) => {{
        for f in $files {
            $crate::store::models::record_blob!($tx, &f.sha256, f.size, $now);
            sqlx::query("INSERT INTO model_files (model_id, name, sha256, size) VALUES ($1, $2, $3, $4)")
                .bind($model_id)
                .bind(&f.name)
                .bind(&f.sha256)
                .bind(f.size)
                .execute(&mut *$tx)
                .await?;
        }
        for t in $tensors {
            sqlx::query(
                "INSERT INTO model_tensors (model_id, name, dtype, shape, file) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind($model_id)
            .bind(&t.name)
            .bind(&t.dtype)
            .bind(Json(&t.shape))
            .bind(&t.file)
            .execute(&mut *$tx)
            .await?;
        }
    }};
}
pub(crate) use insert_contents;

/// Sets a model's summary columns inside a transaction.
macro_rules! set_summary {
    ($tx:expr, $model_id:expr, $summary:expr, $now:expr) => {
        sqlx::query(
            "UPDATE models SET status = 'ready', architecture = $2, tensor_count = $3, params = $4, \
             bytes = $5, dtypes = $6, updated_at = $7 WHERE id = $1",
        )
        .bind($model_id)
        .bind(&$summary.architecture)
        .bind($summary.tensors.len() as i64)
        .bind($summary.params)
        .bind($summary.bytes)
        .bind(Json(&$summary.dtypes))
        .bind($now)
        .execute(&mut *$tx)
        .await?
    };
}
pub(crate) use set_summary;

/// Locks model `$id` of `$tenant` inside a transaction and checks that it is still
/// `uploading`. Touching the row takes the write lock (SQLite) or the row lock
/// (Postgres), so concurrent puts, finalizes and deletes of one model are ordered.
macro_rules! lock_uploading {
    ($tx:expr, $tenant:expr, $id:expr, $now:expr) => {{
        let status: Option<String> = sqlx::query_scalar(
            "UPDATE models SET updated_at = $3 WHERE tenant_id = $1 AND id = $2 RETURNING status",
        )
        .bind($tenant)
        .bind($id)
        .bind($now)
        .fetch_optional(&mut *$tx)
        .await?;
        match status.as_deref() {
            None => return Err(StoreError::NotFound),
            Some(model_status::UPLOADING) => {}
            Some(other) => {
                return Err(StoreError::Conflict(format!(
                    "model {} is {other}: its files can no longer change; upload to a new model instead",
                    $id
                )))
            }
        }
    }};
}

impl Store {
    /// Creates an empty model in status `uploading`.
    pub async fn create_model(&self, tenant: Uuid, name: &str) -> StoreResult<ModelRow> {
        let id = Uuid::now_v7();
        let now = now_ms();
        dispatch!(self, pool => {
            sqlx::query(
                "INSERT INTO models (id, tenant_id, name, status, created_at, updated_at) \
                 VALUES ($1, $2, $3, 'uploading', $4, $4)",
            )
            .bind(id)
            .bind(tenant)
            .bind(name)
            .bind(now)
            .execute(pool)
            .await?
            .rows_affected()
        });
        self.get_model(tenant, id)
            .await?
            .ok_or(StoreError::NotFound)
    }

    /// Creates a ready model with all its files in one transaction (one-shot upload).
    pub async fn create_ready_model(
        &self,
        tenant: Uuid,
        name: &str,
        files: &[NewFile],
        summary: &FinalizeSummary,
    ) -> StoreResult<ModelRow> {
        let id = Uuid::now_v7();
        let now = now_ms();
        dispatch!(self, pool => {
            let mut tx = pool.begin().await?;
            sqlx::query(
                "INSERT INTO models (id, tenant_id, name, status, created_at, updated_at) \
                 VALUES ($1, $2, $3, 'uploading', $4, $4)",
            )
            .bind(id)
            .bind(tenant)
            .bind(name)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            insert_contents!(tx, id, files, &summary.tensors, now);
            set_summary!(tx, id, summary, now);
            tx.commit().await?;
        });
        self.get_model(tenant, id)
            .await?
            .ok_or(StoreError::NotFound)
    }

    /// The model `id` of `tenant`, if any.
    pub async fn get_model(&self, tenant: Uuid, id: Uuid) -> StoreResult<Option<ModelRow>> {
        let sql = format!("SELECT {MODEL_COLUMNS} FROM models WHERE tenant_id = $1 AND id = $2");
        Ok(dispatch!(self, pool => {
            sqlx::query_as::<_, ModelRow>(sqlx::AssertSqlSafe(sql))
                .bind(tenant)
                .bind(id)
                .fetch_optional(pool)
                .await?
        }))
    }

    /// A page of the tenant's models, newest first, starting after `cursor`.
    pub async fn list_models(
        &self,
        tenant: Uuid,
        limit: i64,
        cursor: Option<Uuid>,
    ) -> StoreResult<Vec<ModelRow>> {
        let sql = format!(
            "SELECT {MODEL_COLUMNS} FROM models WHERE tenant_id = $1 AND ($2 IS NULL OR id < $2) \
             ORDER BY id DESC LIMIT $3"
        );
        Ok(dispatch!(self, pool => {
            sqlx::query_as::<_, ModelRow>(sqlx::AssertSqlSafe(sql))
                .bind(tenant)
                .bind(cursor)
                .bind(limit)
                .fetch_all(pool)
                .await?
        }))
    }

    /// The files of a model, by name.
    pub async fn model_files(&self, model_id: Uuid) -> StoreResult<Vec<FileRow>> {
        Ok(dispatch!(self, pool => {
            sqlx::query_as::<_, FileRow>(
                "SELECT name, sha256, size FROM model_files WHERE model_id = $1 ORDER BY name",
            )
            .bind(model_id)
            .fetch_all(pool)
            .await?
        }))
    }

    /// The files of several models in one query (for a page of a list).
    pub async fn files_of_models(&self, ids: &[Uuid]) -> StoreResult<HashMap<Uuid, Vec<FileRow>>> {
        let mut files: HashMap<Uuid, Vec<FileRow>> =
            ids.iter().map(|id| (*id, Vec::new())).collect();
        if ids.is_empty() {
            return Ok(files);
        }
        // Only numbered placeholders are formatted into the statement.
        let placeholders: Vec<String> = (1..=ids.len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            "SELECT model_id, name, sha256, size FROM model_files WHERE model_id IN ({}) ORDER BY name",
            placeholders.join(", ")
        );
        let rows: Vec<(Uuid, String, String, i64)> = dispatch!(self, pool => {
            let mut query = sqlx::query_as(sqlx::AssertSqlSafe(sql));
            for id in ids {
                query = query.bind(*id);
            }
            query.fetch_all(pool).await?
        });
        for (model_id, name, sha256, size) in rows {
            files
                .entry(model_id)
                .or_default()
                .push(FileRow { name, sha256, size });
        }
        Ok(files)
    }

    /// A page of a model's tensors, by name, starting after `cursor`.
    pub async fn list_tensors(
        &self,
        model_id: Uuid,
        limit: i64,
        cursor: Option<&str>,
    ) -> StoreResult<Vec<TensorRow>> {
        Ok(dispatch!(self, pool => {
            sqlx::query_as::<_, TensorRow>(
                "SELECT name, dtype, shape, file FROM model_tensors \
                 WHERE model_id = $1 AND ($2 IS NULL OR name > $2) ORDER BY name LIMIT $3",
            )
            .bind(model_id)
            .bind(cursor)
            .bind(limit)
            .fetch_all(pool)
            .await?
        }))
    }

    /// Adds (or replaces) one file of an `uploading` model. Returns the blob the file
    /// replaced, if any, which may now be garbage.
    pub async fn put_model_file(
        &self,
        tenant: Uuid,
        model_id: Uuid,
        file: &NewFile,
    ) -> StoreResult<Option<String>> {
        let now = now_ms();
        dispatch!(self, pool => {
            let mut tx = pool.begin().await?;
            lock_uploading!(tx, tenant, model_id, now);
            let old: Option<String> = sqlx::query_scalar(
                "DELETE FROM model_files WHERE model_id = $1 AND name = $2 RETURNING sha256",
            )
            .bind(model_id)
            .bind(&file.name)
            .fetch_optional(&mut *tx)
            .await?;
            let no_tensors: &[NewTensor] = &[];
            insert_contents!(tx, model_id, std::slice::from_ref(file), no_tensors, now);
            tx.commit().await?;
            Ok(old.filter(|sha| *sha != file.sha256))
        })
    }

    /// Marks an `uploading` model `ready` with the summary finalize computed.
    pub async fn finalize_model(
        &self,
        tenant: Uuid,
        model_id: Uuid,
        expected_files: &[FileRow],
        summary: &FinalizeSummary,
    ) -> StoreResult<ModelRow> {
        let now = now_ms();
        dispatch!(self, pool => {
            let mut tx = pool.begin().await?;
            lock_uploading!(tx, tenant, model_id, now);
            // The files must be the ones that were validated: a concurrent PUT would
            // otherwise slip an unchecked file into a ready model.
            let files: Vec<FileRow> = sqlx::query_as(
                "SELECT name, sha256, size FROM model_files WHERE model_id = $1 ORDER BY name",
            )
            .bind(model_id)
            .fetch_all(&mut *tx)
            .await?;
            if files != expected_files {
                return Err(StoreError::Conflict(
                    "the model's files changed while it was being finalized; finalize again".into(),
                ));
            }
            let no_files: &[NewFile] = &[];
            insert_contents!(tx, model_id, no_files, &summary.tensors, now);
            set_summary!(tx, model_id, summary, now);
            tx.commit().await?;
        });
        self.get_model(tenant, model_id)
            .await?
            .ok_or(StoreError::NotFound)
    }

    /// Deletes a model unless a queued or running job uses it. Returns the blobs that
    /// the model referred to, which may now be garbage.
    pub async fn delete_model(&self, tenant: Uuid, model_id: Uuid) -> StoreResult<Vec<String>> {
        dispatch!(self, pool => {
            let mut tx = pool.begin().await?;
            let found: Option<Uuid> = sqlx::query_scalar(
                "UPDATE models SET updated_at = updated_at WHERE tenant_id = $1 AND id = $2 RETURNING id",
            )
            .bind(tenant)
            .bind(model_id)
            .fetch_optional(&mut *tx)
            .await?;
            if found.is_none() {
                return Err(StoreError::NotFound);
            }
            let busy: Option<Uuid> = sqlx::query_scalar(
                "SELECT id FROM jobs WHERE model_id = $1 AND status IN ($2, $3) LIMIT 1",
            )
            .bind(model_id)
            .bind(job_status::QUEUED)
            .bind(job_status::RUNNING)
            .fetch_optional(&mut *tx)
            .await?;
            if let Some(job) = busy {
                return Err(StoreError::Conflict(format!(
                    "job {job} uses model {model_id}; cancel it or wait for it to end, then delete again"
                )));
            }
            let shas: Vec<String> =
                sqlx::query_scalar("SELECT sha256 FROM model_files WHERE model_id = $1")
                    .bind(model_id)
                    .fetch_all(&mut *tx)
                    .await?;
            sqlx::query("DELETE FROM models WHERE id = $1")
                .bind(model_id)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(shas)
        })
    }

    /// Models still `uploading` that were last touched before `cutoff_ms`.
    pub async fn stale_uploads(&self, cutoff_ms: i64) -> StoreResult<Vec<(Uuid, Uuid)>> {
        Ok(dispatch!(self, pool => {
            sqlx::query_as::<_, (Uuid, Uuid)>(
                "SELECT tenant_id, id FROM models WHERE status = 'uploading' AND updated_at < $1",
            )
            .bind(cutoff_ms)
            .fetch_all(pool)
            .await?
        }))
    }
}
