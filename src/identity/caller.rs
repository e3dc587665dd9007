//! (being written)
/// A phone number in E.164 form (`+46701234567`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct E164(String);
/// The caller as idgate sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallerId {
    /// A number, normalised.
    Number(E164),
    /// Withheld or anonymous.
    Anonymous,
}
