//! Swedish personal identity numbers (personnummer, Skatteverket SKV 704) and verified names.
//!
//! A [`PersonalNumber`] is always 12 digits `YYYYMMDDNNNN`: a real calendar date (or a
//! coordination number, day + 60) followed by a three-digit serial and a Luhn check digit
//! computed over the last ten digits. Personal data never reaches logs: `Debug` prints only the
//! date part (`PersonalNumber(19800101-****)`), there is no `Display`, and errors never carry the
//! input. The digits are reachable only through [`PersonalNumber::as_digits`].

use std::fmt;

/// Why a text or keypad entry is not a personal identity number. Never carries the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PersonalNumberError {
    /// Not 12 digits (or 10 for the short forms), separators aside.
    #[error("a personal identity number has 12 digits")]
    WrongLength,
    /// Something other than digits (and one `-` or `+` separator) was given.
    #[error("a personal identity number contains only digits and one separator")]
    NotDigits,
    /// The date part is not a calendar date (nor a coordination number, day + 60).
    #[error("the date part of the personal identity number is not a real date")]
    InvalidDate,
    /// The Luhn check digit does not match.
    #[error("the check digit of the personal identity number does not match")]
    BadChecksum,
}

/// A date in the proleptic Gregorian calendar, without time zone. Field order makes the derived
/// `Ord` chronological.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CivilDate {
    /// Year, e.g. `1980`.
    pub year: i32,
    /// Month, 1 to 12.
    pub month: u32,
    /// Day of the month, 1 to 31.
    pub day: u32,
}

impl CivilDate {
    /// Whether this is a real calendar date (month 1..=12, day within the month, leap years).
    pub fn is_valid(&self) -> bool {
        (1..=12).contains(&self.month) && self.day >= 1 && self.day <= days_in_month(self)
    }

    /// The date `days` days after 1970-01-01 (proleptic Gregorian; Howard Hinnant's
    /// `civil_from_days`, written out because no dependency is worth one function).
    pub fn from_unix_days(days: i64) -> CivilDate {
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        let year = (yoe + era * 400 + i64::from(month <= 2)) as i32;
        CivilDate { year, month, day }
    }

    /// Days from 1970-01-01 to this date (the inverse of [`CivilDate::from_unix_days`];
    /// Howard Hinnant's `days_from_civil`).
    pub fn days_since_unix_epoch(&self) -> i64 {
        let year = i64::from(self.year) - i64::from(self.month <= 2);
        let era = year.div_euclid(400);
        let yoe = year.rem_euclid(400);
        let month = i64::from(self.month);
        let doy = (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5
            + i64::from(self.day)
            - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        era * 146_097 + doe - 719_468
    }

    /// Today's date in UTC from the system clock (for keypad century inference).
    pub fn today_utc(now: std::time::SystemTime) -> CivilDate {
        let secs = now
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        CivilDate::from_unix_days((secs / 86_400) as i64)
    }
}

fn is_leap_year(year: i32) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(date: &CivilDate) -> u32 {
    match date.month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap_year(date.year) => 29,
        2 => 28,
        _ => 0,
    }
}

/// Offset added to the day of birth in a coordination number (samordningsnummer).
const COORDINATION_OFFSET: u32 = 60;

/// A Swedish personal identity number (12 digits `YYYYMMDDNNNN`), redacted in `Debug`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct PersonalNumber(String);

impl PersonalNumber {
    /// Parses the text forms `YYYYMMDDNNNN`, `YYYYMMDD-NNNN` and `YYYYMMDD+NNNN` (surrounding
    /// whitespace ignored). With a four-digit year the separator carries no information and is
    /// only checked for position. The date must be real (coordination numbers accepted) and the
    /// Luhn digit must match.
    pub fn parse(s: &str) -> Result<Self, PersonalNumberError> {
        let s = s.trim();
        let digits = match (s.len(), s.as_bytes().get(8)) {
            (13, Some(b'-' | b'+')) => [&s[..8], &s[9..]].concat(),
            (12, _) => s.to_owned(),
            _ if s
                .bytes()
                .all(|b| b.is_ascii_digit() || b == b'-' || b == b'+') =>
            {
                return Err(PersonalNumberError::WrongLength);
            }
            _ => return Err(PersonalNumberError::NotDigits),
        };
        Self::from_twelve_digits(digits)
    }

    /// Parses digits typed on a phone keypad (terminators such as `#` already removed): 12 digits
    /// `YYYYMMDDNNNN`, or 10 digits `YYMMDDNNNN` whose century is inferred as the most recent one
    /// that does not put the birth date after `today`. A keypad cannot type `+`, so the
    /// "100 years or older" separator exists only in [`PersonalNumber::parse_text`].
    pub fn parse_keypad(digits: &str, today: CivilDate) -> Result<Self, PersonalNumberError> {
        if !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(PersonalNumberError::NotDigits);
        }
        match digits.len() {
            12 => Self::from_twelve_digits(digits.to_owned()),
            10 => Self::from_ten_digits(digits, today, false),
            _ => Err(PersonalNumberError::WrongLength),
        }
    }

    /// Parses every written form: the 12-digit forms of [`PersonalNumber::parse`], and the
    /// 10-digit forms `YYMMDDNNNN`, `YYMMDD-NNNN` (century inferred as in
    /// [`PersonalNumber::parse_keypad`]) and `YYMMDD+NNNN` (Skatteverket's form from the year
    /// the person turns 100: the most recent year of birth at least 100 years before `today`).
    pub fn parse_text(s: &str, today: CivilDate) -> Result<Self, PersonalNumberError> {
        let s = s.trim();
        match (s.len(), s.as_bytes().get(6)) {
            (10, _) => Self::parse_keypad(s, today),
            (11, Some(sep @ (b'-' | b'+'))) => {
                let digits = [&s[..6], &s[7..]].concat();
                if !digits.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(PersonalNumberError::NotDigits);
                }
                Self::from_ten_digits(&digits, today, *sep == b'+')
            }
            _ => Self::parse(s),
        }
    }

    /// Adds the century to `YYMMDDNNNN`. Without `+`: the most recent century that does not put
    /// the birth date after `today`. With `+` (Skatteverket: from the year a person turns 100):
    /// the most recent year of birth at least 100 years before this year.
    fn from_ten_digits(
        digits: &str,
        today: CivilDate,
        centenarian: bool,
    ) -> Result<Self, PersonalNumberError> {
        let yy = i32::from(digit(digits, 0)) * 10 + i32::from(digit(digits, 1));
        let mut year = today.year - (today.year - yy).rem_euclid(100);
        if centenarian {
            year -= 100;
        } else {
            let month = two_digits(digits, 2);
            let day = two_digits(digits, 4);
            let day = day
                .checked_sub(COORDINATION_OFFSET)
                .filter(|d| *d > 0)
                .unwrap_or(day);
            if year == today.year && (month, day) > (today.month, today.day) {
                year -= 100;
            }
        }
        if !(0..=9999).contains(&year) {
            return Err(PersonalNumberError::InvalidDate);
        }
        Self::from_twelve_digits(format!("{year:04}{}", &digits[2..]))
    }

    /// Validates 12 ASCII characters: digits, a real date, the Luhn digit.
    fn from_twelve_digits(digits: String) -> Result<Self, PersonalNumberError> {
        if digits.len() != 12 {
            return Err(PersonalNumberError::WrongLength);
        }
        if !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(PersonalNumberError::NotDigits);
        }
        let number = PersonalNumber(digits);
        if !number.birth_date().is_valid() {
            return Err(PersonalNumberError::InvalidDate);
        }
        if !luhn_valid(&number.0[2..]) {
            return Err(PersonalNumberError::BadChecksum);
        }
        Ok(number)
    }

    /// The 12 digits `YYYYMMDDNNNN`, for provider wire calls. Never log this.
    pub fn as_digits(&self) -> &str {
        &self.0
    }

    /// The date part and four stars, `19800101-****`: safe for logs, headers and screens.
    /// A coordination number keeps its day + 60 (`19800161-****`).
    pub fn masked(&self) -> String {
        format!("{}-****", &self.0[..8])
    }

    /// The date of birth (for a coordination number, the day with the 60 removed).
    pub fn birth_date(&self) -> CivilDate {
        let year = (0..4).fold(0i32, |acc, i| acc * 10 + i32::from(digit(&self.0, i)));
        let day = two_digits(&self.0, 6);
        CivilDate {
            year,
            month: two_digits(&self.0, 4),
            day: if day > COORDINATION_OFFSET {
                day - COORDINATION_OFFSET
            } else {
                day
            },
        }
    }

    /// Whether this is a coordination number (samordningsnummer, day + 60).
    pub fn is_coordination_number(&self) -> bool {
        two_digits(&self.0, 6) > COORDINATION_OFFSET
    }
}

impl fmt::Debug for PersonalNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PersonalNumber({})", self.masked())
    }
}

/// The digit at byte `i`; callers have checked that the string is ASCII digits.
fn digit(s: &str, i: usize) -> u8 {
    s.as_bytes().get(i).map_or(0, |b| b.saturating_sub(b'0'))
}

fn two_digits(s: &str, i: usize) -> u32 {
    u32::from(digit(s, i)) * 10 + u32::from(digit(s, i + 1))
}

/// The Luhn check digit that completes `digits` (weights 2, 1, 2, ... from the left, as for
/// the nine digits `YYMMDDNNN`).
fn luhn_check_digit(digits: &str) -> u8 {
    let sum: u32 = digits
        .bytes()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b.saturating_sub(b'0')) * if i % 2 == 0 { 2 } else { 1 };
            d / 10 + d % 10
        })
        .sum();
    ((10 - sum % 10) % 10) as u8
}

/// Whether the ten digits `YYMMDDNNNC` carry a correct Luhn digit `C`.
fn luhn_valid(ten: &str) -> bool {
    ten.len() == 10 && luhn_check_digit(&ten[..9]) == digit(ten, 9)
}

/// A verified person's name as the provider returned it, redacted in `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct PersonName(String);

impl PersonName {
    /// Wraps a name.
    pub fn new(name: String) -> Self {
        PersonName(name)
    }

    /// The name. Never log this.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for PersonName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PersonName(****)")
    }
}

#[cfg(test)]
mod civil_tests {
    use super::CivilDate;

    #[test]
    fn unix_days_to_civil_dates() {
        let d = |y, m, day| CivilDate {
            year: y,
            month: m,
            day,
        };
        assert_eq!(CivilDate::from_unix_days(0), d(1970, 1, 1));
        assert_eq!(CivilDate::from_unix_days(-1), d(1969, 12, 31));
        assert_eq!(CivilDate::from_unix_days(11_016), d(2000, 2, 29));
        assert_eq!(CivilDate::from_unix_days(20_513), d(2026, 3, 1));
        assert_eq!(CivilDate::from_unix_days(20_779), d(2026, 11, 22));
        // Every day of four centuries maps to a valid date, one day after the previous.
        let mut prev = CivilDate::from_unix_days(-73_000);
        for days in -72_999..73_000 {
            let next = CivilDate::from_unix_days(days);
            assert!(next.is_valid(), "{next:?}");
            assert!(next > prev, "{prev:?} -> {next:?}");
            prev = next;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(year: i32, month: u32, day: u32) -> CivilDate {
        CivilDate { year, month, day }
    }

    /// Completes `YYYYMMDDNNN` with its Luhn digit.
    fn with_luhn(eleven: &str) -> String {
        format!("{eleven}{}", luhn_check_digit(&eleven[2..]))
    }

    #[test]
    fn known_test_numbers_parse() {
        for s in [
            "191212121212",
            "198112289874",
            "19121212-1212",
            "19121212+1212",
        ] {
            let n = PersonalNumber::parse(s).unwrap();
            assert_eq!(n.as_digits().len(), 12);
        }
        let tolvan = PersonalNumber::parse(" 19121212-1212 ").unwrap();
        assert_eq!(tolvan.as_digits(), "191212121212");
        assert_eq!(tolvan.masked(), "19121212-****");
        assert_eq!(tolvan.birth_date(), date(1912, 12, 12));
        assert!(!tolvan.is_coordination_number());
    }

    #[test]
    fn rejects_wrong_shapes() {
        use PersonalNumberError::*;
        assert_eq!(PersonalNumber::parse("19121212121"), Err(WrongLength));
        assert_eq!(PersonalNumber::parse("1912121212123"), Err(WrongLength));
        assert_eq!(PersonalNumber::parse(""), Err(WrongLength));
        assert_eq!(PersonalNumber::parse("1912121a1212"), Err(NotDigits));
        assert_eq!(PersonalNumber::parse("19121212 1212"), Err(NotDigits));
        assert_eq!(PersonalNumber::parse("1912-1212-1212"), Err(WrongLength));
        assert_eq!(PersonalNumber::parse("1912121-21212"), Err(WrongLength));
        assert_eq!(PersonalNumber::parse("19121212121٣"), Err(NotDigits));
    }

    #[test]
    fn bad_luhn_is_rejected() {
        assert_eq!(
            PersonalNumber::parse("191212121213"),
            Err(PersonalNumberError::BadChecksum)
        );
        assert_eq!(
            PersonalNumber::parse("198112289875"),
            Err(PersonalNumberError::BadChecksum)
        );
    }

    #[test]
    fn bad_dates_are_rejected() {
        for eleven in [
            "1981132812",
            "1981003012",
            "1981043112",
            "1981120012",
            "1981123212",
        ] {
            let s = with_luhn(&format!("{eleven}3"));
            assert_eq!(
                PersonalNumber::parse(&s),
                Err(PersonalNumberError::InvalidDate),
                "{s}"
            );
        }
    }

    #[test]
    fn february_29_only_in_leap_years() {
        assert!(PersonalNumber::parse(&with_luhn("20000229123")).is_ok());
        assert!(PersonalNumber::parse(&with_luhn("19960229123")).is_ok());
        for year in ["1900", "1999", "2023", "2100"] {
            let s = with_luhn(&format!("{year}0229123"));
            assert_eq!(
                PersonalNumber::parse(&s),
                Err(PersonalNumberError::InvalidDate),
                "{s}"
            );
        }
    }

    #[test]
    fn coordination_numbers() {
        let n = PersonalNumber::parse(&with_luhn("19800161123")).unwrap();
        assert!(n.is_coordination_number());
        assert_eq!(n.birth_date(), date(1980, 1, 1));
        assert_eq!(n.masked(), "19800161-****");
        assert!(PersonalNumber::parse(&with_luhn("19800191123")).is_ok());
        for bad in ["19800192123", "19800160123", "19810289123"] {
            let s = with_luhn(bad);
            assert_eq!(
                PersonalNumber::parse(&s),
                Err(PersonalNumberError::InvalidDate),
                "{s}"
            );
        }
    }

    #[test]
    fn keypad_twelve_and_ten_digits() {
        let today = date(2026, 11, 22);
        let long = PersonalNumber::parse_keypad("198112289874", today).unwrap();
        let short = PersonalNumber::parse_keypad("8112289874", today).unwrap();
        assert_eq!(long, short);
        assert_eq!(
            PersonalNumber::parse_keypad("8112-289874", today),
            Err(PersonalNumberError::NotDigits)
        );
        assert_eq!(
            PersonalNumber::parse_keypad("81122898", today),
            Err(PersonalNumberError::WrongLength)
        );
    }

    #[test]
    fn keypad_century_boundary() {
        let today = date(2026, 11, 22);
        let born_today = with_luhn("20261122123");
        let n = PersonalNumber::parse_keypad(&born_today[2..], today).unwrap();
        assert_eq!(n.birth_date(), date(2026, 11, 22));
        let tomorrow = with_luhn("19261123123");
        let n = PersonalNumber::parse_keypad(&tomorrow[2..], today).unwrap();
        assert_eq!(n.birth_date(), date(1926, 11, 23));
        let coordination_tomorrow = with_luhn("19261183123");
        let n = PersonalNumber::parse_keypad(&coordination_tomorrow[2..], today).unwrap();
        assert_eq!(n.birth_date().year, 1926);
        let next_year = with_luhn("19270101123");
        let n = PersonalNumber::parse_keypad(&next_year[2..], today).unwrap();
        assert_eq!(n.birth_date().year, 1927);
    }

    #[test]
    fn keypad_leap_day_century() {
        // 000229: 2000 is a leap year, so it is valid while today is after it.
        let s = with_luhn("20000229123");
        let n = PersonalNumber::parse_keypad(&s[2..], date(2026, 1, 1)).unwrap();
        assert_eq!(n.birth_date(), date(2000, 2, 29));
        // Before 2000-02-29 the most recent century is 1900, which has no February 29.
        assert_eq!(
            PersonalNumber::parse_keypad(&s[2..], date(2000, 2, 28)),
            Err(PersonalNumberError::InvalidDate)
        );
    }

    #[test]
    fn text_short_forms_and_plus() {
        let today = date(2026, 11, 22);
        let n = PersonalNumber::parse_text("121212-1212", today).unwrap();
        assert_eq!(n.birth_date().year, 2012);
        let n = PersonalNumber::parse_text("121212+1212", today).unwrap();
        assert_eq!(n.as_digits(), "191212121212");
        // `+` from the year the person turns 100, even before the birthday.
        let s = with_luhn("19261123123");
        let plus = format!("{}+{}", &s[2..8], &s[8..]);
        let n = PersonalNumber::parse_text(&plus, today).unwrap();
        assert_eq!(n.birth_date(), date(1926, 11, 23));
        let n = PersonalNumber::parse_text("19121212-1212", today).unwrap();
        assert_eq!(n.as_digits(), "191212121212");
        assert_eq!(
            PersonalNumber::parse_text("121212*1212", today),
            Err(PersonalNumberError::NotDigits)
        );
        assert_eq!(
            PersonalNumber::parse_text("12121x-1212", today),
            Err(PersonalNumberError::NotDigits)
        );
    }

    #[test]
    fn debug_never_shows_serial() {
        let n = PersonalNumber::parse("198112289874").unwrap();
        let debug = format!("{n:?}");
        assert_eq!(debug, "PersonalNumber(19811228-****)");
        assert!(!debug.contains("9874"));
        let name = PersonName::new("Tolvan Tolvansson".into());
        assert_eq!(format!("{name:?}"), "PersonName(****)");
        assert_eq!(name.as_str(), "Tolvan Tolvansson");
        let err = PersonalNumber::parse("198112289875").unwrap_err();
        assert!(!format!("{err} {err:?}").contains("9875"));
    }

    #[test]
    fn generated_numbers_parse_and_mask() {
        let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move |m: u64| {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (seed >> 33) % m
        };
        for _ in 0..2000 {
            let year = 1900 + next(126) as i32;
            let month = 1 + next(12) as u32;
            let day = 1 + next(u64::from(days_in_month(&date(year, month, 1)))) as u32;
            let day = if next(5) == 0 {
                day + COORDINATION_OFFSET
            } else {
                day
            };
            let serial = next(1000);
            let s = with_luhn(&format!("{year:04}{month:02}{day:02}{serial:03}"));
            let n = PersonalNumber::parse(&s).unwrap_or_else(|e| panic!("{s}: {e}"));
            assert_eq!(n.as_digits(), s);
            // The last four are always stars; they can only show if the date happens to hold them.
            assert_eq!(n.masked(), format!("{}-****", &s[..8]));
            assert_eq!(
                format!("{n:?}"),
                format!("PersonalNumber({}-****)", &s[..8])
            );
            if !s[..8].contains(&s[8..]) {
                assert!(!n.masked().contains(&s[8..]), "{s}");
            }
            let today = date(2026, 11, 22);
            assert_eq!(PersonalNumber::parse_keypad(&s, today).unwrap(), n);
        }
    }
}
