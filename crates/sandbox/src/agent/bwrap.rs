//! The bubblewrap sandbox of a local sandbox: what its processes see of the host, and the PID
//! namespace they share.
//!
//! A process sees a file system built up from nothing: the system directories read-only
//! (`/usr`, `/etc`, `/opt` and the `/bin`, `/lib*`, `/sbin` links or directories), paths the
//! sandbox was told to expose (read-only), its own root read-write (which holds its `HOME`), and
//! private `/dev`, `/proc`, `/tmp` and `/var/tmp`. Nothing else of the host exists for it: not the
//! user's home (`~/.ssh`, other repositories), not rclaude's data, state and config directories
//! (other sandboxes' agent tokens, the server token). Capabilities are dropped and SysV IPC is
//! private. The network is shared (package installs and Claude Code need it); every local agent
//! requires its own token, which no other sandbox can read.
//!
//! All processes of one sandbox run in one PID namespace, held open by a small holder process
//! (`bwrap --unshare-pid ... cat` reading a pipe the agent keeps open): commands see each other
//! (`server &` keeps running for later commands) but no process outside the sandbox, so neither
//! the agent nor another sandbox's processes (`/proc/PID/root`, `/proc/PID/environ`). When the
//! agent exits or dies, the pipe closes, the holder ends and the kernel kills every process
//! left in the namespace.

use std::ffi::OsString;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};

use crate::network::NetworkPolicy;

/// System directories every sandbox sees read-only, when the host has them.
const SYSTEM_DIRS: &[&str] = &["/usr", "/etc", "/opt"];
/// Top-level entries that are symlinks into `/usr` on merged-/usr systems (kept as symlinks)
/// and directories elsewhere (bound read-only).
const SYSTEM_LINKS: &[&str] = &["/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"];
/// Where a PTY process finds a private devpts for terminals it opens itself (`script`, tmux).
const PRIVATE_PTS: &str = "/dev/.rclaude-pts";
/// Where a helper executable of rclaude's is seen inside the sandbox.
pub(crate) const HELPER_PATH: &str = "/.rclaude-helper";
/// `ioctl(NS_GET_USERNS)`: the user namespace that owns a namespace.
const NS_GET_USERNS: libc::c_ulong = 0xb701;

/// What a sandbox sees of the host besides the system directories and its own root.
#[derive(Debug, Clone, Default)]
pub struct View {
    /// Host paths bound read-only at the same place (toolchains such as `~/.rustup`).
    pub expose: Vec<PathBuf>,
    /// Directories replaced by an empty tmpfs wherever an exposed path would show them
    /// (rclaude's own data, state and config directories).
    pub hide: Vec<PathBuf>,
    /// Where the sandbox may connect to. Restricted: its own network namespace, whose only way
    /// out is the agent's allow-listing proxy ([`super::egress`]).
    pub network: NetworkPolicy,
}

/// bubblewrap at a path, with the sandbox's view and PID namespace.
pub struct Bwrap {
    path: PathBuf,
    view: View,
    holder: Mutex<Option<Holder>>,
}

impl std::fmt::Debug for Bwrap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bwrap")
            .field("path", &self.path)
            .field("view", &self.view)
            .finish()
    }
}

/// The process holding a sandbox's PID namespace open.
struct Holder {
    child: Child,
    ns: Arc<NsFds>,
    /// Write end of the holder's stdin: closing it (the agent exiting) ends the holder.
    _stdin: OwnedFd,
    /// The egress proxy serving this namespace (restricted network only); stops with it.
    _proxy: Option<ProxyTask>,
}

/// A running egress proxy task, stopped when dropped.
struct ProxyTask(tokio::task::AbortHandle);

impl Drop for ProxyTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Namespace descriptors a command joins.
struct NsFds {
    pid: OwnedFd,
    /// The user namespace owning the PID namespace, when it is not ours (unprivileged bwrap).
    userns: Option<OwnedFd>,
    /// The user namespace the holder's processes run in, when it differs from `userns`.
    userns2: Option<OwnedFd>,
    /// The sandbox's own network namespace (restricted network only), entered by every
    /// command before bubblewrap starts.
    net: Option<OwnedFd>,
}

impl Bwrap {
    pub fn new(path: PathBuf, view: View) -> Self {
        Bwrap {
            path,
            view,
            holder: Mutex::new(None),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Arguments that build the file system for a process rooted at `root` (writable), in
    /// `cwd`, with the PTY slave `tty` when it has a terminal.
    fn fs_args(
        &self,
        root: &Path,
        cwd: &Path,
        tty: Option<&Path>,
        helper: Option<&Path>,
    ) -> Vec<OsString> {
        let mut a = Args::default();
        let bound = system_view(&mut a);
        if let Some(exe) = helper {
            a.push(["--ro-bind"]);
            a.path(exe);
            a.push([HELPER_PATH]);
        }
        // Private temporary directories first, so that an exposed path or the root living under
        // the host's `/tmp` is bound on top of them rather than hidden by them.
        a.push(["--proc", "/proc", "--tmpfs", "/tmp", "--tmpfs", "/var/tmp"]);
        for p in &self.view.expose {
            a.push(["--ro-bind-try"]);
            a.path(p);
            a.path(p);
        }
        // rclaude's own directories stay invisible even when an exposed path contains them.
        let mut shown: Vec<PathBuf> = bound;
        shown.extend(
            self.view
                .expose
                .iter()
                .filter_map(|p| p.canonicalize().ok()),
        );
        for h in &self.view.hide {
            if let Ok(real) = h.canonicalize()
                && shown.iter().any(|s| real.starts_with(s))
            {
                a.push(["--tmpfs"]);
                a.path(&real);
            }
        }
        a.push(["--dev", "/dev"]);
        if let Some(tty) = tty {
            // Only this process's own terminal of the host's devpts, plus a private devpts for
            // terminals it opens itself: no other terminal of the host is reachable.
            a.push(["--tmpfs", "/dev/pts", "--dev-bind"]);
            a.path(tty);
            a.path(tty);
            a.push(["--dev", PRIVATE_PTS, "--symlink"]);
            a.push([format!("{PRIVATE_PTS}/pts/ptmx").as_str(), "/dev/pts/ptmx"]);
        }
        a.push(["--bind"]);
        a.path(root);
        a.path(root);
        a.push(["--chdir"]);
        a.path(cwd);
        a.0
    }

    /// The command that runs `program args` in the sandbox.
    pub fn command(
        &self,
        root: &Path,
        cwd: &Path,
        program: &str,
        args: &[String],
        tty: Option<&Path>,
    ) -> io::Result<tokio::process::Command> {
        self.command_with(root, cwd, program, args, tty, None)
    }

    /// The command that runs the host executable `exe` in the sandbox (seen there read-only
    /// at [`HELPER_PATH`]) with `args`: rclaude's own helpers, which the sandbox need not have.
    pub fn helper_command(
        &self,
        root: &Path,
        cwd: &Path,
        exe: &Path,
        args: &[String],
    ) -> io::Result<tokio::process::Command> {
        self.command_with(root, cwd, HELPER_PATH, args, None, Some(exe))
    }

    fn command_with(
        &self,
        root: &Path,
        cwd: &Path,
        program: &str,
        args: &[String],
        tty: Option<&Path>,
        helper: Option<&Path>,
    ) -> io::Result<tokio::process::Command> {
        let ns = self.namespace()?;
        let mut c = tokio::process::Command::new(&self.path);
        let net = ns.net.as_ref().map(|f| f.as_raw_fd());
        // Entering the network namespace of an unprivileged sandbox takes its owning user
        // namespace first; the forked child (single-threaded) joins it before bubblewrap starts,
        // so bubblewrap is not asked to join it again.
        let join_user = ns
            .userns
            .as_ref()
            .filter(|_| net.is_some())
            .map(|f| f.as_raw_fd());
        c.args(self.command_args(
            root,
            cwd,
            (program, args),
            (tty, helper),
            (
                ns.userns.is_some() && join_user.is_none(),
                ns.userns2.is_some(),
            ),
        ))
        .current_dir(cwd);
        let fds: Vec<RawFd> = std::iter::once(ns.pid.as_raw_fd())
            .chain(ns.userns.as_ref().map(|f| f.as_raw_fd()))
            .chain(ns.userns2.as_ref().map(|f| f.as_raw_fd()))
            .collect();
        // SAFETY: the closure only makes async-signal-safe calls (setns, fcntl, dup2); `ns`
        // keeps the descriptors open until the command has been spawned and dropped.
        unsafe {
            c.pre_exec(move || {
                let _keep = &ns;
                if let Some(user) = join_user
                    && libc::setns(user, libc::CLONE_NEWUSER) != 0
                {
                    return Err(io::Error::last_os_error());
                }
                if let Some(net) = net
                    && libc::setns(net, libc::CLONE_NEWNET) != 0
                {
                    return Err(io::Error::last_os_error());
                }
                pass_fds(&fds, 3)
            });
        }
        Ok(c)
    }

    /// bubblewrap's arguments for a command joining the sandbox's PID namespace (descriptor 3,
    /// its user namespaces 4 and 5 when `userns` says they are passed).
    fn command_args(
        &self,
        root: &Path,
        cwd: &Path,
        (program, args): (&str, &[String]),
        (tty, helper): (Option<&Path>, Option<&Path>),
        userns: (bool, bool),
    ) -> Vec<OsString> {
        let mut a = Args::default();
        // No `--die-with-parent` here: with `--pidns`, bubblewrap forks an intermediate child
        // that exits at once, and the command's process may set its parent-death signal while
        // that child still lives; the intermediate's exit then SIGKILLs the command (exit 137,
        // seen under load; bubblewrap 0.8 to 0.11). The command dies with the agent all the
        // same: it lives in the sandbox's PID namespace, whose holder ends with the agent.
        a.push(["--cap-drop", "ALL", "--unshare-ipc", "--pidns", "3"]);
        if userns.0 {
            a.push(["--userns", "4"]);
        }
        if userns.1 {
            a.push(["--userns2", "5"]);
        }
        a.0.extend(self.fs_args(root, cwd, tty, helper));
        a.push(["--", program]);
        a.0.extend(args.iter().map(OsString::from));
        a.0
    }

    /// The sandbox's PID namespace, starting its holder when there is none (or it ended).
    fn namespace(&self) -> io::Result<Arc<NsFds>> {
        let mut guard = self.holder.lock().unwrap();
        if let Some(h) = guard.as_mut() {
            if matches!(h.child.try_wait(), Ok(None)) {
                return Ok(h.ns.clone());
            }
            tracing::warn!(
                status = ?h.child.try_wait().ok().flatten(),
                "the sandbox's PID namespace holder ended; starting a new one"
            );
        }
        let h = self.start_holder()?;
        let ns = h.ns.clone();
        *guard = Some(h);
        Ok(ns)
    }

    /// Whether the PID namespace holder is running (false: none started yet, or it ended).
    pub fn holder_running(&self) -> bool {
        let mut guard = self.holder.lock().unwrap();
        guard
            .as_mut()
            .is_some_and(|h| matches!(h.child.try_wait(), Ok(None)))
    }

    /// Process group of the holder (for the on-disk record of groups), if running.
    pub fn holder_pid(&self) -> Option<u32> {
        self.holder.lock().unwrap().as_ref().map(|h| h.child.id())
    }

    fn start_holder(&self) -> io::Result<Holder> {
        let (stdin_r, stdin_w) = super::fdio::pipe()?;
        let (info_r, info_w) = super::fdio::pipe()?;
        let mut a = Args::default();
        a.push([
            "--unshare-pid",
            "--die-with-parent",
            "--cap-drop",
            "ALL",
            "--info-fd",
            "3",
        ]);
        let restricted = !self.view.network.is_open();
        if restricted {
            // bubblewrap brings up the new namespace's loopback interface.
            a.push(["--unshare-net"]);
        }
        system_view(&mut a);
        a.push(["--dev", "/dev", "--proc", "/proc", "--", "cat"]);
        let mut cmd = std::process::Command::new(&self.path);
        cmd.args(a.0)
            .stdin(Stdio::from(stdin_r))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .process_group(0);
        let info_fd = info_w.as_raw_fd();
        // SAFETY: only async-signal-safe calls (fcntl, dup2).
        unsafe { cmd.pre_exec(move || pass_fds(&[info_fd], 3)) };
        let mut child = cmd.spawn()?;
        drop(cmd);
        drop(info_w);
        let mut info = String::new();
        let mut reader = std::fs::File::from(info_r);
        let _ = reader.read_to_string(&mut info);
        let init_pid = serde_json::from_str::<serde_json::Value>(&info)
            .ok()
            .and_then(|v| v["child-pid"].as_u64())
            .map(|p| p as u32);
        let Some(init_pid) = init_pid else {
            let _ = child.kill();
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            let _ = child.wait();
            return Err(io::Error::other(format!(
                "bubblewrap could not create the sandbox's PID namespace: {}",
                err.trim()
            )));
        };
        let started = namespace_fds(init_pid, restricted).and_then(|ns| {
            let proxy = match &ns.net {
                Some(net) => Some(self.start_proxy(net, ns.userns.as_ref())?),
                None => None,
            };
            Ok((ns, proxy))
        });
        let (ns, proxy) = match started {
            Ok(v) => v,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(e);
            }
        };
        tracing::debug!(
            init_pid,
            holder = child.id(),
            "sandbox PID namespace started"
        );
        // What bubblewrap says later (it only speaks when something went wrong) goes to the log.
        if let Some(err) = child.stderr.take() {
            let holder = child.id();
            std::thread::spawn(move || {
                use std::io::BufRead;
                for line in std::io::BufReader::new(err).lines().map_while(Result::ok) {
                    tracing::warn!(holder, "sandbox PID namespace holder: {line}");
                }
            });
        }
        Ok(Holder {
            child,
            ns: Arc::new(ns),
            _stdin: stdin_w,
            _proxy: proxy,
        })
    }

    /// Serve the egress proxy inside the network namespace `net` (owned by `userns` when that
    /// is not ours).
    fn start_proxy(&self, net: &OwnedFd, userns: Option<&OwnedFd>) -> io::Result<ProxyTask> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            io::Error::other("the egress proxy needs the agent's runtime to run on")
        })?;
        let listener =
            super::netns::listen_in(net, userns, super::egress::PROXY_PORT).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!(
                        "cannot serve the egress proxy in the sandbox's network namespace: {e}"
                    ),
                )
            })?;
        let policy = Arc::new(self.view.network.clone());
        let task = runtime.spawn(super::egress::serve(listener, policy));
        Ok(ProxyTask(task.abort_handle()))
    }

    /// End the PID namespace: every process still in it is killed by the kernel.
    pub fn shutdown(&self) {
        if let Some(mut h) = self.holder.lock().unwrap().take() {
            // Killing the holder (our own child, so its pid cannot have been reused) takes the
            // namespace's init with it (`--die-with-parent`), and the kernel then kills every
            // process in the namespace. The init's own pid is never signalled: once it has
            // exited that number may belong to anyone.
            let _ = h.child.kill();
            let _ = h.child.wait();
        }
    }
}

impl Drop for Bwrap {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Open the PID namespace of `init_pid` and the user namespaces needed to enter it (and its
/// network namespace, with `net`).
fn namespace_fds(init_pid: u32, net: bool) -> io::Result<NsFds> {
    let open = |p: String| std::fs::File::open(p).map(OwnedFd::from);
    let pid = open(format!("/proc/{init_pid}/ns/pid"))?;
    let own = std::fs::metadata("/proc/self/ns/user")?.ino();
    // SAFETY: NS_GET_USERNS returns a new descriptor (or -1) and reads nothing from us.
    let owner = unsafe { libc::ioctl(pid.as_raw_fd(), NS_GET_USERNS) };
    let userns = if owner < 0 {
        None
    } else {
        // SAFETY: a fresh descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(owner) };
        let ino = std::fs::File::from(fd.try_clone()?).metadata()?.ino();
        (ino != own).then_some(fd)
    };
    let userns2 = match &userns {
        Some(owner) => {
            let inner = open(format!("/proc/{init_pid}/ns/user"))?;
            let inner_ino = std::fs::File::from(inner.try_clone()?).metadata()?.ino();
            let owner_ino = std::fs::File::from(owner.try_clone()?).metadata()?.ino();
            (inner_ino != owner_ino).then_some(inner)
        }
        None => None,
    };
    let net = if net {
        Some(open(format!("/proc/{init_pid}/ns/net"))?)
    } else {
        None
    };
    Ok(NsFds {
        pid,
        userns,
        userns2,
        net,
    })
}

/// In a forked child: make `fds` available as `first`, `first + 1`, ... across exec.
/// Only async-signal-safe calls.
fn pass_fds(fds: &[RawFd], first: RawFd) -> io::Result<()> {
    // First move every source out of the way, so that a source already sitting on a target
    // number is not overwritten before it is copied.
    let mut tmp = [0 as RawFd; 3];
    for (i, fd) in fds.iter().enumerate() {
        // SAFETY: fcntl on a descriptor the parent keeps open.
        let t = unsafe { libc::fcntl(*fd, libc::F_DUPFD_CLOEXEC, 64) };
        if t < 0 {
            return Err(io::Error::last_os_error());
        }
        tmp[i] = t;
    }
    for (i, t) in tmp.iter().take(fds.len()).enumerate() {
        // SAFETY: dup2 onto a fixed number; the copy does not have FD_CLOEXEC.
        if unsafe { libc::dup2(*t, first + i as RawFd) } < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// bubblewrap arguments under construction.
#[derive(Default)]
struct Args(Vec<OsString>);

impl Args {
    fn push<'a>(&mut self, items: impl IntoIterator<Item = &'a str>) {
        self.0.extend(items.into_iter().map(OsString::from));
    }
    fn path(&mut self, p: &Path) {
        self.0.push(p.as_os_str().to_owned());
    }
}

/// Bind the system directories read-only; returns their real paths.
fn system_view(a: &mut Args) -> Vec<PathBuf> {
    let mut bound = Vec::new();
    for d in SYSTEM_DIRS {
        let p = Path::new(d);
        if p.is_dir() {
            a.push(["--ro-bind", d, d]);
            bound.push(p.canonicalize().unwrap_or_else(|_| p.to_path_buf()));
        }
    }
    for l in SYSTEM_LINKS {
        let p = Path::new(l);
        match std::fs::symlink_metadata(p) {
            Ok(m) if m.file_type().is_symlink() => {
                if let Ok(target) = std::fs::read_link(p) {
                    a.push(["--symlink"]);
                    a.path(&target);
                    a.path(p);
                }
            }
            Ok(m) if m.is_dir() => {
                a.push(["--ro-bind", l, l]);
                bound.push(p.to_path_buf());
            }
            _ => {}
        }
    }
    // Name resolution: /etc/resolv.conf often links into /run, which is not shown.
    if let Ok(real) = Path::new("/etc/resolv.conf").canonicalize()
        && !bound.iter().any(|b| real.starts_with(b))
    {
        a.push(["--ro-bind-try"]);
        a.path(&real);
        a.path(&real);
    }
    bound
}

/// Find bubblewrap and check that it can build the sandbox we use (user namespaces may be off).
pub fn probe() -> Result<PathBuf, String> {
    let bwrap = crate::host::find_on_path("bwrap").ok_or("bubblewrap (bwrap) is not installed")?;
    // More tries before giving up: on a loaded machine an unprivileged bubblewrap joining the
    // namespaces has been seen to fail ("Can't send pid: Invalid argument"), twice in a row
    // once, and work right after; a sandbox should not lose its isolation to that.
    let mut last = String::new();
    for (attempt, pause_ms) in [0u64, 25, 100, 250].into_iter().enumerate() {
        std::thread::sleep(std::time::Duration::from_millis(pause_ms));
        match probe_once(&bwrap) {
            Ok(()) => return Ok(bwrap),
            // Other failures (no user namespaces, say) do not pass with time.
            Err(e) if !e.contains("Can't send pid") && !e.contains("short read") => return Err(e),
            Err(e) => {
                tracing::debug!(attempt, "bubblewrap probe failed: {e}");
                last = e;
            }
        }
    }
    Err(last)
}

fn probe_once(bwrap: &Path) -> Result<(), String> {
    let b = Bwrap::new(bwrap.to_path_buf(), View::default());
    // The holder exercises the namespaces; a command in it exercises the file system view.
    let tmp = std::env::temp_dir();
    let probe = (|| -> io::Result<std::process::Output> {
        let cmd = b.command(&tmp, &tmp, "true", &[], None)?;
        let mut cmd = cmd.into_std();
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        cmd.output()
    })();
    b.shutdown();
    match probe {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => Err(format!(
            "{} does not work here ({}): {}",
            bwrap.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Err(e) => Err(format!("{} does not work here: {e}", bwrap.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pos(args: &[OsString], seq: &[&str]) -> Option<usize> {
        args.windows(seq.len())
            .position(|w| w.iter().zip(seq).all(|(a, b)| a == b))
    }

    #[test]
    fn commands_join_the_namespace_without_a_parent_death_signal() {
        let b = Bwrap::new(PathBuf::from("/usr/bin/bwrap"), View::default());
        let args = b.command_args(
            Path::new("/"),
            Path::new("/"),
            ("true", &[]),
            (None, None),
            (true, true),
        );
        let pos_of = |s: &str| args.iter().position(|a| a == s);
        let pidns = pos_of("--pidns").expect("joins the namespace");
        assert!(pidns < pos_of("--").unwrap());
        assert!(pos_of("--userns").is_some() && pos_of("--userns2").is_some());
        assert!(
            pos_of("--die-with-parent").is_none(),
            "--die-with-parent with --pidns races bubblewrap's intermediate child: {args:?}"
        );
    }

    #[test]
    fn rclaude_dirs_under_an_exposed_path_are_hidden_before_the_root_is_bound() {
        let exposed = tempfile::tempdir().unwrap();
        let exposed = exposed.path().canonicalize().unwrap();
        let state = exposed.join("rclaude-data");
        let root = state.join("sandboxes/local-x/root");
        std::fs::create_dir_all(&root).unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        let b = Bwrap::new(
            PathBuf::from("/usr/bin/bwrap"),
            View {
                expose: vec![exposed.clone()],
                hide: vec![state.clone(), elsewhere.path().to_path_buf()],
                ..View::default()
            },
        );
        let args = b.fs_args(&root, &root, None, None);
        let s = |p: &Path| p.to_str().unwrap().to_string();
        let expose = pos(&args, &["--ro-bind-try", &s(&exposed), &s(&exposed)]).unwrap();
        let hide = pos(&args, &["--tmpfs", &s(&state)]).expect("the data dir is hidden");
        let bind = pos(&args, &["--bind", &s(&root), &s(&root)]).unwrap();
        assert!(expose < hide && hide < bind, "{args:?}");
        // A directory no exposed path shows needs no hiding.
        assert!(
            pos(&args, &["--tmpfs", &s(elsewhere.path())]).is_none(),
            "{args:?}"
        );
        // No host path is shown whole: the root of the sandbox is a fresh tmpfs.
        assert!(pos(&args, &["--ro-bind", "/", "/"]).is_none(), "{args:?}");
        assert!(
            pos(&args, &["--ro-bind", "/usr", "/usr"]).is_some(),
            "{args:?}"
        );
    }
}
