//! `secvec completions`: the shell's completion script for every command and option.

use crate::exit::Exit;
use anyhow::Result;
use clap::CommandFactory;
use clap_complete::Shell;

#[derive(clap::Args)]
pub struct CompletionsArgs {
    /// `bash`, `zsh`, `fish`, `elvish` or `powershell`. Bash: `source <(secvec completions
    /// bash)` in ~/.bashrc; zsh: write it as `_secvec` into a folder on `$fpath`; fish: write it
    /// to ~/.config/fish/completions/secvec.fish.
    pub shell: Shell,
}

pub fn run(args: CompletionsArgs) -> Result<Exit> {
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut crate::cli::Cli::command(), "secvec", &mut script);
    out!("{}", String::from_utf8_lossy(&script).trim_end());
    Ok(Exit::Success)
}
