//! A steered model written out whole: the base's weights with an adapter's update added, as an
//! HF model directory (the base's other files copied, its shards and index kept). Streamed
//! tensor by tensor: each is read, updated in f32 and written before the next is read, so peak
//! memory is about one tensor, whatever the model's size.

use std::borrow::Cow;
use std::cell::RefCell;
use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype as StDtype, View};
use tch::{Kind, Tensor};

use crate::lora::Adapter;
use crate::weights::{Weights, WeightsError};

#[derive(Debug, thiserror::Error)]
pub enum MaterializeError {
    #[error(transparent)]
    Weights(#[from] WeightsError),
    #[error("the adapter updates `{0}`, which the base model does not have; was it trained on another base?")]
    NoSuchWeight(String),
    #[error("writing {path}: {what}")]
    Write { path: PathBuf, what: String },
    #[error("copying {path}: {source}")]
    Copy { path: PathBuf, source: std::io::Error },
}

/// A tensor that is read (and updated) only when the writer asks for its bytes.
struct Lazy<'a> {
    weights: &'a Weights,
    name: &'a str,
    dtype: StDtype,
    shape: Vec<usize>,
    /// scaling · B A, added in f32.
    delta: Option<(&'a Tensor, &'a Tensor, f64)>,
    failed: &'a RefCell<Option<WeightsError>>,
}

impl Lazy<'_> {
    fn bytes(&self) -> Result<Vec<u8>, WeightsError> {
        let t = self.weights.get_stored(self.name)?;
        let t = match self.delta {
            None => t,
            Some((a, b, scaling)) => {
                let delta = b.to_kind(Kind::Float).matmul(&a.to_kind(Kind::Float)) * scaling;
                (t.to_kind(Kind::Float) + delta).to_kind(t.kind())
            }
        };
        let mut out = vec![0u8; self.data_len()];
        t.contiguous().copy_data_u8(&mut out, t.numel());
        Ok(out)
    }
}

impl View for Lazy<'_> {
    fn dtype(&self) -> StDtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        // The writer cannot take an error here: keep it, write zeros, and fail afterwards.
        match self.bytes() {
            Ok(b) => Cow::Owned(b),
            Err(e) => {
                self.failed.borrow_mut().get_or_insert(e);
                Cow::Owned(vec![0u8; self.data_len()])
            }
        }
    }
    fn data_len(&self) -> usize {
        self.shape.iter().product::<usize>() * self.dtype.size()
    }
}

/// Writes `base` with `adapter`'s update added to every weight it adapts into `out`.
pub fn materialize(base: &Path, adapter: &Adapter, out: &Path) -> Result<(), MaterializeError> {
    let weights = Weights::open(base)?;
    let weight_of = |module: &str| format!("{module}.weight");
    if let Some(module) = adapter.modules.keys().find(|m| !weights.contains(&weight_of(m))) {
        return Err(MaterializeError::NoSuchWeight(weight_of(module)));
    }
    let copy_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| MaterializeError::Copy { path, source }
    };
    for entry in std::fs::read_dir(base).map_err(copy_err(base))?.flatten() {
        let path = entry.path();
        if path.is_file() && path.extension().is_none_or(|e| e != "safetensors") {
            std::fs::copy(&path, out.join(entry.file_name())).map_err(copy_err(&path))?;
        }
    }
    let scaling = adapter.config.scaling();
    for (file, tensors) in weights.by_file() {
        let failed = RefCell::new(None);
        let views: Vec<(&str, Lazy)> = tensors
            .into_iter()
            .map(|(name, dtype, shape)| {
                let module = name.strip_suffix(".weight");
                let delta = module
                    .and_then(|m| adapter.modules.get(m))
                    .map(|(a, b)| (a, b, scaling));
                let view = Lazy {
                    weights: &weights,
                    name,
                    dtype,
                    shape: shape.iter().map(|&d| d as usize).collect(),
                    delta,
                    failed: &failed,
                };
                (name, view)
            })
            .collect();
        let path = out.join(file.file_name().expect("a weights file"));
        // transformers refuses safetensors files that do not say they hold PyTorch tensors.
        let metadata = Some(std::collections::HashMap::from([(
            "format".to_string(),
            "pt".to_string(),
        )]));
        let written = safetensors::tensor::serialize_to_file(views, &metadata, &path);
        if let Some(e) = failed.into_inner() {
            return Err(e.into());
        }
        written.map_err(|e| MaterializeError::Write {
            path,
            what: e.to_string(),
        })?;
    }
    Ok(())
}
