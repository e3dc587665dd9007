//! `idgate privacy ...` as an operator runs it: the real binary against a temporary SQLite file
//! named by `--config`, with calls and pushes seeded through the library. Only `export` prints
//! the personal number (it is the person's own data); nothing else does, and no error.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime};

use idgate::config::Transfer;
use idgate::identity::{CallerId, E164, Method, PersonalNumber};
use idgate::store::{NewCall, PushDecision, PushLimits, PushTarget, Store};
use uuid::Uuid;

const TOLVAN: &str = "191212121212";
const TOLVAN_MOBILE: &str = "+46701234567";
/// Every command ends well within this.
const BOUND: Duration = Duration::from_secs(30);
const DAY: Duration = Duration::from_secs(86_400);

/// A temporary directory with a config pointing at a database file in it.
struct Setup {
    _dir: tempfile::TempDir,
    config: PathBuf,
    url: String,
}

impl Setup {
    fn new(retention_days: u32) -> Setup {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("idgate.db").display());
        let config = dir.path().join("idgate.toml");
        let text = format!("[store]\nurl = \"{url}\"\nretention_days = {retention_days}\n");
        std::fs::write(&config, text).expect("write config");
        Setup {
            _dir: dir,
            config,
            url,
        }
    }

    /// Runs `idgate <args> --config <config>`, with `stdin` as its standard input.
    fn run(&self, args: &[&str], stdin: &str) -> Run {
        let mut command = Command::new(env!("CARGO_BIN_EXE_idgate"));
        command.args(args).arg("--config").arg(&self.config);
        run_bounded(command, stdin)
    }

    /// Works on the database through the library (the binary is not running meanwhile).
    fn with_store<T>(&self, work: impl AsyncFnOnce(&Store) -> T) -> T {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let store = Store::connect(&self.url).await.expect("store");
            let result = work(&store).await;
            store.close().await;
            result
        })
    }

    /// A call from Tolvan's mobile `age` ago, pushed to Tolvan, with evidence.
    fn seed_call(&self, age: Duration) -> Uuid {
        self.with_store(async |store| {
            let at = SystemTime::now() - age;
            let id = Uuid::new_v4();
            let caller = E164::parse(TOLVAN_MOBILE, "SE").expect("number");
            let call = NewCall {
                id,
                sip_call_id: format!("{id}@pbx.example.com"),
                caller: CallerId::Number(caller.clone()),
                called: "5000".to_owned(),
                route: Some("support".to_owned()),
                transfer_mode: Some(Transfer::B2bua),
                started_at: at,
            };
            store.insert_call(&call).await.expect("call");
            let person = PersonalNumber::parse(TOLVAN).expect("pnr");
            let target = PushTarget {
                caller: Some(&caller),
                person: Some(&person),
            };
            let limits = PushLimits {
                per_caller: 100,
                per_person: 100,
                window: Duration::from_secs(600),
                cooldown: Duration::from_secs(300),
                order_lifetime: Duration::from_secs(180),
            };
            let decision = store
                .begin_push(id, target, &limits, at)
                .await
                .expect("push");
            let PushDecision::Allowed(attempt) = decision else {
                panic!("push refused");
            };
            store.end_push(attempt, "completed", at).await.expect("end");
            let evidence = r#"{"signature":"PHNpZz4="}"#;
            store
                .record_evidence(id, Method::Bankid, evidence, at)
                .await
                .expect("evidence");
            id
        })
    }

    fn caller_of(&self, call: Uuid) -> String {
        self.with_store(async |store| {
            store
                .get_call(call)
                .await
                .expect("read")
                .expect("row")
                .caller
        })
    }

    /// The recorded admin actions as `actor action: target`.
    fn admin_actions(&self) -> Vec<String> {
        self.with_store(async |store| {
            let actions = store
                .admin_actions_since(SystemTime::UNIX_EPOCH)
                .await
                .expect("read");
            actions
                .iter()
                .map(|a| format!("{} {}: {}", a.actor, a.action, a.target))
                .collect()
        })
    }
}

/// What a run printed and how it ended.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs `command` with `stdin`, killing it if it takes longer than [`BOUND`]. Standard error
/// never holds the full personal number.
fn run_bounded(mut command: Command, stdin: &str) -> Run {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run idgate");
    let mut input = child.stdin.take().expect("stdin");
    input.write_all(stdin.as_bytes()).expect("write stdin");
    drop(input);
    let started = Instant::now();
    while child.try_wait().expect("wait").is_none() {
        if started.elapsed() > BOUND {
            let _ = child.kill();
            panic!("idgate took longer than {BOUND:?}");
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
    assert!(
        !run.stderr.contains(TOLVAN),
        "a full personal number: {}",
        run.stderr
    );
    run
}

fn add_tolvan(setup: &Setup) {
    let added = setup.run(
        &[
            "customers",
            "add",
            "--personal-number",
            TOLVAN,
            "--name",
            "Tolvan Tolvansson",
            "--number",
            TOLVAN_MOBILE,
        ],
        "",
    );
    assert_eq!(added.code, Some(0), "{}", added.stderr);
}

#[test]
fn export_then_erase_with_confirmation_and_an_audit_trail() {
    let setup = Setup::new(90);
    add_tolvan(&setup);
    let call = setup.seed_call(DAY);

    // From stdin, so the number stays out of the process list.
    let export = setup.run(&["privacy", "export", "-"], &format!("{TOLVAN}\n"));
    assert_eq!(export.code, Some(0), "{}", export.stderr);
    let json: serde_json::Value = serde_json::from_str(&export.stdout).expect("JSON");
    assert_eq!(json["customer"]["personal_number"], TOLVAN);
    assert_eq!(json["customer"]["numbers"][0], TOLVAN_MOBILE);
    assert_eq!(json["push_attempts"][0]["matched_by"], "personal-number");
    assert_eq!(json["calls"][0]["id"], call.to_string());
    assert_eq!(json["calls"][0]["call"]["caller"], TOLVAN_MOBILE);
    assert_eq!(json["evidence"][0]["data"]["signature"], "PHNpZz4=");

    let unconfirmed = setup.run(&["privacy", "erase", "19121212-1212"], "");
    assert_eq!(unconfirmed.code, Some(1));
    assert!(
        unconfirmed.stdout.starts_with("would erase customer "),
        "{}",
        unconfirmed.stdout
    );
    assert!(
        unconfirmed.stdout.contains("1 call(s) redacted"),
        "{}",
        unconfirmed.stdout
    );
    assert!(
        unconfirmed.stderr.contains("run again with --yes"),
        "{}",
        unconfirmed.stderr
    );
    assert_eq!(
        setup.caller_of(call),
        TOLVAN_MOBILE,
        "nothing erased without --yes"
    );

    let erased = setup.run(&["privacy", "erase", TOLVAN, "--yes"], "");
    assert_eq!(erased.code, Some(0), "{}", erased.stderr);
    assert!(
        erased.stdout.starts_with("erased customer "),
        "{}",
        erased.stdout
    );
    assert!(!erased.stdout.contains(TOLVAN), "{}", erased.stdout);
    assert_eq!(setup.caller_of(call), "redacted");
    let list = setup.run(&["customers", "list"], "");
    assert!(list.stdout.contains("no customers"), "{}", list.stdout);
    let again = setup.run(&["privacy", "export", TOLVAN], "");
    let json: serde_json::Value = serde_json::from_str(&again.stdout).expect("JSON");
    assert!(json["customer"].is_null() && json["calls"] == serde_json::json!([]));

    let actions = setup.admin_actions();
    let summary: Vec<&str> = actions
        .iter()
        .map(|a| a.split(':').next().unwrap_or(""))
        .collect();
    assert_eq!(
        summary,
        [
            "cli customer-add",
            "cli privacy-export",
            "cli privacy-erase",
            "cli privacy-export"
        ]
    );
    for action in &actions {
        assert!(
            !action.contains(TOLVAN) && !action.contains("121212-"),
            "{action}"
        );
    }
}

#[test]
fn purge_removes_only_data_past_the_retention_period() {
    let setup = Setup::new(30);
    let old = setup.seed_call(40 * DAY);
    let recent = setup.seed_call(DAY);

    let dry = setup.run(&["privacy", "purge", "--dry-run"], "");
    assert_eq!(dry.code, Some(0), "{}", dry.stderr);
    assert!(
        dry.stdout.starts_with("would purge data before "),
        "{}",
        dry.stdout
    );
    assert!(
        dry.stdout
            .contains("1 call(s) redacted, 1 evidence record(s) deleted"),
        "{}",
        dry.stdout
    );
    assert!(dry.stdout.contains("nothing changed"), "{}", dry.stdout);
    assert_eq!(setup.caller_of(old), TOLVAN_MOBILE);

    let purged = setup.run(&["privacy", "purge"], "");
    assert_eq!(purged.code, Some(0), "{}", purged.stderr);
    assert!(
        purged.stdout.contains("1 call(s) redacted"),
        "{}",
        purged.stdout
    );
    assert_eq!(setup.caller_of(old), "redacted");
    assert_eq!(setup.caller_of(recent), TOLVAN_MOBILE);
    let actions = setup.admin_actions();
    assert_eq!(actions.len(), 1);
    assert!(
        actions[0].starts_with("cli privacy-purge: data before "),
        "{}",
        actions[0]
    );

    let forever = Setup::new(0);
    let kept = forever.seed_call(400 * DAY);
    let run = forever.run(&["privacy", "purge"], "");
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(run.stdout.contains("kept until erased"), "{}", run.stdout);
    assert_eq!(forever.caller_of(kept), TOLVAN_MOBILE);
}

#[test]
fn a_bad_personal_number_is_refused_without_echoing_it() {
    let setup = Setup::new(90);
    for args in [
        &["privacy", "export", "191212121213"][..],
        &["privacy", "erase", "191212121213", "--yes"][..],
    ] {
        let run = setup.run(args, "");
        assert_eq!(run.code, Some(1));
        assert!(
            run.stderr.contains("PERSONAL_NUMBER: the check digit"),
            "{}",
            run.stderr
        );
        assert!(
            !run.stderr.contains("121212") && run.stdout.is_empty(),
            "{}",
            run.stderr
        );
    }
    let run = setup.run(&["privacy", "export", "-"], "not a number\n");
    assert_eq!(run.code, Some(1));
    assert!(run.stderr.contains("PERSONAL_NUMBER: "), "{}", run.stderr);
    assert!(setup.admin_actions().is_empty());
}
