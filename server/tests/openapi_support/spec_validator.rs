//! `openapi-spec-validator` (PyPI), pinned, in a venv under the target directory (the pattern of
//! the root crate's `tests/ci_examples.rs`).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common::skip;

/// The pinned version.
pub const VERSION: &str = "0.9.0";

/// The `openapi-spec-validator` command, installed on first use. `None` only when python3 with
/// venv is missing and `RCLAUDE_SKIP_PYTHON=1`; otherwise a missing python3-venv, or a pip that
/// cannot install the package (PyPI unreachable), fails the test and says so.
pub fn command() -> Option<PathBuf> {
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("target dir")
        .join(format!("openapi-spec-validator-{VERSION}"));
    let bin = venv.join("bin/openapi-spec-validator");
    if bin.exists() {
        return Some(bin);
    }
    let venv_ok = Command::new("python3")
        .args(["-c", "import venv, ensurepip"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !venv_ok {
        if skip::opted_out(
            "RCLAUDE_SKIP_PYTHON",
            "OpenAPI document validity test: python3 with venv missing",
        ) {
            return None;
        }
        panic!(
            "validating the OpenAPI document needs python3 with venv (Debian: apt-get install -y \
             python3-venv), or set RCLAUDE_SKIP_PYTHON=1 to skip it"
        );
    }
    let ok = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "python3 -m venv {} failed", venv.display());
    let out = Command::new(venv.join("bin/pip"))
        .args([
            "install",
            "--quiet",
            &format!("openapi-spec-validator=={VERSION}"),
        ])
        .output()
        .expect("run pip");
    if !out.status.success() || !bin.exists() {
        let _ = std::fs::remove_dir_all(&venv);
        panic!(
            "pip install openapi-spec-validator=={VERSION} failed (is PyPI reachable?): {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Some(bin)
}

/// Validates the document in `file` as OpenAPI 3.1.
pub fn validate(bin: &Path, file: &Path) -> Output {
    Command::new(bin)
        .args(["--schema", "3.1", "--validation-errors", "all"])
        .arg(file)
        .output()
        .expect("run openapi-spec-validator")
}
