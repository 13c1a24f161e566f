//! The CI examples in `examples/ci/` stay valid: each `.rclaude.toml` loads, its hooks name
//! real tasks, and the tasks the GitHub Actions workflow runs exist in the Rust example.

use std::path::{Path, PathBuf};

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
