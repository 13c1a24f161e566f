//! Property tests (proptest) for what takes untrusted input: the `.rclaude.toml` parser, path
//! confinement in the agent, and the bundle reader. Each property runs a few hundred generated
//! cases; a failure prints the smallest input that breaks it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use proptest::prelude::*;
use rclaude::agent::paths::{Confinement, Follow};
use rclaude::config::Config;

// ---------------------------------------------------------------------------------------------
// .rclaude.toml

/// TOML-looking text: keys, tables, strings, numbers, brackets and junk, across lines.
fn tomlish() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        Just("[sandbox]".to_string()),
        Just("[tasks.".to_string()),
        Just("]".to_string()),
        Just("[[".to_string()),
        Just(" = ".to_string()),
        Just("\n".to_string()),
        Just("\"".to_string()),
        Just("'".to_string()),
        Just("provider".to_string()),
        Just("run".to_string()),
        Just("depends = [".to_string()),
        Just("timeout = \"5m\"".to_string()),
        Just("é".to_string()),
        Just("\u{0}".to_string()),
        Just("\t".to_string()),
        "[a-z_]{1,6}",
        "[0-9]{1,4}",
        "\\PC{0,4}",
    ];
    proptest::collection::vec(token, 0..40).prop_map(|v| v.concat())
}

/// A valid configuration: tasks whose dependencies name earlier tasks.
#[derive(Debug, Clone)]
struct GenConfig {
    tasks: Vec<(String, String, Vec<usize>)>,
    env: BTreeMap<String, String>,
}

fn gen_config() -> impl Strategy<Value = GenConfig> {
    let task = (
        "[a-z][a-z0-9_-]{0,7}",
        "[a-z][ -~&&[^\"\\\\]]{0,19}",
        proptest::collection::vec(any::<usize>(), 0..3),
    );
    (
        proptest::collection::vec(task, 1..6),
        proptest::collection::btree_map("[A-Z][A-Z0-9_]{0,6}", "[ -~&&[^\"\\\\]]{0,10}", 0..4),
    )
        .prop_map(|(tasks, env)| {
            let mut seen = std::collections::HashSet::new();
            let tasks = tasks
                .into_iter()
                .filter(|(name, _, _)| seen.insert(name.clone()))
                .enumerate()
                .map(|(i, (name, run, deps))| {
                    let deps = if i == 0 {
                        Vec::new()
                    } else {
                        let mut d: Vec<usize> = deps.into_iter().map(|d| d % i).collect();
                        d.sort();
                        d.dedup();
                        d
                    };
                    (name, run, deps)
                })
                .collect();
            GenConfig { tasks, env }
        })
}

fn render(c: &GenConfig) -> String {
    let mut t = String::from("[sandbox]\nprovider = \"local\"\n\n[env]\n");
    for (k, v) in &c.env {
        t.push_str(&format!("{k} = \"{v}\"\n"));
    }
    for (name, run, deps) in &c.tasks {
        let deps: Vec<String> = deps
            .iter()
            .map(|d| format!("\"{}\"", c.tasks[*d].0))
            .collect();
        t.push_str(&format!(
            "\n[tasks.{name}]\nrun = \"{run}\"\ndepends = [{}]\n",
            deps.join(", ")
        ));
    }
    t
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn the_config_parser_never_panics_and_locates_every_error(text in tomlish()) {
        let lines = text.split('\n').count();
        if let Err(e) = Config::parse(&text, Path::new(".rclaude.toml")) {
            if let (Some(line), Some(col)) = (e.line(), e.column()) {
                prop_assert!(line >= 1 && line <= lines, "line {line} of {lines}: {e}");
                prop_assert!(col >= 1, "column {col}: {e}");
                let line_text = text.split('\n').nth(line - 1).unwrap_or("");
                prop_assert!(col <= line_text.chars().count() + 1, "column {col} past {line_text:?}: {e}");
            }
            prop_assert!(!e.to_string().is_empty());
        }
    }

    #[test]
    fn valid_configs_round_trip_and_plan_dependencies_first(c in gen_config()) {
        let text = render(&c);
        let parsed = Config::parse(&text, Path::new(".rclaude.toml"))
            .map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
        prop_assert_eq!(parsed.tasks.len(), c.tasks.len());
        prop_assert_eq!(&parsed.env, &c.env);
        for (name, run, deps) in &c.tasks {
            let t = &parsed.tasks[name];
            prop_assert_eq!(t.run.lines(), vec![run.clone()]);
            let got: Vec<&str> = t.depends.iter().map(|d| d.get_ref().as_str()).collect();
            let want: Vec<&str> = deps.iter().map(|d| c.tasks[*d].0.as_str()).collect();
            prop_assert_eq!(got, want);
            let plan = parsed.task_plan(name).unwrap();
            prop_assert_eq!(plan.last(), Some(name));
            for d in deps {
                let dep = &c.tasks[*d].0;
                let di = plan.iter().position(|p| p == dep).unwrap();
                prop_assert!(di < plan.len() - 1, "{dep} after {name} in {plan:?}");
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Path confinement

/// A sandbox root with links that stay inside and links that leave it.
fn sandbox_root() -> (tempfile::TempDir, PathBuf) {
    let top = tempfile::tempdir().unwrap();
    let root = top.path().join("root");
    let outside = top.path().join("outside");
    std::fs::create_dir_all(root.join("a/b")).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("secret"), "s").unwrap();
    std::os::unix::fs::symlink(&outside, root.join("abs_out")).unwrap();
    std::os::unix::fs::symlink("../outside", root.join("rel_out")).unwrap();
    std::os::unix::fs::symlink("a/b", root.join("in_link")).unwrap();
    std::os::unix::fs::symlink("../../..", root.join("a/b/up3")).unwrap();
    std::os::unix::fs::symlink("/", root.join("a/slash")).unwrap();
    let root = root.canonicalize().unwrap();
    (top, root)
}

fn path_text() -> impl Strategy<Value = String> {
    let part = prop_oneof![
        Just("..".to_string()),
        Just(".".to_string()),
        Just("a".to_string()),
        Just("b".to_string()),
        Just("abs_out".to_string()),
        Just("rel_out".to_string()),
        Just("in_link".to_string()),
        Just("up3".to_string()),
        Just("slash".to_string()),
        Just("secret".to_string()),
        Just("".to_string()),
        Just("é".to_string()),
        Just("x\u{0}y".to_string()),
        Just("~".to_string()),
        "[a-z.]{1,3}",
    ];
    (any::<bool>(), proptest::collection::vec(part, 0..8))
        .prop_map(|(abs, parts)| format!("{}{}", if abs { "/" } else { "" }, parts.join("/")))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(600))]

    #[test]
    fn no_path_resolves_outside_the_root(p in path_text(), follow in any::<bool>()) {
        let (_top, root) = sandbox_root();
        let conf = Confinement::new(&root, None, None).unwrap();
        // Relative paths and paths spelled from the root both go through.
        for candidate in [p.clone(), format!("{}/{}", root.display(), p.trim_start_matches('/'))] {
            let follow = if follow { Follow::Yes } else { Follow::No };
            if let Ok(resolved) = conf.resolve(&candidate, follow) {
                prop_assert!(resolved.starts_with(&root), "{candidate:?} -> {resolved:?}");
                // Whatever exists of it, really (links followed) lies inside too.
                let mut existing = resolved.clone();
                while !existing.exists() && existing.pop() {}
                if matches!(follow, Follow::Yes) && existing.exists() {
                    let real = existing.canonicalize().unwrap();
                    prop_assert!(real.starts_with(&root), "{candidate:?} -> {real:?}");
                }
                prop_assert!(!resolved.to_string_lossy().contains('\0'));
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Bundle reader

fn git(dir: &Path, args: &[&str]) {
    let out = std::process::Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@e")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@e")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A real bundle (two commits, a few files) made once.
fn sample_bundle() -> &'static [u8] {
    static BYTES: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    BYTES.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        git(dir.path(), &["init", "-q", "-b", "main"]);
        std::fs::write(dir.path().join("a.txt"), "alpha\n").unwrap();
        git(dir.path(), &["add", "-A"]);
        git(dir.path(), &["commit", "-q", "-m", "one"]);
        std::fs::create_dir(dir.path().join("d")).unwrap();
        std::fs::write(dir.path().join("d/b.bin"), vec![7u8; 3000]).unwrap();
        git(dir.path(), &["add", "-A"]);
        git(dir.path(), &["commit", "-q", "-m", "two"]);
        git(dir.path(), &["bundle", "create", "-q", "b.bundle", "main"]);
        std::fs::read(dir.path().join("b.bundle")).unwrap()
    })
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Truncate(usize),
    Insert(usize, Vec<u8>),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1u8..=255).prop_map(|(i, x)| Mutation::Flip(i, x)),
        any::<usize>().prop_map(Mutation::Truncate),
        (
            any::<usize>(),
            proptest::collection::vec(any::<u8>(), 1..40)
        )
            .prop_map(|(i, b)| Mutation::Insert(i, b)),
    ]
}

fn apply(bytes: &[u8], muts: &[Mutation]) -> Vec<u8> {
    let mut b = bytes.to_vec();
    for m in muts {
        if b.is_empty() {
            break;
        }
        match m {
            Mutation::Flip(i, x) => {
                let i = i % b.len();
                b[i] ^= x;
            }
            Mutation::Truncate(i) => b.truncate(i % b.len()),
            Mutation::Insert(i, data) => {
                let i = i % b.len();
                b.splice(i..i, data.iter().copied());
            }
        }
    }
    b
}

fn read_bundle(bytes: &[u8]) -> (tempfile::TempDir, Result<Vec<(String, git2::Oid)>, String>) {
    let dir = tempfile::tempdir().unwrap();
    let repo_dir = dir.path().join("repo");
    let repo = git2::Repository::init_bare(&repo_dir).unwrap();
    let path = dir.path().join("in.bundle");
    std::fs::write(&path, bytes).unwrap();
    let r = rclaude::gitsync::bundle::read(&repo, &path, &rclaude::gitsync::NoProgress)
        .map(|h| h.refs)
        .map_err(|e| e.to_string());
    (dir, r)
}

/// Every file under `dir`.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if e.file_type().unwrap().is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

#[test]
fn a_valid_bundle_round_trips() {
    let (dir, refs) = read_bundle(sample_bundle());
    let refs = refs.expect("the sample bundle reads");
    assert_eq!(refs.len(), 1);
    let repo = git2::Repository::open_bare(dir.path().join("repo")).unwrap();
    let commit = repo.find_commit(refs[0].1).unwrap();
    assert_eq!(commit.message().ok(), Some("two\n"));
    assert!(
        commit
            .tree()
            .unwrap()
            .get_path(Path::new("d/b.bin"))
            .is_ok()
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn damaged_bundles_are_refused_without_panics_or_stray_files(
        muts in proptest::collection::vec(mutation(), 1..4)
    ) {
        let damaged = apply(sample_bundle(), &muts);
        let (dir, r) = read_bundle(&damaged);
        // Whatever happened, nothing was written beside the repository and the input.
        for f in files_under(dir.path()) {
            prop_assert!(
                f.starts_with(dir.path().join("repo")) || f == dir.path().join("in.bundle"),
                "stray file {f:?}"
            );
        }
        if let Ok(refs) = r {
            // Accepted only if every ref's objects really arrived intact.
            let repo = git2::Repository::open_bare(dir.path().join("repo")).unwrap();
            for (_, oid) in refs {
                let c = repo.find_commit(oid);
                prop_assert!(c.is_ok(), "accepted a bundle whose ref {oid} is missing");
            }
        }
    }
}
