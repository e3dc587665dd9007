//! Prometheus metrics (`GET /metrics`, OpenMetrics text): calls by verdict and reason, how
//! calls ended, provider latency, call setup / identification / hand-off times, refusals,
//! spoofing attempts, re-verifications, and the media path's packet counts. Labels are closed
//! sets of tokens (reasons, methods, outcomes, status codes): never a number or a name.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::identity::Verdict;
use crate::media::MediaCounters;
use crate::media::engine::LatenessSnapshot;
use crate::store::JournalStats;

type Labels<const N: usize> = [(&'static str, &'static str); N];

/// Seconds from 10 ms to about 5 min: provider round trips (an eID order waits for a person).
fn slow_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.01, 2.0, 16))
}

/// Seconds from 1 ms to about 16 s: SIP set-up and hand-off.
fn fast_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

/// Every metric idgate exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    verdicts: Family<Labels<3>, Counter>,
    outcomes: Family<Labels<1>, Counter>,
    rejected: Family<Labels<1>, Counter>,
    provider_latency: Family<Labels<2>, Histogram, fn() -> Histogram>,
    setup: Histogram,
    identification: Histogram,
    handoff: Histogram,
    spoofing: Counter,
    push_refusals: Family<Labels<1>, Counter>,
    reverifications: Family<Labels<2>, Counter>,
    active_calls: Gauge,
    draining: Gauge,
}

impl Metrics {
    /// The metrics, with the media engine's counters read at each scrape.
    pub fn new(media: Arc<MediaCounters>) -> Self {
        let mut registry = Registry::with_prefix("idgate");
        let verdicts = Family::<Labels<3>, Counter>::default();
        registry.register(
            "calls_decided",
            "Verdicts reached, by status, reason (none when verified) and method",
            verdicts.clone(),
        );
        let outcomes = Family::<Labels<1>, Counter>::default();
        registry.register(
            "calls_ended",
            "Answered calls that ended, by outcome",
            outcomes.clone(),
        );
        let rejected = Family::<Labels<1>, Counter>::default();
        registry.register(
            "calls_rejected",
            "INVITEs refused before answer, by SIP status (403 untrusted, 404 no route, 488 no codec, 503 overload or draining)",
            rejected.clone(),
        );
        let provider_latency =
            Family::<Labels<2>, Histogram, fn() -> Histogram>::new_with_constructor(slow_buckets);
        registry.register(
            "provider_latency_seconds",
            "From starting an eID order to its final result, by method and result",
            provider_latency.clone(),
        );
        let setup = fast_buckets();
        registry.register(
            "call_setup_seconds",
            "From INVITE to the caller's ACK of idgate's 200 OK",
            setup.clone(),
        );
        let identification = slow_buckets();
        registry.register(
            "identification_seconds",
            "From answer to the verdict",
            identification.clone(),
        );
        let handoff = fast_buckets();
        registry.register(
            "handoff_seconds",
            "From the verdict to the queue's answer (B2BUA) or the REFER's success",
            handoff.clone(),
        );
        let spoofing = Counter::default();
        registry.register(
            "spoofing_attempts",
            "INVITEs that carried identity headers from the caller side (removed)",
            spoofing.clone(),
        );
        let push_refusals = Family::<Labels<1>, Counter>::default();
        registry.register(
            "push_refusals",
            "Pushes not sent, by why (rate-limited by the anti push-bombing limits, limits-unavailable)",
            push_refusals.clone(),
        );
        let reverifications = Family::<Labels<2>, Counter>::default();
        registry.register(
            "reverifications",
            "Agents' verify-again results, by status and reason",
            reverifications.clone(),
        );
        let active_calls = Gauge::default();
        registry.register(
            "active_calls",
            "Calls in progress on this instance",
            active_calls.clone(),
        );
        let draining = Gauge::default();
        registry.register(
            "draining",
            "1 while the instance drains (refuses new calls), else 0",
            draining.clone(),
        );
        registry.register_collector(Box::new(MediaCollector(media)));
        Self {
            registry,
            verdicts,
            outcomes,
            rejected,
            provider_latency,
            setup,
            identification,
            handoff,
            spoofing,
            push_refusals,
            reverifications,
            active_calls,
            draining,
        }
    }

    /// A verdict was reached after `identifying` (from answer).
    pub fn decided(&self, verdict: &Verdict, identifying: Duration) {
        let labels = [
            ("status", verdict.status_str()),
            ("reason", verdict.reason().map_or("none", |r| r.as_str())),
            ("method", verdict.method().map_or("none", |m| m.as_str())),
        ];
        self.verdicts.get_or_create(&labels).inc();
        self.identification.observe(identifying.as_secs_f64());
    }

    /// An answered call ended (`connected`, `referred`, `abandoned`, `queue-unavailable`).
    pub fn ended(&self, outcome: &'static str) {
        self.outcomes.get_or_create(&[("outcome", outcome)]).inc();
    }

    /// An INVITE was refused before answer with `status`.
    pub fn rejected(&self, status: u16) {
        let code = match status {
            403 => "403",
            404 => "404",
            486 => "486",
            488 => "488",
            500 => "500",
            503 => "503",
            _ => "other",
        };
        self.rejected.get_or_create(&[("status", code)]).inc();
    }

    /// An eID order ended with `result` (`completed` or a reason token) after `took`.
    pub fn provider_result(&self, method: &'static str, result: &'static str, took: Duration) {
        self.provider_latency
            .get_or_create(&[("method", method), ("result", result)])
            .observe(took.as_secs_f64());
    }

    /// The caller's ACK arrived `took` after the INVITE.
    pub fn answered(&self, took: Duration) {
        self.setup.observe(took.as_secs_f64());
    }

    /// The queue took the call `took` after the verdict.
    pub fn handed_off(&self, took: Duration) {
        self.handoff.observe(took.as_secs_f64());
    }

    /// Identity headers arrived from the caller side.
    pub fn spoofing_attempt(&self) {
        self.spoofing.inc();
    }

    /// A push was not sent (`rate-limited`, `limits-unavailable`).
    pub fn push_refused(&self, why: &'static str) {
        self.push_refusals.get_or_create(&[("why", why)]).inc();
    }

    /// An agent's re-verification ended.
    pub fn reverified(&self, verdict: &Verdict) {
        let labels = [
            ("status", verdict.status_str()),
            ("reason", verdict.reason().map_or("none", |r| r.as_str())),
        ];
        self.reverifications.get_or_create(&labels).inc();
    }

    /// Adds the database journal's counters (`idgate_db_*`) to every scrape.
    pub fn watch_journal(&mut self, stats: Arc<JournalStats>) {
        self.registry
            .register_collector(Box::new(JournalCollector(stats)));
    }

    /// The OpenMetrics text, with the gauges read now.
    pub fn encode(&self, active_calls: u64, draining: bool) -> String {
        self.active_calls
            .set(i64::try_from(active_calls).unwrap_or(i64::MAX));
        self.draining.set(i64::from(draining));
        let mut text = String::new();
        // Writing to a String cannot fail; an encoder error would be a bug in a metric.
        if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &self.registry) {
            tracing::error!(error = %e, "metrics not encoded");
        }
        text
    }
}

/// The database journal's counters (`store::journal`), read at each scrape.
#[derive(Debug)]
struct JournalCollector(Arc<JournalStats>);

impl Collector for JournalCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let j = &self.0;
        let counters = [
            (
                "db_writes",
                "Database writes committed by the journal",
                &j.written,
            ),
            (
                "db_writes_failed",
                "Database writes refused for a reason of their own (each logged)",
                &j.failed,
            ),
            (
                "db_records_lost",
                "Call records dropped: the write queue was full (database away too long)",
                &j.lost,
            ),
            (
                "db_batches",
                "Transactions the journal committed",
                &j.batches,
            ),
        ];
        for (name, help, value) in counters {
            let counter = ConstCounter::new(value.load(Ordering::Relaxed));
            let metric = encoder.encode_descriptor(name, help, None, counter.metric_type())?;
            counter.encode(metric)?;
        }
        let queued =
            ConstGauge::new(i64::try_from(j.queued.load(Ordering::Relaxed)).unwrap_or(i64::MAX));
        let metric = encoder.encode_descriptor(
            "db_writes_queued",
            "Database writes waiting in the journal now",
            None,
            queued.metric_type(),
        )?;
        queued.encode(metric)
    }
}

/// The media engine's counters, read at each scrape.
#[derive(Debug)]
struct MediaCollector(Arc<MediaCounters>);

impl Collector for MediaCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let c = &self.0;
        let counters = [
            (
                "rtp_packets_sent",
                "RTP packets sent (prompts, hold music, relay)",
                &c.packets_sent,
            ),
            (
                "rtp_packets_not_sent",
                "RTP packets dropped at send (socket buffer full or error)",
                &c.packets_not_sent,
            ),
            (
                "rtp_packets_received",
                "RTP datagrams received",
                &c.packets_received,
            ),
            (
                "rtcp_packets_received",
                "RTCP packets received from far ends",
                &c.rtcp_received,
            ),
            (
                "rtcp_packets_sent",
                "RTCP packets sent (idgate's own reports, and far ends' re-issued on the bridged leg)",
                &c.rtcp_sent,
            ),
            (
                "rtp_packets_lost",
                "RTP packets far ends sent that never arrived (from sequence numbers, added when a leg ends)",
                &c.packets_lost,
            ),
            (
                "srtp_auth_failures",
                "SRTP/SRTCP packets dropped on the caller leg: failed authentication or replay",
                &c.srtp_auth_failures,
            ),
            (
                "rtp_frames_skipped",
                "RTP frames never sent because the media pump fell more than 3 frames behind",
                &c.frames_skipped,
            ),
        ];
        for (name, help, value) in counters {
            let counter = ConstCounter::new(value.load(Ordering::Relaxed));
            let metric = encoder.encode_descriptor(name, help, None, counter.metric_type())?;
            counter.encode(metric)?;
        }
        let gauges = [
            ("media_streams", "RTP streams open now", &c.streams),
            (
                "media_streams_paced",
                "RTP streams the media pump paces now (started, bridged ones included)",
                &c.paced,
            ),
            (
                "media_pumps_behind",
                "Media pump threads behind their deadlines now; while above 0, new calls get 503",
                &c.pumps_behind,
            ),
            (
                "media_raw_send_pumps",
                "Media pump threads sending through a raw socket (media.raw_send)",
                &c.raw_pumps,
            ),
        ];
        for (name, help, value) in gauges {
            let gauge =
                ConstGauge::new(i64::try_from(value.load(Ordering::Relaxed)).unwrap_or(i64::MAX));
            let metric = encoder.encode_descriptor(name, help, None, gauge.metric_type())?;
            gauge.encode(metric)?;
        }
        let lateness = ConstLateness(c.lateness.snapshot());
        let metric = encoder.encode_descriptor(
            "rtp_send_lateness_seconds",
            "How late the media pump handed each RTP frame to the kernel, after its 20 ms deadline",
            None,
            lateness.metric_type(),
        )?;
        lateness.encode(metric)
    }
}

/// The lateness histogram as read at a scrape (prometheus-client has no constant histogram).
#[derive(Debug)]
struct ConstLateness(LatenessSnapshot);

impl EncodeMetric for ConstLateness {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let s = &self.0;
        encoder.encode_histogram::<NoLabelSet>(s.sum_seconds(), s.count(), &s.buckets(), None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::{Method, Reason};

    #[test]
    fn the_text_carries_every_family_with_its_labels() {
        let media = Arc::new(MediaCounters::default());
        media.packets_sent.store(1234, Ordering::Relaxed);
        media.streams.store(3, Ordering::Relaxed);
        media.rtcp_received.store(12, Ordering::Relaxed);
        media.rtcp_sent.store(11, Ordering::Relaxed);
        media.packets_lost.store(7, Ordering::Relaxed);
        let metrics = Metrics::new(media);
        let unverified = Verdict::Unverified {
            reason: Reason::NotInCall,
            method: Some(Method::Bankid),
        };
        metrics.decided(&unverified, Duration::from_secs(7));
        metrics.decided(&unverified, Duration::from_secs(9));
        metrics.ended("connected");
        metrics.rejected(403);
        metrics.rejected(499);
        metrics.provider_result("bankid", "not-in-call", Duration::from_millis(6500));
        metrics.answered(Duration::from_millis(4));
        metrics.spoofing_attempt();
        metrics.push_refused("rate-limited");
        let text = metrics.encode(5, true);

        for line in [
            r#"idgate_calls_decided_total{status="unverified",reason="not-in-call",method="bankid"} 2"#,
            r#"idgate_calls_ended_total{outcome="connected"} 1"#,
            r#"idgate_calls_rejected_total{status="403"} 1"#,
            r#"idgate_calls_rejected_total{status="other"} 1"#,
            r#"idgate_provider_latency_seconds_count{method="bankid",result="not-in-call"} 1"#,
            "idgate_call_setup_seconds_count 1",
            "idgate_identification_seconds_sum 16.0",
            "idgate_spoofing_attempts_total 1",
            r#"idgate_push_refusals_total{why="rate-limited"} 1"#,
            "idgate_active_calls 5",
            "idgate_draining 1",
            "idgate_rtp_packets_sent_total 1234",
            "idgate_rtcp_packets_received_total 12",
            "idgate_rtcp_packets_sent_total 11",
            "idgate_rtp_packets_lost_total 7",
            "idgate_media_streams 3",
            "idgate_media_streams_paced 0",
            "idgate_media_raw_send_pumps 0",
            "idgate_media_pumps_behind 0",
            "idgate_rtp_send_lateness_seconds_count 0",
            r#"idgate_rtp_send_lateness_seconds_bucket{le="0.0001"} 0"#,
            r#"idgate_rtp_send_lateness_seconds_bucket{le="+Inf"} 0"#,
            "# EOF",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        assert!(metrics.encode(0, false).contains("idgate_draining 0"));
    }
}
