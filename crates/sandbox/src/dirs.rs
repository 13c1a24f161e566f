//! Where rclaude keeps its files on this machine.
//!
//! `RCLAUDE_HOME`, when set, puts everything under one directory (tests, portable installs).
//! Otherwise the XDG base directories are used (`~/Library/Application Support` on macOS).

use std::path::PathBuf;

fn home() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp"))
}

fn xdg(var: &str, fallback: &str, short: &str) -> PathBuf {
    if let Some(root) = std::env::var_os("RCLAUDE_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(root).join(short);
    }
    if let Some(v) = std::env::var_os(var).filter(|v| !v.is_empty()) {
        return PathBuf::from(v).join("rclaude");
    }
    if cfg!(target_os = "macos") {
        return home().join("Library/Application Support/rclaude");
    }
    home().join(fallback).join("rclaude")
}

/// Local sandboxes and other bulky data (`$XDG_DATA_HOME/rclaude`).
pub fn data_dir() -> PathBuf {
    xdg("XDG_DATA_HOME", ".local/share", "data")
}

/// Per-repository session records, queued server events (`$XDG_STATE_HOME/rclaude`).
pub fn state_dir() -> PathBuf {
    xdg("XDG_STATE_HOME", ".local/state", "state")
}

/// Credentials and user settings (`$XDG_CONFIG_HOME/rclaude`).
pub fn config_dir() -> PathBuf {
    xdg("XDG_CONFIG_HOME", ".config", "config")
}
