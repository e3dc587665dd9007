//! A headless baresip (Debian's `baresip-core` 1.0.0) as a test's user agent: no audio device
//! (`aubridge` loops its own audio), no UI but the `menu` commands `-e` types, SIP trace (`-s`)
//! on, its output in a file the test reads while it runs.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// What a test asks of baresip beyond the shared base.
pub struct Setup<'a> {
    /// Its SIP port on 127.0.0.1.
    pub sip_port: u16,
    /// Config lines after the base modules (`module\t\t\tsrtp.so\n`, settings).
    pub extra: &'a str,
    /// The one line of its `accounts` file.
    pub account: &'a str,
    /// Dialled at once.
    pub uri: &'a str,
    /// It quits by itself after this many seconds if all else fails (`-t`).
    pub quit_after_secs: u32,
}

/// Writes baresip's config into `dir/baresip`, starts it dialling `setup.uri`, and returns it
/// with the file its output goes to. The caller kills it.
pub fn spawn(dir: &Path, setup: &Setup<'_>) -> (Child, PathBuf) {
    let config_dir = dir.join("baresip");
    std::fs::create_dir_all(&config_dir).expect("baresip config dir");
    // RTP above idgate's test range (20000-39999, support::rtp_range); baresip retries another
    // port of the range when one is taken.
    let config = format!(
        "poll_method\t\tepoll\n\
         sip_listen\t\t127.0.0.1:{sip_port}\n\
         net_interface\t\t127.0.0.1\n\
         dns_server\t\t127.0.0.1:53\n\
         audio_player\t\taubridge,nil\n\
         audio_source\t\taubridge,nil\n\
         audio_alert\t\taubridge,alert\n\
         rtp_ports\t\t40000-48999\n\
         module_path\t\t/usr/lib/baresip/modules\n\
         module\t\t\tg711.so\n\
         module\t\t\taubridge.so\n\
         {extra}\
         module_tmp\t\taccount.so\n\
         module_app\t\tmenu.so\n",
        sip_port = setup.sip_port,
        extra = setup.extra,
    );
    std::fs::write(config_dir.join("config"), config).expect("baresip config");
    std::fs::write(config_dir.join("accounts"), setup.account).expect("baresip accounts");
    let output = dir.join("baresip.out");
    let out = File::create(&output).expect("baresip output file");
    let err = out.try_clone().expect("baresip output file");
    // stdbuf: baresip prints through stdio, fully buffered into a file otherwise, and the tests
    // read its SIP trace while it runs.
    let child = Command::new("stdbuf")
        .args(["-oL", "-eL", "baresip", "-f"])
        .arg(&config_dir)
        .args(["-s", "-t", &setup.quit_after_secs.to_string()])
        .args(["-e", &format!("/dial {}", setup.uri)])
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .expect("start baresip (apt-get install baresip-core)");
    (child, output)
}

/// `text` without ANSI escape sequences (baresip colours its output).
pub fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
