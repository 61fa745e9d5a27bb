//! The stage API: what a stage kind declares (params, input slots, output tags, resources) and
//! the context it runs in, and what it checks before anything runs. Kinds, the artifact types they pass and the libraries below them
//! depend on this crate alone; the engine that plans, caches and runs stages sits above it.

mod check;
mod context;
mod device;
pub mod home;
mod kind;
mod resources;
mod slot;
pub mod worker;

pub use check::{did_you_mean, ParamError, ResultFields, Upstream, Upstreams};
pub use context::{Cancelled, InputArtifact, ProgressSink, StageContext, UnboundInput};
pub use device::{Device, DeviceError, Dtype};
pub use kind::{DynStage, Registry, RunFn, RunsInWorker, Settled, Stage};
pub use resources::Resources;
pub use slot::{InputSlot, FILES};
