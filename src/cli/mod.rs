//! The `rclaude` command line: argument parsing and dispatch, one file per subcommand.

mod agent;
mod args;
mod attach;
mod checkpoints;
mod ci;
mod claude;
mod completions;
mod down;
mod exec;
mod fork;
mod hooks;
mod init;
mod login;
mod logs;
mod ls;
mod man;
mod mcp;
mod open;
mod output;
mod pause;
mod port;
mod pr;
mod pull;
mod resume;
mod run;
mod sandbox_step;
mod schema;
mod server;
mod shell;
mod start;
mod status;
mod sync;
mod up;
mod usage;
mod wait;
mod watch;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::error::{CliError, CliResult, ErrorKind};
use crate::ops::context::Ctx;

const EXIT_CODES: &str = "\
Exit codes:
  0      success
  N      exec, run, ci, hooks, setup: a command in the sandbox failed with exit code N
         (passed through as is; 128+S when it was killed by signal S)
  64     usage error (bad arguments)
  65     sync refused or failed (it would lose work, or a bundle is corrupt)
  69     sandbox, provider or agent unavailable, or the sandbox is gone
  70     internal error
  74     local I/O error
  77     authentication failed (API key or token)
  78     not in a git repository, or .rclaude.toml missing or invalid
  124    ci: --timeout expired, or a task's own timeout stopped it
  129    interrupted by SIGHUP (the remote command is stopped first)
  130    interrupted by SIGINT / Ctrl-C (the remote command is stopped first)
  143    interrupted by SIGTERM (the remote command is stopped first)";

const EXAMPLES: &str = concat!(
    "Examples:\n",
    "  rclaude init                 write a starter .rclaude.toml for this repository\n",
    "  rclaude up                   create or resume the sandbox, sync, run setup\n",
    "  rclaude run test             run the `test` task (and its dependencies) remotely\n",
    "  rclaude exec -- ls -la       run any command in the sandbox\n",
    "  rclaude claude \"fix the build\" --pull   Claude Code works in the sandbox; its edits come back\n",
    "  rclaude shell                an interactive terminal in the sandbox\n",
    "  rclaude pull                 bring the sandbox's work back as branch rclaude/<branch>\n",
    "  rclaude hooks install        run [hooks] tasks remotely from git hooks (e.g. pre-push)\n",
    "  rclaude ci test --json       run tasks in a throwaway sandbox (for CI)\n",
    "  rclaude down --yes           destroy the sandbox\n\n",
);

/// Run Claude Code and your tasks in a persistent remote sandbox for this repository.
///
/// rclaude keeps one sandbox per repository. `rclaude up` creates or resumes it and syncs your
/// work tree into it with git bundles (your index, stash and refs are never touched);
/// `exec` and `run` run work there with live output and the remote exit code; `pull` brings
/// the sandbox's commits and edits back as a local branch.
#[derive(Debug, Parser)]
#[command(name = "rclaude", version, about, long_about, after_help = EXIT_CODES)]
#[command(after_long_help = format!("{EXAMPLES}{EXIT_CODES}"))]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// What `--session` selects.
pub enum Selected {
    /// No `--session`: the repository's default session.
    Default,
    /// A named session of the repository in the start directory.
    Named(String),
    /// A session started from a URL (`rclaude start`).
    Started(
        crate::session::started::StartedDir,
        Box<crate::session::SessionRecord>,
    ),
    /// A session another machine started in direct mode: only its checkpoints on the server
    /// can be reached (`pull`, `checkpoints`); the record names it, rooted at this checkout.
    Elsewhere(Box<crate::session::SessionRecord>),
}

/// Options every command accepts.
#[derive(Debug, Clone, clap::Args)]
pub struct GlobalArgs {
    /// Run as if started in DIR (like `git -C`).
    #[arg(short = 'C', long = "dir", global = true, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Only print warnings, errors and command output.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Act on session NAME of this repository instead of its default one (`up -s NAME` creates
    /// it; sessions run side by side), or on a session ID from `rclaude start` (from any
    /// directory; `logs` takes any session id the server knows).
    #[arg(
        short = 's',
        long,
        global = true,
        value_name = "NAME|ID",
        env = "RCLAUDE_SESSION_ID",
        add = clap_complete::ArgValueCompleter::new(args::session_names)
    )]
    pub session: Option<String>,
}

impl GlobalArgs {
    /// `-C DIR` or the current directory.
    pub fn start_dir(&self) -> CliResult<PathBuf> {
        match &self.dir {
            Some(d) => Ok(d.clone()),
            None => std::env::current_dir()
                .map_err(|e| CliError::io("reading the current directory", e)),
        }
    }

    /// Which session `--session` names: none (the repository's default session), a named
    /// session of the repository here, or a session started from a URL. In a checkout a valid
    /// name is the repository's session of that name unless only a started session matches it.
    pub async fn selected(&self) -> CliResult<Selected> {
        let Some(sel) = &self.session else {
            return Ok(Selected::Default);
        };
        let repo = crate::session::Repo::discover(&self.start_dir()?).ok();
        let name_ok = crate::session::validate_session_name(sel);
        if let Some(repo) = &repo
            && name_ok.is_ok()
            && crate::session::SessionStore::for_named(repo, sel)
                .load()?
                .is_some()
        {
            return Ok(Selected::Named(sel.clone()));
        }
        if let Some((dir, record)) = crate::session::started::find(sel).ok().flatten() {
            return Ok(Selected::Started(dir, Box::new(record)));
        }
        // A managed session started elsewhere (the dashboard, another machine): join it.
        let looks_like_id = uuid::Uuid::parse_str(sel).is_ok();
        if let (true, Some(repo)) = (looks_like_id, &repo)
            && let Some(record) = crate::ops::start::elsewhere(sel, &repo.root).await?
        {
            return Ok(Selected::Elsewhere(Box::new(record)));
        }
        if (looks_like_id || name_ok.is_err() || repo.is_none())
            && let Some((dir, record)) = crate::ops::start::join(sel).await?
        {
            return Ok(Selected::Started(dir, Box::new(record)));
        }
        match (&repo, name_ok) {
            (Some(_), Ok(())) => Ok(Selected::Named(sel.clone())),
            (Some(_), Err(m)) => Err(CliError::usage(m)),
            (None, _) => Err(CliError::usage(format!(
                "no session {sel:?} started from a URL on this machine"
            ))
            .hint("`rclaude start URL` starts one; named sessions (`--session NAME`) belong to a repository: run inside its checkout")),
        }
    }

    /// The repository, its config and session store, seen from the start directory; with
    /// `--session`, the session it names (see [`GlobalArgs::selected`]).
    pub async fn ctx(&self) -> CliResult<Ctx> {
        let ui = crate::ui::Ui::detect(self.quiet).out();
        match self.selected().await? {
            Selected::Default => Ctx::load(&self.start_dir()?, ui),
            Selected::Named(name) => Ctx::load_named(&self.start_dir()?, ui, &name),
            Selected::Elsewhere(record) => Err(crate::ops::start::not_managed(&record.session_id)),
            Selected::Started(dir, record) => {
                let name = record
                    .origin
                    .as_ref()
                    .map(|o| crate::deliver::Upstream::parse(&o.url).display_name())
                    .unwrap_or_else(|| record.session_id.clone());
                let config = crate::ops::start::pin_provider(Ctx::started_config(&dir)?, &record);
                Ok(Ctx::for_started(&dir, &name, config, ui))
            }
        }
    }

    /// The checkout at the start directory and its default session (hooks belong to the
    /// repository, not to a session).
    pub fn checkout_ctx(&self) -> CliResult<Ctx> {
        Ctx::load(&self.start_dir()?, crate::ui::Ui::detect(self.quiet).out())
    }

    /// The named session `name` of the checkout at the start directory (`claude --new`).
    pub fn local_named_ctx(&self, name: &str) -> CliResult<Ctx> {
        Ctx::load_named(
            &self.start_dir()?,
            crate::ui::Ui::detect(self.quiet).out(),
            name,
        )
    }

    /// The checkout at the start directory, ignoring `--session` (`pull --session` brings a
    /// started session's work into it).
    pub fn local_ctx(&self) -> CliResult<Ctx> {
        Ctx::load_or_default(&self.start_dir()?, crate::ui::Ui::detect(self.quiet).out())
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    Init(init::Args),
    Start(start::Args),
    Up(up::Args),
    Sync(sync::Args),
    Pull(pull::Args),
    Checkpoints(checkpoints::Args),
    Pr(pr::Args),
    Exec(exec::Args),
    Run(run::Args),
    Ci(ci::Args),
    Hooks(hooks::Args),
    Status(status::Args),
    Pause(pause::Args),
    Resume(resume::Args),
    Down(down::Args),
    Fork(fork::Args),
    Watch(watch::Args),
    Claude(claude::Args),
    Attach(attach::Args),
    Wait(wait::Args),
    Shell(shell::Args),
    Port(port::Args),
    Open(open::Args),
    Login(login::LoginArgs),
    Logout(login::LogoutArgs),
    Usage(usage::Args),
    Logs(logs::Args),
    Ls(ls::Args),
    Schema(schema::Args),
    Completions(completions::Args),
    Man(man::Args),
    Mcp(mcp::Args),
    Agent(agent::Args),
}

/// Entry point of the `rclaude` binary; returns the process exit code.
pub fn main() -> i32 {
    if std::env::args_os().nth(1).as_deref() == Some(crate::agent::helper::HELPER.as_ref()) {
        return sandbox_step::run();
    }
    completions::complete_if_asked();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => 0,
                _ => ErrorKind::Usage.exit_code(),
            };
            let _ = e.print();
            return code;
        }
    };
    init_logging(&cli.command);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ErrorKind::Internal.exit_code();
        }
    };
    let result = runtime.block_on(dispatch(cli));
    // Don't wait for stray blocking tasks (e.g. a stdin reader) on the way out.
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    match result {
        Ok(code) => code,
        Err(e) => {
            report_error(&e);
            e.code()
        }
    }
}

async fn dispatch(cli: Cli) -> Result<i32, CliError> {
    let g = cli.global;
    match cli.command {
        Command::Init(a) => init::run(&g, a).await,
        Command::Up(a) => up::run(&g, a).await,
        Command::Sync(a) => sync::run(&g, a).await,
        Command::Pull(a) => pull::run(&g, a).await,
        Command::Checkpoints(a) => checkpoints::run(&g, a).await,
        Command::Start(a) => start::run(&g, a).await,
        Command::Pr(a) => pr::run(&g, a).await,
        Command::Exec(a) => exec::run(&g, a).await,
        Command::Run(a) => run::run(&g, a).await,
        Command::Ci(a) => ci::run(&g, a).await,
        Command::Hooks(a) => hooks::run(&g, a).await,
        Command::Status(a) => status::run(&g, a).await,
        Command::Pause(a) => pause::run(&g, a).await,
        Command::Resume(a) => resume::run(&g, a).await,
        Command::Down(a) => down::run(&g, a).await,
        Command::Fork(a) => fork::run(&g, a).await,
        Command::Watch(a) => watch::run(&g, a).await,
        Command::Claude(a) => claude::run(&g, a).await,
        Command::Attach(a) => attach::run(&g, a).await,
        Command::Wait(a) => wait::run(&g, a).await,
        Command::Shell(a) => shell::run(&g, a).await,
        Command::Port(a) => port::run(&g, a).await,
        Command::Open(a) => open::run(&g, a).await,
        Command::Login(a) => login::login(&g, a).await,
        Command::Logout(a) => login::logout(&g, a).await,
        Command::Usage(a) => usage::run(&g, a).await,
        Command::Logs(a) => logs::run(&g, a).await,
        Command::Ls(a) => ls::run(&g, a).await,
        Command::Schema(a) => schema::run(&g, a).await,
        Command::Completions(a) => completions::run(&g, a).await,
        Command::Man(a) => man::run(&g, a).await,
        Command::Mcp(a) => mcp::run(&g, a).await,
        Command::Agent(a) => agent::run(&g, a).await,
    }
}

fn report_error(e: &CliError) {
    use std::io::Write;
    // Never panic here: after SIGHUP the terminal may be gone.
    let _ = std::io::stderr()
        .lock()
        .write_all(crate::redact::text(&e.render()).as_bytes());
    // A front end that runs rclaude (the MCP server) reads the error back as JSON.
    if let Some(path) = std::env::var_os(crate::mcp::invoke::ERROR_FILE_ENV) {
        let report = serde_json::json!({
            "kind": e.kind.as_str(),
            "message": e.message,
            "hint": e.hint,
            "causes": e.causes(),
            "exit_code": e.code(),
            "remote": e.exit_code.is_some(),
        });
        let _ = std::fs::write(path, crate::redact::text(&report.to_string()).as_bytes());
    }
}

fn init_logging(command: &Command) {
    use tracing_subscriber::EnvFilter;
    // The agent logs at info by default (its log file is the sandbox's diagnostics); the CLI is quiet.
    // `RCLAUDE_AGENT_LOG` sets the agent's level alone (the CLI that starts it passes its
    // environment on), so an agent can log at debug without the CLI's output changing.
    let agent = matches!(command, Command::Agent(_));
    let default = if agent { "info" } else { "warn" };
    let filter = agent
        .then(|| EnvFilter::try_from_env("RCLAUDE_AGENT_LOG").ok())
        .flatten()
        .or_else(|| EnvFilter::try_from_env("RCLAUDE_LOG").ok())
        .unwrap_or_else(|| EnvFilter::new(default));
    // Colours only for a terminal: a log read from a pipe or a file (the agent's log, CI) is
    // plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(ansi)
        .try_init();
}
