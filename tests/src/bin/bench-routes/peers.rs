//! The fake nodes: a record and a CIDR key each, as a real claim writes
//! them, on the real node's segment so that each gets a host-gw route.

use std::net::{IpAddr, Ipv4Addr};

use ipnetwork::{IpNetwork, Ipv4Network};
use podnetd::store::etcd::etcd_client::{PutOptions, TxnOp};
use podnetd::store::NodeRecord;

use crate::PREFIX;

#[derive(Clone)]
pub struct Fake {
    pub name: String,
    pub cidr: IpNetwork,
    pub addr: Ipv4Addr,
}

impl Fake {
    fn record(&self) -> String {
        let octets = self.addr.octets();
        let record = NodeRecord {
            node: self.name.clone(),
            cidrs: vec![self.cidr],
            addresses: vec![IpAddr::V4(self.addr)],
            vtep_mac: Some(format!(
                "02:fa:{:02x}:{:02x}:{:02x}:{:02x}",
                octets[0], octets[1], octets[2], octets[3]
            )),
        };
        serde_json::to_string(&record).expect("record JSON")
    }

    fn node_key(&self) -> String {
        format!("{PREFIX}/nodes/{}", self.name)
    }

    fn cidr_key(&self) -> String {
        format!("{PREFIX}/cidrs/{}", self.cidr.to_string().replace('/', "_"))
    }

    pub fn puts(&self, lease: i64) -> [TxnOp; 2] {
        let opts = || Some(PutOptions::new().with_lease(lease));
        [
            TxnOp::put(self.node_key(), self.record(), opts()),
            TxnOp::put(self.cidr_key(), self.name.as_bytes(), opts()),
        ]
    }

    pub fn deletes(&self) -> [TxnOp; 2] {
        [
            TxnOp::delete(self.node_key(), None),
            TxnOp::delete(self.cidr_key(), None),
        ]
    }
}

/// `n` fake nodes named `{stem}-{i}`: /24s from 10.1.0.0 upward, skipping
/// any that overlaps `avoid`; addresses 172.20.1.1 upward (250 per /24).
pub fn fake_peers(stem: &str, n: usize, avoid: &[IpNetwork]) -> Vec<Fake> {
    let mut peers = Vec::with_capacity(n);
    let mut block: u32 = 256; // 10.1.0.0/24
    while peers.len() < n {
        let net = Ipv4Network::new(Ipv4Addr::from(0x0a00_0000 | (block << 8)), 24).expect("/24");
        block += 1;
        let cidr = IpNetwork::V4(net);
        if avoid
            .iter()
            .any(|a| a.contains(cidr.network()) || cidr.contains(a.network()))
        {
            continue;
        }
        let i = u32::try_from(peers.len()).expect("size");
        let addr = Ipv4Addr::new(
            172,
            20,
            u8::try_from(1 + i / 250).expect("<= 60000 peers"),
            u8::try_from(1 + i % 250).expect("octet"),
        );
        peers.push(Fake {
            name: format!("{stem}-{i}"),
            cidr,
            addr,
        });
    }
    peers
}
