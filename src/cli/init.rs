//! `rclaude init`: write a commented starter `.rclaude.toml`, or one made from the
//! repository's `devcontainer.json`.

use std::path::PathBuf;

use super::GlobalArgs;
use crate::config::ConfigError;
use crate::config::devcontainer;
use crate::error::CliResult;
use crate::session::Repo;
use crate::ui::Ui;

/// Write a commented starter .rclaude.toml at the top of this repository.
///
/// Tasks are picked from what the repository contains (Cargo.toml, package.json,
/// pyproject.toml). With --from-devcontainer, the sandbox, setup and start commands, env and
/// secrets come from .devcontainer/devcontainer.json instead, and what could not be mapped is
/// listed. An existing file is never overwritten without `--force`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    rclaude init\n  \
    rclaude init --force\n  \
    rclaude init --from-devcontainer\n  \
    rclaude init --from-devcontainer .devcontainer/python/devcontainer.json")]
pub struct Args {
    /// Overwrite an existing .rclaude.toml.
    #[arg(long)]
    pub force: bool,
    /// Convert a devcontainer.json (default: .devcontainer/devcontainer.json, then
    /// .devcontainer.json at the top of the repository).
    #[arg(long, value_name = "PATH", num_args = 0..=1)]
    pub from_devcontainer: Option<Option<PathBuf>>,
}

pub async fn run(g: &GlobalArgs, args: Args) -> CliResult {
    let ui = Ui::detect(g.quiet);
    let repo = Repo::discover(&g.start_dir()?)?;
    let Some(source) = args.from_devcontainer else {
        let path = crate::config::init::write_starter(&repo.root, args.force)?;
        ui.info(format!(
            "Wrote {}. Edit it, commit it, then run `rclaude up`.",
            path.display()
        ));
        return Ok(0);
    };
    let source = match source {
        Some(path) => g.start_dir()?.join(path),
        None => devcontainer::DEFAULT_PATHS
            .iter()
            .map(|p| repo.root.join(p))
            .find(|p| p.is_file())
            .ok_or_else(|| ConfigError::NotFound {
                path: repo.root.join(devcontainer::DEFAULT_PATHS[0]),
            })?,
    };
    let import = devcontainer::import_file(&source)?;
    let path = crate::config::init::write_config(&repo.root, &import.toml, args.force)?;
    ui.info(format!(
        "Wrote {} from {}.",
        path.display(),
        source.display()
    ));
    if !import.unmapped.is_empty() {
        ui.warn(format!(
            "not mapped ({}; also listed at the end of the file):",
            import.unmapped.len()
        ));
        for u in &import.unmapped {
            ui.warn(format!("  {u}"));
        }
    }
    ui.info("Review it, commit it, then run `rclaude up`.");
    Ok(0)
}
