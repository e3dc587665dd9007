//! `idgate token verify TOKEN`: checks an `X-Identity-Token` offline, against the keys of
//! `[identity]` in `--config` (the signing key's public half and `previous_public_keys`), or
//! against a JWKS file saved from `GET /.well-known/jwks.json`. Prints the verdict when the token
//! is valid; fails with the reason otherwise. A personal identity number is printed in full
//! only when the token itself carries it (`subject = "full"`), and then says so.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use clap::{Args, Subcommand};

use crate::config::{Config, ConfigError};
use crate::identity::token::{
    Claims, JwksError, KeyError, KeySet, TokenError, TokenSubject, configured_key_set, header_kid,
};
use crate::timefmt::rfc3339;

/// `idgate token`: the signed verdict token.
#[derive(Debug, Args)]
pub struct TokenArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: TokenCommand,
}

/// The `idgate token` subcommands.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Check a token's signature, expiry and claims; print the verdict it carries. Exit 0 when
    /// valid, 1 with the reason otherwise.
    Verify {
        /// The token (the `X-Identity-Token` value), or `-` to read it from standard input.
        token: String,
        /// The TOML config whose `[identity]` keys the token is checked against (default: the
        /// embedded defaults, which name no key file: then give --jwks).
        #[arg(long)]
        config: Option<PathBuf>,
        /// A JWKS file (saved from idgate's `/.well-known/jwks.json`) to check against instead
        /// of the configured keys.
        #[arg(long)]
        jwks: Option<PathBuf>,
    },
}

/// Why `idgate token verify` failed.
#[derive(Debug, thiserror::Error)]
pub enum TokenCliError {
    /// The token is not valid.
    #[error("invalid token: {}", describe(.0))]
    Invalid(TokenError),
    /// The token is valid but was issued by another instance (`[identity] issuer`).
    #[error("invalid token: issuer {found:?}, expected {expected:?} ([identity] issuer)")]
    WrongIssuer {
        /// The token's `iss`.
        found: String,
        /// The configured issuer.
        expected: String,
    },
    /// The config file could not be loaded.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A configured key file could not be read.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// Neither `signing_key_file` in the config nor `--jwks`: nothing to check against.
    #[error(
        "no key to check against: [identity] signing_key_file is not set (an ephemeral key's \
         tokens cannot be checked offline); give --config with it, or --jwks FILE"
    )]
    NoKeys,
    /// The `--jwks` file could not be read.
    #[error("{}: cannot read: {source}", .path.display())]
    JwksRead {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The `--jwks` file is not a usable JWKS.
    #[error("{}: {error}", .path.display())]
    Jwks {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        error: JwksError,
    },
    /// The token could not be read from standard input.
    #[error("cannot read the token from standard input: {0}")]
    Stdin(std::io::Error),
    /// Standard output could not be written.
    #[error("cannot write the output")]
    Output(#[from] std::io::Error),
}

/// A readable reason for a refused token.
fn describe(error: &TokenError) -> String {
    match error {
        TokenError::Expired { exp } => format!("expired at {}", rfc3339(*exp)),
        TokenError::NotYetValid { iat } => {
            format!("issued in the future ({}): check the clocks", rfc3339(*iat))
        }
        TokenError::UnknownKid { kid } => format!(
            "unknown key id {}: not signed by a configured key (current or previous)",
            kid.as_deref().unwrap_or("(none)")
        ),
        TokenError::BadSignature => "bad signature: altered, or not signed by idgate".to_owned(),
        TokenError::RetiredKey { kid, retired } => format!(
            "key {kid} retired at {}, before this token was issued",
            rfc3339(*retired)
        ),
        other => other.to_string(),
    }
}

/// Runs one `idgate token` command at `now`, printing to `out`.
pub fn run(args: TokenArgs, now: SystemTime, out: &mut impl Write) -> Result<(), TokenCliError> {
    match args.command {
        TokenCommand::Verify {
            token,
            config,
            jwks,
        } => {
            let token = read_token(&token)?;
            let (keys, issuer) = keys(config.as_deref(), jwks.as_deref())?;
            let claims = keys.verify(&token, now).map_err(TokenCliError::Invalid)?;
            if let Some(expected) = issuer.filter(|expected| *expected != claims.iss) {
                let found = claims.iss;
                return Err(TokenCliError::WrongIssuer { found, expected });
            }
            let kid = header_kid(&token).ok().flatten().unwrap_or_default();
            let current = keys.current().kid().as_str() == kid;
            print_verdict(&claims, &kid, current, now, out)
        }
    }
}

fn read_token(arg: &str) -> Result<String, TokenCliError> {
    if arg != "-" {
        return Ok(arg.trim().to_owned());
    }
    let mut text = String::new();
    std::io::stdin()
        .read_to_string(&mut text)
        .map_err(TokenCliError::Stdin)?;
    Ok(text.trim().to_owned())
}

/// The keys to check against, and the issuer to expect (only with `--config`).
fn keys(
    config: Option<&Path>,
    jwks: Option<&Path>,
) -> Result<(KeySet, Option<String>), TokenCliError> {
    let loaded = config.map(Config::load).transpose()?;
    let issuer = loaded.as_ref().map(|c| c.identity.issuer.clone());
    if let Some(path) = jwks {
        let text = std::fs::read_to_string(path).map_err(|source| TokenCliError::JwksRead {
            path: path.to_path_buf(),
            source,
        })?;
        let keys = KeySet::from_jwks(&text).map_err(|error| TokenCliError::Jwks {
            path: path.to_path_buf(),
            error,
        })?;
        return Ok((keys, issuer));
    }
    let config = loaded.unwrap_or_else(Config::embedded);
    let keys = configured_key_set(&config.identity)?.ok_or(TokenCliError::NoKeys)?;
    Ok((keys, issuer))
}

fn print_verdict(
    claims: &Claims,
    kid: &str,
    current: bool,
    now: SystemTime,
    out: &mut impl Write,
) -> Result<(), TokenCliError> {
    let which = if current { "current" } else { "previous" };
    writeln!(out, "valid token, signed by the {which} key (kid {kid})")?;
    writeln!(out, "status:      {}", claims.status.as_str())?;
    if let Some(reason) = claims.reason {
        writeln!(out, "reason:      {}", reason.as_str())?;
    }
    if let Some(method) = claims.method {
        writeln!(out, "method:      {}", method.as_str())?;
    }
    match &claims.sub {
        Some(TokenSubject::Full(number)) => writeln!(
            out,
            "subject:     {} (the full number: the token carries it, subject = \"full\")",
            number.as_digits()
        )?,
        Some(masked) => writeln!(out, "subject:     {}", masked.masked())?,
        None => {}
    }
    if let Some(name) = &claims.name {
        writeln!(out, "name:        {}", name.as_str())?;
    }
    print_call(claims, now, out)
}

/// The lines about the call and the token's life.
fn print_call(claims: &Claims, now: SystemTime, out: &mut impl Write) -> Result<(), TokenCliError> {
    writeln!(out, "call:        {}", claims.call)?;
    writeln!(out, "sip call-id: {}", claims.sip_call_id)?;
    writeln!(out, "orig:        {}", claims.orig.as_claim())?;
    writeln!(out, "issuer:      {}", claims.iss)?;
    writeln!(out, "issued:      {}", rfc3339(claims.iat))?;
    let left = claims
        .exp
        .saturating_sub(crate::identity::token::unix_secs(now));
    writeln!(
        out,
        "expires:     {} (in {} min {} s)",
        rfc3339(claims.exp),
        left / 60,
        left % 60
    )?;
    Ok(())
}
