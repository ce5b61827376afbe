//! Rows as the store returns them.

use std::collections::BTreeMap;

use sqlx::types::Json;
use uuid::Uuid;

/// A model: an uploaded or derived set of files.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct ModelRow {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub name: String,
    pub status: String,
    pub error: Option<String>,
    pub architecture: Option<String>,
    pub tensor_count: i64,
    pub params: i64,
    pub bytes: i64,
    pub dtypes: Json<BTreeMap<String, i64>>,
    pub parent_id: Option<Uuid>,
    pub job_id: Option<Uuid>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// One file of a model, stored as a content-addressed blob.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct FileRow {
    pub name: String,
    pub sha256: String,
    pub size: i64,
}

/// A dataset: UTF-8 text stored as a blob.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct DatasetRow {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub name: String,
    pub sha256: String,
    pub bytes: i64,
    pub created_at: i64,
}

/// One tensor of a ready model.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct TensorRow {
    pub name: String,
    pub dtype: String,
    pub shape: Json<Vec<u64>>,
    pub file: String,
}

/// A job: a queued, running or finished unit of work on a model.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct JobRow {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub kind: String,
    pub status: String,
    pub model_id: Uuid,
    pub recipe: Json<serde_json::Value>,
    pub resolved_recipe: Json<serde_json::Value>,
    pub progress: Json<Progress>,
    pub attempts: i32,
    pub max_attempts: i32,
    pub lease_owner: Option<String>,
    pub lease_expires_at: Option<i64>,
    pub cancel_requested: bool,
    pub error: Option<Json<JobError>>,
    pub output_model_id: Option<Uuid>,
    pub report: Option<Json<serde_json::Value>>,
    pub engine_version: String,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
}

/// How far a job has come.
#[derive(
    Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
pub struct Progress {
    /// What the job is doing now (`queued`, `pruning`, `writing`, `done`).
    pub phase: String,
    /// What `done` and `total` count.
    pub unit: String,
    pub done: u64,
    pub total: u64,
}

/// Why a job failed.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct JobError {
    pub title: String,
    pub detail: String,
}

/// Per-tensor metrics of a finished job.
#[derive(
    Clone, Debug, PartialEq, sqlx::FromRow, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
pub struct TensorMetric {
    pub name: String,
    pub dtype: String,
    #[schema(value_type = Vec<u64>)]
    pub shape: Json<Vec<u64>>,
    pub params: i64,
    pub zeros_before: i64,
    pub zeros_after: i64,
    pub sparsity: f64,
    /// The largest magnitude that was pruned (null when nothing was).
    pub threshold: Option<f64>,
    pub millis: f64,
}

/// Job statuses.
pub mod job_status {
    pub const QUEUED: &str = "queued";
    pub const RUNNING: &str = "running";
    pub const SUCCEEDED: &str = "succeeded";
    pub const FAILED: &str = "failed";
    pub const CANCELLED: &str = "cancelled";
    /// Every status, in lifecycle order.
    pub const ALL: [&str; 5] = [QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED];
}

/// Model statuses.
pub mod model_status {
    pub const UPLOADING: &str = "uploading";
    pub const READY: &str = "ready";
}
