//! The call task: one loop that turns everything that happens to a call into flow inputs and
//! carries out the flow's actions.

use std::collections::VecDeque;
use std::future::pending;
use std::time::{Instant, SystemTime};

use tokio::time::timeout;
use tracing::{debug, info, warn};
use uuid::Uuid;

use crate::flow::{Action, Flow, Input, Lookup, Outcome, Target, TransferMode};
use crate::identity::headers::{encode_uri_headers, identity_headers_with_token};
use crate::identity::token::CallFacts;
use crate::identity::{CallerId, E164, Verdict};
use crate::media::sdp;
use crate::media::{MediaEvent, MediaStream};
use crate::sip::{IncomingCall, LegEvent, OutboundCall, QueueLeg};
use crate::store::{PushDecision, PushTarget};
use crate::verify::{Failure, Subject, Verification, VerifyRequest, VerifyUpdate};

use super::Services;
use super::setup::{self, Answered};

/// How long idgate waits for the final response to its REFER.
const REFER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(8);

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
}

/// Runs one call from INVITE to its end.
pub(super) async fn run(services: &Services, id: Uuid, call: IncomingCall) {
    if !call.spoofed.is_empty() {
        warn!(headers = ?call.spoofed, "identity headers from the caller side removed (spoofing attempt)");
    }
    let sip_call_id = call.sip_call_id.clone();
    let Some(answered) = setup::answer(services, id, call).await else {
        return;
    };
    let policy = super::policy::for_route(&answered.route, services.provider.as_ref());
    let caller = answered.caller.clone();
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
        let leg = &mut self.answered.leg;
        tokio::select! {
            _ = timer => Event::Timer,
            event = leg.next_event() => Event::Caller(event),
            event = media => Event::Media(event),
            update = verification => Event::Verification(update),
            event = queue => Event::Queue(event),
            status = refer => Event::ReferAnswered(status),
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
        }
    }

    async fn verification_input(&mut self, update: Option<VerifyUpdate>) -> Input {
        let outcome = match &update {
            Some(VerifyUpdate::Pending(_)) => None,
            // The flow may still decide `mismatch`: the provider completed, nothing more.
            Some(VerifyUpdate::Complete(_)) => Some("completed"),
            Some(VerifyUpdate::Failed(f)) => Some(f.reason().as_str()),
            None => Some("provider-error"),
        };
        if let Some(outcome) = outcome {
            self.verification_final = true;
            self.end_attempt(outcome).await;
        }
        match update {
            Some(update) => Input::Verification(update),
            None => Input::VerificationLost,
        }
    }

    /// Records how the running push ended, for the anti push-bombing limits.
    async fn end_attempt(&mut self, outcome: &str) {
        let Some(attempt) = self.attempt.take() else {
            return;
        };
        if let Err(e) = self
            .services
            .store
            .end_push(attempt, outcome, SystemTime::now())
            .await
        {
            warn!(error = %e, "push outcome not recorded");
        }
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
            }
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
        match store
            .begin_push(self.id, target, &self.services.limits, SystemTime::now())
            .await
        {
            Ok(PushDecision::Allowed(attempt)) => self.attempt = Some(attempt),
            Ok(PushDecision::Refused(refusal)) => {
                info!(?refusal, "push refused by the anti push-bombing limits");
                return Some(Input::Verification(VerifyUpdate::Failed(
                    Failure::RateLimited,
                )));
            }
            Err(e) => {
                warn!(error = %e, "push limits could not be checked; no push sent");
                let failure = Failure::Provider("push limits unavailable".to_owned());
                return Some(Input::Verification(VerifyUpdate::Failed(failure)));
            }
        }
        let request = VerifyRequest {
            call_id: self.id,
            subject,
            language: self.answered.route.language.as_str(),
            intent: self.answered.route.intent.clone(),
        };
        self.verification = Some(self.services.provider.start(request));
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
        if let Err(e) = self
            .services
            .store
            .record_verdict(self.id, &verdict, at)
            .await
        {
            warn!(error = %e, "verdict not recorded");
        }
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
        let embedded = encode_uri_headers(headers);
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
        let call = OutboundCall {
            target,
            from_user: from_user(&self.answered.caller),
            from_display: None,
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
        if let Err(e) = self
            .services
            .store
            .finish_call(self.id, outcome, SystemTime::now())
            .await
        {
            warn!(error = %e, "call end not recorded");
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
        Action::Done(_) => "done",
    }
}
