//! `rclaude-server`: see `rclaude-server --help` and docs/server.md.

fn main() -> std::process::ExitCode {
    rclaude_server::cli::main()
}
