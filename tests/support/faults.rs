//! Shared setup of the fault tests (`tests/faults_*.rs`): idgate with the management API token,
//! SIPp callers, the stored call and its verification events, the verdicts the queue got.

use serde_json::Value;

use super::{Idgate, Sipp, eventually, header};

/// The simulator answering fast, so a verified call takes well under a second.
pub const FAST_APPROVE: &str = "default = \"approve\"\ndelay_ms = 300\nhint_ms = 100\n";
/// The management API token of every idgate started by `start`.
pub const API_TOKEN: &str = "faults-token-0123456789";

/// The `Authorization` header line for the management API.
pub fn bearer() -> String {
    format!("Authorization: Bearer {API_TOKEN}")
}

/// The `[http]` line that sets the management API token.
pub fn http_token() -> String {
    format!("api_token = \"{API_TOKEN}\"\n")
}

/// One route taking every call to `127.0.0.1:<queue_port>`, with extra route keys.
pub fn route(queue_port: u16, extra: &str) -> String {
    format!(
        "[[route]]\nname = \"support\"\nmatch = \"*\"\n{extra}target = \"sip:queue@127.0.0.1:{queue_port}\"\n"
    )
}

/// idgate with the management API token set (for `/v1/calls`).
pub fn start(routes: &str, simulator: &str, sections: &str) -> Idgate {
    Idgate::start_with_http(routes, simulator, &http_token(), sections)
}

/// A SIPp caller from `caller` to 5000, with extra SIPp arguments.
pub fn call(idgate: &Idgate, scenario: &str, caller: &str, extra: &[&str]) -> Sipp {
    let mut args = vec!["-set", "caller", caller, "-s", "5000"];
    args.extend_from_slice(extra);
    let target = idgate.sip_addr();
    args.push(&target);
    Sipp::start(idgate.dir.path(), scenario, &args, 1)
}

/// A GET on the management API that must answer 200; its JSON body.
pub fn get_json(idgate: &Idgate, path: &str) -> Value {
    let (status, body) = idgate.http("GET", path, &[&bearer()], "");
    assert_eq!(status, 200, "GET {path}: {body}");
    serde_json::from_str(&body).unwrap_or(Value::Null)
}

/// The newest stored call of `caller` (through `/v1/calls`, which flushes the journal first).
pub fn stored_call(idgate: &Idgate, caller: &str) -> Value {
    let path = format!("/v1/calls?caller={}", caller.replace('+', "%2B"));
    let list = get_json(idgate, &path);
    list["calls"][0].clone()
}

/// Waits until the newest call of `caller` has ended, and no call is active; returns the call.
pub fn ended_call(idgate: &Idgate, caller: &str) -> Value {
    eventually("the call is stored as ended", idgate, || {
        !stored_call(idgate, caller)["outcome"].is_null()
    });
    eventually("no active call", idgate, || {
        idgate.metric("idgate_active_calls") == Some(0.0)
    });
    stored_call(idgate, caller)
}

/// The verification events (kind, detail) of a call, from the SQLite file (the API does not
/// serve them).
pub fn verification_events(idgate: &Idgate, call_id: &str) -> Vec<(String, Option<String>)> {
    let id = uuid::Uuid::parse_str(call_id).expect("call id");
    let url = format!("sqlite://{}", idgate.db_path().display());
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let store = idgate::store::Store::connect(&url).await.expect("store");
        let events = store.verification_events_for(id).await.expect("query");
        events
            .into_iter()
            .map(|e| (e.kind.as_str().to_owned(), e.detail))
            .collect()
    })
}

/// The identity verdict the queue got, per INVITE, in order: (caller, status, reason).
pub fn verdicts(queue: &Sipp) -> Vec<(String, String, Option<String>)> {
    queue
        .received_all("INVITE")
        .iter()
        .map(|invite| {
            let from = header(invite, "From").unwrap_or_default();
            let user = from
                .split("sip:")
                .nth(1)
                .and_then(|u| u.split('@').next())
                .unwrap_or_default();
            let status = header(invite, "X-Identity-Status").unwrap_or_default();
            let reason = header(invite, "X-Identity-Reason").map(str::to_owned);
            (user.to_owned(), status.to_owned(), reason)
        })
        .collect()
}

/// Asserts the one INVITE the queue got carries `unverified` with `reason`.
pub fn assert_unverified(queue: &Sipp, reason: &str) {
    let invite = queue.invite_with_status("unverified");
    assert_eq!(
        header(&invite, "X-Identity-Reason"),
        Some(reason),
        "{invite}"
    );
}
/// How many simulator orders idgate's log shows started (each after its push check passed).
pub fn pushes_started(idgate: &Idgate) -> usize {
    idgate
        .log()
        .lines()
        .filter(|l| l.contains("simulated eID order"))
        .count()
}
