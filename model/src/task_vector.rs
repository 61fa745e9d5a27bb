//! Task vectors of LoRA adapters (SecVecCoder §III): τ = scaling · B A per module. How alike a
//! secure and a vulnerable vector are (Table I: cosine similarity and sign agreement, globally,
//! per module type and per layer), and steering merges W_base + Σ wᵢ τᵢ (Eqs. 2–5) as one
//! adapter whose factors are the inputs' stacked along the rank, so the merge is exact.

use std::collections::{BTreeMap, BTreeSet};

use secvec_artifacts::diagnostics::{Diagnostics, Similarity};
use tch::{Kind, Tensor};

use crate::lora::{Adapter, LoraConfig};

#[derive(Debug, thiserror::Error)]
pub enum TaskVectorError {
    #[error("the adapters were trained on different base models: `{0}` and `{1}`")]
    OtherBase(String, String),
    #[error("module `{module}` is adapted by the {has} adapter but not by the {lacks} one; merge adapters with the same target modules")]
    Modules {
        module: String,
        has: &'static str,
        lacks: &'static str,
    },
    #[error("module `{module}`: the {a} and {b} adapters' updates have different shapes ({sa:?} and {sb:?})")]
    Shape {
        module: String,
        a: &'static str,
        b: &'static str,
        sa: Vec<i64>,
        sb: Vec<i64>,
    },
}

/// A named adapter, for error messages (`secure`, `vulnerable`).
pub struct Named<'a> {
    pub name: &'static str,
    pub adapter: &'a Adapter,
}

impl<'a> Named<'a> {
    /// The secure task vector's adapter, as steering names it.
    pub fn secure(adapter: &'a Adapter) -> Named<'a> {
        Named {
            name: "secure",
            adapter,
        }
    }

    /// The vulnerable task vector's adapter, as steering names it.
    pub fn vulnerable(adapter: &'a Adapter) -> Named<'a> {
        Named {
            name: "vulnerable",
            adapter,
        }
    }
}

/// Checks that two adapters are task vectors of one base over the same modules.
pub fn check_compatible(x: &Named, y: &Named) -> Result<(), TaskVectorError> {
    if x.adapter.base_model != y.adapter.base_model {
        return Err(TaskVectorError::OtherBase(
            x.adapter.base_model.clone(),
            y.adapter.base_model.clone(),
        ));
    }
    for (a, b) in [(x, y), (y, x)] {
        if let Some(module) = a.adapter.modules.keys().find(|m| !b.adapter.modules.contains_key(*m)) {
            return Err(TaskVectorError::Modules {
                module: module.clone(),
                has: a.name,
                lacks: b.name,
            });
        }
    }
    for (module, (a1, b1)) in &x.adapter.modules {
        let (a2, b2) = &y.adapter.modules[module];
        let (s1, s2) = (vec![b1.size()[0], a1.size()[1]], vec![b2.size()[0], a2.size()[1]]);
        if s1 != s2 {
            return Err(TaskVectorError::Shape {
                module: module.clone(),
                a: x.name,
                b: y.name,
                sa: s1,
                sb: s2,
            });
        }
    }
    Ok(())
}

/// Running sums of one scope (all modules, a module type, a layer).
#[derive(Default)]
struct Sums {
    inner: f64,
    norm_x: f64,
    norm_y: f64,
    /// Entries nonzero in both vectors, and those among them whose signs match.
    both: u64,
    agree: u64,
}

impl Sums {
    fn add(&mut self, o: &Sums) {
        self.inner += o.inner;
        self.norm_x += o.norm_x;
        self.norm_y += o.norm_y;
        self.both += o.both;
        self.agree += o.agree;
    }

    fn similarity(&self) -> Similarity {
        let denominator = (self.norm_x * self.norm_y).sqrt();
        Similarity {
            cosine: if denominator > 0.0 {
                self.inner / denominator
            } else {
                0.0
            },
            sign_agreement: if self.both > 0 {
                100.0 * self.agree as f64 / self.both as f64
            } else {
                0.0
            },
            entries: self.both,
        }
    }
}

/// ⟨s₁B₁A₁, s₂B₂A₂⟩_F = s₁s₂ Σ (B₁ᵀB₂) ⊙ (A₁A₂ᵀ), in f64, without forming either update.
fn low_rank_inner(x: (&Tensor, &Tensor, f64), y: (&Tensor, &Tensor, f64)) -> f64 {
    let f = |t: &Tensor| t.to_kind(Kind::Double);
    let (a1, b1, a2, b2) = (f(x.0), f(x.1), f(y.0), f(y.1));
    let bb = b1.tr().matmul(&b2);
    let aa = a1.matmul(&a2.tr());
    (bb * aa).sum(Kind::Double).double_value(&[]) * x.2 * y.2
}

/// Entries of a row block of an update: both updates' blocks fit the L2 caches while their signs
/// are counted, and the block's matmul is big enough to run at speed (2¹⁵ to 2¹⁹ measured).
const SIGN_BLOCK_ENTRIES: i64 = 1 << 19;

/// Entries nonzero in both updates s₁B₁A₁ and s₂B₂A₂ (f32), and those among them whose signs
/// match. Each update is formed a row block at a time and every entry is read once, so the
/// pass costs the two matmuls and one sweep over memory that stays in cache.
fn sign_counts(x: (&Tensor, &Tensor, f64), y: (&Tensor, &Tensor, f64)) -> (u64, u64) {
    if x.2 == 0.0 || y.2 == 0.0 {
        return (0, 0);
    }
    let f = |t: &Tensor| t.to_device(tch::Device::Cpu).to_kind(Kind::Float).contiguous();
    let (a1, b1, a2, b2) = (f(x.0), f(x.1), f(y.0), f(y.1));
    let (rows, cols) = (b1.size()[0], a1.size()[1]);
    let block = (SIGN_BLOCK_ENTRIES / cols.max(1)).max(1);
    let (mut both, mut agree) = (0u64, 0u64);
    let mut r0 = 0;
    while r0 < rows {
        let n = block.min(rows - r0);
        let dx = b1.narrow(0, r0, n).matmul(&a1).contiguous();
        let dy = b2.narrow(0, r0, n).matmul(&a2).contiguous();
        let (b, a) = count_signs(f32_slice(&dx), f32_slice(&dy));
        both += b;
        agree += a;
        r0 += n;
    }
    // A negative scaling flips every sign of its update.
    if (x.2 < 0.0) != (y.2 < 0.0) {
        agree = both - agree;
    }
    (both, agree)
}

/// The entries of a contiguous f32 CPU tensor.
fn f32_slice(t: &Tensor) -> &[f32] {
    assert!(t.kind() == Kind::Float && t.is_contiguous() && t.device() == tch::Device::Cpu);
    // SAFETY: the tensor is a contiguous f32 CPU buffer of numel entries that outlives the
    // borrow of `t`, and nothing writes to it meanwhile.
    unsafe { std::slice::from_raw_parts(t.data_ptr() as *const f32, t.numel()) }
}

/// Pairs nonzero in both slices, and those among them with equal sign bits. The inner loop is
/// branch-free so it vectorises; one thread, because spreading it over the pool measured slower
/// (libtorch's threads still hold the cores after each block's matmul).
fn count_signs(x: &[f32], y: &[f32]) -> (u64, u64) {
    const CHUNK: usize = 1 << 14;
    x.chunks(CHUNK)
        .zip(y.chunks(CHUNK))
        .map(|(x, y)| {
            // On the bits: x << 1 drops the sign, so it is zero exactly for ±0; u32 counters
            // (a chunk is far below 2³²) keep the lanes narrow.
            let (mut both, mut agree) = (0u32, 0u32);
            for (p, q) in x.iter().zip(y) {
                let (p, q) = (p.to_bits(), q.to_bits());
                let nonzero = ((p << 1 != 0) & (q << 1 != 0)) as u32;
                both += nonzero;
                agree += nonzero & (!(p ^ q) >> 31);
            }
            (both as u64, agree as u64)
        })
        .fold((0, 0), |(b1, a1), (b2, a2)| (b1 + b2, a1 + a2))
}

/// Cosine similarity and sign agreement of two adapters' task vectors. Cosines come from the
/// low-rank factors; signs need each module's update, formed a row block at a time, so memory
/// stays at the two adapters and two cache-sized blocks.
pub fn diagnose(x: &Named, y: &Named) -> Result<Diagnostics, TaskVectorError> {
    check_compatible(x, y)?;
    let (sx, sy) = (x.adapter.config.scaling(), y.adapter.config.scaling());
    let mut total = Sums::default();
    let mut by_module: BTreeMap<String, Sums> = BTreeMap::new();
    let mut by_layer: BTreeMap<usize, Sums> = BTreeMap::new();
    let _guard = tch::no_grad_guard();
    for (module, (a1, b1)) in &x.adapter.modules {
        let (a2, b2) = &y.adapter.modules[module];
        let (fx, fy) = ((a1, b1, sx), (a2, b2, sy));
        let (both, agree) = sign_counts(fx, fy);
        let sums = Sums {
            inner: low_rank_inner(fx, fy),
            norm_x: low_rank_inner(fx, fx),
            norm_y: low_rank_inner(fy, fy),
            both,
            agree,
        };
        total.add(&sums);
        by_module.entry(module_type(module).to_string()).or_default().add(&sums);
        if let Some(layer) = layer_of(module) {
            by_layer.entry(layer).or_default().add(&sums);
        }
    }
    Ok(Diagnostics {
        all: total.similarity(),
        by_module: by_module.into_iter().map(|(k, s)| (k, s.similarity())).collect(),
        by_layer: by_layer.into_iter().map(|(k, s)| (k, s.similarity())).collect(),
    })
}

/// `q_proj` of `model.layers.3.self_attn.q_proj`.
pub fn module_type(module: &str) -> &str {
    module.rsplit('.').next().unwrap_or(module)
}

/// 3 of `model.layers.3.self_attn.q_proj`.
pub fn layer_of(module: &str) -> Option<usize> {
    module.split("layers.").nth(1)?.split('.').next()?.parse().ok()
}

/// The adapter whose update is Σ wᵢ τᵢ: every input's factors stacked along the rank with its
/// weight and scaling folded into its B, and scaling 1 (PEFT's `cat` combination). Its rank is
/// the sum of the inputs' ranks; zero-weight terms are left out (all of them zero: the first,
/// with zero B). Factors are in f32 on the CPU.
/// A module some inputs do not adapt takes zero factors from them.
pub fn combine(terms: &[(&Adapter, f64)], base_model: &str) -> Adapter {
    let mut kept: Vec<(&Adapter, f64)> = terms.iter().copied().filter(|(_, w)| *w != 0.0).collect();
    // Every weight zero (θ = 0 under negation): the base itself, as a valid adapter of zeros.
    if kept.is_empty() {
        kept.extend(terms.first().map(|(a, _)| (*a, 0.0)));
    }
    let terms = kept;
    let r: i64 = terms.iter().map(|(a, _)| a.config.r).sum();
    let names: BTreeSet<&String> = terms.iter().flat_map(|(a, _)| a.modules.keys()).collect();
    let cpu = |t: &Tensor| t.to_device(tch::Device::Cpu).to_kind(Kind::Float);
    let mut modules = BTreeMap::new();
    for name in names {
        let (any_a, any_b) = terms
            .iter()
            .find_map(|(a, _)| a.modules.get(name))
            .expect("a module some term adapts");
        let (out, inp) = (any_b.size()[0], any_a.size()[1]);
        let (mut aa, mut bb) = (Vec::new(), Vec::new());
        for (adapter, weight) in &terms {
            let k = adapter.config.r;
            match adapter.modules.get(name) {
                Some((a, b)) => {
                    aa.push(cpu(a));
                    bb.push(cpu(b) * (adapter.config.scaling() * weight));
                }
                None => {
                    aa.push(Tensor::zeros([k, inp], (Kind::Float, tch::Device::Cpu)));
                    bb.push(Tensor::zeros([out, k], (Kind::Float, tch::Device::Cpu)));
                }
            }
        }
        modules.insert(name.clone(), (Tensor::cat(&aa, 0), Tensor::cat(&bb, 1)));
    }
    let mut targets: Vec<String> = Vec::new();
    for (a, _) in &terms {
        for t in &a.config.target_modules {
            if !targets.contains(t) {
                targets.push(t.clone());
            }
        }
    }
    Adapter {
        config: LoraConfig {
            r,
            alpha: r as f64,
            dropout: terms.last().map_or(0.0, |(a, _)| a.config.dropout),
            target_modules: targets,
        },
        base_model: base_model.to_string(),
        modules,
    }
}
