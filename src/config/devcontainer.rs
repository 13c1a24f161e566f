//! `rclaude init --from-devcontainer`: a `.rclaude.toml` made from `devcontainer.json`.
//!
//! The Dev Container spec (containers.dev) describes an environment much as `.rclaude.toml`
//! does. What maps: `image`, `workspaceFolder`, `hostRequirements` (cpus, memory), the lifecycle
//! commands (`onCreateCommand`, `updateContentCommand`, `postCreateCommand` → `[setup]`;
//! `postStartCommand` → `[start]`), `containerEnv`/`remoteEnv` (plain values → `[env]`,
//! `${localEnv:VAR}` → `[secrets]`), `secrets`, and the node, python and rust features (as
//! setup commands). Everything else is listed in [`Import::unmapped`] with the reason, never
//! dropped silently. The file is JSON with comments and trailing commas (JSONC).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde_json::{Map, Value};

use super::error::{Diagnostic, ErrorKind};
use super::{Config, ConfigError};

/// Where devcontainer.json is looked for, in order, when no path is given.
pub const DEFAULT_PATHS: &[&str] = &[".devcontainer/devcontainer.json", ".devcontainer.json"];

/// The result of an import.
#[derive(Debug, Clone)]
pub struct Import {
    /// The `.rclaude.toml` text (valid: it was parsed before being returned).
    pub toml: String,
    /// `property: why it was not mapped`, one per property rclaude could not express.
    pub unmapped: Vec<String>,
}

/// Read and convert the devcontainer.json at `path`.
pub fn import_file(path: &Path) -> Result<Import, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            ConfigError::NotFound {
                path: path.to_path_buf(),
            }
        } else {
            ConfigError::Read {
                path: path.to_path_buf(),
                source,
            }
        }
    })?;
    import(&text, path)
}

/// Convert devcontainer.json `text` (read from `path`, for messages).
pub fn import(text: &str, path: &Path) -> Result<Import, ConfigError> {
    let options = jsonc_parser::ParseOptions {
        allow_missing_commas: false,
        ..Default::default()
    };
    let value: Value = jsonc_parser::parse_to_serde_value(text, &options).map_err(|e| {
        let r = e.range();
        Diagnostic::new(
            path,
            text,
            r.start..r.end.max(r.start + 1).min(text.len().max(r.start)),
            String::new(),
            ErrorKind::Syntax,
            format!("not valid JSON (with comments): {}", e.kind()),
        )
    })?;
    let Value::Object(obj) = value else {
        return Err(Diagnostic::new(
            path,
            text,
            0..text.len().min(1),
            String::new(),
            ErrorKind::WrongType,
            "a devcontainer.json must hold one JSON object".into(),
        )
        .into());
    };
    let mut b = Builder::default();
    b.convert(&obj);
    let toml = b.render(path);
    Config::parse(&toml, Path::new(super::CONFIG_FILE))?;
    Ok(Import {
        toml,
        unmapped: b.unmapped,
    })
}

/// Why each known property cannot be expressed in `.rclaude.toml`.
const UNMAPPABLE: &[(&str, &str)] = &[
    (
        "build",
        "rclaude does not build images; build and publish it, then set [sandbox] image",
    ),
    (
        "dockerFile",
        "rclaude does not build images; build and publish it, then set [sandbox] image",
    ),
    (
        "dockerComposeFile",
        "multi-container setups have no equivalent; a sandbox is one machine",
    ),
    (
        "service",
        "multi-container setups have no equivalent; a sandbox is one machine",
    ),
    (
        "runServices",
        "multi-container setups have no equivalent; a sandbox is one machine",
    ),
    (
        "initializeCommand",
        "runs on the host before the container starts; rclaude runs nothing on your machine",
    ),
    (
        "postAttachCommand",
        "runs when a tool attaches; rclaude has no attach hook (add it to a task if needed)",
    ),
    ("waitFor", "rclaude always waits for [setup] to finish"),
    (
        "forwardPorts",
        "port forwarding is not configured in .rclaude.toml yet",
    ),
    (
        "portsAttributes",
        "port forwarding is not configured in .rclaude.toml yet",
    ),
    (
        "otherPortsAttributes",
        "port forwarding is not configured in .rclaude.toml yet",
    ),
    (
        "appPort",
        "port forwarding is not configured in .rclaude.toml yet",
    ),
    (
        "mounts",
        "sandboxes have no host mounts; the repository is synced instead",
    ),
    (
        "workspaceMount",
        "sandboxes have no host mounts; the repository is synced instead",
    ),
    ("runArgs", "container runtime flags have no equivalent"),
    ("privileged", "container runtime flags have no equivalent"),
    ("capAdd", "container runtime flags have no equivalent"),
    ("securityOpt", "container runtime flags have no equivalent"),
    ("init", "container runtime flags have no equivalent"),
    (
        "overrideCommand",
        "container runtime flags have no equivalent",
    ),
    (
        "shutdownAction",
        "sandboxes pause after [sandbox] timeout instead",
    ),
    ("remoteUser", "commands run as the sandbox's user"),
    ("containerUser", "commands run as the sandbox's user"),
    ("updateRemoteUserUID", "commands run as the sandbox's user"),
    ("userEnvProbe", "commands run in a login shell already"),
    (
        "customizations",
        "editor settings and extensions belong to your editor",
    ),
    (
        "overrideFeatureInstallOrder",
        "features are mapped to setup commands in the order written",
    ),
];

/// Properties that describe the file rather than the environment; they need no mapping.
const IGNORED: &[&str] = &["$schema", "name"];

#[derive(Default)]
struct Builder {
    name: Option<String>,
    image: Option<String>,
    workdir: Option<String>,
    cpu: Option<u32>,
    memory_mb: Option<u32>,
    setup: Vec<String>,
    start: Vec<String>,
    env: BTreeMap<String, String>,
    secrets: BTreeMap<String, String>,
    unmapped: Vec<String>,
}

impl Builder {
    fn unmapped(&mut self, what: impl Into<String>, why: &str) {
        self.unmapped.push(format!("{}: {why}", what.into()));
    }

    fn convert(&mut self, obj: &Map<String, Value>) {
        self.name = obj.get("name").and_then(Value::as_str).map(str::to_string);
        // Features first: what they install is there before the lifecycle commands use it.
        if let Some(features) = obj.get("features") {
            self.features(features);
        }
        for key in [
            "onCreateCommand",
            "updateContentCommand",
            "postCreateCommand",
        ] {
            if let Some(v) = obj.get(key) {
                let lines = self.command_lines(key, v);
                self.setup.extend(lines);
            }
        }
        if let Some(v) = obj.get("postStartCommand") {
            let lines = self.command_lines("postStartCommand", v);
            self.start.extend(lines);
        }
        for (key, value) in obj {
            match key.as_str() {
                "features"
                | "onCreateCommand"
                | "updateContentCommand"
                | "postCreateCommand"
                | "postStartCommand" => {}
                "image" => match value.as_str() {
                    Some(s) => self.image = Some(s.to_string()),
                    None => self.unmapped("image", "not a string"),
                },
                "workspaceFolder" => match value.as_str() {
                    Some(s) if s.starts_with('/') => self.workdir = Some(s.to_string()),
                    _ => self.unmapped("workspaceFolder", "not an absolute path"),
                },
                "hostRequirements" => self.host_requirements(value),
                "containerEnv" | "remoteEnv" => self.env_map(key, value),
                "secrets" => self.secret_names(value),
                k if IGNORED.contains(&k) => {}
                k => match UNMAPPABLE.iter().find(|(name, _)| *name == k) {
                    Some((_, why)) => self.unmapped(k, why),
                    None => self.unmapped(k, "not a Dev Container property rclaude knows"),
                },
            }
        }
    }

    /// A lifecycle command: a string (shell), an array (argv), or an object of named commands
    /// (run in parallel by the spec; here in order).
    fn command_lines(&mut self, key: &str, v: &Value) -> Vec<String> {
        match v {
            Value::String(s) if s.trim().is_empty() => Vec::new(),
            Value::String(s) => vec![s.clone()],
            Value::Array(items) => {
                match items.iter().map(Value::as_str).collect::<Option<Vec<_>>>() {
                    Some(words) if !words.is_empty() => vec![crate::shell::quote_all(&words)],
                    Some(_) => Vec::new(),
                    None => {
                        self.unmapped(key, "an array with non-string items");
                        Vec::new()
                    }
                }
            }
            Value::Object(named) => named
                .iter()
                .flat_map(|(name, cmd)| self.command_lines(&format!("{key}.{name}"), cmd))
                .collect(),
            _ => {
                self.unmapped(key, "neither a string, an array nor an object");
                Vec::new()
            }
        }
    }

    fn host_requirements(&mut self, v: &Value) {
        let Some(obj) = v.as_object() else {
            return self.unmapped("hostRequirements", "not an object");
        };
        for (k, v) in obj {
            match k.as_str() {
                "cpus" => match v.as_u64().and_then(|n| u32::try_from(n).ok()) {
                    Some(n) if n > 0 => self.cpu = Some(n),
                    _ => self.unmapped("hostRequirements.cpus", "not a positive integer"),
                },
                "memory" => match v.as_str().and_then(parse_memory_mb) {
                    Some(mb) => self.memory_mb = Some(mb),
                    None => self.unmapped(
                        "hostRequirements.memory",
                        "not a size such as \"8gb\" or \"512mb\"",
                    ),
                },
                other => self.unmapped(
                    format!("hostRequirements.{other}"),
                    "only cpus and memory can be requested",
                ),
            }
        }
    }

    fn env_map(&mut self, key: &str, v: &Value) {
        let Some(obj) = v.as_object() else {
            return self.unmapped(key, "not an object");
        };
        for (name, value) in obj {
            let Some(value) = value.as_str() else {
                self.unmapped(format!("{key}.{name}"), "not a string");
                continue;
            };
            if let Some(var) = local_env_reference(value) {
                self.secrets.insert(name.clone(), var.to_string());
            } else if value.contains("${") {
                self.unmapped(
                    format!("{key}.{name}"),
                    "refers to another variable (${...}); set it in [env] by hand",
                );
            } else {
                self.env.insert(name.clone(), value.to_string());
            }
        }
    }

    fn secret_names(&mut self, v: &Value) {
        let Some(obj) = v.as_object() else {
            return self.unmapped("secrets", "not an object");
        };
        for name in obj.keys() {
            self.secrets.insert(name.clone(), name.clone());
        }
    }

    fn features(&mut self, v: &Value) {
        let Some(obj) = v.as_object() else {
            return self.unmapped("features", "not an object");
        };
        for (id, opts) in obj {
            let base = feature_name(id);
            let version = opts
                .get("version")
                .and_then(Value::as_str)
                .filter(|v| !v.is_empty() && *v != "latest" && *v != "lts");
            match base {
                "node" => self.setup.push(match version {
                    Some(v) => format!(
                        "command -v node >/dev/null || (curl -fsSL https://deb.nodesource.com/setup_{v}.x | sudo -E bash - && sudo apt-get install -y nodejs)"
                    ),
                    None => "command -v node >/dev/null || (curl -fsSL https://deb.nodesource.com/setup_lts.x | sudo -E bash - && sudo apt-get install -y nodejs)".to_string(),
                }),
                "python" => self.setup.push(
                    "command -v python3 >/dev/null || (sudo apt-get update && sudo apt-get install -y python3 python3-pip python3-venv)"
                        .to_string(),
                ),
                "rust" => self.setup.push(format!(
                    "command -v cargo >/dev/null || (curl -fsSL https://sh.rustup.rs | sh -s -- -y --default-toolchain {})",
                    version.unwrap_or("stable")
                )),
                // Already in every sandbox image rclaude supports.
                "common-utils" | "git" => {}
                _ => self.unmapped(
                    format!("features.{id}"),
                    "no setup command is known for this feature; add one to [setup]",
                ),
            }
        }
    }

    fn render(&self, source: &Path) -> String {
        let q = |s: &str| toml::Value::String(s.to_string()).to_string();
        let mut t = String::new();
        let _ = writeln!(
            t,
            "# Made by `rclaude init --from-devcontainer` from {}{}.",
            source.display(),
            self.name
                .as_deref()
                .map(|n| format!(" (\"{n}\")"))
                .unwrap_or_default()
        );
        let _ = writeln!(
            t,
            "#:schema {}\n\n[sandbox]\nprovider = \"local\"   # local | e2b | daytona | northflank",
            super::schema::SCHEMA_URL
        );
        if let Some(image) = &self.image {
            let _ = writeln!(t, "image = {}   # E2B template / image name", q(image));
        }
        if let Some(w) = &self.workdir {
            let _ = writeln!(t, "workdir = {}", q(w));
        }
        if let Some(c) = self.cpu {
            let _ = writeln!(t, "cpu = {c}");
        }
        if let Some(m) = self.memory_mb {
            let _ = writeln!(t, "memory_mb = {m}");
        }
        if !self.env.is_empty() {
            t.push_str("\n[env]\n");
            for (k, v) in &self.env {
                let _ = writeln!(t, "{} = {}", toml_key(k), q(v));
            }
        }
        if !self.secrets.is_empty() {
            t.push_str(
                "\n[secrets]   # values are read from your environment when needed, never stored\n",
            );
            for (k, v) in &self.secrets {
                let _ = writeln!(t, "{} = {}", toml_key(k), q(v));
            }
        }
        for (section, lines) in [("setup", &self.setup), ("start", &self.start)] {
            if lines.is_empty() {
                continue;
            }
            let _ = writeln!(t, "\n[{section}]\nrun = [");
            for l in lines {
                let _ = writeln!(t, "  {},", q(l));
            }
            t.push_str("]\n");
        }
        if !self.unmapped.is_empty() {
            t.push_str("\n# Not mapped from devcontainer.json:\n");
            for u in &self.unmapped {
                let _ = writeln!(t, "#   {u}");
            }
        }
        t
    }
}

/// `ghcr.io/devcontainers/features/node:1` → `node`.
fn feature_name(id: &str) -> &str {
    let last = id.rsplit('/').next().unwrap_or(id);
    last.split([':', '@']).next().unwrap_or(last)
}

/// `VAR` when `value` is exactly `${localEnv:VAR}` or `${localEnv:VAR:default}`.
fn local_env_reference(value: &str) -> Option<&str> {
    let inner = value.strip_prefix("${localEnv:")?.strip_suffix('}')?;
    let var = inner.split(':').next()?;
    (!var.is_empty() && var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')).then_some(var)
}

/// `"8gb"`, `"512mb"`, `"4096"` (bytes)… in MiB.
fn parse_memory_mb(s: &str) -> Option<u32> {
    let s = s.trim().to_ascii_lowercase();
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().ok()?;
    let mb = match unit.trim() {
        "tb" => n * 1024.0 * 1024.0,
        "gb" => n * 1024.0,
        "mb" => n,
        "kb" => n / 1024.0,
        "" => n / (1024.0 * 1024.0),
        _ => return None,
    };
    let mb = mb.round();
    (mb >= 1.0 && mb <= f64::from(u32::MAX)).then_some(mb as u32)
}

/// A bare TOML key when possible, else a quoted one.
fn toml_key(k: &str) -> String {
    if !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        k.to_string()
    } else {
        toml::Value::String(k.to_string()).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"// A typical devcontainer.json, comments and trailing commas included.
{
  "name": "My App",
  "image": "mcr.microsoft.com/devcontainers/typescript-node:1-20-bookworm",
  "features": {
    "ghcr.io/devcontainers/features/rust:1": { "version": "1.85" },
    "ghcr.io/devcontainers/features/docker-in-docker:2": {},
  },
  "hostRequirements": { "cpus": 4, "memory": "8gb" },
  "workspaceFolder": "/workspaces/app",
  "onCreateCommand": ["npm", "ci"],
  "postCreateCommand": { "db": "make db", "hooks": "make hooks" },
  "postStartCommand": "npm run dev:prepare",
  "forwardPorts": [3000],
  "containerEnv": { "NODE_ENV": "development", "GITHUB_TOKEN": "${localEnv:GITHUB_TOKEN}" },
  "remoteEnv": { "PATH": "${containerEnv:PATH}:/extra" },
  "secrets": { "NPM_TOKEN": { "description": "for private packages" } },
  "customizations": { "vscode": { "extensions": ["rust-lang.rust-analyzer"] } },
}
"#;

    #[test]
    fn a_typical_file_maps_and_lists_what_it_could_not() {
        let i = import(SAMPLE, Path::new(".devcontainer/devcontainer.json")).unwrap();
        let c = Config::parse(&i.toml, Path::new(".rclaude.toml")).unwrap();
        assert_eq!(
            c.sandbox.image.as_deref(),
            Some("mcr.microsoft.com/devcontainers/typescript-node:1-20-bookworm")
        );
        assert_eq!(c.sandbox.workdir, "/workspaces/app");
        assert_eq!((c.sandbox.cpu, c.sandbox.memory_mb), (Some(4), Some(8192)));
        let setup = c.setup.run.lines();
        assert!(setup[0].contains("--default-toolchain 1.85"), "{setup:?}");
        assert_eq!(&setup[1..], ["npm ci", "make db", "make hooks"]);
        assert_eq!(c.start.run.lines(), ["npm run dev:prepare"]);
        assert_eq!(
            c.env.get("NODE_ENV").map(String::as_str),
            Some("development")
        );
        assert_eq!(c.secrets["GITHUB_TOKEN"].from_env, "GITHUB_TOKEN");
        assert_eq!(c.secrets["NPM_TOKEN"].from_env, "NPM_TOKEN");
        let unmapped = i.unmapped.join("\n");
        for key in [
            "features.ghcr.io/devcontainers/features/docker-in-docker:2",
            "forwardPorts",
            "remoteEnv.PATH",
            "customizations",
        ] {
            assert!(unmapped.contains(key), "{key} not listed in:\n{unmapped}");
        }
        assert!(!unmapped.contains("name:"), "{unmapped}");
        assert!(i.toml.contains("# Not mapped from devcontainer.json:"));
    }

    #[test]
    fn not_json_is_an_error_at_its_line_and_column() {
        let e = import(
            "{\n  \"image\": \"x\",\n  \"name\" oops\n}",
            Path::new("d.json"),
        )
        .unwrap_err();
        let d = e.diagnostic().expect("located");
        assert_eq!(d.line, 3, "{e}");
        assert!(e.to_string().starts_with("d.json:3:"), "{e}");
        let e = import("[1, 2]", Path::new("d.json")).unwrap_err();
        assert!(e.to_string().contains("one JSON object"), "{e}");
    }

    #[test]
    fn memory_sizes() {
        assert_eq!(parse_memory_mb("8gb"), Some(8192));
        assert_eq!(parse_memory_mb("512MB"), Some(512));
        assert_eq!(parse_memory_mb("1.5gb"), Some(1536));
        assert_eq!(parse_memory_mb("4294967296"), Some(4096));
        assert_eq!(parse_memory_mb("lots"), None);
    }
}
