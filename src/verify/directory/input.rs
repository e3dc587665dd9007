//! A customer as typed by an operator (a CSV row, CLI flags, a JSON body) turned into a
//! [`NewCustomer`]: the personal identity number checked (date and check digit), the name
//! checked, the numbers normalised to E.164. Errors name the field, never echo the value.

use crate::identity::caller::{CallerError, is_known_region};
use crate::identity::personal_number::PersonalNumberError;
use crate::identity::{E164, PersonName, PersonalNumber};
use crate::store::NewCustomer;

/// The longest name accepted, in characters.
const MAX_NAME_CHARS: usize = 200;

/// Why an operator's customer entry is not acceptable. Each message starts with the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    /// The region for national-form numbers is not an ISO 3166 alpha-2 code.
    #[error("region: {0:?} is not a known region code (expected ISO 3166 alpha-2, such as \"SE\")")]
    Region(String),
    /// The personal identity number is not one (length, digits, date, check digit).
    #[error("personal_number: {0}")]
    PersonalNumber(PersonalNumberError),
    /// The name is empty, too long or holds control characters.
    #[error("name: {0}")]
    Name(&'static str),
    /// No phone number was given.
    #[error("numbers: at least one phone number is needed")]
    NoNumbers,
    /// A phone number is not a valid number.
    #[error("numbers: number {position}: {reason}")]
    Number {
        /// Which number, from 1.
        position: usize,
        /// Why.
        reason: CallerError,
    },
}

/// Parses an entry: `personal_number` as `YYYYMMDDNNNN` or `YYYYMMDD-NNNN`, national-form
/// numbers read in `region` (`"SE"`), repeated numbers kept once.
pub fn parse_customer<'a>(
    personal_number: &str,
    name: &str,
    numbers: impl IntoIterator<Item = &'a str>,
    region: &str,
) -> Result<NewCustomer, InputError> {
    if !is_known_region(region) {
        return Err(InputError::Region(region.to_owned()));
    }
    let personal_number =
        PersonalNumber::parse(personal_number).map_err(InputError::PersonalNumber)?;
    let name = parse_name(name)?;
    let mut parsed: Vec<E164> = Vec::new();
    for (i, raw) in numbers.into_iter().enumerate() {
        let number = E164::parse(raw, region).map_err(|reason| InputError::Number {
            position: i + 1,
            reason,
        })?;
        if !parsed.contains(&number) {
            parsed.push(number);
        }
    }
    if parsed.is_empty() {
        return Err(InputError::NoNumbers);
    }
    Ok(NewCustomer {
        personal_number,
        name,
        numbers: parsed,
    })
}

/// A name: trimmed, not empty, at most [`MAX_NAME_CHARS`], no control characters (it may end
/// up in a SIP header).
fn parse_name(raw: &str) -> Result<PersonName, InputError> {
    let name = raw.trim();
    if name.is_empty() {
        return Err(InputError::Name("must not be empty"));
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(InputError::Name("longer than 200 characters"));
    }
    if name.chars().any(char::is_control) {
        return Err(InputError::Name("must not contain control characters"));
    }
    Ok(PersonName::new(name.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_is_normalised() {
        let c = parse_customer(
            "19121212-1212",
            " Tolvan ",
            ["070-123 45 67", "+46701234567", "08-12 34 56 78"],
            "SE",
        )
        .unwrap();
        assert_eq!(c.personal_number.as_digits(), "191212121212");
        assert_eq!(c.name.as_str(), "Tolvan");
        let numbers: Vec<&str> = c.numbers.iter().map(E164::as_str).collect();
        assert_eq!(numbers, ["+46701234567", "+46812345678"]);
    }

    #[test]
    fn errors_name_the_field_without_the_value() {
        let e = |pnr: &str, name: &str, numbers: &[&str], region: &str| {
            parse_customer(pnr, name, numbers.iter().copied(), region)
                .unwrap_err()
                .to_string()
        };
        let pnr = e("191212121213", "T", &["+46701234567"], "SE");
        assert!(pnr.starts_with("personal_number: the check digit"), "{pnr}");
        assert!(!pnr.contains("19121212"), "{pnr}");
        let name = e("191212121212", " ", &["+46701234567"], "SE");
        assert_eq!(name, "name: must not be empty");
        let control = e(
            "191212121212",
            "A\r\nX-Identity-Status: verified",
            &["+46701234567"],
            "SE",
        );
        assert!(control.contains("control characters"), "{control}");
        let none = e("191212121212", "T", &[], "SE");
        assert!(none.starts_with("numbers: at least one"), "{none}");
        let bad = e("191212121212", "T", &["+46701234567", "12"], "SE");
        assert!(bad.starts_with("numbers: number 2:"), "{bad}");
        let region = e("191212121212", "T", &["0701234567"], "XX");
        assert!(region.starts_with("region:"), "{region}");
    }
}
