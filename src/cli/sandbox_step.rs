//! The step helper the agent runs inside the sandbox (`rclaude __rclaude-sandbox-step`, see
//! `agent::helper`): one step's job (JSON) on stdin, the step's answer on stdout. Not a user
//! command: dispatched before argument parsing, with no runtime and no logging set up.

use std::io::{Read, Write};

use crate::agent::helper::{HELPER_DECLINED, Job};

/// Run the helper; returns the process exit code.
pub fn run() -> i32 {
    let mut input = Vec::new();
    if let Err(e) = std::io::stdin().read_to_end(&mut input) {
        eprintln!("reading the step's job: {e}");
        return HELPER_DECLINED;
    }
    let job: Job = match serde_json::from_slice(&input) {
        Ok(j) => j,
        Err(e) => {
            eprintln!("not a step job: {e}");
            return HELPER_DECLINED;
        }
    };
    match rclaude_sandbox_git::native::run(&job) {
        Ok(answer) => {
            let mut out = std::io::stdout().lock();
            if out
                .write_all(answer.as_bytes())
                .and_then(|()| out.flush())
                .is_err()
            {
                return HELPER_DECLINED;
            }
            0
        }
        Err(reason) => {
            eprintln!("{reason}");
            HELPER_DECLINED
        }
    }
}
