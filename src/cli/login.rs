//! `rclaude login` / `rclaude logout`: store or forget the server URL and API token.

use std::io::{BufRead, IsTerminal, Write};

use super::GlobalArgs;
use crate::error::{CliError, CliResult};
use crate::report::{Credentials, ServerClient};
use crate::ui::Ui;

/// Log in to an rclaude server so sessions, usage and events are reported to it.
///
/// The token is read from RCLAUDE_TOKEN when set, otherwise asked for (input hidden). It is
/// checked against the server, then stored with 0600 permissions in the user config directory.
/// `rclaude-server admin create-account NAME` prints a first token.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  rclaude login --server https://rclaude.example.com\n  RCLAUDE_TOKEN=rcl_... rclaude login --server http://127.0.0.1:7420"
)]
pub struct LoginArgs {
    /// The server's base URL.
    #[arg(long, value_name = "URL", env = "RCLAUDE_SERVER")]
    pub server: String,
}

/// Forget the stored server credentials.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  rclaude logout")]
pub struct LogoutArgs {}

pub async fn login(g: &GlobalArgs, args: LoginArgs) -> CliResult {
    let ui = Ui::detect(g.quiet);
    let token = match std::env::var("RCLAUDE_TOKEN") {
        Ok(t) if !t.trim().is_empty() => t,
        _ => read_secret("API token: ")?,
    };
    if token.trim().is_empty() {
        return Err(CliError::usage("no token given")
            .hint("paste the token printed by `rclaude-server admin create-account`"));
    }
    let creds =
        Credentials::new(&args.server, &token).map_err(|e| CliError::usage(e.to_string()))?;
    let client = ServerClient::new(&creds).map_err(|e| CliError::internal(e.to_string()))?;
    let me = client.me().await.map_err(super::server::server_error)?;
    let path = creds
        .save()
        .map_err(|e| CliError::new(crate::error::ErrorKind::Io, e.to_string()))?;
    let who = me["account"]["name"]
        .as_str()
        .or_else(|| me["name"].as_str())
        .unwrap_or("your account");
    ui.info(format!(
        "Logged in to {} as {who}; token stored in {} (mode 0600).",
        creds.server,
        path.display()
    ));
    Ok(0)
}

pub async fn logout(g: &GlobalArgs, _args: LogoutArgs) -> CliResult {
    let ui = Ui::detect(g.quiet);
    let removed = Credentials::remove()
        .map_err(|e| CliError::new(crate::error::ErrorKind::Io, e.to_string()))?;
    ui.info(if removed {
        "Logged out; stored credentials removed."
    } else {
        "Not logged in."
    });
    Ok(0)
}

/// Read a line without echo when stdin is a terminal.
fn read_secret(prompt: &str) -> CliResult<String> {
    let stdin = std::io::stdin();
    let tty = stdin.is_terminal();
    if !tty {
        return Err(CliError::usage(
            "no token: set RCLAUDE_TOKEN (stdin is not a terminal, so rclaude cannot ask)",
        ));
    }
    eprint!("{prompt}");
    let _ = std::io::stderr().flush();
    let guard = EchoOff::new();
    let mut line = String::new();
    let r = stdin.lock().read_line(&mut line);
    drop(guard);
    eprintln!();
    r.map_err(|e| CliError::io("reading the token", e))?;
    Ok(line.trim().to_string())
}

/// Turns terminal echo off until dropped.
struct EchoOff(Option<libc::termios>);

impl EchoOff {
    fn new() -> EchoOff {
        // SAFETY: tcgetattr/tcsetattr on fd 0 with a zeroed, then filled termios.
        unsafe {
            let mut t: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(0, &mut t) != 0 {
                return EchoOff(None);
            }
            let saved = t;
            t.c_lflag &= !libc::ECHO;
            libc::tcsetattr(0, libc::TCSANOW, &t);
            EchoOff(Some(saved))
        }
    }
}

impl Drop for EchoOff {
    fn drop(&mut self) {
        if let Some(t) = self.0 {
            // SAFETY: restoring the attributes read in `new`.
            unsafe { libc::tcsetattr(0, libc::TCSANOW, &t) };
        }
    }
}
