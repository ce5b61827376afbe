//! `/v1/datasets`: UTF-8 text for calibration and evaluation.

use std::io::Read;
use std::path::Path;

use axum::body::Body;
use axum::extract::{FromRequest, Multipart, Path as UrlPath, Request, State};
use axum::http::{header, StatusCode};
use axum::Json;
use futures_util::{Stream, StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::{parse_id, ApiError, ApiQuery, ApiResult};
use super::models::parse_cursor;
use super::upload::{collect_blobs, interrupted, new_sink};
use super::views::{time, Page, PageParams};
use super::AppState;
use crate::blob::Uploaded;
use crate::store::{DatasetRow, DEFAULT_TENANT};

/// A dataset.
#[derive(Serialize, Deserialize, ToSchema, Debug, Clone)]
pub struct DatasetView {
    pub id: uuid::Uuid,
    pub name: String,
    pub bytes: i64,
    pub sha256: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

impl From<DatasetRow> for DatasetView {
    fn from(d: DatasetRow) -> Self {
        DatasetView {
            id: d.id,
            name: d.name,
            bytes: d.bytes,
            sha256: d.sha256,
            created_at: time(d.created_at),
        }
    }
}

/// Query of `POST /v1/datasets` with a raw body.
#[derive(Deserialize, IntoParams, Debug)]
#[into_params(parameter_in = Query)]
pub struct DatasetName {
    /// A name for people (default `dataset`).
    pub name: Option<String>,
}

/// Upload text: the raw body (any content type but multipart), or a multipart form
/// with one file part and an optional `name` field. The text must be UTF-8.
#[utoipa::path(post, path = "/v1/datasets", tag = "datasets", params(DatasetName),
    request_body(content(
        (String = "text/plain"),
        (String = "multipart/form-data")
    )),
    responses((status = 201, body = DatasetView), (status = 413, body = super::error::Problem),
        (status = 422, body = super::error::Problem, description = "empty, or not UTF-8")))]
pub async fn create_dataset(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<DatasetName>,
    request: Request,
) -> ApiResult<(StatusCode, Json<DatasetView>)> {
    let is_multipart = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().starts_with("multipart/form-data"));
    let (name, upload) = if is_multipart {
        let mut multipart = Multipart::from_request(request, &state)
            .await
            .map_err(|e| ApiError::bad_request(e.body_text()))?;
        let mut name = query.name;
        let mut upload = None;
        while let Some(field) = multipart.next_field().await.map_err(interrupted)? {
            if field.file_name().is_none() && field.name() == Some("name") {
                name = Some(field.text().await.map_err(interrupted)?);
            } else if upload.is_none() {
                upload = Some(receive(&state, field.map_err(interrupted)).await?);
            } else {
                return Err(ApiError::unprocessable("send one text file per dataset"));
            }
        }
        let upload = upload.ok_or_else(|| ApiError::unprocessable("the form has no file part"))?;
        (name, upload)
    } else {
        let body = Body::into_data_stream(request.into_body()).map_err(interrupted);
        (query.name, receive(&state, body).await?)
    };
    let name = name.unwrap_or_else(|| "dataset".into());
    if name.trim().is_empty() || name.len() > 1024 {
        return Err(ApiError::unprocessable("name: must be 1 to 1024 bytes"));
    }
    if upload.size == 0 {
        return Err(ApiError::unprocessable(
            "the dataset is empty; send UTF-8 text",
        ));
    }
    let path = upload.temp.path().to_path_buf();
    let invalid = tokio::task::spawn_blocking(move || first_invalid_utf8(&path))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
    if let Some(offset) = invalid {
        return Err(ApiError::unprocessable(format!(
            "the dataset is not UTF-8 text: invalid byte sequence at byte {offset}"
        )));
    }
    state
        .blobs
        .place(upload.temp.path(), &upload.sha256)
        .map_err(ApiError::internal)?;
    let dataset = match state
        .store
        .create_dataset(DEFAULT_TENANT, &name, &upload.sha256, upload.size as i64)
        .await
    {
        Ok(dataset) => dataset,
        Err(err) => {
            collect_blobs(&state, vec![upload.sha256]).await;
            return Err(err.into());
        }
    };
    state
        .blobs
        .place(upload.temp.path(), &upload.sha256)
        .map_err(ApiError::internal)?;
    Ok((StatusCode::CREATED, Json(dataset.into())))
}

/// Streams a body into a temporary file under the upload limit.
async fn receive<S, B>(state: &AppState, mut body: S) -> ApiResult<Uploaded>
where
    S: Stream<Item = Result<B, ApiError>> + Unpin,
    B: AsRef<[u8]>,
{
    let mut sink = new_sink(state)?;
    while let Some(chunk) = body.next().await {
        sink.write(chunk?.as_ref()).await?;
    }
    Ok(sink.finish().await?)
}

/// The offset of the first byte that is not valid UTF-8, if any.
fn first_invalid_utf8(path: &Path) -> std::io::Result<Option<u64>> {
    let mut file = std::fs::File::open(path)?;
    let mut buf = vec![0u8; 1 << 20];
    let (mut carried, mut offset) = (0usize, 0u64);
    loop {
        let n = file.read(&mut buf[carried..])?;
        let filled = carried + n;
        match std::str::from_utf8(&buf[..filled]) {
            Ok(_) => {
                if n == 0 {
                    return Ok(None);
                }
                offset += filled as u64;
                carried = 0;
            }
            // A sequence cut by the buffer's end: carry it into the next read.
            Err(e) if e.error_len().is_none() && n > 0 => {
                let valid = e.valid_up_to();
                buf.copy_within(valid..filled, 0);
                offset += valid as u64;
                carried = filled - valid;
            }
            Err(e) => return Ok(Some(offset + e.valid_up_to() as u64)),
        }
    }
}

async fn load(state: &AppState, raw_id: &str) -> ApiResult<DatasetRow> {
    let id = parse_id(raw_id, "dataset")?;
    state
        .store
        .get_dataset(DEFAULT_TENANT, id)
        .await?
        .ok_or_else(|| ApiError::not_found("dataset"))
}

/// A dataset.
#[utoipa::path(get, path = "/v1/datasets/{id}", tag = "datasets",
    params(("id" = String, Path, description = "dataset id")),
    responses((status = 200, body = DatasetView), (status = 404, body = super::error::Problem)))]
pub async fn get_dataset(
    State(state): State<AppState>,
    UrlPath(id): UrlPath<String>,
) -> ApiResult<Json<DatasetView>> {
    Ok(Json(load(&state, &id).await?.into()))
}

/// List datasets, newest first.
#[utoipa::path(get, path = "/v1/datasets", tag = "datasets", params(PageParams),
    responses((status = 200, body = Page<DatasetView>)))]
pub async fn list_datasets(
    State(state): State<AppState>,
    ApiQuery(page): ApiQuery<PageParams>,
) -> ApiResult<Json<Page<DatasetView>>> {
    let limit = page.limit();
    let rows = state
        .store
        .list_datasets(DEFAULT_TENANT, limit, parse_cursor(page.cursor.as_deref())?)
        .await?;
    let next_cursor = (rows.len() as i64 == limit)
        .then(|| rows.last().map(|d| d.id.to_string()))
        .flatten();
    Ok(Json(Page {
        items: rows.into_iter().map(DatasetView::from).collect(),
        next_cursor,
    }))
}

/// Delete a dataset (its text goes unless another model or dataset has the same bytes).
#[utoipa::path(delete, path = "/v1/datasets/{id}", tag = "datasets",
    params(("id" = String, Path, description = "dataset id")),
    responses((status = 204, description = "deleted"), (status = 404, body = super::error::Problem)))]
pub async fn delete_dataset(
    State(state): State<AppState>,
    UrlPath(id): UrlPath<String>,
) -> ApiResult<StatusCode> {
    let id = parse_id(&id, "dataset")?;
    let sha = state
        .store
        .delete_dataset(DEFAULT_TENANT, id)
        .await
        .map_err(|e| match e {
            crate::store::StoreError::NotFound => ApiError::not_found("dataset"),
            other => other.into(),
        })?;
    collect_blobs(&state, vec![sha]).await;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::first_invalid_utf8;
    use std::io::Write;

    #[test]
    fn utf8_check_across_buffer_boundaries() {
        let mut ok = tempfile::NamedTempFile::new().unwrap();
        // A two-byte character straddles the 1 MiB read boundary.
        let mut text = vec![b'a'; (1 << 20) - 1];
        text.extend("é and more".as_bytes());
        ok.write_all(&text).unwrap();
        assert_eq!(first_invalid_utf8(ok.path()).unwrap(), None);
        let mut bad = tempfile::NamedTempFile::new().unwrap();
        bad.write_all(b"fine\xffrest").unwrap();
        assert_eq!(first_invalid_utf8(bad.path()).unwrap(), Some(4));
        let mut cut = tempfile::NamedTempFile::new().unwrap();
        cut.write_all(b"ends in \xc3").unwrap();
        assert_eq!(first_invalid_utf8(cut.path()).unwrap(), Some(8));
    }
}
