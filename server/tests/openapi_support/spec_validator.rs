//! `openapi-spec-validator` (PyPI), pinned, in a venv under the target directory
//! (`tests/support/pip_tool.rs`, shared with the root crate's `tests/ci_examples.rs`).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common::skip;

#[path = "../../../tests/support/pip_tool.rs"]
mod pip_tool;

/// The pinned version.
pub const VERSION: &str = "0.9.0";

/// The `openapi-spec-validator` command, installed on first use. `None` only when python3 with
/// venv is missing and `RCLAUDE_SKIP_PYTHON=1`; otherwise a missing python3-venv, or a pip that
/// cannot install the package (PyPI unreachable), fails the test and says so.
pub fn command() -> Option<PathBuf> {
    match pip_tool::install(
        env!("CARGO_TARGET_TMPDIR"),
        "openapi-spec-validator",
        VERSION,
        "openapi-spec-validator",
    ) {
        Ok(bin) => Some(bin),
        Err(())
            if skip::opted_out(
                "RCLAUDE_SKIP_PYTHON",
                "OpenAPI document validity test: python3 with venv missing",
            ) =>
        {
            None
        }
        Err(()) => panic!(
            "validating the OpenAPI document needs python3 with venv (Debian: apt-get install -y \
             python3-venv), or set RCLAUDE_SKIP_PYTHON=1 to skip it"
        ),
    }
}

/// Validates the document in `file` as OpenAPI 3.1.
pub fn validate(bin: &Path, file: &Path) -> Output {
    Command::new(bin)
        .args(["--schema", "3.1", "--validation-errors", "all"])
        .arg(file)
        .output()
        .expect("run openapi-spec-validator")
}
