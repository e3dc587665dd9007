//! Errors from loading and validating config and dialplan files. Every error names the file and
//! the key, and none carries a personal identity number (values that may be personal data are
//! described, never echoed).

use std::path::{Path, PathBuf};

/// Why a config or dialplan file was rejected. Config errors are always the operator's to fix;
/// retrying without editing the file never helps.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A file or directory could not be read.
    #[error("{}: cannot read: {source}", .file.display())]
    Read {
        /// The file or directory.
        file: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// Not valid TOML, or a key the schema does not know, or a value of the wrong type. The
    /// message is toml's own (it names the key, e.g. ``unknown field `lisen`, expected one of
    /// ...``); the source line is not echoed, as it may hold personal data.
    #[error("{}: {}{message}", location(.file, *.line, *.column), key_prefix(.key))]
    Parse {
        /// The file (or `... (embedded)` for a built-in one).
        file: String,
        /// The dotted key at the error's position (`http.listen`), when there is one.
        key: Option<String>,
        /// 1-based line of the offending key or value, when toml knows it.
        line: Option<usize>,
        /// 1-based column, when toml knows it.
        column: Option<usize>,
        /// toml's message.
        message: String,
    },
    /// Well-formed, but a value is not acceptable (`sip.trusted_peers[1]`, `media.rtp_port_min`).
    #[error("{file}: {key}: {problem}")]
    Invalid {
        /// The file (or `... (embedded)`, or `(config)` when validated in memory).
        file: String,
        /// The dotted key, with the index for list entries.
        key: String,
        /// What is wrong and what is expected.
        problem: String,
    },
    /// A dialplan route is not acceptable.
    #[error("route \"{route}\" ({file}): {key}: {problem}")]
    Route {
        /// The route's `name`.
        route: String,
        /// The route file.
        file: String,
        /// The key, with its value when that helps (`target "queue@pbx"`).
        key: String,
        /// What is wrong and what is expected.
        problem: String,
    },
    /// The dialplan directory holds no `*.toml` file with a `[[route]]`.
    #[error("{}: no routes (expected *.toml files with [[route]] entries)", .dir.display())]
    NoRoutes {
        /// The directory.
        dir: PathBuf,
    },
}

/// `file:line:column`, or just `file` when toml gave no position.
fn location(file: &str, line: Option<usize>, column: Option<usize>) -> String {
    match (line, column) {
        (Some(line), Some(column)) => format!("{file}:{line}:{column}"),
        (Some(line), None) => format!("{file}:{line}"),
        _ => file.to_owned(),
    }
}

impl ConfigError {
    /// Turns a toml error into [`ConfigError::Parse`], keeping toml's message and translating its
    /// byte span in `source` into a line and column.
    pub(crate) fn from_toml(file: &str, source: &str, err: &toml::de::Error) -> Self {
        let (line, column) = match err.span() {
            Some(span) => {
                let (line, column) = line_column(source, span.start);
                (Some(line), Some(column))
            }
            None => (None, None),
        };
        ConfigError::Parse {
            file: file.to_owned(),
            key: err.span().and_then(|span| key_at(source, span.start)),
            line,
            column,
            message: err.message().trim_end().to_owned(),
        }
    }
}

/// `"<key>: "` for a known key, else nothing.
fn key_prefix(key: &Option<String>) -> String {
    key.as_ref().map(|k| format!("{k}: ")).unwrap_or_default()
}

/// The dotted key whose line holds byte `offset`: the last `[table]` header above it and the
/// key left of `=` on that line (`[[route]]` entries are counted: `route[2].target`). Only
/// key names are returned, never values, which may hold personal data.
fn key_at(source: &str, offset: usize) -> Option<String> {
    let before = source.get(..offset)?;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = source[line_start..].lines().next()?;
    let key = line.split_once('=')?.0.trim();
    if key.is_empty() || key.starts_with('[') || key.starts_with('#') {
        return None;
    }
    let mut table = String::new();
    let mut entries: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for header in before[..line_start].lines().map(str::trim) {
        if let Some(name) = header.strip_prefix("[[").and_then(|h| h.split("]]").next()) {
            let count = entries.entry(name.trim().to_owned()).or_insert(0);
            *count += 1;
            table = format!("{}[{}]", name.trim(), *count - 1);
        } else if let Some(name) = header.strip_prefix('[').and_then(|h| h.split(']').next()) {
            table = name.trim().to_owned();
        }
    }
    Some(if table.is_empty() {
        key.to_owned()
    } else {
        format!("{table}.{key}")
    })
}

/// 1-based line and column (in characters) of byte `offset` in `source`.
fn line_column(source: &str, offset: usize) -> (usize, usize) {
    let before = source.get(..offset).unwrap_or(source);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

/// How a path is shown in errors and reports.
pub(crate) fn display_path(path: &Path) -> String {
    path.display().to_string()
}

/// A validation problem before the file is known: a dotted key and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Problem {
    /// The dotted key.
    pub key: String,
    /// What is wrong.
    pub problem: String,
}

impl Problem {
    /// A problem with `key`.
    pub fn new(key: impl Into<String>, problem: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            problem: problem.into(),
        }
    }

    /// The error, once the file is known.
    pub fn in_file(self, file: &str) -> ConfigError {
        ConfigError::Invalid {
            file: file.to_owned(),
            key: self.key,
            problem: self.problem,
        }
    }
}
