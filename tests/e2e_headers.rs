//! End to end, the header contract's optional extras (IDENTITY-HEADERS.md "How the headers
//! travel"): the tagged From display name on the B2BUA queue leg and RFC 7433 User-to-User, on
//! the queue INVITE and on a REFER. The caller poses as verified in its own display name (an
//! unverified caller doing so, with every other forgery: `tests/spoofing.rs`).

mod support;

use support::{Idgate, Sipp, assert_ok, header};

/// A simulator that answers fast.
const FAST_APPROVE: &str = "default = \"approve\"\ndelay_ms = 300\nhint_ms = 100\n";

/// Both extras on, default tags (`✔ ` / `✖ `).
const EXTRAS: &str = "[identity]\nuser_to_user = true\ndisplay_tag = true\n";

fn route(queue_port: u16) -> String {
    format!(
        "[[route]]\nname = \"support\"\nmatch = \"*\"\ntarget = \"sip:queue@127.0.0.1:{queue_port}\"\n"
    )
}

fn call(idgate: &Idgate, scenario: &str, caller: &str) -> Sipp {
    let target = idgate.sip_addr();
    let args = [
        "-set", "caller", caller, "-s", "5000", "-d", "2500", &target,
    ];
    Sipp::start(idgate.dir.path(), scenario, &args, 1)
}

/// Runs one B2BUA call from `caller_display.xml` and returns the INVITE the queue received.
fn queue_invite(simulator: &str, sections: &str, caller: &str) -> String {
    let queue_dir = tempfile::tempdir().expect("dir");
    let mut queue = Sipp::start(queue_dir.path(), "queue.xml", &[], 1);
    let idgate = Idgate::start_full(&route(queue.port), simulator, "", sections);
    let mut sipp = call(&idgate, "caller_display.xml", caller);
    assert_ok("caller", &mut sipp, &idgate);
    assert_ok("queue", &mut queue, &idgate);
    let invite = queue.received("INVITE").expect("the queue got an INVITE");
    assert!(
        !idgate.log().contains("Fake Verified"),
        "the caller's display name is never logged"
    );
    invite
}

/// The display name of a From header value (`"name" <uri>;tag=...`), without its quotes.
fn display_name(from: &str) -> &str {
    let inside = from.strip_prefix('"').expect("a quoted display name");
    inside.split_once('"').expect("the closing quote").0
}

/// The text of a `User-to-User` value, checking the RFC 7433/7434 form on the way:
/// `04<hex>;encoding=hex;purpose=isdn-uui;content=isdn-uui`, at most 128 octets.
fn uui_text(value: &str) -> String {
    let (data, params) = value.split_once(';').expect("parameters");
    assert_eq!(params, "encoding=hex;purpose=isdn-uui;content=isdn-uui");
    let octets = hex::decode(data).expect("hex UUI data");
    assert!(octets.len() <= 128, "{value}");
    assert_eq!(octets[0], 0x04, "IA5 protocol discriminator first");
    String::from_utf8(octets[1..].to_vec()).expect("ASCII text")
}

#[test]
fn a_verified_caller_shows_the_configured_tag_not_its_own() {
    let sections = format!("{EXTRAS}tag_verified = \"[OK] \"\ntag_unverified = \"[??] \"\n");
    let invite = queue_invite(FAST_APPROVE, &sections, "+46701111113");
    assert_eq!(header(&invite, "X-Identity-Status"), Some("verified"));
    let shown = display_name(header(&invite, "From").expect("From"));
    assert_eq!(
        shown, "[OK] Fake Verified",
        "the caller's ✔ is gone: {invite}"
    );

    let call_id = header(&invite, "X-Identity-Call").expect("X-Identity-Call");
    let uui = uui_text(header(&invite, "User-to-User").expect("User-to-User"));
    assert_eq!(uui, format!("verified;call={call_id}"));
}

#[test]
fn without_the_extras_the_queue_leg_is_as_before() {
    let invite = queue_invite(FAST_APPROVE, "", "+46701111114");
    let from = header(&invite, "From").expect("From");
    assert!(
        from.starts_with("<sip:+46701111114@"),
        "no display name: {from}"
    );
    assert_eq!(header(&invite, "User-to-User"), None, "{invite}");
}

#[test]
fn refer_mode_carries_user_to_user_on_the_refer_and_in_refer_to() {
    let routes = "[[route]]\nname = \"pbx\"\nmatch = \"*\"\ntransfer = \"refer\"\ntarget = \"sip:queue@pbx.example\"\n";
    let idgate = Idgate::start_full(routes, FAST_APPROVE, "", EXTRAS);
    let mut caller = call(&idgate, "caller_refer.xml", "+46705555556");
    assert_ok("caller", &mut caller, &idgate);
    let refer = caller.received("REFER").expect("REFER");
    let call_id = header(&refer, "X-Identity-Call").expect("X-Identity-Call");
    let uui = header(&refer, "User-to-User").expect("User-to-User on the REFER");
    assert_eq!(uui_text(uui), format!("verified;call={call_id}"));
    // In the Refer-To URI, escaped once (RFC 3261 §19.1.1), as Genesys Cloud reads it.
    let refer_to = header(&refer, "Refer-To").expect("Refer-To");
    let escaped = uui.replace(';', "%3B").replace('=', "%3D");
    assert!(
        refer_to.contains(&format!("User-to-User={escaped}")),
        "{refer_to}"
    );
}
