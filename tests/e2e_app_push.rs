//! End to end with the company app: idgate as a process with `kind = "app-push"`, a fake
//! company backend (started by this test) that checks idgate's signed push and calls idgate's
//! HTTP API back with a signed result, SIPp as caller and agent queue.

mod support;

use std::time::Duration;

use idgate::identity::E164;
use idgate::verify::app_push::fake::{FakeBackend, FakeOutcome, FakeSettings};
use support::{Idgate, Sipp, assert_ok, free_port, header};

const SECRET: &str = "a-test-secret-of-32-characters!!";

#[test]
fn the_company_app_verifies_a_caller_by_phone_number_through_the_signed_callback() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let http_port = free_port();
    let settings = FakeSettings {
        secret: SECRET.to_string(),
        callback_url: format!("http://127.0.0.1:{http_port}/v1/app-push/callback"),
        delay: Duration::from_millis(200),
    };
    let backend = runtime
        .block_on(FakeBackend::start(settings))
        .expect("fake backend");
    let caller = E164::parse("+46701240001", "SE").expect("number");
    backend.script_phone(&caller, FakeOutcome::Approve);

    let dir = tempfile::tempdir().expect("dir");
    let mut queue = Sipp::start(dir.path(), "queue.xml", &[], 1);
    let routes = format!(
        "[[route]]\nname = \"app\"\nmatch = \"*\"\nkeypad = false\ntarget = \"sip:queue@127.0.0.1:{}\"\n",
        queue.port
    );
    let sections = format!(
        "[provider]\nkind = \"app-push\"\n[provider.app-push]\nurl = \"{}\"\nsecret = \"{SECRET}\"\n",
        backend.url()
    );
    let idgate = Idgate::start_on(http_port, &routes, "", "", &sections);

    let target = idgate.sip_addr();
    let args = [
        "-set",
        "caller",
        "+46701240001",
        "-s",
        "5000",
        "-d",
        "2500",
        &target,
    ];
    let mut call = Sipp::start(idgate.dir.path(), "caller.xml", &args, 1);
    assert_ok("caller", &mut call, &idgate);
    assert_ok("queue", &mut queue, &idgate);
    let invite = queue.invite_with_status("verified");
    assert_eq!(header(&invite, "X-Identity-Method"), Some("app-push"));
    let pushes = backend.pushes();
    assert_eq!(pushes.len(), 1, "one signed push reached the backend");
    assert_eq!(
        backend.refused(),
        0,
        "the backend accepted idgate's signature"
    );
}
