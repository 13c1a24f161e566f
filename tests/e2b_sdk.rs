//! E2B's own Python SDK (debug mode) against `rclaude agent` on 127.0.0.1:49983.
//!
//! Needs `python3` with venv; the SDK is installed once into `<target>/e2b-venv` from PyPI.
//! Without them, or when the install fails, the test fails unless `RCLAUDE_SKIP_PYTHON=1`. Uses the fixed port 49983, so only one run at a time.

#[path = "support/agent.rs"]
mod agent_support;
#[path = "support/skip.rs"]
mod skip;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use agent_support::TestAgent;

/// The SDK version the agent is checked against (the reference was written from it).
const E2B_VERSION: &str = "2.63.0";

fn venv_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("e2b-venv")
}

fn sdk_installed(python: &Path) -> bool {
    Command::new(python)
        .args([
            "-c",
            &format!(
                "import importlib.metadata as m, sys; sys.exit(m.version('e2b') != '{E2B_VERSION}')"
            ),
        ])
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// The venv's python with the SDK installed, or `None` to skip.
fn ensure_sdk() -> Option<PathBuf> {
    let python_ok = Command::new("python3")
        .args(["-c", "import venv, ensurepip"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !python_ok {
        if skip::opted_out(
            "RCLAUDE_SKIP_PYTHON",
            "E2B SDK test: python3 with venv/ensurepip missing",
        ) {
            return None;
        }
        panic!(
            "the E2B SDK test needs python3 with venv (Debian: apt-get install -y python3-venv), \
             or set RCLAUDE_SKIP_PYTHON=1 to skip it"
        );
    }
    let venv = venv_dir();
    let python = venv.join("bin/python");
    if python.exists() && sdk_installed(&python) {
        return Some(python);
    }
    let status = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .status()
        .expect("run python3 -m venv");
    assert!(
        status.success(),
        "python3 -m venv {} failed",
        venv.display()
    );
    let out = Command::new(venv.join("bin/pip"))
        .args(["install", "--quiet", &format!("e2b=={E2B_VERSION}")])
        .output()
        .expect("run pip");
    if !out.status.success() {
        let msg = format!(
            "pip install e2b=={E2B_VERSION} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        if skip::opted_out("RCLAUDE_SKIP_PYTHON", &format!("E2B SDK test: {msg}")) {
            return None;
        }
        panic!("{msg}\nset RCLAUDE_SKIP_PYTHON=1 to skip this test without network access");
    }
    assert!(
        sdk_installed(&python),
        "e2b {E2B_VERSION} not importable after install"
    );
    Some(python)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2b_python_sdk_accepts_the_agent() {
    let Some(python) = tokio::task::spawn_blocking(ensure_sdk).await.unwrap() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // Debug mode: no token, fixed address.
    let agent = TestAgent::start_in(dir.path(), |o| {
        o.listen = "127.0.0.1:49983".parse().unwrap();
        o.token = None;
    })
    .await;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2b_sdk/sdk_smoke.py");
    let run = tokio::process::Command::new(&python)
        .arg(&script)
        .env("ROOT", &agent.root)
        .env_remove("E2B_API_URL")
        .env_remove("E2B_SANDBOX_URL")
        .env_remove("E2B_DOMAIN")
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(180), run)
        .await
        .expect("SDK script timed out")
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(
        out.status.success() && stdout.contains("ALL OK"),
        "SDK script failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    agent.shutdown().await;
}
