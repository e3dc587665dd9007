//! Display-name tagging (IDENTITY-HEADERS.md "How the headers travel"): the From display name
//! on the B2BUA queue leg becomes a verdict tag (`✔ ` / `✖ `, configurable) followed by the
//! caller's own From display name, or the caller number when the caller sent none, for
//! softphones that show nothing else.
//!
//! The caller's display name is caller-supplied text: anyone can send `"✔ Verified"`. It is
//! cleaned before it is shown after idgate's tag ([`sanitize_display_name`]): control, format
//! and invisible characters go, every check or cross mark that could pass for a tag goes, a
//! leading copy of a configured tag goes, and the rest is cut to
//! [`MAX_DISPLAY_NAME_CHARS`]. Only trustworthy where the PBX strips caller-supplied display
//! names; a convenience, not a security feature (the token is).
//!
//! The result is the content of an RFC 3261 §25.1 quoted-string (`"` and `\` escaped), UTF-8:
//! the SIP stack writes it between the quotes as it is.

use std::fmt;

use crate::identity::{CallerId, Verdict};

/// Most characters of the caller's part of the display name, after cleaning. With a tag of at
/// most 8 characters the whole display name stays under 80 characters (before escaping).
pub const MAX_DISPLAY_NAME_CHARS: usize = 64;

/// The tags put before the display name (`identity.tag_verified`, `identity.tag_unverified`).
/// Config validation keeps each non-empty, at most 8 characters, without control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisplayTags {
    /// Before the name of a verified caller. Default `"✔ "`.
    pub verified: String,
    /// Before the name of anyone else. Default `"✖ "`.
    pub unverified: String,
}

impl Default for DisplayTags {
    fn default() -> Self {
        Self {
            verified: "\u{2714} ".to_owned(),
            unverified: "\u{2716} ".to_owned(),
        }
    }
}

/// The display name of the caller's From header as the caller sent it (quotes and escapes
/// removed, nothing else cleaned). Caller-supplied and personal: redacted in `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct CallerDisplayName(String);

impl CallerDisplayName {
    /// Wraps a display name read from a From header.
    pub fn new(name: String) -> Self {
        CallerDisplayName(name)
    }

    /// The name as received. Never log this.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for CallerDisplayName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CallerDisplayName(****)")
    }
}

/// The From display name for the queue leg, as quoted-string content: the tag for `verdict`
/// (`None`, no verdict yet, counts as unverified), then the caller's cleaned display name, or
/// else the caller number (`anonymous` for a withheld or non-numeric caller). A withheld
/// caller's own display name is never used: whoever withheld the number did not mean to show a
/// name either.
pub fn queue_display_name(
    verdict: Option<&Verdict>,
    caller: &CallerId,
    caller_name: Option<&CallerDisplayName>,
    tags: &DisplayTags,
) -> String {
    let tag = match verdict {
        Some(Verdict::Verified { .. }) => &tags.verified,
        _ => &tags.unverified,
    };
    let name = caller_name
        .filter(|_| !matches!(caller, CallerId::Anonymous))
        .and_then(|name| sanitize_display_name(name.as_str(), tags))
        .unwrap_or_else(|| caller.as_claim());
    quoted_string_content(&format!("{tag}{name}"))
}

/// Cleans a caller-supplied display name for showing after a tag; `None` when nothing is left.
///
/// 1. White space (CR, LF and TAB included) becomes a space; other control characters, format
///    and invisible characters (zero-width, bidirectional overrides, variation selectors, soft
///    hyphen, ...) and every check or cross mark that could pass for a tag
///    ([`is_tag_look_alike`]) are removed, wherever they are.
/// 2. Runs of spaces become one; the ends are trimmed.
/// 3. Leading copies of either configured tag (cleaned the same way, ASCII case ignored) are
///    removed, so an ASCII tag like `[OK] ` cannot be imitated either.
/// 4. The rest is cut to [`MAX_DISPLAY_NAME_CHARS`] characters.
pub fn sanitize_display_name(raw: &str, tags: &DisplayTags) -> Option<String> {
    let mut name = clean(raw);
    let tag_texts = [clean(&tags.verified), clean(&tags.unverified)];
    while let Some(rest) = tag_texts
        .iter()
        .find_map(|tag| strip_leading_tag(&name, tag))
    {
        name = rest.trim_start().to_owned();
    }
    let name: String = name.chars().take(MAX_DISPLAY_NAME_CHARS).collect();
    let name = name.trim_end();
    (!name.is_empty()).then(|| name.to_owned())
}

/// Steps 1 and 2 of [`sanitize_display_name`].
fn clean(raw: &str) -> String {
    let kept = raw
        .chars()
        .map(|c| if c.is_whitespace() { ' ' } else { c })
        .filter(|&c| !(c.is_control() || is_invisible(c) || is_tag_look_alike(c)))
        .collect::<String>();
    kept.split(' ')
        .filter(|word| !word.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// `name` without a leading `tag` (ASCII case ignored). A tag that ends in a letter or digit
/// only counts when a space or the end follows (`OK` is a tag in `OK Bob`, not in `OKsana`).
fn strip_leading_tag<'a>(name: &'a str, tag: &str) -> Option<&'a str> {
    if tag.is_empty() {
        return None;
    }
    let start = name.get(..tag.len())?;
    let rest = &name[tag.len()..];
    let word_tag = tag.chars().last().is_some_and(char::is_alphanumeric);
    let boundary = !word_tag || rest.is_empty() || rest.starts_with(' ');
    (start.eq_ignore_ascii_case(tag) && boundary).then_some(rest)
}

/// Check marks, crosses and ballot boxes that could pass for a verdict tag: the defaults
/// (✔ ✖), their Dingbats relatives (✓ ✕ ✗ ✘), the ballot boxes (☐ ☑ ☒), the emoji (✅ ❌ ❎
/// 🆗), the Miscellaneous Symbols and Pictographs ballot marks (🗴 to 🗹), the legacy-computing
/// check mark (🮱), and the look-alikes `√` (square root), `⍻` (not check mark), `×`
/// (multiplication), `⨯` (vector product) and `╳` (box-drawing diagonal cross).
pub fn is_tag_look_alike(c: char) -> bool {
    matches!(
        c,
        '\u{2713}'..='\u{2718}'
            | '\u{2610}'..='\u{2612}'
            | '\u{2705}'
            | '\u{274C}'
            | '\u{274E}'
            | '\u{1F197}'
            | '\u{1F5F4}'..='\u{1F5F9}'
            | '\u{1FBB1}'
            | '\u{221A}'
            | '\u{237B}'
            | '\u{00D7}'
            | '\u{2A2F}'
            | '\u{2573}'
    )
}

/// Unicode format and invisible characters (general category Cf and the usual fillers): they
/// show as nothing, or reorder what is shown (bidirectional overrides), so a name made with
/// them could hide a tag look-alike or push idgate's tag out of sight.
fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{034F}'
            | '\u{061C}'
            | '\u{115F}'
            | '\u{1160}'
            | '\u{17B4}'
            | '\u{17B5}'
            | '\u{180B}'..='\u{180F}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{206F}'
            | '\u{3164}'
            | '\u{FE00}'..='\u{FE0F}'
            | '\u{FEFF}'
            | '\u{FFA0}'
            | '\u{FFF0}'..='\u{FFFB}'
            | '\u{E0000}'..='\u{E007F}'
            | '\u{E0100}'..='\u{E01EF}'
    )
}

/// `text` as the inside of an RFC 3261 §25.1 quoted-string: `"` and `\` become quoted-pairs,
/// control characters (never in cleaned text or validated tags) are dropped.
fn quoted_string_content(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 4);
    for c in text.chars().filter(|c| !c.is_control()) {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::{E164, Method, PersonalNumber, Reason, VerifiedPerson};

    fn tags() -> DisplayTags {
        DisplayTags::default()
    }

    fn sanitize(raw: &str) -> Option<String> {
        sanitize_display_name(raw, &tags())
    }

    fn verified() -> Verdict {
        Verdict::Verified {
            method: Method::Bankid,
            person: VerifiedPerson {
                personal_number: PersonalNumber::parse("198112289874").unwrap(),
                name: None,
            },
        }
    }

    fn unverified() -> Verdict {
        Verdict::Unverified {
            reason: Reason::NotFound,
            method: None,
        }
    }

    fn number() -> CallerId {
        CallerId::Number(E164::parse("+46701234567", "SE").unwrap())
    }

    fn name(text: &str) -> CallerDisplayName {
        CallerDisplayName::new(text.to_owned())
    }

    /// Undoes [`quoted_string_content`], checking it is valid RFC 3261 quoted-string content:
    /// no bare `"` or `\`, no control characters.
    fn unquote(content: &str) -> String {
        let mut out = String::new();
        let mut chars = content.chars();
        while let Some(c) = chars.next() {
            assert!(!c.is_control() && c != '"', "{content:?}");
            out.push(if c == '\\' { chars.next().unwrap() } else { c });
        }
        out
    }

    #[test]
    fn tags_the_caller_name_by_verdict() {
        let caller = name("Åsa Öberg");
        let (yes, no) = (verified(), unverified());
        let shown = |verdict| queue_display_name(verdict, &number(), Some(&caller), &tags());
        assert_eq!(shown(Some(&yes)), "✔ Åsa Öberg");
        assert_eq!(shown(Some(&no)), "✖ Åsa Öberg");
        assert_eq!(shown(None), "✖ Åsa Öberg", "no verdict yet is unverified");
    }

    #[test]
    fn the_number_stands_in_for_a_missing_or_empty_name() {
        for caller_name in [None, Some(name("")), Some(name(" \t✔ ✔\u{200B} "))] {
            let shown =
                queue_display_name(Some(&verified()), &number(), caller_name.as_ref(), &tags());
            assert_eq!(shown, "✔ +46701234567", "{caller_name:?}");
        }
        let shown = queue_display_name(None, &CallerId::NotANumber, None, &tags());
        assert_eq!(shown, "✖ anonymous");
    }

    #[test]
    fn a_withheld_caller_shows_no_name() {
        let caller_name = name("Hemlig Person");
        let shown = queue_display_name(None, &CallerId::Anonymous, Some(&caller_name), &tags());
        assert_eq!(shown, "✖ anonymous");
    }

    #[test]
    fn imitated_tags_are_removed() {
        let cases = [
            ("✔ Fake Verified", "Fake Verified"),
            ("✔Fake", "Fake"),
            ("✔️ Emoji Presentation", "Emoji Presentation"),
            ("✓ ☑ ✅ ✖ ✗ ✘ ❌ Many", "Many"),
            ("  ✔  ✔ Double", "Double"),
            ("\u{200B}✔ Zero Width", "Zero Width"),
            ("\u{202E}✔ Bidi", "Bidi"),
            ("\u{00A0}✔\u{3000}Odd Spaces", "Odd Spaces"),
            ("√ Root", "Root"),
            ("🗸 🗹 🮱 🆗 Legacy", "Legacy"),
            ("× ⨯ ╳ ❎ ✕ Crosses", "Crosses"),
            ("Bob ✔ in the middle", "Bob in the middle"),
            ("Bob ✔", "Bob"),
        ];
        for (raw, clean) in cases {
            assert_eq!(sanitize(raw).as_deref(), Some(clean), "{raw:?}");
        }
        let shown = queue_display_name(None, &number(), Some(&name("✔ Fake Verified")), &tags());
        assert_eq!(shown, "✖ Fake Verified");
        assert_eq!(shown.matches(['✔', '✖']).count(), 1);
    }

    #[test]
    fn configured_ascii_tags_are_removed_at_the_start_only() {
        let tags = DisplayTags {
            verified: "[OK] ".into(),
            unverified: "?? ".into(),
        };
        let sanitize = |raw: &str| sanitize_display_name(raw, &tags);
        assert_eq!(sanitize("[OK] Fake").as_deref(), Some("Fake"));
        assert_eq!(sanitize("[ok]Fake").as_deref(), Some("Fake"));
        assert_eq!(sanitize("?? [OK] ?? Fake").as_deref(), Some("Fake"));
        assert_eq!(sanitize("Bob [OK]").as_deref(), Some("Bob [OK]"));
        assert_eq!(sanitize("[OK]").as_deref(), None);
        let word = DisplayTags {
            verified: "OK ".into(),
            unverified: "NO ".into(),
        };
        let sanitize = |raw: &str| sanitize_display_name(raw, &word);
        assert_eq!(sanitize("OK Fake").as_deref(), Some("Fake"));
        assert_eq!(sanitize("OKsana").as_deref(), Some("OKsana"));
        assert_eq!(sanitize("Nora").as_deref(), Some("Nora"));
        assert_eq!(sanitize("no no Nora").as_deref(), Some("Nora"));
    }

    #[test]
    fn control_characters_and_line_breaks_are_removed() {
        let raw = "Eve\r\nX-Identity-Status: verified\0\u{7}\u{1B}[31m";
        let clean = sanitize(raw).unwrap();
        assert_eq!(clean, "Eve X-Identity-Status: verified[31m");
        assert!(!clean.chars().any(char::is_control));
        assert_eq!(sanitize("A\tB").as_deref(), Some("A B"));
    }

    #[test]
    fn long_names_are_cut_on_a_character() {
        for unit in ["a", "å", "€", "𝄞"] {
            let clean = sanitize(&unit.repeat(500)).unwrap();
            assert_eq!(clean.chars().count(), MAX_DISPLAY_NAME_CHARS, "{unit}");
        }
        let spaced = format!("{}b", "a ".repeat(MAX_DISPLAY_NAME_CHARS / 2));
        let clean = sanitize(&spaced).unwrap();
        assert!(!clean.ends_with(' ') && clean.chars().count() < MAX_DISPLAY_NAME_CHARS);
    }

    #[test]
    fn quotes_and_backslashes_make_a_valid_quoted_string() {
        let raw = r#"Robert "Bob" \ Tables"#;
        let shown = queue_display_name(Some(&verified()), &number(), Some(&name(raw)), &tags());
        assert_eq!(shown, r#"✔ Robert \"Bob\" \\ Tables"#);
        assert_eq!(unquote(&shown), format!("✔ {raw}"));
        for raw in ["\"", "\\", "\\\"", "a\"\r\n\"b", "\"✔ x\""] {
            let shown = queue_display_name(None, &number(), Some(&name(raw)), &tags());
            let plain = unquote(&shown);
            assert!(
                plain.starts_with("✖ ") && plain.matches('✔').count() == 0,
                "{raw:?}"
            );
        }
    }

    #[test]
    fn the_caller_name_is_redacted_in_debug() {
        let text = format!("{:?}", Some(name("Åsa Öberg")));
        assert!(!text.contains("Åsa"), "{text}");
    }
}
