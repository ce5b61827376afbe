//! `shears prune`: the service's engine on local files.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use serde_json::{json, Map, Value};

use crate::engine::{
    prune_model_guarded, Control, EngineError, EngineOptions, PruneOutput, SourceFile,
};
use crate::recipe::Recipe;

/// Flags of `shears prune`. Flags override the fields of `--recipe`.
#[derive(Args, Debug, Clone)]
pub struct PruneArgs {
    /// A model folder (Hugging Face layout) or a single .safetensors file.
    #[arg(long)]
    pub model: PathBuf,
    /// Output folder (created if missing); receives the pruned model and report.json.
    #[arg(long)]
    pub out: PathBuf,
    /// A recipe as a JSON file (same format as the API's `recipe`).
    #[arg(long)]
    pub recipe: Option<PathBuf>,
    /// magnitude or random.
    #[arg(long)]
    pub method: Option<String>,
    /// Fraction of weights to zero, in [0, 1).
    #[arg(long)]
    pub sparsity: Option<f64>,
    /// unstructured, or N:M such as 2:4.
    #[arg(long)]
    pub pattern: Option<String>,
    /// layer, global or row.
    #[arg(long)]
    pub scope: Option<String>,
    /// Tensor names or re: patterns to prune (default: 2-D weights in decoder blocks).
    #[arg(long, num_args = 1..)]
    pub targets: Vec<String>,
    /// Tensor names or re: patterns to leave dense.
    #[arg(long, num_args = 1..)]
    pub ignore: Vec<String>,
    /// Seed of random masks.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Threads of the kernels (0: one per core).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
}

impl PruneArgs {
    /// The recipe: the file's, with the flags laid over it.
    pub fn recipe_json(&self) -> anyhow::Result<Value> {
        let mut recipe = match &self.recipe {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?;
                serde_json::from_str::<Map<String, Value>>(&text)
                    .with_context(|| format!("{} is not a JSON object", path.display()))?
            }
            None => Map::new(),
        };
        let mut set = |key: &str, value: Option<Value>| {
            if let Some(v) = value {
                recipe.insert(key.into(), v);
            }
        };
        set("method", self.method.clone().map(Value::from));
        set("sparsity", self.sparsity.map(Value::from));
        set("pattern", self.pattern.clone().map(Value::from));
        set("scope", self.scope.clone().map(Value::from));
        set("seed", self.seed.map(Value::from));
        set(
            "targets",
            (!self.targets.is_empty()).then(|| json!(self.targets)),
        );
        set(
            "ignore",
            (!self.ignore.is_empty()).then(|| json!(self.ignore)),
        );
        Ok(Value::Object(recipe))
    }
}

/// The model's files: a folder's regular files, or one file.
fn source_files(model: &Path) -> anyhow::Result<Vec<SourceFile>> {
    let mut paths = Vec::new();
    if model.is_dir() {
        for entry in std::fs::read_dir(model)? {
            let entry = entry?;
            if entry.file_type()?.is_file() {
                paths.push(entry.path());
            }
        }
    } else if model.is_file() {
        paths.push(model.to_path_buf());
    } else {
        bail!("{} is neither a folder nor a file", model.display());
    }
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .context("a file name is not UTF-8")?
                .to_string();
            let size = std::fs::metadata(&path)?.len();
            Ok(SourceFile {
                name,
                path,
                sha256: String::new(),
                size,
            })
        })
        .collect()
}

/// Runs `shears prune`.
pub fn run(args: &PruneArgs) -> anyhow::Result<()> {
    let recipe_json = args.recipe_json()?;
    let recipe = Recipe::parse(&recipe_json)?;
    let files = source_files(&args.model)?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let out = args.out.canonicalize()?;
    if files.iter().any(|f| {
        f.path
            .parent()
            .and_then(|p| p.canonicalize().ok())
            .as_deref()
            == Some(out.as_path())
    }) {
        bail!("--out must not be the model's own folder");
    }
    let scratch = out.join(format!(".shears-tmp-{}", std::process::id()));
    std::fs::create_dir_all(&scratch)?;
    let pool = crate::worker::kernel_pool(args.threads)?;
    let ctl = Arc::new(Control::default());
    let finished = Arc::new(AtomicBool::new(false));
    let reporter = spawn_progress(ctl.clone(), finished.clone());
    let result = pool.install(|| {
        prune_model_guarded(&files, &recipe, &scratch, &ctl, &EngineOptions::default())
    });
    finished.store(true, Ordering::SeqCst);
    let _ = reporter.join();
    let output = match result {
        Ok(output) => output,
        Err(err) => {
            let _ = std::fs::remove_dir_all(&scratch);
            return Err(match err {
                EngineError::Invalid(msg) => anyhow::anyhow!(msg),
                other => other.into(),
            });
        }
    };
    publish(&files, &output, &out)?;
    std::fs::remove_dir_all(&scratch)?;
    let report = json!({
        "recipe": recipe_json,
        "resolved_recipe": recipe.resolved(),
        "engine_version": concat!("shears ", env!("CARGO_PKG_VERSION")),
        "totals": output.totals,
        "tensors": output.metrics,
    });
    std::fs::write(out.join("report.json"), serde_json::to_vec_pretty(&report)?)?;
    print_summary(&output, &out);
    Ok(())
}

/// Moves rewritten files into `out` and copies the others.
fn publish(files: &[SourceFile], output: &PruneOutput, out: &Path) -> anyhow::Result<()> {
    for (input, file) in files.iter().zip(&output.files) {
        let dest = out.join(&file.name);
        match &file.rewritten {
            Some(path) => std::fs::rename(path, &dest)?,
            None => {
                let tmp = out.join(format!(".{}.partial", file.name));
                std::fs::copy(&input.path, &tmp)?;
                std::fs::rename(&tmp, &dest)?;
            }
        }
    }
    Ok(())
}

fn print_summary(output: &PruneOutput, out: &Path) {
    let t = &output.totals;
    let wall = t["wall_seconds"].as_f64().unwrap_or(0.0);
    let bytes = t["bytes_rewritten"].as_f64().unwrap_or(0.0);
    println!(
        "pruned {} tensors: target sparsity {:.4}, model sparsity {:.4}",
        t["tensors_pruned"],
        t["target_sparsity"].as_f64().unwrap_or(0.0),
        t["model_sparsity"].as_f64().unwrap_or(0.0)
    );
    println!(
        "files: {} rewritten, {} copied; {:.2} s, {:.2} GB/s of rewritten shards",
        t["files_rewritten"],
        t["files_shared"],
        wall,
        if wall > 0.0 { bytes / wall / 1e9 } else { 0.0 }
    );
    println!("wrote {} (report.json has every tensor)", out.display());
}

/// Shows progress: a bar on a terminal, a line per phase change or 5 s otherwise.
fn spawn_progress(ctl: Arc<Control>, finished: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let tty = std::io::stderr().is_terminal();
        let bar = indicatif::ProgressBar::new(0);
        if tty {
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{msg:>10} [{bar:40}] {pos}/{len} {elapsed}",
                )
                .expect("valid template")
                .progress_chars("=> "),
            );
        } else {
            bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
        }
        let mut last_line = std::time::Instant::now();
        let mut last_phase = String::new();
        while !finished.load(Ordering::SeqCst) {
            let p = ctl.progress();
            bar.set_length(p.total);
            bar.set_position(p.done);
            bar.set_message(p.phase.clone());
            if !tty
                && (p.phase != last_phase || last_line.elapsed() > Duration::from_secs(5))
                && !p.phase.is_empty()
            {
                eprintln!("{}: {}/{} {}", p.phase, p.done, p.total, p.unit);
                last_line = std::time::Instant::now();
                last_phase = p.phase.clone();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bar.finish_and_clear();
    })
}
