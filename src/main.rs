//! `secvec`: reads the command line and hands it to its command (`commands/`).

#[macro_use]
mod output;
mod cli;
mod commands;
mod dag;
mod exit;
mod runs;
mod show;

use std::process::ExitCode;

use anyhow::Result;
use clap::Parser;
use secvec_engine::ManifestError;

use crate::cli::{Cli, Command};
use crate::commands::Globals;
use crate::exit::Exit;
use crate::output::StdoutClosed;

fn main() -> ExitCode {
    match dispatch(Cli::parse()) {
        Ok(exit) => exit.into(),
        Err(err) if err.is::<StdoutClosed>() => Exit::Success.into(),
        Err(err) => {
            if let Some(m) = err.downcast_ref::<ManifestError>() {
                eprintln!("error: {m}");
            } else {
                eprintln!("error: {err:#}");
            }
            Exit::Error.into()
        }
    }
}

fn dispatch(cli: Cli) -> Result<Exit> {
    let globals = Globals {
        registry: secvec_stages::registry(),
        cache: cli.cache,
        out: cli.out,
    };
    match cli.command {
        Command::Run(args) => commands::run::run(args, &globals),
        Command::RunStage(args) => commands::run_stage::run(args, &globals),
        Command::Plan(args) => commands::plan::run(args, &globals),
        Command::Config(args) => commands::config::run(args, &globals),
        Command::Runs(args) => commands::runs::run(args, &globals),
        Command::Diff(args) => commands::diff::run(args, &globals),
        Command::Compare(args) => commands::compare::run(args, &globals),
        Command::Dag(args) => commands::dag::run(args, &globals),
        Command::Schema(args) => commands::schema::run(args, &globals),
        Command::Kinds(args) => commands::kinds::run(args, &globals),
        Command::Show(args) => commands::show::run(args, &globals),
        Command::Doctor => commands::doctor::run(),
        Command::Digest(args) => commands::digest::run(args),
        Command::Cache(command) => commands::cache::run(command, &globals),
        Command::Serve(args) => commands::serve::run(args),
        Command::Completions(args) => commands::completions::run(args),
    }
}
