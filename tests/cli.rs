//! `shears prune` on local files: the same engine and recipe rules as the service.

mod common;

use std::path::Path;
use std::process::Command;

use common::model::{check_pruned, is_default_target, parse, sharded_model};
use serde_json::Value;

fn write_model(dir: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    let files = sharded_model("BF16");
    for (name, bytes) in &files {
        std::fs::write(dir.join(name), bytes).unwrap();
    }
    files
}

/// Runs `shears prune --model MODEL --out OUT` with `flags`.
fn prune(model: &Path, out: &Path, flags: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_shears"))
        .args([
            "prune",
            "--model",
            model.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ])
        .args(flags)
        .output()
        .unwrap()
}

#[test]
fn prune_a_sharded_folder() {
    let dir = tempfile::tempdir().unwrap();
    let (model, out) = (dir.path().join("model"), dir.path().join("out"));
    std::fs::create_dir(&model).unwrap();
    let files = write_model(&model);
    let run = prune(
        &model,
        &out,
        &["--method", "magnitude", "--sparsity", "0.5"],
    );
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(stdout.contains("pruned 8 tensors"), "{stdout}");
    for (name, bytes) in &files {
        let got = std::fs::read(out.join(name)).unwrap();
        if !name.ends_with(".safetensors") {
            assert_eq!(&got, bytes, "{name}");
            continue;
        }
        let (before, _) = parse(bytes);
        let (after, _) = parse(&got);
        for (t, tensor) in &before {
            if is_default_target(tensor) {
                check_pruned(tensor, &after[t], 0.5);
            } else {
                assert_eq!(tensor.bytes, after[t].bytes);
            }
        }
    }
    let report: Value =
        serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["tensors"].as_array().unwrap().len(), 8);
    assert_eq!(report["resolved_recipe"]["scope"], "layer");
    assert_eq!(report["totals"]["files_rewritten"], 2);
    let leftovers: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "no scratch files remain");
}

#[test]
fn recipe_file_flags_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (model, out) = (dir.path().join("model"), dir.path().join("out"));
    std::fs::create_dir(&model).unwrap();
    write_model(&model);
    let recipe = dir.path().join("recipe.json");
    std::fs::write(
        &recipe,
        r#"{"method": "magnitude", "pattern": "2:4", "ignore": ["re:.*down_proj.*"]}"#,
    )
    .unwrap();
    let run = prune(&model, &out, &["--recipe", recipe.to_str().unwrap()]);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let report: Value =
        serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["resolved_recipe"]["pattern"], "2:4");
    assert_eq!(report["tensors"].as_array().unwrap().len(), 6);
    // A bad flag is refused with the field named, and nothing is written.
    let bad_out = dir.path().join("bad");
    let run = prune(&model, &bad_out, &["--sparsity", "1.5"]);
    assert!(!run.status.success());
    assert!(String::from_utf8_lossy(&run.stderr).contains("recipe.sparsity"));
    let run = prune(&model, &model, &["--sparsity", "0.5"]);
    assert!(
        !run.status.success(),
        "the model's own folder is refused as output"
    );
}
