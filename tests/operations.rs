//! Operations end to end: readiness, metrics, the calls API and its OpenAPI document, draining
//! (API and SIGTERM) and overload, each against a real idgate process with SIPp peers.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::{Idgate, Sipp, assert_ok, eventually, header};

const API_TOKEN: &str = "ops-token-0123456789";

const ROUTE: &str = r#"
[[route]]
name = "support"
match = "*"
target = "sip:queue@127.0.0.1:QUEUE_PORT"
"#;

const FAST_APPROVE: &str = "default = \"approve\"\ndelay_ms = 200\nhint_ms = 50\n";

fn bearer() -> String {
    format!("Authorization: Bearer {API_TOKEN}")
}

fn start(queue_port: u16, sections: &str) -> Idgate {
    let route = ROUTE.replace("QUEUE_PORT", &queue_port.to_string());
    let http = format!("api_token = \"{API_TOKEN}\"\n");
    Idgate::start_with_http(&route, FAST_APPROVE, &http, sections)
}

fn caller(idgate: &Idgate, number: &str, hold_ms: u32) -> Sipp {
    let target = idgate.sip_addr();
    let hold = hold_ms.to_string();
    let args = ["-set", "caller", number, "-s", "5000", "-d", &hold, &target];
    Sipp::start(idgate.dir.path(), "caller.xml", &args, 1)
}

fn get_json(idgate: &Idgate, path: &str) -> (u16, Value) {
    let (status, body) = idgate.http("GET", path, &[&bearer()], "");
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

#[test]
fn readiness_metrics_and_the_calls_api() {
    let queue_dir = tempfile::tempdir().expect("dir");
    let mut queue = Sipp::start(queue_dir.path(), "queue.xml", &[], 1);
    let idgate = start(queue.port, "");
    let (status, body) = idgate.http("GET", "/readyz", &[], "");
    assert_eq!((status, body.contains("\"ready\"")), (200, true), "{body}");

    let mut call = caller(&idgate, "+46701234567", 1500);
    assert_ok("caller", &mut call, &idgate);
    assert_ok("queue", &mut queue, &idgate);
    let invite = queue.received("INVITE").expect("the queue got an INVITE");
    let id = header(&invite, "X-Identity-Call")
        .expect("call id")
        .to_owned();

    // The calls API: the stored call, filters, the per-call view.
    eventually("the call is stored as ended", &idgate, || {
        get_json(&idgate, &format!("/v1/calls/{id}")).1["outcome"] == "connected"
    });
    let (status, list) = get_json(&idgate, "/v1/calls");
    assert_eq!(status, 200);
    let calls = list["calls"].as_array().expect("calls");
    assert_eq!(calls.len(), 1, "{list}");
    assert_eq!(calls[0]["id"], id.as_str());
    assert_eq!(calls[0]["status"], "verified");
    assert_eq!(calls[0]["caller"], "+46701234567");
    assert!(
        calls[0].get("subject").is_none(),
        "the stored call never holds the person"
    );
    let (_, none) = get_json(&idgate, "/v1/calls?status=unverified");
    assert_eq!(none["calls"], Value::Array(vec![]));
    let (_, mine) = get_json(
        &idgate,
        "/v1/calls?caller=%2B46701234567&from=2020-01-01T00:00:00Z",
    );
    assert_eq!(mine["calls"].as_array().map(Vec::len), Some(1), "{mine}");
    let (status, body) = idgate.http("GET", "/v1/calls?from=yesterday", &[&bearer()], "");
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("from"),
        "the error names the parameter: {body}"
    );
    let (_, one) = get_json(&idgate, &format!("/v1/calls/{id}"));
    assert_eq!(one["reverifications"], Value::Array(vec![]));
    // The verification's steps, in order: the simulator's order started, then completed.
    let steps: Vec<&str> = one["verification_events"]
        .as_array()
        .expect("verification events")
        .iter()
        .filter_map(|e| e["kind"].as_str())
        .collect();
    assert_eq!(steps.first(), Some(&"started"), "{one}");
    assert_eq!(steps.last(), Some(&"completed"), "{one}");
    assert_eq!(
        one["verification_events"][0]["method"], "simulator",
        "{one}"
    );
    // tests/sipp/caller.xml sends identity headers of its own: recorded by name, not value.
    let security = &one["security_events"];
    assert_eq!(security.as_array().map(Vec::len), Some(1), "{one}");
    assert_eq!(security[0]["kind"], "spoofed-headers");
    assert_eq!(
        security[0]["detail"], "X-Identity-Status, X-Identity-Token",
        "{one}"
    );
    assert_eq!(one["live"]["phase"], "ended");
    for path in ["/v1/calls", "/v1/events", &format!("/v1/calls/{id}")] {
        assert_eq!(idgate.http("GET", path, &[], "").0, 401, "{path}");
    }
    assert_eq!(idgate.http("POST", "/v1/drain", &[], "").0, 401);

    // Metrics: the call, by verdict and outcome, and the media path.
    let (status, metrics) = idgate.http("GET", "/metrics", &[], "");
    assert_eq!(status, 200);
    for line in [
        r#"idgate_calls_decided_total{status="verified",reason="none",method="simulator"} 1"#,
        r#"idgate_calls_ended_total{outcome="connected"} 1"#,
        "idgate_call_setup_seconds_count 1",
        "idgate_handoff_seconds_count 1",
        r#"idgate_provider_latency_seconds_count{method="simulator",result="completed"} 1"#,
        "idgate_spoofing_attempts_total 1",
        "idgate_active_calls 0",
        "idgate_draining 0",
        "idgate_db_records_lost_total 0",
        "idgate_db_writes_failed_total 0",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "missing {line:?} in\n{metrics}"
        );
    }
    let sent: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("idgate_rtp_packets_sent_total "))
        .and_then(|v| v.parse().ok())
        .expect("a packet counter");
    assert!(sent > 0, "the greeting was sent: {sent}");
    // The call's rows went through the journal (the call, its answer, verdict, end...).
    let written: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("idgate_db_writes_total "))
        .and_then(|v| v.parse().ok())
        .expect("a database write counter");
    assert!(written >= 4, "the call's rows were written: {written}");

    // The OpenAPI document describes what was just used.
    let (status, doc) = idgate.http("GET", "/v1/openapi.json", &[], "");
    assert_eq!(status, 200);
    let doc: Value = serde_json::from_str(&doc).expect("OpenAPI JSON");
    assert_eq!(doc["openapi"], "3.1.0");
    for (path, method) in [
        ("/readyz", "get"),
        ("/metrics", "get"),
        ("/v1/calls", "get"),
        ("/v1/calls/{id}", "get"),
        ("/v1/events", "get"),
        ("/v1/drain", "post"),
    ] {
        assert!(
            doc["paths"][path][method].is_object(),
            "{method} {path} undocumented"
        );
    }
}

/// `POST /v1/drain`: OPTIONS and new INVITEs get 503, the call in progress goes on to the end,
/// then the process exits by itself.
#[test]
fn drain_over_the_api_lets_calls_finish_then_exits() {
    let queue_dir = tempfile::tempdir().expect("dir");
    let mut queue = Sipp::start(queue_dir.path(), "queue.xml", &[], 1);
    let mut idgate = start(queue.port, "[admission]\nretry_after_secs = 7\n");
    let mut talking = caller(&idgate, "+46701234567", 4000);
    eventually("the first call reaches the queue", &idgate, || {
        queue.received("INVITE").is_some()
    });

    let (status, body) = idgate.http("POST", "/v1/drain", &[&bearer()], "");
    assert_eq!(status, 202, "{body}");
    let (status, body) = idgate.http("GET", "/readyz", &[], "");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("draining"), "{body}");
    let options = idgate.options();
    assert!(options.starts_with("SIP/2.0 503"), "{options}");
    assert_eq!(header(&options, "Retry-After"), Some("7"));

    let mut refused = caller(&idgate, "+46709999999", 500);
    let status = refused.wait(Duration::from_secs(20));
    assert!(!status.success(), "a new call is refused while draining");
    let trace = refused.trace();
    assert!(trace.contains("SIP/2.0 503"), "{trace}");
    assert!(trace.contains("Retry-After: 7"), "{trace}");

    assert_ok("the call in progress", &mut talking, &idgate);
    assert_ok("queue", &mut queue, &idgate);
    let exit = idgate.wait_exit(Duration::from_secs(15));
    assert!(
        exit.is_some_and(|s| s.success()),
        "idgate exits once the last call ended: {exit:?}\n{}",
        idgate.log()
    );
    assert!(idgate.log().contains("drained"), "{}", idgate.log());
}

/// SIGTERM drains like the API; a second SIGTERM exits at once.
#[test]
fn sigterm_drains_and_a_second_signal_exits_at_once() {
    let queue_dir = tempfile::tempdir().expect("dir");
    let queue = Sipp::start(queue_dir.path(), "queue.xml", &[], 1);
    let mut idgate = start(queue.port, "");
    let _talking = caller(&idgate, "+46701234567", 30_000);
    eventually("the call reaches the queue", &idgate, || {
        queue.received("INVITE").is_some()
    });
    idgate.signal("TERM");
    eventually("draining", &idgate, || {
        idgate.http("GET", "/readyz", &[], "").0 == 503
    });
    assert!(
        idgate.wait_exit(Duration::from_millis(500)).is_none(),
        "a call is in progress: idgate waits"
    );
    idgate.signal("TERM");
    let exit = idgate.wait_exit(Duration::from_secs(10));
    assert!(
        exit.is_some(),
        "the second signal ends it\n{}",
        idgate.log()
    );
    assert!(idgate.log().contains("second signal"), "{}", idgate.log());
}

/// At `max_calls`, a new INVITE gets 503 before anything is answered and `/readyz` says
/// overloaded; the call in progress is not touched, and the next call after it is taken.
#[test]
fn overload_refuses_new_calls_only() {
    let queue_dir = tempfile::tempdir().expect("dir");
    let mut queue = Sipp::start(queue_dir.path(), "queue.xml", &[], 2);
    let idgate = start(queue.port, "[admission]\nmax_calls = 1\n");
    let mut first = caller(&idgate, "+46701234567", 3000);
    eventually("the first call reaches the queue", &idgate, || {
        queue.received("INVITE").is_some()
    });
    let mut second = caller(&idgate, "+46701234568", 500);
    assert!(!second.wait(Duration::from_secs(20)).success());
    let trace = second.trace();
    assert!(trace.contains("SIP/2.0 503"), "{trace}");
    assert!(trace.contains("Retry-After: 5"), "{trace}");
    assert!(
        !trace.contains("SIP/2.0 100"),
        "refused before anything else: {trace}"
    );
    let (status, body) = idgate.http("GET", "/readyz", &[], "");
    assert_eq!((status, body.contains("overloaded")), (503, true), "{body}");

    assert_ok("the call in progress", &mut first, &idgate);
    eventually("the first call is over", &idgate, || {
        idgate.http("GET", "/readyz", &[], "").0 == 200
    });
    let mut third = caller(&idgate, "+46701234569", 500);
    assert_ok("a call after the load went down", &mut third, &idgate);
    assert_ok("queue", &mut queue, &idgate);
    let (_, metrics) = idgate.http("GET", "/metrics", &[], "");
    assert!(
        metrics
            .lines()
            .any(|l| l == r#"idgate_calls_rejected_total{status="503"} 1"#),
        "{metrics}"
    );
}

/// Every operation in the OpenAPI document exists and answers with a status the document lists
/// for it (the event streams, which never end, are only checked to exist by the other tests).
#[test]
fn every_documented_operation_answers_as_documented() {
    let sections = format!("[agent]\ntoken = \"{API_TOKEN}\"\n");
    let idgate = start(9, &sections);
    let (_, doc) = idgate.http("GET", "/v1/openapi.json", &[], "");
    let doc: Value = serde_json::from_str(&doc).expect("OpenAPI JSON");
    let mut operations: Vec<(String, String, Vec<String>)> = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("path item") {
            let streams = op["responses"]["200"]["content"]
                .as_object()
                .is_some_and(|c| c.contains_key("text/event-stream"));
            if streams {
                continue;
            }
            let codes = op["responses"]
                .as_object()
                .expect("responses")
                .keys()
                .cloned()
                .collect();
            operations.push((path.clone(), method.to_uppercase(), codes));
        }
    }
    // Draining last: it changes what the others answer.
    operations.sort_by_key(|(path, _, _)| path == "/v1/drain");
    assert!(operations.len() >= 15, "{operations:?}");
    let id = "0b6f2a4e-6a36-4c3e-9a2b-3d8c1f0e5a77";
    for (path, method, codes) in &operations {
        let uri = path.replace("{id}", id);
        let json = "Content-Type: application/json";
        let (status, body) = idgate.http(method, &uri, &[&bearer(), json], "{}");
        assert!(
            codes.contains(&status.to_string()),
            "{method} {path} answered {status}, documented {codes:?}: {body}"
        );
    }
}
