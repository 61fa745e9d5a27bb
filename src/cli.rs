//! The command line: the global options and the commands, each with the arguments its module
//! in `commands/` defines.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::commands;

#[derive(Parser)]
#[command(
    name = "secvec",
    version,
    about = "Reproduce and extend secure-code-generation papers from a YAML manifest"
)]
pub struct Cli {
    /// Cache directory.
    #[arg(long, global = true, env = "SECVEC_CACHE", default_value = ".secvec")]
    pub cache: PathBuf,
    /// Where `<manifest>/<stage>` links to outputs are kept.
    #[arg(long, global = true, env = "SECVEC_OUT", default_value = "out")]
    pub out: PathBuf,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run a manifest: stale stages execute, cached ones are reused.
    Run(commands::run::RunArgs),
    /// Run one stage from its job description (what `run --executor slurm` submits): commit its
    /// output to the job's cache and, with `--result`, write how it ended. The executor that
    /// made the job holds the key's lock and publishes the output.
    RunStage(commands::run_stage::RunStageArgs),
    /// Show what `run` would do and why each stage would run.
    Plan(commands::plan::PlanArgs),
    /// Print the manifest as overlays and `--set`s compose it, without running; with
    /// `--resolved`, every concrete stage (matrix variants too) with its params as the stage
    /// receives them (defaults and kind defaults applied).
    Config(commands::config::ConfigArgs),
    /// List the recorded runs, oldest first: id, manifest, overlays and `--set`s, stages ran and
    /// cached, exit.
    Runs(commands::runs::RunsArgs),
    /// The params that differ between two runs (in any stage, and the overlays and `--set`s),
    /// and the metrics of their results that moved.
    Diff(commands::diff::DiffArgs),
    /// Chosen metrics of several runs, or of every matrix variant of a stage, in one table.
    Compare(commands::compare::CompareArgs),
    /// Print a manifest's graph of stages without running it.
    Dag(commands::dag::DagArgs),
    /// Print the JSON Schema of manifests (what `schema/manifest.schema.json` holds).
    Schema(commands::schema::SchemaArgs),
    /// List the stage kinds with their inputs; with a kind, also its params (types, defaults,
    /// docs).
    Kinds(commands::kinds::KindsArgs),
    /// Show what a stage's last run published: outputs, key, inputs, params, results.
    Show(commands::show::ShowArgs),
    /// Show the tools this machine offers the stages (Python, oracles, sandbox, cgroups,
    /// libtorch, CUDA) and what is missing.
    Doctor,
    /// Print the content digest of a file or directory, as the cache computes it.
    Digest(commands::digest::DigestArgs),
    /// Cache maintenance.
    #[command(subcommand)]
    Cache(commands::cache::CacheCommand),
    /// Serve a model as an OpenAI-compatible endpoint (`/v1/chat/completions`,
    /// `/v1/completions`, `/v1/models`, `/metrics`) until interrupted; concurrent requests
    /// decode in one batch.
    Serve(commands::serve::ServeArgs),
    /// Print the completion script of a shell (bash, zsh, fish, elvish, powershell).
    Completions(commands::completions::CompletionsArgs),
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn every_command_and_argument_says_what_it_is_for() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in cmd.get_arguments() {
                let builtin = ["help", "version"].contains(&arg.get_id().as_str());
                if !builtin && arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("{path} {}", arg.get_id()));
                }
            }
            for sub in cmd.get_subcommands() {
                if sub.get_about().is_none() && sub.get_name() != "help" {
                    missing.push(format!("{path} {}", sub.get_name()));
                }
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        walk(&super::Cli::command(), "secvec", &mut missing);
        assert!(missing.is_empty(), "no help text: {missing:?}");
    }
}
