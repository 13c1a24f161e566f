//! `rclaude usage`: active hours and cost per repository for a month, from the server.

use std::collections::BTreeMap;

use super::GlobalArgs;
use crate::error::{CliError, CliResult};
use crate::report::{Credentials, ServerClient};

/// Show active hours and cost per repository for a month, with totals (from rclaude-server).
///
/// Active sandbox time is billed per second at the server's hourly price; paused time is free;
/// persistent storage is billed per repository per month, prorated by day.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  rclaude usage\n  rclaude usage --month 2026-10\n  rclaude usage --json | jq .invoice.total_micros"
)]
pub struct Args {
    /// Month as YYYY-MM (default: this month).
    #[arg(long, value_name = "YYYY-MM")]
    pub month: Option<String>,
    /// Print JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(_g: &GlobalArgs, args: Args) -> CliResult {
    // Bad input is refused before anything else is looked at.
    let month = match args.month {
        Some(m) => valid_month(&m)?,
        None => crate::time::now_rfc3339()[..7].to_string(),
    };
    let creds = Credentials::load()
        .map_err(|e| CliError::config(e.to_string()))?
        .ok_or_else(|| {
            CliError::auth("not logged in to an rclaude server")
                .hint("`rclaude login --server URL`")
        })?;
    let client = ServerClient::new(&creds).map_err(|e| CliError::internal(e.to_string()))?;
    let invoice = client
        .invoice(&month)
        .await
        .map_err(super::server::server_error)?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({ "month": month, "invoice": invoice })
            )
            .unwrap_or_default()
        );
        return Ok(0);
    }
    #[derive(Default)]
    struct Row {
        seconds: i64,
        active: i64,
        days: i64,
        storage: i64,
    }
    let mut rows: BTreeMap<String, Row> = BTreeMap::new();
    for line in invoice["lines"].as_array().into_iter().flatten() {
        let repo = line["repository"].as_str().unwrap_or("?").to_string();
        let row = rows.entry(repo).or_default();
        let qty = line["quantity"].as_i64().unwrap_or(0);
        let amount = line["amount_micros"].as_i64().unwrap_or(0);
        match line["kind"].as_str() {
            Some("active") => {
                row.seconds += qty;
                row.active += amount;
            }
            Some("storage") => {
                row.days += qty;
                row.storage += amount;
            }
            _ => {}
        }
    }
    println!("Usage for {month} ({})", creds.server);
    if rows.is_empty() {
        println!("  no sessions this month");
        return Ok(0);
    }
    let width = rows.keys().map(|k| k.len()).max().unwrap_or(10).max(10);
    println!(
        "  {:<width$}  {:>9}  {:>10}  {:>12}  {:>10}",
        "repository", "hours", "active", "storage", "total"
    );
    let (mut secs, mut total) = (0i64, 0i64);
    for (repo, r) in &rows {
        secs += r.seconds;
        total += r.active + r.storage;
        println!(
            "  {repo:<width$}  {:>9.2}  {:>10}  {:>12}  {:>10}",
            r.seconds as f64 / 3600.0,
            usd(r.active),
            format!("{} ({}d)", usd(r.storage), r.days),
            usd(r.active + r.storage)
        );
    }
    let invoice_total = invoice["total_micros"].as_i64().unwrap_or(total);
    println!(
        "  {:<width$}  {:>9.2}  {:>10}  {:>12}  {:>10}",
        "total",
        secs as f64 / 3600.0,
        "",
        "",
        usd(invoice_total)
    );
    Ok(0)
}

/// The months the server bills (its calendar ends in 9999; a month needs the next one's start).
const MONTH_RANGE: std::ops::RangeInclusive<u32> = 1970..=9998;

fn valid_month(m: &str) -> CliResult<String> {
    let ok = m.len() == 7
        && m.is_ascii()
        && m.as_bytes()[4] == b'-'
        && m[..4].chars().all(|c| c.is_ascii_digit())
        && matches!(m[5..].parse::<u32>(), Ok(1..=12));
    if !ok {
        return Err(CliError::usage(format!(
            "--month {m:?}: use YYYY-MM, e.g. 2026-11"
        )));
    }
    let year: u32 = m[..4].parse().unwrap_or(0);
    if !MONTH_RANGE.contains(&year) {
        return Err(CliError::usage(format!(
            "--month {m}: outside the supported range {}-01 to {}-12",
            MONTH_RANGE.start(),
            MONTH_RANGE.end()
        )));
    }
    Ok(m.to_string())
}

/// Micro-dollars as `$1.23`.
pub fn usd(micros: i64) -> String {
    crate::ui::format_usd(micros)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_and_money() {
        assert!(valid_month("2026-11").is_ok());
        assert!(valid_month("2026-13").is_err());
        assert!(valid_month("26-11").is_err());
        assert!(valid_month("9999-12").is_err());
        assert!(valid_month("1969-12").is_err());
        assert!(valid_month("9998-12").is_ok());
        assert_eq!(usd(100_000), "$0.10");
        assert_eq!(usd(5_000_000), "$5.00");
        assert_eq!(usd(1_234_567), "$1.23");
        assert_eq!(usd(0), "$0.00");
    }
}
