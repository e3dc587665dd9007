//! The customer CSV file: a header row `personal_number,name,numbers`, then one customer per
//! row, the row's numbers separated by `;`. Every error names the file and the line (and the
//! field), never a personal identity number.

use std::path::{Path, PathBuf};

use crate::store::ImportRow;
use crate::verify::directory::{InputError, parse_customer};

/// The header the file must start with.
pub const HEADER: [&str; 3] = ["personal_number", "name", "numbers"];

/// Why a customer CSV file cannot be imported.
#[derive(Debug, thiserror::Error)]
pub enum CsvError {
    /// The file could not be opened or read.
    #[error("{}: {error}", .path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        error: std::io::Error,
    },
    /// The first line is not the header.
    #[error("{}: line 1: the first line must be the header personal_number,name,numbers", .path.display())]
    Header {
        /// The file.
        path: PathBuf,
    },
    /// A line is not CSV, or does not have three fields.
    #[error("{}: line {line}: {problem}", .path.display())]
    Malformed {
        /// The file.
        path: PathBuf,
        /// The line.
        line: u64,
        /// What is wrong.
        problem: String,
    },
    /// A field is not acceptable.
    #[error("{}: line {line}: {reason}", .path.display())]
    Field {
        /// The file.
        path: PathBuf,
        /// The line.
        line: u64,
        /// Which field, and why.
        reason: InputError,
    },
    /// There is no customer row after the header.
    #[error("{}: no customers after the header", .path.display())]
    Empty {
        /// The file.
        path: PathBuf,
    },
}

/// Reads every row of the file at `path`, numbers in national form read in `region`.
pub fn read(path: &Path, region: &str) -> Result<Vec<ImportRow>, CsvError> {
    let text = std::fs::read(path).map_err(|error| CsvError::Read {
        path: path.to_owned(),
        error,
    })?;
    parse(path, &text, region)
}

/// Parses CSV `text`; `path` names it in errors.
pub fn parse(path: &Path, text: &[u8], region: &str) -> Result<Vec<ImportRow>, CsvError> {
    let source = Source::new(path, text);
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(text);
    let mut records = reader.records();
    let header = records
        .next()
        .ok_or_else(|| source.header())?
        .map_err(|e| source.malformed(&e))?;
    if !is_header(&header) {
        return Err(source.header());
    }
    let mut rows = Vec::new();
    for record in records {
        let record = record.map_err(|e| source.malformed(&e))?;
        rows.push(source.row(&record, region)?);
    }
    if rows.is_empty() {
        return Err(CsvError::Empty {
            path: path.to_owned(),
        });
    }
    Ok(rows)
}

/// Whether `record` is [`HEADER`] (any case; a UTF-8 byte order mark is ignored).
fn is_header(record: &csv::StringRecord) -> bool {
    let fields: Vec<String> = record
        .iter()
        .map(|f| f.trim_start_matches('\u{feff}').trim().to_ascii_lowercase())
        .collect();
    fields == HEADER
}

/// The file being parsed: its name, text, and where its lines end. The csv crate does not
/// count the blank lines it skips, so lines are counted here from byte offsets.
struct Source<'a> {
    path: &'a Path,
    text: &'a [u8],
    newlines: Vec<u64>,
}

impl<'a> Source<'a> {
    fn new(path: &'a Path, text: &'a [u8]) -> Self {
        let newlines = (0u64..)
            .zip(text)
            .filter_map(|(i, b)| (*b == b'\n').then_some(i))
            .collect();
        Self {
            path,
            text,
            newlines,
        }
    }

    /// The 1-based line a record or error starts on. csv positions a record where the one
    /// before it ended, so the blank lines in between are skipped first.
    fn line(&self, position: Option<&csv::Position>) -> u64 {
        let start = position.map_or(0, csv::Position::byte);
        let blank = self
            .text
            .iter()
            .skip(usize::try_from(start).unwrap_or(usize::MAX))
            .take_while(|b| matches!(b, b'\n' | b'\r'))
            .count();
        let byte = start.saturating_add(u64::try_from(blank).unwrap_or(0));
        let before = self.newlines.partition_point(|&n| n < byte);
        u64::try_from(before).unwrap_or(u64::MAX).saturating_add(1)
    }

    /// One customer row.
    fn row(&self, record: &csv::StringRecord, region: &str) -> Result<ImportRow, CsvError> {
        let line = self.line(record.position());
        let (Some(personal_number), Some(name), Some(numbers), 3) =
            (record.get(0), record.get(1), record.get(2), record.len())
        else {
            let problem = format!(
                "expected 3 fields (personal_number,name,numbers), found {}",
                record.len()
            );
            return Err(self.error(line, problem));
        };
        let numbers = numbers.split(';').map(str::trim).filter(|n| !n.is_empty());
        let customer =
            parse_customer(personal_number, name, numbers, region).map_err(|reason| {
                CsvError::Field {
                    path: self.path.to_owned(),
                    line,
                    reason,
                }
            })?;
        Ok(ImportRow { line, customer })
    }

    /// A CSV syntax or encoding error at its line (the message never quotes the data).
    fn malformed(&self, e: &csv::Error) -> CsvError {
        let problem = match e.kind() {
            csv::ErrorKind::Utf8 { .. } => "not UTF-8 text".to_owned(),
            csv::ErrorKind::Io(io) => format!("cannot read: {io}"),
            _ => "not valid CSV".to_owned(),
        };
        self.error(self.line(e.position()), problem)
    }

    fn error(&self, line: u64, problem: String) -> CsvError {
        CsvError::Malformed {
            path: self.path.to_owned(),
            line,
            problem,
        }
    }

    fn header(&self) -> CsvError {
        CsvError::Header {
            path: self.path.to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(text: &str) -> Result<Vec<ImportRow>, String> {
        parse(Path::new("c.csv"), text.as_bytes(), "SE").map_err(|e| e.to_string())
    }

    #[test]
    fn rows_carry_their_line_and_normalised_numbers() {
        let text = "\u{feff}Personal_Number,Name,Numbers\n\
                    191212121212,Tolvan Tolvansson,070-123 45 67; +46812345678\n\
                    \n\
                    \"19800101-9804\",\"Andersson, Alice\",0709876543\n";
        let rows = parsed(text).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].line, 2);
        assert_eq!(rows[0].customer.numbers.len(), 2);
        assert_eq!(rows[1].line, 4);
        assert_eq!(rows[1].customer.name.as_str(), "Andersson, Alice");
        assert_eq!(rows[1].customer.numbers[0].as_str(), "+46709876543");
    }

    #[test]
    fn errors_name_the_file_line_and_field_only() {
        let header = "personal_number,name,numbers\n";
        let e = parsed("191212121212,T,+46701234567\n").unwrap_err();
        assert!(
            e.starts_with("c.csv: line 1: the first line must be the header"),
            "{e}"
        );
        let e = parsed(&format!(
            "{header}191212121212,T,+46701234567\n191212121213,U,+46701111111\n"
        ))
        .unwrap_err();
        assert!(e.starts_with("c.csv: line 3: personal_number:"), "{e}");
        assert!(!e.contains("19121212"), "{e}");
        let e = parsed(&format!("{header}191212121212,T\n")).unwrap_err();
        assert_eq!(
            e,
            "c.csv: line 2: expected 3 fields (personal_number,name,numbers), found 2"
        );
        let e = parsed(&format!("{header}191212121212,T,\n")).unwrap_err();
        assert!(e.starts_with("c.csv: line 2: numbers: at least one"), "{e}");
        let e = parsed(&format!("{header}\n\n191212121212,T,+4670\n")).unwrap_err();
        assert!(e.starts_with("c.csv: line 4: numbers: number 1"), "{e}");
        let latin1 = [header.as_bytes(), b"191212121212,J\xf6rgen,+46701234567\n"].concat();
        let e = parse(Path::new("c.csv"), &latin1, "SE")
            .unwrap_err()
            .to_string();
        assert_eq!(e, "c.csv: line 2: not UTF-8 text");
        let e = parsed(header).unwrap_err();
        assert!(e.contains("no customers"), "{e}");
    }
}
