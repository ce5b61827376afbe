//! The whole flow over HTTP: upload, prune, report, download, against both stores.

mod common;

use common::model::{
    check_pruned, expected_zeros, is_default_target, parse, sharded_model, single_file_model,
};
use common::{spawn_app, Db, Options};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

fn sha(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Checks every file of `output` against `input` for a magnitude job at `sparsity`.
async fn check_output(
    app: &common::TestApp,
    input: &[(String, Vec<u8>)],
    output: &Value,
    sparsity: f64,
) {
    let out_id = output["id"].as_str().unwrap();
    for (name, bytes) in input {
        let got = app.download(out_id, name).await;
        if !name.ends_with(".safetensors") {
            assert_eq!(&got, bytes, "{name} must be byte-identical");
            continue;
        }
        let (before, _) = parse(bytes);
        let (after, metadata) = parse(&got);
        assert_eq!(
            before.keys().collect::<Vec<_>>(),
            after.keys().collect::<Vec<_>>(),
            "{name}: same tensors"
        );
        let has_target = before.values().any(is_default_target);
        if !has_target {
            assert_eq!(
                &got, bytes,
                "{name} holds no target: it must be the parent's bytes"
            );
            continue;
        }
        assert_eq!(
            metadata.get("format").map(String::as_str),
            Some("pt"),
            "{name}: format metadata"
        );
        let recipe: Value = serde_json::from_str(&metadata["shears.recipe"]).unwrap();
        assert_eq!(recipe["method"], "magnitude");
        for (tname, t) in &before {
            if is_default_target(t) {
                check_pruned(t, &after[tname], sparsity);
            } else {
                assert_eq!(
                    t.bytes, after[tname].bytes,
                    "{tname} is not a target: unchanged"
                );
            }
        }
    }
}

async fn single_file_bf16_flow(db: Db) {
    let Some(app) = spawn_app(db, Options::default()).await else {
        return;
    };
    let files = single_file_model("BF16");
    let resp = app.upload_multipart("tiny", &files).await;
    assert_eq!(resp.status(), 201);
    let model: Value = resp.json().await.unwrap();
    assert_eq!(model["status"], "ready");
    assert_eq!(model["architecture"], "LlamaForCausalLM");
    assert_eq!(model["tensor_count"], 13);
    assert_eq!(model["dtypes"]["BF16"], 13);
    let params: usize = common::model::llama_tensors("BF16")
        .iter()
        .map(|t| t.numel())
        .sum();
    assert_eq!(model["params"], params);
    assert_eq!(model["files"].as_array().unwrap().len(), 3);
    let file = model["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "model.safetensors")
        .unwrap();
    assert_eq!(file["sha256"], sha(&files[1].1));

    let resp = app
        .post_json(
            "/v1/jobs",
            &json!({"model_id": model["id"], "recipe": {"method": "magnitude", "sparsity": 0.5}}),
        )
        .await;
    assert_eq!(resp.status(), 202);
    let job: Value = resp.json().await.unwrap();
    assert_eq!(job["kind"], "prune");
    assert_eq!(job["max_attempts"], 3);
    assert_eq!(job["resolved_recipe"]["scope"], "layer");
    let job = app.wait_job(job["id"].as_str().unwrap()).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(job["attempts"], 1);
    assert_eq!(job["progress"]["unit"], "tensors");
    assert_eq!(job["progress"]["done"], 8);
    let out_id = job["output_model_id"].as_str().unwrap();
    let output = app.get_json(&format!("/v1/models/{out_id}")).await;
    assert_eq!(output["status"], "ready");
    assert_eq!(output["parent_id"], model["id"]);
    assert_eq!(output["job_id"], job["id"]);
    assert_eq!(output["tensor_count"], 13);
    check_output(&app, &files, &output, 0.5).await;
    // The list shows each model with its own files.
    let list = app.get_json("/v1/models").await;
    let listed = list["items"].as_array().unwrap();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0]["id"], output["id"], "newest first");
    assert_eq!(listed[0]["files"], output["files"]);
    assert_eq!(listed[1]["files"], model["files"]);

    let report = app
        .get_json(&format!("/v1/jobs/{}/report", job["id"].as_str().unwrap()))
        .await;
    let tensors = report["tensors"].as_array().unwrap();
    assert_eq!(tensors.len(), 8);
    for t in tensors {
        let n = t["params"].as_u64().unwrap() as usize;
        assert_eq!(
            t["zeros_after"].as_u64().unwrap() as usize,
            expected_zeros(0.5, n)
        );
        assert!(t["threshold"].as_f64().unwrap() > 0.0);
        assert!(
            t["zeros_before"].as_u64().unwrap() > 0,
            "the test tensors hold zeros"
        );
    }
    assert!((report["totals"]["target_sparsity"].as_f64().unwrap() - 0.5).abs() < 0.01);
    assert!(report["totals"]["model_sparsity"].as_f64().unwrap() < 0.5);
    assert_eq!(
        report["totals"]["bytes_in"],
        files.iter().map(|f| f.1.len()).sum::<usize>()
    );

    // Download with Range, ETag and If-None-Match.
    let url = format!("/v1/models/{out_id}/files/model.safetensors");
    let whole = app.download(out_id, "model.safetensors").await;
    let resp = app
        .client
        .get(app.url(&url))
        .header("Range", "bytes=8-23")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 206);
    assert_eq!(
        resp.headers()["content-range"],
        format!("bytes 8-23/{}", whole.len())
    );
    assert_eq!(resp.bytes().await.unwrap().as_ref(), &whole[8..24]);
    let resp = app.get(&url).await;
    let etag = resp.headers()["etag"].to_str().unwrap().to_string();
    assert_eq!(etag, format!("\"{}\"", sha(&whole)));
    assert_eq!(resp.headers()["content-length"], whole.len().to_string());
    let resp = app
        .client
        .get(app.url(&url))
        .header("If-None-Match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 304);
    let resp = app
        .client
        .get(app.url(&url))
        .header("Range", format!("bytes={}-", whole.len()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 416);

    // The output is itself an input: prune it further.
    let resp = app
        .post_json(
            "/v1/jobs",
            &json!({"model_id": out_id, "recipe": {"sparsity": 0.75}}),
        )
        .await;
    assert_eq!(resp.status(), 202);
    let again = app
        .wait_job(resp.json::<Value>().await.unwrap()["id"].as_str().unwrap())
        .await;
    assert_eq!(again["status"], "succeeded");
    app.stop().await;
}

async fn sharded_f32_flow(db: Db) {
    let Some(app) = spawn_app(db, Options::default()).await else {
        return;
    };
    let files = sharded_model("F32");
    let model = app.upload_put("sharded", &files).await;
    assert_eq!(model["status"], "ready");
    assert_eq!(model["dtypes"]["F32"], 13);
    let id = model["id"].as_str().unwrap();

    // Tensors, paginated by name.
    let mut names = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let q = match &cursor {
            Some(c) => format!("?limit=5&cursor={c}"),
            None => "?limit=5".into(),
        };
        let page = app.get_json(&format!("/v1/models/{id}/tensors{q}")).await;
        for t in page["items"].as_array().unwrap() {
            names.push(t["name"].as_str().unwrap().to_string());
            if t["name"] == "lm_head.weight" {
                assert_eq!(t["file"], "model-00003-of-00003.safetensors");
                assert_eq!(t["shape"], json!([64, 16]));
                assert_eq!(t["dtype"], "F32");
            }
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);
    assert_eq!(names.len(), 13);

    let resp = app
        .post_json(
            "/v1/jobs",
            &json!({"model_id": id, "recipe": {"method": "magnitude", "sparsity": 0.3}}),
        )
        .await;
    assert_eq!(resp.status(), 202);
    let job = app
        .wait_job(resp.json::<Value>().await.unwrap()["id"].as_str().unwrap())
        .await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let output = app
        .get_json(&format!(
            "/v1/models/{}",
            job["output_model_id"].as_str().unwrap()
        ))
        .await;
    check_output(&app, &files, &output, 0.3).await;

    // Shards without targets, config and index are shared blobs, not copies.
    let by_name = |m: &Value| -> std::collections::BTreeMap<String, String> {
        m["files"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                (
                    f["name"].as_str().unwrap().to_string(),
                    f["sha256"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    let (before, after) = (by_name(&model), by_name(&output));
    assert_eq!(
        before["model-00003-of-00003.safetensors"],
        after["model-00003-of-00003.safetensors"]
    );
    assert_eq!(
        before["model.safetensors.index.json"],
        after["model.safetensors.index.json"]
    );
    assert_eq!(before["config.json"], after["config.json"]);
    assert_ne!(
        before["model-00001-of-00003.safetensors"],
        after["model-00001-of-00003.safetensors"]
    );
    let report = app
        .get_json(&format!("/v1/jobs/{}/report", job["id"].as_str().unwrap()))
        .await;
    assert_eq!(report["totals"]["files_rewritten"], 2);
    assert_eq!(report["totals"]["files_shared"], 3);
    // 5 input blobs + 2 rewritten shards.
    assert_eq!(app.files_under("blobs").len(), 7);

    // Deleting the parent keeps what the child shares; deleting both frees everything.
    let resp = app
        .client
        .delete(app.url(&format!("/v1/models/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    assert_eq!(app.files_under("blobs").len(), 5);
    let resp = app
        .client
        .delete(app.url(&format!("/v1/models/{}", output["id"].as_str().unwrap())))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    assert_eq!(app.files_under("blobs").len(), 0);
    assert_eq!(app.get(&format!("/v1/models/{id}")).await.status(), 404);
    app.stop().await;
}

async fn methods_and_patterns(db: Db) {
    let Some(app) = spawn_app(db, Options::default()).await else {
        return;
    };
    let files = single_file_model("F32");
    let model: Value = app.upload_model("tiny", &files).await;
    let recipes = [
        json!({"pattern": "2:4"}),
        json!({"sparsity": 0.5, "scope": "global"}),
        json!({"sparsity": 0.5, "scope": "row"}),
        json!({"method": "random", "sparsity": 0.5, "seed": 7}),
        json!({"sparsity": 0.5, "targets": ["re:.*mlp\\..*"], "ignore": ["model.layers.0.mlp.up_proj.weight"]}),
    ];
    for recipe in recipes {
        let resp = app
            .post_json(
                "/v1/jobs",
                &json!({"model_id": model["id"], "recipe": recipe}),
            )
            .await;
        assert_eq!(resp.status(), 202, "{recipe}");
        let job = app
            .wait_job(resp.json::<Value>().await.unwrap()["id"].as_str().unwrap())
            .await;
        assert_eq!(job["status"], "succeeded", "{recipe}: {job}");
        let report = app
            .get_json(&format!("/v1/jobs/{}/report", job["id"].as_str().unwrap()))
            .await;
        let tensors = report["tensors"].as_array().unwrap();
        let total: u64 = tensors.iter().map(|t| t["params"].as_u64().unwrap()).sum();
        let zeros: u64 = tensors
            .iter()
            .map(|t| t["zeros_after"].as_u64().unwrap())
            .sum();
        if recipe.get("targets").is_some() {
            assert_eq!(tensors.len(), 3, "{recipe}");
        } else {
            assert_eq!(tensors.len(), 8, "{recipe}");
        }
        if recipe["scope"] == "global" {
            assert_eq!(
                zeros as usize,
                expected_zeros(0.5, total as usize),
                "{recipe}"
            );
        } else if recipe["method"] != "random" {
            for t in tensors {
                let n = t["params"].as_u64().unwrap() as usize;
                assert_eq!(
                    t["zeros_after"].as_u64().unwrap() as usize,
                    expected_zeros(0.5, n),
                    "{recipe}"
                );
            }
        } else {
            // Random masks may also keep pre-existing zeros.
            assert!(zeros as usize >= expected_zeros(0.5, total as usize));
        }
    }
    app.stop().await;
}

both_stores!(
    single_file_bf16_flow,
    sharded_f32_flow,
    methods_and_patterns
);
