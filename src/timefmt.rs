//! Timestamps as RFC 3339 text in UTC, for the CLI and the agent API (written out: two small
//! functions over [`CivilDate`] are not worth a date-time dependency).

use std::time::{SystemTime, UNIX_EPOCH};

use crate::identity::personal_number::CivilDate;

/// Unix seconds as `2025-07-01T12:00:00Z`.
pub fn rfc3339(secs: u64) -> String {
    let date = CivilDate::from_unix_days((secs / 86_400) as i64);
    let day = secs % 86_400;
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        date.year,
        date.month,
        date.day,
        day / 3600,
        day % 3600 / 60,
        day % 60
    )
}

/// A system time as `2025-07-01T12:00:00.123Z` (milliseconds; times before 1970 as 1970).
pub fn rfc3339_millis(at: SystemTime) -> String {
    let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = rfc3339(since.as_secs());
    format!(
        "{}.{:03}Z",
        secs.trim_end_matches('Z'),
        since.subsec_millis()
    )
}

/// Parses `2025-07-01T12:00:00Z` or `2025-07-01T12:00:00.123Z` (UTC only, as this module
/// writes them); `None` for anything else.
pub fn parse_rfc3339(text: &str) -> Option<SystemTime> {
    let text = text.strip_suffix('Z').or_else(|| text.strip_suffix('z'))?;
    let (date, time) = text.split_once(['T', 't'])?;
    let (time, millis) = match time.split_once('.') {
        Some((t, f)) if !f.is_empty() && f.len() <= 9 && f.bytes().all(|b| b.is_ascii_digit()) => {
            let padded = format!("{f:0<3}");
            (t, padded[..3].parse::<u64>().ok()?)
        }
        Some(_) => return None,
        None => (time, 0),
    };
    let number = |s: &str, len: usize| -> Option<u32> {
        (s.len() == len && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse().ok())?
    };
    let mut d = date.split('-');
    let (year, month, day) = (
        number(d.next()?, 4)?,
        number(d.next()?, 2)?,
        number(d.next()?, 2)?,
    );
    let mut t = time.split(':');
    let (hour, minute, second) = (
        number(t.next()?, 2)?,
        number(t.next()?, 2)?,
        number(t.next()?, 2)?,
    );
    if d.next().is_some() || t.next().is_some() || hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let civil = CivilDate {
        year: i32::try_from(year).ok()?,
        month,
        day,
    };
    if !civil.is_valid() || year < 1970 {
        return None;
    }
    let days = u64::try_from(civil.days_since_unix_epoch()).ok()?;
    let secs = days * 86_400 + u64::from(hour * 3600 + minute * 60 + second);
    UNIX_EPOCH.checked_add(std::time::Duration::from_millis(secs * 1000 + millis))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn unix_seconds_as_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_751_371_199), "2025-07-01T11:59:59Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn civil_days_round_trip() {
        for days in (-800_000..800_000).step_by(97) {
            let date = CivilDate::from_unix_days(days);
            assert!(date.is_valid(), "{date:?}");
            assert_eq!(date.days_since_unix_epoch(), days, "{date:?}");
        }
    }

    #[test]
    fn what_is_written_parses_back() {
        let at = UNIX_EPOCH + Duration::from_millis(1_751_371_199_042);
        assert_eq!(parse_rfc3339(&rfc3339_millis(at)), Some(at));
        assert_eq!(
            parse_rfc3339("2000-02-29T00:00:00Z"),
            Some(UNIX_EPOCH + Duration::from_secs(951_782_400))
        );
        for bad in [
            "2025-07-01 12:00:00Z",
            "2025-07-01T12:00:00",
            "2025-07-01T12:00:00+02:00",
            "2025-02-30T12:00:00Z",
            "2025-07-01T24:00:00Z",
            "2025-7-01T12:00:00Z",
            "2025-07-01T12:00:00.Z",
            "1969-12-31T23:59:59Z",
            "",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn system_times_with_milliseconds() {
        let at = UNIX_EPOCH + Duration::from_millis(1_751_371_199_042);
        assert_eq!(rfc3339_millis(at), "2025-07-01T11:59:59.042Z");
        let before = UNIX_EPOCH - Duration::from_secs(5);
        assert_eq!(rfc3339_millis(before), "1970-01-01T00:00:00.000Z");
    }
}
