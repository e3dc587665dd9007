//! The held-calls benchmark's helpers (`bench/run held`), two modes of one program:
//!
//! - `rtp_bench floor --streams N --sockets K --seconds T --to 127.0.0.1:P[,P...]`: the floor.
//!   A minimal paced RTP sender: N streams of 172-byte packets every 20 ms, staggered evenly
//!   over the frame, one pacing loop with the same 1 ms batch window as idgate's pump, sent
//!   with `sendmmsg` (all of a pass's packets of one socket in one call). Stream i uses socket
//!   i mod K: K = N is idgate's constraint (symmetric RTP, one port per call: one message per
//!   call), a small K shows what batching on shared sockets would buy. Prints its CPU time
//!   (getrusage) and packets over the sending window.
//! - `rtp_bench sink --ports P[,P...] --seconds T [--stop-file F]`: receives on 127.0.0.1 at
//!   those ports for T seconds (or until file F exists) and counts, per SSRC, discontinuities: a packet whose sequence number is not the
//!   previous + 1, or that arrived more than 40 ms after the previous one (kernel receive
//!   timestamps, so the sink's own scheduling does not count). Also reports the sockets'
//!   kernel drops (`/proc/net/udp`): a gap the sink caused, not the sender.
//!
//! Output: one `key=value` line on stdout.

use std::collections::HashMap;
use std::io::{IoSlice, IoSliceMut};
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use nix::sys::resource::{UsageWho, getrusage};
use nix::sys::socket::{
    ControlMessageOwned, MsgFlags, MultiHeaders, SockaddrIn, SockaddrStorage, recvmmsg, sendmmsg,
    setsockopt, sockopt,
};
use nix::sys::time::TimeSpec;

const FRAME: Duration = Duration::from_millis(20);
const WINDOW: Duration = Duration::from_millis(1);
const PACKET: usize = 172;
const BATCH: usize = 64;
const LATE_ARRIVAL: Duration = Duration::from_millis(40);

#[derive(Debug, thiserror::Error)]
enum BenchError {
    #[error(
        "usage: rtp_bench floor --streams N [--sockets K] --seconds T --to ADDR[,ADDR...] | rtp_bench sink --ports P[,P...] --seconds T ({0})"
    )]
    Usage(String),
    #[error("socket: {0}")]
    Io(#[from] std::io::Error),
    #[error("syscall: {0}")]
    Sys(#[from] nix::Error),
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("floor") => floor(&Args(&args[1..])),
        Some("sink") => sink(&Args(&args[1..])),
        _ => Err(BenchError::Usage("no mode".into())),
    };
    match result {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("rtp_bench: {e}");
            ExitCode::FAILURE
        }
    }
}

struct Args<'a>(&'a [String]);

impl Args<'_> {
    fn get(&self, name: &str) -> Option<&str> {
        let at = self.0.iter().position(|a| a == name)?;
        self.0.get(at + 1).map(String::as_str)
    }

    fn number(&self, name: &str, default: Option<u64>) -> Result<u64, BenchError> {
        match self.get(name) {
            Some(text) => text
                .parse()
                .map_err(|_| BenchError::Usage(format!("{name} {text}"))),
            None => default.ok_or_else(|| BenchError::Usage(format!("{name} missing"))),
        }
    }

    fn list<T: std::str::FromStr>(&self, name: &str) -> Result<Vec<T>, BenchError> {
        let text = self
            .get(name)
            .ok_or_else(|| BenchError::Usage(format!("{name} missing")))?;
        text.split(',')
            .map(|item| {
                item.parse()
                    .map_err(|_| BenchError::Usage(format!("{name} {item}")))
            })
            .collect()
    }
}

fn cpu_time() -> Result<Duration, BenchError> {
    let usage = getrusage(UsageWho::RUSAGE_SELF)?;
    let micros = |t: nix::sys::time::TimeVal| {
        Duration::from_secs(u64::try_from(t.tv_sec()).unwrap_or(0))
            + Duration::from_micros(u64::try_from(t.tv_usec()).unwrap_or(0))
    };
    Ok(micros(usage.user_time()) + micros(usage.system_time()))
}

/// One floor stream: its packet (header rewritten in place per send) and its next deadline.
struct Stream {
    packet: [u8; PACKET],
    sequence: u16,
    timestamp: u32,
    next_due: Instant,
    to: SockaddrIn,
}

impl Stream {
    fn advance(&mut self) {
        self.packet[2..4].copy_from_slice(&self.sequence.to_be_bytes());
        self.packet[4..8].copy_from_slice(&self.timestamp.to_be_bytes());
        self.sequence = self.sequence.wrapping_add(1);
        self.timestamp = self.timestamp.wrapping_add(160);
        self.next_due += FRAME;
    }
}

fn floor(args: &Args<'_>) -> Result<String, BenchError> {
    let streams = args.number("--streams", None)? as usize;
    let sockets = (args.number("--sockets", Some(streams as u64))? as usize).clamp(1, streams);
    let seconds = args.number("--seconds", None)?;
    let to: Vec<SocketAddr> = args.list("--to")?;
    let to: Vec<SockaddrIn> = to
        .iter()
        .filter_map(|a| match a {
            SocketAddr::V4(v4) => Some(SockaddrIn::from(*v4)),
            SocketAddr::V6(_) => None,
        })
        .collect();
    if streams == 0 || to.is_empty() {
        return Err(BenchError::Usage("--streams 0 or no IPv4 --to".into()));
    }
    let socks = (0..sockets)
        .map(|_| UdpSocket::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()?;
    let start = Instant::now() + Duration::from_millis(50);
    let mut all: Vec<Stream> = (0..streams)
        .map(|i| {
            let mut packet = [0u8; PACKET];
            packet[0] = 0x80;
            packet[8..12].copy_from_slice(&(0x1000_0000 + i as u32).to_be_bytes());
            packet[12..].fill(0xFF);
            Stream {
                packet,
                sequence: 0,
                timestamp: 0,
                next_due: start + FRAME * i as u32 / streams as u32,
                to: to[i % to.len()],
            }
        })
        .collect();
    let mut per_socket: Vec<Vec<usize>> = vec![Vec::with_capacity(BATCH); sockets];
    let mut headers = MultiHeaders::<SockaddrIn>::preallocate(BATCH, None);
    let (mut sent, mut late_1ms, mut late_2ms, mut late_10ms) = (0u64, 0u64, 0u64, 0u64);
    let cpu0 = cpu_time()?;
    let end = start + Duration::from_secs(seconds);
    // Streams come due in index order (the stagger), so a cursor walks them round the ring.
    let mut cursor = 0;
    let mut last_pass = start;
    loop {
        let wake = all[cursor].next_due.max(last_pass + WINDOW);
        let now = Instant::now();
        if wake > now {
            std::thread::sleep(wake - now);
        }
        let now = Instant::now();
        if now >= end {
            break;
        }
        last_pass = now;
        let mut visited = 0;
        while all[cursor].next_due <= now && visited < streams {
            per_socket[cursor % sockets].push(cursor);
            cursor = (cursor + 1) % streams;
            visited += 1;
        }
        for (socket, due) in socks.iter().zip(per_socket.iter_mut()) {
            for chunk in due.chunks(BATCH) {
                let late = Instant::now();
                for &i in chunk {
                    let behind = late.saturating_duration_since(all[i].next_due);
                    late_1ms += u64::from(behind > Duration::from_millis(1));
                    late_2ms += u64::from(behind > Duration::from_millis(2));
                    late_10ms += u64::from(behind > Duration::from_millis(10));
                    all[i].advance();
                }
                // One message (one socket per stream) needs no 64-entry arrays to fill.
                sent += if chunk.len() == 1 {
                    send_chunk::<1>(socket, &mut headers, &all, chunk)?
                } else {
                    send_chunk::<BATCH>(socket, &mut headers, &all, chunk)?
                };
            }
            due.clear();
        }
    }
    let cpu = cpu_time()?.saturating_sub(cpu0);
    let per_packet = cpu.as_secs_f64() * 1e6 / sent.max(1) as f64;
    Ok(format!(
        "floor streams={streams} sockets={sockets} packets={sent} cpu_us={} cpu_per_pkt_us={per_packet:.3} late_over_1ms={late_1ms} late_over_2ms={late_2ms} late_over_10ms={late_10ms}",
        cpu.as_micros()
    ))
}

/// Sends the packets of `chunk` (at most N) in one `sendmmsg`, without allocating.
fn send_chunk<const N: usize>(
    socket: &UdpSocket,
    headers: &mut MultiHeaders<SockaddrIn>,
    all: &[Stream],
    chunk: &[usize],
) -> Result<u64, BenchError> {
    let mut slices: [[IoSlice<'_>; 1]; N] = std::array::from_fn(|_| [IoSlice::new(&[])]);
    let mut addrs: [Option<SockaddrIn>; N] = [None; N];
    let n = chunk.len().min(N);
    for (k, &i) in chunk.iter().take(n).enumerate() {
        slices[k] = [IoSlice::new(&all[i].packet)];
        addrs[k] = Some(all[i].to);
    }
    let results = sendmmsg(
        socket.as_raw_fd(),
        headers,
        &slices[..n],
        &addrs[..n],
        [],
        MsgFlags::MSG_DONTWAIT,
    )?;
    Ok(results.count() as u64)
}

/// What the sink knows of one SSRC.
#[derive(Default)]
struct Seen {
    sequence: u16,
    arrival: i128,
}

#[derive(Default)]
struct SinkStats {
    packets: u64,
    seq_gaps: u64,
    lost: u64,
    late_arrivals: u64,
    gaps: u64,
    max_interarrival_ns: i128,
}

impl SinkStats {
    fn on_packet(&mut self, streams: &mut HashMap<u32, Seen>, packet: &[u8], arrival: i128) {
        // RTCP (idgate's sender reports go to the next port, which may be another sink's) is
        // told apart by its packet type, as on a multiplexed port (RFC 5761 §4).
        if packet.len() < 12 || packet[0] >> 6 != 2 || (192..=223).contains(&packet[1]) {
            return;
        }
        self.packets += 1;
        let sequence = u16::from_be_bytes([packet[2], packet[3]]);
        let ssrc = u32::from_be_bytes([packet[8], packet[9], packet[10], packet[11]]);
        let Some(seen) = streams.get_mut(&ssrc) else {
            streams.insert(ssrc, Seen { sequence, arrival });
            return;
        };
        let step = sequence.wrapping_sub(seen.sequence);
        let interarrival = arrival - seen.arrival;
        let seq_gap = step != 1;
        let late = interarrival > LATE_ARRIVAL.as_nanos() as i128;
        if seq_gap {
            self.seq_gaps += 1;
            if (2..0x8000).contains(&step) {
                self.lost += u64::from(step - 1);
            }
        }
        self.late_arrivals += u64::from(late);
        self.gaps += u64::from(seq_gap || late);
        self.max_interarrival_ns = self.max_interarrival_ns.max(interarrival);
        *seen = Seen { sequence, arrival };
    }
}

fn sink(args: &Args<'_>) -> Result<String, BenchError> {
    let ports: Vec<u16> = args.list("--ports")?;
    let seconds = args.number("--seconds", None)?;
    let socks = ports
        .iter()
        .map(|&port| {
            let socket = UdpSocket::bind(("127.0.0.1", port))?;
            socket.set_nonblocking(true)?;
            // Root may exceed rmem_max: the sink sleeps between reads, the buffer bridges it.
            if setsockopt(&socket, sockopt::RcvBufForce, &(16 << 20)).is_err() {
                setsockopt(&socket, sockopt::RcvBuf, &(4 << 20))?;
            }
            setsockopt(&socket, sockopt::ReceiveTimestampns, &true)?;
            Ok(socket)
        })
        .collect::<Result<Vec<_>, BenchError>>()?;
    let mut headers =
        MultiHeaders::<SockaddrStorage>::preallocate(BATCH, Some(nix::cmsg_space!(TimeSpec)));
    let mut buffers = vec![[0u8; 2048]; BATCH];
    let mut arrivals = Vec::with_capacity(BATCH);
    let mut streams: HashMap<u32, Seen> = HashMap::new();
    let mut stats = SinkStats::default();
    let stop_file = args.get("--stop-file").map(std::path::PathBuf::from);
    let end = Instant::now() + Duration::from_secs(seconds);
    let mut rounds = 0u64;
    while Instant::now() < end {
        rounds += 1;
        if rounds.is_multiple_of(20) && stop_file.as_ref().is_some_and(|f| f.exists()) {
            break;
        }
        for socket in &socks {
            loop {
                arrivals.clear();
                {
                    let mut slices: Vec<[IoSliceMut<'_>; 1]> = buffers
                        .iter_mut()
                        .map(|b| [IoSliceMut::new(&mut b[..])])
                        .collect();
                    let results = match recvmmsg(
                        socket.as_raw_fd(),
                        &mut headers,
                        slices.iter_mut(),
                        MsgFlags::MSG_DONTWAIT,
                        None,
                    ) {
                        Ok(results) => results,
                        Err(nix::Error::EAGAIN) => break,
                        Err(e) => return Err(e.into()),
                    };
                    for message in results {
                        let mut at = 0i128;
                        if let Ok(cmsgs) = message.cmsgs() {
                            for cmsg in cmsgs {
                                if let ControlMessageOwned::ScmTimestampns(ts) = cmsg {
                                    at = i128::from(ts.tv_sec()) * 1_000_000_000
                                        + i128::from(ts.tv_nsec());
                                }
                            }
                        }
                        arrivals.push((message.bytes, at));
                    }
                }
                for (buffer, &(len, at)) in buffers.iter().zip(&arrivals) {
                    stats.on_packet(&mut streams, &buffer[..len], at);
                }
                if arrivals.len() < BATCH {
                    break;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let drops = udp_drops(&ports);
    Ok(format!(
        "sink ssrcs={} packets={} gaps={} seq_gaps={} lost={} late_arrivals={} drops={drops} max_interarrival_ms={:.1}",
        streams.len(),
        stats.packets,
        stats.gaps,
        stats.seq_gaps,
        stats.lost,
        stats.late_arrivals,
        stats.max_interarrival_ns as f64 / 1e6
    ))
}

/// The kernel's receive drops of the sockets bound to `ports` on 127.0.0.1 (last column of
/// `/proc/net/udp`); 0 when unreadable.
fn udp_drops(ports: &[u16]) -> u64 {
    let Ok(table) = std::fs::read_to_string("/proc/net/udp") else {
        return 0;
    };
    let wanted: Vec<String> = ports.iter().map(|p| format!("0100007F:{p:04X}")).collect();
    table
        .lines()
        .skip(1)
        .filter(|line| {
            line.split_whitespace()
                .nth(1)
                .is_some_and(|local| wanted.iter().any(|w| w == local))
        })
        .filter_map(|line| line.split_whitespace().last()?.parse::<u64>().ok())
        .sum()
}
