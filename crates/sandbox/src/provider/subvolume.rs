//! Btrfs subvolumes for local sandboxes: a sandbox's `root/` made a subvolume where the
//! sandboxes directory is on btrfs, so that a fork is a snapshot (constant time, whatever the
//! sandbox holds) instead of a copy of every file.
//!
//! Through the `btrfs` tool (btrfs-progs) rather than the ioctls: it is how users create and
//! inspect subvolumes anyway, it is present wherever btrfs is in use, and its absence only
//! means a plain directory and a copying fork, as on any other file system.

use std::path::Path;

/// `statfs(2)`'s `f_type` of btrfs.
const BTRFS_SUPER_MAGIC: libc::c_long = 0x9123_683E;
/// The inode number of every subvolume's root directory.
const SUBVOLUME_ROOT_INODE: u64 = 256;

/// Whether `path` is on a btrfs file system.
pub fn on_btrfs(path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    let mut fs = std::mem::MaybeUninit::<libc::statfs>::zeroed();
    // SAFETY: `c` is a valid NUL-terminated path and `fs` a buffer statfs may fill.
    if unsafe { libc::statfs(c.as_ptr(), fs.as_mut_ptr()) } != 0 {
        return false;
    }
    // SAFETY: statfs returned 0, so it filled the buffer.
    let fs = unsafe { fs.assume_init() };
    fs.f_type as libc::c_long == BTRFS_SUPER_MAGIC
}

/// Whether `path` is the root of a btrfs subvolume.
pub fn is_subvolume(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    on_btrfs(path)
        && std::fs::metadata(path).is_ok_and(|m| m.is_dir() && m.ino() == SUBVOLUME_ROOT_INODE)
}

/// Make `path` (which must not exist) a subvolume when its parent is on btrfs and the tool is
/// there; `false`: nothing was made (the caller makes a plain directory).
pub async fn create(path: &Path) -> bool {
    let Some(parent) = path.parent() else {
        return false;
    };
    if !on_btrfs(parent) {
        return false;
    }
    run(&["subvolume", "create"], &[path]).await
}

/// Snapshot subvolume `from` as `to` (which must not exist); `false`: not done (the caller
/// copies instead).
pub async fn snapshot(from: &Path, to: &Path) -> bool {
    is_subvolume(from) && run(&["subvolume", "snapshot"], &[from, to]).await
}

async fn run(args: &[&str], paths: &[&Path]) -> bool {
    match tokio::process::Command::new("btrfs")
        .args(args)
        .args(paths)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .output()
        .await
    {
        Ok(out) if out.status.success() => true,
        Ok(out) => {
            tracing::debug!(
                "btrfs {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
            false
        }
        Err(e) => {
            tracing::debug!("btrfs {}: {e}", args.join(" "));
            false
        }
    }
}
