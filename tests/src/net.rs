//! Traffic between test namespaces: real packets, bounded in count and time.

use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::netns::TestNetns;

const WAIT: Duration = Duration::from_secs(3);

/// A loopback address for a daemon the test starts to listen on (its
/// metrics, say). Taken below the kernel's ephemeral range (from 32768):
/// a port found by binding `:0` and letting go is free only until the next
/// `bind(:0)`, which a test running alongside may make first. Ports come
/// one after another from a start of this process's own, each checked free.
pub fn daemon_addr() -> SocketAddr {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    const FIRST: u32 = 20_000;
    const SPAN: u32 = 12_000;
    loop {
        let n = (std::process::id().wrapping_mul(97))
            .wrapping_add(NEXT.fetch_add(1, Ordering::Relaxed));
        let port = u16::try_from(FIRST + n % SPAN).expect("below 32768");
        if let Ok(l) = TcpListener::bind(("127.0.0.1", port)) {
            return l.local_addr().expect("a bound address");
        }
    }
}

/// A network namespace traffic can be sent from: one a test made
/// (`TestNetns`) or one a runtime made for a pod (`ForeignNetns`).
pub trait Namespace: Sync {
    fn label(&self) -> String;
    /// Runs `f` on a thread inside the namespace.
    fn enter<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T;
}

impl Namespace for TestNetns {
    fn label(&self) -> String {
        self.name().to_string()
    }

    fn enter<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        self.run(f)
    }
}

/// Sends one UDP datagram from `from` to `to_ip` (inside `to`) and the
/// reply back; Err describes what did not arrive.
pub fn udp_round_trip(
    from: &impl Namespace,
    to: &impl Namespace,
    to_ip: IpAddr,
) -> Result<(), String> {
    udp_round_trip_to(from, to, SocketAddr::new(to_ip, 0))
}

/// [`udp_round_trip`] to a given port (0: any).
pub fn udp_round_trip_to(
    from: &impl Namespace,
    to: &impl Namespace,
    to_addr: SocketAddr,
) -> Result<(), String> {
    let to_ip = to_addr.ip();
    // Sockets belong to the namespace they were created in.
    let server = to.enter(|| UdpSocket::bind(to_addr));
    let server = server.map_err(|e| format!("bind in {}: {e}", to.label()))?;
    let server_addr = server.local_addr().map_err(|e| e.to_string())?;
    let unspecified: IpAddr = if to_ip.is_ipv6() {
        "::".parse().map_err(|_| "addr")?
    } else {
        "0.0.0.0".parse().map_err(|_| "addr")?
    };
    let client = from
        .enter(|| UdpSocket::bind(SocketAddr::new(unspecified, 0)))
        .map_err(|e| format!("bind in {}: {e}", from.label()))?;
    for s in [&server, &client] {
        s.set_read_timeout(Some(WAIT)).map_err(|e| e.to_string())?;
    }
    client
        .send_to(b"ping", server_addr)
        .map_err(|e| format!("send to {server_addr}: {e}"))?;
    let mut buf = [0u8; 16];
    let (n, peer) = server
        .recv_from(&mut buf)
        .map_err(|e| format!("{server_addr} received nothing: {e}"))?;
    if &buf[..n] != b"ping" {
        return Err("wrong payload".into());
    }
    server.send_to(b"pong", peer).map_err(|e| e.to_string())?;
    let n = client
        .recv(&mut buf)
        .map_err(|e| format!("no reply from {server_addr}: {e}"))?;
    if &buf[..n] != b"pong" {
        return Err("wrong reply".into());
    }
    Ok(())
}

/// A TCP listener inside `ns` on `port` (all addresses).
pub fn tcp_listen(ns: &TestNetns, port: u16) -> TcpListener {
    ns.run(|| TcpListener::bind(("0.0.0.0", port)))
        .unwrap_or_else(|e| panic!("listen in {}: {e}", ns.name()))
}

/// A TCP listener inside `ns` on `addr` (an IPv6 one too).
pub fn tcp_listen_at(ns: &TestNetns, addr: SocketAddr) -> TcpListener {
    ns.run(|| TcpListener::bind(addr))
        .unwrap_or_else(|e| panic!("listen on {addr} in {}: {e}", ns.name()))
}

/// Connects from inside `ns` to `addr`, sends a line, reads the echo back
/// from `listener`'s side (served on a thread).
pub fn tcp_exchange(ns: &TestNetns, addr: SocketAddr, listener: TcpListener) -> Result<(), String> {
    use std::io::{Read, Write};
    // Non-blocking accept with a deadline: the server thread must end even
    // when the connection never comes.
    listener.set_nonblocking(true).map_err(|e| e.to_string())?;
    let server = std::thread::spawn(move || -> Result<(), String> {
        let deadline = std::time::Instant::now() + WAIT;
        let mut s = loop {
            match listener.accept() {
                Ok((s, _)) => break s,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if std::time::Instant::now() > deadline {
                        return Err("nothing connected".into());
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => return Err(e.to_string()),
            }
        };
        s.set_nonblocking(false).map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(WAIT)).map_err(|e| e.to_string())?;
        let mut buf = [0u8; 5];
        s.read_exact(&mut buf).map_err(|e| e.to_string())?;
        s.write_all(&buf).map_err(|e| e.to_string())
    });
    let stream = ns.run(|| TcpStream::connect_timeout(&addr, WAIT));
    let mut stream = match stream {
        Ok(s) => s,
        Err(e) => {
            let _ = server.join();
            return Err(format!("connect to {addr}: {e}"));
        }
    };
    stream
        .set_read_timeout(Some(WAIT))
        .map_err(|e| e.to_string())?;
    stream.write_all(b"hello").map_err(|e| e.to_string())?;
    let mut buf = [0u8; 5];
    stream
        .read_exact(&mut buf)
        .map_err(|e| format!("no echo from {addr}: {e}"))?;
    server
        .join()
        .map_err(|_| "server thread panicked".to_string())??;
    if &buf != b"hello" {
        return Err("wrong echo".into());
    }
    Ok(())
}

/// Sends one datagram from `from` to `to_ip:port` in `to` and returns the
/// source address the receiver saw (to observe masquerading).
pub fn udp_seen_source(from: &TestNetns, to: &TestNetns, to_ip: IpAddr) -> Result<IpAddr, String> {
    let server = to
        .run(|| UdpSocket::bind(SocketAddr::new(to_ip, 0)))
        .map_err(|e| format!("bind in {}: {e}", to.name()))?;
    let addr = server.local_addr().map_err(|e| e.to_string())?;
    server
        .set_read_timeout(Some(WAIT))
        .map_err(|e| e.to_string())?;
    let client = from
        .run(|| UdpSocket::bind("0.0.0.0:0"))
        .map_err(|e| format!("bind in {}: {e}", from.name()))?;
    client.send_to(b"who", addr).map_err(|e| e.to_string())?;
    let mut buf = [0u8; 8];
    let (_, peer) = server
        .recv_from(&mut buf)
        .map_err(|e| format!("{addr} received nothing: {e}"))?;
    Ok(peer.ip())
}
