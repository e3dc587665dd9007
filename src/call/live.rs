//! The live calls of this instance, as agents see them: one [`CallView`] per call, changed by
//! the call's task, read by the agent page and its event stream (`api::agent`), and the one way
//! into a running call from outside ([`Registry::reverify`]).
//!
//! Views hold what the agent's own softphone shows (the caller number, the verdict, the name
//! and subject only as the identity-header settings allow) and stay in memory only: ended calls
//! are kept for [`ENDED_RETENTION`] so a screen-pop opened late still finds them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;
use tokio::sync::{broadcast, mpsc, oneshot};
use uuid::Uuid;

use crate::flow::ReverifyRefused;
use crate::identity::headers::{HeaderOptions, SubjectMode};
use crate::identity::{PersonalNumber, Verdict};
use crate::timefmt::rfc3339_millis;

/// How long an ended call stays visible.
pub const ENDED_RETENTION: Duration = Duration::from_secs(15 * 60);

/// At most this many ended calls are kept (the oldest go first).
const MAX_ENDED: usize = 2000;

/// Events buffered per subscriber before it lags (and gets a fresh snapshot).
const EVENT_BUFFER: usize = 1024;

/// Where a call is, in the words of the agent page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// Answered; the caller is being identified.
    Identifying,
    /// A verdict exists; the call is on its way to the queue.
    HandingOff,
    /// Connected to an agent (B2BUA) through idgate.
    WithAgent,
    /// Over (see `outcome`).
    Ended,
}

/// One call as the agent page shows it (the JSON of `/agent/api/calls`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CallView {
    /// idgate's call id (`X-Identity-Call`).
    pub id: Uuid,
    /// 1 when the call appears, one more on every change: of two copies, the higher is newer.
    pub version: u64,
    /// E.164, or `anonymous`.
    pub caller: String,
    /// The called number (Request-URI user).
    pub called: String,
    /// The route that took the call.
    pub route: String,
    /// `b2bua` or `refer`.
    pub mode: &'static str,
    /// Where the call is.
    pub phase: Phase,
    /// `pending` until the verdict, then `verified` / `unverified`.
    pub status: &'static str,
    /// The `X-Identity-Reason` token, when unverified.
    pub reason: Option<&'static str>,
    /// The `X-Identity-Method` token, when a method was tried.
    pub method: Option<&'static str>,
    /// The verified name, if `identity.include_name`.
    pub name: Option<String>,
    /// The personal identity number as `identity.subject` allows (masked by default).
    pub subject: Option<String>,
    /// When the INVITE arrived (RFC 3339).
    pub started_at: String,
    /// When the verdict was reached.
    pub decided_at: Option<String>,
    /// When the agent answered.
    pub connected_at: Option<String>,
    /// When the call ended.
    pub ended_at: Option<String>,
    /// `connected`, `referred`, `abandoned` or `queue-unavailable`, once ended.
    pub outcome: Option<&'static str>,
    /// Whether "verify again" can be asked now.
    pub can_reverify: bool,
    /// The latest re-verification, if any.
    pub reverify: Option<ReverifyView>,
}

/// A re-verification as the agent page shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReverifyView {
    /// `pending`, then `verified` / `unverified`.
    pub status: &'static str,
    /// The reason, when unverified.
    pub reason: Option<&'static str>,
    /// The method, once known.
    pub method: Option<&'static str>,
    /// The verified name, if `identity.include_name`.
    pub name: Option<String>,
    /// The subject, per `identity.subject`.
    pub subject: Option<String>,
    /// When the agent asked.
    pub requested_at: String,
    /// When the result came.
    pub completed_at: Option<String>,
}

/// What is known when a call is answered.
#[derive(Debug, Clone)]
pub struct NewLiveCall {
    /// idgate's call id.
    pub id: Uuid,
    /// E.164, or `anonymous`.
    pub caller: String,
    /// The called number.
    pub called: String,
    /// The route's name.
    pub route: String,
    /// `b2bua` or `refer`.
    pub mode: &'static str,
    /// When the INVITE arrived.
    pub started_at: SystemTime,
}

/// A request from outside to a running call.
#[derive(Debug)]
pub enum Command {
    /// "Verify again": a new push to `person`, or to the person the call already knows.
    Reverify {
        /// The person the agent named, if any.
        person: Option<PersonalNumber>,
        /// Who asked (the agent's user name, or `token`), for the audit trail.
        requested_by: String,
        /// Whether the flow started it.
        reply: oneshot::Sender<Result<(), ReverifyRefused>>,
    },
}

/// Why [`Registry::reverify`] did not start a re-verification.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReverifyError {
    /// No such call on this instance.
    #[error("no such call on this instance")]
    UnknownCall,
    /// The call has ended.
    #[error("the call has ended")]
    Ended,
    /// The flow refused.
    #[error(transparent)]
    Refused(#[from] ReverifyRefused),
}

struct Entry {
    view: Arc<CallView>,
    commands: Option<mpsc::Sender<Command>>,
    ended: Option<Instant>,
}

/// The live calls of this instance, and counters for `/healthz`.
pub struct Registry {
    active: AtomicU64,
    total: AtomicU64,
    calls: Mutex<HashMap<Uuid, Entry>>,
    events: broadcast::Sender<Arc<CallView>>,
}

impl std::fmt::Debug for Registry {
    /// Counts only: views hold caller numbers.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("active", &self.active())
            .field("total", &self.total())
            .finish_non_exhaustive()
    }
}

impl Default for Registry {
    fn default() -> Self {
        Self {
            active: AtomicU64::new(0),
            total: AtomicU64::new(0),
            calls: Mutex::new(HashMap::new()),
            events: broadcast::channel(EVENT_BUFFER).0,
        }
    }
}

impl Registry {
    /// Calls in progress (from INVITE to the end, including calls still being set up).
    pub fn active(&self) -> u64 {
        self.active.load(Ordering::Relaxed)
    }

    /// Calls taken since start.
    pub fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    pub(super) fn enter(&self) -> ActiveGuard<'_> {
        self.active.fetch_add(1, Ordering::Relaxed);
        self.total.fetch_add(1, Ordering::Relaxed);
        ActiveGuard(self)
    }

    /// Every known call, newest first.
    pub fn snapshot(&self) -> Vec<Arc<CallView>> {
        let mut views: Vec<Arc<CallView>> = self.lock().values().map(|e| e.view.clone()).collect();
        views.sort_by(|a, b| b.started_at.cmp(&a.started_at));
        views
    }

    /// One call, live or recently ended.
    pub fn get(&self, id: Uuid) -> Option<Arc<CallView>> {
        self.lock().get(&id).map(|e| e.view.clone())
    }

    /// Every change to any call from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<CallView>> {
        self.events.subscribe()
    }

    /// Asks a running call to verify its caller again.
    pub async fn reverify(
        &self,
        id: Uuid,
        person: Option<PersonalNumber>,
        requested_by: String,
    ) -> Result<(), ReverifyError> {
        let commands = {
            let calls = self.lock();
            let entry = calls.get(&id).ok_or(ReverifyError::UnknownCall)?;
            entry.commands.clone().ok_or(ReverifyError::Ended)?
        };
        let (reply, answer) = oneshot::channel();
        let command = Command::Reverify {
            person,
            requested_by,
            reply,
        };
        commands
            .send(command)
            .await
            .map_err(|_| ReverifyError::Ended)?;
        answer.await.map_err(|_| ReverifyError::Ended)??;
        Ok(())
    }

    /// Registers an answered call; the returned handle updates its view and marks it ended
    /// when dropped.
    pub(super) fn open(&self, call: NewLiveCall) -> (LiveCall<'_>, mpsc::Receiver<Command>) {
        let (commands, receiver) = mpsc::channel(4);
        let view = Arc::new(CallView {
            id: call.id,
            version: 1,
            caller: call.caller,
            called: call.called,
            route: call.route,
            mode: call.mode,
            phase: Phase::Identifying,
            status: "pending",
            reason: None,
            method: None,
            name: None,
            subject: None,
            started_at: rfc3339_millis(call.started_at),
            decided_at: None,
            connected_at: None,
            ended_at: None,
            outcome: None,
            can_reverify: false,
            reverify: None,
        });
        {
            let mut calls = self.lock();
            prune(&mut calls, Instant::now());
            calls.insert(
                call.id,
                Entry {
                    view: view.clone(),
                    commands: Some(commands),
                    ended: None,
                },
            );
        }
        let _ = self.events.send(view);
        (
            LiveCall {
                registry: self,
                id: call.id,
            },
            receiver,
        )
    }

    fn update(&self, id: Uuid, change: impl FnOnce(&mut CallView)) {
        let view = {
            let mut calls = self.lock();
            let Some(entry) = calls.get_mut(&id) else {
                return;
            };
            let mut view = (*entry.view).clone();
            change(&mut view);
            if view == *entry.view {
                return;
            }
            view.version += 1;
            if view.phase == Phase::Ended {
                entry.commands = None;
                entry.ended.get_or_insert_with(Instant::now);
            }
            entry.view = Arc::new(view);
            entry.view.clone()
        };
        // No subscriber is not an error.
        let _ = self.events.send(view);
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Uuid, Entry>> {
        // A panic while holding the lock leaves plain data behind: still usable.
        self.calls.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Drops ended calls older than [`ENDED_RETENTION`], and the oldest beyond [`MAX_ENDED`].
fn prune(calls: &mut HashMap<Uuid, Entry>, now: Instant) {
    calls.retain(|_, e| {
        e.ended
            .is_none_or(|at| now.duration_since(at) < ENDED_RETENTION)
    });
    let mut ended: Vec<(Instant, Uuid)> = calls
        .iter()
        .filter_map(|(id, e)| e.ended.map(|at| (at, *id)))
        .collect();
    if ended.len() > MAX_ENDED {
        ended.sort();
        for (_, id) in &ended[..ended.len() - MAX_ENDED] {
            calls.remove(id);
        }
    }
}

/// Counts a call as active while it lives.
pub(super) struct ActiveGuard<'a>(&'a Registry);

impl Drop for ActiveGuard<'_> {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A call task's handle on its view.
pub(super) struct LiveCall<'a> {
    registry: &'a Registry,
    id: Uuid,
}

impl LiveCall<'_> {
    /// The verdict is in: the call goes to the queue.
    pub fn decided(&self, verdict: &Verdict, opts: &HeaderOptions, at: SystemTime) {
        let shown = Shown::of(verdict, opts);
        self.registry.update(self.id, |v| {
            v.phase = Phase::HandingOff;
            v.status = verdict.status_str();
            v.reason = shown.reason;
            v.method = shown.method;
            v.name = shown.name;
            v.subject = shown.subject;
            v.decided_at = Some(rfc3339_millis(at));
        });
    }

    /// An agent answered (B2BUA).
    pub fn connected(&self, can_reverify: bool, at: SystemTime) {
        self.registry.update(self.id, |v| {
            v.phase = Phase::WithAgent;
            v.connected_at = Some(rfc3339_millis(at));
            v.can_reverify = can_reverify;
        });
    }

    /// A re-verification started.
    pub fn reverify_started(&self, at: SystemTime) {
        self.registry.update(self.id, |v| {
            v.can_reverify = false;
            v.reverify = Some(ReverifyView {
                status: "pending",
                reason: None,
                method: None,
                name: None,
                subject: None,
                requested_at: rfc3339_millis(at),
                completed_at: None,
            });
        });
    }

    /// A re-verification's result.
    pub fn reverified(
        &self,
        verdict: &Verdict,
        opts: &HeaderOptions,
        can_reverify: bool,
        at: SystemTime,
    ) {
        let shown = Shown::of(verdict, opts);
        self.registry.update(self.id, |v| {
            v.can_reverify = can_reverify;
            if let Some(r) = v.reverify.as_mut() {
                r.status = verdict.status_str();
                r.reason = shown.reason;
                r.method = shown.method;
                r.name = shown.name;
                r.subject = shown.subject;
                r.completed_at = Some(rfc3339_millis(at));
            }
        });
    }

    /// The call ended with this outcome.
    pub fn ended(&self, outcome: &'static str, at: SystemTime) {
        self.registry.update(self.id, |v| end(v, Some(outcome), at));
    }
}

impl Drop for LiveCall<'_> {
    /// A call task that stops without [`LiveCall::ended`] still ends its view.
    fn drop(&mut self) {
        self.registry.update(self.id, |v| {
            if v.phase != Phase::Ended {
                end(v, None, SystemTime::now());
            }
        });
    }
}

fn end(view: &mut CallView, outcome: Option<&'static str>, at: SystemTime) {
    view.phase = Phase::Ended;
    view.outcome = outcome;
    view.ended_at = Some(rfc3339_millis(at));
    view.can_reverify = false;
    if let Some(r) = view.reverify.as_mut().filter(|r| r.status == "pending") {
        r.status = "unverified";
        r.reason = Some("abandoned");
        r.completed_at = view.ended_at.clone();
    }
}

/// What of a verdict the page may show, per the identity-header settings.
struct Shown {
    reason: Option<&'static str>,
    method: Option<&'static str>,
    name: Option<String>,
    subject: Option<String>,
}

impl Shown {
    fn of(verdict: &Verdict, opts: &HeaderOptions) -> Shown {
        let (name, subject) = match verdict {
            Verdict::Verified { person, .. } => (
                person
                    .name
                    .as_ref()
                    .filter(|_| opts.include_name)
                    .map(|n| n.as_str().to_owned()),
                match opts.subject {
                    SubjectMode::Masked => Some(person.personal_number.masked()),
                    SubjectMode::Full => Some(person.personal_number.as_digits().to_owned()),
                    SubjectMode::None => None,
                },
            ),
            Verdict::Unverified { .. } => (None, None),
        };
        Shown {
            reason: verdict.reason().map(|r| r.as_str()),
            method: verdict.method().map(|m| m.as_str()),
            name,
            subject,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::{Method, PersonName, Reason, VerifiedPerson};

    fn new_call(id: u128) -> NewLiveCall {
        NewLiveCall {
            id: Uuid::from_u128(id),
            caller: "+46701234567".to_owned(),
            called: "support".to_owned(),
            route: "support".to_owned(),
            mode: "b2bua",
            started_at: SystemTime::UNIX_EPOCH + Duration::from_secs(1_751_371_200 + id as u64),
        }
    }

    fn alice() -> Verdict {
        Verdict::Verified {
            method: Method::Bankid,
            person: VerifiedPerson {
                personal_number: PersonalNumber::parse("191212121212").unwrap(),
                name: Some(PersonName::new("Tolvan Tolvansson".to_owned())),
            },
        }
    }

    #[test]
    fn a_call_is_seen_from_answer_to_end_and_every_change_is_an_event() {
        let registry = Registry::default();
        let mut events = registry.subscribe();
        let (live, _commands) = registry.open(new_call(1));
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_751_371_260);
        live.decided(&alice(), &HeaderOptions::default(), at);
        live.connected(true, at);
        live.ended("connected", at);
        drop(live);

        let seen: Vec<(Phase, &str)> = std::iter::from_fn(|| events.try_recv().ok())
            .map(|v| (v.phase, v.status))
            .collect();
        assert_eq!(
            seen,
            [
                (Phase::Identifying, "pending"),
                (Phase::HandingOff, "verified"),
                (Phase::WithAgent, "verified"),
                (Phase::Ended, "verified"),
            ],
            "one event per change; dropping an ended call sends nothing more"
        );
        let view = registry.get(Uuid::from_u128(1)).unwrap();
        assert_eq!(view.subject.as_deref(), Some("19121212-****"));
        assert_eq!(view.name, None, "names only with identity.include_name");
        assert_eq!(view.outcome, Some("connected"));
        assert_eq!(view.started_at, "2025-07-01T12:00:01.000Z");
        assert_eq!(view.version, 4, "one more per change");
        assert!(!view.can_reverify);
    }

    #[test]
    fn names_and_subjects_follow_the_header_settings() {
        let registry = Registry::default();
        let (live, _commands) = registry.open(new_call(1));
        let opts = HeaderOptions {
            include_name: true,
            subject: SubjectMode::None,
            ..HeaderOptions::default()
        };
        live.decided(&alice(), &opts, SystemTime::now());
        let view = registry.get(Uuid::from_u128(1)).unwrap();
        assert_eq!(view.name.as_deref(), Some("Tolvan Tolvansson"));
        assert_eq!(view.subject, None);

        let unverified = Verdict::Unverified {
            reason: Reason::NotInCall,
            method: Some(Method::Bankid),
        };
        live.decided(&unverified, &opts, SystemTime::now());
        let view = registry.get(Uuid::from_u128(1)).unwrap();
        assert_eq!(
            (view.status, view.reason, view.method, view.name.clone()),
            ("unverified", Some("not-in-call"), Some("bankid"), None)
        );
    }

    #[test]
    fn a_dropped_call_ends_and_a_pending_reverification_with_it() {
        let registry = Registry::default();
        let (live, _commands) = registry.open(new_call(1));
        live.reverify_started(SystemTime::now());
        drop(live);
        let view = registry.get(Uuid::from_u128(1)).unwrap();
        assert_eq!(view.phase, Phase::Ended);
        assert_eq!(view.outcome, None);
        let reverify = view.reverify.clone().unwrap();
        assert_eq!(
            (reverify.status, reverify.reason),
            ("unverified", Some("abandoned"))
        );
    }

    #[tokio::test]
    async fn reverify_reaches_the_call_task_and_carries_its_answer() {
        let registry = Registry::default();
        let (live, mut commands) = registry.open(new_call(1));
        let id = Uuid::from_u128(1);
        let task = async {
            let Some(Command::Reverify {
                person,
                requested_by,
                reply,
            }) = commands.recv().await
            else {
                panic!("no command");
            };
            assert_eq!(person, None);
            assert_eq!(requested_by, "agent1");
            reply.send(Err(ReverifyRefused::NoPerson)).unwrap();
        };
        let (result, ()) = tokio::join!(registry.reverify(id, None, "agent1".to_owned()), task);
        assert_eq!(
            result,
            Err(ReverifyError::Refused(ReverifyRefused::NoPerson))
        );

        assert_eq!(
            registry
                .reverify(Uuid::from_u128(2), None, "agent1".to_owned())
                .await,
            Err(ReverifyError::UnknownCall)
        );
        live.ended("connected", SystemTime::now());
        assert_eq!(
            registry.reverify(id, None, "agent1".to_owned()).await,
            Err(ReverifyError::Ended)
        );
    }

    #[test]
    fn snapshots_are_newest_first_and_old_ended_calls_go() {
        let registry = Registry::default();
        let (first, _c1) = registry.open(new_call(1));
        let (_second, _c2) = registry.open(new_call(2));
        let ids: Vec<u128> = registry.snapshot().iter().map(|v| v.id.as_u128()).collect();
        assert_eq!(ids, [2, 1]);

        first.ended("abandoned", SystemTime::now());
        let mut calls = registry.lock();
        let now = Instant::now();
        prune(&mut calls, now);
        assert_eq!(calls.len(), 2, "recently ended calls stay");
        prune(&mut calls, now + ENDED_RETENTION + Duration::from_secs(1));
        assert_eq!(
            calls.len(),
            1,
            "the live call stays, the old ended one goes"
        );
    }
}
