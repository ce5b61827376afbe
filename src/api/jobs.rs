//! `/v1/jobs`: queue pruning jobs, follow them, cancel them, read their reports.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::Json;
use futures_util::Stream;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use utoipa::{IntoParams, ToSchema};

use super::error::{parse_id, ApiError, ApiJson, ApiQuery, ApiResult};
use super::models::parse_cursor;
use super::views::{JobView, Page, PageParams, ReportView};
use super::{AppState, EVENT_POLL};
use crate::recipe::{Recipe, TensorLike};
use crate::store::{
    job_status, model_status, JobRow, NewJob, NewJobOutcome, TensorRow, DEFAULT_TENANT,
};

/// Body of `POST /v1/jobs`.
#[derive(Deserialize, ToSchema)]
pub struct CreateJob {
    /// The model to prune (must be `ready`).
    pub model_id: String,
    /// The recipe (see DESIGN.md): method, sparsity, pattern, scope, targets, ignore, seed.
    pub recipe: serde_json::Value,
    /// Attempts before the job fails (default 3).
    pub max_attempts: Option<i32>,
}

impl TensorLike for TensorRow {
    fn name(&self) -> &str {
        &self.name
    }
    fn shape(&self) -> &[u64] {
        &self.shape.0
    }
    fn dtype_name(&self) -> &str {
        &self.dtype
    }
    fn prunable(&self) -> bool {
        crate::tensor::Dtype::parse(&self.dtype).is_some_and(|d| d.is_prunable())
    }
}

/// The version of the pruning engine recorded with every job.
pub const ENGINE_VERSION: &str = concat!("shears ", env!("CARGO_PKG_VERSION"));

/// Queue a pruning job. With an `Idempotency-Key` header, a repeated identical request
/// returns the first job; the same key with another body is a 422.
#[utoipa::path(post, path = "/v1/jobs", tag = "jobs", request_body = CreateJob,
    params(("Idempotency-Key" = Option<String>, Header, description = "makes retries safe")),
    responses((status = 202, body = JobView), (status = 404, body = super::error::Problem),
        (status = 409, body = super::error::Problem, description = "the model is not ready"),
        (status = 422, body = super::error::Problem, description = "invalid recipe; the message names the field")))]
pub async fn create_job(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<CreateJob>,
) -> ApiResult<(StatusCode, Json<JobView>)> {
    let key = match headers.get("idempotency-key") {
        Some(v) => {
            let key = v
                .to_str()
                .ok()
                .filter(|k| !k.is_empty() && k.len() <= 255)
                .ok_or_else(|| {
                    ApiError::bad_request(
                        "Idempotency-Key must be 1 to 255 visible ASCII characters",
                    )
                })?;
            Some(key.to_string())
        }
        None => None,
    };
    let model_id = parse_id(&body.model_id, "model")?;
    let model = state
        .store
        .get_model(DEFAULT_TENANT, model_id)
        .await?
        .ok_or_else(|| ApiError::not_found("model"))?;
    if model.status != model_status::READY {
        return Err(ApiError::conflict(format!(
            "model {model_id} is {}; finalize it before pruning",
            model.status
        )));
    }
    let max_attempts = body
        .max_attempts
        .unwrap_or(state.settings.default_max_attempts);
    if !(1..=100).contains(&max_attempts) {
        return Err(ApiError::unprocessable(
            "max_attempts: must be between 1 and 100",
        ));
    }
    let recipe = Recipe::parse(&body.recipe).map_err(|e| ApiError::unprocessable(e.to_string()))?;
    let tensors = state.store.list_tensors(model_id, i64::MAX, None).await?;
    recipe
        .select(&tensors)
        .map_err(|e| ApiError::unprocessable(e.to_string()))?;
    let canonical = serde_json::json!({
        "model_id": model_id, "recipe": sorted(&body.recipe), "max_attempts": max_attempts,
    });
    let new = NewJob {
        tenant_id: DEFAULT_TENANT,
        kind: "prune".into(),
        model_id,
        recipe: body.recipe,
        resolved_recipe: recipe.resolved(),
        max_attempts,
        idempotency_key: key,
        request_hash: hex::encode(Sha256::digest(canonical.to_string())),
        engine_version: ENGINE_VERSION.into(),
    };
    let job = match state.store.create_job(&new).await {
        Ok(NewJobOutcome::Created(job)) => {
            state.job_queued.notify_waiters();
            job
        }
        Ok(NewJobOutcome::Replayed(job)) => job,
        Err(crate::store::StoreError::Conflict(msg)) => return Err(ApiError::unprocessable(msg)),
        Err(err) => return Err(err.into()),
    };
    Ok((StatusCode::ACCEPTED, Json(job.into())))
}

/// A JSON value with every object's keys in sorted order, for comparing bodies.
fn sorted(value: &serde_json::Value) -> serde_json::Value {
    match value {
        serde_json::Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            serde_json::Value::Object(
                entries
                    .into_iter()
                    .map(|(k, v)| (k.clone(), sorted(v)))
                    .collect(),
            )
        }
        serde_json::Value::Array(items) => {
            serde_json::Value::Array(items.iter().map(sorted).collect())
        }
        other => other.clone(),
    }
}

/// Filters of `GET /v1/jobs`.
#[derive(Deserialize, IntoParams, Debug)]
#[into_params(parameter_in = Query)]
pub struct JobFilter {
    /// Only jobs in this status.
    pub status: Option<String>,
    /// Only jobs on this model.
    pub model_id: Option<String>,
    /// Items per page (1 to 500, default 50).
    pub limit: Option<i64>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// List jobs, newest first.
#[utoipa::path(get, path = "/v1/jobs", tag = "jobs", params(JobFilter),
    responses((status = 200, body = Page<JobView>), (status = 400, body = super::error::Problem)))]
pub async fn list_jobs(
    State(state): State<AppState>,
    ApiQuery(filter): ApiQuery<JobFilter>,
) -> ApiResult<Json<Page<JobView>>> {
    if let Some(status) = &filter.status {
        if !job_status::ALL.contains(&status.as_str()) {
            return Err(ApiError::bad_request(format!(
                "status: unknown status '{status}'; use one of {}",
                job_status::ALL.join(", ")
            )));
        }
    }
    let model_id = match &filter.model_id {
        // An id that names nothing matches no job.
        Some(raw) => match uuid::Uuid::parse_str(raw) {
            Ok(id) => Some(id),
            Err(_) => {
                return Ok(Json(Page {
                    items: vec![],
                    next_cursor: None,
                }))
            }
        },
        None => None,
    };
    let page = PageParams {
        limit: filter.limit,
        cursor: filter.cursor.clone(),
    };
    let limit = page.limit();
    let rows = state
        .store
        .list_jobs(
            DEFAULT_TENANT,
            filter.status.as_deref(),
            model_id,
            limit,
            parse_cursor(page.cursor.as_deref())?,
        )
        .await?;
    let next_cursor = (rows.len() as i64 == limit)
        .then(|| rows.last().map(|j| j.id.to_string()))
        .flatten();
    Ok(Json(Page {
        items: rows.into_iter().map(JobView::from).collect(),
        next_cursor,
    }))
}

async fn load_job(state: &AppState, raw_id: &str) -> ApiResult<JobRow> {
    let id = parse_id(raw_id, "job")?;
    state
        .store
        .get_job(DEFAULT_TENANT, id)
        .await?
        .ok_or_else(|| ApiError::not_found("job"))
}

/// A job: status, progress, attempts, error, output model.
#[utoipa::path(get, path = "/v1/jobs/{id}", tag = "jobs",
    params(("id" = String, Path, description = "job id")),
    responses((status = 200, body = JobView), (status = 404, body = super::error::Problem)))]
pub async fn get_job(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<JobView>> {
    Ok(Json(load_job(&state, &id).await?.into()))
}

/// Ask a job to stop. A queued job is cancelled at once; a running one stops at its
/// next check and leaves no output model.
#[utoipa::path(post, path = "/v1/jobs/{id}/cancel", tag = "jobs",
    params(("id" = String, Path, description = "job id")),
    responses((status = 202, body = JobView), (status = 404, body = super::error::Problem),
        (status = 409, body = super::error::Problem, description = "the job has ended")))]
pub async fn cancel_job(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, Json<JobView>)> {
    let id = parse_id(&id, "job")?;
    let job = state
        .store
        .cancel_job(DEFAULT_TENANT, id)
        .await
        .map_err(|e| match e {
            crate::store::StoreError::NotFound => ApiError::not_found("job"),
            other => other.into(),
        })?;
    Ok((StatusCode::ACCEPTED, Json(job.into())))
}

/// The report of a succeeded job: per-tensor metrics and totals.
#[utoipa::path(get, path = "/v1/jobs/{id}/report", tag = "jobs",
    params(("id" = String, Path, description = "job id")),
    responses((status = 200, body = ReportView), (status = 404, body = super::error::Problem),
        (status = 409, body = super::error::Problem, description = "the job has not succeeded")))]
pub async fn get_report(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<ReportView>> {
    let job = load_job(&state, &id).await?;
    let Some(totals) = job.report.clone() else {
        return Err(ApiError::conflict(format!(
            "job {} is {}; its report exists once it has succeeded",
            job.id, job.status
        )));
    };
    let tensors = state.store.job_metrics(job.id).await?;
    Ok(Json(ReportView {
        job_id: job.id,
        status: job.status,
        output_model_id: job.output_model_id,
        totals: totals.0,
        tensors,
    }))
}

/// Server-sent events: a `progress` event (the job) whenever its status or progress
/// changes, then one `end` event with the final job, then the stream closes.
#[utoipa::path(get, path = "/v1/jobs/{id}/events", tag = "jobs",
    params(("id" = String, Path, description = "job id")),
    responses((status = 200, description = "an event stream", content_type = "text/event-stream"),
        (status = 404, body = super::error::Problem)))]
pub async fn job_events(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    let first = load_job(&state, &id).await?;
    let stream = async_stream::stream! {
        let mut last: Option<(String, crate::store::Progress)> = None;
        let mut job = first;
        loop {
            let ended = matches!(job.status.as_str(), job_status::SUCCEEDED | job_status::FAILED | job_status::CANCELLED);
            let current = (job.status.clone(), job.progress.0.clone());
            if ended {
                yield Ok(json_event("end", &JobView::from(job)));
                break;
            }
            if last.as_ref() != Some(&current) {
                yield Ok(json_event("progress", &JobView::from(job.clone())));
                last = Some(current);
            }
            tokio::time::sleep(EVENT_POLL).await;
            job = match state.store.get_job(DEFAULT_TENANT, job.id).await {
                Ok(Some(job)) => job,
                Ok(None) => break,
                Err(err) => {
                    tracing::warn!(%err, "event stream stopped: the job could not be read");
                    break;
                }
            };
        }
    };
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

fn json_event(name: &str, view: &JobView) -> Event {
    Event::default()
        .event(name)
        .json_data(view)
        .unwrap_or_else(|_| Event::default().event(name))
}
