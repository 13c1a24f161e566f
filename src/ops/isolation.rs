//! How isolated a local sandbox is, and the warning `up` and `status` give when it is not.

use crate::agent::IsolationReport;
use crate::provider::local::LocalProvider;

/// The isolation of a local sandbox (`None` for other providers, which are separate machines).
pub async fn local_isolation(provider: &str, id: &str) -> Option<IsolationReport> {
    if provider != "local" {
        return None;
    }
    LocalProvider::new().isolation(id).await.ok().flatten()
}

/// The warning `up` and `status` print every time a local sandbox runs without isolation.
pub fn isolation_warning(iso: &IsolationReport) -> Option<String> {
    if iso.is_isolated() {
        return None;
    }
    let exposed = "sandbox commands run unconfined, with your user's rights: they can read and \
                   change your files (~/.ssh, other repositories), other sandboxes and rclaude's \
                   tokens";
    Some(match &iso.missing {
        None => format!(
            "this sandbox is NOT isolated (isolation = \"none\" in .rclaude.toml): {exposed}"
        ),
        Some(why) if why.contains("not installed") => format!(
            "this sandbox is NOT isolated: {why}, so {exposed}. Install it \
             (`apt-get install bubblewrap`, `dnf install bubblewrap`), then `rclaude pause` and \
             `rclaude up` restart the sandbox confined"
        ),
        Some(why) => format!(
            "this sandbox is NOT isolated: {why}, so {exposed}. bubblewrap needs unprivileged \
             user namespaces (sysctl kernel.unprivileged_userns_clone=1; on Ubuntu 24.04 an \
             AppArmor profile for bwrap); then `rclaude pause` and `rclaude up`"
        ),
    })
}
