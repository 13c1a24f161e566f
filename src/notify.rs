//! Desktop notifications on this machine: whether there is a graphical session to show one in,
//! and showing it (`notify-send` on Linux desktops, `osascript` on macOS).
//!
//! A notification is a convenience: failing to show one is logged, never an error.

use std::process::{Command, Stdio};

/// Set to `0` to never show desktop notifications.
pub const OPT_OUT_VAR: &str = "RCLAUDE_NOTIFY_DESKTOP";

/// The program that shows notifications here, when this process has a graphical session to
/// show them in (and they were not turned off).
pub fn available() -> Option<&'static str> {
    if std::env::var(OPT_OUT_VAR).is_ok_and(|v| v == "0") {
        return None;
    }
    let program = if cfg!(target_os = "macos") {
        "osascript"
    } else {
        let graphical = ["DISPLAY", "WAYLAND_DISPLAY"]
            .iter()
            .any(|v| std::env::var_os(v).is_some_and(|s| !s.is_empty()));
        if !graphical {
            return None;
        }
        "notify-send"
    };
    crate::host::find_on_path(program).map(|_| program)
}

/// Show `title` / `body`; `false` when it could not be shown.
pub fn show(title: &str, body: &str) -> bool {
    let Some(program) = available() else {
        return false;
    };
    let mut cmd = Command::new(program);
    if program == "osascript" {
        cmd.arg("-e").arg(format!(
            "display notification {} with title {}",
            applescript_string(body),
            applescript_string(title)
        ));
    } else {
        cmd.args(["--app-name", "rclaude", "--", title, body]);
    }
    match cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
    {
        Ok(out) if out.status.success() => true,
        Ok(out) => {
            tracing::warn!(
                "{program} could not show a notification: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
            false
        }
        Err(e) => {
            tracing::warn!("cannot run {program}: {e}");
            false
        }
    }
}

/// An AppleScript string literal.
fn applescript_string(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn applescript_strings_are_quoted() {
        assert_eq!(applescript_string(r#"a "b" \c"#), r#""a \"b\" \\c""#);
    }
}
