//! The host's npm network settings (registry, CA file, proxies) for a local sandbox's npm.
//!
//! A local sandbox has its own `HOME` and its own npm prefix (`~/.local`), so npm inside it
//! reads neither the user's `~/.npmrc` nor the machine's global npmrc (which npm looks up
//! under the prefix). Behind a TLS-inspecting proxy that loses the CA file and every install
//! fails with "self-signed certificate in certificate chain". A new local sandbox's agent
//! (`--copy-npm-settings`) asks the host's npm for the effective network settings and writes
//! them into the sandbox's `~/.npmrc`, beside the sandbox's first sync (node takes a few hundred
//! milliseconds to start); commands wait until it is written. Only these keys are copied: auth
//! tokens and other credentials never are.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// The settings copied: what decides where npm connects and which certificates it trusts.
pub const KEYS: &[&str] = &[
    "registry",
    "cafile",
    "proxy",
    "https-proxy",
    "noproxy",
    "strict-ssl",
];

/// How long the host's npm may take to answer before the sandbox goes without its settings.
const NPM_TIMEOUT: Duration = Duration::from_secs(10);

/// The host npm's effective values of [`KEYS`] (unset and `null` values left out), or an empty
/// list when npm is not installed or does not answer in time.
pub fn host_settings() -> Vec<(String, String)> {
    let Ok(mut child) = Command::new("npm")
        .args(["config", "get"])
        .args(KEYS)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
    else {
        return Vec::new();
    };
    let deadline = std::time::Instant::now() + NPM_TIMEOUT;
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => break,
            Ok(None) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10))
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Vec::new();
            }
        }
    }
    let mut out = String::new();
    if let Some(mut stdout) = child.stdout.take() {
        let _ = std::io::Read::read_to_string(&mut stdout, &mut out);
    }
    parse(&out)
}

/// `key=value` lines as `npm config get k1 k2 …` prints them, keeping the known keys with a
/// real value.
fn parse(out: &str) -> Vec<(String, String)> {
    out.lines()
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| (k.trim(), v.trim()))
        .filter(|(k, v)| KEYS.contains(k) && !v.is_empty() && *v != "null" && *v != "undefined")
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Write `settings` as `home/.npmrc` unless the sandbox already has one (the user's own edits
/// inside the sandbox win). Never through a symlink: the file is created, not opened.
pub fn write_into(home: &Path, settings: &[(String, String)]) -> std::io::Result<()> {
    if settings.is_empty() {
        return Ok(());
    }
    let mut text = String::from("# Copied by rclaude from this machine's npm configuration.\n");
    for (k, v) in settings {
        text.push_str(&format!("{k}={v}\n"));
    }
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(home.join(".npmrc"));
    match file {
        Ok(mut f) => std::io::Write::write_all(&mut f, text.as_bytes()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// Ask the host's npm and write the sandbox's `home/.npmrc` on a blocking thread; the
/// receiver turns true when that is done (or failed: a sandbox without the settings still
/// works, behind a TLS-inspecting proxy its npm cannot reach the registry).
pub fn copy_in_background(home: std::path::PathBuf) -> tokio::sync::watch::Receiver<bool> {
    let (done, ready) = tokio::sync::watch::channel(false);
    tokio::task::spawn_blocking(move || {
        if let Err(e) = write_into(&home, &host_settings()) {
            tracing::warn!(
                "cannot write {}: {e}; npm in the sandbox goes without this machine's registry and proxy settings",
                home.join(".npmrc").display()
            );
        }
        let _ = done.send(true);
    });
    ready
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_keeps_known_keys_with_values() {
        let out = "registry=https://r.example/\ncafile=/etc/ca.pem\nproxy=null\n\
                   https-proxy=\n_authToken=secret\nnoproxy=localhost\n";
        assert_eq!(
            parse(out),
            vec![
                ("registry".to_string(), "https://r.example/".to_string()),
                ("cafile".to_string(), "/etc/ca.pem".to_string()),
                ("noproxy".to_string(), "localhost".to_string()),
            ]
        );
    }

    #[test]
    fn write_into_keeps_an_existing_npmrc() {
        let dir = tempfile::tempdir().unwrap();
        let s = vec![("cafile".to_string(), "/etc/ca.pem".to_string())];
        write_into(dir.path(), &s).unwrap();
        let text = std::fs::read_to_string(dir.path().join(".npmrc")).unwrap();
        assert!(text.contains("cafile=/etc/ca.pem\n"), "{text}");
        std::fs::write(dir.path().join(".npmrc"), "mine\n").unwrap();
        write_into(dir.path(), &s).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join(".npmrc")).unwrap(),
            "mine\n"
        );
    }
}
