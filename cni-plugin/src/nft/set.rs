//! Named sets and maps, and their elements.
//!
//! How an interval is written depends on the set's backend, which the
//! kernel picks from its flags: a one-field interval set (rbtree) takes a
//! start element and an end element flagged `NFT_SET_ELEM_INTERVAL_END`
//! whose key is one past the interval; a concatenated interval set
//! (pipapo, `NFT_SET_CONCAT`) takes one element with the inclusive end in
//! `NFTA_SET_ELEM_KEY_END`, and needs the fields' lengths in
//! `NFTA_SET_DESC`. Both are what `nft` sends.

use std::net::IpAddr;

use ipnetwork::IpNetwork;

use super::expr::Verdict;
use super::msg::Writer;
use super::object::Table;
use super::uapi::*;

/// The type of one field of a key (or of a map's value).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyType {
    Ipv4Addr,
    Ipv6Addr,
    InetProto,
    InetService,
}

impl KeyType {
    /// `nft`'s datatype number, which the kernel keeps for `nft list`.
    fn type_id(self) -> u32 {
        match self {
            Self::Ipv4Addr => 7,
            Self::Ipv6Addr => 8,
            Self::InetProto => 12,
            Self::InetService => 13,
        }
    }

    /// Bytes of a value of the type.
    pub fn size(self) -> usize {
        match self {
            Self::Ipv4Addr => 4,
            Self::Ipv6Addr => 16,
            Self::InetProto => 1,
            Self::InetService => 2,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Ipv4Addr => "ipv4_addr",
            Self::Ipv6Addr => "ipv6_addr",
            Self::InetProto => "inet_proto",
            Self::InetService => "inet_service",
        }
    }
}

/// `nft` numbers a concatenation's type 6 bits a field, first field
/// highest.
fn type_id(types: &[KeyType]) -> u32 {
    types.iter().fold(0, |acc, t| (acc << 6) | t.type_id())
}

/// A lone field takes its own length; concatenated fields each take whole
/// 4-byte registers.
fn key_len(types: &[KeyType]) -> usize {
    match types {
        [one] => one.size(),
        _ => types.iter().map(|t| t.size().next_multiple_of(4)).sum(),
    }
}

fn describe_types(types: &[KeyType]) -> String {
    let names: Vec<&str> = types.iter().map(|t| t.name()).collect();
    names.join(" . ")
}

/// What a map's keys lead to.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum MapData {
    /// A verdict map (`vmap`): accept, drop, jump or goto a chain.
    Verdict,
    /// Values, e.g. an address and a port to DNAT to.
    Value(Vec<KeyType>),
}

/// A named set, or a map when it has `data`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Set {
    pub table: Table,
    pub name: String,
    /// One type, or several for a concatenated key.
    pub key: Vec<KeyType>,
    pub data: Option<MapData>,
    /// Elements may be ranges and prefixes.
    pub interval: bool,
    /// Elements can only be added with the set, never changed.
    pub constant: bool,
}

impl Set {
    pub fn new(table: &Table, name: impl Into<String>, key: &[KeyType]) -> Self {
        Self {
            table: table.clone(),
            name: name.into(),
            key: key.to_vec(),
            data: None,
            interval: false,
            constant: false,
        }
    }

    pub fn map(table: &Table, name: impl Into<String>, key: &[KeyType], data: MapData) -> Self {
        Self {
            data: Some(data),
            ..Self::new(table, name, key)
        }
    }

    pub fn interval(mut self) -> Self {
        self.interval = true;
        self
    }

    pub fn constant(mut self) -> Self {
        self.constant = true;
        self
    }

    /// A concatenated interval set: the kernel's pipapo backend.
    fn is_concat_interval(&self) -> bool {
        self.interval && self.key.len() > 1
    }

    fn flags(&self) -> u32 {
        let mut flags = 0;
        if self.constant {
            flags |= NFT_SET_CONSTANT;
        }
        if self.interval {
            flags |= NFT_SET_INTERVAL;
        }
        if self.data.is_some() {
            flags |= NFT_SET_MAP;
        }
        if self.is_concat_interval() {
            flags |= NFT_SET_CONCAT;
        }
        flags
    }

    /// `inet podnet allowed`.
    pub fn describe_ref(&self) -> String {
        format!("{} {}", self.table.describe(), self.name)
    }

    /// `set inet t s { type ipv4_addr . inet_service; flags interval; }`.
    pub fn describe(&self) -> String {
        let (what, data) = match &self.data {
            None => ("set", String::new()),
            Some(MapData::Verdict) => ("map", " : verdict".into()),
            Some(MapData::Value(t)) => ("map", format!(" : {}", describe_types(t))),
        };
        let mut flags = Vec::new();
        if self.constant {
            flags.push("constant");
        }
        if self.interval {
            flags.push("interval");
        }
        let flags = if flags.is_empty() {
            String::new()
        } else {
            format!(" flags {};", flags.join(","))
        };
        format!(
            "{what} {} {{ type {}{data};{flags} }}",
            self.describe_ref(),
            describe_types(&self.key)
        )
    }

    /// The NEWSET attributes, in `nft`'s order. `id` names the set within
    /// its batch (the kernel requires one).
    pub(super) fn encode(&self, w: &mut Writer, id: u32) {
        w.attr_str(NFTA_SET_TABLE, &self.table.name);
        w.attr_str(NFTA_SET_NAME, &self.name);
        w.attr_be32(NFTA_SET_FLAGS, self.flags());
        w.attr_be32(NFTA_SET_KEY_TYPE, type_id(&self.key));
        w.attr_be32(NFTA_SET_KEY_LEN, key_len(&self.key) as u32);
        match &self.data {
            None => {}
            // The kernel sizes a verdict itself; `nft` sends length 0.
            Some(MapData::Verdict) => {
                w.attr_be32(NFTA_SET_DATA_TYPE, NFT_DATA_VERDICT);
                w.attr_be32(NFTA_SET_DATA_LEN, 0);
            }
            Some(MapData::Value(t)) => {
                w.attr_be32(NFTA_SET_DATA_TYPE, type_id(t));
                w.attr_be32(NFTA_SET_DATA_LEN, key_len(t) as u32);
            }
        }
        w.attr_be32(NFTA_SET_ID, id);
        if self.is_concat_interval() {
            w.nest(NFTA_SET_DESC, |w| {
                w.nest(NFTA_SET_DESC_CONCAT, |w| {
                    for t in &self.key {
                        w.nest(NFTA_LIST_ELEM, |w| {
                            w.attr_be32(NFTA_SET_FIELD_LEN, t.size() as u32)
                        });
                    }
                })
            });
        }
    }

    /// Table and name only: what deleting or flushing needs.
    pub(super) fn encode_ref(&self, w: &mut Writer, table_attr: u16, name_attr: u16) {
        w.attr_str(table_attr, &self.table.name);
        w.attr_str(name_attr, &self.name);
    }
}

/// One value of a key field.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Atom {
    Addr(IpAddr),
    /// An IP protocol number (`inet_proto`): 6 is tcp, 17 udp.
    Proto(u8),
    /// A transport port (`inet_service`).
    Port(u16),
}

impl Atom {
    pub fn key_type(&self) -> KeyType {
        match self {
            Self::Addr(IpAddr::V4(_)) => KeyType::Ipv4Addr,
            Self::Addr(IpAddr::V6(_)) => KeyType::Ipv6Addr,
            Self::Proto(_) => KeyType::InetProto,
            Self::Port(_) => KeyType::InetService,
        }
    }

    /// Network byte order, as the packet has it.
    pub fn bytes(&self) -> Vec<u8> {
        match self {
            Self::Addr(IpAddr::V4(a)) => a.octets().to_vec(),
            Self::Addr(IpAddr::V6(a)) => a.octets().to_vec(),
            Self::Proto(p) => vec![*p],
            Self::Port(p) => p.to_be_bytes().to_vec(),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Self::Addr(a) => a.to_string(),
            Self::Proto(6) => "tcp".into(),
            Self::Proto(17) => "udp".into(),
            Self::Proto(p) => p.to_string(),
            Self::Port(p) => p.to_string(),
        }
    }
}

impl From<IpAddr> for Atom {
    fn from(a: IpAddr) -> Self {
        Self::Addr(a)
    }
}

/// One field of an element's key: a value, or (in an interval set) an
/// inclusive range or an address prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Part {
    Single(Atom),
    Range(Atom, Atom),
    Prefix(IpNetwork),
}

impl Part {
    /// The inclusive bounds.
    pub fn bounds(&self) -> (Atom, Atom) {
        match *self {
            Self::Single(a) => (a, a),
            Self::Range(a, b) => (a, b),
            Self::Prefix(n) => (Atom::Addr(n.network()), Atom::Addr(n.broadcast())),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Self::Single(a) => a.describe(),
            Self::Range(a, b) => format!("{}-{}", a.describe(), b.describe()),
            Self::Prefix(n) => format!("{}/{}", n.network(), n.prefix()),
        }
    }
}

impl From<Atom> for Part {
    fn from(a: Atom) -> Self {
        Self::Single(a)
    }
}

/// What a map element leads to.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ElemData {
    Verdict(Verdict),
    Value(Vec<Atom>),
}

/// One element: a key of one part per key field, and a map's data.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Element {
    pub key: Vec<Part>,
    pub data: Option<ElemData>,
}

impl Element {
    pub fn new(key: impl IntoIterator<Item = Part>) -> Self {
        Self {
            key: key.into_iter().collect(),
            data: None,
        }
    }

    pub fn with(mut self, data: ElemData) -> Self {
        self.data = Some(data);
        self
    }

    pub fn describe(&self) -> String {
        let key: Vec<String> = self.key.iter().map(Part::describe).collect();
        let key = key.join(" . ");
        match &self.data {
            None => key,
            Some(ElemData::Verdict(v)) => format!("{key} : {}", v.describe()),
            Some(ElemData::Value(v)) => {
                let v: Vec<String> = v.iter().map(Atom::describe).collect();
                format!("{key} : {}", v.join(" . "))
            }
        }
    }
}
