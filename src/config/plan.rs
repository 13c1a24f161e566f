//! Task dependency order (`rclaude run NAME`) and cycle detection.

use std::collections::{BTreeMap, HashSet};

use super::error::ConfigError;
use super::model::TaskConfig;

/// Tasks to run for `name`: dependencies first (depth-first, in `depends` order), each once,
/// `name` last.
pub(crate) fn task_plan(
    tasks: &BTreeMap<String, TaskConfig>,
    name: &str,
) -> Result<Vec<String>, ConfigError> {
    let unknown = |n: &str| ConfigError::UnknownTask {
        name: n.to_string(),
        defined: tasks.keys().cloned().collect(),
    };
    if !tasks.contains_key(name) {
        return Err(unknown(name));
    }
    let mut done: HashSet<&str> = HashSet::new();
    let mut out: Vec<String> = Vec::new();
    // Iterative depth-first post-order: (task, index of the next dependency to visit).
    let mut stack: Vec<(&str, usize)> = vec![(name, 0)];
    while let Some(&mut (task, ref mut next)) = stack.last_mut() {
        let deps = &tasks[task].depends;
        if let Some(dep) = deps.get(*next) {
            *next += 1;
            let dep = dep.get_ref().as_str();
            if done.contains(dep) {
                continue;
            }
            if let Some(pos) = stack.iter().position(|(t, _)| *t == dep) {
                let mut cycle: Vec<String> =
                    stack[pos..].iter().map(|(t, _)| t.to_string()).collect();
                cycle.push(dep.to_string());
                return Err(ConfigError::DependencyCycle { cycle });
            }
            if !tasks.contains_key(dep) {
                return Err(unknown(dep));
            }
            stack.push((dep, 0));
        } else {
            done.insert(task);
            out.push(task.to_string());
            stack.pop();
        }
    }
    Ok(out)
}

/// The first dependency cycle, looking at tasks in name order and dependencies in declaration
/// order: `(cycle, index in the first task's depends of the edge that starts it)`. The cycle
/// lists the first task again at the end (`a -> b -> a`). Unknown dependencies are ignored.
pub(crate) fn find_cycle(tasks: &BTreeMap<String, TaskConfig>) -> Option<(Vec<String>, usize)> {
    let mut finished: HashSet<&str> = HashSet::new();
    for root in tasks.keys() {
        if finished.contains(root.as_str()) {
            continue;
        }
        let mut stack: Vec<(&str, usize)> = vec![(root.as_str(), 0)];
        while let Some(&mut (task, ref mut next)) = stack.last_mut() {
            let deps = &tasks[task].depends;
            if let Some(dep) = deps.get(*next) {
                *next += 1;
                let dep = dep.get_ref().as_str();
                if finished.contains(dep) || !tasks.contains_key(dep) {
                    continue;
                }
                if let Some(pos) = stack.iter().position(|(t, _)| *t == dep) {
                    let mut cycle: Vec<String> =
                        stack[pos..].iter().map(|(t, _)| t.to_string()).collect();
                    cycle.push(dep.to_string());
                    // Each frame's `next - 1` is the edge it is exploring.
                    return Some((cycle, stack[pos].1 - 1));
                }
                stack.push((dep, 0));
            } else {
                finished.insert(task);
                stack.pop();
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::model::StringOrList;
    use toml::Spanned;

    fn tasks(spec: &[(&str, &[&str])]) -> BTreeMap<String, TaskConfig> {
        spec.iter()
            .map(|(name, deps)| {
                let task = TaskConfig {
                    run: StringOrList::One("true".into()),
                    description: None,
                    depends: deps
                        .iter()
                        .map(|d| Spanned::new(0..0, d.to_string()))
                        .collect(),
                    env: BTreeMap::new(),
                    cwd: None,
                    timeout: None,
                };
                (name.to_string(), task)
            })
            .collect()
    }

    #[test]
    fn plan_is_depth_first_in_declaration_order_each_once() {
        let t = tasks(&[
            ("build", &["fetch"]),
            ("fetch", &[]),
            ("lint", &["fetch"]),
            ("test", &["lint", "build", "fetch"]),
        ]);
        assert_eq!(
            task_plan(&t, "test").unwrap(),
            ["fetch", "lint", "build", "test"]
        );
        assert_eq!(task_plan(&t, "fetch").unwrap(), ["fetch"]);
    }

    #[test]
    fn plan_reports_unknown_tasks_and_cycles() {
        let t = tasks(&[("a", &["b"]), ("b", &["a"]), ("c", &["nope"])]);
        let e = task_plan(&t, "zzz").unwrap_err().to_string();
        assert_eq!(e, "task \"zzz\" does not exist (defined tasks: a, b, c)");
        let e = task_plan(&t, "c").unwrap_err().to_string();
        assert!(e.starts_with("task \"nope\" does not exist"), "{e}");
        assert_eq!(
            task_plan(&t, "a").unwrap_err().to_string(),
            "dependency cycle a -> b -> a"
        );
    }

    #[test]
    fn finds_the_first_cycle_and_its_edge() {
        let t = tasks(&[("a", &["x", "b"]), ("b", &["c"]), ("c", &["a"]), ("x", &[])]);
        let (cycle, edge) = find_cycle(&t).unwrap();
        assert_eq!(cycle, ["a", "b", "c", "a"]);
        assert_eq!(edge, 1);
        let t = tasks(&[("a", &[]), ("s", &["a", "s"])]);
        assert_eq!(find_cycle(&t).unwrap(), (vec!["s".into(), "s".into()], 1));
        let t = tasks(&[("a", &["b", "missing"]), ("b", &[])]);
        assert_eq!(find_cycle(&t), None);
    }
}
