//! Whether this instance takes a new call: overload limits (calls at once, new calls per
//! second) and draining. Checked for every INVITE before anything is answered; a refusal is a
//! 503 with `Retry-After`. Time is a parameter, so the limits are tested without a clock.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::config::AdmissionConfig;
use crate::media::MediaCounters;

/// Why a new call is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The instance is draining.
    #[error("draining")]
    Draining,
    /// `admission.max_calls` calls are in progress.
    #[error("too many calls in progress")]
    TooManyCalls,
    /// More than `admission.max_calls_per_second` new calls.
    #[error("too many new calls per second")]
    TooFast,
    /// The media pump cannot keep up (`MediaCounters::overloaded`).
    #[error("media overloaded")]
    MediaOverload,
}

impl Refusal {
    /// A token for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Draining => "draining",
            Refusal::TooManyCalls => "max-calls",
            Refusal::TooFast => "max-calls-per-second",
            Refusal::MediaOverload => "media-overload",
        }
    }
}

/// A token bucket: `rate` tokens per second, at most `rate` stored.
#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Option<Instant>,
}

/// The admission state of this instance, shared by the SIP intake and the API.
#[derive(Debug)]
pub struct Admission {
    max_calls: u64,
    rate: u32,
    retry_after: u32,
    draining: AtomicBool,
    drain_started: tokio::sync::Notify,
    bucket: Mutex<Bucket>,
    /// The media engine's counters, for its overload signal (none in tests that don't care).
    media: Option<Arc<MediaCounters>>,
}

impl Admission {
    /// The limits of `[admission]`.
    pub fn new(config: &AdmissionConfig) -> Self {
        Self {
            max_calls: config.max_calls,
            rate: config.max_calls_per_second,
            retry_after: config.retry_after_secs,
            draining: AtomicBool::new(false),
            drain_started: tokio::sync::Notify::new(),
            bucket: Mutex::new(Bucket {
                tokens: f64::from(config.max_calls_per_second),
                at: None,
            }),
            media: None,
        }
    }

    /// Also refuses new calls while the media engine is overloaded.
    pub fn with_media(mut self, media: Arc<MediaCounters>) -> Self {
        self.media = Some(media);
        self
    }

    fn media_overloaded(&self) -> bool {
        self.media.as_ref().is_some_and(|m| m.overloaded())
    }

    /// Takes a new call when `active` calls are in progress at `now`, or says why not. A call
    /// refused for its rate does not use up a token.
    pub fn admit(&self, active: u64, now: Instant) -> Result<(), Refusal> {
        self.ready(active)?;
        if self.rate == 0 {
            return Ok(());
        }
        let mut bucket = self.bucket.lock().unwrap_or_else(|e| e.into_inner());
        let rate = f64::from(self.rate);
        let elapsed = bucket
            .at
            .map_or(Duration::ZERO, |at| now.saturating_duration_since(at));
        bucket.tokens = (bucket.tokens + elapsed.as_secs_f64() * rate).min(rate);
        bucket.at = Some(now);
        if bucket.tokens < 1.0 {
            return Err(Refusal::TooFast);
        }
        bucket.tokens -= 1.0;
        Ok(())
    }

    /// Whether a load balancer should send new calls here (`/readyz`, OPTIONS).
    pub fn ready(&self, active: u64) -> Result<(), Refusal> {
        if self.is_draining() {
            return Err(Refusal::Draining);
        }
        if self.max_calls > 0 && active >= self.max_calls {
            return Err(Refusal::TooManyCalls);
        }
        if self.media_overloaded() {
            return Err(Refusal::MediaOverload);
        }
        Ok(())
    }

    /// Starts draining; `true` the first time.
    pub fn drain(&self) -> bool {
        let first = !self.draining.swap(true, Ordering::SeqCst);
        if first {
            self.drain_started.notify_waiters();
        }
        first
    }

    /// Whether draining has started.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Waits until draining starts (at once if it has).
    pub async fn drain_started(&self) {
        let notified = self.drain_started.notified();
        if self.is_draining() {
            return;
        }
        notified.await;
    }

    /// The `Retry-After` seconds for a 503.
    pub fn retry_after(&self) -> u32 {
        self.retry_after
    }
}

/// The SIP layer's view of admission: the limits, the live-call count, and a metric and a log
/// line per refusal; refused untrusted sources go to the audit trail.
#[derive(Debug)]
pub struct CallGate {
    admission: Arc<Admission>,
    registry: Arc<super::Registry>,
    metrics: Arc<crate::metrics::Metrics>,
    store: crate::store::Store,
    /// When each untrusted source was last recorded: a scanner's flood is one row a minute per
    /// source, not one per INVITE.
    untrusted_seen: Mutex<HashMap<IpAddr, Instant>>,
}

/// At most one `untrusted-source` event per source within this.
const UNTRUSTED_EVERY: Duration = Duration::from_secs(60);
/// Sources remembered for that; beyond it the memory is cleared (a bound, not an LRU).
const UNTRUSTED_SOURCES: usize = 4096;

impl CallGate {
    /// The gate over these parts (shared with `Services`).
    pub fn new(
        admission: Arc<Admission>,
        registry: Arc<super::Registry>,
        metrics: Arc<crate::metrics::Metrics>,
        store: crate::store::Store,
    ) -> Self {
        Self {
            admission,
            registry,
            metrics,
            store,
            untrusted_seen: Mutex::new(HashMap::new()),
        }
    }

    /// Whether a refusal of `source` at `now` is recorded (first time, or a minute later).
    fn record_untrusted(&self, source: IpAddr, now: Instant) -> bool {
        let mut seen = self
            .untrusted_seen
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if seen.len() >= UNTRUSTED_SOURCES {
            seen.clear();
        }
        match seen.get(&source) {
            Some(at) if now.saturating_duration_since(*at) < UNTRUSTED_EVERY => false,
            _ => {
                seen.insert(source, now);
                true
            }
        }
    }
}

impl crate::sip::Admit for CallGate {
    fn admit_call(&self) -> Result<(), u32> {
        let active = self.registry.active();
        self.admission
            .admit(active, Instant::now())
            .map_err(|refusal| {
                tracing::info!(why = refusal.as_str(), active, "INVITE refused with 503");
                self.metrics.rejected(503);
                self.admission.retry_after()
            })
    }

    fn accepting(&self) -> Result<(), u32> {
        self.admission
            .ready(self.registry.active())
            .map_err(|_| self.admission.retry_after())
    }

    fn untrusted(&self, source: Option<IpAddr>) {
        self.metrics.rejected(403);
        let Some(source) = source.filter(|s| self.record_untrusted(*s, Instant::now())) else {
            return;
        };
        let event = crate::store::SecurityEvent {
            at: std::time::SystemTime::now(),
            call_id: None,
            kind: crate::store::SecurityEventKind::UntrustedSource,
            detail: None,
            source: Some(source),
        };
        self.store
            .record(crate::store::Record::SecurityEvent(event));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admission(max_calls: u64, rate: u32) -> Admission {
        Admission::new(&AdmissionConfig {
            max_calls,
            max_calls_per_second: rate,
            ..AdmissionConfig::default()
        })
    }

    fn ms(t0: Instant, ms: u64) -> Instant {
        t0 + Duration::from_millis(ms)
    }

    #[test]
    fn calls_at_once_are_capped() {
        let a = admission(2, 0);
        let t0 = Instant::now();
        assert_eq!(a.admit(0, t0), Ok(()));
        assert_eq!(a.admit(1, t0), Ok(()));
        assert_eq!(a.admit(2, t0), Err(Refusal::TooManyCalls));
        assert_eq!(a.ready(2), Err(Refusal::TooManyCalls));
        assert_eq!(a.ready(1), Ok(()));
        let unlimited = admission(0, 0);
        assert_eq!(unlimited.admit(1_000_000, t0), Ok(()));
    }

    #[test]
    fn the_rate_is_a_bucket_refilled_per_second() {
        let a = admission(0, 10);
        let t0 = Instant::now();
        let burst = (0..15).filter(|_| a.admit(0, t0).is_ok()).count();
        assert_eq!(burst, 10, "a full bucket, then refusals");
        assert_eq!(
            a.admit(0, ms(t0, 50)),
            Err(Refusal::TooFast),
            "half a token"
        );
        assert_eq!(a.admit(0, ms(t0, 100)), Ok(()), "one token after 100 ms");
        let later = (0..20)
            .filter(|_| a.admit(0, ms(t0, 10_000)).is_ok())
            .count();
        assert_eq!(later, 10, "the bucket never holds more than one second");
    }

    #[test]
    fn a_media_pump_behind_refuses_new_calls_until_it_keeps_up() {
        let media = Arc::new(MediaCounters::default());
        let a = admission(10, 0).with_media(Arc::clone(&media));
        let t0 = Instant::now();
        assert_eq!(a.admit(0, t0), Ok(()));
        media.pumps_behind.store(1, Ordering::Relaxed);
        assert_eq!(a.admit(0, t0), Err(Refusal::MediaOverload));
        assert_eq!(a.ready(0), Err(Refusal::MediaOverload));
        assert_eq!(Refusal::MediaOverload.as_str(), "media-overload");
        media.pumps_behind.store(0, Ordering::Relaxed);
        assert_eq!(a.admit(0, t0), Ok(()));
        assert_eq!(a.ready(0), Ok(()));
    }

    #[test]
    fn draining_refuses_everything_new() {
        let a = admission(0, 0);
        assert!(!a.is_draining());
        assert!(a.drain());
        assert!(!a.drain(), "only the first call starts it");
        assert_eq!(a.admit(0, Instant::now()), Err(Refusal::Draining));
        assert_eq!(a.ready(0), Err(Refusal::Draining));
    }

    #[tokio::test]
    async fn untrusted_sources_are_recorded_once_a_minute_each() {
        use crate::sip::Admit;
        let store = crate::store::Store::memory().await.unwrap();
        let gate = CallGate::new(
            Arc::new(admission(0, 0)),
            Arc::new(super::super::Registry::default()),
            Arc::new(crate::metrics::Metrics::new(Arc::default())),
            store.clone(),
        );
        let (a, b): (IpAddr, IpAddr) = ("10.9.8.7".parse().unwrap(), "10.9.8.8".parse().unwrap());
        let t0 = Instant::now();
        assert!(gate.record_untrusted(a, t0));
        assert!(!gate.record_untrusted(a, t0 + Duration::from_secs(59)));
        assert!(gate.record_untrusted(b, t0 + Duration::from_secs(59)));
        assert!(gate.record_untrusted(a, t0 + Duration::from_secs(61)));

        let flooder: IpAddr = "192.0.2.66".parse().unwrap();
        for _ in 0..50 {
            gate.untrusted(Some(flooder));
        }
        let since = std::time::UNIX_EPOCH;
        // The writes are spawned: wait (bounded) for the first, then a little for any others.
        for _ in 0..200 {
            if !store.security_events_since(since).await.unwrap().is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        let rows = store.security_events_since(since).await.unwrap();
        assert_eq!(rows.len(), 1, "{rows:?}");
        assert_eq!(
            rows[0].kind,
            crate::store::SecurityEventKind::UntrustedSource
        );
        assert_eq!(rows[0].source, Some(flooder));
        let text = gate.metrics.encode(0, false);
        assert!(
            text.contains(r#"idgate_calls_rejected_total{status="403"} 50"#),
            "{text}"
        );
    }

    #[tokio::test]
    async fn waiting_for_the_drain() {
        let a = std::sync::Arc::new(admission(0, 0));
        let waiter = tokio::spawn({
            let a = a.clone();
            async move { a.drain_started().await }
        });
        tokio::task::yield_now().await;
        a.drain();
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("woken")
            .expect("task");
        tokio::time::timeout(Duration::from_secs(5), a.drain_started())
            .await
            .expect("at once once draining");
    }
}
