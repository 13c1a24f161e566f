//! Sync the work tree into a session's sandbox, showing progress and what was not synced.

use super::context::Ctx;
use crate::error::CliResult;
use crate::format::format_bytes;
use crate::gitsync::{self, PushOptions, PushReport, SyncProgress, SyncState};
use crate::ops::progress::Step;
use crate::provider::Sandbox;
use crate::session::SessionRecord;

/// The session's last sync state (what the sandbox was last given), when it has one.
pub fn sync_state(record: &SessionRecord) -> Option<SyncState> {
    record
        .sync
        .as_ref()
        .and_then(|v| serde_json::from_value(v.clone()).ok())
}

/// Push with the config's ignore rules, showing progress; reports saved sandbox edits.
pub async fn push(
    ctx: &Ctx,
    record: &SessionRecord,
    sandbox: &dyn Sandbox,
) -> CliResult<PushReport> {
    push_with(ctx, record, sandbox, false).await
}

/// [`push`], or a full bundle when `full`.
pub async fn push_with(
    ctx: &Ctx,
    record: &SessionRecord,
    sandbox: &dyn Sandbox,
    full: bool,
) -> CliResult<PushReport> {
    let state = sync_state(record);
    let opts = PushOptions {
        extra_ignores: ctx.config.sync.ignore.clone(),
        force_full: full,
        submodules: ctx.config.sync.submodules,
    };
    if state.is_none() && !full && ctx.local_checkout && ctx.config.git.fetch_upstream {
        prefetch_upstream(ctx, record, sandbox).await;
    }
    let step = ctx.ui.step("Syncing work tree");
    let progress = StepProgress(&step);
    let result = gitsync::push(&ctx.repo.root, sandbox, state.as_ref(), &opts, &progress).await;
    match result {
        Ok(report) => {
            let detail = if report.skipped_nothing_new {
                "up to date".to_string()
            } else {
                format!(
                    "{} objects, {}",
                    report.objects,
                    format_bytes(report.sent_bytes)
                )
            };
            step.done(Some(&detail));
            for saved in &report.saved {
                ctx.ui.warn(saved.describe());
            }
            if !report.submodules.is_empty() {
                ctx.ui.warn(format!(
                    "not synced: the files of submodule{} {} (the sandbox gets the commit each is \
                     at; edits inside them stay on this machine). To check them out in the sandbox, \
                     add `git submodule update --init --recursive` to [setup] (it fetches from \
                     their remotes)",
                    if report.submodules.len() == 1 { "" } else { "s" },
                    report.submodules.join(", ")
                ));
            }
            if !report.skipped_nested.is_empty() {
                ctx.ui.warn(format!(
                    "not synced: {} (another git repository inside the work tree; make it a \
                     submodule, or add it to [sync] ignore to silence this)",
                    report.skipped_nested.join(", ")
                ));
            }
            Ok(report)
        }
        Err(e) => {
            step.fail(None);
            Err(e.into())
        }
    }
}

/// How long the sandbox gets to show it can reach the upstream.
const PROBE: std::time::Duration = std::time::Duration::from_secs(4);

/// The first sync into a sandbox: let it fetch what the upstream has from the upstream itself
/// (`deliver::prefetch`), so the bundle carries only what the upstream lacks. Says which path
/// was taken; any failure just means the bundle carries everything.
async fn prefetch_upstream(ctx: &Ctx, record: &SessionRecord, sandbox: &dyn Sandbox) {
    let Ok(up) = super::pr::upstream(ctx, record) else {
        return;
    };
    if up.host.is_none() {
        return; // a path on this machine: a sandbox elsewhere cannot reach it
    }
    let shown = up.display();
    let token = std::env::var(&ctx.config.git.token_secret)
        .ok()
        .filter(|t| !t.is_empty());
    let branch = upstream_branch(ctx);
    let step = ctx
        .ui
        .step(format!("Fetching history from {shown} in the sandbox"));
    match crate::deliver::prefetch::prefetch(
        sandbox,
        &record.workdir,
        &up.url,
        &shown,
        branch.as_deref(),
        token.as_deref(),
        PROBE,
    )
    .await
    {
        Ok(crate::deliver::prefetch::Prefetch::Fetched { .. }) => step.done(Some(&format!(
            "{}; only what it lacks is sent from here",
            branch.as_deref().unwrap_or("its default branch")
        ))),
        Ok(crate::deliver::prefetch::Prefetch::Unreachable(why)) => {
            step.done(Some(
                "not reachable from the sandbox; sending the whole history",
            ));
            tracing::info!("upstream not reachable from the sandbox: {why}");
        }
        Err(e) => {
            step.fail(Some("sending the whole history"));
            ctx.ui.warn(format!("{e}"));
        }
    }
}

/// The upstream branch the checked-out branch tracks on `[git] remote` (its `merge` ref), else
/// a branch of the same name there, else `None` (the upstream's default branch).
fn upstream_branch(ctx: &Ctx) -> Option<String> {
    let repo = crate::gitsync::open_work_tree(&ctx.repo.root).ok()?;
    let name = ctx.repo.branch()?;
    let cfg = repo.config().ok()?;
    let remote = &ctx.config.git.remote;
    if cfg
        .get_string(&format!("branch.{name}.remote"))
        .ok()
        .as_deref()
        == Some(remote.as_str())
        && let Ok(merge) = cfg.get_string(&format!("branch.{name}.merge"))
        && let Some(b) = merge.strip_prefix("refs/heads/")
    {
        return Some(b.to_string());
    }
    repo.find_reference(&format!("refs/remotes/{remote}/{name}"))
        .ok()
        .map(|_| name)
}

/// Shows sync progress on a step's spinner.
pub struct StepProgress<'a>(pub &'a Step);

impl SyncProgress for StepProgress<'_> {
    fn stage(&self, name: &str) {
        self.0.set_message(name.to_string());
    }
    fn objects(&self, done: u64, total: u64) {
        self.0.set_objects(done, total);
    }
    fn bytes(&self, done: u64, total: Option<u64>) {
        self.0.set_bytes(done, total);
    }
}
