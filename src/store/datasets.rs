//! Datasets: text for calibration and evaluation.

use uuid::Uuid;

use super::models::record_blob;
use super::{dispatch, now_ms, DatasetRow, Store, StoreError, StoreResult};

const DATASET_COLUMNS: &str = "id, tenant_id, name, sha256, bytes, created_at";

impl Store {
    /// Records a dataset whose blob is in the blob store.
    pub async fn create_dataset(
        &self,
        tenant: Uuid,
        name: &str,
        sha256: &str,
        bytes: i64,
    ) -> StoreResult<DatasetRow> {
        let id = Uuid::now_v7();
        let now = now_ms();
        dispatch!(self, pool => {
            let mut tx = pool.begin().await?;
            record_blob!(tx, sha256, bytes, now);
            sqlx::query(
                "INSERT INTO datasets (id, tenant_id, name, sha256, bytes, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(id)
            .bind(tenant)
            .bind(name)
            .bind(sha256)
            .bind(bytes)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
        });
        self.get_dataset(tenant, id)
            .await?
            .ok_or(StoreError::NotFound)
    }

    /// The dataset `id` of `tenant`, if any.
    pub async fn get_dataset(&self, tenant: Uuid, id: Uuid) -> StoreResult<Option<DatasetRow>> {
        let sql =
            format!("SELECT {DATASET_COLUMNS} FROM datasets WHERE tenant_id = $1 AND id = $2");
        Ok(dispatch!(self, pool => {
            sqlx::query_as::<_, DatasetRow>(sqlx::AssertSqlSafe(sql))
                .bind(tenant)
                .bind(id)
                .fetch_optional(pool)
                .await?
        }))
    }

    /// A page of the tenant's datasets, newest first, starting after `cursor`.
    pub async fn list_datasets(
        &self,
        tenant: Uuid,
        limit: i64,
        cursor: Option<Uuid>,
    ) -> StoreResult<Vec<DatasetRow>> {
        let sql = format!(
            "SELECT {DATASET_COLUMNS} FROM datasets WHERE tenant_id = $1 AND ($2 IS NULL OR id < $2) \
             ORDER BY id DESC LIMIT $3"
        );
        Ok(dispatch!(self, pool => {
            sqlx::query_as::<_, DatasetRow>(sqlx::AssertSqlSafe(sql))
                .bind(tenant)
                .bind(cursor)
                .bind(limit)
                .fetch_all(pool)
                .await?
        }))
    }

    /// Deletes a dataset; returns its blob, which may now be garbage.
    pub async fn delete_dataset(&self, tenant: Uuid, id: Uuid) -> StoreResult<String> {
        let sha: Option<String> = dispatch!(self, pool => {
            sqlx::query_scalar("DELETE FROM datasets WHERE tenant_id = $1 AND id = $2 RETURNING sha256")
                .bind(tenant)
                .bind(id)
                .fetch_optional(pool)
                .await?
        });
        sha.ok_or(StoreError::NotFound)
    }
}
