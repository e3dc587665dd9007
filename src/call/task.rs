//! The call task: one loop that turns everything that happens to a call into flow inputs and
//! carries out the flow's actions.

use std::collections::VecDeque;
use std::future::pending;
use std::time::{Instant, SystemTime};

use tokio::time::timeout;
use tracing::{debug, info, warn};
use uuid::Uuid;

use crate::config::Transfer;
use crate::flow::{Action, Flow, Input, Lookup, Outcome, Target, TransferMode};
use crate::identity::headers::{encode_uri_headers, identity_headers_with_token};
use crate::identity::token::CallFacts;
use crate::identity::{CallerId, E164, Verdict};
use crate::media::sdp;
use crate::media::{MediaEvent, MediaStream};
use crate::sip::{IncomingCall, LegEvent, OutboundCall, QueueLeg};
use crate::store::{PushDecision, PushTarget, Record, TransferOutcome};
use crate::verify::{Failure, Subject, Verification, VerifyRequest, VerifyUpdate};

use super::Services;
use super::audit::VerificationAudit;
use super::live::{Command, LiveCall, NewLiveCall};
use super::setup::{self, Answered};

/// How long idgate waits for the final response to its REFER.
const REFER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(8);
/// How long a push check (the anti push-bombing limits, in the database) may take before the
/// call goes on without a push. The journal answers a check in milliseconds, or at once with
/// an error while it knows the database is away; but a check queued while the journal is
/// still retrying earlier writes (or while the pool waits to connect) would otherwise wait for
/// the whole outage, and the call task with it (no hand-off, no hang-up handled).
const PUSH_CHECK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// The queue leg and its media stream.
struct Queue {
    leg: QueueLeg,
    stream: MediaStream,
    /// Whether the queue answered (2xx). A leg that ends before is a failed leg, not a
    /// hang-up: the dialog's end and the INVITE's final response arrive by separate paths and
    /// either may come first.
    answered: bool,
}

/// A call in progress: the flow and the resources its actions act on.
struct Call<'a> {
    services: &'a Services,
    id: Uuid,
    /// The Call-ID of the caller leg (the token's `sip_call_id`).
    sip_call_id: String,
    flow: Flow,
    answered: Answered,
    verification: Option<Verification>,
    verification_final: bool,
    /// The push attempt recorded for the limits, until its outcome is recorded.
    attempt: Option<Uuid>,
    /// A REFER waiting for its final response.
    refer: Option<tokio::task::JoinHandle<u16>>,
    media_open: bool,
    queue: Option<Queue>,
    verdict: Option<Verdict>,
    inputs: VecDeque<Input>,
    /// The call as agents see it.
    live: LiveCall<'a>,
    /// Requests from outside (the agent page's "verify again").
    commands: tokio::sync::mpsc::Receiver<Command>,
    /// The audit row of the running re-verification.
    reverification: Option<Uuid>,
    /// When the caller's ACK came (identification time is counted from here).
    answered_at: Instant,
    /// When the verdict was reached (hand-off time is counted from here).
    decided_at: Option<Instant>,
    /// When the running eID order started (provider latency).
    order_started: Option<Instant>,
    /// The verification steps recorded for the audit trail.
    audit: VerificationAudit,
}

/// Runs one call from INVITE to its end.
pub(super) async fn run(services: &Services, id: Uuid, call: IncomingCall) {
    if !call.spoofed.is_empty() {
        services.metrics.spoofing_attempt();
        warn!(headers = ?call.spoofed, "identity headers from the caller side removed (spoofing attempt)");
        let audit = VerificationAudit::new(id);
        audit.spoofed(&services.store, &call.spoofed, call.source);
    }
    let sip_call_id = call.sip_call_id.clone();
    let Some(answered) = setup::answer(services, id, call).await else {
        return;
    };
    let policy = super::policy::for_route(&answered.route, services.provider.as_ref());
    let caller = answered.caller.clone();
    let (live, commands) = services.registry.open(NewLiveCall {
        id,
        caller: from_user(&caller),
        called: answered.called.clone(),
        route: answered.route.name.clone(),
        mode: answered.route.transfer.as_str(),
        started_at: answered.started_at,
    });
    let mut call = Call {
        services,
        id,
        sip_call_id,
        flow: Flow::new(policy),
        answered,
        verification: None,
        verification_final: false,
        attempt: None,
        refer: None,
        media_open: true,
        queue: None,
        verdict: None,
        inputs: VecDeque::new(),
        live,
        commands,
        reverification: None,
        answered_at: Instant::now(),
        decided_at: None,
        order_started: None,
        audit: VerificationAudit::new(id),
    };
    call.answered.stream.start(
        call.answered.media.remote,
        call.answered.media.codec,
        call.answered.media.dtmf_pt,
    );
    call.feed(Input::Answered { caller });
    call.run().await;
}

impl Call<'_> {
    async fn run(&mut self) {
        loop {
            self.drain().await;
            if self.flow.is_done() {
                break;
            }
            let event = self.next_event().await;
            let timer = matches!(event, Event::Timer);
            match self.input_for(event).await {
                Some(input) => self.feed(input),
                None if timer => self.flow.handle_timeout(Instant::now()),
                None => {}
            }
        }
        self.end_attempt("cancelled").await;
        if let Some(refer) = self.refer.take() {
            refer.abort();
        }
        self.answered.stream.stop();
        if let Some(q) = &self.queue {
            q.stream.stop();
        }
    }

    fn feed(&mut self, input: Input) {
        self.flow.handle(Instant::now(), input);
    }

    /// Carries out every pending action; actions that produce an input feed it back.
    async fn drain(&mut self) {
        loop {
            while let Some(action) = self.flow.poll_action() {
                debug!(
                    state = self.flow.state_name(),
                    action = action_name(&action),
                    "flow action"
                );
                if let Some(input) = self.act(action).await {
                    self.inputs.push_back(input);
                }
            }
            match self.inputs.pop_front() {
                Some(input) => self.feed(input),
                None => break,
            }
        }
    }

    /// Waits for the next thing that happens to the call.
    async fn next_event(&mut self) -> Event {
        let deadline = self.flow.poll_timeout();
        let timer = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
                None => pending::<()>().await,
            }
        };
        let pending_final = !self.verification_final;
        let verification = async {
            match self.verification.as_mut() {
                Some(v) if pending_final => v.updates.recv().await,
                _ => pending().await,
            }
        };
        let queue = async {
            match self.queue.as_mut() {
                Some(q) => q.leg.next_event().await,
                None => pending().await,
            }
        };
        let media_open = self.media_open;
        let stream = &mut self.answered.stream;
        let media = async {
            if media_open {
                stream.events().recv().await
            } else {
                pending().await
            }
        };
        let refer = async {
            match self.refer.as_mut() {
                Some(task) => task.await.unwrap_or(0),
                None => pending().await,
            }
        };
        let commands = &mut self.commands;
        let command = async {
            match commands.recv().await {
                Some(command) => command,
                None => pending().await,
            }
        };
        let leg = &mut self.answered.leg;
        tokio::select! {
            _ = timer => Event::Timer,
            event = leg.next_event() => Event::Caller(event),
            event = media => Event::Media(event),
            update = verification => Event::Verification(update),
            event = queue => Event::Queue(event),
            status = refer => Event::ReferAnswered(status),
            command = command => Event::Command(command),
        }
    }

    /// The flow input an event stands for, if any.
    async fn input_for(&mut self, event: Event) -> Option<Input> {
        match event {
            Event::Timer => None,
            Event::Caller(event) => caller_input(event),
            Event::Media(Some(MediaEvent::PromptDone(p))) => Some(Input::PromptDone(p)),
            Event::Media(Some(MediaEvent::Dtmf(d))) => Some(Input::Digit(d)),
            Event::Media(None) => {
                self.media_open = false;
                None
            }
            Event::Verification(update) => Some(self.verification_input(update).await),
            Event::Queue(event) => self.queue_input(event).await,
            Event::ReferAnswered(status) => self.refer_answered(status),
            Event::Command(command) => {
                self.command(command).await;
                None
            }
        }
    }

    /// A request from outside; the flow decides, the reply says what it decided.
    async fn command(&mut self, command: Command) {
        match command {
            Command::Reverify {
                person,
                requested_by,
                reply,
            } => {
                let result = self.flow.reverify(Instant::now(), person);
                match &result {
                    Ok(()) => self.reverify_started(&requested_by).await,
                    Err(refused) => info!(%refused, requested_by, "verify again refused"),
                }
                // The asker may have given up waiting: nothing to do then.
                let _ = reply.send(result);
            }
        }
    }

    async fn reverify_started(&mut self, requested_by: &str) {
        info!(requested_by, "verify again: a new push to the caller");
        let at = SystemTime::now();
        let store = &self.services.store;
        match store.begin_reverification(self.id, requested_by, at).await {
            Ok(row) => self.reverification = Some(row),
            Err(e) => warn!(error = %e, "verify-again request not recorded"),
        }
        self.live.reverify_started(at);
    }

    async fn reverified(&mut self, verdict: Verdict) {
        info!(
            status = verdict.status_str(),
            reason = verdict.reason().map(|r| r.as_str()),
            "verify again: result"
        );
        if verdict.reason() == Some(crate::identity::Reason::NotInCall) {
            warn!(
                target: "idgate::security",
                "verify again: the person said in the app that they are not in a call with us"
            );
        }
        let at = SystemTime::now();
        if let Some(row) = self.reverification.take()
            && let Err(e) = self
                .services
                .store
                .finish_reverification(row, &verdict, at)
                .await
        {
            warn!(error = %e, "verify-again result not recorded");
        }
        self.services.metrics.reverified(&verdict);
        let can_reverify = self.flow.can_reverify();
        self.live
            .reverified(&verdict, &self.services.headers, can_reverify, at);
    }

    async fn verification_input(&mut self, update: Option<VerifyUpdate>) -> Input {
        self.audit.update(&self.services.store, update.as_ref());
        let outcome = match &update {
            Some(VerifyUpdate::Pending(_)) => None,
            // The flow may still decide `mismatch`: the provider completed, nothing more.
            Some(VerifyUpdate::Complete(_)) => Some("completed"),
            Some(VerifyUpdate::Failed(f)) => Some(f.reason().as_str()),
            None => Some("provider-error"),
        };
        if let Some(outcome) = outcome {
            self.verification_final = true;
            if let Some(started) = self.order_started.take() {
                let method = self.services.provider.method().as_str();
                self.services
                    .metrics
                    .provider_result(method, outcome, started.elapsed());
            }
            self.end_attempt(outcome).await;
        }
        match update {
            Some(update) => Input::Verification(update),
            None => Input::VerificationLost,
        }
    }

    /// Records how the running push ended, for the anti push-bombing limits.
    async fn end_attempt(&mut self, outcome: &str) {
        if outcome == "cancelled" {
            self.audit.cancelled(&self.services.store);
        }
        let Some(attempt) = self.attempt.take() else {
            return;
        };
        self.services.store.record(Record::PushEnded {
            attempt,
            outcome: outcome.to_owned(),
            at: SystemTime::now(),
        });
    }

    async fn queue_input(&mut self, event: Option<LegEvent>) -> Option<Input> {
        match event {
            Some(LegEvent::Answered { sdp }) => self.queue_answered(&sdp).await,
            Some(LegEvent::Failed { code }) => {
                info!(code, "queue leg failed");
                self.queue = None;
                Some(Input::QueueFailed)
            }
            Some(LegEvent::Ended(_)) | None => {
                let answered = self.queue.take().is_some_and(|q| q.answered);
                Some(if answered {
                    Input::QueueHangup
                } else {
                    Input::QueueFailed
                })
            }
            Some(_) => None,
        }
    }

    /// Starts the queue leg's media towards the queue's answer, or gives up on the leg.
    async fn queue_answered(&mut self, answer: &[u8]) -> Option<Input> {
        let queue = self.queue.as_mut()?;
        queue.answered = true;
        let parsed = std::str::from_utf8(answer)
            .ok()
            .and_then(|text| sdp::parse_answer(text, self.answered.media.codec).ok());
        match parsed {
            Some(media) => {
                queue.stream.set_remote(media.remote);
                queue.stream.set_dtmf_pt(media.dtmf_pt);
                Some(Input::QueueAnswered)
            }
            None => {
                warn!("queue answered with an unusable SDP: leg ended");
                queue.leg.hang_up().await;
                self.queue = None;
                Some(Input::QueueFailed)
            }
        }
    }
}

/// Something that happened to a call.
enum Event {
    Timer,
    Caller(Option<LegEvent>),
    Media(Option<MediaEvent>),
    Verification(Option<VerifyUpdate>),
    Queue(Option<LegEvent>),
    ReferAnswered(u16),
    Command(Command),
}

fn caller_input(event: Option<LegEvent>) -> Option<Input> {
    match event {
        Some(LegEvent::Dtmf(d)) => Some(Input::Digit(d)),
        Some(LegEvent::ReferProgress { code }) if (200..300).contains(&code) => {
            Some(Input::ReferAccepted)
        }
        Some(LegEvent::ReferProgress { code }) if code >= 300 => Some(Input::ReferFailed),
        Some(LegEvent::Ended(_)) | None => Some(Input::CallerHangup),
        Some(_) => None,
    }
}

impl Call<'_> {
    /// Carries out one action; returns the input it produced, if any.
    async fn act(&mut self, action: Action) -> Option<Input> {
        match action {
            Action::Play { prompt, then_hold } => self.answered.stream.play(prompt, then_hold),
            Action::Hold => self.answered.stream.hold(),
            Action::LookupCustomer(number) => return Some(self.lookup(&number).await),
            Action::StartVerification(subject) => return self.start_verification(subject).await,
            Action::CancelVerification => {
                if let Some(v) = self.verification.take() {
                    v.cancel();
                }
                self.end_attempt("cancelled").await;
            }
            Action::Decided(verdict) => self.decided(verdict).await,
            Action::Transfer { mode, target } => return self.transfer(mode, target).await,
            Action::CancelQueueLeg => {
                if let Some(q) = self.queue.take() {
                    q.leg.hang_up().await;
                    q.stream.stop();
                }
            }
            Action::Bridge => {
                if let Some(q) = &self.queue {
                    self.answered.stream.bridge(&q.stream);
                }
                self.live
                    .connected(self.flow.can_reverify(), SystemTime::now());
                if let Some(decided) = self.decided_at {
                    self.services.metrics.handed_off(decided.elapsed());
                }
            }
            Action::Reverified(verdict) => self.reverified(verdict).await,
            Action::HangUpCaller => self.answered.leg.hang_up().await,
            Action::Done(outcome) => self.finish(outcome).await,
        }
        None
    }

    async fn lookup(&self, number: &E164) -> Input {
        match self.services.directory.lookup(number).await {
            Ok(Some(entry)) => Input::DirectoryAnswer(Lookup::Found(entry.personal_number)),
            Ok(None) => Input::DirectoryAnswer(Lookup::NotFound),
            Err(e) => {
                warn!(error = %e, "directory lookup failed");
                Input::DirectoryAnswer(Lookup::Failed)
            }
        }
    }

    /// Starts a push if the anti push-bombing limits allow it; a refusal is the provider's
    /// `RateLimited`. If the database cannot be asked, no push is sent (the limits protect the
    /// person who gets the push) and the caller goes on unverified with `provider-error`.
    async fn start_verification(&mut self, subject: Subject) -> Option<Input> {
        let caller = match &self.answered.caller {
            CallerId::Number(n) => Some(n),
            _ => None,
        };
        let person = match &subject {
            Subject::Person(p) => Some(p),
            Subject::Phone(_) => None,
        };
        let target = PushTarget { caller, person };
        let store = &self.services.store;
        let check = store.begin_push(self.id, target, &self.services.limits, SystemTime::now());
        let checked = timeout(PUSH_CHECK_TIMEOUT, check)
            .await
            .unwrap_or_else(|_| {
                Err(crate::store::StoreError::Unavailable {
                    op: "begin_push",
                    detail: format!("no answer within {PUSH_CHECK_TIMEOUT:?}"),
                })
            });
        match checked {
            Ok(PushDecision::Allowed(attempt)) => self.attempt = Some(attempt),
            Ok(PushDecision::Refused(refusal)) => {
                info!(?refusal, "push refused by the anti push-bombing limits");
                self.services.metrics.push_refused("rate-limited");
                let method = self.services.provider.method();
                let failure = Failure::RateLimited;
                self.audit.not_sent(store, method, &failure);
                return Some(Input::Verification(VerifyUpdate::Failed(failure)));
            }
            Err(e) => {
                warn!(error = %e, "push limits could not be checked; no push sent");
                self.services.metrics.push_refused("limits-unavailable");
                let failure = Failure::Provider("push limits unavailable".to_owned());
                let method = self.services.provider.method();
                self.audit.not_sent(store, method, &failure);
                return Some(Input::Verification(VerifyUpdate::Failed(failure)));
            }
        }
        self.order_started = Some(Instant::now());
        let request = VerifyRequest {
            call_id: self.id,
            subject,
            language: self.answered.route.language.as_str(),
            intent: self.answered.route.intent.clone(),
        };
        let verification = self.services.provider.start(request);
        let method = self.services.provider.method();
        let now = SystemTime::now();
        self.audit.started(method, verification.order_ref(), now);
        self.verification = Some(verification);
        self.verification_final = false;
        None
    }

    async fn decided(&mut self, verdict: Verdict) {
        info!(
            status = verdict.status_str(),
            reason = verdict.reason().map(|r| r.as_str()),
            "verdict"
        );
        if verdict.reason() == Some(crate::identity::Reason::NotInCall) {
            warn!(
                target: "idgate::security",
                "the person said in the app that they are not in a call with us: a fraud signal"
            );
        }
        let at = SystemTime::now();
        self.services.store.record(Record::Verdict {
            id: self.id,
            verdict: verdict.clone(),
            at,
        });
        self.live.decided(&verdict, &self.services.headers, at);
        self.decided_at = Some(Instant::now());
        self.services
            .metrics
            .decided(&verdict, self.answered_at.elapsed());
        self.verdict = Some(verdict);
    }

    /// Hands the call to the queue. A REFER that fails at once is reported as `ReferFailed`
    /// (the flow then falls back to B2BUA); a B2BUA leg that cannot even start is `QueueFailed`.
    async fn transfer(&mut self, mode: TransferMode, target: Target) -> Option<Input> {
        let route = &self.answered.route;
        let uri = match target {
            Target::Primary => route.target.as_str().to_string(),
            Target::Fallback => route
                .fallback
                .as_ref()
                .unwrap_or(&route.target)
                .as_str()
                .to_string(),
        };
        let headers = self.identity_headers();
        if mode == TransferMode::B2bua && route.transfer == Transfer::Refer {
            // The REFER was refused: the call row says how the call really went.
            self.services.store.record(Record::TransferMode {
                id: self.id,
                mode: Transfer::B2bua,
            });
        }
        match mode {
            TransferMode::Refer => self.refer(&uri, &headers),
            TransferMode::B2bua => self.invite_queue(uri, headers).await,
        }
    }

    fn identity_headers(&self) -> Vec<(String, String)> {
        let verdict = self.verdict.clone().unwrap_or(Verdict::Unverified {
            reason: crate::identity::Reason::ProviderError,
            method: None,
        });
        let facts = CallFacts {
            call: self.id,
            sip_call_id: &self.sip_call_id,
            caller: &self.answered.caller,
        };
        let opts = &self.services.headers;
        let token = self
            .services
            .tokens
            .issue(&verdict, facts, opts, SystemTime::now());
        identity_headers_with_token(&verdict, self.id, opts, &token)
    }

    /// Sends the REFER as a task of its own: the loop goes on handling the caller's events
    /// until its final response arrives (`Event::ReferAnswered`).
    fn refer(&mut self, uri: &str, headers: &[(String, String)]) -> Option<Input> {
        let prefix = &self.services.headers.prefix;
        let choice = self.answered.route.refer_to_headers;
        let in_uri: Vec<(String, String)> = headers
            .iter()
            .filter(
                |(name, _)| match crate::identity::headers::strip_prefix(name, prefix) {
                    Some(suffix) => choice.embeds(suffix),
                    // Headers outside the prefix (User-to-User) go where the short form goes.
                    None => choice == crate::config::ReferToHeaders::All,
                },
            )
            .cloned()
            .collect();
        let embedded = encode_uri_headers(&in_uri);
        let referred_by = format!("sip:idgate@{}", self.services.sip.local_addr());
        let refer = self
            .answered
            .leg
            .refer(uri, headers, &embedded, &referred_by);
        self.refer = Some(tokio::spawn(async move {
            timeout(REFER_TIMEOUT, refer).await.unwrap_or(0)
        }));
        None
    }

    /// The REFER's final status: a refusal (or none) is `ReferFailed`; acceptance waits for
    /// the NOTIFY sipfrag that says the transfer worked.
    fn refer_answered(&mut self, status: u16) -> Option<Input> {
        self.refer = None;
        info!(status, "REFER answered");
        (!(200..300).contains(&status)).then_some(Input::ReferFailed)
    }

    async fn invite_queue(
        &mut self,
        target: String,
        headers: Vec<(String, String)>,
    ) -> Option<Input> {
        let prompts = self.answered.prompts.clone();
        let stream = match self.services.media.open(prompts).await {
            Ok(s) => s,
            Err(e) => {
                warn!(error = %e, "no media for the queue leg");
                return Some(Input::QueueFailed);
            }
        };
        let media = &self.answered.media;
        let offer = sdp::offer(
            self.services.media_ip,
            stream.local_addr().port(),
            u64::from(self.id.as_fields().1),
            media.codec,
            media.dtmf_pt,
        );
        // With `identity.display_tag` off the queue leg keeps no display name, as before: the
        // caller's own name passed through untagged would show a forged "✔ Verified" with
        // nothing next to it to contradict it, and the PBX still shows the number (From user).
        let from_display = self.services.headers.display_tags.as_ref().map(|tags| {
            crate::identity::headers::queue_display_name(
                self.verdict.as_ref(),
                &self.answered.caller,
                self.answered.caller_display_name.as_ref(),
                tags,
            )
        });
        let call = OutboundCall {
            target,
            from_user: from_user(&self.answered.caller),
            from_display,
            headers,
            offer: offer.into_bytes(),
        };
        match self.services.sip.place_call(call) {
            Ok(leg) => {
                self.queue = Some(Queue {
                    leg,
                    stream,
                    answered: false,
                });
                None
            }
            Err(e) => {
                warn!(error = %e, "queue INVITE not sent");
                Some(Input::QueueFailed)
            }
        }
    }

    async fn finish(&mut self, outcome: Outcome) {
        let outcome = match outcome {
            Outcome::Connected => "connected",
            Outcome::Referred => "referred",
            Outcome::Abandoned => "abandoned",
            Outcome::QueueUnavailable => "queue-unavailable",
        };
        info!(outcome, "call ended");
        // Queued before the call leaves the live registry: a drain that sees no live calls
        // then flushes this record too.
        match TransferOutcome::parse(outcome) {
            Some(outcome) => self.services.store.record(Record::Ended {
                id: self.id,
                outcome,
                at: SystemTime::now(),
            }),
            None => warn!(outcome, "call end not recorded: not a stored outcome"),
        }
        self.live.ended(outcome, SystemTime::now());
        self.services.metrics.ended(outcome);
        if outcome == "referred"
            && let Some(decided) = self.decided_at
        {
            self.services.metrics.handed_off(decided.elapsed());
        }
    }
}

/// The From user on the queue leg: the caller's E.164 number, or `anonymous`.
fn from_user(caller: &CallerId) -> String {
    match caller {
        CallerId::Number(n) => n.as_str().to_string(),
        _ => "anonymous".to_string(),
    }
}

fn action_name(action: &Action) -> &'static str {
    match action {
        Action::Play { .. } => "play",
        Action::Hold => "hold",
        Action::LookupCustomer(_) => "lookup",
        Action::StartVerification(_) => "start-verification",
        Action::CancelVerification => "cancel-verification",
        Action::Decided(_) => "decided",
        Action::Transfer { .. } => "transfer",
        Action::CancelQueueLeg => "cancel-queue-leg",
        Action::Bridge => "bridge",
        Action::HangUpCaller => "hang-up-caller",
        Action::Reverified(_) => "reverified",
        Action::Done(_) => "done",
    }
}
