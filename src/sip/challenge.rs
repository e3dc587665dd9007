//! Carries out `auth`'s decision on a new INVITE: `401` with the digest challenges, `403` (counted
//! and audited like an untrusted source), or the go-ahead with whether the source is a trusted
//! peer.

use std::time::{SystemTime, UNIX_EPOCH};

use rsipstack::sip::{Header, StatusCode};
use rsipstack::transaction::transaction::Transaction;
use tracing::{debug, info, warn};

use super::SipStack;
use super::auth::{Decision, InviteView, Refusal};
use super::message::source_ip;

/// An INVITE that may become a call.
pub(super) struct Admitted {
    /// The source address.
    pub source: std::net::IpAddr,
    /// Whether P-Asserted-Identity is believed (the source is in `trusted_peers`).
    pub trusted_peer: bool,
}

/// Decides on a new INVITE and answers it when it is not admitted (`None`).
pub(super) async fn admit_invite(stack: &SipStack, tx: &mut Transaction) -> Option<Admitted> {
    let source = source_ip(&tx.original);
    let request_uri = tx.original.uri.to_string();
    let method = tx.original.method.to_string();
    let authorization = tx
        .original
        .headers
        .iter()
        .filter(|h| h.name().eq_ignore_ascii_case("authorization"))
        .map(|h| h.value().to_string())
        .collect::<Vec<_>>();
    let view = InviteView {
        source,
        trusted_peer: source.is_some_and(|ip| stack.is_trusted(ip)),
        method: &method,
        request_uri: &request_uri,
        authorization: authorization.iter().map(String::as_str).collect(),
    };
    let auth = &stack.inner.settings.trunk_auth;
    let now = unix_now();
    match (auth.decide(now, &view), source) {
        (
            Decision::Admit {
                trusted_peer,
                trunk,
            },
            Some(source),
        ) => {
            if let Some(trunk) = trunk {
                info!(trunk, "INVITE authenticated by digest");
            }
            Some(Admitted {
                source,
                trusted_peer,
            })
        }
        (Decision::Challenge { stale }, Some(source)) => {
            debug!(stale, "INVITE challenged (401)");
            let headers = auth
                .challenges(now, source, stale)
                .into_iter()
                .map(|c| Header::Other("WWW-Authenticate".into(), c))
                .collect();
            if let Err(e) = tx.reply_with(StatusCode::Unauthorized, headers, None).await {
                debug!(error = %e, "could not send 401");
            }
            None
        }
        (decision, _) => {
            let why = match decision {
                Decision::Refuse(why) => why,
                _ => Refusal::UntrustedSource,
            };
            refuse(stack, tx, source, why).await;
            None
        }
    }
}

/// `403`, the same for every reason; counted and recorded as an untrusted source.
async fn refuse(
    stack: &SipStack,
    tx: &mut Transaction,
    source: Option<std::net::IpAddr>,
    why: Refusal,
) {
    match why {
        Refusal::UntrustedSource => warn!(?source, "INVITE from an untrusted peer refused"),
        Refusal::LockedOut => warn!(
            ?source,
            why = why.as_str(),
            "INVITE with trunk credentials refused unchecked: too many failures from this source"
        ),
        _ => warn!(
            ?source,
            why = why.as_str(),
            "INVITE with bad trunk credentials refused"
        ),
    }
    stack.inner.settings.admit.untrusted(source);
    if let Err(e) = tx.reply(StatusCode::Forbidden).await {
        debug!(error = %e, "could not send 403");
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
