//! Writes a LLaMA-shaped model with random weights in Hugging Face layout (config.json,
//! safetensors shards and their index), of any size: for walkthroughs, tests of the
//! memory bound and benchmarks.
//!
//!     cargo run --release --example synth_model -- --out tiny
//!     cargo run --release --example synth_model -- --out big --layers 20 --hidden 4096 \
//!         --intermediate 11008 --vocab 32000 --shard-bytes 2000000000

use std::collections::BTreeMap;
use std::fs::File;
use std::io::BufWriter;
use std::path::PathBuf;

use clap::Parser;
use serde_json::json;
use shears::tensor::{Dtype, SafetensorsWriter};

#[derive(Parser)]
struct Args {
    /// Output folder.
    #[arg(long)]
    out: PathBuf,
    #[arg(long, default_value_t = 2)]
    layers: usize,
    #[arg(long, default_value_t = 64)]
    hidden: usize,
    #[arg(long, default_value_t = 128)]
    intermediate: usize,
    #[arg(long, default_value_t = 256)]
    vocab: usize,
    /// bf16 or f32.
    #[arg(long, default_value = "bf16")]
    dtype: String,
    /// Start a new shard once one holds this many bytes (0: a single file).
    #[arg(long, default_value_t = 0)]
    shard_bytes: u64,
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

fn tensors(a: &Args) -> Vec<(String, Vec<usize>)> {
    let (h, i) = (a.hidden, a.intermediate);
    let mut out = vec![("model.embed_tokens.weight".to_string(), vec![a.vocab, h])];
    for l in 0..a.layers {
        let p = format!("model.layers.{l}");
        out.push((format!("{p}.input_layernorm.weight"), vec![h]));
        for proj in ["q_proj", "k_proj", "v_proj", "o_proj"] {
            out.push((format!("{p}.self_attn.{proj}.weight"), vec![h, h]));
        }
        out.push((format!("{p}.post_attention_layernorm.weight"), vec![h]));
        out.push((format!("{p}.mlp.gate_proj.weight"), vec![i, h]));
        out.push((format!("{p}.mlp.up_proj.weight"), vec![i, h]));
        out.push((format!("{p}.mlp.down_proj.weight"), vec![h, i]));
    }
    out.push(("model.norm.weight".to_string(), vec![h]));
    out.push(("lm_head.weight".to_string(), vec![a.vocab, h]));
    out
}

/// Pseudo-random values roughly uniform in [-0.05, 0.05), encoded in `dtype`.
fn fill(dtype: Dtype, n: usize, state: &mut u64, out: &mut Vec<u8>) {
    out.clear();
    for _ in 0..n {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        let v = ((*state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.1;
        match dtype {
            Dtype::BF16 => out.extend(half::bf16::from_f32(v).to_le_bytes()),
            _ => out.extend(v.to_le_bytes()),
        }
    }
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let dtype = match a.dtype.as_str() {
        "bf16" => Dtype::BF16,
        "f32" => Dtype::F32,
        other => anyhow::bail!("--dtype {other}: use bf16 or f32"),
    };
    std::fs::create_dir_all(&a.out)?;
    let all = tensors(&a);
    let mut shards: Vec<Vec<(String, Vec<usize>)>> = vec![vec![]];
    let mut bytes = 0u64;
    for t in all {
        let len = t.1.iter().product::<usize>() as u64 * dtype.size() as u64;
        if a.shard_bytes > 0 && bytes > 0 && bytes + len > a.shard_bytes {
            shards.push(vec![]);
            bytes = 0;
        }
        bytes += len;
        shards.last_mut().expect("a shard").push(t);
    }
    let count = shards.len();
    let mut weight_map = BTreeMap::new();
    let mut state = a.seed.wrapping_mul(0x9e3779b97f4a7c15) | 1;
    let mut buf = Vec::new();
    let metadata = BTreeMap::from([("format".to_string(), "pt".to_string())]);
    for (s, shard) in shards.iter().enumerate() {
        let name = if count == 1 {
            "model.safetensors".to_string()
        } else {
            format!("model-{:05}-of-{count:05}.safetensors", s + 1)
        };
        let entries: Vec<_> = shard
            .iter()
            .map(|(n, shape)| (n.clone(), dtype, shape.clone()))
            .collect();
        let file = BufWriter::with_capacity(8 << 20, File::create(a.out.join(&name))?);
        let mut writer = SafetensorsWriter::new(file, &entries, &metadata)?;
        for (tensor, shape) in shard {
            fill(dtype, shape.iter().product(), &mut state, &mut buf);
            writer.write_tensor(tensor, &buf)?;
            weight_map.insert(tensor.clone(), name.clone());
        }
        writer.finish()?;
        eprintln!("wrote {name}");
    }
    if count > 1 {
        let index = json!({"metadata": {}, "weight_map": weight_map});
        std::fs::write(
            a.out.join("model.safetensors.index.json"),
            serde_json::to_vec_pretty(&index)?,
        )?;
    }
    let config = json!({
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": a.hidden,
        "intermediate_size": a.intermediate, "num_hidden_layers": a.layers, "vocab_size": a.vocab,
        "torch_dtype": if dtype == Dtype::BF16 { "bfloat16" } else { "float32" },
    });
    std::fs::write(
        a.out.join("config.json"),
        serde_json::to_vec_pretty(&config)?,
    )?;
    Ok(())
}
