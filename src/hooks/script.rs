//! The hook script rclaude installs.

use std::path::Path;

/// Marks a hook file as rclaude's (second line of every script).
pub const MARKER: &str = "# rclaude-hook v1";

/// Suffix of the hook that was in place before rclaude's, kept next to it.
pub const ORIG_SUFFIX: &str = ".rclaude-orig";

/// Git's environment for hooks that would point rclaude's own git work elsewhere.
const GIT_VARS: &str = "GIT_DIR GIT_WORK_TREE GIT_INDEX_FILE GIT_PREFIX GIT_OBJECT_DIRECTORY \
                        GIT_ALTERNATE_OBJECT_DIRECTORIES GIT_COMMON_DIR GIT_NAMESPACE";

/// True when `contents` is a hook rclaude installed (any version).
pub fn is_ours(contents: &[u8]) -> bool {
    let head = &contents[..contents.len().min(256)];
    head.split(|&b| b == b'\n')
        .take(3)
        .any(|l| l.starts_with(b"# rclaude-hook "))
}

/// The script for `hook`, calling the rclaude binary at `exe` (or `rclaude` on `PATH` when
/// that file is gone).
///
/// It runs `<hook>.rclaude-orig` first when that file is executable (with git's arguments and
/// stdin; its failure stops here), then `rclaude hooks run <hook> ARGS` with stdin closed so it
/// can never wait for a terminal, and without git's `GIT_DIR`-style variables.
pub fn script(hook: &str, exe: &Path) -> String {
    let exe = crate::shell::quote(&exe.to_string_lossy());
    format!(
        r#"#!/bin/sh
{MARKER}: installed by `rclaude hooks install`.
# Runs the tasks [hooks] {hook} in .rclaude.toml lists in this repository's sandbox; a failing
# task fails the hook. Skip once with RCLAUDE_SKIP_HOOKS=1; remove with `rclaude hooks uninstall`
# (which restores the hook that was here before, kept as {hook}{ORIG_SUFFIX} and run first).
hook={hook}
orig="$(dirname -- "$0")/$hook{ORIG_SUFFIX}"
if [ -x "$orig" ]; then
	"$orig" "$@" || exit $?
fi
installed={exe}
rclaude=$installed
if [ ! -x "$rclaude" ]; then
	rclaude=$(command -v rclaude 2>/dev/null) || rclaude=
fi
if [ -z "$rclaude" ]; then
	case "${{RCLAUDE_SKIP_HOOKS:-}}" in 1|true|yes) exit 0 ;; esac
	echo "rclaude: the $hook hook cannot run: rclaude is neither at $installed nor on PATH." >&2
	echo "  Install rclaude again, skip once with RCLAUDE_SKIP_HOOKS=1, or delete $0." >&2
	exit 127
fi
unset {GIT_VARS}
exec "$rclaude" hooks run "$hook" "$@" </dev/null
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_carry_the_marker_and_quote_the_binary_path() {
        let s = script("pre-push", Path::new("/opt/it's here/rclaude"));
        assert!(s.starts_with("#!/bin/sh\n# rclaude-hook v1:"));
        assert!(is_ours(s.as_bytes()));
        assert!(
            s.contains(r#"installed='/opt/it'\''s here/rclaude'"#),
            "{s}"
        );
        assert!(s.contains("orig=\"$(dirname -- \"$0\")/$hook.rclaude-orig\""));
        assert!(!is_ours(b"#!/bin/sh\nexec make test\n"));
        assert!(!is_ours(b"#!/bin/sh\n\n\n# rclaude-hook v1\n"));
    }
}
