//! Sync the work tree into a session's sandbox, showing progress and what was not synced.

use super::context::Ctx;
use crate::error::CliResult;
use crate::format::format_bytes;
use crate::gitsync::{self, PushOptions, PushReport, SyncProgress, SyncState};
use crate::ops::progress::Step;
use crate::provider::Sandbox;
use crate::session::SessionRecord;

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
    let state: Option<SyncState> = record
        .sync
        .as_ref()
        .and_then(|v| serde_json::from_value(v.clone()).ok());
    let opts = PushOptions {
        extra_ignores: ctx.config.sync.ignore.clone(),
        force_full: full,
        submodules: ctx.config.sync.submodules,
    };
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
