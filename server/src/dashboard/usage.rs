//! `GET /usage?month=YYYY-MM`: active hours and cost per day (SVG charts with a table), totals
//! per repository, and the month's invoice; `GET /usage.csv` and `GET /invoice.csv`.
//!
//! All figures come from the billing code (`billing::usage`, `billing::invoice`) over the same
//! intervals and lifetimes as the API's `/v1/usage` and `/v1/invoices/{month}`.

use axum::extract::{RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};

use super::auth::WebUser;
use super::chart::{Bar, bar_chart};
use super::layout::{self, Nav, duration, html_response, page, usd};
use crate::billing::{self, Invoice, Month, MonthError, Usage};
use crate::clock::Now;
use crate::state::AppState;
use crate::storage::StoreError;

fn month_param(raw: Option<&str>, now: Now) -> Result<Month, (StatusCode, String)> {
    let given = url::form_urlencoded::parse(raw.unwrap_or("").as_bytes())
        .find(|(k, _)| k == "month")
        .map(|(_, v)| v.trim().to_string())
        .filter(|v| !v.is_empty());
    match given {
        None => Ok(Month::of(billing::date_of_s(now.s()))),
        Some(m) => Month::parse(&m).map_err(|e| {
            let status = match e {
                MonthError::Malformed => StatusCode::BAD_REQUEST,
                MonthError::OutOfRange => StatusCode::UNPROCESSABLE_ENTITY,
            };
            (status, format!("“{m}” {e}."))
        }),
    }
}

/// The month's usage and invoice from one read of the metering tables.
async fn compute(
    state: &AppState,
    account: &str,
    m: Month,
    now: Now,
) -> Result<(Usage, Invoice), StoreError> {
    let (from_s, to_s) = (m.start_s(), m.end_s());
    let (intervals, lifetimes) = state
        .store
        .usage_inputs(account, from_s, to_s, now.s())
        .await?;
    let last = m.next().first_day().previous_day().expect("month has days");
    let prices = state.store.prices();
    Ok((
        billing::usage(
            m.first_day(),
            last,
            prices,
            &intervals,
            &lifetimes,
            now.ms(),
        ),
        billing::invoice(m, prices, &intervals, &lifetimes, now.ms()),
    ))
}

/// The month a usage request names (`?month=`, default this month) with its usage and invoice,
/// or the error page to answer instead.
async fn requested_month(
    state: &AppState,
    user: &WebUser,
    now: Now,
    raw: Option<&str>,
) -> Result<(Month, Usage, Invoice), Response> {
    let m = month_param(raw, now)
        .map_err(|(status, msg)| layout::error_page(Some(user), status, "Bad request", &msg))?;
    let (usage, invoice) = compute(state, &user.principal.account_id, m, now)
        .await
        .map_err(|e| layout::store_error(Some(user), e))?;
    Ok((m, usage, invoice))
}

fn month_name(m: Month) -> String {
    format!("{} {}", m.month, m.year)
}

fn prev(m: Month) -> Month {
    let d = m.first_day().previous_day().expect("a previous day");
    Month::of(d)
}

fn hours_axis(v: f64) -> String {
    let secs = v * 3600.0;
    if v == 0.0 {
        "0 h".into()
    } else if secs < 60.0 {
        format!("{secs:.0} s")
    } else if v < 1.0 {
        format!("{:.0} min", secs / 60.0)
    } else {
        format!("{v} h")
    }
}

fn usd_axis(v: f64) -> String {
    if v == 0.0 {
        "$0".into()
    } else if v < 0.1 {
        format!("${v:.3}")
    } else {
        format!("${v:.2}")
    }
}

/// `GET /usage?month=YYYY-MM` (default: this month).
pub async fn page_handler(
    State(state): State<AppState>,
    user: WebUser,
    now: Now,
    RawQuery(raw): RawQuery,
) -> Response {
    let (m, usage, invoice) = match requested_month(&state, &user, now, raw.as_deref()).await {
        Ok(x) => x,
        Err(page) => return page,
    };
    let title = format!("Usage, {}", month_name(m));
    html_response(
        StatusCode::OK,
        page(&title, Some(&user), Nav::Usage, body(m, &usage, &invoice)),
    )
}

fn body(m: Month, usage: &Usage, invoice: &Invoice) -> Markup {
    let hours: Vec<Bar> = usage
        .days
        .iter()
        .map(|d| Bar {
            label: d.date[8..].trim_start_matches('0').to_string(),
            value: d.active_seconds as f64 / 3600.0,
            title: format!("{}: {} active", d.date, duration(d.active_seconds)),
        })
        .collect();
    let cost: Vec<Bar> = usage
        .days
        .iter()
        .map(|d| Bar {
            label: d.date[8..].trim_start_matches('0').to_string(),
            value: d.cost_micros as f64 / 1e6,
            title: format!("{}: {}", d.date, usd(d.cost_micros)),
        })
        .collect();
    let ms = m.to_string();
    html! {
        h1 { "Usage, " (month_name(m)) }
        nav class="pager" aria-label="Months" {
            a href={ "/usage?month=" (prev(m)) } rel="prev" { "Previous month (" (prev(m)) ")" }
            a href={ "/usage?month=" (m.next()) } rel="next" { "Next month (" (m.next()) ")" }
        }
        form method="get" action="/usage" class="filters" {
            label for="month" { "Month" }
            input id="month" name="month" type="month" value=(ms) required;
            button type="submit" { "Show" }
        }
        p class="summary" {
            "Active time " strong { (duration(usage.total_active_seconds)) } ", cost "
            strong { (usd(usage.total_cost_micros)) } " (" (usage.currency) "); the invoice is "
            strong { (invoice.status) } "."
        }
        p class="downloads" {
            a href={ "/usage.csv?month=" (ms) } download { "Daily usage (CSV)" }
            " · "
            a href={ "/invoice.csv?month=" (ms) } download { "Invoice lines (CSV)" }
        }
        section aria-labelledby="h-charts" {
            h2 id="h-charts" { "Per day" }
            div class="charts" {
                figure {
                    (bar_chart("chart-hours", &format!("Active hours per day, {}", month_name(m)),
                        "Bar chart; the same figures are in the daily usage table below.", &hours, hours_axis))
                    figcaption { "Active hours per day" }
                }
                figure {
                    (bar_chart("chart-cost", &format!("Cost per day, {}", month_name(m)),
                        "Bar chart; the same figures are in the daily usage table below.", &cost, usd_axis))
                    figcaption { "Cost per day (active time and storage)" }
                }
            }
            details {
                summary { "Daily usage table" }
                div class="scroll" {
                    table id="daily" {
                        caption { "Daily usage, " (month_name(m)) }
                        thead { tr {
                            th scope="col" { "Date" } th scope="col" { "Active time" }
                            th scope="col" { "Repositories stored" } th scope="col" { "Cost" }
                        } }
                        tbody {
                            @for d in &usage.days {
                                tr {
                                    th scope="row" { time datetime=(d.date) { (d.date) } }
                                    td class="num" { (duration(d.active_seconds)) }
                                    td class="num" { (d.storage_repositories) }
                                    td class="num" { (usd(d.cost_micros)) }
                                }
                            }
                        }
                    }
                }
            }
        }
        section aria-labelledby="h-repos" {
            h2 id="h-repos" { "Per repository" }
            @if usage.repositories.is_empty() {
                p { "No usage this month." }
            } @else {
                div class="scroll" {
                    table id="repositories-usage" {
                        caption { "Totals per repository, " (month_name(m)) }
                        thead { tr {
                            th scope="col" { "Repository" } th scope="col" { "Active time" }
                            th scope="col" { "Active cost" } th scope="col" { "Storage days" }
                            th scope="col" { "Storage cost" } th scope="col" { "Total" }
                        } }
                        tbody {
                            @for r in &usage.repositories {
                                tr {
                                    th scope="row" { (r.repository) }
                                    td class="num" { (duration(r.active_seconds)) }
                                    td class="num" { (usd(r.active_cost_micros)) }
                                    td class="num" { (r.storage_days) }
                                    td class="num" { (usd(r.storage_cost_micros)) }
                                    td class="num" { (usd(r.cost_micros)) }
                                }
                            }
                        }
                    }
                }
            }
        }
        section aria-labelledby="h-invoice" {
            h2 id="h-invoice" { "Invoice " (invoice.month) }
            p { "Status: " strong { (invoice.status) }
                @if invoice.status == "open" { " (it changes until the month is over)" } }
            div class="scroll" {
                table id="invoice" {
                    caption { "Invoice lines, " (month_name(m)) }
                    thead { tr {
                        th scope="col" { "Description" } th scope="col" { "Quantity" }
                        th scope="col" { "Unit price" } th scope="col" { "Amount" }
                    } }
                    tbody {
                        @if invoice.lines.is_empty() {
                            tr { td colspan="4" { "No charges." } }
                        }
                        @for l in &invoice.lines {
                            tr {
                                th scope="row" { (l.description) }
                                td class="num" {
                                    @if l.unit == "second" { (duration(l.quantity)) }
                                    @else { (l.quantity) " " (l.unit) @if l.quantity != 1 { "s" } }
                                }
                                td class="num" { (usd(l.unit_price_micros)) " / " (l.price_unit) }
                                td class="num" { (usd(l.amount_micros)) }
                            }
                        }
                    }
                    tfoot {
                        tr { th scope="row" colspan="3" { "Total" } td class="num" { strong { (usd(invoice.total_micros)) } } }
                    }
                }
            }
        }
    }
}

/// One CSV field: quoted when needed; cells that a spreadsheet would run as a formula are
/// prefixed with `'`.
pub fn csv_field(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{s}")
    } else {
        s.to_string()
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

fn csv_response(filename: &str, rows: Vec<Vec<String>>) -> Response {
    let mut out = String::new();
    for r in rows {
        let line: Vec<String> = r.iter().map(|f| csv_field(f)).collect();
        out.push_str(&line.join(","));
        out.push_str("\r\n");
    }
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{filename}\""),
            ),
            (header::CACHE_CONTROL, "no-store".to_string()),
        ],
        out,
    )
        .into_response()
}

fn micros_decimal(m: i64) -> String {
    format!("{}.{:06}", m / 1_000_000, m % 1_000_000)
}

/// `GET /usage.csv?month=YYYY-MM`: one row per day and repository with activity or storage.
pub async fn usage_csv(
    State(state): State<AppState>,
    user: WebUser,
    now: Now,
    RawQuery(raw): RawQuery,
) -> Response {
    let (m, usage, _) = match requested_month(&state, &user, now, raw.as_deref()).await {
        Ok(x) => x,
        Err(page) => return page,
    };
    let mut rows = vec![
        [
            "date",
            "active_seconds",
            "storage_repositories",
            "cost_micros",
            "cost_usd",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for d in &usage.days {
        rows.push(vec![
            d.date.clone(),
            d.active_seconds.to_string(),
            d.storage_repositories.to_string(),
            d.cost_micros.to_string(),
            micros_decimal(d.cost_micros),
        ]);
    }
    csv_response(&format!("rclaude-usage-{m}.csv"), rows)
}

/// `GET /invoice.csv?month=YYYY-MM`: the invoice lines.
pub async fn invoice_csv(
    State(state): State<AppState>,
    user: WebUser,
    now: Now,
    RawQuery(raw): RawQuery,
) -> Response {
    let (m, _, invoice) = match requested_month(&state, &user, now, raw.as_deref()).await {
        Ok(x) => x,
        Err(page) => return page,
    };
    let mut rows = vec![
        [
            "month",
            "status",
            "kind",
            "repository",
            "quantity",
            "unit",
            "unit_price_micros",
            "price_unit",
            "amount_micros",
            "amount_usd",
            "description",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for l in &invoice.lines {
        rows.push(vec![
            invoice.month.clone(),
            invoice.status.to_string(),
            l.kind.to_string(),
            l.repository.clone(),
            l.quantity.to_string(),
            l.unit.to_string(),
            l.unit_price_micros.to_string(),
            l.price_unit.to_string(),
            l.amount_micros.to_string(),
            micros_decimal(l.amount_micros),
            l.description.clone(),
        ]);
    }
    csv_response(&format!("rclaude-invoice-{m}.csv"), rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axis_labels() {
        assert_eq!(hours_axis(0.0), "0 h");
        assert_eq!(hours_axis(1.0 / 3600.0), "1 s");
        assert_eq!(hours_axis(0.5), "30 min");
        assert_eq!(hours_axis(2.5), "2.5 h");
        assert_eq!(usd_axis(0.05), "$0.050");
        assert_eq!(usd_axis(2.0), "$2.00");
    }

    #[test]
    fn csv_fields() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("=cmd()"), "'=cmd()");
        assert_eq!(micros_decimal(261_290), "0.261290");
    }
}
