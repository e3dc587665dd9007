//! Config and dialplan tests: defaults, the shipped files, and error texts that name the file
//! and the key.

use std::path::{Path, PathBuf};

use super::*;

fn err(source: &str) -> String {
    Config::parse("idgate.toml", source)
        .unwrap_err()
        .to_string()
}

fn route_err(file: &str, source: &str) -> String {
    Dialplan::parse_file(file, source).unwrap_err().to_string()
}

fn routes(source: &str) -> Dialplan {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("routes.toml"), source).unwrap();
    Dialplan::load(&DialplanConfig {
        dir: Some(dir.path().to_path_buf()),
    })
    .unwrap()
}

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

#[test]
fn an_empty_file_is_the_defaults() {
    assert_eq!(Config::parse("idgate.toml", "").unwrap(), Config::default());
    assert_eq!(Config::default().sip.listen.to_string(), "127.0.0.1:5060");
    assert_eq!(Config::default().sip.trusted_peers.len(), 2);
}

#[test]
fn the_embedded_config_is_valid_and_equals_the_defaults() {
    let parsed = Config::parse(EMBEDDED_NAME, Config::embedded_text()).unwrap();
    assert_eq!(parsed, Config::default());
    assert_eq!(Config::embedded(), Config::default());
    Config::default().validate().unwrap();
}

#[test]
fn unknown_keys_are_named_with_their_line() {
    let top = err("lisen = \"127.0.0.1:5060\"\n");
    assert!(top.contains("unknown field `lisen`"), "{top}");
    let sip = err("[sip]\nlisen = \"127.0.0.1:5060\"\n");
    assert!(sip.starts_with("idgate.toml:2:"), "{sip}");
    assert!(
        sip.contains("unknown field `lisen`, expected one of"),
        "{sip}"
    );
    let nested = err("[provider.simulator]\ndelay = 5\n");
    assert!(nested.contains("unknown field `delay`"), "{nested}");
}

#[test]
fn unknown_keys_in_a_route_are_named() {
    let text = "[[route]]\nname = \"a\"\nmatch = \"*\"\ntaget = \"sip:q@h\"\n";
    let e = route_err("10-a.toml", text);
    assert!(e.starts_with("10-a.toml:4:"), "{e}");
    assert!(e.contains("unknown field `taget`"), "{e}");
}

#[test]
fn a_bad_cidr_names_its_index() {
    let e = err("[sip]\ntrusted_peers = [\"127.0.0.0/8\", \"10.0.0/8\"]\n");
    assert!(
        e.contains(r#"sip.trusted_peers[1]: "10.0.0/8" is not a CIDR network"#),
        "{e}"
    );
    assert!(e.starts_with("idgate.toml:2:"), "{e}");
}

#[test]
fn a_bare_address_is_one_host() {
    let c = Config::parse("c", "[sip]\ntrusted_peers = [\"192.0.2.7\"]\n").unwrap();
    assert_eq!(c.sip.trusted_peers[0].to_string(), "192.0.2.7/32");
}

#[test]
fn values_are_validated_with_their_key() {
    let odd = err("[media]\nrtp_port_min = 20001\n");
    assert!(
        odd.contains("idgate.toml: media.rtp_port_min: 20001 must be even"),
        "{odd}"
    );
    let order = err("[media]\nrtp_port_min = 30000\nrtp_port_max = 20000\n");
    assert!(
        order.contains("media.rtp_port_min: 30000 must be below"),
        "{order}"
    );
    let raw = err("[media]\nbind_ip = \"::\"\nraw_send = true\n");
    assert!(
        raw.contains(
            "media.raw_send: needs an IPv4 media.bind_ip (one address, or 0.0.0.0), not ::"
        ),
        "{raw}"
    );
    assert!(err("[media]\nbind_ip = \"::1\"\nraw_send = true\n").contains("media.raw_send"));
    for ip in ["192.0.2.1", "0.0.0.0"] {
        let toml = format!("[media]\nbind_ip = \"{ip}\"\nraw_send = true\n");
        assert!(Config::parse("c", &toml).unwrap().media.raw_send, "{ip}");
    }
    let prefix = err("[sip]\nheader_prefix = \"X Identity\"\n");
    assert!(prefix.contains("sip.header_prefix"), "{prefix}");
    let store = err("[store]\nurl = \"mysql://x\"\n");
    assert!(store.contains("store.url"), "{store}");
    let transports = err("[sip]\ntransports = []\n");
    assert!(transports.contains("sip.transports"), "{transports}");
    let kind = err("[provider]\nkind = \"acme-id\"\n");
    assert!(kind.contains("unknown variant `acme-id`"), "{kind}");
    let limits = err("[limits]\nwindow_secs = 0\n");
    assert!(limits.contains("limits.window_secs"), "{limits}");
}

#[test]
fn a_bad_target_names_the_route_and_file() {
    let text = "[[route]]\nname = \"support\"\nmatch = \"5000\"\ntarget = \"queue@pbx\"\n";
    assert_eq!(
        route_err("dialplans/10-support.toml", text),
        r#"route "support" (dialplans/10-support.toml): target "queue@pbx": must be a sip: or sips: URI"#
    );
    let fallback = text.replace("queue@pbx", "sip:q@pbx") + "fallback = \"tel:+46\"\n";
    let e = route_err("f.toml", &fallback);
    assert!(
        e.contains(r#"fallback "tel:+46": must be a sip: or sips: URI"#),
        "{e}"
    );
}

#[test]
fn bad_route_values_are_named() {
    let base = "[[route]]\nname = \"r\"\ntarget = \"sip:q@h\"\n";
    let cases = [
        ("match = \"4*6\"", "match \"4*6\""),
        ("match = \"\"", "match \"\""),
        ("match = \"1\"\nregion = \"XX\"", "region \"XX\""),
        ("match = \"1\"\nkeypad_attempts = 0", "keypad_attempts"),
        ("match = \"1\"\nlanguage = \"de\"", "unknown variant `de`"),
        (
            "match = \"1\"\ntransfer = \"blind\"",
            "unknown variant `blind`",
        ),
        (
            "match = \"1\"\ndirectory = false\nphone_push = false\nkeypad = false",
            "identify: is true, but",
        ),
    ];
    for (extra, expected) in cases {
        let e = route_err("r.toml", &format!("{base}{extra}\n"));
        assert!(e.contains(expected), "{extra}: {e}");
    }
}

#[test]
fn routes_match_in_order_first_wins() {
    let plan = routes(
        r#"
        [[route]]
        name = "exact"
        match = "5000"
        target = "sip:exact@h"
        [[route]]
        name = "prefix"
        match = "46*"
        target = "sip:prefix@h"
        "#,
    );
    let name = |called| plan.route_for(called).map(|r| r.name.as_str());
    assert_eq!(name("5000"), Some("exact"));
    assert_eq!(name("50001"), None);
    assert_eq!(name("46701234567"), Some("prefix"));
    assert_eq!(name("4"), None);
    let with_wildcard = routes(
        "[[route]]\nname = \"p\"\nmatch = \"46*\"\ntarget = \"sip:p@h\"\n\
         [[route]]\nname = \"all\"\nmatch = \"*\"\ntarget = \"sip:all@h\"\n",
    );
    assert_eq!(with_wildcard.route_for("4612").unwrap().name, "p");
    assert_eq!(with_wildcard.route_for("anything").unwrap().name, "all");
}

#[test]
fn route_defaults() {
    let plan = Dialplan::load(&DialplanConfig::default()).unwrap();
    let route = plan.route_for("5000").unwrap();
    assert_eq!(route.matches, CalledMatch::Any);
    assert_eq!(route.target.as_str(), "sip:queue@127.0.0.1:5080");
    assert_eq!(route.transfer, Transfer::B2bua);
    assert_eq!(
        (route.language, route.region.as_str()),
        (Language::Sv, "SE")
    );
    assert!(route.identify && route.directory && route.phone_push && route.keypad);
    assert_eq!(route.keypad_attempts, 3);
    assert_eq!(route.identify_timeout.as_secs(), 150);
    assert_eq!(route.ring_timeout.as_secs(), 60);
    assert_eq!(route.fallback, None);
}

#[test]
fn unreachable_and_duplicate_routes_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let config = DialplanConfig {
        dir: Some(dir.path().to_path_buf()),
    };
    let write = |text: &str| std::fs::write(dir.path().join("r.toml"), text).unwrap();
    write(
        "[[route]]\nname=\"p\"\nmatch=\"46*\"\ntarget=\"sip:a@h\"\n[[route]]\nname=\"x\"\nmatch=\"4670\"\ntarget=\"sip:b@h\"\n",
    );
    let e = Dialplan::load(&config).unwrap_err().to_string();
    assert!(
        e.contains("route \"x\"") && e.contains("unreachable: route \"p\""),
        "{e}"
    );
    write(
        "[[route]]\nname=\"a\"\nmatch=\"1\"\ntarget=\"sip:a@h\"\n[[route]]\nname=\"a\"\nmatch=\"2\"\ntarget=\"sip:b@h\"\n",
    );
    let e = Dialplan::load(&config).unwrap_err().to_string();
    assert!(e.contains("name already used"), "{e}");
}

#[test]
fn a_dialplan_dir_loads_in_file_name_order() {
    let dir = tempfile::tempdir().unwrap();
    let route = |name: &str, matches: &str| {
        format!("[[route]]\nname = \"{name}\"\nmatch = \"{matches}\"\ntarget = \"sip:{name}@h\"\n")
    };
    std::fs::write(dir.path().join("20-rest.toml"), route("rest", "*")).unwrap();
    std::fs::write(dir.path().join("10-support.toml"), route("support", "5000")).unwrap();
    std::fs::write(dir.path().join("README.md"), "not a route file").unwrap();
    let plan = Dialplan::load(&DialplanConfig {
        dir: Some(dir.path().to_path_buf()),
    })
    .unwrap();
    let names: Vec<&str> = plan.routes().iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["support", "rest"]);
    assert!(plan.routes()[0].file.ends_with("10-support.toml"));
    assert_eq!(plan.route_for("5000").unwrap().name, "support");
}

#[test]
fn an_empty_or_missing_dialplan_dir_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let empty = DialplanConfig {
        dir: Some(dir.path().to_path_buf()),
    };
    let e = Dialplan::load(&empty).unwrap_err();
    assert!(matches!(e, ConfigError::NoRoutes { .. }), "{e}");
    let missing = DialplanConfig {
        dir: Some(dir.path().join("nope")),
    };
    let e = Dialplan::load(&missing).unwrap_err();
    assert!(
        matches!(e, ConfigError::Read { .. }) && e.to_string().contains("nope"),
        "{e}"
    );
}

#[test]
fn every_shipped_file_parses() {
    let mut seen = 0;
    for entry in std::fs::read_dir(repo("dialplans")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let text = std::fs::read_to_string(&path).unwrap();
            let routes = Dialplan::parse_file(&path.display().to_string(), &text).unwrap();
            assert!(!routes.is_empty(), "{}", path.display());
            seen += 1;
        }
    }
    assert!(seen >= 2);
    assert_eq!(
        Config::load(&repo("assets/idgate.toml")).unwrap(),
        Config::default()
    );
}

#[test]
fn the_example_dialplan_loads_as_a_directory() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        repo("dialplans/example.toml"),
        dir.path().join("10-example.toml"),
    )
    .unwrap();
    let plan = Dialplan::load(&DialplanConfig {
        dir: Some(dir.path().to_path_buf()),
    })
    .unwrap();
    assert_eq!(plan.route_for("0771123457").unwrap().language, Language::En);
    let refer = plan.route_for("46861234").unwrap();
    assert_eq!(refer.transfer, Transfer::Refer);
    assert!(refer.fallback.is_some());
    assert_eq!(plan.route_for("999").unwrap().name, "switchboard");
}

#[test]
fn check_reports_listen_addresses_and_routes() {
    let report = check(None).unwrap();
    assert_eq!(report.routes.len(), 1);
    let text = report.to_string();
    assert!(text.contains("127.0.0.1:5060 (udp, tcp)"), "{text}");
    assert!(
        text.contains("default: match \"*\" -> sip:queue@127.0.0.1:5080 (b2bua)"),
        "{text}"
    );

    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        repo("dialplans/example.toml"),
        dir.path().join("example.toml"),
    )
    .unwrap();
    let etc = tempfile::tempdir().unwrap();
    let config = etc.path().join("idgate.toml");
    let body = format!(
        "[sip]\nlisten = \"0.0.0.0:5070\"\n[dialplan]\ndir = {:?}\n",
        dir.path()
    );
    std::fs::write(&config, body).unwrap();
    let report = check(Some(&config)).unwrap();
    assert_eq!(report.sip_listen.port(), 5070);
    assert_eq!(report.routes.len(), 4);
    assert_eq!(report.routes[2].matches, "4686*");
}

#[test]
fn a_missing_config_file_is_named() {
    let e = Config::load(Path::new("/nonexistent/idgate.toml"))
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("/nonexistent/idgate.toml: cannot read"),
        "{e}"
    );
}

#[test]
fn simulator_script_errors_name_the_key_not_the_number() {
    let e = err(
        "[[provider.simulator.script]]\npersonal_number = \"191212121213\"\noutcome = \"decline\"\n",
    );
    assert!(
        e.contains("provider.simulator.script[0].personal_number"),
        "{e}"
    );
    assert!(!e.contains("191212121213"), "{e}");
    let e = err(
        "[[provider.simulator.script]]\npersonal_number = \"191212121212\"\noutcome = \"approve-as\"\nas = \"19121212121\"\n",
    );
    assert!(e.contains("provider.simulator.script[0].as"), "{e}");
    assert!(!e.contains("19121212121\""), "{e}");
    let e = err("[provider.simulator]\nperson = \"191212121213\"\n");
    assert!(
        e.contains("provider.simulator.person") && !e.contains("191212121213"),
        "{e}"
    );
    let e = err("[provider.simulator]\ndefault = \"approve-as\"\n");
    assert!(e.contains("provider.simulator.default"), "{e}");
}

#[test]
fn identity_settings_parse() {
    let c = Config::parse("c", "[identity]\nsubject = \"full\"\ninclude_name = true\n").unwrap();
    assert_eq!(
        (c.identity.subject, c.identity.include_name),
        (SubjectMode::Full, true)
    );
    let e = err("[identity]\nsubject = \"partial\"\n");
    assert!(e.contains("unknown variant `partial`"), "{e}");
}

#[test]
fn a_route_intent_must_fit_bankid() {
    let long = "x".repeat(1200);
    let text = format!(
        "[[route]]\nname = \"acme\"\nmatch = \"*\"\nintent = \"{long}\"\ntarget = \"sip:q@pbx\"\n"
    );
    let e = route_err("dialplans/10-acme.toml", &text);
    assert!(e.contains("route \"acme\"") && e.contains("intent"), "{e}");
    let ok = "[[route]]\nname = \"acme\"\nmatch = \"*\"\nintent = \"Du ringde Acme.\"\ntarget = \"sip:q@pbx\"\n";
    let routes = Dialplan::parse_file("dialplans/10-acme.toml", ok).unwrap();
    assert_eq!(routes[0].intent.as_deref(), Some("Du ringde Acme."));
}

#[test]
fn user_to_user_and_display_tags_are_off_by_default_and_map_to_header_options() {
    let defaults = Config::default().identity;
    assert!(!defaults.user_to_user && !defaults.display_tag);
    assert_eq!(
        (
            defaults.tag_verified.as_str(),
            defaults.tag_unverified.as_str()
        ),
        ("✔ ", "✖ ")
    );
    let off = defaults.header_options("X-Id-");
    assert_eq!(
        (off.prefix.as_str(), off.user_to_user, off.display_tags),
        ("X-Id-", false, None)
    );

    let text = "[identity]\nuser_to_user = true\ndisplay_tag = true\n\
                tag_verified = \"[VERIFY]\"\ntag_unverified = \"?? \"\n";
    let on = Config::parse("c", text)
        .unwrap()
        .identity
        .header_options("X-Identity-");
    assert!(on.user_to_user);
    let tags = on.display_tags.expect("tags when display_tag is on");
    assert_eq!(
        (tags.verified.as_str(), tags.unverified.as_str()),
        ("[VERIFY]", "?? ")
    );
}

#[test]
fn display_tags_are_validated_with_their_key() {
    let cases = [
        (
            "tag_verified = \"\"",
            "identity.tag_verified: must be 1 to 8 characters",
        ),
        (
            "tag_verified = \"   \"",
            "identity.tag_verified: must be 1 to 8 characters",
        ),
        (
            "tag_unverified = \"UNVERIFIED \"",
            "identity.tag_unverified: must be 1 to 8",
        ),
        (
            "tag_verified = \"ok\\r\\n\"",
            "identity.tag_verified: must not contain control",
        ),
        (
            "tag_unverified = \"\\u001b[31m\"",
            "identity.tag_unverified: must not contain control",
        ),
        (
            "tag_unverified = \"✔ \"",
            "identity.tag_unverified: must differ",
        ),
    ];
    for (line, expected) in cases {
        let e = err(&format!("[identity]\n{line}\n"));
        assert!(e.contains(expected), "{line}: {e}");
        assert!(e.starts_with("idgate.toml: "), "{e}");
    }
    let eight = "[identity]\ntag_verified = \"✔✔✔✔✔✔✔✔\"\n";
    assert!(Config::parse("c", eight).is_ok(), "8 characters, 24 bytes");
}

#[test]
fn retention_days_are_validated_with_their_key() {
    assert_eq!(Config::default().store.retention_days, 90);
    let days = |n: u32| Config::parse("idgate.toml", &format!("[store]\nretention_days = {n}\n"));
    assert_eq!(days(0).unwrap().store.retention(), None);
    let keep = days(1).unwrap().store.retention();
    assert_eq!(keep, Some(std::time::Duration::from_secs(86_400)));
    let e = days(36_501).unwrap_err().to_string();
    assert!(
        e.contains("store.retention_days: 36501 is more than 36500"),
        "{e}"
    );
    let short = "[store]\nretention_days = 1\n[limits]\nwindow_secs = 172800\n";
    let e = err(short);
    assert!(
        e.contains("store.retention_days: 1 day(s) is shorter"),
        "{e}"
    );
    assert!(e.contains("limits.window_secs"), "{e}");
}

#[test]
fn refer_to_headers_is_a_route_choice() {
    use crate::config::ReferToHeaders;
    let route = |extra: &str| {
        format!(
            "[[route]]\nname = \"r\"\nmatch = \"*\"\ntransfer = \"refer\"\n{extra}target = \"sip:q@pbx\"\n"
        )
    };
    let dir = tempfile::tempdir().unwrap();
    for (extra, expected) in [
        ("", ReferToHeaders::All),
        ("refer_to_headers = \"short\"\n", ReferToHeaders::Short),
    ] {
        std::fs::write(dir.path().join("10.toml"), route(extra)).unwrap();
        let config = crate::config::DialplanConfig {
            dir: Some(dir.path().to_path_buf()),
        };
        let plan = crate::config::Dialplan::load(&config).unwrap();
        let r = plan.route_for("5000").unwrap();
        assert_eq!(r.refer_to_headers, expected);
    }
    std::fs::write(
        dir.path().join("10.toml"),
        route("refer_to_headers = \"long\"\n"),
    )
    .unwrap();
    let config = crate::config::DialplanConfig {
        dir: Some(dir.path().to_path_buf()),
    };
    let e = crate::config::Dialplan::load(&config)
        .unwrap_err()
        .to_string();
    assert!(e.contains("refer_to_headers"), "{e}");
    assert!(ReferToHeaders::Short.embeds("status") && ReferToHeaders::Short.embeds("Call"));
    assert!(!ReferToHeaders::Short.embeds("Token") && !ReferToHeaders::Short.embeds("Subject"));
    assert!(ReferToHeaders::All.embeds("Token"));
}
