//! Small text helpers for `hubrelay events` and `hubrelay dlq`: times, ages, aligned tables.

use std::time::Duration;

use time::OffsetDateTime;

pub use hubrelay_core::display::{age, time};

/// Time since `t` (zero if in the future).
pub fn since(t: OffsetDateTime, now: OffsetDateTime) -> Duration {
    (now - t).try_into().unwrap_or(Duration::ZERO)
}

/// `in 4m` / `4m ago` / `now`.
pub fn relative(t: OffsetDateTime, now: OffsetDateTime) -> String {
    let d = t - now;
    if d.whole_seconds() == 0 {
        "now".into()
    } else if d.is_positive() {
        format!("in {}", age(d.try_into().unwrap_or(Duration::ZERO)))
    } else {
        format!("{} ago", age((-d).try_into().unwrap_or(Duration::ZERO)))
    }
}

/// Left-aligned columns separated by two spaces; the last column is not padded.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<w$}  ", w = widths[i]));
            }
        }
        out.trim_end().to_string() + "\n"
    };
    let mut out = line(header.to_vec());
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

/// `-` for a missing value.
pub fn or_dash(v: Option<impl ToString>) -> String {
    v.map(|v| v.to_string()).unwrap_or_else(|| "-".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn ages() {
        assert_eq!(age(Duration::from_secs(45)), "45s");
        assert_eq!(age(Duration::from_secs(12 * 60 + 5)), "12m");
        assert_eq!(age(Duration::from_secs(3 * 3600)), "3h");
        assert_eq!(age(Duration::from_secs(3 * 3600 + 12 * 60)), "3h12m");
        assert_eq!(age(Duration::from_secs(2 * 86_400 + 4 * 3600 + 7)), "2d4h");
        assert_eq!(age(Duration::from_secs(86_400)), "1d");
    }

    #[test]
    fn times() {
        let t = datetime!(2026-03-02 12:00:05.5 +01:00);
        assert_eq!(time(t), "2026-03-02T11:00:05Z");
        let now = datetime!(2026-03-02 12:00 UTC);
        assert_eq!(relative(now + Duration::from_secs(240), now), "in 4m");
        assert_eq!(relative(now - Duration::from_secs(7200), now), "2h ago");
        assert_eq!(relative(now, now), "now");
    }

    #[test]
    fn tables_align() {
        let t = table(&["A", "LONGER"], &[vec!["xyz".into(), "1".into()], vec!["q".into(), "22".into()]]);
        assert_eq!(t, "A    LONGER\nxyz  1\nq    22\n");
    }
}
