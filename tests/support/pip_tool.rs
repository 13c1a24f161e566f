//! A PyPI command-line tool, pinned, in its own venv under the cargo target directory, installed
//! on first use (shared by the tests that validate against Python tools).

use std::path::{Path, PathBuf};
use std::process::Command;

/// The `bin` command of `package==version`, installing it into `<target>/<package>-<version>`.
/// `Err` only when python3 with venv is missing (the caller decides whether that may be skipped);
/// a venv or pip that fails panics, saying so.
///
/// Tests in one binary and in several binaries ask at once: an exclusive lock on
/// `<venv>.lock` makes one of them install while the others wait, and the venv counts as
/// installed only once its `.installed` marker exists (a half-made venv from a killed run is
/// made again).
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
    let marker = venv.join(".installed");
    if marker.exists() {
        return Ok(cmd);
    }
    let venv_ok = Command::new("python3")
        .args(["-c", "import venv, ensurepip"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !venv_ok {
        return Err(());
    }
    let lock = std::fs::File::create(venv.with_file_name(format!("{package}-{version}.lock")))
        .expect("create the venv lock");
    // flock(2) (std's File::lock needs Rust 1.89; the crate supports 1.88). Released when
    // `lock` is closed, also if this process dies.
    // SAFETY: flock on a file descriptor this function owns.
    let rc = unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&lock), libc::LOCK_EX) };
    assert_eq!(rc, 0, "lock the venv: {}", std::io::Error::last_os_error());
    if marker.exists() {
        return Ok(cmd);
    }
    if venv.exists() {
        std::fs::remove_dir_all(&venv).expect("remove a half-made venv");
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
    std::fs::write(&marker, "").expect("mark the venv installed");
    Ok(cmd)
}
