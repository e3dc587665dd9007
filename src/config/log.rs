//! `[log]`: how idgate logs. Whatever is set here, the SIP stack's own logger stays at `warn`
//! (it prints whole SIP messages, with caller numbers and keypad digits).

use serde::Deserialize;

use super::error::Problem;

/// Human-readable lines or one JSON object per line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// `2026-11-23T10:00:00Z  INFO call{call=...}: verdict status="verified"` (the default).
    #[default]
    Human,
    /// One JSON object per line (timestamp, level, target, fields, spans), for log shippers.
    Json,
}

/// `[log]`: format and level.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `"human"` (default) or `"json"`.
    pub format: LogFormat,
    /// Which events are written, as `tracing` filter directives (`"info"`,
    /// `"info,idgate::call=debug"`). `RUST_LOG`, when set, replaces it. Default `"info"`.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Human,
            level: "info".to_owned(),
        }
    }
}

impl LogConfig {
    /// The level must be a filter `tracing` understands.
    pub(crate) fn validate(&self) -> Result<(), Problem> {
        tracing_subscriber::EnvFilter::try_new(&self.level)
            .map(|_| ())
            .map_err(|e| Problem::new("log.level", format!("not a log filter: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn formats_and_bad_levels() {
        let c = Config::parse(
            "idgate.toml",
            "[log]\nformat = \"json\"\nlevel = \"debug\"\n",
        )
        .unwrap();
        assert_eq!(
            (c.log.format, c.log.level.as_str()),
            (LogFormat::Json, "debug")
        );
        let e = Config::parse("idgate.toml", "[log]\nlevel = \"idgate=loud\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("log.level"), "{e}");
        let e = Config::parse("idgate.toml", "[log]\nformat = \"xml\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("format"), "{e}");
    }
}
