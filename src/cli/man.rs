//! `rclaude man`: manual pages generated from the command definitions (clap_mangen).

use std::path::PathBuf;

use clap::CommandFactory;

use super::GlobalArgs;
use crate::error::{CliError, CliResult};

/// Print the rclaude(1) manual page, or write one page per command into a directory.
///
/// The pages are generated from the same definitions as `--help`, so they always match the
/// binary.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    rclaude man | man -l -\n  \
    sudo rclaude man --dir /usr/local/share/man/man1 && man rclaude-up")]
pub struct Args {
    /// Write rclaude.1 and rclaude-<command>.1 for every command into DIR instead.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

pub async fn run(_g: &GlobalArgs, args: Args) -> CliResult {
    let cmd = super::Cli::command();
    match args.dir {
        None => {
            let mut page = Vec::new();
            clap_mangen::Man::new(cmd)
                .render(&mut page)
                .map_err(|e| CliError::io("rendering the manual page", e))?;
            super::output::write_stdout(&page)
        }
        Some(dir) => {
            std::fs::create_dir_all(&dir)
                .map_err(|e| CliError::io(format!("creating {}", dir.display()), e))?;
            clap_mangen::generate_to(cmd, &dir).map_err(|e| {
                CliError::io(format!("writing manual pages to {}", dir.display()), e)
            })?;
            Ok(0)
        }
    }
}
