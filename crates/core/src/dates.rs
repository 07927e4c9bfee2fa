//! Lead dates: the formats senders use, and the two shapes HubSpot takes.
//!
//! HubSpot `date` properties take midnight UTC of the calendar day as epoch milliseconds; `datetime`
//! properties take the instant as epoch milliseconds (see `reference/hubspot.md`). A lead date carries
//! both: the calendar date *in the sender's own offset* (Aimbase's `2026-11-20 -06:00` is the 20th,
//! even though 20 Nov 00:00 at -06:00 is 06:00 UTC) and the instant.

use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};

/// A parsed lead date.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeadDate {
    /// The calendar date in the sender's own offset (UTC for epoch milliseconds).
    pub date: Date,
    /// The instant the sender meant (local midnight when only a date was sent).
    pub instant: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid date `{input}`: {message}")]
pub struct DateError {
    /// The input as received (cut to 64 characters).
    pub input: String,
    pub message: String,
}

/// Parses a lead date. Accepted, after trimming:
/// - `2026-11-20T14:30:00-06:00`, `...Z`, fractional seconds, `HH:MM` without seconds, offsets as
///   `±hh:mm`, `±hhmm` or `±hh` (RFC 3339 / ISO 8601);
/// - `2026-11-20 14:30:00 -06:00` (space instead of `T`, optional space before the offset);
/// - `2026-11-20T14:30:00` without an offset: UTC;
/// - `2026-11-20 -06:00` (Aimbase's `YYYY-MM-dd ±hh:mm`): local midnight at that offset;
/// - `2026-11-20`: UTC midnight;
/// - epoch milliseconds, exactly 13 digits (10 digits are refused: that is seconds).
pub fn parse_lead_date(s: &str) -> Result<LeadDate, DateError> {
    let input = s.trim();
    let err = |message: &str| DateError { input: input.chars().take(64).collect(), message: message.to_string() };
    if input.is_empty() {
        return Err(err("empty"));
    }
    if input.bytes().all(|b| b.is_ascii_digit()) {
        return parse_epoch_ms(input).map_err(|m| err(&m));
    }
    let (date, rest) = parse_date(input).map_err(|m| err(&m))?;
    let (time, rest) = match rest.as_bytes().first() {
        None => (Time::MIDNIGHT, ""),
        Some(b'T' | b't') => parse_time(&rest[1..]).map_err(|m| err(&m))?,
        Some(b' ') => {
            let after = rest.trim_start();
            if after.starts_with(['+', '-', 'Z', 'z']) {
                (Time::MIDNIGHT, after)
            } else {
                parse_time(after).map_err(|m| err(&m))?
            }
        }
        Some(_) => return Err(err("expected `T`, a space or the end after the date")),
    };
    let offset = parse_offset(rest.trim_start()).map_err(|m| err(&m))?;
    let instant = PrimitiveDateTime::new(date, time).assume_offset(offset);
    Ok(LeadDate { date, instant })
}

/// Midnight UTC of `d.date` as epoch milliseconds: what HubSpot `date` properties take.
pub fn hubspot_date(d: &LeadDate) -> String {
    (d.date.midnight().assume_utc().unix_timestamp() * 1000).to_string()
}

/// `d.instant` as epoch milliseconds: what HubSpot `datetime` properties take.
pub fn hubspot_datetime(d: &LeadDate) -> String {
    d.instant.unix_timestamp_nanos().div_euclid(1_000_000).to_string()
}

fn parse_epoch_ms(digits: &str) -> Result<LeadDate, String> {
    if digits.len() != 13 {
        let hint = if digits.len() == 10 { " (10 digits looks like epoch seconds)" } else { "" };
        return Err(format!("epoch milliseconds must have 13 digits{hint}"));
    }
    let ms: i128 = digits.parse().map_err(|_| "not a number".to_string())?;
    let instant = OffsetDateTime::from_unix_timestamp_nanos(ms * 1_000_000).map_err(|_| "out of range".to_string())?;
    Ok(LeadDate { date: instant.date(), instant })
}

/// `YYYY-MM-DD` at the start of `s`; returns the date and what follows.
fn parse_date(s: &str) -> Result<(Date, &str), String> {
    let b = s.as_bytes();
    let shape_ok = b.len() >= 10
        && b[4] == b'-'
        && b[7] == b'-'
        && [0, 1, 2, 3, 5, 6, 8, 9].iter().all(|&i| b[i].is_ascii_digit());
    if !shape_ok {
        return Err("expected a date as YYYY-MM-DD".into());
    }
    let year = number(&b[0..4]) as i32;
    let month = Month::try_from(number(&b[5..7]) as u8).map_err(|_| "month out of range")?;
    let day = number(&b[8..10]) as u8;
    let date = Date::from_calendar_date(year, month, day).map_err(|_| "day out of range")?;
    Ok((date, &s[10..]))
}

/// `HH:MM[:SS[.fraction]]` at the start of `s`; returns the time and what follows.
fn parse_time(s: &str) -> Result<(Time, &str), String> {
    let b = s.as_bytes();
    let two = |i: usize| -> Option<u8> {
        match b.get(i..i + 2) {
            Some(d) if d.iter().all(u8::is_ascii_digit) => Some(number(d) as u8),
            _ => None,
        }
    };
    let bad = || "expected a time as HH:MM[:SS[.fraction]]".to_string();
    let hour = two(0).ok_or_else(bad)?;
    if b.get(2) != Some(&b':') {
        return Err(bad());
    }
    let minute = two(3).ok_or_else(bad)?;
    let mut pos = 5;
    let mut second = 0;
    let mut nanos = 0u32;
    if b.get(pos) == Some(&b':') {
        second = two(pos + 1).ok_or_else(bad)?;
        pos += 3;
        if matches!(b.get(pos), Some(b'.' | b',')) {
            let digits = b[pos + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
            if digits == 0 || digits > 9 {
                return Err("fractional seconds need 1 to 9 digits".into());
            }
            nanos = number(&b[pos + 1..pos + 1 + digits]) * 10u32.pow(9 - digits as u32);
            pos += 1 + digits;
        }
    }
    let time = Time::from_hms_nano(hour, minute, second, nanos).map_err(|_| "time out of range")?;
    Ok((time, &s[pos..]))
}

/// Empty (UTC), `Z`, `±hh:mm`, `±hhmm` or `±hh`; nothing may follow.
fn parse_offset(s: &str) -> Result<UtcOffset, String> {
    if s.is_empty() || s.eq_ignore_ascii_case("z") {
        return Ok(UtcOffset::UTC);
    }
    let b = s.as_bytes();
    let sign: i8 = match b[0] {
        b'+' => 1,
        b'-' => -1,
        _ => return Err("expected an offset such as -06:00 or Z".into()),
    };
    let digits: Vec<u8> = match &b[1..] {
        [h1, h2, b':', m1, m2] => vec![*h1, *h2, *m1, *m2],
        [h1, h2, m1, m2] => vec![*h1, *h2, *m1, *m2],
        [h1, h2] => vec![*h1, *h2, b'0', b'0'],
        _ => return Err("expected an offset such as -06:00 or Z".into()),
    };
    if !digits.iter().all(u8::is_ascii_digit) {
        return Err("expected an offset such as -06:00 or Z".into());
    }
    let (hours, minutes) = (number(&digits[0..2]) as i8, number(&digits[2..4]) as i8);
    if hours > 18 || minutes > 59 {
        return Err("offset out of range".into());
    }
    UtcOffset::from_hms(sign * hours, sign * minutes, 0).map_err(|_| "offset out of range".into())
}

/// The value of a run of ASCII digits (at most 9, checked by the callers).
fn number(digits: &[u8]) -> u32 {
    digits.iter().fold(0, |acc, d| acc * 10 + u32::from(d - b'0'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::{date, datetime};

    fn ok(s: &str) -> LeadDate {
        parse_lead_date(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn reference_example_midnight_utc_ms() {
        let d = ok("2015-05-01");
        assert_eq!(hubspot_date(&d), "1430438400000");
        assert_eq!(hubspot_datetime(&d), "1430438400000");
    }

    #[test]
    fn aimbase_negative_offset_keeps_its_calendar_date() {
        // 2026-11-20 00:00 at -06:00 is 06:00 UTC on the 20th; 23:00 at -06:00 would be the 21st in UTC.
        let d = ok("2026-11-20 -06:00");
        assert_eq!(d.date, date!(2026 - 11 - 20));
        assert_eq!(d.instant, datetime!(2026-11-20 0:00 -6));
        assert_eq!(hubspot_date(&d), "1795132800000"); // 2026-11-20T00:00Z
        assert_eq!(hubspot_datetime(&d), "1795154400000"); // 2026-11-20T06:00Z

        let late = ok("2026-11-20 23:30:00 -06:00");
        assert_eq!(late.date, date!(2026 - 11 - 20));
        assert_eq!(late.instant.to_offset(UtcOffset::UTC).date(), date!(2026 - 11 - 21));
        assert_eq!(hubspot_date(&late), "1795132800000");
    }

    #[test]
    fn aimbase_positive_offset_keeps_its_calendar_date() {
        // Midnight at +05:30 is the previous day in UTC.
        let d = ok("2026-11-20 +05:30");
        assert_eq!(d.date, date!(2026 - 11 - 20));
        assert_eq!(d.instant.to_offset(UtcOffset::UTC).date(), date!(2026 - 11 - 19));
        assert_eq!(hubspot_date(&d), "1795132800000");
        assert_eq!(hubspot_datetime(&d), "1795113000000"); // 2026-11-19T18:30Z
    }

    #[test]
    fn rfc3339_and_variants() {
        let d = ok("2026-11-20T14:30:00-06:00");
        assert_eq!(d.date, date!(2026 - 11 - 20));
        assert_eq!(d.instant, datetime!(2026-11-20 20:30 UTC));
        assert_eq!(ok("2026-11-20T20:30:00Z").instant, d.instant);
        assert_eq!(ok("2026-11-20t20:30:00z").instant, d.instant);
        assert_eq!(ok("2026-11-20 14:30:00 -06:00").instant, d.instant);
        assert_eq!(ok("2026-11-20 14:30:00-0600").instant, d.instant);
        assert_eq!(ok("2026-11-20T14:30-06").instant, d.instant);
        assert_eq!(ok("2026-11-20T20:30:00").instant, d.instant); // no offset: UTC
        let frac = ok("2026-11-20T20:30:00.123456Z");
        assert_eq!(hubspot_datetime(&frac), "1795206600123");
        assert_eq!(ok("  2026-11-20  ").date, date!(2026 - 11 - 20));
    }

    #[test]
    fn epoch_milliseconds_not_seconds() {
        let d = ok("1430438400000");
        assert_eq!(d.date, date!(2015 - 05 - 01));
        assert_eq!(hubspot_datetime(&d), "1430438400000");
        let e = parse_lead_date("1430438400").unwrap_err();
        assert!(e.message.contains("seconds"), "{e}");
        assert!(parse_lead_date("14304384000000").is_err());
        // A date is sent as milliseconds: 13 digits, not 10.
        assert_eq!(hubspot_date(&ok("2026-11-20")).len(), 13);
    }

    #[test]
    fn rejects() {
        for bad in [
            "",
            "   ",
            "20/11/2026",
            "2026-13-01",
            "2026-02-30",
            "2026-1-5",
            "2026-11-20T25:00:00Z",
            "2026-11-20T14:30:00+19:00",
            "2026-11-20 -6",
            "2026-11-20X",
            "2026-11-20T14:30:00.Z",
            "2026-11-20T14:30:00Z trailing",
            "tomorrow",
            "２０２６-11-20",
        ] {
            assert!(parse_lead_date(bad).is_err(), "{bad:?} should be refused");
        }
        let e = parse_lead_date("20/11/2026").unwrap_err();
        assert_eq!(e.input, "20/11/2026");
        assert!(e.to_string().contains("20/11/2026"));
    }
}
