//! Liveness, readiness and Prometheus metrics.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde_json::json;

use super::error::{ApiError, ApiResult};
use super::AppState;
use crate::store::job_status;

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, description = "alive")))]
pub async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// The database answers and the blob directory is writable.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, description = "ready"), (status = 503, body = super::error::Problem)))]
pub async fn readyz(State(state): State<AppState>) -> ApiResult<Json<serde_json::Value>> {
    let unavailable = |what: &str, err: &dyn std::fmt::Display| {
        tracing::warn!(%err, "{what} is not ready");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{what} is not available"),
        )
    };
    state
        .store
        .ping()
        .await
        .map_err(|e| unavailable("the database", &e))?;
    let blobs = state.blobs.clone();
    tokio::task::spawn_blocking(move || blobs.check())
        .await
        .map_err(ApiError::internal)?
        .map_err(|e| unavailable("the blob directory", &e))?;
    Ok(Json(
        json!({"status": "ready", "database": state.store.kind()}),
    ))
}

/// Prometheus metrics: jobs by status, job durations, upload bytes.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
pub async fn metrics(State(state): State<AppState>) -> ApiResult<impl IntoResponse> {
    let counts = state.store.job_counts().await?;
    for status in job_status::ALL {
        let n = counts
            .iter()
            .find(|(s, _)| s == status)
            .map_or(0, |(_, n)| *n);
        metrics::gauge!("shears_jobs", "status" => status).set(n as f64);
    }
    let body = state
        .metrics
        .as_ref()
        .map(|h| h.render())
        .unwrap_or_default();
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body))
}
