//! `rclaude completions SHELL`: the shell script that registers rclaude's completions.
//!
//! Completions are dynamic (clap_complete's environment-activated engine): the registered
//! script calls `rclaude` back on every Tab with `RCLAUDE_COMPLETE=<shell>`, so task names come
//! from the `.rclaude.toml` of the repository the shell is in, not from a list frozen at
//! install time. [`complete_if_asked`] answers those calls before any other work.

use clap::CommandFactory;
use clap_complete::env::{CompleteEnv, Shells};

use super::GlobalArgs;
use crate::error::{CliError, CliResult};

/// The environment variable that switches the binary into completion mode.
pub const COMPLETE_VAR: &str = "RCLAUDE_COMPLETE";

/// Print the script that makes your shell complete rclaude's commands, flags and task names.
///
/// Add it to your shell's start-up file (see the examples). The script calls `rclaude` to
/// complete, so task names follow the `.rclaude.toml` of the repository you are in.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    echo 'source <(rclaude completions bash)' >> ~/.bashrc\n  \
    echo 'source <(rclaude completions zsh)' >> ~/.zshrc\n  \
    rclaude completions fish > ~/.config/fish/completions/rclaude.fish\n  \
    rclaude completions powershell >> $PROFILE")]
pub struct Args {
    /// The shell to register completions for.
    pub shell: Shell,
}

/// Shells with completion support.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
    Powershell,
    Elvish,
}

impl Shell {
    fn name(self) -> &'static str {
        match self {
            Shell::Bash => "bash",
            Shell::Zsh => "zsh",
            Shell::Fish => "fish",
            Shell::Powershell => "powershell",
            Shell::Elvish => "elvish",
        }
    }
}

pub async fn run(_g: &GlobalArgs, args: Args) -> CliResult {
    let shells = Shells::builtins();
    let completer = shells
        .completer(args.shell.name())
        .ok_or_else(|| CliError::internal(format!("no completer for {}", args.shell.name())))?;
    let mut script = Vec::new();
    completer
        .write_registration(COMPLETE_VAR, "rclaude", "rclaude", "rclaude", &mut script)
        .map_err(|e| CliError::io("writing the completion script", e))?;
    super::output::write_stdout(&script)
}

/// When the shell asked for completions (`RCLAUDE_COMPLETE` set), print them and exit.
pub fn complete_if_asked() {
    CompleteEnv::with_factory(super::Cli::command)
        .var(COMPLETE_VAR)
        .complete();
}
