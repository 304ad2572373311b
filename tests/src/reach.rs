//! Reachability matrices in the spirit of the upstream NetworkPolicy e2e
//! suite: every pod serves TCP and UDP on a few ports, every pod probes
//! every pod on each, all probes of a matrix at once, and the outcome is
//! compared with the expected matrix, printed as a grid on a mismatch.
//!
//! A probe succeeds when a TCP connection is established or a UDP
//! datagram's echo comes back. A denied probe is a dropped first packet,
//! so it costs [`PROBE_TIMEOUT`]; an expected success that fails is tried
//! again ([`TRIES`] in all: a first packet can be lost on a loaded
//! machine), an unexpected success is final at once.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::netns::TestNetns;

pub const PROBE_TIMEOUT: Duration = Duration::from_millis(1500);
pub const TRIES: usize = 3;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Proto {
    Tcp,
    Udp,
}

/// One kind of probe: a protocol and a port.
pub type Probe = (Proto, u16);

/// A pod that serves and probes: its `namespace/name`, namespace and
/// address.
pub struct Member<'a> {
    pub name: String,
    pub netns: &'a TestNetns,
    pub ip: IpAddr,
}

/// Echo servers for TCP and UDP on each port in every member; stopped
/// when dropped.
pub struct Servers {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Servers {
    pub fn start(members: &[Member<'_>], ports: &[u16]) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        for m in members {
            for &port in ports {
                let addr = SocketAddr::new(m.ip, port);
                let tcp = m
                    .netns
                    .run(|| TcpListener::bind(addr))
                    .unwrap_or_else(|e| panic!("listen on {addr} in {}: {e}", m.name));
                let udp = m
                    .netns
                    .run(|| UdpSocket::bind(addr))
                    .unwrap_or_else(|e| panic!("bind {addr}/udp in {}: {e}", m.name));
                threads.push(serve_tcp(tcp, stop.clone()));
                threads.push(serve_udp(udp, stop.clone()));
            }
        }
        Self { stop, threads }
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Accepts and closes: an established connection is the answer.
fn serve_tcp(listener: TcpListener, stop: Arc<AtomicBool>) -> JoinHandle<()> {
    listener
        .set_nonblocking(true)
        .expect("nonblocking listener");
    std::thread::spawn(move || {
        while !stop.load(Ordering::SeqCst) {
            match listener.accept() {
                Ok((mut conn, _)) => {
                    let _ = conn.write_all(b"ok");
                }
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
    })
}

fn serve_udp(socket: UdpSocket, stop: Arc<AtomicBool>) -> JoinHandle<()> {
    socket
        .set_read_timeout(Some(Duration::from_millis(50)))
        .expect("udp timeout");
    std::thread::spawn(move || {
        let mut buf = [0u8; 64];
        while !stop.load(Ordering::SeqCst) {
            if let Ok((n, peer)) = socket.recv_from(&mut buf) {
                let _ = socket.send_to(&buf[..n], peer);
            }
        }
    })
}

/// One probe from `from` to `to`: true when it got through both ways.
pub fn probe_once(from: &TestNetns, to: SocketAddr, proto: Proto) -> bool {
    from.run(|| match proto {
        Proto::Tcp => TcpStream::connect_timeout(&to, PROBE_TIMEOUT)
            .and_then(|mut c| {
                c.set_read_timeout(Some(PROBE_TIMEOUT))?;
                let mut b = [0u8; 2];
                c.read_exact(&mut b)
            })
            .is_ok(),
        Proto::Udp => {
            let any: SocketAddr = if to.is_ipv6() {
                "[::]:0".parse().expect("address")
            } else {
                "0.0.0.0:0".parse().expect("address")
            };
            let Ok(s) = UdpSocket::bind(any) else {
                return false;
            };
            let _ = s.set_read_timeout(Some(PROBE_TIMEOUT));
            let mut b = [0u8; 8];
            s.send_to(b"probe", to).is_ok() && s.recv_from(&mut b).is_ok()
        }
    })
}

/// (from, to, probe) -> reachable.
pub type Outcome = BTreeMap<(usize, usize, Probe), bool>;

/// Probes every cell at once.
pub fn probe_cells(members: &[Member<'_>], cells: &[(usize, usize, Probe)]) -> Outcome {
    std::thread::scope(|s| {
        let handles: Vec<_> = cells
            .iter()
            .map(|&(f, t, (proto, port))| {
                let (from, to) = (members[f].netns, SocketAddr::new(members[t].ip, port));
                (
                    (f, t, (proto, port)),
                    s.spawn(move || probe_once(from, to, proto)),
                )
            })
            .collect();
        handles
            .into_iter()
            .map(|(cell, h)| (cell, h.join().unwrap_or(false)))
            .collect()
    })
}

/// Probes the whole matrix for `probes` and compares it with `expected`
/// (a pod always reaches itself: that never leaves its namespace). Returns
/// the grid of every probe kind with a mismatch.
pub fn check(
    members: &[Member<'_>],
    probes: &[Probe],
    expected: impl Fn(&str, &str, Probe) -> bool,
) -> Result<(), String> {
    let n = members.len();
    let mut want = Outcome::new();
    for f in 0..n {
        for t in 0..n {
            for &p in probes {
                let allowed = f == t || expected(&members[f].name, &members[t].name, p);
                want.insert((f, t, p), allowed);
            }
        }
    }
    let mut got = probe_cells(members, &want.keys().copied().collect::<Vec<_>>());
    for _ in 1..TRIES {
        let again: Vec<_> = got
            .iter()
            .filter(|(cell, ok)| !**ok && want[cell])
            .map(|(cell, _)| *cell)
            .collect();
        if again.is_empty() {
            break;
        }
        got.extend(probe_cells(members, &again));
    }
    if got == want {
        return Ok(());
    }
    Err(render(members, probes, &want, &got))
}

/// A grid per probe kind that went wrong: `.` as expected, `X` reached
/// but should not have, `-` should have but did not.
fn render(members: &[Member<'_>], probes: &[Probe], want: &Outcome, got: &Outcome) -> String {
    let mut out = String::new();
    for &p in probes {
        let cells = |f, t| (want[&(f, t, p)], got[&(f, t, p)]);
        let n = members.len();
        if (0..n).all(|f| (0..n).all(|t| cells(f, t).0 == cells(f, t).1)) {
            continue;
        }
        let _ = writeln!(
            out,
            "{p:?} (rows: from, columns: to; X reached but should not, - should but did not):"
        );
        let _ = write!(out, "{:>8}", "");
        for m in members {
            let _ = write!(out, " {:>5}", m.name);
        }
        out.push('\n');
        for (f, from) in members.iter().enumerate() {
            let _ = write!(out, "{:>8}", from.name);
            for t in 0..n {
                let mark = match cells(f, t) {
                    (w, g) if w == g => ".",
                    (false, true) => "X",
                    _ => "-",
                };
                let _ = write!(out, " {mark:>5}");
            }
            out.push('\n');
        }
    }
    out
}
