//! Release dates: the archive's `Date`/`Valid-Until` format read and written, and time moved
//! forward without overflowing.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// `time` moved `by` later, or left as it is where that would overflow.
pub(super) fn later(time: SystemTime, by: Duration) -> SystemTime {
    time.checked_add(by).unwrap_or(time)
}

/// Parses a Release date: `[Day,] DD Mon YYYY HH:MM:SS ZONE`, ZONE being UTC, GMT, UT, Z or
/// a numeric `+HHMM`/`-HHMM` offset.
///
/// The words are split here because the archive writes `UTC`, which RFC 2822 parsers (chrono's
/// among them) refuse; the calendar (month lengths, leap years, the epoch) is chrono's.
pub(super) fn parse_date(text: &str) -> Option<SystemTime> {
    let mut words = text.split_whitespace().peekable();
    if words.peek()?.ends_with(',') {
        let day_name = words.next()?.trim_end_matches(',');
        day_name.parse::<chrono::Weekday>().ok()?;
    }
    let day: u32 = parse_digits(words.next()?, 1..=2)?;
    let month = words
        .next()?
        .parse::<chrono::Month>()
        .ok()?
        .number_from_month();
    let year: i32 = parse_digits(words.next()?, 4..=4)?;
    let mut clock = words.next()?.split(':');
    let hour: u32 = parse_digits(clock.next()?, 2..=2)?;
    let minute: u32 = parse_digits(clock.next()?, 2..=2)?;
    let second: u32 = parse_digits(clock.next()?, 2..=2)?;
    if clock.next().is_some() {
        return None;
    }
    let offset = match words.next()? {
        z if ["UTC", "GMT", "UT", "Z"]
            .iter()
            .any(|name| name.eq_ignore_ascii_case(z)) =>
        {
            0
        }
        z => {
            let (sign, digits) = match z.as_bytes().first()? {
                b'+' => (1, &z[1..]),
                b'-' => (-1, &z[1..]),
                _ => return None,
            };
            let hhmm: i64 = parse_digits(digits, 4..=4)?;
            if hhmm / 100 > 23 || hhmm % 100 > 59 {
                return None;
            }
            sign * (hhmm / 100 * 3600 + hhmm % 100 * 60)
        }
    };
    if words.next().is_some() {
        return None;
    }
    // A leap second (:60) is the last second of the minute, as the archive's clock would say.
    let (second, leap) = if second == 60 { (59, 1) } else { (second, 0) };
    let local =
        chrono::NaiveDate::from_ymd_opt(year, month, day)?.and_hms_opt(hour, minute, second)?;
    let seconds = local.and_utc().timestamp() + leap - offset;
    Some(UNIX_EPOCH + Duration::from_secs(u64::try_from(seconds).ok()?))
}

/// An unsigned decimal of an allowed number of ASCII digits.
fn parse_digits<T: std::str::FromStr>(
    text: &str,
    len: std::ops::RangeInclusive<usize>,
) -> Option<T> {
    if !len.contains(&text.len()) || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// `time` as the archive writes dates, e.g. `Sat, 21 Nov 2026 09:15:44 UTC`.
pub(super) fn format_date(time: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(time)
        .format("%a, %d %b %Y %H:%M:%S UTC")
        .to_string()
}

#[cfg(test)]
// Tests state their expectations with unwrap(); a panic there is the failure report.
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn dates_parse_as_the_archive_writes_them() {
        let secs = |t: &str| {
            parse_date(t)
                .unwrap()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_secs()
        };
        assert_eq!(secs("Thu, 01 Jan 1970 00:00:00 UTC"), 0);
        assert_eq!(secs("Sat, 21 Nov 2026 09:15:44 UTC"), 1_795_252_544);
        assert_eq!(secs("21 Nov 2026 09:15:44 GMT"), 1_795_252_544);
        assert_eq!(secs("Sat, 21 Nov 2026 10:15:44 +0100"), 1_795_252_544);
        assert_eq!(secs("Sat, 21 Nov 2026 08:45:44 -0030"), 1_795_252_544);
        assert_eq!(secs("Tue, 29 Feb 2028 00:00:00 UTC"), 1_835_395_200);
        assert_eq!(secs("Fri, 1 Mar 2000 00:00:00 UTC"), 951_868_800);
        // The largest offsets there are, and a leap second (the next minute's first second).
        assert_eq!(secs("Sun, 22 Nov 2026 09:14:44 +2359"), 1_795_252_544);
        assert_eq!(secs("Sat, 21 Nov 2026 00:00:00 +0059"), 1_795_215_660);
        assert_eq!(secs("Sat, 31 Dec 2016 23:59:60 UTC"), 1_483_228_800);
        for bad in [
            "",
            "Sat, 21 Nov 2026",
            "Sat, 21 Nov 2026 09:15:44",
            "Sat, 21 Nov 2026 09:15:44 CET",
            "Sat, 21 Foo 2026 09:15:44 UTC",
            "Sat, 31 Nov 2026 09:15:44 UTC",
            "Fri, 29 Feb 2027 00:00:00 UTC",
            "Sat, 21 Nov 2026 24:00:00 UTC",
            "Sat, 21 Nov 26 09:15:44 UTC",
            "Sat, 21 Nov 2026 09:15:44 UTC extra",
            "Someday, 21 Nov 2026 09:15:44 UTC",
            "Sat, 21 Nov 1969 09:15:44 UTC",
            // Offsets past 23 hours or 59 minutes.
            "Sat, 21 Nov 2026 09:15:44 +2400",
            "Sat, 21 Nov 2026 09:15:44 +0060",
            // A number with a sign, or with more digits than its field has.
            "Sat, +1 Nov 2026 09:15:44 UTC",
            "Sat, 021 Nov 2026 09:15:44 UTC",
        ] {
            assert_eq!(parse_date(bad), None, "{bad:?}");
        }
    }
}
