//! The JSON shapes the API answers with (DESIGN.md's model, job and list shapes).

use std::collections::BTreeMap;

use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::store::{FileRow, JobError, JobRow, ModelRow, Progress, TensorMetric, TensorRow};

/// Converts unix milliseconds to a UTC timestamp.
pub fn time(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

/// One file of a model.
#[derive(Serialize, Deserialize, ToSchema, Debug, Clone)]
pub struct FileView {
    pub name: String,
    pub size: i64,
    pub sha256: String,
}

impl From<FileRow> for FileView {
    fn from(f: FileRow) -> Self {
        FileView {
            name: f.name,
            size: f.size,
            sha256: f.sha256,
        }
    }
}

/// A model.
#[derive(Serialize, Deserialize, ToSchema, Debug, Clone)]
pub struct ModelView {
    pub id: Uuid,
    pub name: String,
    /// `uploading`, `ready` or `failed`.
    pub status: String,
    pub files: Vec<FileView>,
    pub tensor_count: i64,
    pub params: i64,
    /// Total bytes of the model's files.
    pub bytes: i64,
    /// Number of tensors of each dtype.
    pub dtypes: BTreeMap<String, i64>,
    /// `architectures[0]` of config.json.
    pub architecture: Option<String>,
    /// The model this one was pruned from.
    pub parent_id: Option<Uuid>,
    /// The job that produced this model.
    pub job_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
}

impl ModelView {
    /// Builds the view from a row and its files.
    pub fn new(m: ModelRow, files: Vec<FileRow>) -> Self {
        ModelView {
            id: m.id,
            name: m.name,
            status: m.status,
            files: files.into_iter().map(FileView::from).collect(),
            tensor_count: m.tensor_count,
            params: m.params,
            bytes: m.bytes,
            dtypes: m.dtypes.0,
            architecture: m.architecture,
            parent_id: m.parent_id,
            job_id: m.job_id,
            created_at: time(m.created_at),
        }
    }
}

/// One tensor of a model.
#[derive(Serialize, Deserialize, ToSchema, Debug, Clone)]
pub struct TensorView {
    pub name: String,
    pub dtype: String,
    pub shape: Vec<u64>,
    /// The file that holds it.
    pub file: String,
}

impl From<TensorRow> for TensorView {
    fn from(t: TensorRow) -> Self {
        TensorView {
            name: t.name,
            dtype: t.dtype,
            shape: t.shape.0,
            file: t.file,
        }
    }
}

/// A job.
#[derive(Serialize, Deserialize, ToSchema, Debug, Clone)]
pub struct JobView {
    pub id: Uuid,
    /// `prune` or `evaluate`.
    pub kind: String,
    /// `queued`, `running`, `succeeded`, `failed` or `cancelled`.
    pub status: String,
    pub model_id: Uuid,
    /// The recipe as given.
    pub recipe: serde_json::Value,
    /// The recipe with every default filled in.
    pub resolved_recipe: serde_json::Value,
    pub progress: Progress,
    pub attempts: i32,
    pub max_attempts: i32,
    pub cancel_requested: bool,
    pub error: Option<JobError>,
    pub output_model_id: Option<Uuid>,
    pub engine_version: String,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

impl From<JobRow> for JobView {
    fn from(j: JobRow) -> Self {
        JobView {
            id: j.id,
            kind: j.kind,
            status: j.status,
            model_id: j.model_id,
            recipe: j.recipe.0,
            resolved_recipe: j.resolved_recipe.0,
            progress: j.progress.0,
            attempts: j.attempts,
            max_attempts: j.max_attempts,
            cancel_requested: j.cancel_requested,
            error: j.error.map(|e| e.0),
            output_model_id: j.output_model_id,
            engine_version: j.engine_version,
            created_at: time(j.created_at),
            started_at: j.started_at.map(time),
            finished_at: j.finished_at.map(time),
        }
    }
}

/// A job's report: per-tensor metrics and totals.
#[derive(Serialize, Deserialize, ToSchema, Debug, Clone)]
pub struct ReportView {
    pub job_id: Uuid,
    pub status: String,
    pub output_model_id: Option<Uuid>,
    /// Totals: sparsity of the targets and of the whole model, bytes in and out,
    /// wall time, tensors left dense.
    pub totals: serde_json::Value,
    pub tensors: Vec<TensorMetric>,
}

/// A page of a list, newest first.
#[derive(Serialize, Deserialize, ToSchema, Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Pass as `cursor` to get the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// Pagination parameters.
#[derive(Deserialize, utoipa::IntoParams, Debug, Default)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// Items per page (1 to 500, default 50).
    pub limit: Option<i64>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

impl PageParams {
    /// The page size, clamped to 1..=500.
    pub fn limit(&self) -> i64 {
        self.limit.unwrap_or(50).clamp(1, 500)
    }
}
