//! The API's contract over HTTP: errors, idempotency, cancel, pagination, events,
//! interrupted and abandoned uploads, operations endpoints; against both stores.

mod common;

use std::time::Duration;

use common::model::{safetensors, single_file_model, Tensor};
use common::{spawn_app, Db, Options};
use futures_util::StreamExt;
use serde_json::{json, Value};
use sha2::Digest;

async fn assert_problem(resp: reqwest::Response, status: u16, needle: &str) -> Value {
    let got = resp.status();
    let content_type = resp.headers()["content-type"].clone();
    let body: Value = resp.json().await.unwrap();
    assert_eq!(got, status, "{body}");
    assert_eq!(content_type, "application/problem+json");
    assert_eq!(body["status"], status);
    let detail = body["detail"].as_str().unwrap();
    assert!(
        detail.contains(needle),
        "{detail:?} should mention {needle:?}"
    );
    body
}

async fn errors_are_problems(db: Db) {
    let Some(app) = spawn_app(
        db,
        Options {
            max_upload_bytes: 4096,
            ..Options::api_only()
        },
    )
    .await
    else {
        return;
    };
    // 404 for ids that name nothing, malformed or not.
    for path in [
        "/v1/models/nope",
        "/v1/models/0190b4c2-0000-7000-8000-000000000000",
        "/v1/jobs/123",
        "/v1/jobs/0190b4c2-0000-7000-8000-000000000000/report",
        "/v1/models/x/tensors",
        "/v1/nothing",
    ] {
        assert_problem(app.get(path).await, 404, "no such").await;
    }
    let resp = app
        .post_json(
            "/v1/jobs",
            &json!({"model_id": "x", "recipe": {"sparsity": 0.5}}),
        )
        .await;
    assert_problem(resp, 404, "model").await;

    // 422: an invalid safetensors file names the file and the problem.
    let mut bad = safetensors(&[Tensor::new("w", "F32", &[4, 4], 1)], None);
    bad.truncate(bad.len() - 4);
    let resp = app
        .upload_multipart("bad", &[("model.safetensors".into(), bad)])
        .await;
    assert_problem(resp, 422, "model.safetensors").await;
    // Hostile file names.
    for name in ["../evil.json", "sub/config.json", "/etc/passwd"] {
        let resp = app
            .upload_multipart("bad", &[(name.into(), b"{}".to_vec())])
            .await;
        assert_problem(resp, 422, "file name").await;
    }
    let id = &app.create_model("m").await;
    let resp = app.put_file(id, "sub%2Fx.json", "{}").await;
    assert_problem(resp, 422, "flat").await;
    let resp = app.put_file(id, "..%2F..%2Fx", "{}").await;
    assert_eq!(resp.status(), 422);
    let resp = app.put_file(id, "a%01b", "{}").await;
    assert_problem(resp, 422, "control").await;
    // Finalize without weights.
    let resp = app
        .client
        .post(app.url(&format!("/v1/models/{id}/finalize")))
        .send()
        .await
        .unwrap();
    assert_problem(resp, 422, ".safetensors").await;

    // 413 over the upload limit, for PUT and multipart; nothing remains.
    let resp = app.put_file(id, "big.bin", vec![0u8; 5000]).await;
    assert_problem(resp, 413, "limit").await;
    let resp = app
        .upload_multipart("big", &[("big.bin".into(), vec![0u8; 5000])])
        .await;
    assert_problem(resp, 413, "limit").await;
    assert!(app.files_under("tmp").is_empty());
    assert!(app.files_under("blobs").is_empty());

    // 409: a ready model is immutable; a job on an uploading model is refused.
    let resp = app
        .post_json(
            "/v1/jobs",
            &json!({"model_id": id, "recipe": {"sparsity": 0.5}}),
        )
        .await;
    assert_problem(resp, 409, "finalize").await;
    let files = vec![(
        "model.safetensors".to_string(),
        safetensors(
            &[Tensor::new(
                "model.layers.0.mlp.up_proj.weight",
                "F32",
                &[8, 8],
                1,
            )],
            None,
        ),
    )];
    let ready: Value = app.upload_model("ok", &files).await;
    let rid = ready["id"].as_str().unwrap();
    let resp = app.put_file(rid, "x.json", "{}").await;
    assert_problem(resp, 409, "ready").await;
    let resp = app
        .client
        .post(app.url(&format!("/v1/models/{rid}/finalize")))
        .send()
        .await
        .unwrap();
    assert_problem(resp, 409, "ready").await;

    // 422: recipes, each naming the field.
    for (recipe, field) in [
        (json!({"sparsity": 1.5}), "recipe.sparsity"),
        (json!({"sparsity": -0.5}), "recipe.sparsity"),
        (json!({"pattern": "4:2"}), "recipe.pattern"),
        (
            json!({"sparsity": 0.5, "method": "prayer"}),
            "recipe.method",
        ),
        (
            json!({"sparsity": 0.5, "targets": ["re:nothing\\..*"]}),
            "recipe.targets[0]",
        ),
        (json!({"pattern": "3:5"}), "recipe.pattern"),
    ] {
        let resp = app
            .post_json("/v1/jobs", &json!({"model_id": rid, "recipe": recipe}))
            .await;
        assert_problem(resp, 422, field).await;
    }
    let resp = app
        .client
        .post(app.url("/v1/jobs"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(resp.headers()["content-type"], "application/problem+json");

    // 409: a model used by a queued job cannot be deleted.
    let resp = app
        .post_json(
            "/v1/jobs",
            &json!({"model_id": rid, "recipe": {"sparsity": 0.5}}),
        )
        .await;
    assert_eq!(resp.status(), 202);
    let resp = app
        .client
        .delete(app.url(&format!("/v1/models/{rid}")))
        .send()
        .await
        .unwrap();
    assert_problem(resp, 409, "job").await;
    app.stop().await;
}

async fn idempotency_and_cancel(db: Db) {
    let Some(app) = spawn_app(db, Options::api_only()).await else {
        return;
    };
    let model: Value = app.upload_model("m", &single_file_model("BF16")).await;
    let body = json!({"model_id": model["id"], "recipe": {"method": "magnitude", "sparsity": 0.5}});
    let post = |key: &'static str, body: Value| {
        let req = app
            .client
            .post(app.url("/v1/jobs"))
            .header("Idempotency-Key", key)
            .json(&body);
        async move { req.send().await.unwrap() }
    };
    let first: Value = post("k1", body.clone()).await.json().await.unwrap();
    let replay = post("k1", body.clone()).await;
    assert_eq!(replay.status(), 202);
    assert_eq!(replay.json::<Value>().await.unwrap()["id"], first["id"]);
    // Same body with keys in another order is the same request.
    let reordered =
        json!({"recipe": {"sparsity": 0.5, "method": "magnitude"}, "model_id": model["id"]});
    assert_eq!(
        post("k1", reordered).await.json::<Value>().await.unwrap()["id"],
        first["id"]
    );
    let other = post(
        "k1",
        json!({"model_id": model["id"], "recipe": {"sparsity": 0.6}}),
    )
    .await;
    assert_problem(other, 422, "Idempotency-Key").await;
    let second: Value = post("k2", body.clone()).await.json().await.unwrap();
    assert_ne!(second["id"], first["id"]);
    let jobs = app.get_json("/v1/jobs?status=queued").await;
    assert_eq!(jobs["items"].as_array().unwrap().len(), 2);

    // Cancel a queued job; a second cancel is a conflict.
    let id = first["id"].as_str().unwrap();
    let resp = app
        .client
        .post(app.url(&format!("/v1/jobs/{id}/cancel")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    assert_eq!(resp.json::<Value>().await.unwrap()["status"], "cancelled");
    let resp = app
        .client
        .post(app.url(&format!("/v1/jobs/{id}/cancel")))
        .send()
        .await
        .unwrap();
    assert_problem(resp, 409, "ended").await;
    assert_problem(
        app.get(&format!("/v1/jobs/{id}/report")).await,
        409,
        "cancelled",
    )
    .await;
    let cancelled = app.get_json("/v1/jobs?status=cancelled").await;
    assert_eq!(cancelled["items"][0]["id"], first["id"]);
    let by_model = app
        .get_json(&format!(
            "/v1/jobs?model_id={}",
            model["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(by_model["items"].as_array().unwrap().len(), 2);
    assert_eq!(app.get("/v1/jobs?status=bogus").await.status(), 400);
    app.stop().await;
}

async fn pagination_newest_first(db: Db) {
    let Some(app) = spawn_app(db, Options::api_only()).await else {
        return;
    };
    let mut created = Vec::new();
    for i in 0..5 {
        let m: Value = app
            .post_json("/v1/models", &json!({"name": format!("m{i}")}))
            .await
            .json()
            .await
            .unwrap();
        created.push(m["id"].as_str().unwrap().to_string());
    }
    let mut seen = Vec::new();
    let mut path = "/v1/models?limit=2".to_string();
    loop {
        let page = app.get_json(&path).await;
        for m in page["items"].as_array().unwrap() {
            seen.push(m["id"].as_str().unwrap().to_string());
        }
        match page["next_cursor"].as_str() {
            Some(c) => path = format!("/v1/models?limit=2&cursor={c}"),
            None => break,
        }
    }
    created.reverse();
    assert_eq!(seen, created);
    app.stop().await;
}

async fn events_stream_progress_then_end(db: Db) {
    let Some(app) = spawn_app(db, Options::default()).await else {
        return;
    };
    let model: Value = app.upload_model("m", &single_file_model("F32")).await;
    let job: Value = app
        .queue_job(&json!({"model_id": model["id"], "recipe": {"sparsity": 0.5}}))
        .await;
    let resp = app
        .get(&format!("/v1/jobs/{}/events", job["id"].as_str().unwrap()))
        .await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let mut text = String::new();
    let mut stream = resp.bytes_stream();
    let read = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(chunk) = stream.next().await {
            text.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
        }
    });
    read.await.expect("the stream ends after the job");
    let events: Vec<(&str, Value)> = text
        .split("\n\n")
        .filter_map(|block| {
            let name = block.lines().find_map(|l| l.strip_prefix("event: "))?;
            let data = block.lines().find_map(|l| l.strip_prefix("data: "))?;
            Some((name, serde_json::from_str(data).unwrap()))
        })
        .collect();
    assert!(events.len() >= 2, "{text}");
    assert_eq!(events[0].0, "progress");
    let (last, job) = events.last().unwrap();
    assert_eq!(*last, "end");
    assert_eq!(job["status"], "succeeded");
    assert_eq!(events.iter().filter(|e| e.0 == "end").count(), 1);
    app.stop().await;
}

async fn interrupted_put_leaves_nothing(db: Db) {
    let Some(app) = spawn_app(db, Options::api_only()).await else {
        return;
    };
    let id = &app.create_model("m").await;
    let resp = app.put_file(id, "config.json", "{\"a\": 1}").await;
    assert_eq!(resp.status(), 201);
    let before = app.get_json(&format!("/v1/models/{id}")).await;
    // A body that breaks off half way through.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = vec![
        Ok(vec![1u8; 10_000]),
        Err(std::io::Error::other("connection lost")),
    ];
    let body = reqwest::Body::wrap_stream(futures_util::stream::iter(chunks));
    let result = app
        .client
        .put(app.url(&format!("/v1/models/{id}/files/config.json")))
        .body(body)
        .send()
        .await;
    assert!(result.is_err() || result.unwrap().status().is_client_error());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = app.get_json(&format!("/v1/models/{id}")).await;
    assert_eq!(before["files"], after["files"]);
    assert!(
        app.files_under("tmp").is_empty(),
        "{:?}",
        app.files_under("tmp")
    );
    assert_eq!(app.files_under("blobs").len(), 1);
    // A one-shot upload that fails validation leaves no row and no blob.
    let resp = app
        .upload_multipart("bad", &[("config.json".into(), b"{}".to_vec())])
        .await;
    assert_eq!(resp.status(), 422);
    assert_eq!(
        app.get_json("/v1/models").await["items"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(app.files_under("blobs").len(), 1);
    app.stop().await;
}

async fn abandoned_uploads_expire(db: Db) {
    let Some(app) = spawn_app(
        db,
        Options {
            upload_ttl: Duration::from_millis(400),
            ..Options::api_only()
        },
    )
    .await
    else {
        return;
    };
    let id = &app.create_model("m").await;
    let resp = app.put_file(id, "a.bin", vec![7u8; 100]).await;
    assert_eq!(resp.status(), 201);
    assert_eq!(app.files_under("blobs").len(), 1);
    let mut gone = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if app.get(&format!("/v1/models/{id}")).await.status() == 404 {
            gone = true;
            break;
        }
    }
    assert!(gone, "the abandoned upload was not removed");
    assert!(app.files_under("blobs").is_empty());
    app.stop().await;
}

async fn operations_endpoints(db: Db) {
    let Some(app) = spawn_app(db, Options::default()).await else {
        return;
    };
    assert_eq!(app.get_json("/healthz").await["status"], "ok");
    assert_eq!(app.get_json("/readyz").await["status"], "ready");
    let model: Value = app.upload_model("m", &single_file_model("BF16")).await;
    let job: Value = app
        .queue_job(&json!({"model_id": model["id"], "recipe": {"sparsity": 0.5}}))
        .await;
    app.wait_job(job["id"].as_str().unwrap()).await;
    let resp = app.get("/metrics").await;
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    assert!(
        text.contains("shears_jobs{status=\"succeeded\"} 1"),
        "{text}"
    );
    assert!(text.contains("shears_upload_bytes_total"), "{text}");
    assert!(text.contains("shears_job_duration_seconds"), "{text}");
    let resp = app.get("/healthz").await;
    assert!(resp.headers().contains_key("x-request-id"));
    app.stop().await;
}

/// Queues a job on a model big enough to still be running a moment later; returns
/// its id once it runs.
async fn start_long_job(app: &common::TestApp) -> String {
    let tensors: Vec<Tensor> = (0..12)
        .map(|i| {
            Tensor::new(
                &format!("model.layers.{i}.mlp.up_proj.weight"),
                "F32",
                &[2048, 1024],
                i,
            )
        })
        .collect();
    let files = vec![("model.safetensors".to_string(), safetensors(&tensors, None))];
    let model: Value = app.upload_model("big", &files).await;
    let body = json!({"model_id": model["id"], "recipe": {"sparsity": 0.5}});
    let job: Value = app.post_json("/v1/jobs", &body).await.json().await.unwrap();
    let id = job["id"].as_str().unwrap().to_string();
    for _ in 0..200 {
        if app.get_json(&format!("/v1/jobs/{id}")).await["status"] == "running" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    id
}

async fn cancel_a_running_job(db: Db) {
    let options = Options {
        max_upload_bytes: 1 << 30,
        ..Options::default()
    };
    let Some(app) = spawn_app(db, options).await else {
        return;
    };
    let id = start_long_job(&app).await;
    let resp = app
        .client
        .post(app.url(&format!("/v1/jobs/{id}/cancel")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let job = app.wait_job(&id).await;
    assert_eq!(job["status"], "cancelled", "{job}");
    assert!(job["output_model_id"].is_null());
    assert_eq!(
        app.get_json("/v1/models").await["items"]
            .as_array()
            .unwrap()
            .len(),
        1,
        "no output model"
    );
    assert!(app.files_under("scratch").is_empty());
    app.stop().await;
}

async fn shutdown_returns_a_running_job_to_the_queue(db: Db) {
    let options = Options {
        shutdown_grace: Duration::ZERO,
        max_upload_bytes: 1 << 30,
        ..Options::default()
    };
    let Some(mut app) = spawn_app(db, options).await else {
        return;
    };
    let id = start_long_job(&app).await;
    let running = app.running.take().unwrap();
    let store = running.store.clone();
    running.shutdown().await;
    let job = store
        .get_job(shears::store::DEFAULT_TENANT, id.parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (job.status.as_str(), job.attempts),
        ("queued", 0),
        "released without counting the attempt"
    );
    assert!(job.output_model_id.is_none());
    assert!(
        app.files_under("scratch").is_empty(),
        "the attempt's scratch area is removed"
    );
}

both_stores!(
    datasets,
    cancel_a_running_job,
    shutdown_returns_a_running_job_to_the_queue,
    errors_are_problems,
    idempotency_and_cancel,
    pagination_newest_first,
    events_stream_progress_then_end,
    interrupted_put_leaves_nothing,
    abandoned_uploads_expire,
    operations_endpoints,
);

async fn datasets(db: Db) {
    let options = Options {
        max_upload_bytes: 1 << 20,
        ..Options::api_only()
    };
    let Some(app) = spawn_app(db, options).await else {
        return;
    };
    let text = "In the beginning was the word. Ünïcode too.\n".repeat(100);
    let resp = app
        .client
        .post(app.url("/v1/datasets?name=calib"))
        .header("content-type", "text/plain")
        .body(text.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let raw: Value = resp.json().await.unwrap();
    assert_eq!(raw["name"], "calib");
    assert_eq!(raw["bytes"], text.len());
    assert_eq!(
        raw["sha256"],
        hex::encode(sha2::Sha256::digest(text.as_bytes()))
    );
    let form = reqwest::multipart::Form::new().text("name", "eval").part(
        "file",
        reqwest::multipart::Part::bytes(b"other text".to_vec()).file_name("eval.txt"),
    );
    let resp = app
        .client
        .post(app.url("/v1/datasets"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let multi: Value = resp.json().await.unwrap();
    assert_eq!(
        (multi["name"].as_str(), multi["bytes"].as_u64()),
        (Some("eval"), Some(10))
    );
    let id = raw["id"].as_str().unwrap();
    assert_eq!(
        app.get_json(&format!("/v1/datasets/{id}")).await["sha256"],
        raw["sha256"]
    );
    let list = app.get_json("/v1/datasets?limit=1").await;
    assert_eq!(list["items"][0]["id"], multi["id"], "newest first");
    let next = list["next_cursor"].as_str().unwrap();
    assert_eq!(
        app.get_json(&format!("/v1/datasets?limit=1&cursor={next}"))
            .await["items"][0]["id"],
        raw["id"]
    );

    // Bad text is refused and leaves nothing.
    let blobs_before = app.files_under("blobs").len();
    let resp = app
        .client
        .post(app.url("/v1/datasets"))
        .body(b"ok then \xff\xfe".to_vec())
        .send()
        .await
        .unwrap();
    assert_problem(resp, 422, "byte 8").await;
    assert_problem(
        app.client
            .post(app.url("/v1/datasets"))
            .body("")
            .send()
            .await
            .unwrap(),
        422,
        "empty",
    )
    .await;
    assert_problem(
        app.client
            .post(app.url("/v1/datasets"))
            .body(vec![b'a'; 2 << 20])
            .send()
            .await
            .unwrap(),
        413,
        "limit",
    )
    .await;
    assert_eq!(app.files_under("blobs").len(), blobs_before);
    assert!(app.files_under("tmp").is_empty());
    assert_problem(app.get("/v1/datasets/nope").await, 404, "dataset").await;

    let resp = app
        .client
        .delete(app.url(&format!("/v1/datasets/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    assert_eq!(app.get(&format!("/v1/datasets/{id}")).await.status(), 404);
    assert_eq!(
        app.files_under("blobs").len(),
        blobs_before - 1,
        "the text's blob is removed"
    );
    app.stop().await;
}
