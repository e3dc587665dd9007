//! (being written)
/// A Swedish personal identity number (12 digits), redacted in Debug.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct PersonalNumber(String);
impl std::fmt::Debug for PersonalNumber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PersonalNumber(****)")
    }
}
/// A person's name, redacted in Debug.
#[derive(Clone, PartialEq, Eq)]
pub struct PersonName(String);
impl std::fmt::Debug for PersonName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PersonName(****)")
    }
}
