//! Billing arithmetic: pure functions over active intervals and repository lifetimes.
//!
//! Rules (see docs/server.md):
//! - Active time is billed per second: `amount = seconds × hour_micros / 3600`, rounded half-up
//!   once per line (never per interval).
//! - Storage: a repository counts for every UTC day on which at least one of its sessions existed
//!   (from the session's creation until its `stopped` event; a session never stopped keeps
//!   counting up to today) or one of its checkpoints was stored (from upload to deletion). `amount = days × month_micros / days_in_month`, rounded once per line.
//! - Intervals are split at UTC midnight for per-day figures and at month boundaries for invoices.
//!
//! Length: a third of the file is unit tests of the arithmetic.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use time::{Date, Duration, Month as TimeMonth, OffsetDateTime};
use utoipa::ToSchema;
use utoipa::openapi::schema::Object;

use crate::config::Prices;

/// A closed active interval `[start_s, end_s)` of some session of `repository`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interval {
    pub repository: String,
    pub start_s: i64,
    pub end_s: i64,
}

/// The lifetime of one session, for storage: from creation to `stopped` (or still alive).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lifetime {
    pub repository: String,
    pub created_ms: i64,
    pub stopped_ms: Option<i64>,
}

/// `num / den` rounded half-up; both non-negative, `den > 0`.
pub fn round_half_up(num: i128, den: i128) -> i64 {
    debug_assert!(num >= 0 && den > 0);
    ((2 * num + den) / (2 * den)) as i64
}

/// Price of `seconds` of active time at `hour_micros` per hour, rounded once.
pub fn active_amount(seconds: i64, hour_micros: i64) -> i64 {
    round_half_up(seconds as i128 * hour_micros as i128, 3600)
}

/// Price of `days` of storage in a month of `days_in_month` days, rounded once.
pub fn storage_amount(days: i64, month_micros: i64, days_in_month: i64) -> i64 {
    round_half_up(days as i128 * month_micros as i128, days_in_month as i128)
}

/// A calendar month (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Month {
    pub year: i32,
    pub month: TimeMonth,
}

/// The first and last month the server can bill (`YYYY-MM`): the calendar library's dates end in
/// 9999, and a month needs the first day of the next one.
pub const FIRST_MONTH: &str = "1970-01";
pub const LAST_MONTH: &str = "9998-12";

/// Why a month was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MonthError {
    #[error("is not a month; use YYYY-MM (e.g. 2025-02)")]
    Malformed,
    #[error("is outside the supported range {FIRST_MONTH} to {LAST_MONTH}")]
    OutOfRange,
}

impl Month {
    /// Parses `YYYY-MM` between [`FIRST_MONTH`] and [`LAST_MONTH`].
    pub fn parse(s: &str) -> Result<Month, MonthError> {
        let (y, m) = s.split_once('-').ok_or(MonthError::Malformed)?;
        if y.len() != 4 || m.len() != 2 || !y.bytes().chain(m.bytes()).all(|b| b.is_ascii_digit()) {
            return Err(MonthError::Malformed);
        }
        let year: i32 = y.parse().map_err(|_| MonthError::Malformed)?;
        let month = m
            .parse::<u8>()
            .ok()
            .and_then(|m| TimeMonth::try_from(m).ok())
            .ok_or(MonthError::Malformed)?;
        if !(1970..=9998).contains(&year) {
            return Err(MonthError::OutOfRange);
        }
        Ok(Month { year, month })
    }

    /// The month containing `date`.
    pub fn of(date: Date) -> Month {
        Month {
            year: date.year(),
            month: date.month(),
        }
    }

    pub fn first_day(self) -> Date {
        Date::from_calendar_date(self.year, self.month, 1).expect("valid first day")
    }

    pub fn days(self) -> i64 {
        self.month.length(self.year) as i64
    }

    pub fn next(self) -> Month {
        let (year, month) = match self.month {
            TimeMonth::December => (self.year + 1, TimeMonth::January),
            m => (self.year, m.next()),
        };
        Month { year, month }
    }

    pub fn start_s(self) -> i64 {
        day_start_s(self.first_day())
    }

    pub fn end_s(self) -> i64 {
        self.next().start_s()
    }
}

impl std::fmt::Display for Month {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month as u8)
    }
}

/// Unix seconds of `date` 00:00:00 UTC.
pub fn day_start_s(date: Date) -> i64 {
    date.midnight().assume_utc().unix_timestamp()
}

/// The UTC date containing Unix second `s`.
pub fn date_of_s(s: i64) -> Date {
    OffsetDateTime::from_unix_timestamp(s)
        .map(|t| t.date())
        .unwrap_or(Date::MIN)
}

/// Seconds of `[start, end)` inside `[from, to)`.
pub fn overlap(start: i64, end: i64, from: i64, to: i64) -> i64 {
    (end.min(to) - start.max(from)).max(0)
}

/// Active seconds per (UTC day, repository) for the part of `intervals` inside `[from_s, to_s)`.
pub fn seconds_by_day(
    intervals: &[Interval],
    from_s: i64,
    to_s: i64,
) -> BTreeMap<(Date, String), i64> {
    let mut out: BTreeMap<(Date, String), i64> = BTreeMap::new();
    for iv in intervals {
        let mut t = iv.start_s.max(from_s);
        let end = iv.end_s.min(to_s);
        while t < end {
            let day = date_of_s(t);
            let next = day_start_s(day + Duration::DAY).min(end);
            *out.entry((day, iv.repository.clone())).or_default() += next - t;
            t = next;
        }
    }
    out
}

/// For each repository, the UTC days in `[first, last]` (inclusive) on which it existed,
/// never counting days after `today`.
pub fn storage_days(
    lifetimes: &[Lifetime],
    first: Date,
    last: Date,
    now_ms: i64,
) -> BTreeMap<String, BTreeSet<Date>> {
    let today = date_of_s(now_ms.div_euclid(1000));
    let last = last.min(today);
    let mut out: BTreeMap<String, BTreeSet<Date>> = BTreeMap::new();
    for lt in lifetimes {
        let end_ms = lt.stopped_ms.unwrap_or(now_ms).max(lt.created_ms);
        let born = date_of_s(lt.created_ms.div_euclid(1000));
        // The last instant it existed: a session stopped exactly at midnight does not count
        // for the day that begins then.
        let died = date_of_s((end_ms - 1).max(lt.created_ms).div_euclid(1000));
        let (mut d, until) = (born.max(first), died.min(last));
        let days = out.entry(lt.repository.clone()).or_default();
        while d <= until {
            days.insert(d);
            d = match d.next_day() {
                Some(n) => n,
                None => break,
            };
        }
    }
    out.retain(|_, days| !days.is_empty());
    out
}

/// One line of an invoice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct InvoiceLine {
    /// `active` or `storage`.
    #[schema(schema_with = line_kind_schema)]
    pub kind: &'static str,
    pub repository: String,
    /// Seconds (active) or days (storage).
    pub quantity: i64,
    /// `second` or `day`.
    #[schema(schema_with = unit_schema)]
    pub unit: &'static str,
    /// Price per `price_unit`, in micro-dollars.
    pub unit_price_micros: i64,
    /// `hour` (active) or `month` (storage).
    #[schema(schema_with = price_unit_schema)]
    pub price_unit: &'static str,
    /// Micro-dollars, rounded once per line.
    pub amount_micros: i64,
    pub description: String,
}

/// A month's invoice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Invoice {
    /// `YYYY-MM`.
    pub month: String,
    /// `open` while the month (plus the heartbeat grace) is not over, then `final`.
    #[schema(schema_with = invoice_status_schema)]
    pub status: &'static str,
    #[schema(schema_with = currency_schema)]
    pub currency: &'static str,
    pub lines: Vec<InvoiceLine>,
    /// Micro-dollars: the sum of the lines.
    pub total_micros: i64,
}

// The values the `&'static str` fields above take, for the OpenAPI document.
fn line_kind_schema() -> Object {
    crate::model::string_enum(["active", "storage"])
}
fn unit_schema() -> Object {
    crate::model::string_enum(["second", "day"])
}
fn price_unit_schema() -> Object {
    crate::model::string_enum(["hour", "month"])
}
fn invoice_status_schema() -> Object {
    crate::model::string_enum(["open", "final"])
}
fn currency_schema() -> Object {
    crate::model::string_enum(["USD"])
}

/// Builds the invoice of `month` from intervals and lifetimes (open intervals already cut at
/// "now" or last sign of life + grace by the caller).
pub fn invoice(
    month: Month,
    prices: &Prices,
    intervals: &[Interval],
    lifetimes: &[Lifetime],
    now_ms: i64,
) -> Invoice {
    let (from, to) = (month.start_s(), month.end_s());
    let mut active: BTreeMap<&str, i64> = BTreeMap::new();
    for iv in intervals {
        let s = overlap(iv.start_s, iv.end_s, from, to);
        if s > 0 {
            *active.entry(iv.repository.as_str()).or_default() += s;
        }
    }
    let last_day = month
        .next()
        .first_day()
        .previous_day()
        .expect("month has days");
    let storage = storage_days(lifetimes, month.first_day(), last_day, now_ms);
    let repos: BTreeSet<&str> = active
        .keys()
        .copied()
        .chain(storage.keys().map(String::as_str))
        .collect();
    let mut lines = Vec::new();
    for repo in repos {
        if let Some(&secs) = active.get(repo) {
            lines.push(InvoiceLine {
                kind: "active",
                repository: repo.to_string(),
                quantity: secs,
                unit: "second",
                unit_price_micros: prices.hour_micros,
                price_unit: "hour",
                amount_micros: active_amount(secs, prices.hour_micros),
                description: format!(
                    "Active sandbox time for {repo}: {} at {}/hour",
                    format_hms(secs),
                    format_usd(prices.hour_micros)
                ),
            });
        }
        if let Some(days) = storage.get(repo) {
            let n = days.len() as i64;
            lines.push(InvoiceLine {
                kind: "storage",
                repository: repo.to_string(),
                quantity: n,
                unit: "day",
                unit_price_micros: prices.storage_month_micros,
                price_unit: "month",
                amount_micros: storage_amount(n, prices.storage_month_micros, month.days()),
                description: format!(
                    "Persistent storage for {repo}: {n} of {} days at {}/month",
                    month.days(),
                    format_usd(prices.storage_month_micros)
                ),
            });
        }
    }
    let total_micros = lines.iter().map(|l| l.amount_micros).sum();
    let final_after_s = to + prices.heartbeat_grace_s;
    Invoice {
        month: month.to_string(),
        status: if now_ms.div_euclid(1000) >= final_after_s {
            "final"
        } else {
            "open"
        },
        currency: "USD",
        lines,
        total_micros,
    }
}

/// Usage of one repository over a date range.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct RepositoryUsage {
    pub repository: String,
    pub active_seconds: i64,
    pub active_cost_micros: i64,
    pub storage_days: i64,
    pub storage_cost_micros: i64,
    pub cost_micros: i64,
}

/// One repository's active seconds on one day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct DayRepository {
    pub repository: String,
    pub active_seconds: i64,
}

/// Usage on one UTC day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct DayUsage {
    #[schema(format = Date)]
    pub date: String,
    pub active_seconds: i64,
    /// Repositories whose storage was billed that day.
    pub storage_repositories: i64,
    /// Active + storage cost of that day, rounded once.
    pub cost_micros: i64,
    pub repositories: Vec<DayRepository>,
}

/// `GET /v1/usage` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Usage {
    /// First day, inclusive.
    #[schema(format = Date)]
    pub from: String,
    /// Last day, inclusive.
    #[schema(format = Date)]
    pub to: String,
    #[schema(schema_with = currency_schema)]
    pub currency: &'static str,
    pub repositories: Vec<RepositoryUsage>,
    pub days: Vec<DayUsage>,
    pub total_active_seconds: i64,
    pub total_cost_micros: i64,
}

/// Usage between dates `from` and `to`, both inclusive.
///
/// Per repository: active cost is rounded once over the whole range; storage cost is rounded
/// once per calendar month touched (as on the invoices). Per day: one rounding per day.
pub fn usage(
    from: Date,
    to: Date,
    prices: &Prices,
    intervals: &[Interval],
    lifetimes: &[Lifetime],
    now_ms: i64,
) -> Usage {
    let (from_s, to_s) = (day_start_s(from), day_start_s(to) + 86_400);
    let by_day = seconds_by_day(intervals, from_s, to_s);
    let storage = storage_days(lifetimes, from, to, now_ms);

    let mut repos: BTreeMap<String, RepositoryUsage> = BTreeMap::new();
    for ((_, repo), secs) in &by_day {
        get_repo(&mut repos, repo).active_seconds += secs;
    }
    for (repo, days) in &storage {
        let ru = get_repo(&mut repos, repo);
        ru.storage_days = days.len() as i64;
        let mut per_month: BTreeMap<Month, i64> = BTreeMap::new();
        for d in days {
            *per_month.entry(Month::of(*d)).or_default() += 1;
        }
        ru.storage_cost_micros = per_month
            .iter()
            .map(|(m, n)| storage_amount(*n, prices.storage_month_micros, m.days()))
            .sum();
    }
    for ru in repos.values_mut() {
        ru.active_cost_micros = active_amount(ru.active_seconds, prices.hour_micros);
        ru.cost_micros = ru.active_cost_micros + ru.storage_cost_micros;
    }

    let mut days = Vec::new();
    let mut d = from;
    while d <= to {
        let repos_today: Vec<DayRepository> = by_day
            .range((d, String::new())..)
            .take_while(|((day, _), _)| *day == d)
            .map(|((_, r), s)| DayRepository {
                repository: r.clone(),
                active_seconds: *s,
            })
            .collect();
        let active_seconds: i64 = repos_today.iter().map(|r| r.active_seconds).sum();
        let storage_repositories = storage.values().filter(|set| set.contains(&d)).count() as i64;
        let dim = Month::of(d).days() as i128;
        let num = active_seconds as i128 * prices.hour_micros as i128 * dim
            + storage_repositories as i128 * prices.storage_month_micros as i128 * 3600;
        days.push(DayUsage {
            date: d.to_string(),
            active_seconds,
            storage_repositories,
            cost_micros: round_half_up(num, 3600 * dim),
            repositories: repos_today,
        });
        d = match d.next_day() {
            Some(n) => n,
            None => break,
        };
    }

    let repositories: Vec<RepositoryUsage> = repos.into_values().collect();
    Usage {
        from: from.to_string(),
        to: to.to_string(),
        currency: "USD",
        total_active_seconds: repositories.iter().map(|r| r.active_seconds).sum(),
        total_cost_micros: repositories.iter().map(|r| r.cost_micros).sum(),
        repositories,
        days,
    }
}

fn get_repo<'a>(
    repos: &'a mut BTreeMap<String, RepositoryUsage>,
    repo: &str,
) -> &'a mut RepositoryUsage {
    repos
        .entry(repo.to_string())
        .or_insert_with(|| RepositoryUsage {
            repository: repo.to_string(),
            active_seconds: 0,
            active_cost_micros: 0,
            storage_days: 0,
            storage_cost_micros: 0,
            cost_micros: 0,
        })
}

/// `5400` → `1h 30m 0s`.
pub fn format_hms(secs: i64) -> String {
    format!("{}h {}m {}s", secs / 3600, secs % 3600 / 60, secs % 60)
}

/// `100000` → `$0.10`, `1234567` → `$1.234567`.
pub fn format_usd(micros: i64) -> String {
    let (whole, frac) = (micros / 1_000_000, micros % 1_000_000);
    let mut frac = format!("{frac:06}");
    while frac.len() > 2 && frac.ends_with('0') {
        frac.pop();
    }
    format!("${whole}.{frac}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::{date, datetime};

    fn s(dt: time::PrimitiveDateTime) -> i64 {
        dt.assume_utc().unix_timestamp()
    }

    #[test]
    fn rounding_is_half_up_once() {
        assert_eq!(active_amount(3600, 100_000), 100_000);
        assert_eq!(active_amount(1, 100_000), 28); // 27.78 → 28
        assert_eq!(active_amount(18, 100_000), 500); // exactly 500
        assert_eq!(active_amount(9, 100_000), 250); // exactly 250
        assert_eq!(active_amount(0, 100_000), 0);
        // 10 lines of 1 s would be 280; one line of 10 s is 278.
        assert_eq!(active_amount(10, 100_000), 278);
        assert_eq!(storage_amount(1, 5_000_000, 31), 161_290); // 161290.32
        assert_eq!(storage_amount(31, 5_000_000, 31), 5_000_000);
        assert_eq!(storage_amount(1, 5_000_000, 28), 178_571); // 178571.43
        assert_eq!(round_half_up(1, 2), 1);
        assert_eq!(round_half_up(3, 2), 2);
    }

    #[test]
    fn months() {
        let m = Month::parse("2024-02").unwrap();
        assert_eq!(m.days(), 29);
        assert_eq!(m.to_string(), "2024-02");
        assert_eq!(
            Month::parse("2024-12").unwrap().next().to_string(),
            "2025-01"
        );
        for bad in [
            "2024-13", "2024-00", "24-01", "2024-1", "2024/01", "abcd-ef",
        ] {
            assert_eq!(Month::parse(bad), Err(MonthError::Malformed), "{bad}");
        }
        for far in ["9999-12", "9999-01", "1969-12", "0000-01"] {
            assert_eq!(Month::parse(far), Err(MonthError::OutOfRange), "{far}");
        }
        // The last supported month has a next month and a last day.
        let last = Month::parse(LAST_MONTH).unwrap();
        assert_eq!(last.next().to_string(), "9999-01");
        assert!(last.end_s() > last.start_s());
    }

    #[test]
    fn intervals_split_at_midnight() {
        let iv = Interval {
            repository: "r".into(),
            start_s: s(datetime!(2025-01-31 23:00)),
            end_s: s(datetime!(2025-02-01 00:30)),
        };
        let by_day = seconds_by_day(&[iv], 0, i64::MAX);
        assert_eq!(by_day[&(date!(2025 - 01 - 31), "r".into())], 3600);
        assert_eq!(by_day[&(date!(2025 - 02 - 01), "r".into())], 1800);
    }

    #[test]
    fn storage_counts_days_of_existence() {
        let lts = [
            Lifetime {
                repository: "a".into(),
                created_ms: s(datetime!(2025-01-30 12:00)) * 1000,
                stopped_ms: Some(s(datetime!(2025-02-02 00:00)) * 1000),
            },
            // Overlapping second session of the same repository: days are not double counted.
            Lifetime {
                repository: "a".into(),
                created_ms: s(datetime!(2025-01-31 12:00)) * 1000,
                stopped_ms: Some(s(datetime!(2025-01-31 13:00)) * 1000),
            },
        ];
        let now = s(datetime!(2025-03-01 00:00)) * 1000;
        let jan = storage_days(&lts, date!(2025 - 01 - 01), date!(2025 - 01 - 31), now);
        assert_eq!(jan["a"].len(), 2); // 30th, 31st
        let feb = storage_days(&lts, date!(2025 - 02 - 01), date!(2025 - 02 - 28), now);
        assert_eq!(feb["a"].len(), 1); // 1st only: stopped at midnight of the 2nd
        // Never stopped: counts up to today only.
        let open = [Lifetime {
            repository: "b".into(),
            created_ms: s(datetime!(2025-02-10 08:00)) * 1000,
            stopped_ms: None,
        }];
        let now = s(datetime!(2025-02-12 01:00)) * 1000;
        let feb = storage_days(&open, date!(2025 - 02 - 01), date!(2025 - 02 - 28), now);
        assert_eq!(feb["b"].len(), 3); // 10th, 11th, 12th
    }

    #[test]
    fn invoice_worked_example() {
        // The worked example of docs/server.md.
        let prices = Prices::default();
        let ivs = [
            Interval {
                repository: "github.com/acme/app".into(),
                start_s: s(datetime!(2025-01-31 23:00)),
                end_s: s(datetime!(2025-02-01 00:30)),
            },
            Interval {
                repository: "github.com/acme/app".into(),
                start_s: s(datetime!(2025-02-01 10:00)),
                end_s: s(datetime!(2025-02-01 11:15:07)),
            },
        ];
        let lts = [Lifetime {
            repository: "github.com/acme/app".into(),
            created_ms: s(datetime!(2025-01-31 22:50)) * 1000,
            stopped_ms: Some(s(datetime!(2025-02-01 11:15:07)) * 1000),
        }];
        let now = s(datetime!(2025-03-05 00:00)) * 1000;
        let jan = invoice(Month::parse("2025-01").unwrap(), &prices, &ivs, &lts, now);
        assert_eq!(jan.status, "final");
        assert_eq!(jan.lines.len(), 2);
        assert_eq!(jan.lines[0].quantity, 3600);
        assert_eq!(jan.lines[0].amount_micros, 100_000);
        assert_eq!(jan.lines[1].quantity, 1);
        assert_eq!(jan.lines[1].amount_micros, 161_290);
        assert_eq!(jan.total_micros, 261_290);
        let feb = invoice(Month::parse("2025-02").unwrap(), &prices, &ivs, &lts, now);
        // 1800 + 4507 = 6307 s → 6307 × 100000 / 3600 = 175194.44 → 175194
        assert_eq!(feb.lines[0].quantity, 6307);
        assert_eq!(feb.lines[0].amount_micros, 175_194);
        assert_eq!(feb.lines[1].quantity, 1);
        assert_eq!(feb.lines[1].amount_micros, 178_571);
        assert_eq!(feb.total_micros, 353_765);
    }

    #[test]
    fn usage_totals_and_days() {
        let prices = Prices::default();
        let ivs = [Interval {
            repository: "r".into(),
            start_s: s(datetime!(2025-01-31 23:00)),
            end_s: s(datetime!(2025-02-01 00:30)),
        }];
        let lts = [Lifetime {
            repository: "r".into(),
            created_ms: s(datetime!(2025-01-31 23:00)) * 1000,
            stopped_ms: Some(s(datetime!(2025-02-01 00:30)) * 1000),
        }];
        let now = s(datetime!(2025-02-10 00:00)) * 1000;
        let u = usage(
            date!(2025 - 01 - 31),
            date!(2025 - 02 - 01),
            &prices,
            &ivs,
            &lts,
            now,
        );
        assert_eq!(u.total_active_seconds, 5400);
        assert_eq!(u.repositories[0].active_cost_micros, 150_000);
        assert_eq!(u.repositories[0].storage_days, 2);
        assert_eq!(u.repositories[0].storage_cost_micros, 161_290 + 178_571);
        assert_eq!(u.total_cost_micros, 150_000 + 161_290 + 178_571);
        assert_eq!(u.days.len(), 2);
        assert_eq!(u.days[0].active_seconds, 3600);
        assert_eq!(u.days[0].cost_micros, 100_000 + 161_290);
        assert_eq!(u.days[1].active_seconds, 1800);
        assert_eq!(u.days[1].cost_micros, 50_000 + 178_571);
    }

    #[test]
    fn usd_format() {
        assert_eq!(format_usd(100_000), "$0.10");
        assert_eq!(format_usd(5_000_000), "$5.00");
        assert_eq!(format_usd(1_234_567), "$1.234567");
    }
}
