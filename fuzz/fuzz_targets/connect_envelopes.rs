//! Arbitrary bytes through the Connect envelope decoder (as a streamed request or response
//! body arrives) and each message through the protocol's JSON types.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rclaude::envd::connect::EnvelopeDecoder;
use rclaude::envd::proto::{StartRequest, StartResponse, WatchDirRequest};

fuzz_target!(|data: &[u8]| {
    // Feed in two uneven pieces: envelopes split across chunks must decode the same.
    let split = data.first().map_or(0, |b| *b as usize % (data.len().max(1)));
    let mut dec = EnvelopeDecoder::new();
    dec.push(&data[..split]);
    let mut seen = 0usize;
    loop {
        match dec.next_envelope() {
            Ok(Some(env)) => {
                seen += env.payload.len();
                let _ = serde_json::from_slice::<StartRequest>(&env.payload);
                let _ = serde_json::from_slice::<StartResponse>(&env.payload);
                let _ = serde_json::from_slice::<WatchDirRequest>(&env.payload);
            }
            Ok(None) => {
                if split < data.len() && seen <= data.len() {
                    dec.push(&data[split..]);
                    seen = data.len() + 1; // push the rest only once
                    continue;
                }
                break;
            }
            Err(_) => break,
        }
    }
});
