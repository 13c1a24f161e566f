//! What the subcommands that talk to the rclaude server share: its errors as CLI errors.

use crate::error::CliError;
use crate::report::ServerError;

/// Map a server error to a CLI error with a hint.
pub fn server_error(e: ServerError) -> CliError {
    match e {
        ServerError::Unauthorized(_) => CliError::auth(e.to_string())
            .hint("check the token, or create one with `rclaude-server admin create-token`"),
        ServerError::Unreachable { .. } => {
            CliError::unavailable(e.to_string()).hint("is the server running? check the URL")
        }
        ServerError::NotFound(_) => CliError::unavailable(e.to_string()),
        // The server refused what we asked for (a value out of its range): a usage error.
        ServerError::Rejected {
            status: 400 | 422, ..
        } => CliError::usage(e.to_string()),
        _ => CliError::unavailable(e.to_string()),
    }
}
