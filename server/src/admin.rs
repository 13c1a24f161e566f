//! `rclaude-server admin …`: accounts, tokens and the Stripe export, straight in the database.

use std::io::Write;

use anyhow::{Context, bail};
use clap::Subcommand;

use crate::auth;
use crate::clock::Now;
use crate::config::ServerConfig;
use crate::db;
use crate::events::Hub;
use crate::storage::{Store, StoreError};
use crate::validate;

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Create an account and its first API token (printed alone on the last line).
    CreateAccount {
        /// Account name (unique).
        name: String,
        /// Name of the first token.
        #[arg(long, default_value = "default")]
        token_name: String,
    },
    /// Create another API token for an account (printed alone on the last line).
    CreateToken {
        /// Account name or id.
        account: String,
        /// A label for the token.
        #[arg(long, default_value = "admin")]
        name: String,
    },
    /// List an account's tokens (prefixes only; secrets are never stored).
    ListTokens {
        /// Account name or id.
        account: String,
    },
    /// Revoke a token by its prefix (rcl_xxxxxxxx) or id.
    RevokeToken {
        /// Token prefix or id.
        prefix: String,
    },
    /// Bill an account through Stripe: set its Stripe customer id (or remove it with --clear).
    SetStripeCustomer {
        /// Account name or id.
        account: String,
        /// Stripe customer id (cus_…).
        #[arg(required_unless_present = "clear")]
        customer: Option<String>,
        /// Stop exporting this account's usage.
        #[arg(long, conflicts_with = "customer")]
        clear: bool,
    },
    /// Limit an account's managed sessions: a monthly budget (at which its running sessions
    /// pause and new ones are refused) and how many may run at once.
    #[command(
        after_help = "Examples:\n  rclaude-server admin set-limits acme --max-usd-per-month 50 --max-running 3\n  rclaude-server admin set-limits acme --no-budget"
    )]
    SetLimits {
        /// Account name or id.
        account: String,
        /// Budget per calendar month in USD (e.g. 50, 12.5).
        #[arg(long, conflicts_with = "no_budget")]
        max_usd_per_month: Option<String>,
        /// Remove the monthly budget.
        #[arg(long)]
        no_budget: bool,
        /// Managed sessions running at once (at least 1).
        #[arg(long, conflicts_with = "no_running_limit")]
        max_running: Option<i64>,
        /// Remove the limit on sessions running at once.
        #[arg(long)]
        no_running_limit: bool,
    },
    /// Show the Stripe export backlog: pending, sent and failed meter events, the oldest pending.
    StripeStatus,
    /// Queue failed Stripe meter events again (all, or one account's).
    StripeRetryFailed {
        /// Account name or id (default: every account).
        account: Option<String>,
    },
}

/// Runs one admin command, writing human-readable output to `out`.
pub async fn run(
    cfg: &ServerConfig,
    cmd: AdminCommand,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let db = db::open(&cfg.database_url, 2).await?;
    let store = Store::new(db.clone(), cfg.prices, Hub::new(1));
    let result = run_with(cfg, &store, cmd, out).await;
    db.close().await;
    result
}

async fn run_with(
    cfg: &ServerConfig,
    store: &Store,
    cmd: AdminCommand,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let now = Now::system().ms();
    match cmd {
        AdminCommand::CreateAccount { name, token_name } => {
            validate::text("account name", &name, 100).map_err(|e| anyhow::anyhow!(e.message))?;
            let account = match store.create_account(&name, now).await {
                Ok(a) => a,
                Err(StoreError::Conflict(m)) => {
                    bail!("{m}; use `admin create-token {name}` for another token")
                }
                Err(e) => return Err(e.into()),
            };
            let (info, secret) = auth::issue(store, &account.id, &token_name, now).await?;
            writeln!(out, "created account {} (id {})", account.name, account.id)?;
            writeln!(
                out,
                "created token {} ({}); it is shown once, store it now:",
                info.prefix, info.name
            )?;
            writeln!(out, "{secret}")?;
        }
        AdminCommand::SetLimits {
            account,
            max_usd_per_month,
            no_budget,
            max_running,
            no_running_limit,
        } => {
            let account = find(store, &account).await?;
            let mut limits = store.limits(&account.id).await?;
            if let Some(usd) = max_usd_per_month {
                limits.max_month_micros =
                    Some(crate::config::parse_usd("--max-usd-per-month", &usd)?);
            }
            if no_budget {
                limits.max_month_micros = None;
            }
            if let Some(n) = max_running {
                if n < 1 {
                    bail!("--max-running must be at least 1 (or use --no-running-limit)");
                }
                limits.max_running = Some(n);
            }
            if no_running_limit {
                limits.max_running = None;
            }
            store.set_limits(&account.id, limits).await?;
            let budget = limits
                .max_month_micros
                .map(|m| format!("{}/month", crate::billing::format_usd(m)))
                .unwrap_or_else(|| "no budget".into());
            let running = limits
                .max_running
                .map(|n| format!("at most {n} running"))
                .unwrap_or_else(|| "no running limit".into());
            writeln!(out, "account {}: {budget}, {running}", account.name)?;
        }
        AdminCommand::CreateToken { account, name } => {
            validate::text("token name", &name, 100).map_err(|e| anyhow::anyhow!(e.message))?;
            let account = find(store, &account).await?;
            let (info, secret) = auth::issue(store, &account.id, &name, now).await?;
            writeln!(
                out,
                "created token {} ({}) for account {}; it is shown once, store it now:",
                info.prefix, info.name, account.name
            )?;
            writeln!(out, "{secret}")?;
        }
        AdminCommand::ListTokens { account } => {
            let account = find(store, &account).await?;
            let tokens = store.list_tokens(&account.id).await?;
            writeln!(
                out,
                "{:<14} {:<20} {:<26} {:<26} STATUS",
                "PREFIX", "NAME", "CREATED", "LAST USED"
            )?;
            for t in tokens {
                let status = match &t.revoked_at {
                    Some(at) => format!("revoked {at}"),
                    None => "active".to_string(),
                };
                writeln!(
                    out,
                    "{:<14} {:<20} {:<26} {:<26} {status}",
                    t.prefix,
                    t.name,
                    t.created_at,
                    t.last_used_at.as_deref().unwrap_or("never")
                )?;
            }
        }
        AdminCommand::SetStripeCustomer {
            account,
            customer,
            clear,
        } => {
            let account = find(store, &account).await?;
            if clear {
                store.set_stripe_customer(&account.id, None, now).await?;
                writeln!(
                    out,
                    "account {} is no longer exported to Stripe (already queued events stay queued)",
                    account.name
                )?;
            } else {
                let customer = customer.unwrap_or_default();
                if !crate::stripe::valid_customer_id(&customer) {
                    bail!(
                        "`{customer}` is not a Stripe customer id (cus_ followed by letters and digits)"
                    );
                }
                store
                    .set_stripe_customer(&account.id, Some(&customer), now)
                    .await?;
                writeln!(
                    out,
                    "account {} is billed through Stripe customer {customer}",
                    account.name
                )?;
            }
        }
        AdminCommand::StripeStatus => {
            let since = now.div_euclid(1000) - crate::stripe::exporter::EXPORT_WINDOW_S;
            let c = store.stripe_counts(since).await?;
            writeln!(out, "pending   {}", c.pending)?;
            writeln!(out, "sent      {}", c.sent)?;
            writeln!(out, "failed    {}", c.failed)?;
            writeln!(
                out,
                "unqueued  {} (closed intervals the exporter has not picked up yet)",
                c.unqueued
            )?;
            match &c.oldest_pending {
                Some(p) => {
                    let age_s = (now - p.created_at_ms).max(0) / 1000;
                    writeln!(
                        out,
                        "oldest pending: {} (account {}, {} s at {}, queued {} ago, {} attempt(s){})",
                        p.id,
                        p.account_id,
                        p.value,
                        crate::model::rfc3339_s(p.timestamp_s),
                        crate::billing::format_hms(age_s),
                        p.attempts,
                        p.last_error
                            .as_deref()
                            .map(|e| format!(", last error: {e}"))
                            .unwrap_or_default()
                    )?;
                }
                None => writeln!(out, "oldest pending: none")?,
            }
            for f in &c.recent_failed {
                writeln!(
                    out,
                    "failed: {} (account {}, {} s at {}): {}",
                    f.id,
                    f.account_id,
                    f.value,
                    crate::model::rfc3339_s(f.timestamp_s),
                    f.last_error.as_deref().unwrap_or("?")
                )?;
            }
        }
        AdminCommand::StripeRetryFailed { account } => {
            let account_id = match account {
                Some(a) => Some(find(store, &a).await?.id),
                None => None,
            };
            let event_name = cfg.stripe.as_ref().map(|s| s.meter_event_name.as_str());
            let n = store
                .retry_failed_meter_events(account_id.as_deref(), event_name, now)
                .await?;
            writeln!(out, "queued {n} failed meter event(s) again")?;
        }
        AdminCommand::RevokeToken { prefix } => {
            let key = crate::auth::token_key(&prefix);
            match store.revoke_token(None, key.clone(), now).await {
                Ok(t) => writeln!(out, "revoked token {} ({})", t.prefix, t.name)?,
                Err(StoreError::NotFound) => {
                    bail!("no token with prefix or id `{}`", key.describe())
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(())
}

async fn find(store: &Store, account: &str) -> anyhow::Result<crate::model::Account> {
    match store.find_account(account).await {
        Ok(a) => Ok(a),
        Err(StoreError::NotFound) => {
            bail!("no account named `{account}`; create it with `admin create-account {account}`")
        }
        Err(e) => Err(e).context("cannot look up the account"),
    }
}
