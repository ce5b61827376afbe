//! The HTTP API: an axum router with one module per resource.

mod datasets;
pub mod error;
mod health;
mod jobs;
mod models;
mod upload;
pub mod views;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, Request, StatusCode};
use axum::response::IntoResponse;
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::blob::BlobStore;
use crate::store::Store;
use crate::tensor::HeaderLimits;
use error::ApiError;

/// Settings the handlers need.
#[derive(Clone, Debug)]
pub struct ApiSettings {
    /// Largest accepted upload body.
    pub max_upload_bytes: u64,
    /// Limits on safetensors headers.
    pub header_limits: HeaderLimits,
    /// Attempts a job gets unless the request says otherwise.
    pub default_max_attempts: i32,
}

/// Shared state of every handler.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub blobs: BlobStore,
    pub settings: Arc<ApiSettings>,
    pub metrics: Option<PrometheusHandle>,
    /// Wakes this process's workers when a job is queued.
    pub job_queued: Arc<tokio::sync::Notify>,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Shears",
        description = "Pruning as a service: upload a model in Hugging Face layout, run a pruning job, download the pruned model."
    ),
    components(schemas(error::Problem))
)]
struct ApiDoc;

fn api_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(models::create_model, models::list_models))
        .routes(routes!(models::get_model, models::delete_model))
        .routes(routes!(models::list_tensors))
        .routes(routes!(models::finalize_model))
        .routes(routes!(upload::put_file, upload::get_file))
        .routes(routes!(jobs::create_job, jobs::list_jobs))
        .routes(routes!(jobs::get_job))
        .routes(routes!(jobs::cancel_job))
        .routes(routes!(jobs::get_report))
        .routes(routes!(jobs::job_events))
        .routes(routes!(datasets::create_dataset, datasets::list_datasets))
        .routes(routes!(datasets::get_dataset, datasets::delete_dataset))
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(health::metrics))
}

/// The OpenAPI document of every route, as generated from the handlers.
pub fn openapi() -> utoipa::openapi::OpenApi {
    api_router().split_for_parts().1
}

/// The OpenAPI document as YAML (what `openapi.yaml` holds).
pub fn openapi_yaml() -> String {
    openapi()
        .to_yaml()
        .expect("the OpenAPI document serializes")
}

/// The application: routes, state and middleware.
pub fn router(state: AppState) -> Router {
    let request_id = HeaderName::from_static("x-request-id");
    let (router, _) = api_router().split_for_parts();
    router
        .fallback(not_found)
        .with_state(state)
        // Uploads stream with their own limit (`max_upload_bytes`).
        .layer(DefaultBodyLimit::disable())
        .layer(CatchPanicLayer::custom(|_: Box<dyn std::any::Any + Send>| {
            ApiError::internal("a handler panicked").into_response()
        }))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|req: &Request<_>| {
                    let id = req
                        .headers()
                        .get("x-request-id")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("-");
                    tracing::info_span!("request", request_id = %id, method = %req.method(), path = %req.uri().path())
                })
                .on_response(DefaultOnResponse::new().level(tracing::Level::INFO)),
        )
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
}

async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "no such route; see openapi.yaml for the API",
    )
}

/// Delay between polls of a job's row by the event stream.
pub(crate) const EVENT_POLL: Duration = Duration::from_millis(200);
