//! `rclaude init`: write a commented starter `.rclaude.toml`.

use super::GlobalArgs;
use super::context::start_dir;
use crate::error::CliResult;
use crate::session::Repo;
use crate::ui::Ui;

/// Write a commented starter .rclaude.toml at the top of this repository.
///
/// Tasks are picked from what the repository contains (Cargo.toml, package.json,
/// pyproject.toml). An existing file is never overwritten without `--force`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  rclaude init\n  rclaude init --force")]
pub struct Args {
    /// Overwrite an existing .rclaude.toml.
    #[arg(long)]
    pub force: bool,
}

pub async fn run(g: &GlobalArgs, args: Args) -> CliResult {
    let ui = Ui::detect(g.quiet);
    let repo = Repo::discover(&start_dir(g)?)?;
    let path = crate::config::init::write_starter(&repo.root, args.force)?;
    ui.info(format!(
        "Wrote {}. Edit it, commit it, then run `rclaude up`.",
        path.display()
    ));
    Ok(0)
}
