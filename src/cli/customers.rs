//! `idgate customers add | remove | list | import`: the customer directory in the database
//! `[store] url` names (the config file given with `--config`, else the embedded defaults).
//! Personal identity numbers are only ever printed masked (`19800101-****`). Every failure is
//! an error naming the field, line or customer, and `main` exits 1 with it.

pub mod csv_file;

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use uuid::Uuid;

use crate::config::{Config, ConfigError};
use crate::identity::PersonalNumber;
use crate::store::{
    AdminAction, CustomerError, CustomerKey, CustomerSummary, ImportError, Store, StoreError,
};
use crate::verify::directory::{InputError, parse_customer};

pub use csv_file::CsvError;

/// `idgate customers`: manage the customer directory.
#[derive(Debug, Args)]
pub struct CustomersArgs {
    /// The TOML config file whose `[store] url` names the database (default: the embedded
    /// defaults, `sqlite://idgate.db` in the working directory).
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: CustomersCommand,
}

/// The `idgate customers` subcommands.
#[derive(Debug, Subcommand)]
pub enum CustomersCommand {
    /// Register a customer and the numbers they call from.
    Add {
        /// Personal identity number, YYYYMMDDNNNN or YYYYMMDD-NNNN.
        #[arg(long)]
        personal_number: String,
        /// The customer's name.
        #[arg(long)]
        name: String,
        /// A number the customer calls from (repeat for several); E.164 or national form.
        #[arg(long = "number", required = true)]
        numbers: Vec<String>,
        /// Region (ISO 3166 alpha-2) for numbers in national form.
        #[arg(long, default_value = "SE")]
        region: String,
    },
    /// Remove a customer and their numbers, by id or personal identity number.
    Remove {
        /// The customer's id (from `list`) or personal identity number.
        #[arg(value_name = "ID|PERSONAL_NUMBER")]
        customer: String,
    },
    /// List the customers, personal identity numbers masked.
    List,
    /// Import customers from a CSV file (header `personal_number,name,numbers`, numbers
    /// separated by `;`): all rows or none. A person already registered gets the row's name and
    /// numbers, so importing a file again changes nothing.
    Import {
        /// The CSV file.
        file: PathBuf,
        /// Region (ISO 3166 alpha-2) for numbers in national form.
        #[arg(long, default_value = "SE")]
        region: String,
    },
}

/// Why an `idgate customers` command failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
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
    /// A command-line value is not acceptable (the message names the field).
    #[error(transparent)]
    Input(#[from] InputError),
    /// `remove` was given neither a customer id nor a personal identity number.
    #[error("ID|PERSONAL_NUMBER: neither a customer id nor a valid personal identity number")]
    NotACustomerKey,
    /// The person or a number is already registered.
    #[error(transparent)]
    Taken(CustomerError),
    /// No customer has this id or personal identity number (shown masked).
    #[error("no customer {0}")]
    NotFound(String),
    /// The CSV file is not importable.
    #[error(transparent)]
    Csv(#[from] CsvError),
    /// The import failed on a row; nothing was imported.
    #[error("{}: {error}; nothing was imported", .file.display())]
    Import {
        /// The CSV file.
        file: PathBuf,
        /// The failing line and why.
        error: ImportError,
    },
    /// The async runtime could not be started.
    #[error("cannot start the runtime: {0}")]
    Runtime(std::io::Error),
    /// Standard output could not be written.
    #[error("cannot write the output")]
    Output(#[from] std::io::Error),
}

/// Runs one `idgate customers` command, printing to standard output.
pub fn run(args: CustomersArgs) -> Result<(), CliError> {
    let config = match &args.config {
        Some(path) => Config::load(path).map_err(CliError::Config)?,
        None => Config::embedded(),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(CliError::Runtime)?;
    let url = config.store.url;
    runtime.block_on(async {
        let store = Store::connect(&url)
            .await
            .map_err(|error| CliError::Store {
                url: url.clone(),
                error,
            })?;
        let result = execute(&store, &url, args.command, &mut std::io::stdout().lock()).await;
        store.close().await;
        result
    })
}

/// Carries out `command` on `store`, writing what it did to `out`.
async fn execute(
    store: &Store,
    url: &str,
    command: CustomersCommand,
    out: &mut impl Write,
) -> Result<(), CliError> {
    let db = |error| CliError::Store {
        url: url.to_owned(),
        error,
    };
    match command {
        CustomersCommand::Add {
            personal_number,
            name,
            numbers,
            region,
        } => {
            let numbers = numbers.iter().map(String::as_str);
            let customer = parse_customer(&personal_number, &name, numbers, &region)?;
            let id = store
                .insert_customer(&customer)
                .await
                .map_err(|e| match e {
                    CustomerError::Store(error) => db(error),
                    taken => CliError::Taken(taken),
                })?;
            let masked = customer.personal_number.masked();
            let count = customer.numbers.len();
            writeln!(out, "added customer {id} ({masked}, {count} number(s))")?;
            let target = format!("customer {id} ({count} number(s))");
            record(store, "customer-add", target).await.map_err(db)?;
        }
        CustomersCommand::Remove { customer } => {
            let (key, shown) = customer_key(&customer)?;
            // The audit trail names the customer by id, never by personal number.
            let id = match &key {
                CustomerKey::Id(id) => Some(*id),
                CustomerKey::PersonalNumber(p) => store.customer_id_of(p).await.map_err(db)?,
            };
            if !store.remove_customer(&key).await.map_err(db)? {
                return Err(CliError::NotFound(shown));
            }
            writeln!(out, "removed customer {shown}")?;
            let target = id.map_or_else(|| "customer".to_owned(), |id| format!("customer {id}"));
            record(store, "customer-remove", target).await.map_err(db)?;
        }
        CustomersCommand::List => print_list(&store.list_customers().await.map_err(db)?, out)?,
        CustomersCommand::Import { file, region } => {
            import(store, url, &file, &region, out).await?
        }
    }
    Ok(())
}

/// `import`: reads the whole file first, then imports it in one transaction.
async fn import(
    store: &Store,
    url: &str,
    file: &Path,
    region: &str,
    out: &mut impl Write,
) -> Result<(), CliError> {
    let rows = csv_file::read(file, region)?;
    let done = store
        .import_customers(&rows)
        .await
        .map_err(|error| match error {
            ImportError::Store(error) => CliError::Store {
                url: url.to_owned(),
                error,
            },
            error => CliError::Import {
                file: file.to_owned(),
                error,
            },
        })?;
    let summary = format!(
        "{} row(s): {} customer(s) added, {} updated, {} number(s) added",
        done.rows, done.added, done.updated, done.numbers_added
    );
    writeln!(out, "imported {summary}")?;
    record(store, "customer-import", summary)
        .await
        .map_err(|error| CliError::Store {
            url: url.to_owned(),
            error,
        })
}

/// Records a change made from the command line in the audit trail.
async fn record(store: &Store, action: &str, target: String) -> Result<(), StoreError> {
    store
        .record_admin_action(&AdminAction::now("cli", action, target))
        .await
}

/// The customer `remove` is about, and how to show it (the id, or the masked number).
fn customer_key(raw: &str) -> Result<(CustomerKey, String), CliError> {
    if let Ok(id) = Uuid::parse_str(raw.trim()) {
        return Ok((CustomerKey::Id(id), id.to_string()));
    }
    let person = PersonalNumber::parse(raw).map_err(|_| CliError::NotACustomerKey)?;
    let shown = person.masked();
    Ok((CustomerKey::PersonalNumber(person), shown))
}

/// The customers as a table: id, masked personal number, name, numbers.
fn print_list(customers: &[CustomerSummary], out: &mut impl Write) -> std::io::Result<()> {
    if customers.is_empty() {
        return writeln!(out, "no customers");
    }
    let name = |c: &CustomerSummary| c.name.as_ref().map_or("", |n| n.as_str()).to_owned();
    let width = customers
        .iter()
        .map(|c| name(c).chars().count())
        .max()
        .unwrap_or(0)
        .max(4);
    writeln!(
        out,
        "{:<36}  {:<15}  {:<width$}  NUMBERS",
        "ID", "PERSONAL NUMBER", "NAME"
    )?;
    for c in customers {
        let numbers: Vec<&str> = c.numbers.iter().map(|n| n.as_str()).collect();
        writeln!(
            out,
            "{:<36}  {:<15}  {:<width$}  {}",
            c.id,
            c.masked_personal_number,
            name(c),
            numbers.join(", ")
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_list_shows_masked_numbers_only() {
        let store = Store::memory().await.unwrap();
        let add = CustomersCommand::Add {
            personal_number: "191212121212".into(),
            name: "Tolvan Tolvansson".into(),
            numbers: vec!["070-123 45 67".into(), "+46812345678".into()],
            region: "SE".into(),
        };
        let mut out = Vec::new();
        execute(&store, "sqlite::memory:", add, &mut out)
            .await
            .unwrap();
        execute(&store, "sqlite::memory:", CustomersCommand::List, &mut out)
            .await
            .unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("19121212-****"), "{text}");
        assert!(text.contains("+46701234567, +46812345678"), "{text}");
        assert!(!text.contains("191212121212"), "{text}");
    }

    #[test]
    fn remove_takes_an_id_or_a_personal_number_and_shows_it_masked() {
        let (key, shown) = customer_key("19121212-1212").unwrap();
        assert!(matches!(key, CustomerKey::PersonalNumber(_)));
        assert_eq!(shown, "19121212-****");
        let id = Uuid::new_v4();
        assert_eq!(customer_key(&id.to_string()).unwrap().1, id.to_string());
        let e = customer_key("191212121213").unwrap_err().to_string();
        assert!(!e.contains("191212"), "{e}");
    }
}
