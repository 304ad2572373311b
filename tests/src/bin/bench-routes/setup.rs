//! What every phase runs on: etcd and the bench's client of it, the real
//! node (a namespace with an underlay) and its podnetd.

use std::net::TcpListener;

use ipnetwork::IpNetwork;
use podnet_cni::netlink::netns::NetNs;
use podnet_cni::netlink::route::{self, RouteEntry};
use podnet_cni::netlink::Netlink;
use podnet_tests::daemon::{DaemonOpts, TestDaemon};
use podnet_tests::etcd::TestEtcd;
use podnet_tests::netns::TestNetns;
use podnetd::routes::ROUTE_PROTOCOL;
use podnetd::store::etcd::etcd_client::{Client, GetOptions, Txn, TxnOp};
use podnetd::store::NodeRecord;

use crate::peers::Fake;
use crate::{BATCH, CLUSTER_CIDR, FAKE_LEASE_TTL, MAX_PODS, NODE_IP, NODE_NAME, PREFIX, UNDERLAY};

/// etcd (TestEtcd registers its pid and directory for the emergency
/// cleanup), stopped by pid when dropped.
pub struct Etcd {
    pub inner: TestEtcd,
}

impl Etcd {
    pub fn start() -> Self {
        Self {
            inner: TestEtcd::start(),
        }
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.inner.stop();
    }
}

/// podnetd (TestDaemon registers its pid and directory for the emergency
/// cleanup), stopped by SIGTERM when dropped.
pub struct Daemon {
    pub inner: TestDaemon,
}

impl Daemon {
    pub fn start(node: &Node, etcd: &Etcd, metrics_port: u16) -> Self {
        let opts = DaemonOpts {
            node_name: NODE_NAME.into(),
            cluster_cidr: CLUSTER_CIDR.into(),
            max_pods: MAX_PODS,
            metrics_addr: Some(format!("127.0.0.1:{metrics_port}")),
            manage_netns: Some(node.ns.path().to_path_buf()),
            etcd_endpoint: Some(etcd.inner.endpoint()),
            node_ip: Some(NODE_IP.into()),
            ..Default::default()
        };
        Self {
            inner: TestDaemon::start(&node.ns, opts),
        }
    }

    pub fn pid(&self) -> u32 {
        self.inner.pid().expect("podnetd running")
    }

    pub fn metrics_port(&self) -> u16 {
        self.inner
            .opts
            .metrics_addr
            .as_deref()
            .and_then(|a| a.rsplit(':').next())
            .and_then(|p| p.parse().ok())
            .expect("metrics port")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // SIGTERM by pid (TestDaemon::stop), then its own drop.
        self.inner.stop();
    }
}

/// The real node: its namespace, the far end of its underlay, and eth0.
pub struct Node {
    pub ns: TestNetns,
    _switch: TestNetns,
    pub eth0: u32,
}

impl Node {
    pub fn new() -> Self {
        let ns = TestNetns::new("rn");
        let switch = TestNetns::new("rsw");
        ns.veth_to("eth0", &switch, "u0");
        switch.ip(&["link", "set", "dev", "u0", "up"]);
        ns.ip(&["addr", "add", UNDERLAY, "dev", "eth0"]);
        ns.ip(&["link", "set", "dev", "eth0", "up"]);
        let eth0 = ns.ip_json(&["link", "show", "dev", "eth0"])[0]["ifindex"]
            .as_u64()
            .and_then(|i| u32::try_from(i).ok())
            .expect("eth0 ifindex");
        Self {
            ns,
            _switch: switch,
            eth0,
        }
    }

    pub fn netlink(&self) -> Netlink {
        NetNs::open(self.ns.path())
            .and_then(|ns| ns.netlink())
            .unwrap_or_else(|e| panic!("netlink in {}: {e}", self.ns.name()))
    }
}

/// podnet's IPv4 routes in the namespace of `nl`.
pub fn ours(nl: &mut Netlink) -> Vec<RouteEntry> {
    let mut all = route::list_routes(nl, false).expect("route dump");
    all.retain(|r| r.protocol == ROUTE_PROTOCOL);
    all
}

/// The bench's etcd client and the lease its fake nodes live on.
pub struct Store {
    rt: tokio::runtime::Runtime,
    client: Client,
    pub lease: i64,
}

impl Store {
    pub fn connect(etcd: &Etcd) -> Self {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        let endpoint = etcd.inner.endpoint();
        let (client, lease) = rt.block_on(async {
            let mut client = Client::connect([endpoint.as_str()], None)
                .await
                .expect("etcd client");
            let lease = client
                .lease_grant(FAKE_LEASE_TTL, None)
                .await
                .expect("lease grant")
                .id();
            (client, lease)
        });
        Self { rt, client, lease }
    }

    pub fn txn(&mut self, ops: Vec<TxnOp>) {
        let client = &mut self.client;
        let response = self
            .rt
            .block_on(client.txn(Txn::new().and_then(ops)))
            .expect("etcd txn");
        assert!(response.succeeded(), "etcd txn failed");
    }

    pub fn put_all(&mut self, peers: &[Fake]) {
        for chunk in peers.chunks(BATCH) {
            let lease = self.lease;
            let ops: Vec<TxnOp> = chunk.iter().flat_map(|p| p.puts(lease)).collect();
            self.txn(ops);
        }
    }

    pub fn count(&mut self, prefix: &str) -> i64 {
        let client = &mut self.client;
        self.rt
            .block_on(client.get(
                prefix,
                Some(GetOptions::new().with_prefix().with_count_only()),
            ))
            .expect("etcd count")
            .count()
    }

    pub fn node_cidrs(&mut self, node: &str) -> Vec<IpNetwork> {
        let client = &mut self.client;
        let key = format!("{PREFIX}/nodes/{node}");
        let response = self
            .rt
            .block_on(client.get(key.as_str(), None))
            .expect("etcd get");
        let kv = response
            .kvs()
            .first()
            .unwrap_or_else(|| panic!("{key} is not in etcd"));
        let record: NodeRecord = serde_json::from_slice(kv.value()).expect("node record");
        record.cidrs
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}
