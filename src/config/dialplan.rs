//! idgate's own route files (`dialplans/*.toml`): which calls are identified how, and where they
//! go afterwards. Files are read in file-name order, routes are tried in order, the first match
//! wins. The format is described in `dialplans/README.md`.

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use super::error::{ConfigError, display_path};
use super::sections::DialplanConfig;

/// The bundled route file used when `dialplan.dir` is not set.
const DEFAULT_DIALPLAN: &str = include_str!("../../dialplans/default.toml");
/// How the bundled route file is named in errors and reports.
const DEFAULT_DIALPLAN_NAME: &str = "dialplans/default.toml (embedded)";

/// One route file as written: `[[route]]` entries and nothing else.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RouteFile {
    /// The file's routes, tried in order.
    #[serde(default)]
    route: Vec<RawRoute>,
}

/// One `[[route]]` as written; becomes a [`Route`] once checked.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    /// Name shown in logs, the calls table and `check-config`. Required.
    name: String,
    /// Called number (Request-URI user): exact `"5000"`, prefix `"46*"`, or `"*"`. Required.
    #[serde(rename = "match")]
    matches: String,
    /// Prompt language: `"sv"` or `"en"`. Default `"sv"`.
    #[serde(default)]
    language: Language,
    /// Region (ISO 3166 code) for normalising national caller numbers to E.164. Default `"SE"`.
    #[serde(default = "default_region")]
    region: String,
    /// Whether to identify callers at all (`false`: straight to `target` as `skipped`).
    /// Default `true`.
    #[serde(default = "yes")]
    identify: bool,
    /// Look the caller number up in the customer directory and push to that person.
    /// Default `true`.
    #[serde(default = "yes")]
    directory: bool,
    /// Push addressed by the caller number itself, where the provider supports it.
    /// Default `true`.
    #[serde(default = "yes")]
    phone_push: bool,
    /// Let unknown or anonymous callers type their personal identity number. Default `true`.
    #[serde(default = "yes")]
    keypad: bool,
    /// Keypad entries allowed before giving up with `invalid-input`. Default `3`.
    #[serde(default = "default_keypad_attempts")]
    keypad_attempts: u32,
    /// Seconds from answer until identification gives up with `timeout`. Default `150`.
    #[serde(default = "default_identify_timeout")]
    identify_timeout_secs: u64,
    /// Seconds the queue leg may ring before `fallback` (or a polite hang-up). Default `60`.
    #[serde(default = "default_ring_timeout")]
    ring_timeout_secs: u64,
    /// The text the eID app shows for this route's pushes (BankID `userVisibleData`), in the
    /// route's language: name the company and say the caller called you. Default: the
    /// provider's text for the language (`[provider.bankid] intent_sv` / `intent_en`).
    #[serde(default)]
    intent: Option<String>,
    /// Seconds a bridged call may last before idgate ends both legs (a lost BYE or a vanished
    /// peer must not hold a call and its ports forever). Default `14400` (4 hours).
    #[serde(default = "default_max_call")]
    max_call_secs: u64,
    /// Milliseconds idgate rings (180 Ringing) before it answers. Some trunks expect a ring
    /// before answer; the caller can still CANCEL meanwhile. Default `0` (answer at once).
    #[serde(default)]
    answer_after_ms: u64,
    /// Hand-off: `"b2bua"` (new INVITE to `target`, bridged) or `"refer"`. Default `"b2bua"`.
    #[serde(default)]
    transfer: Transfer,
    /// REFER mode: which identity headers go into the Refer-To URI, `"all"` (default) or
    /// `"short"` (Status, Reason, Method, Call; for user agents that cap its length).
    #[serde(default)]
    refer_to_headers: ReferToHeaders,
    /// Agent queue, a `sip:` or `sips:` URI. Required.
    target: String,
    /// Where to send the call when `target` fails, a `sip:` or `sips:` URI. Default: none.
    #[serde(default)]
    fallback: Option<String>,
}

fn yes() -> bool {
    true
}
fn default_region() -> String {
    "SE".to_owned()
}
fn default_keypad_attempts() -> u32 {
    3
}
fn default_identify_timeout() -> u64 {
    150
}
fn default_max_call() -> u64 {
    4 * 3600
}

fn default_ring_timeout() -> u64 {
    60
}

/// Prompt language of a route.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    /// Swedish.
    #[default]
    Sv,
    /// English.
    En,
}

impl Language {
    /// The code used in route files and for prompt sets: `"sv"`, `"en"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Language::Sv => "sv",
            Language::En => "en",
        }
    }
}

/// How the verified call is handed to the queue (see `DESIGN.md`, step 5).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transfer {
    /// idgate calls the queue itself and bridges the two legs.
    #[default]
    B2bua,
    /// REFER in the caller's dialog (RFC 3515), falling back to B2BUA on failure.
    Refer,
}

impl Transfer {
    /// The name used in route files and in the calls table.
    pub fn as_str(self) -> &'static str {
        match self {
            Transfer::B2bua => "b2bua",
            Transfer::Refer => "refer",
        }
    }

    /// Parses the name back (used by the store).
    pub fn parse(token: &str) -> Option<Transfer> {
        [Transfer::B2bua, Transfer::Refer]
            .into_iter()
            .find(|t| t.as_str() == token)
    }
}

/// Which identity headers a REFER embeds in its Refer-To URI (the REFER request itself always
/// carries all of them, the token included).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReferToHeaders {
    /// Every identity header, the token included (the contract's default).
    #[default]
    All,
    /// Only `Status`, `Reason`, `Method` and `Call`: for user agents that cap the Refer-To's
    /// length (baresip 1.0 follows at most 255 bytes). The agent side then checks the verdict
    /// through `Call` (the API) rather than the token.
    Short,
}

impl ReferToHeaders {
    /// Whether the header with this suffix (after the prefix) goes into the Refer-To URI.
    pub fn embeds(self, suffix: &str) -> bool {
        match self {
            ReferToHeaders::All => true,
            ReferToHeaders::Short => ["Status", "Reason", "Method", "Call"]
                .iter()
                .any(|s| s.eq_ignore_ascii_case(suffix)),
        }
    }
}

/// Which called numbers a route takes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum CalledMatch {
    /// Exactly this Request-URI user (`"5000"`).
    Exact(String),
    /// Every called number starting with this (`"46*"` is `Prefix("46")`).
    Prefix(String),
    /// Every call (`"*"`).
    Any,
}

impl CalledMatch {
    /// Parses `"5000"`, `"46*"` or `"*"`; `*` is allowed only at the end.
    pub fn parse(raw: &str) -> Option<CalledMatch> {
        let ok = |s: &str| !s.is_empty() && !s.contains('*') && !s.chars().any(char::is_whitespace);
        match raw.strip_suffix('*') {
            Some("") => Some(CalledMatch::Any),
            Some(prefix) if ok(prefix) => Some(CalledMatch::Prefix(prefix.to_owned())),
            None if ok(raw) => Some(CalledMatch::Exact(raw.to_owned())),
            _ => None,
        }
    }

    /// Whether a call to `called` takes this route.
    pub fn matches(&self, called: &str) -> bool {
        match self {
            CalledMatch::Exact(number) => called == number,
            CalledMatch::Prefix(prefix) => called.starts_with(prefix.as_str()),
            CalledMatch::Any => true,
        }
    }

    /// Whether every number this takes is also taken by `earlier` (so a later route with this
    /// match could never be reached).
    fn shadowed_by(&self, earlier: &CalledMatch) -> bool {
        match (earlier, self) {
            (CalledMatch::Any, _) => true,
            (CalledMatch::Prefix(p), CalledMatch::Exact(s) | CalledMatch::Prefix(s)) => {
                s.starts_with(p.as_str())
            }
            (CalledMatch::Exact(a), CalledMatch::Exact(b)) => a == b,
            _ => false,
        }
    }
}

impl std::fmt::Display for CalledMatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CalledMatch::Exact(number) => f.write_str(number),
            CalledMatch::Prefix(prefix) => write!(f, "{prefix}*"),
            CalledMatch::Any => f.write_str("*"),
        }
    }
}

/// A `sip:` or `sips:` URI (RFC 3261 section 19.1), checked only that far: the SIP stack parses
/// it fully when it is used.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SipUri(String);

impl SipUri {
    /// Accepts `sip:...` or `sips:...` (scheme in any case) without spaces or control characters.
    pub fn parse(raw: &str) -> Option<SipUri> {
        let lower = raw.get(..5).unwrap_or(raw).to_ascii_lowercase();
        let rest = if lower.starts_with("sips:") {
            &raw[5..]
        } else if lower.starts_with("sip:") {
            &raw[4..]
        } else {
            return None;
        };
        let clean = !raw.chars().any(|c| c.is_whitespace() || c.is_control());
        (clean && !rest.is_empty()).then(|| SipUri(raw.to_owned()))
    }

    /// The URI as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for SipUri {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A checked route: which calls it takes, how they are identified, and where they go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Name shown in logs, the calls table and `check-config`.
    pub name: String,
    /// The file the route came from (for reports and errors).
    pub file: String,
    /// Which called numbers it takes.
    pub matches: CalledMatch,
    /// Prompt language.
    pub language: Language,
    /// ISO 3166 region for normalising national caller numbers (`"SE"`).
    pub region: String,
    /// Whether callers are identified at all.
    pub identify: bool,
    /// Whether the caller number is looked up in the customer directory.
    pub directory: bool,
    /// Whether a push may be addressed by the caller number itself.
    pub phone_push: bool,
    /// Whether callers may type their personal identity number.
    pub keypad: bool,
    /// Keypad entries allowed (at least 1).
    pub keypad_attempts: u32,
    /// How long identification may take after answer.
    pub identify_timeout: Duration,
    /// How long the queue leg may ring.
    pub ring_timeout: Duration,
    /// How long idgate rings before it answers.
    pub answer_after: Duration,
    /// The longest a bridged call may last.
    pub max_call: Duration,
    /// The route's own text for the eID app, if any.
    pub intent: Option<String>,
    /// How the call is handed to the queue.
    pub transfer: Transfer,
    /// REFER mode: which identity headers the Refer-To URI carries.
    pub refer_to_headers: ReferToHeaders,
    /// The agent queue.
    pub target: SipUri,
    /// Where to go when `target` fails.
    pub fallback: Option<SipUri>,
}

/// The routes of all route files, in the order they are tried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dialplan {
    routes: Vec<Route>,
}

impl Dialplan {
    /// Loads `config.dir` (every `*.toml`, in file-name order), or the bundled default route when
    /// no directory is set. Rejects unknown keys, bad routes, duplicate names and routes that an
    /// earlier route makes unreachable.
    pub fn load(config: &DialplanConfig) -> Result<Dialplan, ConfigError> {
        let routes = match &config.dir {
            None => parse_routes(DEFAULT_DIALPLAN_NAME, DEFAULT_DIALPLAN)?,
            Some(dir) => load_dir(dir)?,
        };
        check_order(&routes)?;
        Ok(Dialplan { routes })
    }

    /// Parses one route file's text; `file` names it in errors. Order checks across files are
    /// left to [`Dialplan::load`].
    pub fn parse_file(file: &str, source: &str) -> Result<Vec<Route>, ConfigError> {
        parse_routes(file, source)
    }

    /// The first route whose `match` takes `called` (the Request-URI user), if any.
    pub fn route_for(&self, called: &str) -> Option<&Route> {
        self.routes.iter().find(|r| r.matches.matches(called))
    }

    /// All routes, in the order they are tried.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }
}

/// Reads every `*.toml` file of `dir` in file-name order.
fn load_dir(dir: &Path) -> Result<Vec<Route>, ConfigError> {
    let read_err = |source| ConfigError::Read {
        file: dir.to_path_buf(),
        source,
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(read_err)? {
        let path = entry.map_err(read_err)?.path();
        if path.extension().is_some_and(|e| e == "toml") && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    let mut routes = Vec::new();
    for path in files {
        let source = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
            file: path.clone(),
            source,
        })?;
        routes.extend(parse_routes(&display_path(&path), &source)?);
    }
    if routes.is_empty() {
        return Err(ConfigError::NoRoutes {
            dir: dir.to_path_buf(),
        });
    }
    Ok(routes)
}

/// Parses and checks the routes of one file.
fn parse_routes(file: &str, source: &str) -> Result<Vec<Route>, ConfigError> {
    let parsed: RouteFile =
        toml::from_str(source).map_err(|e| ConfigError::from_toml(file, source, &e))?;
    parsed
        .route
        .into_iter()
        .map(|raw| raw.check(file))
        .collect()
}

/// Rejects duplicate names and routes an earlier route makes unreachable.
fn check_order(routes: &[Route]) -> Result<(), ConfigError> {
    for (i, route) in routes.iter().enumerate() {
        for earlier in &routes[..i] {
            let problem = if earlier.name == route.name {
                format!("name already used in {}", earlier.file)
            } else if route.matches.shadowed_by(&earlier.matches) {
                let (name, file) = (&earlier.name, &earlier.file);
                format!("unreachable: route \"{name}\" ({file}) takes these calls first")
            } else {
                continue;
            };
            let key = format!("match \"{}\"", route.matches);
            return Err(route_error(route.name.clone(), &route.file, key, problem));
        }
    }
    Ok(())
}

/// A [`ConfigError::Route`].
fn route_error(route: String, file: &str, key: String, problem: impl Into<String>) -> ConfigError {
    ConfigError::Route {
        route,
        file: file.to_owned(),
        key,
        problem: problem.into(),
    }
}

impl RawRoute {
    /// Turns the route as written into a checked [`Route`].
    fn check(self, file: &str) -> Result<Route, ConfigError> {
        let fail = |key: String, problem: &str| route_error(self.name.clone(), file, key, problem);
        self.check_values(&fail)?;
        let matches = CalledMatch::parse(&self.matches).ok_or_else(|| {
            let problem = "must be a number (\"5000\"), a prefix (\"46*\") or \"*\"";
            fail(format!("match {:?}", self.matches), problem)
        })?;
        let uri = |key: &str, raw: &str| {
            SipUri::parse(raw)
                .ok_or_else(|| fail(format!("{key} {raw:?}"), "must be a sip: or sips: URI"))
        };
        let target = uri("target", &self.target)?;
        let fallback = self
            .fallback
            .as_deref()
            .map(|f| uri("fallback", f))
            .transpose()?;
        Ok(Route {
            name: self.name.clone(),
            file: file.to_owned(),
            matches,
            language: self.language,
            region: self.region.trim().to_ascii_uppercase(),
            identify: self.identify,
            directory: self.directory,
            phone_push: self.phone_push,
            keypad: self.keypad,
            keypad_attempts: self.keypad_attempts,
            identify_timeout: Duration::from_secs(self.identify_timeout_secs),
            ring_timeout: Duration::from_secs(self.ring_timeout_secs),
            answer_after: Duration::from_millis(self.answer_after_ms),
            max_call: Duration::from_secs(self.max_call_secs),
            intent: self.intent.clone(),
            transfer: self.transfer,
            refer_to_headers: self.refer_to_headers,
            target,
            fallback,
        })
    }

    /// Checks the name, region, counts, timeouts, and that an identifying route has a way to
    /// identify.
    fn check_values(&self, fail: &dyn Fn(String, &str) -> ConfigError) -> Result<(), ConfigError> {
        if self.name.trim().is_empty() || self.name.chars().any(char::is_control) {
            let problem = "must be non-empty, without control characters";
            return Err(fail("name".into(), problem));
        }
        if !crate::identity::caller::is_known_region(&self.region) {
            let problem = "must be an ISO 3166 region code (\"SE\")";
            return Err(fail(format!("region {:?}", self.region), problem));
        }
        if self.keypad_attempts == 0 {
            return Err(fail("keypad_attempts".into(), "must be at least 1"));
        }
        if self.identify_timeout_secs == 0 {
            return Err(fail("identify_timeout_secs".into(), "must be at least 1"));
        }
        if self.ring_timeout_secs == 0 {
            return Err(fail("ring_timeout_secs".into(), "must be at least 1"));
        }
        if self.max_call_secs == 0 {
            return Err(fail("max_call_secs".into(), "must be at least 1"));
        }
        if let Some(intent) = &self.intent {
            // BankID takes at most MAX_VISIBLE_DATA characters of base64.
            let encoded = intent.len().div_ceil(3) * 4;
            if intent.trim().is_empty() || encoded > crate::verify::bankid::MAX_VISIBLE_DATA {
                return Err(fail(
                    "intent".into(),
                    "must be non-empty and at most 1,100 bytes",
                ));
            }
        }
        if self.identify && !(self.directory || self.phone_push || self.keypad) {
            let problem = "is true, but directory, phone_push and keypad are all false";
            return Err(fail("identify".into(), problem));
        }
        Ok(())
    }
}
