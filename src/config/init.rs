//! `rclaude init`: a commented starter `.rclaude.toml` with tasks suited to the project.
//!
//! Detection looks at the directory's top level: `Cargo.toml` → Rust, `package.json` → Node,
//! `pyproject.toml` / `setup.py` / `requirements.txt` → Python. When several are found, tasks
//! are written for all of them, prefixed with the ecosystem (`rust-build`, `node-test`...), and
//! their setup commands are concatenated; with one, the tasks have plain names (`build`, `test`).

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use super::schema::SCHEMA_URL;
use super::{CONFIG_FILE, Config, ConfigError};

/// The kind of project a directory holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProjectKind {
    /// `Cargo.toml`.
    Rust,
    /// `package.json`.
    Node,
    /// `pyproject.toml`, `setup.py` or `requirements.txt`.
    Python,
    /// None of the above.
    Generic,
}

impl ProjectKind {
    fn prefix(self) -> &'static str {
        match self {
            ProjectKind::Rust => "rust",
            ProjectKind::Node => "node",
            ProjectKind::Python => "python",
            ProjectKind::Generic => "",
        }
    }
}

/// The main kind of project in `dir` (the first found of Rust, Node, Python; else Generic).
pub fn detect(dir: &Path) -> ProjectKind {
    detect_all(dir)[0]
}

/// Every kind of project found in `dir`, in the order Rust, Node, Python; `[Generic]` if none.
pub fn detect_all(dir: &Path) -> Vec<ProjectKind> {
    let has = |name: &str| dir.join(name).is_file();
    let mut kinds = Vec::new();
    if has("Cargo.toml") {
        kinds.push(ProjectKind::Rust);
    }
    if has("package.json") {
        kinds.push(ProjectKind::Node);
    }
    if has("pyproject.toml") || has("setup.py") || has("requirements.txt") {
        kinds.push(ProjectKind::Python);
    }
    if kinds.is_empty() {
        kinds.push(ProjectKind::Generic);
    }
    kinds
}

struct Task {
    name: &'static str,
    description: &'static str,
    run: String,
    depends: Vec<&'static str>,
}

/// What one ecosystem contributes to the starter file.
struct Part {
    kind: ProjectKind,
    setup: Vec<String>,
    ignore: Vec<&'static str>,
    tasks: Vec<Task>,
}

fn task(name: &'static str, description: &'static str, run: impl Into<String>) -> Task {
    Task {
        name,
        description,
        run: run.into(),
        depends: Vec::new(),
    }
}

fn rust_part() -> Part {
    let mut test = task("test", "Run the tests", "cargo test");
    test.depends.push("build");
    Part {
        kind: ProjectKind::Rust,
        setup: vec!["cargo fetch".into()],
        ignore: vec!["target/"],
        tasks: vec![
            task("build", "Build everything", "cargo build --all-targets"),
            test,
            task(
                "lint",
                "Clippy, warnings are errors",
                "cargo clippy --all-targets -- -D warnings",
            ),
        ],
    }
}

/// npm's placeholder `test` script, which only fails.
const NPM_PLACEHOLDER_TEST: &str = "echo \"Error: no test specified\" && exit 1";

fn node_part(dir: &Path) -> Part {
    let scripts: serde_json::Map<String, serde_json::Value> =
        std::fs::read_to_string(dir.join("package.json"))
            .ok()
            .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
            .and_then(|v| v.get("scripts").and_then(|s| s.as_object()).cloned())
            .unwrap_or_default();
    let has_script = |name: &str| {
        scripts
            .get(name)
            .and_then(|s| s.as_str())
            .is_some_and(|s| !s.trim().is_empty() && s.trim() != NPM_PLACEHOLDER_TEST)
    };
    let install =
        if dir.join("package-lock.json").is_file() || dir.join("npm-shrinkwrap.json").is_file() {
            "npm ci"
        } else {
            "npm install"
        };
    let mut tasks = vec![task(
        "install",
        "Install dependencies (after changing them)",
        install,
    )];
    if has_script("build") {
        tasks.push(task(
            "build",
            "Build (package.json script)",
            "npm run build",
        ));
    }
    if has_script("test") {
        tasks.push(task(
            "test",
            "Run the tests (package.json script)",
            "npm test",
        ));
    }
    if has_script("lint") {
        tasks.push(task("lint", "Lint (package.json script)", "npm run lint"));
    }
    Part {
        kind: ProjectKind::Node,
        setup: vec![install.to_string()],
        ignore: vec!["node_modules/"],
        tasks,
    }
}

fn python_part(dir: &Path) -> Part {
    let mut install = Vec::new();
    if dir.join("requirements.txt").is_file() {
        install.push("pip install -r requirements.txt");
    }
    if dir.join("pyproject.toml").is_file() || dir.join("setup.py").is_file() {
        install.push("pip install -e .");
    }
    let install = install.join(" && ");
    Part {
        kind: ProjectKind::Python,
        setup: vec![install.clone()],
        ignore: vec![".venv/", "__pycache__/"],
        tasks: vec![
            task(
                "install",
                "Install dependencies (after changing them)",
                install,
            ),
            task("test", "Run the tests", "python -m pytest"),
        ],
    }
}

fn generic_part() -> Part {
    Part {
        kind: ProjectKind::Generic,
        setup: Vec::new(),
        ignore: Vec::new(),
        tasks: vec![task(
            "hello",
            "An example task: replace it",
            "echo hello from the sandbox",
        )],
    }
}

/// A TOML string literal.
fn q(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

fn list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| q(s)).collect();
    format!("[{}]", quoted.join(", "))
}

/// The commented starter file for the project in `dir` (it parses and validates).
pub fn starter_text(dir: &Path) -> String {
    let parts: Vec<Part> = detect_all(dir)
        .into_iter()
        .map(|kind| match kind {
            ProjectKind::Rust => rust_part(),
            ProjectKind::Node => node_part(dir),
            ProjectKind::Python => python_part(dir),
            ProjectKind::Generic => generic_part(),
        })
        .collect();
    let several = parts.len() > 1;
    let name = |part: &Part, task: &str| {
        if several {
            format!("{}-{task}", part.kind.prefix())
        } else {
            task.to_string()
        }
    };
    let setup: Vec<String> = parts.iter().flat_map(|p| p.setup.clone()).collect();
    let ignore: Vec<String> = parts
        .iter()
        .flat_map(|p| p.ignore.iter().map(|s| s.to_string()))
        .collect();

    let mut t = String::new();
    let _ = writeln!(t, "#:schema {SCHEMA_URL}");
    t.push_str(HEADER);
    t.push_str(SANDBOX);
    t.push_str(ENV_AND_SECRETS);
    let _ = writeln!(t, "[setup]");
    let _ = writeln!(
        t,
        "# Run once per sandbox, and again whenever these lines change."
    );
    let _ = writeln!(t, "run = {}", list(&setup));
    let _ = writeln!(t);
    let _ = writeln!(t, "[start]");
    let _ = writeln!(t, "# Run on every `rclaude up` and resume.");
    let _ = writeln!(t, "run = []");
    let _ = writeln!(t);
    let _ = writeln!(t, "[sync]");
    let _ = writeln!(
        t,
        "# gitignore-style patterns never synced, on top of .gitignore."
    );
    let _ = writeln!(t, "ignore = {}", list(&ignore));
    let _ = writeln!(
        t,
        "# Keep syncing edits live after `rclaude up` (like `up --watch`)."
    );
    let _ = writeln!(t, "watch = false");
    let _ = writeln!(t);
    let _ = writeln!(
        t,
        "# Tasks: `rclaude run NAME` runs NAME in the sandbox after its `depends`."
    );
    let _ = writeln!(
        t,
        "# Keys: run (a command or a list), description, depends, env, cwd, timeout."
    );
    for part in &parts {
        for task in &part.tasks {
            let _ = writeln!(t);
            let _ = writeln!(t, "[tasks.{}]", name(part, task.name));
            let _ = writeln!(t, "description = {}", q(task.description));
            let _ = writeln!(t, "run = {}", q(&task.run));
            if !task.depends.is_empty() {
                let deps: Vec<String> = task.depends.iter().map(|d| name(part, d)).collect();
                let _ = writeln!(t, "depends = {}", list(&deps));
            }
        }
    }
    let hook_task = parts
        .iter()
        .find_map(|p| {
            p.tasks
                .iter()
                .find(|t| t.name == "test")
                .map(|t| name(p, t.name))
        })
        .unwrap_or_else(|| name(&parts[0], parts[0].tasks[0].name));
    let _ = writeln!(t);
    let _ = writeln!(t, "[hooks]");
    let _ = writeln!(
        t,
        "# Git hooks set up by `rclaude hooks install`, each running tasks in the sandbox."
    );
    let _ = writeln!(t, "# pre-push = [{}]", q(&hook_task));
    t.push_str(CLAUDE);
    t
}

const HEADER: &str = r#"# rclaude configuration: the sandbox this repository runs in, and its tasks.
#
# Editors using Taplo (VS Code "Even Better TOML", and others) read the `#:schema` line above to
# complete and check this file. Offline, save schema/rclaude.schema.json from the rclaude
# repository next to this file and change that line to `#:schema ./rclaude.schema.json`.
#
# Durations look like "90s", "15m", "1h30m".

"#;

const SANDBOX: &str = r#"[sandbox]
provider = "local"      # local | e2b | daytona | northflank
# image = "base"        # E2B template / image name
# cpu = 2
# memory_mb = 4096
timeout = "1h"          # idle time before the sandbox is paused
auto_pause = true
# workdir = "/home/user/repo"
# project = "..."       # Northflank project (or set NORTHFLANK_PROJECT_ID)

"#;

const ENV_AND_SECRETS: &str = r#"[env]
# Plain variables for every command in the sandbox (committed: nothing secret here).
# RUST_LOG = "info"

[secrets]
# NAME = "LOCAL_VAR": the value is read from your local environment when the sandbox starts,
# never printed or stored. Optional ones are skipped when unset.
ANTHROPIC_API_KEY = { from_env = "ANTHROPIC_API_KEY", required = false }
# DATABASE_URL = "MY_DATABASE_URL"

"#;

const CLAUDE: &str = r#"
[claude]
# version = "2.1.197"                # @anthropic-ai/claude-code version (default: the pinned, tested 2.1.197)
# permission_mode = "bypassPermissions"
# model = "..."
# args = []
"#;

/// Write the starter file to `dir/.rclaude.toml` (temp file + rename). An existing file is
/// [`ConfigError::AlreadyExists`] unless `force`. Returns the path written.
pub fn write_starter(dir: &Path, force: bool) -> Result<PathBuf, ConfigError> {
    write_config(dir, &starter_text(dir), force)
}

/// Write `text` as `dir/.rclaude.toml` (checked to be a valid configuration first), atomically;
/// an existing file is kept unless `force`.
pub fn write_config(dir: &Path, text: &str, force: bool) -> Result<PathBuf, ConfigError> {
    let path = dir.join(CONFIG_FILE);
    if !force && std::fs::symlink_metadata(&path).is_ok() {
        return Err(ConfigError::AlreadyExists { path });
    }
    // Our own output must be a valid configuration.
    Config::parse(text, &path)?;
    let write_err = |source| ConfigError::Write {
        path: path.clone(),
        source,
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".rclaude.toml.")
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(write_err)?;
    tmp.write_all(text.as_bytes()).map_err(write_err)?;
    tmp.as_file().sync_all().map_err(write_err)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o644))
            .map_err(write_err)?;
    }
    let persisted = if force {
        tmp.persist(&path)
    } else {
        tmp.persist_noclobber(&path)
    };
    match persisted {
        Ok(_) => Ok(path),
        Err(e) if !force && e.error.kind() == std::io::ErrorKind::AlreadyExists => {
            Err(ConfigError::AlreadyExists { path })
        }
        Err(e) => Err(write_err(e.error)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn project(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, content) in files {
            std::fs::write(dir.path().join(name), content).unwrap();
        }
        dir
    }

    /// The starter for `dir`, parsed (it must validate).
    fn starter(dir: &Path) -> (String, Config) {
        let text = starter_text(dir);
        let config =
            Config::parse(&text, Path::new(CONFIG_FILE)).unwrap_or_else(|e| panic!("{e}\n{text}"));
        (text, config)
    }

    fn runs(c: &Config) -> Vec<(String, Vec<String>)> {
        c.tasks
            .iter()
            .map(|(k, t)| (k.clone(), t.run.lines()))
            .collect()
    }

    #[test]
    fn detects_project_kinds() {
        assert_eq!(detect(project(&[]).path()), ProjectKind::Generic);
        assert_eq!(
            detect(project(&[("Cargo.toml", "")]).path()),
            ProjectKind::Rust
        );
        assert_eq!(
            detect(project(&[("package.json", "{}")]).path()),
            ProjectKind::Node
        );
        assert_eq!(
            detect(project(&[("pyproject.toml", "")]).path()),
            ProjectKind::Python
        );
        assert_eq!(
            detect(project(&[("requirements.txt", "")]).path()),
            ProjectKind::Python
        );
        let both = project(&[("package.json", "{}"), ("Cargo.toml", "")]);
        assert_eq!(detect(both.path()), ProjectKind::Rust);
        assert_eq!(
            detect_all(both.path()),
            [ProjectKind::Rust, ProjectKind::Node]
        );
    }

    #[test]
    fn rust_starter() {
        let dir = project(&[("Cargo.toml", "[package]\nname = \"x\"\n")]);
        let (text, c) = starter(dir.path());
        assert!(text.starts_with(&format!("#:schema {SCHEMA_URL}\n")));
        assert_eq!(
            runs(&c),
            [
                (
                    "build".to_string(),
                    vec!["cargo build --all-targets".to_string()]
                ),
                (
                    "lint".to_string(),
                    vec!["cargo clippy --all-targets -- -D warnings".to_string()]
                ),
                ("test".to_string(), vec!["cargo test".to_string()]),
            ]
        );
        assert_eq!(c.task_plan("test").unwrap(), ["build", "test"]);
        assert_eq!(c.setup.run.lines(), ["cargo fetch"]);
        assert_eq!(c.sync.ignore, ["target/"]);
        assert!(text.contains("# pre-push = [\"test\"]"));
        // The optional Claude key never blocks `up` when unset.
        assert!(!c.secrets["ANTHROPIC_API_KEY"].required);
        assert!(
            c.resolve_secrets(crate::config::SecretPhase::All, |_| None)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn node_starter_uses_existing_scripts_and_the_lockfile() {
        let pkg = r#"{"scripts": {"build": "tsc", "test": "vitest run", "lint": "eslint ."}}"#;
        let dir = project(&[("package.json", pkg), ("package-lock.json", "{}")]);
        let (_, c) = starter(dir.path());
        assert_eq!(
            runs(&c),
            [
                ("build".to_string(), vec!["npm run build".to_string()]),
                ("install".to_string(), vec!["npm ci".to_string()]),
                ("lint".to_string(), vec!["npm run lint".to_string()]),
                ("test".to_string(), vec!["npm test".to_string()]),
            ]
        );
        assert_eq!(c.setup.run.lines(), ["npm ci"]);
        assert_eq!(c.sync.ignore, ["node_modules/"]);

        // No lockfile: npm install. npm's placeholder test script and missing scripts are skipped.
        let pkg = r#"{"scripts": {"test": "echo \"Error: no test specified\" && exit 1"}}"#;
        let dir = project(&[("package.json", pkg)]);
        let (text, c) = starter(dir.path());
        assert_eq!(
            runs(&c),
            [("install".to_string(), vec!["npm install".to_string()])]
        );
        assert!(text.contains("# pre-push = [\"install\"]"));

        // Broken package.json: still a valid starter.
        let (_, c) = starter(project(&[("package.json", "{ not json")]).path());
        assert_eq!(c.tasks.keys().collect::<Vec<_>>(), ["install"]);
    }

    #[test]
    fn python_starter() {
        let dir = project(&[("pyproject.toml", "[project]\nname = \"x\"\n")]);
        let (_, c) = starter(dir.path());
        assert_eq!(
            runs(&c),
            [
                ("install".to_string(), vec!["pip install -e .".to_string()]),
                ("test".to_string(), vec!["python -m pytest".to_string()]),
            ]
        );
        let dir = project(&[("requirements.txt", "pytest\n")]);
        let (_, c) = starter(dir.path());
        assert_eq!(
            c.tasks["install"].run.lines(),
            ["pip install -r requirements.txt"]
        );
    }

    #[test]
    fn generic_and_mixed_starters() {
        let (_, c) = starter(project(&[]).path());
        assert_eq!(c.tasks.keys().collect::<Vec<_>>(), ["hello"]);
        assert!(c.setup.run.lines().is_empty());

        let pkg = r#"{"scripts": {"test": "jest"}}"#;
        let dir = project(&[
            ("Cargo.toml", ""),
            ("package.json", pkg),
            ("pyproject.toml", ""),
        ]);
        let (text, c) = starter(dir.path());
        let names: Vec<&str> = c.tasks.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            [
                "node-install",
                "node-test",
                "python-install",
                "python-test",
                "rust-build",
                "rust-lint",
                "rust-test"
            ]
        );
        assert_eq!(
            c.task_plan("rust-test").unwrap(),
            ["rust-build", "rust-test"]
        );
        assert_eq!(
            c.setup.run.lines(),
            ["cargo fetch", "npm install", "pip install -e ."]
        );
        assert!(text.contains("# pre-push = [\"rust-test\"]"));
    }

    #[test]
    fn write_starter_refuses_to_overwrite_without_force() {
        let dir = project(&[("Cargo.toml", "")]);
        let path = write_starter(dir.path(), false).unwrap();
        assert_eq!(path, dir.path().join(CONFIG_FILE));
        let written = std::fs::read_to_string(&path).unwrap();
        assert_eq!(written, starter_text(dir.path()));
        Config::load(&path).unwrap();

        std::fs::write(&path, "# mine\n").unwrap();
        let e = write_starter(dir.path(), false).unwrap_err();
        assert!(matches!(e, ConfigError::AlreadyExists { .. }));
        assert!(
            e.to_string()
                .ends_with("already exists; use --force to overwrite it"),
            "{e}"
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "# mine\n");

        write_starter(dir.path(), true).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), written);
        // Only the config and the project file: no temporary files left behind.
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, [".rclaude.toml", "Cargo.toml"]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o644);
        }
    }

    #[test]
    fn write_starter_reports_unwritable_directories() {
        let dir = project(&[]);
        let missing = dir.path().join("no-such-dir");
        let e = write_starter(&missing, false).unwrap_err();
        assert!(matches!(e, ConfigError::Write { .. }), "{e}");
        assert!(e.to_string().contains("cannot write"), "{e}");
    }
}
