//! How times and ages read to an operator, the same in the CLI's tables and the console's pages.

use std::time::Duration;

use time::macros::format_description;
use time::OffsetDateTime;

/// `2026-03-02T12:00:05Z` (UTC, whole seconds).
pub fn time(t: OffsetDateTime) -> String {
    let fmt = format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    t.to_offset(time::UtcOffset::UTC).format(&fmt).unwrap_or_else(|_| t.to_string())
}

/// `45s`, `12m`, `3h12m`, `2d4h`: the two largest units.
pub fn age(d: Duration) -> String {
    let s = d.as_secs();
    let (days, hours, minutes, seconds) = (s / 86_400, s % 86_400 / 3600, s % 3600 / 60, s % 60);
    match (days, hours, minutes) {
        (0, 0, 0) => format!("{seconds}s"),
        (0, 0, m) => format!("{m}m"),
        (0, h, 0) => format!("{h}h"),
        (0, h, m) => format!("{h}h{m}m"),
        (d, 0, _) => format!("{d}d"),
        (d, h, _) => format!("{d}d{h}h"),
    }
}
