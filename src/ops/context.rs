//! What most operations need: the repository, its config, its session record and provider.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use crate::config::{Config, SecretPhase};
use crate::error::{CliError, CliResult};
use crate::ops::progress::Out;
use crate::provider::{Provider, Sandbox};
use crate::report::{Reporter, SessionFacts};
use crate::session::started::StartedDir;
use crate::session::{Repo, SessionRecord, SessionStore};

/// A command's view of the repository it runs in.
pub struct Ctx {
    /// Where progress goes (the terminal, for the CLI).
    pub ui: Out,
    pub repo: Repo,
    pub config: Config,
    pub store: SessionStore,
    pub reporter: Reporter,
    /// A named session of the repository (`--session NAME`), beside its default one.
    pub session_name: Option<String>,
    /// The repository is checked out here (`false` for a session started from a URL: nothing
    /// to sync, the sandbox's clone is the only copy).
    pub local_checkout: bool,
    /// Whether new sessions are managed by the server, once decided ([`Ctx::decide_managed`]).
    managed: std::sync::OnceLock<bool>,
}

impl Ctx {
    /// Discover the repository containing `dir` and load its `.rclaude.toml` (required).
    pub fn load(dir: &Path, ui: Out) -> CliResult<Ctx> {
        let repo = Repo::discover(dir)?;
        let path = repo.config_path();
        let config = Config::load(&path)?;
        redact_secrets_of(&config);
        let store = SessionStore::for_repo(&repo);
        Ok(Ctx {
            ui,
            repo,
            config,
            store,
            reporter: Reporter::from_env(),
            session_name: None,
            local_checkout: true,
            managed: std::sync::OnceLock::new(),
        })
    }

    /// The repository's named session `name` (validated by the caller): its own record and
    /// lock; its work comes back as `rclaude/<name>/<branch>` (with the default
    /// `[sync] pull_branch`).
    pub fn load_named(dir: &Path, ui: Out, name: &str) -> CliResult<Ctx> {
        let mut ctx = Ctx::load(dir, ui)?;
        ctx.store = SessionStore::for_named(&ctx.repo, name);
        if ctx.config.sync.pull_branch == crate::config::SyncConfig::default().pull_branch {
            ctx.config.sync.pull_branch = format!("rclaude/{name}/{{branch}}");
        }
        ctx.session_name = Some(name.to_string());
        Ok(ctx)
    }

    /// Like [`Ctx::load`], with built-in defaults when the repository has no `.rclaude.toml`
    /// (`pull --session` into any clone of a started session's repository).
    pub fn load_or_default(dir: &Path, ui: Out) -> CliResult<Ctx> {
        let repo = Repo::discover(dir)?;
        if repo.config_path().exists() {
            return Ctx::load(dir, ui);
        }
        let store = SessionStore::for_repo(&repo);
        Ok(Ctx {
            ui,
            repo,
            config: Config::default(),
            store,
            reporter: Reporter::from_env(),
            session_name: None,
            local_checkout: true,
            managed: std::sync::OnceLock::new(),
        })
    }

    /// A session started from a URL (`rclaude start`): its record and config live in `dir`;
    /// `name` is how the repository is shown (`owner/name`).
    pub fn for_started(dir: &StartedDir, name: &str, config: Config, ui: Out) -> Ctx {
        redact_secrets_of(&config);
        Ctx {
            ui,
            repo: Repo {
                root: dir.dir.clone(),
                key: "session".into(),
                name: name.to_string(),
            },
            config,
            store: dir.store(),
            reporter: Reporter::from_env(),
            session_name: None,
            local_checkout: false,
            managed: std::sync::OnceLock::new(),
        }
    }

    /// The config of a started session: the `.rclaude.toml` its clone had, else the defaults.
    pub fn started_config(dir: &StartedDir) -> CliResult<Config> {
        match dir.config_text() {
            Some(text) => Ok(Config::parse(
                &text,
                &dir.dir.join(crate::session::started::CONFIG_FILE),
            )?),
            None => Ok(Config::default()),
        }
    }

    /// Decide whether new sessions are managed by the server: `[sandbox] managed` when set
    /// (`RCLAUDE_DIRECT=1` forces direct mode); unset, managed when logged in to a server that
    /// offers managed sandboxes (asked once, at the first session this command creates).
    pub async fn decide_managed(&self) -> bool {
        if let Some(m) = self.managed.get() {
            return *m;
        }
        let direct = std::env::var("RCLAUDE_DIRECT").is_ok_and(|v| !v.is_empty() && v != "0");
        let m = match self.config.sandbox.managed {
            _ if direct => false,
            Some(m) => m,
            None => self.server_offers_managed().await,
        };
        *self.managed.get_or_init(|| m)
    }

    async fn server_offers_managed(&self) -> bool {
        let Some(Ok(client)) = self.reporter.client() else {
            return false;
        };
        match client.me().await {
            Ok(me) => me["capabilities"]["managed_sessions"].is_string(),
            Err(e) => {
                self.ui.warn(format!(
                    "{e}; running the sandbox with your own provider (`[sandbox] managed = true` \
                     waits for the server instead)"
                ));
                false
            }
        }
    }

    fn is_managed(&self) -> bool {
        self.managed
            .get()
            .copied()
            .unwrap_or(self.config.sandbox.managed == Some(true))
    }

    /// The provider named in the config (the server's, with `[sandbox] managed = true`).
    pub fn provider(&self) -> CliResult<Box<dyn Provider>> {
        if self.is_managed() {
            return self.managed_provider();
        }
        Ok(crate::provider::select::for_settings(
            self.config.sandbox.provider,
            self.config.sandbox.project.as_deref(),
        )?)
    }

    /// The name sessions of this config are recorded under.
    pub fn provider_name(&self) -> &'static str {
        if self.is_managed() {
            crate::report::managed::MANAGED
        } else {
            self.config.sandbox.provider.as_str()
        }
    }

    /// Sessions the logged-in server creates and runs.
    fn managed_provider(&self) -> CliResult<Box<dyn Provider>> {
        let client = self
            .reporter
            .client()
            .ok_or_else(|| {
                CliError::config("[sandbox] managed = true needs an rclaude server").hint(
                    "`rclaude login --server URL` first, or set managed = false to run the \
                     sandbox with your own provider",
                )
            })?
            .map_err(|e| CliError::unavailable(e.to_string()))?;
        let facts = self.session_facts();
        Ok(Box::new(crate::report::managed::ManagedProvider::new(
            client,
            facts.repository,
            facts.branch,
        )))
    }

    /// The provider that owns an existing session (which may differ from the config's).
    pub fn provider_for(&self, record: &SessionRecord) -> CliResult<Box<dyn Provider>> {
        if record.provider == crate::report::managed::MANAGED {
            return self.managed_provider();
        }
        let kind = crate::config::ProviderKind::from_name(&record.provider).ok_or_else(|| {
            CliError::internal(format!(
                "session record names unknown provider {:?}",
                record.provider
            ))
        })?;
        Ok(crate::provider::select::for_kind(kind)?)
    }

    /// The session record, or an error telling the user to run `rclaude up`.
    pub fn require_session(&self) -> CliResult<SessionRecord> {
        self.store.load()?.ok_or_else(|| match &self.session_name {
            Some(n) => CliError::unavailable(format!(
                "no session \"{n}\" for {}",
                self.repo.root.display()
            ))
            .hint(format!(
                "`rclaude up -s {n}` creates it; `rclaude ls` lists this repository's sessions"
            )),
            None => CliError::unavailable(format!("no sandbox for {}", self.repo.root.display()))
                .hint("`rclaude up` creates one and syncs this repository into it"),
        })
    }

    /// Connect to the session's sandbox (resuming it if paused).
    pub async fn connect(&self, record: &SessionRecord) -> CliResult<Arc<dyn Sandbox>> {
        let provider = self.provider_for(record)?;
        Ok(provider.connect(&record.sandbox_id).await?)
    }

    /// Environment for a command of `phase` (`Setup` for `[setup]`, `Run` for everything
    /// else) run in the sandbox: `[env]`, the `[secrets]` given to that phase, and rclaude's own
    /// variables. Secret values come from this process's environment only, and are redacted
    /// from whatever this process shows or sends.
    pub fn exec_env(
        &self,
        record: &SessionRecord,
        phase: SecretPhase,
    ) -> CliResult<BTreeMap<String, String>> {
        let mut env = self.config.env.clone();
        let secrets = self
            .config
            .resolve_secrets(phase, |name| std::env::var(name).ok())?;
        for (name, value) in &secrets {
            crate::redact::register(name, value);
        }
        env.extend(secrets);
        env.insert("RCLAUDE".into(), "1".into());
        env.insert("RCLAUDE_SESSION".into(), record.session_id.clone());
        env.insert("RCLAUDE_REPO".into(), self.repo.name.clone());
        Ok(env)
    }
}

/// Redact the values of `config`'s secrets that this machine's environment has (any phase):
/// output of runs started by another command (`attach`, `logs`) may show them too.
fn redact_secrets_of(config: &Config) {
    for (name, spec) in &config.secrets {
        if let Ok(value) = std::env::var(&spec.from_env) {
            crate::redact::register(name, &value);
        }
    }
}

impl Ctx {
    /// What the server records about a new session.
    pub fn session_facts(&self) -> SessionFacts {
        SessionFacts {
            repository: if self.local_checkout {
                self.repo.display_name()
            } else {
                self.repo.name.clone()
            },
            branch: self.repo.branch().unwrap_or_else(|| "HEAD".into()),
            config_hash: self.config.hash(),
        }
    }
}
