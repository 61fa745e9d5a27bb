//! A stage kind: its typed params, what it takes and makes, and its run; and the registry of
//! the kinds a binary knows.

use std::marker::PhantomData;
use std::sync::Arc;

use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::{InputSlot, ParamError, Resources, ResultFields, StageContext, Upstreams};

/// A stage kind: a pure function from its input artifacts and typed params to one output tree.
pub trait Stage: Send + Sync + 'static {
    type Params: DeserializeOwned + Serialize + JsonSchema;
    const KIND: &'static str;
    /// Bump when the same inputs and params would give different output, to invalidate caches.
    const VERSION: u32;
    const DESCRIPTION: &'static str;
    /// Params that change only how fast the stage runs, not what it writes: left out of its
    /// cache key, so that changing them reruns nothing.
    const SPEED_PARAMS: &'static [&'static str] = &[];
    /// Whether the stage reads the names of the stages its inputs come from
    /// ([`InputArtifact::stage`]); they then join its cache key.
    const READS_UPSTREAM_NAMES: bool = false;
    /// Whether the run needs libtorch: then it runs in `secvec-worker` (see [`crate::worker`]),
    /// which binds it with [`Registry::bind`].
    const LIBTORCH: bool = false;
    fn inputs() -> Vec<InputSlot>;
    /// Tags describing what the output tree holds, matched against downstream slots.
    fn output_tags() -> Vec<&'static str>;
    fn resources(_params: &Self::Params) -> Resources {
        Resources::ONE_CPU
    }
    /// What this machine decides about the stage, settled at plan time: `auto` params are
    /// resolved in place, and the returned identity of the tools and environment the stage
    /// depends on (interpreters, packages, tool versions, device model) joins its cache key and
    /// provenance. `Null` when nothing outside the stage's inputs matters.
    fn environment(_params: &mut Self::Params) -> anyhow::Result<serde_json::Value> {
        Ok(serde_json::Value::Null)
    }
    /// The fields of the `results.json` rows the stage writes, for kinds whose output carries
    /// `results`: what the stages downstream may name.
    fn result_fields(_params: &Self::Params) -> Option<ResultFields> {
        None
    }
    /// Checks params against what the upstream stages will give, at plan time, so that a typo
    /// is found before the stages upstream of it have run.
    fn check(_params: &Self::Params, _upstream: &Upstreams) -> Result<(), ParamError> {
        Ok(())
    }
    /// Writes the stage's output. A [`Stage::LIBTORCH`] kind leaves this out: its run is linked
    /// only into `secvec-worker`, and `secvec` sends its jobs there.
    fn run(&self, _params: &Self::Params, _ctx: &StageContext) -> anyhow::Result<()> {
        Err(RunsInWorker(Self::KIND).into())
    }
}

/// A libtorch kind's job reached a binary that does not link its run.
#[derive(Debug, thiserror::Error)]
#[error("stage kind `{0}` runs in secvec-worker, which this binary is not")]
pub struct RunsInWorker(pub &'static str);

/// Object-safe face of [`Stage`], which the engine works with.
pub trait DynStage: Send + Sync {
    fn kind(&self) -> &'static str;
    fn version(&self) -> u32;
    fn description(&self) -> &'static str;
    fn speed_params(&self) -> &'static [&'static str];
    fn reads_upstream_names(&self) -> bool;
    fn libtorch(&self) -> bool;
    fn inputs(&self) -> Vec<InputSlot>;
    fn output_tags(&self) -> Vec<&'static str>;
    fn params_schema(&self, generator: &mut SchemaGenerator) -> Schema;
    fn param_names(&self) -> Vec<String>;
    /// Checks params and returns them with defaults filled in.
    fn check_params(
        &self,
        params: serde_yaml::Value,
    ) -> Result<serde_json::Value, serde_path_to_error::Error<serde_yaml::Error>>;
    /// Settles checked params on this machine (see [`Stage::environment`]).
    fn settle(&self, params: &serde_json::Value) -> anyhow::Result<Settled>;
    /// See [`Stage::result_fields`]; `params` as [`DynStage::settle`] returned them.
    fn result_fields(&self, params: &serde_json::Value) -> Option<ResultFields>;
    /// See [`Stage::check`].
    fn check(&self, params: &serde_json::Value, upstream: &Upstreams) -> Result<(), ParamError>;
    fn run(&self, params: &serde_json::Value, ctx: &StageContext) -> anyhow::Result<()>;
}

impl<S: Stage> DynStage for S {
    fn kind(&self) -> &'static str {
        S::KIND
    }
    fn version(&self) -> u32 {
        S::VERSION
    }
    fn description(&self) -> &'static str {
        S::DESCRIPTION
    }
    fn speed_params(&self) -> &'static [&'static str] {
        S::SPEED_PARAMS
    }
    fn reads_upstream_names(&self) -> bool {
        S::READS_UPSTREAM_NAMES
    }
    fn libtorch(&self) -> bool {
        S::LIBTORCH
    }
    fn inputs(&self) -> Vec<InputSlot> {
        S::inputs()
    }
    fn output_tags(&self) -> Vec<&'static str> {
        S::output_tags()
    }
    fn params_schema(&self, generator: &mut SchemaGenerator) -> Schema {
        generator.subschema_for::<S::Params>()
    }
    fn param_names(&self) -> Vec<String> {
        param_names::<S::Params>()
    }
    fn check_params(
        &self,
        params: serde_yaml::Value,
    ) -> Result<serde_json::Value, serde_path_to_error::Error<serde_yaml::Error>> {
        let params = if params.is_null() {
            serde_yaml::Value::Mapping(Default::default())
        } else {
            params
        };
        let typed: S::Params = serde_path_to_error::deserialize(params)?;
        Ok(serde_json::to_value(&typed).expect("params serialise to JSON"))
    }
    fn settle(&self, params: &serde_json::Value) -> anyhow::Result<Settled> {
        let mut typed: S::Params = serde_json::from_value(params.clone())?;
        let environment = S::environment(&mut typed)?;
        Ok(Settled {
            resources: S::resources(&typed),
            params: serde_json::to_value(&typed).expect("params serialise to JSON"),
            environment,
        })
    }
    fn result_fields(&self, params: &serde_json::Value) -> Option<ResultFields> {
        S::result_fields(&serde_json::from_value(params.clone()).ok()?)
    }
    fn check(&self, params: &serde_json::Value, upstream: &Upstreams) -> Result<(), ParamError> {
        let typed: S::Params = serde_json::from_value(params.clone())
            .map_err(|e| ParamError::new("", format!("resolved params of {} no longer parse: {e}", S::KIND)))?;
        S::check(&typed, upstream)
    }
    fn run(&self, params: &serde_json::Value, ctx: &StageContext) -> anyhow::Result<()> {
        let typed: S::Params = serde_json::from_value(params.clone())
            .map_err(|e| anyhow::anyhow!("resolved params of {} no longer parse: {e}", S::KIND))?;
        Stage::run(self, &typed, ctx)
    }
}

/// A stage's params as this machine runs them.
#[derive(Clone, Debug)]
pub struct Settled {
    /// With `auto` values resolved.
    pub params: serde_json::Value,
    pub resources: Resources,
    /// The identity of the tools and environment the stage depends on (`Null`: none).
    pub environment: serde_json::Value,
}

/// The stage kinds a binary knows.
#[derive(Default, Clone)]
pub struct Registry {
    kinds: Vec<Arc<dyn DynStage>>,
}

impl Registry {
    pub fn with<S: Stage>(mut self, stage: S) -> Self {
        self.kinds.push(Arc::new(stage));
        self
    }
    /// Links the run of libtorch kind `S` (what `secvec-worker` does for each such kind).
    pub fn bind<S: Stage>(mut self, run: RunFn<S::Params>) -> Self {
        let bound: Arc<dyn DynStage> = Arc::new(Bound::<S> { run, kind: PhantomData });
        match self.kinds.iter_mut().find(|k| k.kind() == S::KIND) {
            Some(slot) => *slot = bound,
            None => self.kinds.push(bound),
        }
        self
    }
    pub fn get(&self, kind: &str) -> Option<Arc<dyn DynStage>> {
        self.kinds.iter().find(|k| k.kind() == kind).cloned()
    }
    pub fn kinds(&self) -> impl Iterator<Item = &Arc<dyn DynStage>> {
        self.kinds.iter()
    }
}

/// A libtorch kind's run, as `secvec-worker` links it.
pub type RunFn<P> = fn(&P, &StageContext) -> anyhow::Result<()>;

/// Kind `S` with its run linked in.
struct Bound<S: Stage> {
    run: RunFn<S::Params>,
    kind: PhantomData<fn() -> S>,
}

impl<S: Stage> Stage for Bound<S> {
    type Params = S::Params;
    const KIND: &'static str = S::KIND;
    const VERSION: u32 = S::VERSION;
    const DESCRIPTION: &'static str = S::DESCRIPTION;
    const SPEED_PARAMS: &'static [&'static str] = S::SPEED_PARAMS;
    const READS_UPSTREAM_NAMES: bool = S::READS_UPSTREAM_NAMES;
    const LIBTORCH: bool = S::LIBTORCH;
    fn inputs() -> Vec<InputSlot> {
        S::inputs()
    }
    fn output_tags() -> Vec<&'static str> {
        S::output_tags()
    }
    fn resources(params: &Self::Params) -> Resources {
        S::resources(params)
    }
    fn environment(params: &mut Self::Params) -> anyhow::Result<serde_json::Value> {
        S::environment(params)
    }
    fn result_fields(params: &Self::Params) -> Option<ResultFields> {
        S::result_fields(params)
    }
    fn check(params: &Self::Params, upstream: &Upstreams) -> Result<(), ParamError> {
        S::check(params, upstream)
    }
    fn run(&self, params: &Self::Params, ctx: &StageContext) -> anyhow::Result<()> {
        (self.run)(params, ctx)
    }
}

/// Top-level field names of a params type, used to apply manifest defaults.
fn param_names<P: JsonSchema>() -> Vec<String> {
    let schema = schemars::schema_for!(P);
    schema
        .get("properties")
        .and_then(|p| p.as_object())
        .map(|p| p.keys().cloned().collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::atomic::AtomicBool;

    use serde::Deserialize;

    use super::*;

    #[derive(Deserialize, Serialize, JsonSchema)]
    struct TinyParams {
        #[serde(default)]
        n: u32,
    }

    struct Tiny;

    impl Stage for Tiny {
        type Params = TinyParams;
        const KIND: &'static str = "tiny";
        const VERSION: u32 = 3;
        const DESCRIPTION: &'static str = "a libtorch kind";
        const SPEED_PARAMS: &'static [&'static str] = &["n"];
        const LIBTORCH: bool = true;
        fn inputs() -> Vec<InputSlot> {
            Vec::new()
        }
        fn output_tags() -> Vec<&'static str> {
            vec!["results"]
        }
        fn resources(p: &TinyParams) -> Resources {
            Resources::cpus(p.n)
        }
        fn result_fields(_: &TinyParams) -> Option<ResultFields> {
            Some(ResultFields::rows(["n"]))
        }
    }

    struct Quiet;

    impl crate::ProgressSink for Quiet {
        fn progress(&self, _: u64, _: u64) {}
        fn message(&self, _: &str) {}
        fn notice(&self, _: &str) {}
    }

    fn tiny_run(p: &TinyParams, ctx: &StageContext) -> anyhow::Result<()> {
        Ok(ctx.write("n", p.n.to_string())?)
    }

    #[test]
    fn a_libtorch_kind_runs_only_where_its_run_is_bound_and_binding_changes_nothing_else() {
        let dir = std::env::temp_dir().join(format!("secvec-stage-bind-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ctx = StageContext::new(
            BTreeMap::new(),
            dir.clone(),
            dir.join("scratch"),
            secvec_cache::Memo::new(dir.join("memo")),
            Arc::new(Quiet),
            Arc::new(AtomicBool::new(false)),
        );
        let params = serde_json::json!({"n": 7});
        let unbound = Registry::default().with(Tiny).get("tiny").unwrap();
        let err = unbound.run(&params, &ctx).unwrap_err();
        assert!(err.downcast_ref::<RunsInWorker>().is_some(), "{err}");
        assert!(!dir.join("n").exists());

        let registry = Registry::default().with(Tiny).bind::<Tiny>(tiny_run);
        assert_eq!(registry.kinds().count(), 1);
        let bound = registry.get("tiny").unwrap();
        bound.run(&params, &ctx).unwrap();
        assert_eq!(std::fs::read_to_string(dir.join("n")).unwrap(), "7");
        let describe = |k: &Arc<dyn DynStage>| {
            (
                k.version(),
                k.description(),
                k.speed_params(),
                k.libtorch(),
                k.output_tags(),
                k.param_names(),
                k.settle(&params).unwrap().resources,
                k.result_fields(&params).map(|f| f.rows),
            )
        };
        assert_eq!(describe(&bound), describe(&unbound));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
