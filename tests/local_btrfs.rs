//! The local provider on btrfs: a sandbox's `root/` is a subvolume and `fork` snapshots it
//! (constant time) instead of copying every file. Runs on a real btrfs file system the test
//! makes in a loop device, so it needs root and `mkfs.btrfs` (btrfs-progs; `scripts/test`
//! installs it). `RCLAUDE_SKIP_BTRFS=1` opts out on a machine without them.

#[path = "support/skip.rs"]
mod skip;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use rclaude::provider::local::LocalProvider;
use rclaude::provider::{ExecRequest, Provider, SandboxSpec, run};

/// A btrfs file system mounted from an image file; unmounted on drop.
struct Btrfs {
    mnt: PathBuf,
    _dir: tempfile::TempDir,
}

impl Btrfs {
    fn mount() -> Option<Btrfs> {
        let why = if unsafe { libc::geteuid() } != 0 {
            Some("mounting a btrfs image needs root")
        } else if Command::new("mkfs.btrfs")
            .arg("--version")
            .output()
            .is_err()
        {
            Some("mkfs.btrfs is missing (Debian: btrfs-progs)")
        } else {
            None
        };
        if let Some(why) = why {
            if skip::opted_out("RCLAUDE_SKIP_BTRFS", &format!("local_btrfs: {why}")) {
                return None;
            }
            panic!("{why}; set RCLAUDE_SKIP_BTRFS=1 to skip the btrfs tests");
        }
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("fs.img");
        let mnt = dir.path().join("mnt");
        std::fs::create_dir(&mnt).unwrap();
        std::fs::File::create(&image)
            .unwrap()
            .set_len(512 << 20)
            .unwrap();
        sh(Command::new("mkfs.btrfs").arg("-q").arg(&image));
        sh(Command::new("mount")
            .arg("-o")
            .arg("loop")
            .arg(&image)
            .arg(&mnt));
        Some(Btrfs { mnt, _dir: dir })
    }
}

impl Drop for Btrfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.mnt).status();
    }
}

fn sh(c: &mut Command) {
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{c:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A field of `btrfs subvolume show PATH` (`UUID:`, `Parent UUID:`).
fn show_field(p: &Path, field: &str) -> String {
    let out = Command::new("btrfs")
        .args(["subvolume", "show"])
        .arg(p)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.lines()
        .find_map(|l| l.trim().strip_prefix(field))
        .map(|v| v.trim().to_string())
        .unwrap_or_else(|| panic!("no {field} in: {text}"))
}

fn is_subvolume(p: &Path) -> bool {
    std::fs::metadata(p).is_ok_and(|m| m.is_dir() && m.ino() == 256)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fork_on_btrfs_is_a_snapshot_of_the_sandbox() {
    let Some(fs) = Btrfs::mount() else {
        return;
    };
    let base = fs.mnt.join("sandboxes");
    let p = LocalProvider::at(base.clone(), PathBuf::from(env!("CARGO_BIN_EXE_rclaude")));
    let src = p.create(&SandboxSpec::default()).await.unwrap();
    assert!(
        is_subvolume(&base.join(&src.id).join("root")),
        "the sandbox's root is not a subvolume"
    );
    let s = p.connect(&src.id).await.unwrap();
    let made = run(
        &*s,
        ExecRequest::shell("mkdir -p deps && head -c 1000000 /dev/urandom > deps/blob && echo kept > edit.txt && sha256sum deps/blob"),
    )
    .await
    .unwrap();
    assert!(made.status.success(), "{}", made.stderr_str());

    let fork = p.fork(&src.id, &SandboxSpec::default()).await.unwrap();
    let froot = base.join(&fork.id).join("root");
    assert!(is_subvolume(&froot), "the fork is not a snapshot");
    assert_eq!(
        show_field(&froot, "Parent UUID:"),
        show_field(&base.join(&src.id).join("root"), "UUID:"),
        "the fork is not a snapshot of the source"
    );
    let f = p.connect(&fork.id).await.unwrap();
    let seen = run(
        &*f,
        ExecRequest::shell("cat edit.txt && sha256sum deps/blob"),
    )
    .await
    .unwrap();
    assert_eq!(
        seen.stdout_str(),
        format!("kept\n{}", made.stdout_str()),
        "{}",
        seen.stderr_str()
    );
    // Two sandboxes from here on: a write in one is not seen in the other.
    run(&*f, ExecRequest::shell("echo fork > edit.txt"))
        .await
        .unwrap();
    let back = run(&*s, ExecRequest::shell("cat edit.txt")).await.unwrap();
    assert_eq!(back.stdout_str(), "kept\n");

    p.kill(&fork.id).await.unwrap();
    p.kill(&src.id).await.unwrap();
    assert!(!base.join(&fork.id).exists() && !base.join(&src.id).exists());
}
