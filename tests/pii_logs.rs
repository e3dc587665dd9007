//! Personal identity numbers, names and keypad digits never reach the log: a set of calls that
//! carries each of them through idgate (directory push, keypad entry by SIP INFO, an agent's
//! "verify again" with a typed number, the customers API), with JSON logs at debug level, and
//! then every log line is checked.

mod support;

use serde_json::Value;
use support::{Idgate, Sipp, assert_ok, eventually, header};

const API_TOKEN: &str = "pii-api-token-0123456789";
const AGENT_TOKEN: &str = "pii-agent-token-0123456789";

/// The directory's customer (its name comes from the simulator).
const DIRECTORY_PERSON: &str = "194910079864";
/// Typed on the keypad by `caller_keypad.xml` as `8112289874#`.
const KEYPAD_PERSON: &str = "198112289874";
/// Typed by the agent for "verify again".
const AGENT_TYPED: &str = "197705231236";
/// Added over the customers API.
const API_PERSON: &str = "191212121212";
const NAME: &str = "Hemlig Hemligsson";

/// Every written form of a personal identity number.
fn forms(digits: &str) -> Vec<String> {
    let (date, last) = digits.split_at(8);
    vec![
        digits.to_owned(),
        digits[2..].to_owned(),
        format!("{date}-{last}"),
        format!("{}-{last}", &date[2..]),
    ]
}

#[test]
fn no_personal_data_in_any_log_line() {
    let queue_dir = tempfile::tempdir().expect("dir");
    let mut queue = Sipp::start(queue_dir.path(), "queue.xml", &[], 2);
    let routes = format!(
        "[[route]]\nname = \"support\"\nmatch = \"5000\"\nphone_push = false\n\
         target = \"sip:queue@127.0.0.1:{port}\"\n\
         [[route]]\nname = \"keypad\"\nmatch = \"5001\"\ndirectory = false\nphone_push = false\n\
         target = \"sip:queue@127.0.0.1:{port}\"\n",
        port = queue.port
    );
    let simulator =
        format!("default = \"approve\"\ndelay_ms = 300\nhint_ms = 100\nperson_name = \"{NAME}\"\n");
    let sections = format!(
        "[identity]\ninclude_name = true\nsubject = \"full\"\n\
         [agent]\ntoken = \"{AGENT_TOKEN}\"\n[log]\nformat = \"json\"\n"
    );
    let http = format!("api_token = \"{API_TOKEN}\"\n");
    let idgate = Idgate::start_with_http(&routes, &simulator, &http, &sections);

    // The customers API takes a personal number in its body.
    let body = format!(
        r#"{{"personal_number":"{API_PERSON}","name":"{NAME}","numbers":["+46701111111"]}}"#
    );
    let auth = format!("Authorization: Bearer {API_TOKEN}");
    let json = "Content-Type: application/json";
    let (status, answer) = idgate.http("POST", "/v1/customers", &[&auth, json], &body);
    assert_eq!(status, 201, "{answer}");
    let body = format!(
        r#"{{"personal_number":"{DIRECTORY_PERSON}","name":"{NAME}","numbers":["+46702222222"]}}"#
    );
    assert_eq!(
        idgate
            .http("POST", "/v1/customers", &[&auth, json], &body)
            .0,
        201
    );

    // 1. A directory push: the person and their name pass through the provider and headers.
    let target = idgate.sip_addr();
    let args = [
        "-set",
        "caller",
        "+46702222222",
        "-s",
        "5000",
        "-d",
        "6000",
        &target,
    ];
    let mut directory_call = Sipp::start(idgate.dir.path(), "caller.xml", &args, 1);
    eventually("the directory call reaches the agent", &idgate, || {
        queue.received("INVITE").is_some()
    });
    let invite = queue.received("INVITE").expect("INVITE");
    assert_eq!(
        header(&invite, "X-Identity-Subject"),
        Some(DIRECTORY_PERSON)
    );
    let call_id = header(&invite, "X-Identity-Call")
        .expect("call id")
        .to_owned();

    // 2. "Verify again" with a number the agent typed, once the call is bridged (the queue
    // has its INVITE before idgate has the queue's 200).
    let agent = format!("Authorization: Bearer {AGENT_TOKEN}");
    eventually("the call is bridged to the agent", &idgate, || {
        let (_, view) = idgate.http("GET", &format!("/agent/api/calls/{call_id}"), &[&agent], "");
        serde_json::from_str::<Value>(&view).is_ok_and(|v| v["can_reverify"] == true)
    });
    let path = format!("/agent/api/calls/{call_id}/reverify");
    let body = format!(r#"{{"personal_number":"{AGENT_TYPED}"}}"#);
    let (status, answer) = idgate.http("POST", &path, &[&agent, json], &body);
    assert_eq!(status, 202, "{answer}");
    eventually("the re-verification completes", &idgate, || {
        let (_, view) = idgate.http("GET", &format!("/agent/api/calls/{call_id}"), &[&agent], "");
        serde_json::from_str::<Value>(&view).is_ok_and(|v| v["reverify"]["status"] == "verified")
    });

    // 3. Keypad entry by SIP INFO.
    let args = [
        "-set",
        "caller",
        "anonymous",
        "-s",
        "5001",
        "-d",
        "3000",
        &target,
    ];
    let mut keypad_call = Sipp::start(idgate.dir.path(), "caller_keypad.xml", &args, 1);
    assert_ok("keypad caller", &mut keypad_call, &idgate);
    assert_ok("directory caller", &mut directory_call, &idgate);

    // 4. A keypad entry that fails validation, typed digits and all.
    let args = [
        "-set",
        "caller",
        "anonymous",
        "-s",
        "5001",
        "-d",
        "3000",
        &target,
    ];
    let mut invalid = Sipp::start(idgate.dir.path(), "caller_keypad_invalid.xml", &args, 1);
    assert_ok("invalid keypad caller", &mut invalid, &idgate);
    assert_ok("queue", &mut queue, &idgate);

    let log = idgate.log();
    let lines: Vec<&str> = log.lines().collect();
    assert!(
        lines.len() > 50,
        "debug logs of four calls: {} lines",
        lines.len()
    );
    for line in &lines {
        let parsed: Result<Value, _> = serde_json::from_str(line);
        assert!(parsed.is_ok(), "not a JSON log line: {line}");
    }
    let mut secrets: Vec<String> = [DIRECTORY_PERSON, KEYPAD_PERSON, AGENT_TYPED, API_PERSON]
        .iter()
        .flat_map(|d| forms(d))
        .collect();
    secrets.extend([NAME.to_owned(), "Hemligsson".to_owned()]);
    for secret in &secrets {
        let leaks: Vec<&&str> = lines
            .iter()
            .filter(|l| l.contains(secret.as_str()))
            .collect();
        assert!(leaks.is_empty(), "{secret:?} in the log:\n{leaks:#?}");
    }
    // The checks are not vacuous: the calls happened and were logged.
    for needle in ["verdict", "verify again", "call ended"] {
        assert!(log.contains(needle), "{needle:?} not logged");
    }
}
