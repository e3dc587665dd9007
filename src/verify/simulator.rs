//! The simulator provider: a scripted stand-in for BankID/Freja, for demos and tests. It reports
//! like a real provider (`Sent`, then `CallConfirm`, then the outcome) on a timer, with outcomes
//! chosen per caller number or person in `[[provider.simulator.script]]`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Deserializer};
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep};
use tokio_util::sync::CancellationToken;

use super::{Failure, Hint, Provider, Subject, Verification, VerifyRequest, VerifyUpdate};
use crate::identity::{E164, Method, PersonName, PersonalNumber, VerifiedPerson};

/// The Skatteverket test person returned for phone pushes unless configured otherwise.
const TOLVAN: &str = "191212121212";

/// `[provider.simulator]`: how the simulator answers.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SimulatorConfig {
    /// Outcome for any subject no script entry names: `"approve"`, `"decline"`,
    /// `"not-in-call"`, `"timeout"`, `"error"` or `"rate-limited"`. Default `"approve"`.
    #[serde(deserialize_with = "default_outcome")]
    pub default: Outcome,
    /// Milliseconds from the start of an order to its outcome. Default `3000`.
    pub delay_ms: u64,
    /// Milliseconds from the start to the `userCallConfirm` hint (skipped if not before the
    /// outcome). Default `1000`.
    pub hint_ms: u64,
    /// Name returned with every approval. Default `"Tolvan Tolvansson"`.
    #[serde(deserialize_with = "person_name")]
    pub person_name: PersonName,
    /// Personal identity number returned when a push addressed by phone number is approved.
    /// Default `"191212121212"` (Skatteverket's test person).
    #[serde(deserialize_with = "person")]
    pub person: PersonalNumber,
    /// `[[provider.simulator.script]]`: outcomes for given callers or persons, first match wins.
    #[serde(deserialize_with = "script_list")]
    pub script: Vec<ScriptEntry>,
}

impl Default for SimulatorConfig {
    fn default() -> Self {
        Self {
            default: Outcome::Approve,
            delay_ms: 3000,
            hint_ms: 1000,
            person_name: PersonName::new("Tolvan Tolvansson".to_owned()),
            person: tolvan(),
            script: Vec::new(),
        }
    }
}

/// The default `person`. A constant (a unit test checks it), so this cannot fail.
fn tolvan() -> PersonalNumber {
    PersonalNumber::parse(TOLVAN).expect("the built-in test person is a valid personal number")
}

/// How a simulated order ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Completes with the requested person (for a phone push, the configured `person`).
    Approve,
    /// Completes with this other person (`outcome = "approve-as"`, `as = "..."`): tests
    /// `mismatch`.
    ApproveAs(PersonalNumber),
    /// The person cancels in the app.
    Decline,
    /// The person says they are not in a call with us.
    NotInCall,
    /// The order expires.
    Timeout,
    /// The provider fails (`Provider("simulated error")`).
    Error,
    /// The provider refuses (rate limit).
    RateLimited,
}

/// `outcome` as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum OutcomeKind {
    Approve,
    ApproveAs,
    Decline,
    NotInCall,
    Timeout,
    Error,
    RateLimited,
}

impl OutcomeKind {
    /// The outcome, for every kind but `approve-as` (which needs a person).
    fn simple(self) -> Option<Outcome> {
        Some(match self {
            OutcomeKind::Approve => Outcome::Approve,
            OutcomeKind::ApproveAs => return None,
            OutcomeKind::Decline => Outcome::Decline,
            OutcomeKind::NotInCall => Outcome::NotInCall,
            OutcomeKind::Timeout => Outcome::Timeout,
            OutcomeKind::Error => Outcome::Error,
            OutcomeKind::RateLimited => Outcome::RateLimited,
        })
    }
}

/// One scripted answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptEntry {
    /// Whom it applies to.
    pub subject: ScriptSubject,
    /// How the order ends.
    pub outcome: Outcome,
    /// Overrides `delay_ms` for this entry.
    pub delay_ms: Option<u64>,
}

/// Whom a script entry applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScriptSubject {
    /// Pushes addressed by this caller number (`caller = "+46701234567"`).
    Caller(E164),
    /// Pushes addressed to this person (`personal_number = "..."`).
    Person(PersonalNumber),
}

impl ScriptSubject {
    fn applies_to(&self, subject: &Subject) -> bool {
        match (self, subject) {
            (ScriptSubject::Caller(a), Subject::Phone(b)) => a == b,
            (ScriptSubject::Person(a), Subject::Person(b)) => a == b,
            _ => false,
        }
    }
}

/// `[[provider.simulator.script]]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScriptEntry {
    /// Caller number, E.164 (`"+46701234567"`). Exactly one of `caller` and `personal_number`.
    caller: Option<String>,
    /// Personal identity number, 12 digits.
    personal_number: Option<String>,
    /// `approve`, `approve-as`, `decline`, `not-in-call`, `timeout`, `error`, `rate-limited`.
    outcome: OutcomeKind,
    /// The person `approve-as` completes with.
    #[serde(rename = "as")]
    as_person: Option<String>,
    /// Overrides `delay_ms` for this entry.
    delay_ms: Option<u64>,
}

impl RawScriptEntry {
    /// Checks entry `i`; errors name `provider.simulator.script[i].<key>` and never the number.
    fn check(self, i: usize) -> Result<ScriptEntry, String> {
        let key = |k: &str| format!("provider.simulator.script[{i}]{k}");
        let pnr =
            |k: &str, raw: &str| PersonalNumber::parse(raw).map_err(|e| format!("{}: {e}", key(k)));
        let subject = match (&self.caller, &self.personal_number) {
            (Some(raw), None) => ScriptSubject::Caller(E164::parse(raw, "SE").map_err(|_| {
                format!(
                    "{}: not a phone number (use E.164, \"+46...\")",
                    key(".caller")
                )
            })?),
            (None, Some(raw)) => ScriptSubject::Person(pnr(".personal_number", raw)?),
            _ => {
                return Err(format!(
                    "{}: needs exactly one of caller, personal_number",
                    key("")
                ));
            }
        };
        let outcome = match (self.outcome.simple(), &self.as_person) {
            (None, Some(raw)) => Outcome::ApproveAs(pnr(".as", raw)?),
            (None, None) => return Err(format!("{}: approve-as needs `as`", key(".outcome"))),
            (Some(_), Some(_)) => return Err(format!("{}: only with approve-as", key(".as"))),
            (Some(outcome), None) => outcome,
        };
        Ok(ScriptEntry {
            subject,
            outcome,
            delay_ms: self.delay_ms,
        })
    }
}

fn default_outcome<'de, D: Deserializer<'de>>(d: D) -> Result<Outcome, D::Error> {
    OutcomeKind::deserialize(d)?.simple().ok_or_else(|| {
        serde::de::Error::custom(
            "provider.simulator.default: approve-as is only for script entries (it needs `as`)",
        )
    })
}

fn person_name<'de, D: Deserializer<'de>>(d: D) -> Result<PersonName, D::Error> {
    Ok(PersonName::new(String::deserialize(d)?))
}

fn person<'de, D: Deserializer<'de>>(d: D) -> Result<PersonalNumber, D::Error> {
    PersonalNumber::parse(&String::deserialize(d)?)
        .map_err(|e| serde::de::Error::custom(format!("provider.simulator.person: {e}")))
}

fn script_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<ScriptEntry>, D::Error> {
    Vec::<RawScriptEntry>::deserialize(d)?
        .into_iter()
        .enumerate()
        .map(|(i, raw)| raw.check(i).map_err(serde::de::Error::custom))
        .collect()
}

/// The simulator provider. Cheap to clone; clones share the cancellation counter.
#[derive(Debug, Clone)]
pub struct Simulator {
    config: Arc<SimulatorConfig>,
    cancelled: Arc<AtomicU64>,
}

/// What one order will do: the hint time, the outcome time and the final update.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Plan {
    hint: Duration,
    delay: Duration,
    last: VerifyUpdate,
}

impl Simulator {
    /// A simulator answering as `config` says.
    pub fn new(config: SimulatorConfig) -> Self {
        Self {
            config: Arc::new(config),
            cancelled: Arc::new(AtomicU64::new(0)),
        }
    }

    /// How many orders were cancelled (or dropped) before their outcome.
    pub fn cancelled_count(&self) -> u64 {
        self.cancelled.load(Ordering::Relaxed)
    }

    /// The scripted (or default) outcome for `subject`, and when it comes.
    fn plan(&self, subject: &Subject) -> Plan {
        let config = &self.config;
        let entry = config.script.iter().find(|e| e.subject.applies_to(subject));
        let outcome = entry.map_or(&config.default, |e| &e.outcome);
        let delay_ms = entry.and_then(|e| e.delay_ms).unwrap_or(config.delay_ms);
        Plan {
            hint: Duration::from_millis(config.hint_ms),
            delay: Duration::from_millis(delay_ms),
            last: self.final_update(outcome, subject),
        }
    }

    /// The update an outcome ends with.
    fn final_update(&self, outcome: &Outcome, subject: &Subject) -> VerifyUpdate {
        let complete = |personal_number: PersonalNumber| {
            VerifyUpdate::Complete(VerifiedPerson {
                personal_number,
                name: Some(self.config.person_name.clone()),
            })
        };
        match (outcome, subject) {
            (Outcome::Approve, Subject::Person(p)) => complete(p.clone()),
            (Outcome::Approve, Subject::Phone(_)) => complete(self.config.person.clone()),
            (Outcome::ApproveAs(p), _) => complete(p.clone()),
            (Outcome::Decline, _) => VerifyUpdate::Failed(Failure::Declined),
            (Outcome::NotInCall, _) => VerifyUpdate::Failed(Failure::NotInCall),
            (Outcome::Timeout, _) => VerifyUpdate::Failed(Failure::Timeout),
            (Outcome::RateLimited, _) => VerifyUpdate::Failed(Failure::RateLimited),
            (Outcome::Error, _) => {
                VerifyUpdate::Failed(Failure::Provider("simulated error".to_owned()))
            }
        }
    }
}

impl Provider for Simulator {
    fn method(&self) -> Method {
        Method::Simulator
    }

    fn supports_phone(&self) -> bool {
        true
    }

    fn start(&self, request: VerifyRequest) -> Verification {
        let plan = self.plan(&request.subject);
        let delay_ms = u64::try_from(plan.delay.as_millis()).unwrap_or(u64::MAX);
        tracing::debug!(call = %request.call_id, delay_ms, "simulated eID order");
        let (tx, rx) = mpsc::channel(4);
        let cancel = CancellationToken::new();
        tokio::spawn(run(plan, tx, cancel.clone(), Arc::clone(&self.cancelled)));
        Verification::new(rx, cancel)
    }
}

/// The order's task: `Sent` at once, `CallConfirm` at `hint`, the outcome at `delay`; stops
/// (and counts) when cancelled, and sends nothing after that.
async fn run(
    plan: Plan,
    tx: mpsc::Sender<VerifyUpdate>,
    cancel: CancellationToken,
    cancelled: Arc<AtomicU64>,
) {
    let start = Instant::now();
    let mut steps = vec![(Duration::ZERO, VerifyUpdate::Pending(Hint::Sent))];
    if plan.hint < plan.delay {
        steps.push((plan.hint, VerifyUpdate::Pending(Hint::CallConfirm)));
    }
    steps.push((plan.delay, plan.last));
    for (at, update) in steps {
        tokio::select! {
            biased;
            () = cancel.cancelled() => {
                cancelled.fetch_add(1, Ordering::Relaxed);
                return;
            }
            // `sleep` (unlike `start + at`) cannot overflow on an absurd configured delay.
            () = sleep(at.saturating_sub(start.elapsed())) => {}
        }
        if tx.send(update).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::time::Instant;
    use uuid::Uuid;

    use super::*;
    use crate::config::Config;

    fn pnr(digits: &str) -> PersonalNumber {
        PersonalNumber::parse(digits).unwrap()
    }

    fn phone(raw: &str) -> Subject {
        Subject::Phone(E164::parse(raw, "SE").unwrap())
    }

    fn simulator(toml_text: &str) -> Simulator {
        let config = Config::parse("test.toml", toml_text).unwrap();
        Simulator::new(config.provider.simulator)
    }

    fn start(sim: &Simulator, subject: Subject) -> Verification {
        sim.start(VerifyRequest {
            call_id: Uuid::new_v4(),
            subject,
            language: "sv",
            intent: None,
        })
    }

    /// Every update until the channel closes, with its time since the start.
    async fn collect(mut v: Verification) -> Vec<(u64, VerifyUpdate)> {
        let t0 = Instant::now();
        let mut out = Vec::new();
        while let Some(update) = v.updates.recv().await {
            out.push((t0.elapsed().as_millis() as u64, update));
        }
        out
    }

    async fn outcome(sim: &Simulator, subject: Subject) -> VerifyUpdate {
        collect(start(sim, subject)).await.pop().unwrap().1
    }

    #[tokio::test(start_paused = true)]
    async fn a_phone_push_is_approved_as_the_configured_person_after_three_seconds() {
        let sim = Simulator::new(SimulatorConfig::default());
        assert_eq!(
            (sim.method(), sim.supports_phone()),
            (Method::Simulator, true)
        );
        let updates = collect(start(&sim, phone("+46701234567"))).await;
        let person = VerifiedPerson {
            personal_number: pnr("191212121212"),
            name: Some(PersonName::new("Tolvan Tolvansson".to_owned())),
        };
        let expected = vec![
            (0, VerifyUpdate::Pending(Hint::Sent)),
            (1000, VerifyUpdate::Pending(Hint::CallConfirm)),
            (3000, VerifyUpdate::Complete(person)),
        ];
        assert_eq!(updates, expected);
    }

    #[tokio::test(start_paused = true)]
    async fn a_person_push_is_approved_as_that_person() {
        let sim = Simulator::new(SimulatorConfig::default());
        let VerifyUpdate::Complete(person) =
            outcome(&sim, Subject::Person(pnr("198001019804"))).await
        else {
            panic!("not approved");
        };
        assert_eq!(person.personal_number, pnr("198001019804"));
    }

    #[tokio::test(start_paused = true)]
    async fn each_scripted_outcome_by_caller() {
        let cases = [
            ("decline", VerifyUpdate::Failed(Failure::Declined)),
            ("not-in-call", VerifyUpdate::Failed(Failure::NotInCall)),
            ("timeout", VerifyUpdate::Failed(Failure::Timeout)),
            ("rate-limited", VerifyUpdate::Failed(Failure::RateLimited)),
            (
                "error",
                VerifyUpdate::Failed(Failure::Provider("simulated error".to_owned())),
            ),
        ];
        for (name, expected) in cases {
            let sim = simulator(&format!(
                "[[provider.simulator.script]]\ncaller = \"070-123 45 67\"\noutcome = \"{name}\"\n"
            ));
            assert_eq!(
                outcome(&sim, phone("+46701234567")).await,
                expected,
                "{name}"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn approve_as_completes_with_another_person_by_personal_number() {
        let sim = simulator(
            "[[provider.simulator.script]]\npersonal_number = \"198001019804\"\n\
             outcome = \"approve-as\"\nas = \"199001011239\"\ndelay_ms = 500\n",
        );
        let updates = collect(start(&sim, Subject::Person(pnr("198001019804")))).await;
        // The scripted delay comes before the hint, so there is no hint.
        assert_eq!(updates.len(), 2);
        let (ms, VerifyUpdate::Complete(person)) = &updates[1] else {
            panic!("not approved: {updates:?}");
        };
        assert_eq!((*ms, &person.personal_number), (500, &pnr("199001011239")));
        // The script is by person: a phone push gets the default.
        let VerifyUpdate::Complete(other) = outcome(&sim, phone("+46701234567")).await else {
            panic!("default is approve");
        };
        assert_eq!(other.personal_number, pnr("191212121212"));
    }

    #[tokio::test(start_paused = true)]
    async fn unscripted_subjects_get_the_default() {
        let sim = simulator(
            "[provider.simulator]\ndefault = \"decline\"\n\
             [[provider.simulator.script]]\ncaller = \"+46701234567\"\noutcome = \"approve\"\n",
        );
        assert_eq!(
            outcome(&sim, phone("+46709999999")).await,
            VerifyUpdate::Failed(Failure::Declined)
        );
        let scripted = outcome(&sim, phone("+46701234567")).await;
        assert!(
            matches!(scripted, VerifyUpdate::Complete(_)),
            "{scripted:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn cancel_stops_updates_and_is_counted() {
        let sim = Simulator::new(SimulatorConfig::default());
        let mut v = start(&sim, phone("+46701234567"));
        assert_eq!(
            v.updates.recv().await,
            Some(VerifyUpdate::Pending(Hint::Sent))
        );
        v.cancel();
        let t0 = Instant::now();
        assert_eq!(v.updates.recv().await, None);
        assert_eq!(t0.elapsed(), Duration::ZERO);
        assert_eq!(sim.cancelled_count(), 1);
        // Dropping a running order cancels it too; a finished one is not counted.
        drop(start(&sim, phone("+46701234567")));
        collect(start(&sim, phone("+46701234567"))).await;
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(sim.cancelled_count(), 2);
    }

    #[test]
    fn the_default_person_is_valid() {
        assert_eq!(tolvan(), pnr(TOLVAN));
    }
}
