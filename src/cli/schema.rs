//! `rclaude schema`: print the JSON Schema of `.rclaude.toml`.

use super::GlobalArgs;
use crate::error::CliResult;

/// Print the JSON Schema of .rclaude.toml (for editors such as Taplo / Even Better TOML).
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  rclaude schema > .rclaude.schema.json")]
pub struct Args {}

pub async fn run(_g: &GlobalArgs, _args: Args) -> CliResult {
    let mut text = crate::config::schema::json_schema_pretty();
    text.push('\n');
    super::output::write_stdout(text.as_bytes())
}
