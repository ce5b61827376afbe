//! `/v1/models`: create, list, inspect, finalize and delete models.

use axum::extract::{FromRequest, Multipart, Path, Request, State};
use axum::http::{header, StatusCode};
use axum::Json;
use serde::Deserialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::error::{parse_id, ApiError, ApiJson, ApiQuery, ApiResult};
use super::upload::{collect_blobs, one_shot_upload, summarize};
use super::views::{ModelView, Page, PageParams, TensorView};
use super::AppState;
use crate::layout::CandidateFile;
use crate::store::{model_status, DEFAULT_TENANT};

/// Body of `POST /v1/models` as JSON.
#[derive(Deserialize, ToSchema)]
pub struct CreateModel {
    /// A name for people; need not be unique.
    pub name: String,
}

/// Loads a model of the caller's, or 404.
pub(super) async fn load_model(
    state: &AppState,
    raw_id: &str,
) -> ApiResult<crate::store::ModelRow> {
    let id = parse_id(raw_id, "model")?;
    state
        .store
        .get_model(DEFAULT_TENANT, id)
        .await?
        .ok_or_else(|| ApiError::not_found("model"))
}

/// The model view with its files.
pub(super) async fn model_view(
    state: &AppState,
    model: crate::store::ModelRow,
) -> ApiResult<ModelView> {
    let files = state.store.model_files(model.id).await?;
    Ok(ModelView::new(model, files))
}

/// Create a model: JSON `{name}` makes an empty `uploading` model; a
/// `multipart/form-data` body (one part per file, named by its filename, and an
/// optional `name` field) uploads and finalizes it in one call.
#[utoipa::path(post, path = "/v1/models", tag = "models",
    request_body(content(
        (CreateModel = "application/json"),
        (String = "multipart/form-data")
    )),
    responses(
        (status = 201, body = ModelView, description = "created"),
        (status = 413, body = super::error::Problem, description = "over the upload limit"),
        (status = 422, body = super::error::Problem, description = "invalid files or file names"),
    ))]
pub async fn create_model(
    State(state): State<AppState>,
    request: Request,
) -> ApiResult<(StatusCode, Json<ModelView>)> {
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let model = if content_type.starts_with("multipart/form-data") {
        let multipart = Multipart::from_request(request, &state)
            .await
            .map_err(|e| ApiError::bad_request(e.body_text()))?;
        one_shot_upload(&state, multipart).await?
    } else {
        let ApiJson(body) = ApiJson::<CreateModel>::from_request(request, &state).await?;
        if body.name.trim().is_empty() {
            return Err(ApiError::unprocessable("name: must not be empty"));
        }
        state.store.create_model(DEFAULT_TENANT, &body.name).await?
    };
    Ok((StatusCode::CREATED, Json(model_view(&state, model).await?)))
}

/// List models, newest first.
#[utoipa::path(get, path = "/v1/models", tag = "models", params(PageParams),
    responses((status = 200, body = Page<ModelView>)))]
pub async fn list_models(
    State(state): State<AppState>,
    ApiQuery(page): ApiQuery<PageParams>,
) -> ApiResult<Json<Page<ModelView>>> {
    let cursor = parse_cursor(page.cursor.as_deref())?;
    let limit = page.limit();
    let rows = state
        .store
        .list_models(DEFAULT_TENANT, limit, cursor)
        .await?;
    let next_cursor = (rows.len() as i64 == limit)
        .then(|| rows.last().map(|m| m.id.to_string()))
        .flatten();
    let ids: Vec<Uuid> = rows.iter().map(|m| m.id).collect();
    let mut files = state.store.files_of_models(&ids).await?;
    let items = rows
        .into_iter()
        .map(|m| {
            let own = files.remove(&m.id).unwrap_or_default();
            ModelView::new(m, own)
        })
        .collect();
    Ok(Json(Page { items, next_cursor }))
}

/// A cursor is the last id of the previous page.
pub(super) fn parse_cursor(cursor: Option<&str>) -> ApiResult<Option<Uuid>> {
    cursor
        .map(|c| {
            Uuid::parse_str(c).map_err(|_| {
                ApiError::bad_request(
                    "cursor: not a cursor; pass the next_cursor of the previous page",
                )
            })
        })
        .transpose()
}

/// A model with its files and summary.
#[utoipa::path(get, path = "/v1/models/{id}", tag = "models",
    params(("id" = String, Path, description = "model id")),
    responses((status = 200, body = ModelView), (status = 404, body = super::error::Problem)))]
pub async fn get_model(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<ModelView>> {
    let model = load_model(&state, &id).await?;
    Ok(Json(model_view(&state, model).await?))
}

/// Delete a model. Blobs no other model uses are removed.
#[utoipa::path(delete, path = "/v1/models/{id}", tag = "models",
    params(("id" = String, Path, description = "model id")),
    responses((status = 204, description = "deleted"), (status = 404, body = super::error::Problem),
        (status = 409, body = super::error::Problem, description = "a queued or running job uses the model")))]
pub async fn delete_model(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let id = parse_id(&id, "model")?;
    let shas = state
        .store
        .delete_model(DEFAULT_TENANT, id)
        .await
        .map_err(|e| match e {
            crate::store::StoreError::NotFound => ApiError::not_found("model"),
            other => other.into(),
        })?;
    collect_blobs(&state, shas).await;
    Ok(StatusCode::NO_CONTENT)
}

/// The tensors of a ready model, by name.
#[utoipa::path(get, path = "/v1/models/{id}/tensors", tag = "models",
    params(("id" = String, Path, description = "model id"), PageParams),
    responses((status = 200, body = Page<TensorView>), (status = 404, body = super::error::Problem)))]
pub async fn list_tensors(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiQuery(page): ApiQuery<PageParams>,
) -> ApiResult<Json<Page<TensorView>>> {
    let model = load_model(&state, &id).await?;
    let limit = page.limit();
    let rows = state
        .store
        .list_tensors(model.id, limit, page.cursor.as_deref())
        .await?;
    let next_cursor = (rows.len() as i64 == limit)
        .then(|| rows.last().map(|t| t.name.clone()))
        .flatten();
    Ok(Json(Page {
        items: rows.into_iter().map(TensorView::from).collect(),
        next_cursor,
    }))
}

/// Validate the uploaded files and make the model `ready` (immutable).
#[utoipa::path(post, path = "/v1/models/{id}/finalize", tag = "models",
    params(("id" = String, Path, description = "model id")),
    responses((status = 200, body = ModelView), (status = 404, body = super::error::Problem),
        (status = 409, body = super::error::Problem, description = "already ready"),
        (status = 422, body = super::error::Problem, description = "the files do not form a valid model")))]
pub async fn finalize_model(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<ModelView>> {
    let model = load_model(&state, &id).await?;
    if model.status != model_status::UPLOADING {
        return Err(ApiError::conflict(format!(
            "model {} is already {}",
            model.id, model.status
        )));
    }
    let files = state.store.model_files(model.id).await?;
    let candidates = files
        .iter()
        .map(|f| CandidateFile {
            name: f.name.clone(),
            path: state.blobs.path(&f.sha256),
            size: f.size as u64,
        })
        .collect();
    let summary = summarize(&state, candidates).await?;
    let model = state
        .store
        .finalize_model(DEFAULT_TENANT, model.id, &files, &summary)
        .await?;
    Ok(Json(model_view(&state, model).await?))
}
