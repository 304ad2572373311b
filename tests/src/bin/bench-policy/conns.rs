//! Part b: new TCP connections per second through a node, with no policy
//! table, with podnet's table for no policies, and with the table for the
//! simulated cluster's policies: the same topology three times, each in
//! namespaces of its own, measured in turn.
//!
//! A connection is a connect() that completes the handshake, closed at once
//! with a reset (SO_LINGER 0), so neither side keeps a TIME_WAIT socket and
//! the client's ports come free at once; the server accepts and closes. Only
//! the first packet of each connection meets the pods' chains: the rest
//! pass on their conntrack state.

use std::collections::VecDeque;
use std::io::ErrorKind;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nix::sys::socket::{listen as listen_again, setsockopt, sockopt, Backlog};
use nix::sys::time::TimeVal;
use podnet_tests::bridged::{pod_addrs, BridgedNode, REMOTE4};
use podnet_tests::netns::TestNetns;
use podnetd::kernel::policy::PolicyTable;
use podnetd::policy::{compile, Snapshot};

use crate::{NODE, PORT};

/// Port the server also listens on and no policy allows.
const BLOCKED: u16 = 9999;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// How long an accept waits before it looks at the stop flag.
const ACCEPT_POLL: Duration = Duration::from_millis(50);
/// A connect slower than this is counted.
const SLOW: Duration = Duration::from_millis(100);
/// Accepted connections the server holds before closing the oldest.
const HELD: usize = 256;
/// A probe that should be dropped waits this long.
const PROBE: Duration = Duration::from_millis(500);

pub const CLIENT_HOST: u8 = 2;
pub const SERVER_HOST: u8 = 3;

/// What the node's table holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Config {
    NoTable,
    NoPolicies,
    Policies,
}

pub const CONFIGS: [Config; 3] = [Config::NoTable, Config::NoPolicies, Config::Policies];

/// Who connects to whom.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Path {
    /// Client pod to server pod, both on the node's bridge.
    Bridged,
    BridgedBack,
    /// The pod of another node to the server pod, routed by the node.
    Routed,
    RoutedBack,
}

pub const PATHS: [Path; 4] = [
    Path::Bridged,
    Path::BridgedBack,
    Path::Routed,
    Path::RoutedBack,
];

impl Path {
    pub fn describe(self) -> &'static str {
        match self {
            Path::Bridged => "client pod -> server pod (bridged)",
            Path::BridgedBack => "server pod -> client pod (bridged)",
            Path::Routed => "remote pod -> server pod (routed)",
            Path::RoutedBack => "server pod -> remote pod (routed)",
        }
    }
}

/// One topology: a node with its bridge, a client and a server pod on it,
/// and a remote pod routed through it.
pub struct Topology {
    pub config: Config,
    node: BridgedNode,
    /// Rules in the pod chains of the client and server (a measure of
    /// what a new connection meets), when there is a table.
    pub table_size: Option<(usize, usize)>,
}

pub fn ip4(s: &str) -> Ipv4Addr {
    s.parse()
        .unwrap_or_else(|e| panic!("bench address {s}: {e}"))
}

impl Topology {
    pub fn new(config: Config, tag: &str, policies: &Snapshot, none: &Snapshot) -> Self {
        let mut node = BridgedNode::new(tag);
        node.add_pod("client", CLIENT_HOST);
        node.add_pod("server", SERVER_HOST);
        let snapshot = match config {
            Config::NoTable => None,
            Config::NoPolicies => Some(none),
            Config::Policies => Some(policies),
        };
        let mut table_size = None;
        if let Some(s) = snapshot {
            let ruleset = compile(s, NODE);
            let rules = |ip: Ipv4Addr| {
                ruleset.pods.get(&IpAddr::V4(ip)).map_or(0, |r| {
                    let allows = r.ingress.iter().chain(&r.egress).flatten();
                    allows.map(|a| a.ports.len().max(1)).sum()
                })
            };
            table_size = Some((
                rules(ip4(&pod_addrs(CLIENT_HOST).0)),
                rules(ip4(&pod_addrs(SERVER_HOST).0)),
            ));
            node.node
                .run(|| PolicyTable::new().apply(ruleset))
                .unwrap_or_else(|e| panic!("applying the {config:?} table: {e}"));
        }
        Self {
            config,
            node,
            table_size,
        }
    }

    /// The namespaces and the server's address of `path`.
    fn ends(&self, path: Path, port: u16) -> (&TestNetns, &TestNetns, SocketAddr) {
        let client = self.node.pod("client");
        let server = self.node.pod("server");
        let remote = &self.node.remote;
        let addr = |host: &str| SocketAddr::new(IpAddr::V4(ip4(host)), port);
        match path {
            Path::Bridged => (client, server, addr(&pod_addrs(SERVER_HOST).0)),
            Path::BridgedBack => (server, client, addr(&pod_addrs(CLIENT_HOST).0)),
            Path::Routed => (remote, server, addr(&pod_addrs(SERVER_HOST).0)),
            Path::RoutedBack => (server, remote, addr(REMOTE4)),
        }
    }

    /// Connections per second on `path` for `duration`.
    pub fn rate(&self, path: Path, duration: Duration) -> Result<Rate, String> {
        let (from, to, addr) = self.ends(path, PORT);
        rate(from, to, addr, duration)
    }

    /// With the policies, a port no policy allows must not connect, on
    /// every path: the table is enforcing.
    pub fn check_blocked(&self) -> Result<(), String> {
        for path in PATHS {
            let (from, to, addr) = self.ends(path, BLOCKED);
            let listener = listen(to, addr)?;
            let connected = from.run(|| TcpStream::connect_timeout(&addr, PROBE).is_ok());
            drop(listener);
            if connected {
                return Err(format!(
                    "{}: port {BLOCKED} connected through the {:?} table",
                    path.describe(),
                    self.config
                ));
            }
        }
        Ok(())
    }
}

pub struct Rate {
    pub connections: usize,
    pub errors: usize,
    /// Connects that took longer than [`SLOW`]: a lost SYN waits a second
    /// for its retransmission.
    pub slow: usize,
    pub wall: Duration,
}

impl Rate {
    pub fn per_sec(&self) -> f64 {
        self.connections as f64 / self.wall.as_secs_f64()
    }
}

fn listen(ns: &TestNetns, addr: SocketAddr) -> Result<TcpListener, String> {
    let listener = ns
        .run(|| TcpListener::bind(addr))
        .map_err(|e| format!("listen on {addr} in {}: {e}", ns.name()))?;
    // std listens with a backlog of 128; a server thread that falls that
    // far behind (a busy CPU) would drop a SYN, and its client waits a
    // second for the retransmission. Listening again sets the backlog to
    // the namespace's somaxconn.
    listen_again(&listener.as_fd(), Backlog::MAXALLOWABLE).map_err(|e| format!("listen: {e}"))?;
    let poll = TimeVal::new(0, ACCEPT_POLL.as_micros() as i64);
    setsockopt(&listener.as_fd(), sockopt::ReceiveTimeout, &poll)
        .map_err(|e| format!("SO_RCVTIMEO: {e}"))?;
    Ok(listener)
}

/// A client in `from` opening and resetting connections to a server in
/// `to` as fast as it can for `duration`; the server accepts and closes.
fn rate(
    from: &TestNetns,
    to: &TestNetns,
    addr: SocketAddr,
    duration: Duration,
) -> Result<Rate, String> {
    let listener = listen(to, addr)?;
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            // Closed only once the client's reset has had time to arrive: a
            // server closing first would send a FIN into the connection the
            // client's next SYN may reuse.
            let mut open: VecDeque<TcpStream> = VecDeque::with_capacity(HELD + 1);
            while !stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        open.push_back(conn);
                        if open.len() > HELD {
                            open.pop_front();
                        }
                    }
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                        open.clear();
                    }
                    Err(_) => {}
                }
            }
        });
        let result = from.run(|| client(addr, duration));
        stop.store(true, Ordering::Relaxed);
        result
    })
}

fn client(addr: SocketAddr, duration: Duration) -> Result<Rate, String> {
    let reset = nix::libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    let start = Instant::now();
    let (mut connections, mut errors, mut slow) = (0, 0, 0);
    while start.elapsed() < duration {
        let one = Instant::now();
        let conn = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT);
        slow += usize::from(one.elapsed() > SLOW);
        match conn {
            Ok(conn) => {
                setsockopt(&conn.as_fd(), sockopt::Linger, &reset)
                    .map_err(|e| format!("SO_LINGER: {e}"))?;
                connections += 1;
            }
            Err(_) => errors += 1,
        }
    }
    Ok(Rate {
        connections,
        errors,
        slow,
        wall: start.elapsed(),
    })
}
