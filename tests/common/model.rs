//! Small models in Hugging Face layout, written and read here independently of the
//! crate's own safetensors code, and the checks a pruned output must pass.

use std::collections::BTreeMap;

use serde_json::{json, Value};

/// A tensor: name, dtype (`F32` or `BF16`), shape and values.
#[derive(Clone, Debug)]
pub struct Tensor {
    pub name: String,
    pub dtype: &'static str,
    pub shape: Vec<usize>,
    pub bytes: Vec<u8>,
}

/// Deterministic pseudo-random values with some exact ties and zeros.
fn values(seed: u64, n: usize) -> Vec<f32> {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|i| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let u = ((state >> 40) as f32) / (1u64 << 24) as f32 - 0.5;
            match i % 17 {
                0 => 0.0,
                1 => 0.125,
                2 => -0.125,
                _ => u,
            }
        })
        .collect()
}

fn encode(dtype: &str, vals: &[f32]) -> Vec<u8> {
    match dtype {
        "F32" => vals.iter().flat_map(|v| v.to_le_bytes()).collect(),
        "BF16" => vals
            .iter()
            .flat_map(|v| half::bf16::from_f32(*v).to_le_bytes())
            .collect(),
        other => panic!("unsupported test dtype {other}"),
    }
}

/// Magnitude of element `i` of raw little-endian bytes, as f64.
pub fn magnitude(dtype: &str, bytes: &[u8], i: usize) -> f64 {
    match dtype {
        "F32" => f32::from_le_bytes(bytes[i * 4..i * 4 + 4].try_into().unwrap()).abs() as f64,
        "BF16" => half::bf16::from_le_bytes(bytes[i * 2..i * 2 + 2].try_into().unwrap())
            .to_f64()
            .abs(),
        other => panic!("unsupported test dtype {other}"),
    }
}

fn elem_size(dtype: &str) -> usize {
    if dtype == "F32" {
        4
    } else {
        2
    }
}

impl Tensor {
    pub fn new(name: &str, dtype: &'static str, shape: &[usize], seed: u64) -> Tensor {
        let n = shape.iter().product();
        Tensor {
            name: name.into(),
            dtype,
            shape: shape.to_vec(),
            bytes: encode(dtype, &values(seed, n)),
        }
    }

    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// Serializes tensors (in the given order) as a safetensors file. The header's keys
/// are written in reverse order to show that key order need not follow data order.
pub fn safetensors(tensors: &[Tensor], metadata: Option<Value>) -> Vec<u8> {
    let mut header = serde_json::Map::new();
    let mut offset = 0usize;
    let mut entries = Vec::new();
    for t in tensors {
        entries.push((t.name.clone(), json!({"dtype": t.dtype, "shape": t.shape, "data_offsets": [offset, offset + t.bytes.len()]})));
        offset += t.bytes.len();
    }
    if let Some(m) = metadata {
        header.insert("__metadata__".into(), m);
    }
    for (k, v) in entries.into_iter().rev() {
        header.insert(k, v);
    }
    let mut text = serde_json::to_vec(&Value::Object(header)).unwrap();
    while !(8 + text.len()).is_multiple_of(8) {
        text.push(b' ');
    }
    let mut out = (text.len() as u64).to_le_bytes().to_vec();
    out.extend(text);
    for t in tensors {
        out.extend(&t.bytes);
    }
    out
}

/// Parses a safetensors file: tensors by name (dtype, shape, bytes) and metadata.
pub fn parse(bytes: &[u8]) -> (BTreeMap<String, Tensor>, BTreeMap<String, String>) {
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Map<String, Value> = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let data = &bytes[8 + n..];
    let mut tensors = BTreeMap::new();
    let mut metadata = BTreeMap::new();
    for (name, v) in header {
        if name == "__metadata__" {
            metadata = serde_json::from_value(v).unwrap();
            continue;
        }
        let dtype: &'static str = match v["dtype"].as_str().unwrap() {
            "F32" => "F32",
            "BF16" => "BF16",
            other => panic!("unexpected dtype {other}"),
        };
        let shape: Vec<usize> = serde_json::from_value(v["shape"].clone()).unwrap();
        let (a, b) = (
            v["data_offsets"][0].as_u64().unwrap() as usize,
            v["data_offsets"][1].as_u64().unwrap() as usize,
        );
        tensors.insert(
            name.clone(),
            Tensor {
                name,
                dtype,
                shape,
                bytes: data[a..b].to_vec(),
            },
        );
    }
    (tensors, metadata)
}

/// The tensors of a two-layer LLaMA-like model.
pub fn llama_tensors(dtype: &'static str) -> Vec<Tensor> {
    let mut out = vec![Tensor::new(
        "model.embed_tokens.weight",
        dtype,
        &[64, 16],
        1,
    )];
    for layer in 0..2 {
        let p = format!("model.layers.{layer}");
        let s = 10 * (layer as u64 + 1);
        out.push(Tensor::new(
            &format!("{p}.input_layernorm.weight"),
            dtype,
            &[16],
            s,
        ));
        out.push(Tensor::new(
            &format!("{p}.self_attn.q_proj.weight"),
            dtype,
            &[16, 16],
            s + 1,
        ));
        out.push(Tensor::new(
            &format!("{p}.self_attn.k_proj.weight"),
            dtype,
            &[8, 16],
            s + 2,
        ));
        out.push(Tensor::new(
            &format!("{p}.mlp.up_proj.weight"),
            dtype,
            &[32, 16],
            s + 3,
        ));
        out.push(Tensor::new(
            &format!("{p}.mlp.down_proj.weight"),
            dtype,
            &[16, 32],
            s + 4,
        ));
    }
    out.push(Tensor::new("model.norm.weight", dtype, &[16], 90));
    out.push(Tensor::new("lm_head.weight", dtype, &[64, 16], 91));
    out
}

/// Whether a tensor is a default target (2-D, inside a decoder layer).
pub fn is_default_target(t: &Tensor) -> bool {
    t.shape.len() == 2 && t.name.contains(".layers.")
}

fn config() -> Vec<u8> {
    serde_json::to_vec_pretty(
        &json!({"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 16}),
    )
    .unwrap()
}

/// A single-file model: model.safetensors, config.json, tokenizer.json.
pub fn single_file_model(dtype: &'static str) -> Vec<(String, Vec<u8>)> {
    vec![
        ("config.json".into(), config()),
        (
            "model.safetensors".into(),
            safetensors(&llama_tensors(dtype), Some(json!({"format": "pt"}))),
        ),
        ("tokenizer.json".into(), br#"{"version":"1.0"}"#.to_vec()),
    ]
}

/// A three-shard model whose last shard (final norm, lm_head) holds no target.
pub fn sharded_model(dtype: &'static str) -> Vec<(String, Vec<u8>)> {
    let all = llama_tensors(dtype);
    let pick = |pred: &dyn Fn(&str) -> bool| -> Vec<Tensor> {
        all.iter().filter(|t| pred(&t.name)).cloned().collect()
    };
    let shards = [
        pick(&|n| n.starts_with("model.embed") || n.starts_with("model.layers.0.")),
        pick(&|n| n.starts_with("model.layers.1.")),
        pick(&|n| n == "model.norm.weight" || n == "lm_head.weight"),
    ];
    let mut weight_map = serde_json::Map::new();
    let mut files = vec![("config.json".to_string(), config())];
    for (i, shard) in shards.iter().enumerate() {
        let name = format!("model-0000{}-of-00003.safetensors", i + 1);
        for t in shard {
            weight_map.insert(t.name.clone(), json!(name));
        }
        files.push((name, safetensors(shard, Some(json!({"format": "pt"})))));
    }
    let index = json!({"metadata": {"total_size": 0}, "weight_map": weight_map});
    files.push((
        "model.safetensors.index.json".into(),
        serde_json::to_vec_pretty(&index).unwrap(),
    ));
    files
}

/// Python's round (half to even) of s·n.
pub fn expected_zeros(sparsity: f64, n: usize) -> usize {
    (sparsity * n as f64).round_ties_even() as usize
}

/// Checks a pruned tensor against its input: exactly `expected_zeros` zeros, every
/// kept weight's bytes unchanged, every pruned magnitude ≤ every kept magnitude.
pub fn check_pruned(input: &Tensor, output: &Tensor, sparsity: f64) {
    assert_eq!(
        (input.dtype, &input.shape),
        (output.dtype, &output.shape),
        "{}",
        input.name
    );
    let size = elem_size(input.dtype);
    let n = input.numel();
    let mut zeros = 0;
    let mut max_pruned: f64 = 0.0;
    let mut min_kept = f64::INFINITY;
    for i in 0..n {
        let out = &output.bytes[i * size..(i + 1) * size];
        let is_zero = magnitude(output.dtype, &output.bytes, i) == 0.0;
        if is_zero {
            zeros += 1;
            max_pruned = max_pruned.max(magnitude(input.dtype, &input.bytes, i));
        } else {
            assert_eq!(
                out,
                &input.bytes[i * size..(i + 1) * size],
                "{}: kept weight {i} changed",
                input.name
            );
            min_kept = min_kept.min(magnitude(input.dtype, &input.bytes, i));
        }
    }
    assert_eq!(
        zeros,
        expected_zeros(sparsity, n),
        "{}: zero count",
        input.name
    );
    assert!(
        max_pruned <= min_kept,
        "{}: pruned {max_pruned} > kept {min_kept}",
        input.name
    );
}
