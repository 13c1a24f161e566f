//! The CI examples in `examples/ci/` stay valid: each `.rclaude.toml` loads, its hooks name
//! real tasks, the tasks the GitHub Actions workflow and the GitLab job run exist in the Rust
//! example, and both files follow their platform's published JSON schema.

#[path = "support/pip_tool.rs"]
mod pip_tool;
#[path = "support/skip.rs"]
mod skip;

use std::path::{Path, PathBuf};
use std::process::Command;

use rclaude::config::Config;

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/ci")
}

#[test]
fn every_example_config_loads_and_wires_a_pre_push_hook() {
    for lang in ["rust", "node", "python"] {
        let path = examples().join(lang).join(".rclaude.toml");
        let c = Config::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let hook = c
            .hooks
            .get("pre-push")
            .unwrap_or_else(|| panic!("{lang}: no pre-push hook"));
        for task in hook {
            c.task_plan(task.get_ref()).unwrap();
        }
        assert!(c.tasks.contains_key("test"), "{lang}: no test task");
    }
}

#[test]
fn the_workflow_runs_tasks_the_rust_example_defines() {
    let workflow = std::fs::read_to_string(examples().join("github-actions.yml")).unwrap();
    let line = workflow
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("run: rclaude ci "))
        .expect("a `run: rclaude ci ...` step");
    let c = Config::load(&examples().join("rust/.rclaude.toml")).unwrap();
    let tasks: Vec<&str> = line["run: rclaude ci ".len()..]
        .split_whitespace()
        .take_while(|w| !w.starts_with('-'))
        .collect();
    assert!(!tasks.is_empty());
    for t in tasks {
        assert!(
            c.tasks.contains_key(t),
            "the workflow runs {t}, which the Rust example lacks"
        );
    }
    assert!(line.contains("--json"), "{line}");
}

/// `check-jsonschema` (PyPI), pinned, in a venv under the target directory; its vendored copies
/// of the published GitHub workflow and GitLab CI schemas are what the examples are checked
/// against. `None` when python3-venv is missing and `RCLAUDE_SKIP_PYTHON=1`.
fn check_jsonschema() -> Option<PathBuf> {
    const VERSION: &str = "0.39.0";
    match pip_tool::install(
        env!("CARGO_TARGET_TMPDIR"),
        "check-jsonschema",
        VERSION,
        "check-jsonschema",
    ) {
        Ok(bin) => Some(bin),
        Err(())
            if skip::opted_out(
                "RCLAUDE_SKIP_PYTHON",
                "CI workflow schema test: python3 with venv missing",
            ) =>
        {
            None
        }
        Err(()) => panic!(
            "checking the CI examples against their published schemas needs python3 with venv \
             (Debian: apt-get install -y python3-venv), or set RCLAUDE_SKIP_PYTHON=1 to skip it"
        ),
    }
}

fn validate(bin: &Path, schema: &str, file: &Path) -> std::process::Output {
    Command::new(bin)
        .args(["--builtin-schema", schema])
        .arg(file)
        .output()
        .expect("run check-jsonschema")
}

#[test]
fn the_workflow_files_follow_github_and_gitlab_published_schemas() {
    let Some(bin) = check_jsonschema() else {
        return;
    };
    for (file, schema) in [
        ("github-actions.yml", "vendor.github-workflows"),
        ("gitlab-ci.yml", "vendor.gitlab-ci"),
    ] {
        let path = examples().join(file);
        let out = validate(&bin, schema, &path);
        assert!(
            out.status.success(),
            "{file} does not follow {schema}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        // The validator really checks: a copy with a misspelt key is refused.
        let text = std::fs::read_to_string(&path).unwrap();
        let broken = text
            .replacen("runs-on:", "runs_on:", 1)
            .replacen("script:", "scripts:", 1);
        assert_ne!(broken, text);
        let dir = tempfile::tempdir().unwrap();
        let copy = dir.path().join(file);
        std::fs::write(&copy, broken).unwrap();
        assert!(
            !validate(&bin, schema, &copy).status.success(),
            "{schema} accepted a broken {file}"
        );
    }
}

#[test]
fn the_gitlab_job_runs_tasks_the_rust_example_defines_and_keeps_the_summary() {
    let job = std::fs::read_to_string(examples().join("gitlab-ci.yml")).unwrap();
    let line = job
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("- rclaude ci "))
        .expect("a `- rclaude ci ...` script line");
    let c = Config::load(&examples().join("rust/.rclaude.toml")).unwrap();
    for t in line["- rclaude ci ".len()..]
        .split_whitespace()
        .take_while(|w| !w.starts_with('-'))
    {
        assert!(
            c.tasks.contains_key(t),
            "the GitLab job runs {t}, which the Rust example lacks"
        );
    }
    assert!(line.contains("--json > rclaude-ci.json"), "{line}");
    assert!(job.contains("junit: rclaude-ci.junit.xml"));
    assert!(job.contains("paths: [rclaude-ci.json]"));
}
