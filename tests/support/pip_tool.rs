//! A PyPI command-line tool, pinned, in its own venv under the cargo target directory, installed
//! on first use (shared by the tests that validate against Python tools).

use std::path::{Path, PathBuf};
use std::process::Command;

/// The `bin` command of `package==version`, installing it into `<target>/<package>-<version>`.
/// `Err` only when python3 with venv is missing (the caller decides whether that may be skipped);
/// a venv or pip that fails panics, saying so.
pub fn install(
    target_tmpdir: &str,
    package: &str,
    version: &str,
    bin: &str,
) -> Result<PathBuf, ()> {
    let venv = Path::new(target_tmpdir)
        .parent()
        .expect("target dir")
        .join(format!("{package}-{version}"));
    let cmd = venv.join("bin").join(bin);
    if cmd.exists() {
        return Ok(cmd);
    }
    let venv_ok = Command::new("python3")
        .args(["-c", "import venv, ensurepip"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !venv_ok {
        return Err(());
    }
    let ok = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "python3 -m venv {} failed", venv.display());
    let out = Command::new(venv.join("bin/pip"))
        .args(["install", "--quiet", &format!("{package}=={version}")])
        .output()
        .expect("run pip");
    if !out.status.success() || !cmd.exists() {
        let _ = std::fs::remove_dir_all(&venv);
        panic!(
            "pip install {package}=={version} failed (is PyPI reachable?): {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(cmd)
}
