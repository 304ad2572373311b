//! A result written in any supported version: fields the version does not
//! know are left out (see the parent module's docs).

use ipnetwork::IpNetwork;
use serde_json::{Map, Value};

use super::{CniResult, Dns, Interface, IpConfig, Route};
use crate::spec::version::CniVersion;

impl CniResult {
    /// The result as a JSON document in version `v`, with "cniVersion": v.
    pub fn to_json(&self, v: CniVersion) -> Value {
        let legacy = v < CniVersion::V1_0_0;
        let mut doc = Map::new();
        doc.insert("cniVersion".into(), v.as_str().into());
        let mut put_list = |key: &str, list: Vec<Value>| {
            if !list.is_empty() {
                doc.insert(key.into(), Value::Array(list));
            }
        };
        put_list(
            "interfaces",
            self.interfaces.iter().map(|i| interface(i, v)).collect(),
        );
        put_list("ips", self.ips.iter().map(|ip| ip_config(ip, v)).collect());
        put_list("routes", self.routes.iter().map(|r| route(r, v)).collect());
        if legacy || !self.dns.is_empty() {
            doc.insert("dns".into(), dns_to_json(&self.dns));
        }
        Value::Object(doc)
    }
}

fn interface(i: &Interface, v: CniVersion) -> Value {
    let v11 = v >= CniVersion::V1_1_0;
    let mut o = Map::new();
    o.insert("name".into(), i.name.clone().into());
    put_str(&mut o, "mac", Some(&i.mac));
    if v11 {
        put_nonzero(&mut o, "mtu", i.mtu);
    }
    put_str(&mut o, "sandbox", i.sandbox.as_ref());
    if v11 {
        put_str(&mut o, "socketPath", i.socket_path.as_ref());
        put_str(&mut o, "pciID", i.pci_id.as_ref());
    }
    Value::Object(o)
}

/// Before 1.0.0 an address carries its family as `version`.
fn ip_config(ip: &IpConfig, v: CniVersion) -> Value {
    let mut o = Map::new();
    if v < CniVersion::V1_0_0 {
        let family = if ip.address.is_ipv4() { "4" } else { "6" };
        o.insert("version".into(), family.into());
    }
    if let Some(idx) = ip.interface {
        o.insert("interface".into(), idx.into());
    }
    o.insert("address".into(), cidr_string(&ip.address).into());
    if let Some(gw) = ip.gateway {
        o.insert("gateway".into(), gw.to_string().into());
    }
    Value::Object(o)
}

/// A route's attributes beyond `dst` and `gw` came in 1.1.0.
fn route(r: &Route, v: CniVersion) -> Value {
    let mut o = Map::new();
    o.insert("dst".into(), cidr_string(&r.dst).into());
    if let Some(gw) = r.gw {
        o.insert("gw".into(), gw.to_string().into());
    }
    if v >= CniVersion::V1_1_0 {
        put_nonzero(&mut o, "mtu", r.mtu);
        put_nonzero(&mut o, "advmss", r.advmss);
        put_nonzero(&mut o, "priority", r.priority);
        if let Some(t) = r.table {
            o.insert("table".into(), t.into());
        }
        if let Some(s) = r.scope {
            o.insert("scope".into(), s.into());
        }
    }
    Value::Object(o)
}

pub(super) fn cidr_string(n: &IpNetwork) -> String {
    format!("{}/{}", n.ip(), n.prefix())
}

fn dns_to_json(dns: &Dns) -> Value {
    let mut o = Map::new();
    let list = |l: &[String]| Value::Array(l.iter().cloned().map(Value::String).collect());
    if !dns.nameservers.is_empty() {
        o.insert("nameservers".into(), list(&dns.nameservers));
    }
    put_str(&mut o, "domain", dns.domain.as_ref());
    if !dns.search.is_empty() {
        o.insert("search".into(), list(&dns.search));
    }
    if !dns.options.is_empty() {
        o.insert("options".into(), list(&dns.options));
    }
    Value::Object(o)
}

fn put_str(o: &mut Map<String, Value>, key: &str, v: Option<&String>) {
    if let Some(s) = v.filter(|s| !s.is_empty()) {
        o.insert(key.into(), s.clone().into());
    }
}

fn put_nonzero(o: &mut Map<String, Value>, key: &str, v: Option<u32>) {
    if let Some(n) = v.filter(|&n| n != 0) {
        o.insert(key.into(), n.into());
    }
}
