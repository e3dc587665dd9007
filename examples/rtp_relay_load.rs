//! Load for `bench/run relay`: N bridged calls relaying G.711 both ways at 50 packets/s per
//! direction through idgate's media engine, measuring loss and latency at the sinks.
//!
//! The engine is idgate's own (`idgate::media`: the same `MediaEngine`, streams, relay and
//! pump `idgate serve` runs), on a tokio runtime of its own in this process (threads
//! `idgate-rt`); the far ends are two plain sockets, the callers' side (A) and the queues'
//! side (B), driven by one paced sender thread and read by one sink thread each. Every caller
//! leg is on hold music first, then bridged, so the relay starts with the hold → bridge switch.
//!
//! Two phases: the *floor* sends the same packets straight from A to B and back (what loopback
//! and these tools cost on their own), then the *relay* sends them through the bridged legs.
//! Latency is the sink's clock minus the send time in the payload; "added" is relay minus
//! floor. Prints a table and `relay calls=N loss=L p99_added_ms=D`.

use std::collections::HashMap;
use std::io::{IoSlice, IoSliceMut};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use idgate::media::rtp::{self, RtpHeader};
use idgate::media::{Codec, MediaConfig, MediaEngine, MediaStream, PromptSet};
use nix::sys::socket::{
    MsgFlags, MultiHeaders, SockaddrIn, SockaddrStorage, recvmmsg, sendmmsg, setsockopt, sockopt,
};

/// Marks the load's packets (hold music also reaches side A before the bridge).
const MAGIC: u32 = 0x1D6A_7E10;
/// The latency histogram's bucket width and range.
const BUCKET_US: u64 = 10;
const BUCKETS: usize = 100_000;
/// An RTP header and 160 bytes of G.711 (20 ms).
const PACKET_LEN: usize = 12 + 160;
/// Datagrams per sendmmsg / recvmmsg.
const BATCH: usize = 64;

#[derive(Parser, Debug)]
#[command(about = "N bridged calls relaying RTP both ways through idgate's media engine")]
struct Args {
    /// Concurrent bridged calls.
    #[arg(long, default_value_t = 1000)]
    calls: usize,
    /// Seconds of relayed RTP.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Seconds of the direct floor (default: min(seconds, 5)).
    #[arg(long)]
    floor_seconds: Option<u64>,
    /// The first port of the engine's RTP range (4 ports per call: RTP + RTCP per leg).
    #[arg(long, default_value_t = 42000)]
    rtp_min: u16,
    /// Worker threads of the engine's runtime.
    #[arg(long, default_value_t = 2)]
    workers: usize,
}

/// One direction of one call: who sends, to where.
struct Flow {
    from_b: bool,
    to: SocketAddr,
}

/// What one phase measured.
struct Stats {
    sent: u64,
    received: u64,
    latency: Vec<u64>,
    late_sends: u64,
    ssrc_changes: u64,
    sequence_jumps: u64,
}

impl Stats {
    fn loss(&self) -> u64 {
        self.sent.saturating_sub(self.received)
    }

    /// The latency quantile in milliseconds (bucket upper bound).
    fn quantile_ms(&self, q: f64) -> f64 {
        let total: u64 = self.latency.iter().sum();
        if total == 0 {
            return f64::NAN;
        }
        let rank = (q * total as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, n) in self.latency.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return ((i as u64 + 1) * BUCKET_US) as f64 / 1000.0;
            }
        }
        f64::INFINITY
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let localhost = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let side_a = UdpSocket::bind((localhost, 0)).context("bind side A")?;
    let side_b = UdpSocket::bind((localhost, 0)).context("bind side B")?;
    let (a_addr, b_addr) = (side_a.local_addr()?, side_b.local_addr()?);
    let epoch = Instant::now();

    let floor_seconds = args.floor_seconds.unwrap_or(args.seconds.min(5));
    let direct: Vec<Flow> = (0..args.calls)
        .flat_map(|_| {
            [
                Flow {
                    from_b: false,
                    to: b_addr,
                },
                Flow {
                    from_b: true,
                    to: a_addr,
                },
            ]
        })
        .collect();
    eprintln!(
        "floor: {} streams straight A <-> B for {floor_seconds} s",
        direct.len()
    );
    let floor = run_phase(&side_a, &side_b, &direct, floor_seconds, epoch)?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.workers)
        .thread_name("idgate-rt")
        .enable_all()
        .build()?;
    eprintln!("relay: opening and bridging {} calls", args.calls);
    let legs = runtime.block_on(bridge_calls(&args, a_addr, b_addr))?;
    let relayed: Vec<Flow> = legs
        .iter()
        .flat_map(|(a, b)| {
            [
                Flow {
                    from_b: false,
                    to: a.local_addr(),
                },
                Flow {
                    from_b: true,
                    to: b.local_addr(),
                },
            ]
        })
        .collect();
    eprintln!(
        "relay: {} streams through idgate for {} s",
        relayed.len(),
        args.seconds
    );
    let cpu_before = thread_cpu_ticks("idgate-rt");
    let relay = run_phase(&side_a, &side_b, &relayed, args.seconds, epoch)?;
    let cpu_ticks = thread_cpu_ticks("idgate-rt").saturating_sub(cpu_before);
    runtime.block_on(async move { drop(legs) });

    report(&args, &floor, &relay, cpu_ticks);
    Ok(())
}

/// Opens two streams per call, puts the caller leg on hold (as idgate does while verifying),
/// then bridges every call.
async fn bridge_calls(
    args: &Args,
    a_addr: SocketAddr,
    b_addr: SocketAddr,
) -> anyhow::Result<Vec<(MediaStream, MediaStream)>> {
    let port_max = u16::try_from(usize::from(args.rtp_min) + 4 * args.calls + 64)
        .context("RTP range beyond 65535: lower --rtp-min or --calls")?;
    let engine = MediaEngine::start(MediaConfig {
        bind_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
        port_min: args.rtp_min,
        port_max,
        raw_send: false,
    });
    let prompts = Arc::new(PromptSet::bundled("sv")?);
    let mut legs = Vec::with_capacity(args.calls);
    for _ in 0..args.calls {
        let caller = engine.open(Arc::clone(&prompts)).await?;
        let queue = engine.open(Arc::clone(&prompts)).await?;
        caller.start(a_addr, Codec::Pcmu, Some(101));
        caller.hold();
        queue.set_remote(b_addr);
        legs.push((caller, queue));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    for (caller, queue) in &legs {
        caller.bridge(queue);
    }
    Ok(legs)
}

/// Sends every flow's packets for `seconds` (flows staggered over the 20 ms frame), then
/// waits for stragglers; returns what the sinks saw.
fn run_phase(
    side_a: &UdpSocket,
    side_b: &UdpSocket,
    flows: &[Flow],
    seconds: u64,
    epoch: Instant,
) -> anyhow::Result<Stats> {
    let stop = Arc::new(AtomicBool::new(false));
    let sinks = [side_a, side_b].map(|socket| {
        let socket = socket.try_clone().inspect(|s| {
            // Bounded reads, so the sink sees the stop flag.
            let _ = s.set_read_timeout(Some(Duration::from_millis(50)));
        });
        let stop = Arc::clone(&stop);
        thread::Builder::new()
            .name("sink".into())
            .spawn(move || -> anyhow::Result<Stats> { sink(&socket?, &stop, epoch) })
    });
    let (sent, late_sends) = send(side_a, side_b, flows, seconds, epoch);
    thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    let mut stats = Stats {
        sent,
        received: 0,
        latency: vec![0; BUCKETS],
        late_sends,
        ssrc_changes: 0,
        sequence_jumps: 0,
    };
    for sink in sinks {
        let part = sink?
            .join()
            .map_err(|_| anyhow::anyhow!("sink thread panicked"))??;
        stats.received += part.received;
        stats.ssrc_changes += part.ssrc_changes;
        stats.sequence_jumps += part.sequence_jumps;
        for (total, n) in stats.latency.iter_mut().zip(&part.latency) {
            *total += n;
        }
    }
    Ok(stats)
}

/// The paced sender: flow `i` sends at `i / len` of each frame. Returns packets sent and how
/// many ticks were more than 5 ms late (the sender itself starved of CPU).
fn send(a: &UdpSocket, b: &UdpSocket, flows: &[Flow], seconds: u64, epoch: Instant) -> (u64, u64) {
    let start = Instant::now() + Duration::from_millis(20);
    let end = start + Duration::from_secs(seconds);
    let slots = 20usize;
    let (mut sent, mut late) = (0u64, 0u64);
    let mut counters = vec![0u32; flows.len()];
    // One tick's packets per side, sent with sendmmsg (the load must cost little next to the
    // engine it measures).
    let mut batches: [Vec<([u8; PACKET_LEN], SockaddrIn)>; 2] = [Vec::new(), Vec::new()];
    let mut headers = MultiHeaders::<SockaddrIn>::preallocate(BATCH, None);
    let mut tick = 0u64;
    loop {
        let due = start + Duration::from_millis(tick);
        if due >= end {
            return (sent, late);
        }
        let now = Instant::now();
        if now < due {
            thread::sleep(due - now);
        } else if now - due > Duration::from_millis(5) {
            late += 1;
        }
        let slot = (tick % slots as u64) as usize;
        let sent_ns = epoch.elapsed().as_nanos() as u64;
        for (i, flow) in flows.iter().enumerate().skip(slot).step_by(slots) {
            let SocketAddr::V4(to) = flow.to else {
                continue;
            };
            let packet = load_packet(i, counters[i], sent_ns);
            batches[usize::from(flow.from_b)].push((packet, SockaddrIn::from(to)));
            counters[i] = counters[i].wrapping_add(1);
        }
        for (socket, batch) in [a, b].into_iter().zip(&mut batches) {
            for chunk in batch.chunks(BATCH) {
                sent += send_batch(socket, &mut headers, chunk);
            }
            batch.clear();
        }
        tick += 1;
    }
}

/// One load packet: an RTP header, then the magic, the flow, and the send time.
fn load_packet(flow: usize, counter: u32, sent_ns: u64) -> [u8; PACKET_LEN] {
    let header = RtpHeader {
        marker: false,
        payload_type: 0,
        sequence: counter as u16,
        timestamp: counter.wrapping_mul(160),
        ssrc: 0x5000_0000 | flow as u32,
    };
    let mut packet = [0xFF; PACKET_LEN];
    packet[..12].copy_from_slice(&header.to_bytes());
    packet[12..16].copy_from_slice(&MAGIC.to_be_bytes());
    packet[16..20].copy_from_slice(&(flow as u32).to_be_bytes());
    packet[20..28].copy_from_slice(&sent_ns.to_be_bytes());
    packet
}

fn send_batch(
    socket: &UdpSocket,
    headers: &mut MultiHeaders<SockaddrIn>,
    chunk: &[([u8; PACKET_LEN], SockaddrIn)],
) -> u64 {
    let slices: Vec<[IoSlice<'_>; 1]> = chunk.iter().map(|(p, _)| [IoSlice::new(p)]).collect();
    let addrs: Vec<Option<SockaddrIn>> = chunk.iter().map(|(_, to)| Some(*to)).collect();
    match sendmmsg(
        socket.as_raw_fd(),
        headers,
        &slices,
        &addrs,
        [],
        MsgFlags::empty(),
    ) {
        Ok(results) => results.count() as u64,
        Err(_) => 0,
    }
}

/// Reads one side until stopped: counts the load's packets, their latency, and per source
/// port (one idgate leg) SSRC changes and sequence jumps.
fn sink(socket: &UdpSocket, stop: &AtomicBool, epoch: Instant) -> anyhow::Result<Stats> {
    let mut stats = Stats {
        sent: 0,
        received: 0,
        latency: vec![0; BUCKETS],
        late_sends: 0,
        ssrc_changes: 0,
        sequence_jumps: 0,
    };
    // A large buffer bridges the moments the sink thread waits for a CPU (root may exceed
    // rmem_max; otherwise take what rmem_max allows).
    if setsockopt(socket, sockopt::RcvBufForce, &(16 << 20)).is_err() {
        let _ = setsockopt(socket, sockopt::RcvBuf, &(4 << 20));
    }
    let mut last: HashMap<u16, (u32, u16)> = HashMap::new();
    let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(BATCH, None);
    let mut buffers = vec![[0u8; 2048]; BATCH];
    while !stop.load(Ordering::Relaxed) {
        let received: Vec<(usize, u16)> = {
            let mut slices: Vec<[IoSliceMut<'_>; 1]> = buffers
                .iter_mut()
                .map(|b| [IoSliceMut::new(&mut b[..])])
                .collect();
            // Blocks (up to the read timeout) for the first datagram, then takes what is
            // queued.
            match recvmmsg(
                socket.as_raw_fd(),
                &mut headers,
                slices.iter_mut(),
                MsgFlags::MSG_WAITFORONE,
                None,
            ) {
                Ok(results) => results
                    .map(|m| {
                        let port = m.address.and_then(|a| a.as_sockaddr_in().map(|s| s.port()));
                        (m.bytes, port.unwrap_or(0))
                    })
                    .collect(),
                Err(_) => continue,
            }
        };
        let now_ns = epoch.elapsed().as_nanos() as u64;
        for ((len, port), buffer) in received.into_iter().zip(&buffers) {
            stats.on_packet(&buffer[..len], port, now_ns, &mut last);
        }
    }
    Ok(stats)
}

impl Stats {
    fn on_packet(
        &mut self,
        datagram: &[u8],
        port: u16,
        now_ns: u64,
        last: &mut HashMap<u16, (u32, u16)>,
    ) {
        let Ok(packet) = rtp::parse(datagram) else {
            return;
        };
        let p = packet.payload;
        if p.len() < 16 || p[..4] != MAGIC.to_be_bytes() {
            return; // hold music from before the bridge
        }
        self.received += 1;
        let sent_ns = u64::from_be_bytes([p[8], p[9], p[10], p[11], p[12], p[13], p[14], p[15]]);
        let bucket = (now_ns.saturating_sub(sent_ns) / 1000 / BUCKET_US) as usize;
        self.latency[bucket.min(BUCKETS - 1)] += 1;
        let h = packet.header;
        if let Some((ssrc, sequence)) = last.insert(port, (h.ssrc, h.sequence)) {
            if ssrc != h.ssrc {
                self.ssrc_changes += 1;
            } else if h.sequence != sequence.wrapping_add(1) {
                self.sequence_jumps += 1;
            }
        }
    }
}

/// CPU ticks (user + system) of this process's threads with this name.
fn thread_cpu_ticks(name: &str) -> u64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("stat")).ok())
        .filter(|stat| stat.contains(&format!("({name})")))
        .filter_map(|stat| {
            let rest = stat.rsplit_once(") ")?.1;
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let utime: u64 = fields.get(11)?.parse().ok()?;
            let stime: u64 = fields.get(12)?.parse().ok()?;
            Some(utime + stime)
        })
        .sum()
}

fn report(args: &Args, floor: &Stats, relay: &Stats, cpu_ticks: u64) {
    // CLK_TCK is 100 on Linux.
    let cpu_s = cpu_ticks as f64 / 100.0;
    let row = |name: &str, s: &Stats, sources: bool| {
        let (ssrc, jumps) = if sources {
            (s.ssrc_changes.to_string(), s.sequence_jumps.to_string())
        } else {
            // The floor's packets all come from one address: nothing per leg to check.
            ("-".into(), "-".into())
        };
        println!(
            "{name:<6} {:>9} {:>9} {:>6} {:>7.3} {:>7.3} {:>7.3} {:>7.3} {:>6} {:>5} {:>5}",
            s.sent,
            s.received,
            s.loss(),
            s.quantile_ms(0.5),
            s.quantile_ms(0.99),
            s.quantile_ms(0.999),
            s.quantile_ms(1.0),
            s.late_sends,
            ssrc,
            jumps,
        );
    };
    println!();
    println!(
        "{:<6} {:>9} {:>9} {:>6} {:>7} {:>7} {:>7} {:>7} {:>6} {:>5} {:>5}",
        "phase",
        "sent",
        "received",
        "lost",
        "p50ms",
        "p99ms",
        "p999ms",
        "maxms",
        "late",
        "ssrc",
        "jumps"
    );
    row("floor", floor, false);
    row("relay", relay, true);
    let relayed = relay.received.max(1) as f64;
    println!();
    println!(
        "engine cpu: {cpu_s:.2} s over {} s ({:.0}% of one core), {:.2} us per relayed packet",
        args.seconds,
        cpu_s * 100.0 / args.seconds.max(1) as f64,
        cpu_s * 1e6 / relayed
    );
    // The two p99s come from different seconds of a shared machine: a relay p99 below the
    // floor's is noise, reported as nothing added.
    let added = (relay.quantile_ms(0.99) - floor.quantile_ms(0.99)).max(0.0);
    println!(
        "relay calls={} loss={} p99_added_ms={added:.3}",
        args.calls,
        relay.loss()
    );
}
