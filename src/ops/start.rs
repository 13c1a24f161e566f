//! Start a session from a repository URL (`rclaude start URL[@REF]`): a new sandbox clones the
//! repository itself, its committed `.rclaude.toml` (or built-in defaults) applies, `[setup]`
//! and `[start]` run. No local checkout is involved; later commands reach the session with
//! `--session ID` from anywhere.

use super::context::Ctx;
use super::progress::Out;
use super::up::{UpOptions, bring_up};
use crate::config::{Config, ProviderKind};
use crate::deliver::{DeliverError, Upstream};
use crate::error::{CliError, CliResult};
use crate::session::started::StartedDir;
use crate::session::{Origin, SessionRecord};

/// What to start.
#[derive(Debug, Clone)]
pub struct StartOptions {
    /// `URL[@REF]` as given.
    pub target: String,
    /// How the repository is shown (default `owner/name` from the URL).
    pub name: Option<String>,
    /// The provider (default: the server's when logged in to one that offers managed
    /// sessions, else local).
    pub provider: Option<ProviderKind>,
    /// Never a managed session.
    pub direct: bool,
}

/// The local variable holding the token for cloning (the repository's config, which could
/// name another, is only read after the clone).
pub const TOKEN_VAR: &str = "GITHUB_TOKEN";

/// Start the session; on bad input (URL, REF, credentials, config) nothing is left running.
pub async fn start(ui: Out, opts: &StartOptions) -> CliResult<SessionRecord> {
    let (url, git_ref) = crate::deliver::upstream::parse_start_target(&opts.target)
        .map_err(|m| CliError::usage(m).hint("rclaude start github.com/OWNER/REPO[@REF]"))?;
    let up = Upstream::parse(&url);
    let shown = up.display();
    let name = opts.name.clone().unwrap_or_else(|| up.display_name());
    let dir = StartedDir::create()?;
    let mut config = Config::default();
    if let Some(p) = opts.provider {
        config.sandbox.provider = p;
        config.sandbox.managed = Some(false);
    }
    if opts.direct {
        config.sandbox.managed = Some(false);
    }
    let ctx = Ctx::for_started(&dir, &name, config, ui.clone());
    let live = match bring_up(
        &ctx,
        UpOptions {
            sync: false,
            setup: false,
            create_if_gone: false,
            other_provider: crate::ops::up::OtherProvider::Use,
        },
    )
    .await
    {
        Ok(l) => l,
        Err(e) => {
            dir.remove();
            return Err(e);
        }
    };
    let mut record = live.record.clone();
    let token = std::env::var(TOKEN_VAR).ok().filter(|t| !t.is_empty());
    let cloned = clone_and_read_config(
        &ctx,
        &dir,
        &record,
        &*live.sandbox,
        &up,
        git_ref.as_deref(),
        token,
    )
    .await;
    let (cloned, config_text) = match cloned {
        Ok(c) => c,
        Err(e) => {
            drop(live);
            discard(&ctx, &record, &dir).await;
            return Err(e);
        }
    };
    record.origin = Some(Origin {
        url: shown,
        git_ref,
        commit: cloned.commit.clone(),
        branch: cloned.branch.clone(),
        config_from_repository: config_text.is_some(),
    });
    ctx.store.save(&record)?;
    drop(live);

    // The repository's own config from here on, on the provider the session was made with.
    let config = match Ctx::started_config(&dir) {
        Ok(c) => pin_provider(c, &record),
        Err(e) => {
            discard(&ctx, &record, &dir).await;
            return Err(e);
        }
    };
    let ctx = Ctx::for_started(&dir, &name, config, ui);
    if record
        .origin
        .as_ref()
        .is_some_and(|o| !o.config_from_repository)
    {
        ctx.ui
            .info("The repository has no .rclaude.toml: built-in defaults apply");
    }
    let live = bring_up(
        &ctx,
        UpOptions {
            sync: false,
            setup: true,
            create_if_gone: false,
            other_provider: crate::ops::up::OtherProvider::Use,
        },
    )
    .await?;
    super::up::run_lines(
        &ctx,
        &live.record,
        &*live.sandbox,
        "start",
        &ctx.config.start.run.lines(),
    )
    .await?;
    Ok(live.record)
}

/// A started session's config, with the provider its sandbox is on (a repository's
/// `[sandbox] provider` cannot move a running session).
pub fn pin_provider(mut config: Config, record: &SessionRecord) -> Config {
    if record.provider == crate::report::managed::MANAGED {
        config.sandbox.managed = Some(true);
    } else if let Some(k) = ProviderKind::from_name(&record.provider) {
        config.sandbox.provider = k;
        config.sandbox.managed = Some(false);
    }
    config
}

async fn clone_and_read_config(
    ctx: &Ctx,
    dir: &StartedDir,
    record: &SessionRecord,
    sandbox: &dyn crate::provider::Sandbox,
    up: &Upstream,
    git_ref: Option<&str>,
    token: Option<String>,
) -> CliResult<(crate::deliver::clone::Cloned, Option<String>)> {
    let shown = up.display();
    let what = match git_ref {
        Some(r) => format!("Cloning {shown} at {r}"),
        None => format!("Cloning {shown}"),
    };
    let step = ctx.ui.step(what);
    let cloned = match crate::deliver::clone::clone(
        sandbox,
        &record.workdir,
        &up.url,
        &shown,
        git_ref,
        token.as_deref(),
    )
    .await
    {
        Ok(c) => {
            step.done(Some(&format!(
                "{} {}",
                c.branch.as_deref().unwrap_or("detached at"),
                &c.commit[..c.commit.len().min(10)]
            )));
            c
        }
        Err(e) => {
            step.fail(None);
            return Err(clone_error(e, token.is_some()));
        }
    };
    let path = format!("{}/{}", record.workdir, crate::config::CONFIG_FILE);
    let text = match sandbox.read_file(&path).await {
        Ok(b) => Some(String::from_utf8(b.to_vec()).map_err(|_| {
            CliError::config(format!(
                "{shown}: .rclaude.toml is not UTF-8; fix it in the repository"
            ))
        })?),
        Err(crate::provider::SandboxError::NotFound(_)) => None,
        Err(e) => return Err(e.into()),
    };
    if let Some(t) = &text {
        let copy = dir.write_config(t)?;
        // Refuse a broken config now, while nothing depends on the session.
        Config::parse(t, &copy)?;
    }
    Ok((cloned, text))
}

fn clone_error(e: DeliverError, token_given: bool) -> CliError {
    let err = match &e {
        DeliverError::Auth { .. } if token_given => CliError::auth(e.to_string()).hint(format!(
            "the token in ${TOKEN_VAR} cannot read this repository: give it read access, or use another token"
        )),
        DeliverError::Auth { .. } => CliError::auth(e.to_string()).hint(format!(
            "a private repository needs a token: export {TOKEN_VAR}=<a token that can read it>"
        )),
        DeliverError::NotARepository { .. } => CliError::usage(e.to_string())
            .hint("check the URL (`git ls-remote URL` shows whether it is a repository)"),
        DeliverError::UnknownRef { .. } => CliError::usage(e.to_string())
            .hint("name a branch, tag or commit of the repository (URL@REF), or leave @REF out for its default branch"),
        DeliverError::Unreachable { .. } => CliError::unavailable(e.to_string())
            .hint("the sandbox must reach the repository: check the URL and the sandbox's network"),
        _ => CliError::unavailable(e.to_string()),
    };
    err.caused_by(e)
}

/// Destroy a half-made session: its sandbox and its directory.
async fn discard(ctx: &Ctx, record: &SessionRecord, dir: &StartedDir) {
    if let Ok(p) = ctx.provider_for(record)
        && let Err(e) = p.kill(&record.sandbox_id).await
    {
        ctx.ui.warn(format!(
                "could not destroy sandbox {} after the failed start: {e}; `rclaude down --sandbox {} --provider {}` removes it",
                record.sandbox_id, record.sandbox_id, record.provider
            ));
    }
    ctx.reporter.event(
        record,
        "stopped",
        serde_json::json!({ "reason": "start failed" }),
    );
    ctx.reporter.flush().await;
    dir.remove();
}

/// The server's record of session `id` (`None`: no server configured, or no such session).
async fn server_session(
    id: &str,
) -> CliResult<Option<(crate::report::client::ServerClient, serde_json::Value)>> {
    let Some(client) = crate::report::Reporter::from_env().client() else {
        return Ok(None);
    };
    let client = client.map_err(|e| CliError::unavailable(e.to_string()))?;
    let session = match client.session(id).await {
        Ok(s) => s,
        Err(crate::report::client::ServerError::NotFound(_)) => return Ok(None),
        Err(e) => return Err(CliError::unavailable(e.to_string())),
    };
    let s = if session["session"].is_object() {
        session["session"].clone()
    } else {
        session
    };
    Ok(Some((client, s)))
}

/// The refusal for a session whose sandbox another machine drives.
pub fn not_managed(session_id: &str) -> CliError {
    CliError::usage(format!(
        "session {session_id} runs on a sandbox the server does not manage: only the machine that started it can reach it"
    ))
    .hint(format!(
        "its work kept on the server comes back with `rclaude pull --session {session_id}` (or `rclaude checkpoints --session {session_id}`) in a clone of its repository"
    ))
}

/// A session another machine started in direct mode (its own provider key): this machine
/// cannot reach its sandbox, but can take its checkpoints back from the server. `None` when no
/// server is configured or it has no such session.
pub async fn elsewhere(id: &str, repo_root: &std::path::Path) -> CliResult<Option<SessionRecord>> {
    let Some((_, s)) = server_session(id).await? else {
        return Ok(None);
    };
    if s["managed"] == true {
        return Ok(None);
    }
    let text = |k: &str| s[k].as_str().unwrap_or_default().to_string();
    Ok(Some(SessionRecord {
        version: crate::session::RECORD_VERSION,
        repo_root: repo_root.to_path_buf(),
        provider: text("provider"),
        sandbox_id: text("sandbox_id"),
        session_id: s["id"].as_str().unwrap_or(id).to_string(),
        workdir: String::new(),
        created_at: text("created_at"),
        setup_hash: None,
        sync: None,
        claude_session: None,
        origin: None,
    }))
}

/// A managed session started elsewhere (the dashboard's form, `POST /v1/sessions` with
/// `clone_url`, another machine's `rclaude start`), joined by id: recorded here as a started
/// session, with the origin its clone wrote down and its `.rclaude.toml`. `None` when this
/// machine is not logged in to a server or the server has no such session.
pub async fn join(id: &str) -> CliResult<Option<(StartedDir, SessionRecord)>> {
    let Some((client, s)) = server_session(id).await? else {
        return Ok(None);
    };
    let s = &s;
    let session_id = s["id"].as_str().unwrap_or(id).to_string();
    if s["managed"] != true {
        return Err(not_managed(&session_id));
    }
    let repository = s["repository"].as_str().unwrap_or_default().to_string();
    let provider = crate::report::managed::ManagedProvider::new(
        client,
        repository.clone(),
        s["branch"].as_str().unwrap_or("main").to_string(),
    );
    use crate::provider::Provider;
    let sandbox = provider.connect(&session_id).await?;
    let workdir = sandbox.workdir().to_string();
    let origin_text = sandbox
        .read_file(&format!("{workdir}/{}", crate::deliver::clone::ORIGIN_FILE))
        .await
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let field = |k: &str| {
        origin_text
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .map(str::to_string)
            .filter(|v| !v.is_empty())
    };
    let config_text = match sandbox
        .read_file(&format!("{workdir}/{}", crate::config::CONFIG_FILE))
        .await
    {
        Ok(b) => Some(String::from_utf8_lossy(&b).into_owned()),
        Err(_) => None,
    };
    let dir = StartedDir::create()?;
    if let Some(t) = &config_text {
        dir.write_config(t)?;
    }
    let record = SessionRecord {
        version: crate::session::RECORD_VERSION,
        repo_root: dir.dir.clone(),
        provider: crate::report::managed::MANAGED.to_string(),
        sandbox_id: session_id.clone(),
        session_id,
        workdir,
        created_at: s["created_at"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(crate::time::now_rfc3339),
        setup_hash: None,
        sync: None,
        claude_session: None,
        origin: field("url").map(|url| Origin {
            url,
            git_ref: field("ref"),
            commit: field("commit").unwrap_or_default(),
            branch: None,
            config_from_repository: config_text.is_some(),
        }),
    };
    dir.store().save(&record)?;
    Ok(Some((dir, record)))
}
