//! `idgate privacy export | erase | purge`: GDPR requests about one person, and the retention
//! purge on demand, on the database `[store] url` names (the config file given with `--config`,
//! else the embedded defaults).
//!
//! `export` prints, as JSON, everything idgate holds about a person: that includes their
//! personal identity number (it is theirs), so the output is for them and for no log. Errors
//! never show the number. Give the number as `-` to read it from standard input (it then stays
//! out of shell history and the process list). Every export, erasure and purge is recorded as
//! an admin action by `cli`, without the number.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::time::SystemTime;

use clap::{Args, Subcommand};

use crate::config::{Config, ConfigError};
use crate::identity::PersonalNumber;
use crate::identity::personal_number::PersonalNumberError;
use crate::store::retention::retention_cutoff;
use crate::store::{AdminAction, Store, StoreError};
use crate::timefmt::rfc3339_millis;

/// The admin actions' actor.
const ACTOR: &str = "cli";

/// `idgate privacy`: GDPR requests and retention.
#[derive(Debug, Args)]
pub struct PrivacyArgs {
    /// The TOML config file whose `[store]` names the database and the retention period
    /// (default: the embedded defaults).
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: PrivacyCommand,
}

/// The `idgate privacy` subcommands.
#[derive(Debug, Subcommand)]
pub enum PrivacyCommand {
    /// Print everything idgate holds about a person as JSON (directory entry, push attempts,
    /// calls with their audit trail, evidence).
    Export {
        /// Personal identity number, YYYYMMDDNNNN or YYYYMMDD-NNNN; `-` reads it from stdin.
        #[arg(value_name = "PERSONAL_NUMBER")]
        personal_number: String,
    },
    /// Erase what idgate holds about a person: the directory entry, push attempts and evidence
    /// are deleted, their calls keep only aggregate columns. Without --yes, shows what would be
    /// erased and exits 1.
    Erase {
        /// Personal identity number, YYYYMMDDNNNN or YYYYMMDD-NNNN; `-` reads it from stdin.
        #[arg(value_name = "PERSONAL_NUMBER")]
        personal_number: String,
        /// Really erase.
        #[arg(long)]
        yes: bool,
    },
    /// Remove the personal data older than `[store] retention_days` now (`serve` does this
    /// hourly).
    Purge {
        /// Only show what would be removed.
        #[arg(long)]
        dry_run: bool,
    },
}

/// Why an `idgate privacy` command failed. No variant holds a personal identity number.
#[derive(Debug, thiserror::Error)]
pub enum PrivacyError {
    /// The config file could not be loaded.
    #[error("{0}")]
    Config(ConfigError),
    /// The database could not be opened or used.
    #[error("store.url {url:?}: {error}")]
    Store {
        /// The database URL.
        url: String,
        /// What failed.
        error: StoreError,
    },
    /// The argument is not a personal identity number (the message never echoes it).
    #[error("PERSONAL_NUMBER: {0}")]
    PersonalNumber(#[from] PersonalNumberError),
    /// The personal number could not be read from standard input.
    #[error("PERSONAL_NUMBER: cannot read standard input: {0}")]
    Stdin(std::io::Error),
    /// `erase` without `--yes`.
    #[error("nothing erased: run again with --yes to erase")]
    NotConfirmed,
    /// The async runtime could not be started.
    #[error("cannot start the runtime: {0}")]
    Runtime(std::io::Error),
    /// Standard output could not be written.
    #[error("cannot write the output")]
    Output(#[from] std::io::Error),
}

/// Runs one `idgate privacy` command, printing to standard output.
pub fn run(args: PrivacyArgs) -> Result<(), PrivacyError> {
    let config = match &args.config {
        Some(path) => Config::load(path).map_err(PrivacyError::Config)?,
        None => Config::embedded(),
    };
    // Read before connecting: a bad number fails without touching the database.
    let person = match &args.command {
        PrivacyCommand::Export { personal_number }
        | PrivacyCommand::Erase {
            personal_number, ..
        } => Some(read_person(personal_number, &mut std::io::stdin().lock())?),
        PrivacyCommand::Purge { .. } => None,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(PrivacyError::Runtime)?;
    let url = config.store.url.clone();
    runtime.block_on(async {
        let store = Store::connect(&url)
            .await
            .map_err(|error| PrivacyError::Store {
                url: url.clone(),
                error,
            })?;
        let out = &mut std::io::stdout().lock();
        let result = execute(&store, &config, args.command, person.as_ref(), out).await;
        store.close().await;
        result
    })
}

/// The personal number argument, or the first line of `stdin` for `-`.
fn read_person(raw: &str, stdin: &mut impl BufRead) -> Result<PersonalNumber, PrivacyError> {
    if raw != "-" {
        return Ok(PersonalNumber::parse(raw)?);
    }
    let mut line = String::new();
    stdin.read_line(&mut line).map_err(PrivacyError::Stdin)?;
    Ok(PersonalNumber::parse(line.trim())?)
}

/// Carries out `command` (about `person`, for export and erase), writing to `out`.
async fn execute(
    store: &Store,
    config: &Config,
    command: PrivacyCommand,
    person: Option<&PersonalNumber>,
    out: &mut impl Write,
) -> Result<(), PrivacyError> {
    let db = |error| PrivacyError::Store {
        url: config.store.url.clone(),
        error,
    };
    let now = SystemTime::now();
    match (command, person) {
        (PrivacyCommand::Export { .. }, Some(person)) => {
            let export = store.export_person(person, ACTOR, now).await.map_err(db)?;
            serde_json::to_writer_pretty(&mut *out, &export).map_err(std::io::Error::from)?;
            writeln!(out)?;
        }
        (PrivacyCommand::Erase { yes: false, .. }, Some(person)) => {
            let report = store.preview_erase(person).await.map_err(db)?;
            writeln!(out, "would erase {report}")?;
            return Err(PrivacyError::NotConfirmed);
        }
        (PrivacyCommand::Erase { yes: true, .. }, Some(person)) => {
            let report = store.erase_person(person, ACTOR, now).await.map_err(db)?;
            writeln!(out, "erased {report}")?;
        }
        (PrivacyCommand::Purge { dry_run }, _) => purge(store, config, dry_run, out).await?,
        // `run` reads the person for export and erase.
        (PrivacyCommand::Export { .. } | PrivacyCommand::Erase { .. }, None) => {}
    }
    Ok(())
}

/// `purge`: what the retention period removes, now (or, `dry_run`, what it would).
async fn purge(
    store: &Store,
    config: &Config,
    dry_run: bool,
    out: &mut impl Write,
) -> Result<(), PrivacyError> {
    let db = |error| PrivacyError::Store {
        url: config.store.url.clone(),
        error,
    };
    let Some(keep) = config.store.retention() else {
        writeln!(
            out,
            "store.retention_days = 0: personal data is kept until erased; nothing to purge"
        )?;
        return Ok(());
    };
    let now = SystemTime::now();
    let cutoff = retention_cutoff(now, keep);
    let before = rfc3339_millis(cutoff);
    if dry_run {
        let report = store.preview_purge(cutoff).await.map_err(db)?;
        writeln!(out, "would purge data before {before}: {report}")?;
        writeln!(out, "nothing changed (--dry-run)")?;
        return Ok(());
    }
    let report = store.purge_personal_data(cutoff).await.map_err(db)?;
    let target = format!("data before {before}: {report}");
    let action = AdminAction::now(ACTOR, "privacy-purge", target);
    store.record_admin_action(&action).await.map_err(db)?;
    writeln!(out, "purged data before {before}: {report}")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_number_comes_from_the_argument_or_stdin_and_errors_never_echo_it() {
        let mut empty = std::io::Cursor::new(Vec::new());
        let p = read_person("19121212-1212", &mut empty).unwrap();
        assert_eq!(p.as_digits(), "191212121212");
        let mut stdin = std::io::Cursor::new(b"191212121212\n".to_vec());
        assert_eq!(
            read_person("-", &mut stdin).unwrap().as_digits(),
            "191212121212"
        );
        let e = read_person("191212121213", &mut empty)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("PERSONAL_NUMBER: "), "{e}");
        assert!(!e.contains("121212"), "{e}");
    }
}
