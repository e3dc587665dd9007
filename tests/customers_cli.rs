//! `idgate customers ...` as an operator runs it: the real binary against a temporary SQLite
//! file named by `--config`. Personal identity numbers never appear in full in the output.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const TOLVAN: &str = "191212121212";
const ALICE: &str = "198001019804";
/// Every command ends well within this.
const BOUND: Duration = Duration::from_secs(30);

/// A temporary directory with a config pointing at a database file in it.
struct Setup {
    dir: tempfile::TempDir,
    config: PathBuf,
}

impl Setup {
    fn new() -> Setup {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = dir.path().join("idgate.db");
        let config = dir.path().join("idgate.toml");
        let text = format!("[store]\nurl = \"sqlite://{}\"\n", db.display());
        std::fs::write(&config, text).expect("write config");
        Setup { dir, config }
    }

    /// Runs `idgate customers <args> --config <config>`.
    fn run(&self, args: &[&str]) -> Run {
        let mut command = Command::new(env!("CARGO_BIN_EXE_idgate"));
        command
            .arg("customers")
            .args(args)
            .arg("--config")
            .arg(&self.config);
        run_bounded(command)
    }

    fn csv(&self, name: &str, text: &str) -> String {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).expect("write csv");
        path.to_string_lossy().into_owned()
    }

    fn list(&self) -> String {
        let list = self.run(&["list"]);
        assert_eq!(list.code, Some(0), "{}", list.stderr);
        list.stdout
    }
}

/// What a run printed and how it ended.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs `command`, killing it if it takes longer than [`BOUND`].
fn run_bounded(mut command: Command) -> Run {
    let mut child = command
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run idgate");
    let started = Instant::now();
    while child.try_wait().expect("wait").is_none() {
        if started.elapsed() > BOUND {
            let _ = child.kill();
            panic!("idgate customers took longer than {BOUND:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let Output {
        status,
        stdout,
        stderr,
    } = child.wait_with_output().expect("output");
    let run = Run {
        code: status.code(),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    };
    for text in [&run.stdout, &run.stderr] {
        assert!(
            !text.contains(TOLVAN) && !text.contains(ALICE),
            "a full personal number: {text}"
        );
    }
    run
}

fn add_tolvan(setup: &Setup) -> Run {
    setup.run(&[
        "add",
        "--personal-number",
        TOLVAN,
        "--name",
        "Tolvan Tolvansson",
        "--number",
        "070-123 45 67",
        "--number",
        "+46812345678",
    ])
}

#[test]
fn add_list_and_remove_by_personal_number_and_by_id() {
    let setup = Setup::new();
    let added = add_tolvan(&setup);
    assert_eq!(added.code, Some(0), "{}", added.stderr);
    assert!(added.stdout.contains("19121212-****"), "{}", added.stdout);
    let list = setup.list();
    assert!(list.contains("19121212-****"), "{list}");
    assert!(list.contains("Tolvan Tolvansson"), "{list}");
    assert!(list.contains("+46701234567, +46812345678"), "{list}");

    let again = add_tolvan(&setup);
    assert_eq!(again.code, Some(1));
    assert!(
        again.stderr.contains("already registered"),
        "{}",
        again.stderr
    );

    let removed = setup.run(&["remove", "19121212-1212"]);
    assert_eq!(removed.code, Some(0), "{}", removed.stderr);
    assert!(
        removed.stdout.contains("removed customer 19121212-****"),
        "{}",
        removed.stdout
    );
    assert!(setup.list().contains("no customers"));
    let missing = setup.run(&["remove", TOLVAN]);
    assert_eq!(missing.code, Some(1));
    assert!(
        missing.stderr.contains("no customer 19121212-****"),
        "{}",
        missing.stderr
    );

    add_tolvan(&setup);
    let list = setup.list();
    let id = list
        .lines()
        .nth(1)
        .and_then(|l| l.split_whitespace().next())
        .expect("an id");
    let removed = setup.run(&["remove", id]);
    assert_eq!(removed.code, Some(0), "{}", removed.stderr);
    assert!(setup.list().contains("no customers"));
}

#[test]
fn bad_flags_are_named_and_nothing_is_added() {
    let setup = Setup::new();
    let bad_pnr = setup.run(&[
        "add",
        "--personal-number",
        "191212121213",
        "--name",
        "T",
        "--number",
        "+46701234567",
    ]);
    assert_eq!(bad_pnr.code, Some(1));
    assert!(
        bad_pnr.stderr.contains("personal_number: the check digit"),
        "{}",
        bad_pnr.stderr
    );
    let bad_number = setup.run(&[
        "add",
        "--personal-number",
        TOLVAN,
        "--name",
        "T",
        "--number",
        "+46701234567",
        "--number",
        "12",
    ]);
    assert_eq!(bad_number.code, Some(1));
    assert!(
        bad_number.stderr.contains("numbers: number 2"),
        "{}",
        bad_number.stderr
    );
    assert!(setup.list().contains("no customers"));
}

#[test]
fn a_good_csv_imports_and_importing_it_again_changes_nothing() {
    let setup = Setup::new();
    let file = setup.csv(
        "customers.csv",
        "personal_number,name,numbers\n\
         191212121212,Tolvan Tolvansson,070-123 45 67;+46812345678\n\
         19800101-9804,\"Andersson, Alice\",+46709876543\n",
    );
    let first = setup.run(&["import", &file]);
    assert_eq!(first.code, Some(0), "{}", first.stderr);
    assert!(
        first.stdout.contains("2 customer(s) added"),
        "{}",
        first.stdout
    );
    let listed = setup.list();
    assert!(
        listed.contains("19800101-****") && listed.contains("Andersson, Alice"),
        "{listed}"
    );
    let second = setup.run(&["import", &file]);
    assert_eq!(second.code, Some(0), "{}", second.stderr);
    assert!(
        second
            .stdout
            .contains("0 customer(s) added, 2 updated, 0 number(s) added")
    );
    assert_eq!(setup.list(), listed);
}

#[test]
fn a_bad_line_fails_the_import_names_the_line_and_imports_nothing() {
    let setup = Setup::new();
    let bad_field = setup.csv(
        "bad.csv",
        "personal_number,name,numbers\n\
         191212121212,Tolvan,+46701234567\n\
         198001019804,Alice,not-a-number\n",
    );
    let run = setup.run(&["import", &bad_field]);
    assert_eq!(run.code, Some(1));
    assert!(
        run.stderr.contains("bad.csv: line 3: numbers: number 1"),
        "{}",
        run.stderr
    );
    assert!(setup.list().contains("no customers"));

    let taken = setup.csv(
        "taken.csv",
        "personal_number,name,numbers\n\
         191212121212,Tolvan,+46701234567\n\
         198001019804,Alice,+46709876543;+46701234567\n",
    );
    let run = setup.run(&["import", &taken]);
    assert_eq!(run.code, Some(1));
    assert!(
        run.stderr
            .contains("taken.csv: line 3: phone number 2 is already registered"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("nothing was imported"),
        "{}",
        run.stderr
    );
    assert!(setup.list().contains("no customers"));

    let no_header = setup.csv("plain.csv", "191212121212,Tolvan,+46701234567\n");
    let run = setup.run(&["import", &no_header]);
    assert_eq!(run.code, Some(1));
    assert!(
        run.stderr
            .contains("line 1: the first line must be the header"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_missing_file_or_config_is_named() {
    let setup = Setup::new();
    let run = setup.run(&["import", "/nonexistent/customers.csv"]);
    assert_eq!(run.code, Some(1));
    assert!(
        run.stderr.contains("/nonexistent/customers.csv"),
        "{}",
        run.stderr
    );
    let mut command = Command::new(env!("CARGO_BIN_EXE_idgate"));
    let bad = Path::new("/nonexistent/idgate.toml");
    command.args(["customers", "list", "--config"]).arg(bad);
    let run = run_bounded(command);
    assert_eq!(run.code, Some(1));
    assert!(
        run.stderr.contains("/nonexistent/idgate.toml"),
        "{}",
        run.stderr
    );
}
