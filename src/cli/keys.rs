//! `idgate keys generate --out FILE` and `idgate keys public FILE`: the Ed25519 key
//! `X-Identity-Token` is signed with (`[identity] signing_key_file`). The private key is only
//! ever written to the new file, never printed.

use std::io::Write;
use std::path::PathBuf;

use clap::{Args, Subcommand};

use crate::identity::token::{KeyError, Signer, load_signer};

/// `idgate keys`: the token signing key.
#[derive(Debug, Args)]
pub struct KeysArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: KeysCommand,
}

/// The `idgate keys` subcommands.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Make a new signing key: write it to FILE (PKCS#8 PEM, mode 0600, never overwriting an
    /// existing file) and print its kid and public key.
    Generate {
        /// The new private key file (point `[identity] signing_key_file` at it).
        #[arg(long)]
        out: PathBuf,
    },
    /// Print the kid and public key of a signing key file (keep the public key for
    /// `[identity] previous_public_keys` before rotating to a new key).
    Public {
        /// The private key file.
        key: PathBuf,
    },
}

/// Why an `idgate keys` command failed.
#[derive(Debug, thiserror::Error)]
pub enum KeysCliError {
    /// The key could not be made, read or written.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// Standard output could not be written.
    #[error("cannot write the output")]
    Output(#[from] std::io::Error),
}

/// Runs one `idgate keys` command, printing to `out`.
pub fn run(args: KeysArgs, out: &mut impl Write) -> Result<(), KeysCliError> {
    match args.command {
        KeysCommand::Generate { out: path } => {
            let signer = Signer::generate()?;
            signer.write_new_file(&path)?;
            writeln!(
                out,
                "wrote {} (Ed25519 signing key, PKCS#8 PEM, readable by its owner only)",
                path.display()
            )?;
            print_public(&signer, out)
        }
        KeysCommand::Public { key } => {
            let signer = load_signer("key file", &key)?;
            print_public(&signer, out)
        }
    }
}

/// `kid: ...` and the public key PEM.
fn print_public(signer: &Signer, out: &mut impl Write) -> Result<(), KeysCliError> {
    let pem = signer.public_key().to_pem()?;
    writeln!(out, "kid: {}", signer.kid())?;
    write!(out, "{pem}")?;
    Ok(())
}
