//! The job spec: parse and validate a recipe in one place, and resolve which tensors
//! it targets. Every error names the field to fix.

use std::collections::BTreeSet;

use regex::Regex;
use serde::Serialize;
use serde_json::{json, Map, Value};

/// The default targets: weights inside numbered decoder blocks. Only 2-D tensors
/// matching it are targets, so norms and biases (1-D) stay dense, and embeddings and
/// `lm_head` (outside the blocks) too.
pub const DEFAULT_TARGETS: &str = r".*\.(layers|h|blocks|block)\.\d+\..*\.weight";

/// A recipe error: the field at fault and what to do about it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("recipe.{field}: {message}")]
pub struct RecipeError {
    pub field: String,
    pub message: String,
}

fn err(field: impl Into<String>, message: impl Into<String>) -> RecipeError {
    RecipeError {
        field: field.into(),
        message: message.into(),
    }
}

/// Pruning methods.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// Smallest |w| first.
    Magnitude,
    /// A seeded uniformly random mask.
    Random,
}

/// Which weights compete with each other for pruning.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Each tensor on its own.
    Layer,
    /// All targeted tensors together, with one threshold.
    Global,
    /// Each output row of each tensor on its own.
    Row,
}

/// The sparsity pattern.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pattern {
    /// Any weight may go.
    Unstructured,
    /// At most `n` nonzeros in every `m` consecutive weights along the input dimension.
    NM { n: usize, m: usize },
}

impl Pattern {
    /// The recipe spelling (`unstructured`, `2:4`).
    pub fn label(&self) -> String {
        match self {
            Pattern::Unstructured => "unstructured".into(),
            Pattern::NM { n, m } => format!("{n}:{m}"),
        }
    }
}

/// A tensor name matcher: an exact name or a `re:` regular expression matching the
/// whole name.
#[derive(Clone, Debug)]
pub struct NameMatcher {
    text: String,
    regex: Option<Regex>,
}

impl NameMatcher {
    fn parse(field: &str, text: &str) -> Result<Self, RecipeError> {
        let regex = match text.strip_prefix("re:") {
            Some(pattern) => Some(
                Regex::new(&format!("^(?:{pattern})$"))
                    .map_err(|e| err(field, format!("invalid regular expression: {e}")))?,
            ),
            None if text.is_empty() => return Err(err(field, "must not be empty")),
            None => None,
        };
        Ok(NameMatcher {
            text: text.to_string(),
            regex,
        })
    }

    /// Whether `name` matches.
    pub fn matches(&self, name: &str) -> bool {
        match &self.regex {
            Some(re) => re.is_match(name),
            None => self.text == name,
        }
    }
}

/// A validated recipe with every default filled in.
#[derive(Clone, Debug)]
pub struct Recipe {
    pub method: Method,
    pub sparsity: f64,
    pub pattern: Pattern,
    pub scope: Scope,
    pub seed: u64,
    /// Explicit targets; `None` means [`DEFAULT_TARGETS`] (2-D tensors only).
    pub targets: Option<Vec<NameMatcher>>,
    pub ignore: Vec<NameMatcher>,
    /// Leave N:M-incompatible tensors dense instead of failing.
    pub ignore_incompatible: bool,
}

const FIELDS: &[&str] = &[
    "method",
    "sparsity",
    "pattern",
    "scope",
    "seed",
    "targets",
    "ignore",
    "ignore_incompatible",
    "calibration",
    "evaluate",
];

impl Recipe {
    /// Parses and validates a recipe given as JSON.
    pub fn parse(value: &Value) -> Result<Recipe, RecipeError> {
        let obj = value
            .as_object()
            .ok_or_else(|| err("", "the recipe must be a JSON object"))?;
        if let Some(unknown) = obj.keys().find(|k| !FIELDS.contains(&k.as_str())) {
            return Err(err(
                unknown.as_str(),
                format!("unknown field; known fields are {}", FIELDS.join(", ")),
            ));
        }
        for later in ["calibration", "evaluate"] {
            if obj.contains_key(later) {
                return Err(err(
                    later,
                    "calibration data and evaluation are not supported by this version; \
                     remove the field",
                ));
            }
        }
        let method = match str_field(obj, "method")?.unwrap_or("magnitude") {
            "magnitude" => Method::Magnitude,
            "random" => Method::Random,
            "wanda" | "sparsegpt" => {
                return Err(err(
                    "method",
                    "calibrated methods (wanda, sparsegpt) are not available in this version; \
                     use magnitude or random",
                ))
            }
            other => {
                return Err(err(
                    "method",
                    format!("unknown method '{other}'; use magnitude or random"),
                ))
            }
        };
        let pattern = match str_field(obj, "pattern")?.unwrap_or("unstructured") {
            "unstructured" => Pattern::Unstructured,
            text => parse_nm(text)?,
        };
        let sparsity = match obj.get("sparsity") {
            None | Some(Value::Null) => None,
            Some(v) => Some(
                v.as_f64()
                    .ok_or_else(|| err("sparsity", "must be a number"))?,
            ),
        };
        let sparsity = match (pattern, sparsity) {
            (Pattern::Unstructured, None) => {
                return Err(err(
                    "sparsity",
                    "is required for unstructured pruning (e.g. 0.5)",
                ))
            }
            (Pattern::Unstructured, Some(s)) => {
                if !(0.0..1.0).contains(&s) {
                    return Err(err(
                        "sparsity",
                        format!("{s} is out of range; use a fraction in [0, 1), e.g. 0.5"),
                    ));
                }
                s
            }
            (Pattern::NM { n, m }, given) => {
                let implied = 1.0 - n as f64 / m as f64;
                if let Some(s) = given {
                    if (s - implied).abs() > 1e-9 {
                        return Err(err(
                            "sparsity",
                            format!(
                                "pattern {n}:{m} implies sparsity {implied}, but {s} was given; \
                                 omit sparsity"
                            ),
                        ));
                    }
                }
                implied
            }
        };
        let scope = match str_field(obj, "scope")?.unwrap_or("layer") {
            "layer" => Scope::Layer,
            "global" => Scope::Global,
            "row" => Scope::Row,
            other => {
                return Err(err(
                    "scope",
                    format!("unknown scope '{other}'; use layer, global or row"),
                ))
            }
        };
        if matches!(pattern, Pattern::NM { .. }) && scope != Scope::Layer {
            return Err(err(
                "scope",
                "an N:M pattern chooses within its own groups of M; omit scope",
            ));
        }
        if method == Method::Random && scope != Scope::Layer {
            return Err(err(
                "scope",
                "random masks are drawn per tensor; omit scope",
            ));
        }
        if method == Method::Random && pattern != Pattern::Unstructured {
            return Err(err(
                "pattern",
                "random masks are unstructured; use method magnitude for N:M",
            ));
        }
        let seed = match obj.get("seed") {
            None | Some(Value::Null) => 0,
            Some(v) => v
                .as_u64()
                .ok_or_else(|| err("seed", "must be a non-negative integer"))?,
        };
        let targets = match obj.get("targets") {
            None | Some(Value::Null) => None,
            Some(v) => {
                let list = matchers(v, "targets")?;
                if list.is_empty() {
                    return Err(err(
                        "targets",
                        "must name at least one tensor; omit it for the default targets",
                    ));
                }
                Some(list)
            }
        };
        let ignore = match obj.get("ignore") {
            None | Some(Value::Null) => Vec::new(),
            Some(v) => matchers(v, "ignore")?,
        };
        let ignore_incompatible = match obj.get("ignore_incompatible") {
            None | Some(Value::Null) => false,
            Some(v) => v
                .as_bool()
                .ok_or_else(|| err("ignore_incompatible", "must be true or false"))?,
        };
        Ok(Recipe {
            method,
            sparsity,
            pattern,
            scope,
            seed,
            targets,
            ignore,
            ignore_incompatible,
        })
    }

    /// The recipe with defaults filled in, as recorded with the job.
    pub fn resolved(&self) -> Value {
        let names =
            |list: &[NameMatcher]| -> Vec<String> { list.iter().map(|m| m.text.clone()).collect() };
        json!({
            "method": self.method,
            "sparsity": self.sparsity,
            "pattern": self.pattern.label(),
            "scope": self.scope,
            "seed": self.seed,
            "targets": self.targets.as_deref().map(names),
            "default_targets": self.targets.is_none().then(|| format!("2-D tensors matching re:{DEFAULT_TARGETS}")),
            "ignore": names(&self.ignore),
            "ignore_incompatible": self.ignore_incompatible,
        })
    }

    /// Chooses the targets among `tensors`, and checks that each can be pruned.
    pub fn select<'a, T: TensorLike>(
        &self,
        tensors: &'a [T],
    ) -> Result<Selection<'a, T>, RecipeError> {
        let default = Regex::new(&format!("^(?:{DEFAULT_TARGETS})$")).expect("valid default");
        let mut hits = vec![false; self.targets.as_ref().map_or(0, Vec::len)];
        let mut chosen = Vec::new();
        let mut incompatible = Vec::new();
        for t in tensors {
            let name = t.name();
            let wanted = match &self.targets {
                None => t.shape().len() == 2 && default.is_match(name),
                Some(list) => {
                    let mut any = false;
                    for (i, m) in list.iter().enumerate() {
                        if m.matches(name) {
                            hits[i] = true;
                            any = true;
                        }
                    }
                    any
                }
            };
            if !wanted || self.ignore.iter().any(|m| m.matches(name)) {
                continue;
            }
            if !t.prunable() {
                return Err(err(
                    "targets",
                    format!(
                        "tensor '{name}' has dtype {}, which cannot be pruned (F32, F16, BF16 and \
                         F64 can); add it to ignore",
                        t.dtype_name()
                    ),
                ));
            }
            if let Pattern::NM { m, .. } = self.pattern {
                let cols = t.shape().last().copied().unwrap_or(1);
                if t.shape().is_empty() || cols % m as u64 != 0 {
                    if self.ignore_incompatible {
                        incompatible.push(t);
                        continue;
                    }
                    return Err(err(
                        "pattern",
                        format!(
                            "tensor '{name}' has shape {:?}, whose input dimension is not a \
                             multiple of {m}; add it to ignore or set ignore_incompatible",
                            t.shape()
                        ),
                    ));
                }
            }
            chosen.push(t);
        }
        if let Some(list) = &self.targets {
            if let Some(i) = hits.iter().position(|hit| !hit) {
                return Err(err(
                    format!("targets[{i}]"),
                    format!("'{}' matches no tensor of the model", list[i].text),
                ));
            }
        }
        chosen.sort_by(|a, b| a.name().cmp(b.name()));
        Ok(Selection {
            targets: chosen,
            incompatible,
        })
    }
}

/// What a recipe needs to know of a tensor to select it.
pub trait TensorLike {
    fn name(&self) -> &str;
    fn shape(&self) -> &[u64];
    fn dtype_name(&self) -> &str;
    fn prunable(&self) -> bool;
}

/// The tensors a recipe prunes, in name order, and those it leaves dense because
/// they do not fit the N:M pattern.
#[derive(Debug)]
pub struct Selection<'a, T> {
    pub targets: Vec<&'a T>,
    pub incompatible: Vec<&'a T>,
}

impl<'a, T: TensorLike> Selection<'a, T> {
    /// The names of the targets.
    pub fn names(&self) -> BTreeSet<&'a str> {
        self.targets.iter().map(|t: &&'a T| (*t).name()).collect()
    }
}

fn str_field<'a>(obj: &'a Map<String, Value>, field: &str) -> Result<Option<&'a str>, RecipeError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(err(field, "must be a string")),
    }
}

fn matchers(value: &Value, field: &str) -> Result<Vec<NameMatcher>, RecipeError> {
    let list = value
        .as_array()
        .ok_or_else(|| err(field, "must be an array of tensor names or re: patterns"))?;
    list.iter()
        .enumerate()
        .map(|(i, v)| {
            let f = format!("{field}[{i}]");
            let text = v.as_str().ok_or_else(|| err(&f, "must be a string"))?;
            NameMatcher::parse(&f, text)
        })
        .collect()
}

fn parse_nm(text: &str) -> Result<Pattern, RecipeError> {
    let bad = || {
        err(
            "pattern",
            format!(
                "'{text}' is not a pattern; use unstructured or N:M such as 2:4 (0 < N < M <= 32)"
            ),
        )
    };
    let (n, m) = text.split_once(':').ok_or_else(bad)?;
    let n: usize = n.trim().parse().map_err(|_| bad())?;
    let m: usize = m.trim().parse().map_err(|_| bad())?;
    if n == 0 || n >= m || m > 32 {
        return Err(err(
            "pattern",
            format!("{n}:{m} is out of range; N:M needs 0 < N < M <= 32 (2:4 keeps 2 of every 4)"),
        ));
    }
    Ok(Pattern::NM { n, m })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct T(&'static str, Vec<u64>, &'static str);
    impl TensorLike for T {
        fn name(&self) -> &str {
            self.0
        }
        fn shape(&self) -> &[u64] {
            &self.1
        }
        fn dtype_name(&self) -> &str {
            self.2
        }
        fn prunable(&self) -> bool {
            matches!(self.2, "F32" | "BF16" | "F16" | "F64")
        }
    }

    fn llama() -> Vec<T> {
        vec![
            T("model.embed_tokens.weight", vec![100, 16], "BF16"),
            T("model.layers.0.input_layernorm.weight", vec![16], "BF16"),
            T("model.layers.0.mlp.down_proj.weight", vec![16, 32], "BF16"),
            T(
                "model.layers.0.self_attn.q_proj.weight",
                vec![16, 16],
                "BF16",
            ),
            T("model.layers.1.self_attn.q_proj.bias", vec![16], "BF16"),
            T(
                "model.layers.1.self_attn.q_proj.weight",
                vec![16, 12],
                "BF16",
            ),
            T("lm_head.weight", vec![100, 16], "BF16"),
        ]
    }

    fn parse(v: Value) -> Result<Recipe, RecipeError> {
        Recipe::parse(&v)
    }

    #[test]
    fn defaults_target_decoder_linears_only() {
        let r = parse(json!({"method": "magnitude", "sparsity": 0.5})).unwrap();
        let t = llama();
        let sel = r.select(&t).unwrap();
        let names: Vec<_> = sel.names().into_iter().collect();
        assert_eq!(
            names,
            [
                "model.layers.0.mlp.down_proj.weight",
                "model.layers.0.self_attn.q_proj.weight",
                "model.layers.1.self_attn.q_proj.weight"
            ]
        );
        assert_eq!(r.resolved()["scope"], "layer");
        assert_eq!(r.resolved()["pattern"], "unstructured");
    }

    #[test]
    fn targets_and_ignore() {
        let r = parse(
            json!({"sparsity": 0.5, "targets": ["re:.*q_proj\\.weight", "lm_head.weight"],
            "ignore": ["model.layers.0.self_attn.q_proj.weight", "nothing.matches"]}),
        )
        .unwrap();
        let t = llama();
        let names: Vec<_> = r.select(&t).unwrap().names().into_iter().collect();
        assert_eq!(
            names,
            ["lm_head.weight", "model.layers.1.self_attn.q_proj.weight"]
        );
        let r =
            parse(json!({"sparsity": 0.5, "targets": ["lm_head.weight", "re:nope.*"]})).unwrap();
        let e = r.select(&t).unwrap_err();
        assert_eq!(e.field, "targets[1]");
        // A regex must match the whole name.
        let r = parse(json!({"sparsity": 0.5, "targets": ["re:q_proj"]})).unwrap();
        assert_eq!(r.select(&t).unwrap_err().field, "targets[0]");
    }

    #[test]
    fn nm_pattern_rules() {
        let r = parse(json!({"pattern": "2:4"})).unwrap();
        assert_eq!(r.sparsity, 0.5);
        let t = llama();
        assert_eq!(r.select(&t).unwrap().targets.len(), 3);
        let r = parse(json!({"pattern": "3:8"})).unwrap();
        let e = r.select(&t).unwrap_err();
        assert!(
            e.message.contains("model.layers.1.self_attn.q_proj.weight"),
            "{e}"
        );
        let r = parse(json!({"pattern": "3:8", "ignore_incompatible": true})).unwrap();
        let sel = r.select(&t).unwrap();
        assert_eq!((sel.targets.len(), sel.incompatible.len()), (2, 1));
        for bad in ["4:4", "0:4", "2:33", "x", "2:"] {
            assert_eq!(
                parse(json!({"pattern": bad})).unwrap_err().field,
                "pattern",
                "{bad}"
            );
        }
        assert_eq!(
            parse(json!({"pattern": "2:4", "sparsity": 0.6}))
                .unwrap_err()
                .field,
            "sparsity"
        );
        assert!(parse(json!({"pattern": "2:4", "sparsity": 0.5})).is_ok());
    }

    #[test]
    fn invalid_fields_are_named() {
        let cases = [
            (json!({"sparsity": 1.0}), "sparsity"),
            (json!({"sparsity": -0.1}), "sparsity"),
            (json!({"sparsity": "half"}), "sparsity"),
            (json!({}), "sparsity"),
            (json!({"sparsity": 0.5, "method": "nope"}), "method"),
            (json!({"sparsity": 0.5, "scope": "world"}), "scope"),
            (json!({"sparsity": 0.5, "seed": -1}), "seed"),
            (json!({"sparsity": 0.5, "targets": "x"}), "targets"),
            (json!({"sparsity": 0.5, "targets": []}), "targets"),
            (json!({"sparsity": 0.5, "targets": ["re:("]}), "targets[0]"),
            (json!({"sparsity": 0.5, "ignore": [1]}), "ignore[0]"),
            (json!({"sparsity": 0.5, "colour": "red"}), "colour"),
            (
                json!({"sparsity": 0.5, "method": "random", "scope": "global"}),
                "scope",
            ),
            (json!([1, 2]), ""),
        ];
        for (recipe, field) in cases {
            assert_eq!(parse(recipe.clone()).unwrap_err().field, field, "{recipe}");
        }
    }

    #[test]
    fn unprunable_dtype_is_named() {
        let r = parse(json!({"sparsity": 0.5, "targets": ["ids"]})).unwrap();
        let t = vec![T("ids", vec![4, 4], "I64")];
        let e = r.select(&t).unwrap_err();
        assert!(
            e.message.contains("'ids'") && e.message.contains("I64"),
            "{e}"
        );
    }
}
