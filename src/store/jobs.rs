//! The job queue: create, claim with a lease, heartbeat, finish.
//!
//! Every write a worker makes is guarded by `lease_owner` and `attempts`, so a worker
//! that lost its lease (and whose job another worker took) cannot overwrite anything.

use sqlx::types::Json;
use uuid::Uuid;

use super::models::{insert_contents, set_summary};
use super::{
    dispatch, is_unique_violation, job_status, now_ms, FinalizeSummary, JobError, JobRow, NewFile,
    Progress, Store, StoreError, StoreResult, TensorMetric,
};

const JOB_COLUMNS: &str = "id, tenant_id, kind, status, model_id, recipe, resolved_recipe, \
     progress, attempts, max_attempts, lease_owner, lease_expires_at, cancel_requested, error, \
     output_model_id, report, engine_version, created_at, started_at, finished_at";

/// A job to enqueue.
#[derive(Clone, Debug)]
pub struct NewJob {
    pub tenant_id: Uuid,
    pub kind: String,
    pub model_id: Uuid,
    pub recipe: serde_json::Value,
    pub resolved_recipe: serde_json::Value,
    pub max_attempts: i32,
    pub idempotency_key: Option<String>,
    /// A digest of the request body, to tell a replay from a different request.
    pub request_hash: String,
    pub engine_version: String,
}

/// What `create_job` did.
#[derive(Clone, Debug)]
pub enum NewJobOutcome {
    /// A new job was queued.
    Created(JobRow),
    /// The idempotency key named an earlier identical request: its job.
    Replayed(JobRow),
}

/// A job a worker holds, with the lease that guards its writes.
#[derive(Clone, Debug)]
pub struct ClaimedJob {
    pub job: JobRow,
    pub owner: String,
    pub attempt: i32,
}

/// Everything a successful prune job publishes, in one transaction.
#[derive(Clone, Debug)]
pub struct Completion {
    pub output: Option<OutputModel>,
    /// The final progress.
    pub progress: Progress,
    pub metrics: Vec<TensorMetric>,
    pub report: serde_json::Value,
}

/// The model a job produced.
#[derive(Clone, Debug)]
pub struct OutputModel {
    pub name: String,
    pub files: Vec<NewFile>,
    pub summary: FinalizeSummary,
}

impl Store {
    /// Queues a job, honouring the idempotency key.
    pub async fn create_job(&self, new: &NewJob) -> StoreResult<NewJobOutcome> {
        if let Some(existing) = self.job_by_key(new).await? {
            return Ok(NewJobOutcome::Replayed(existing));
        }
        let id = Uuid::now_v7();
        let now = now_ms();
        let progress = Progress {
            phase: job_status::QUEUED.into(),
            unit: String::new(),
            done: 0,
            total: 0,
        };
        let inserted = dispatch!(self, pool => {
            sqlx::query(
                "INSERT INTO jobs (id, tenant_id, kind, status, model_id, recipe, resolved_recipe, \
                 progress, max_attempts, idempotency_key, request_hash, engine_version, created_at) \
                 VALUES ($1, $2, $3, 'queued', $4, $5, $6, $7, $8, $9, $10, $11, $12)",
            )
            .bind(id)
            .bind(new.tenant_id)
            .bind(&new.kind)
            .bind(new.model_id)
            .bind(Json(&new.recipe))
            .bind(Json(&new.resolved_recipe))
            .bind(Json(&progress))
            .bind(new.max_attempts)
            .bind(&new.idempotency_key)
            .bind(&new.request_hash)
            .bind(&new.engine_version)
            .bind(now)
            .execute(pool)
            .await
            .map(|_| ())
        });
        match inserted {
            Ok(_) => {}
            // A concurrent request with the same key won the race: answer with its job.
            Err(err) if is_unique_violation(&err) => {
                return match self.job_by_key(new).await? {
                    Some(job) => Ok(NewJobOutcome::Replayed(job)),
                    None => Err(err.into()),
                }
            }
            Err(err) => return Err(err.into()),
        }
        let job = self
            .get_job(new.tenant_id, id)
            .await?
            .ok_or(StoreError::NotFound)?;
        Ok(NewJobOutcome::Created(job))
    }

    /// The job an earlier request with the same idempotency key created, if any;
    /// a conflict when that request had another body.
    async fn job_by_key(&self, new: &NewJob) -> StoreResult<Option<JobRow>> {
        let Some(key) = &new.idempotency_key else {
            return Ok(None);
        };
        let found: Option<(Uuid, Option<String>)> = dispatch!(self, pool => {
            sqlx::query_as(
                "SELECT id, request_hash FROM jobs WHERE tenant_id = $1 AND idempotency_key = $2",
            )
            .bind(new.tenant_id)
            .bind(key)
            .fetch_optional(pool)
            .await?
        });
        match found {
            None => Ok(None),
            Some((id, hash)) if hash.as_deref() == Some(new.request_hash.as_str()) => {
                self.get_job(new.tenant_id, id).await
            }
            Some((id, _)) => Err(StoreError::Conflict(format!(
                "Idempotency-Key '{key}' was already used for job {id} with a different request \
                 body; use a new key for a new request"
            ))),
        }
    }

    /// The job `id` of `tenant`, if any.
    pub async fn get_job(&self, tenant: Uuid, id: Uuid) -> StoreResult<Option<JobRow>> {
        let sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE tenant_id = $1 AND id = $2");
        Ok(dispatch!(self, pool => {
            sqlx::query_as::<_, JobRow>(sqlx::AssertSqlSafe(sql))
                .bind(tenant)
                .bind(id)
                .fetch_optional(pool)
                .await?
        }))
    }

    /// A page of the tenant's jobs, newest first, optionally filtered.
    pub async fn list_jobs(
        &self,
        tenant: Uuid,
        status: Option<&str>,
        model_id: Option<Uuid>,
        limit: i64,
        cursor: Option<Uuid>,
    ) -> StoreResult<Vec<JobRow>> {
        let sql = format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE tenant_id = $1 AND ($2 IS NULL OR status = $2) \
             AND ($3 IS NULL OR model_id = $3) AND ($4 IS NULL OR id < $4) ORDER BY id DESC LIMIT $5"
        );
        Ok(dispatch!(self, pool => {
            sqlx::query_as::<_, JobRow>(sqlx::AssertSqlSafe(sql))
                .bind(tenant)
                .bind(status)
                .bind(model_id)
                .bind(cursor)
                .bind(limit)
                .fetch_all(pool)
                .await?
        }))
    }

    /// Asks a job to stop: a queued job is cancelled at once, a running one when its
    /// worker notices. A job that has ended is a conflict.
    pub async fn cancel_job(&self, tenant: Uuid, id: Uuid) -> StoreResult<JobRow> {
        let now = now_ms();
        let changed: Option<Uuid> = dispatch!(self, pool => {
            sqlx::query_scalar(
                "UPDATE jobs SET cancel_requested = TRUE, \
                 status = CASE WHEN status = 'queued' THEN 'cancelled' ELSE status END, \
                 finished_at = CASE WHEN status = 'queued' THEN $3 ELSE finished_at END \
                 WHERE tenant_id = $1 AND id = $2 AND status IN ('queued', 'running') RETURNING id",
            )
            .bind(tenant)
            .bind(id)
            .bind(now)
            .fetch_optional(pool)
            .await?
        });
        let job = self
            .get_job(tenant, id)
            .await?
            .ok_or(StoreError::NotFound)?;
        if changed.is_none() {
            return Err(StoreError::Conflict(format!(
                "job {id} has already ended ({}); there is nothing to cancel",
                job.status
            )));
        }
        Ok(job)
    }

    /// Claims the oldest runnable job for `owner`: a queued one, or a running one whose
    /// lease expired (its worker died). Jobs whose lease expired on their last attempt
    /// fail first. Exactly one worker gets each claim.
    pub async fn claim_job(&self, owner: &str, lease_ms: i64) -> StoreResult<Option<ClaimedJob>> {
        let now = now_ms();
        dispatch!(self, pool => {
            sqlx::query(
                "UPDATE jobs SET status = CASE WHEN cancel_requested THEN 'cancelled' ELSE 'failed' END, \
                 finished_at = $1, lease_owner = NULL, lease_expires_at = NULL, \
                 error = CASE WHEN cancel_requested THEN NULL ELSE COALESCE(error, $2) END \
                 WHERE status = 'running' AND lease_expires_at < $1 \
                 AND (attempts >= max_attempts OR cancel_requested)",
            )
            .bind(now)
            .bind(Json(JobError {
                title: "worker lost".into(),
                detail: "the worker running this job stopped renewing its lease on the last \
                         allowed attempt"
                    .into(),
            }))
            .execute(pool)
            .await?
            .rows_affected()
        });
        let starting = Progress {
            phase: "starting".into(),
            unit: String::new(),
            done: 0,
            total: 0,
        };
        // Postgres lets concurrent claimers skip each other's rows; SQLite serializes
        // writers, so the same single statement is atomic there as it is.
        let lock = match self {
            Store::Postgres(_) => "FOR UPDATE SKIP LOCKED",
            Store::Sqlite(_) => "",
        };
        let sql = format!(
            "UPDATE jobs SET status = 'running', attempts = attempts + 1, lease_owner = $1, \
             lease_expires_at = $2 + $3, heartbeat_at = $2, started_at = COALESCE(started_at, $2), \
             progress = $4 \
             WHERE id = (SELECT id FROM jobs WHERE (status = 'queued' OR \
             (status = 'running' AND lease_expires_at < $2)) AND attempts < max_attempts \
             AND NOT cancel_requested ORDER BY id LIMIT 1 {lock}) RETURNING {JOB_COLUMNS}"
        );
        let job: Option<JobRow> = dispatch!(self, pool => {
            sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(owner)
                .bind(now)
                .bind(lease_ms)
                .bind(Json(&starting))
                .fetch_optional(pool)
                .await?
        });
        Ok(job.map(|job| ClaimedJob {
            attempt: job.attempts,
            owner: owner.to_string(),
            job,
        }))
    }

    /// Renews the lease and records progress. Returns whether cancellation was asked
    /// for, or a conflict when the lease was lost.
    pub async fn heartbeat(
        &self,
        claim: &ClaimedJob,
        progress: &Progress,
        lease_ms: i64,
    ) -> StoreResult<bool> {
        let now = now_ms();
        let cancel: Option<bool> = dispatch!(self, pool => {
            sqlx::query_scalar(
                "UPDATE jobs SET heartbeat_at = $4, lease_expires_at = $4 + $5, progress = $6 \
                 WHERE id = $1 AND lease_owner = $2 AND attempts = $3 AND status = 'running' \
                 RETURNING cancel_requested",
            )
            .bind(claim.job.id)
            .bind(&claim.owner)
            .bind(claim.attempt)
            .bind(now)
            .bind(lease_ms)
            .bind(Json(progress))
            .fetch_optional(pool)
            .await?
        });
        cancel.ok_or_else(lease_lost)
    }

    /// Publishes a job's result: the output model (with its files, tensors and the
    /// job's metrics) and the job's final state change in one transaction.
    pub async fn complete_job(&self, claim: &ClaimedJob, done: &Completion) -> StoreResult<JobRow> {
        let now = now_ms();
        let job = &claim.job;
        let output_id = done.output.as_ref().map(|_| Uuid::now_v7());
        let progress = &done.progress;
        dispatch!(self, pool => {
            let mut tx = pool.begin().await?;
            let updated = sqlx::query(
                "UPDATE jobs SET status = 'succeeded', finished_at = $4, lease_owner = NULL, \
                 lease_expires_at = NULL, output_model_id = $5, report = $6, progress = $7, error = NULL \
                 WHERE id = $1 AND lease_owner = $2 AND attempts = $3 AND status = 'running'",
            )
            .bind(job.id)
            .bind(&claim.owner)
            .bind(claim.attempt)
            .bind(now)
            .bind(output_id)
            .bind(Json(&done.report))
            .bind(Json(progress))
            .execute(&mut *tx)
            .await?;
            if updated.rows_affected() == 0 {
                return Err(lease_lost());
            }
            if let (Some(id), Some(out)) = (output_id, &done.output) {
                sqlx::query(
                    "INSERT INTO models (id, tenant_id, name, status, parent_id, job_id, created_at, updated_at) \
                     VALUES ($1, $2, $3, 'uploading', $4, $5, $6, $6)",
                )
                .bind(id)
                .bind(job.tenant_id)
                .bind(&out.name)
                .bind(job.model_id)
                .bind(job.id)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                insert_contents!(tx, id, &out.files, &out.summary.tensors, now);
                set_summary!(tx, id, out.summary, now);
            }
            sqlx::query("DELETE FROM job_tensor_metrics WHERE job_id = $1")
                .bind(job.id)
                .execute(&mut *tx)
                .await?;
            for m in &done.metrics {
                sqlx::query(
                    "INSERT INTO job_tensor_metrics (job_id, tenant_id, name, dtype, shape, params, \
                     zeros_before, zeros_after, sparsity, threshold, millis) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                )
                .bind(job.id)
                .bind(job.tenant_id)
                .bind(&m.name)
                .bind(&m.dtype)
                .bind(&m.shape)
                .bind(m.params)
                .bind(m.zeros_before)
                .bind(m.zeros_after)
                .bind(m.sparsity)
                .bind(m.threshold)
                .bind(m.millis)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
        });
        self.get_job(job.tenant_id, job.id)
            .await?
            .ok_or(StoreError::NotFound)
    }

    /// Records a failure: the job goes back to the queue when `retry` and attempts
    /// remain, else it fails with `error`.
    pub async fn fail_job(
        &self,
        claim: &ClaimedJob,
        error: &JobError,
        retry: bool,
    ) -> StoreResult<()> {
        let now = now_ms();
        let updated = dispatch!(self, pool => {
            sqlx::query(
                "UPDATE jobs SET \
                 status = CASE WHEN $5 AND attempts < max_attempts THEN 'queued' ELSE 'failed' END, \
                 finished_at = CASE WHEN $5 AND attempts < max_attempts THEN NULL ELSE $4 END, \
                 error = $6, lease_owner = NULL, lease_expires_at = NULL \
                 WHERE id = $1 AND lease_owner = $2 AND attempts = $3 AND status = 'running'",
            )
            .bind(claim.job.id)
            .bind(&claim.owner)
            .bind(claim.attempt)
            .bind(now)
            .bind(retry)
            .bind(Json(error))
            .execute(pool)
            .await?
            .rows_affected()
        });
        guarded(updated)
    }

    /// Records that a running job stopped because it was cancelled.
    pub async fn mark_cancelled(&self, claim: &ClaimedJob) -> StoreResult<()> {
        let updated = dispatch!(self, pool => {
            sqlx::query(
                "UPDATE jobs SET status = 'cancelled', finished_at = $4, lease_owner = NULL, \
                 lease_expires_at = NULL WHERE id = $1 AND lease_owner = $2 AND attempts = $3 \
                 AND status = 'running'",
            )
            .bind(claim.job.id)
            .bind(&claim.owner)
            .bind(claim.attempt)
            .bind(now_ms())
            .execute(pool)
            .await?
            .rows_affected()
        });
        guarded(updated)
    }

    /// Puts a job this worker holds back in the queue without counting the attempt
    /// (the worker is shutting down).
    pub async fn release_job(&self, claim: &ClaimedJob) -> StoreResult<()> {
        let updated = dispatch!(self, pool => {
            sqlx::query(
                "UPDATE jobs SET status = 'queued', attempts = attempts - 1, lease_owner = NULL, \
                 lease_expires_at = NULL WHERE id = $1 AND lease_owner = $2 AND attempts = $3 \
                 AND status = 'running'",
            )
            .bind(claim.job.id)
            .bind(&claim.owner)
            .bind(claim.attempt)
            .execute(pool)
            .await?
            .rows_affected()
        });
        guarded(updated)
    }

    /// The per-tensor metrics of a job, by tensor name.
    pub async fn job_metrics(&self, job_id: Uuid) -> StoreResult<Vec<TensorMetric>> {
        Ok(dispatch!(self, pool => {
            sqlx::query_as::<_, TensorMetric>(
                "SELECT name, dtype, shape, params, zeros_before, zeros_after, sparsity, threshold, \
                 millis FROM job_tensor_metrics WHERE job_id = $1 ORDER BY name",
            )
            .bind(job_id)
            .fetch_all(pool)
            .await?
        }))
    }

    /// Whether attempt `attempt` of job `id` (of any tenant) is still running.
    pub async fn attempt_running(&self, id: Uuid, attempt: i32) -> StoreResult<bool> {
        let found: Option<Uuid> = dispatch!(self, pool => {
            sqlx::query_scalar(
                "SELECT id FROM jobs WHERE id = $1 AND attempts = $2 AND status = 'running'",
            )
            .bind(id)
            .bind(attempt)
            .fetch_optional(pool)
            .await?
        });
        Ok(found.is_some())
    }

    /// How many jobs are in each status, across tenants (for `/metrics`).
    pub async fn job_counts(&self) -> StoreResult<Vec<(String, i64)>> {
        Ok(dispatch!(self, pool => {
            sqlx::query_as::<_, (String, i64)>("SELECT status, COUNT(*) FROM jobs GROUP BY status")
                .fetch_all(pool)
                .await?
        }))
    }
}

fn lease_lost() -> StoreError {
    StoreError::Conflict("the job's lease was lost to another worker".into())
}

fn guarded(rows: u64) -> StoreResult<()> {
    if rows == 0 {
        Err(lease_lost())
    } else {
        Ok(())
    }
}
