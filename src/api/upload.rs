//! File bodies: streaming uploads into the blob store and downloads out of it.

use std::collections::BTreeSet;
use std::io::SeekFrom;

use axum::body::Body;
use axum::extract::{Multipart, Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio_util::io::ReaderStream;

use super::error::{ApiError, ApiResult};
use super::models::load_model;
use super::views::FileView;
use super::AppState;
use crate::blob::{SinkError, UploadSink, Uploaded};
use crate::layout::{check_file_name, inspect, CandidateFile};
use crate::store::{model_status, FinalizeSummary, ModelRow, NewFile, DEFAULT_TENANT};

impl From<SinkError> for ApiError {
    fn from(err: SinkError) -> Self {
        match err {
            SinkError::TooLarge(limit) => ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "the upload exceeds the server's limit of {limit} bytes (--max-upload-bytes)"
                ),
            ),
            SinkError::Io(e) => ApiError::internal(e),
        }
    }
}

fn file_name(name: &str) -> ApiResult<()> {
    check_file_name(name).map_err(|e| ApiError::unprocessable(e.to_string()))
}

pub(super) fn interrupted(err: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request(format!(
        "the request body was interrupted or malformed ({err}); nothing was stored, send it again"
    ))
}

/// Upload one file's raw bytes into an `uploading` model (replacing a file of the
/// same name). An interrupted body leaves the model as it was.
#[utoipa::path(put, path = "/v1/models/{id}/files/{name}", tag = "files",
    params(("id" = String, Path, description = "model id"), ("name" = String, Path, description = "flat file name")),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses((status = 201, body = FileView), (status = 404, body = super::error::Problem),
        (status = 409, body = super::error::Problem, description = "the model is ready (immutable)"),
        (status = 413, body = super::error::Problem), (status = 422, body = super::error::Problem)))]
pub async fn put_file(
    State(state): State<AppState>,
    Path((id, name)): Path<(String, String)>,
    request: Request,
) -> ApiResult<(StatusCode, Json<FileView>)> {
    let model = load_model(&state, &id).await?;
    file_name(&name)?;
    if model.status != model_status::UPLOADING {
        return Err(ApiError::conflict(format!(
            "model {} is {}: its files can no longer change; upload to a new model instead",
            model.id, model.status
        )));
    }
    let limit = state.settings.max_upload_bytes;
    if content_length(request.headers()).is_some_and(|len| len > limit) {
        return Err(SinkError::TooLarge(limit).into());
    }
    let mut sink = new_sink(&state)?;
    let mut body = request.into_body().into_data_stream();
    while let Some(chunk) = body.next().await {
        sink.write(&chunk.map_err(interrupted)?).await?;
    }
    let upload = sink.finish().await?;
    let file = NewFile {
        name: name.clone(),
        sha256: upload.sha256.clone(),
        size: upload.size as i64,
    };
    state
        .blobs
        .place(upload.temp.path(), &file.sha256)
        .map_err(ApiError::internal)?;
    let replaced = match state
        .store
        .put_model_file(DEFAULT_TENANT, model.id, &file)
        .await
    {
        Ok(replaced) => replaced,
        Err(err) => {
            collect_blobs(&state, vec![file.sha256]).await;
            return Err(err.into());
        }
    };
    state
        .blobs
        .place(upload.temp.path(), &file.sha256)
        .map_err(ApiError::internal)?;
    collect_blobs(&state, replaced.into_iter().collect()).await;
    Ok((
        StatusCode::CREATED,
        Json(FileView {
            name,
            size: file.size,
            sha256: file.sha256,
        }),
    ))
}

/// A new upload into a temporary file, under the configured size limit.
pub(super) fn new_sink(state: &AppState) -> ApiResult<UploadSink> {
    let temp = state.blobs.temp_file().map_err(ApiError::internal)?;
    UploadSink::new(temp, state.settings.max_upload_bytes).map_err(ApiError::internal)
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// Validates files off the async threads; a bad file set is a 422.
pub(super) async fn summarize(
    state: &AppState,
    files: Vec<CandidateFile>,
) -> ApiResult<FinalizeSummary> {
    let limits = state.settings.header_limits.clone();
    tokio::task::spawn_blocking(move || inspect(&files, &limits))
        .await
        .map_err(ApiError::internal)?
        .map_err(|e| ApiError::unprocessable(e.to_string()))
}

/// Removes the blobs among `shas` that no model refers to any more.
pub(super) async fn collect_blobs(state: &AppState, shas: Vec<String>) {
    for sha in shas {
        let blobs = state.blobs.clone();
        let remove = || blobs.remove(&sha);
        if let Err(err) = state.store.collect_blob(&sha, remove).await {
            tracing::warn!(sha256 = %sha, %err, "blob collection failed; it will be retried later");
        }
    }
}

/// Receives a multipart upload into temporary files, validates it and creates a
/// ready model in one transaction. On any failure nothing remains.
pub(super) async fn one_shot_upload(
    state: &AppState,
    mut multipart: Multipart,
) -> ApiResult<ModelRow> {
    let mut remaining = state.settings.max_upload_bytes;
    let mut name = String::from("model");
    let mut uploads: Vec<(String, Uploaded)> = Vec::new();
    let mut seen = BTreeSet::new();
    while let Some(mut field) = multipart
        .next_field()
        .await
        .map_err(|e| multipart_error(e, state))?
    {
        let Some(file) = field.file_name().map(str::to_string) else {
            let field_name = field.name().unwrap_or("").to_string();
            if field_name != "name" {
                return Err(ApiError::unprocessable(format!(
                    "multipart part {field_name:?} has no filename; send each file as a part with a filename, and the model name as a field 'name'"
                )));
            }
            let text = field.text().await.map_err(|e| multipart_error(e, state))?;
            if text.trim().is_empty() || text.len() > 1024 {
                return Err(ApiError::unprocessable("name: must be 1 to 1024 bytes"));
            }
            name = text;
            continue;
        };
        file_name(&file)?;
        if !seen.insert(file.clone()) {
            return Err(ApiError::unprocessable(format!(
                "file {file:?} appears twice in the upload"
            )));
        }
        let mut sink = UploadSink::new(
            state.blobs.temp_file().map_err(ApiError::internal)?,
            remaining,
        )
        .map_err(ApiError::internal)?;
        while let Some(chunk) = field.chunk().await.map_err(|e| multipart_error(e, state))? {
            sink.write(&chunk).await.map_err(|e| match e {
                SinkError::TooLarge(_) => SinkError::TooLarge(state.settings.max_upload_bytes),
                other => other,
            })?;
        }
        let upload = sink.finish().await?;
        remaining -= upload.size;
        uploads.push((file, upload));
    }
    let candidates = uploads
        .iter()
        .map(|(name, u)| CandidateFile {
            name: name.clone(),
            path: u.temp.path().to_path_buf(),
            size: u.size,
        })
        .collect();
    let summary = summarize(state, candidates).await?;
    let files: Vec<NewFile> = uploads
        .iter()
        .map(|(name, u)| NewFile {
            name: name.clone(),
            sha256: u.sha256.clone(),
            size: u.size as i64,
        })
        .collect();
    let place_all = || -> ApiResult<()> {
        for (_, u) in &uploads {
            state
                .blobs
                .place(u.temp.path(), &u.sha256)
                .map_err(ApiError::internal)?;
        }
        Ok(())
    };
    let shas = || files.iter().map(|f| f.sha256.clone()).collect::<Vec<_>>();
    if let Err(err) = place_all() {
        collect_blobs(state, shas()).await;
        return Err(err);
    }
    let model = match state
        .store
        .create_ready_model(DEFAULT_TENANT, &name, &files, &summary)
        .await
    {
        Ok(model) => model,
        Err(err) => {
            collect_blobs(state, shas()).await;
            return Err(err.into());
        }
    };
    place_all()?;
    Ok(model)
}

fn multipart_error(err: axum::extract::multipart::MultipartError, state: &AppState) -> ApiError {
    if err.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return SinkError::TooLarge(state.settings.max_upload_bytes).into();
    }
    interrupted(err.body_text())
}

/// Download a file of a model. Supports a single `Range` and `If-None-Match`.
#[utoipa::path(get, path = "/v1/models/{id}/files/{name}", tag = "files",
    params(("id" = String, Path, description = "model id"), ("name" = String, Path, description = "file name")),
    responses((status = 200, description = "the file", content_type = "application/octet-stream"),
        (status = 206, description = "the requested range"), (status = 304, description = "not modified"),
        (status = 404, body = super::error::Problem), (status = 416, body = super::error::Problem)))]
pub async fn get_file(
    State(state): State<AppState>,
    Path((id, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let model = load_model(&state, &id).await?;
    let file = state
        .store
        .model_files(model.id)
        .await?
        .into_iter()
        .find(|f| f.name == name)
        .ok_or_else(|| ApiError::not_found("file"))?;
    let etag = format!("\"{}\"", file.sha256);
    let size = file.size as u64;
    if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"))
    {
        return Ok((StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response());
    }
    let range = match headers.get(header::RANGE).and_then(|v| v.to_str().ok()) {
        Some(spec) => parse_range(spec, size).map_err(|_| {
            let mut err = ApiError::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                format!("range {spec:?} is not satisfiable for a file of {size} bytes"),
            )
            .into_response();
            err.headers_mut().insert(
                header::CONTENT_RANGE,
                HeaderValue::from_str(&format!("bytes */{size}")).expect("ascii"),
            );
            err
        }),
        None => Ok(None),
    };
    let range = match range {
        Ok(range) => range,
        Err(response) => return Ok(response),
    };
    let mut reader = tokio::fs::File::open(state.blobs.path(&file.sha256))
        .await
        .map_err(ApiError::internal)?;
    let (status, start, len) = match range {
        Some((start, end)) => (StatusCode::PARTIAL_CONTENT, start, end - start + 1),
        None => (StatusCode::OK, 0, size),
    };
    reader
        .seek(SeekFrom::Start(start))
        .await
        .map_err(ApiError::internal)?;
    let body = Body::from_stream(ReaderStream::with_capacity(reader.take(len), 256 << 10));
    let mut response = Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(header::CONTENT_LENGTH, len)
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::ETAG, etag)
        .header(
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"{}\"", name.replace('"', "")),
        );
    if status == StatusCode::PARTIAL_CONTENT {
        response = response.header(
            header::CONTENT_RANGE,
            format!("bytes {start}-{}/{size}", start + len - 1),
        );
    }
    response.body(body).map_err(ApiError::internal)
}

/// Parses a single `bytes=` range into inclusive bounds. `Ok(None)` means "serve the
/// whole file" (several ranges, or a unit we do not know); `Err` is unsatisfiable.
fn parse_range(spec: &str, size: u64) -> Result<Option<(u64, u64)>, ()> {
    let Some(spec) = spec.trim().strip_prefix("bytes=") else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let (first, last) = spec.split_once('-').ok_or(())?;
    let (first, last) = (first.trim(), last.trim());
    let range = if first.is_empty() {
        let suffix: u64 = last.parse().map_err(|_| ())?;
        if suffix == 0 || size == 0 {
            return Err(());
        }
        (size.saturating_sub(suffix), size - 1)
    } else {
        let start: u64 = first.parse().map_err(|_| ())?;
        let end = if last.is_empty() {
            size.saturating_sub(1)
        } else {
            last.parse::<u64>()
                .map_err(|_| ())?
                .min(size.saturating_sub(1))
        };
        if start >= size || end < start {
            return Err(());
        }
        (start, end)
    };
    Ok(Some(range))
}

#[cfg(test)]
mod tests {
    use super::parse_range;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-9", 100), Ok(Some((0, 9))));
        assert_eq!(parse_range("bytes=90-", 100), Ok(Some((90, 99))));
        assert_eq!(parse_range("bytes=-10", 100), Ok(Some((90, 99))));
        assert_eq!(parse_range("bytes=-200", 100), Ok(Some((0, 99))));
        assert_eq!(parse_range("bytes=50-500", 100), Ok(Some((50, 99))));
        assert_eq!(parse_range("bytes=0-1,5-6", 100), Ok(None));
        assert_eq!(parse_range("items=0-1", 100), Ok(None));
        assert_eq!(parse_range("bytes=100-", 100), Err(()));
        assert_eq!(parse_range("bytes=9-3", 100), Err(()));
        assert_eq!(parse_range("bytes=x-3", 100), Err(()));
    }
}
