//! One arbitrary request to a real agent (filesystem RPCs and `/files`), in process.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    rclaude::agent::fuzzing::agent_request(data);
});
