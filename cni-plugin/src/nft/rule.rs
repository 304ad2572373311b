//! Rules, built the way `nft` compiles its statements: each method adds the
//! expressions of one match or action, with the protocol dependency `nft`
//! would add (an `ip saddr` in an inet table first checks `meta nfproto
//! ipv4`), and the words `nft` would print, for error messages.

use ipnetwork::IpNetwork;

use super::expr::{CmpOp, CtKey, Data, Expr, MetaKey, PayloadBase, Reg, Verdict};
use super::msg::Writer;
use super::object::{Family, Table};
use super::set::{Atom, KeyType};
use super::uapi::*;

/// Something a rule loads from a packet: alone, or concatenated with
/// others as a set's key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Field {
    Ip4Saddr,
    Ip4Daddr,
    Ip6Saddr,
    Ip6Daddr,
    /// `meta l4proto`: the transport protocol, after IPv6 extension headers.
    L4Proto,
    /// `th sport`: any transport header's source port.
    Sport,
    /// `th dport`.
    Dport,
}

impl Field {
    pub fn key_type(self) -> KeyType {
        match self {
            Self::Ip4Saddr | Self::Ip4Daddr => KeyType::Ipv4Addr,
            Self::Ip6Saddr | Self::Ip6Daddr => KeyType::Ipv6Addr,
            Self::L4Proto => KeyType::InetProto,
            Self::Sport | Self::Dport => KeyType::InetService,
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Self::Ip4Saddr => "ip saddr",
            Self::Ip4Daddr => "ip daddr",
            Self::Ip6Saddr => "ip6 saddr",
            Self::Ip6Daddr => "ip6 daddr",
            Self::L4Proto => "meta l4proto",
            Self::Sport => "th sport",
            Self::Dport => "th dport",
        }
    }

    /// The IP version the field belongs to.
    fn family(self) -> Option<Family> {
        match self {
            Self::Ip4Saddr | Self::Ip4Daddr => Some(Family::Ip),
            Self::Ip6Saddr | Self::Ip6Daddr => Some(Family::Ip6),
            Self::L4Proto | Self::Sport | Self::Dport => None,
        }
    }

    /// Loads the first `len` bytes of the field into `dreg`.
    fn load(self, dreg: Reg, len: u32) -> Expr {
        let payload = |base, offset| Expr::Payload {
            base,
            offset,
            len,
            dreg,
        };
        match self {
            Self::Ip4Saddr => payload(PayloadBase::Network, 12),
            Self::Ip4Daddr => payload(PayloadBase::Network, 16),
            Self::Ip6Saddr => payload(PayloadBase::Network, 8),
            Self::Ip6Daddr => payload(PayloadBase::Network, 24),
            Self::Sport => payload(PayloadBase::Transport, 0),
            Self::Dport => payload(PayloadBase::Transport, 2),
            Self::L4Proto => Expr::Meta {
                key: MetaKey::L4Proto,
                dreg,
            },
        }
    }
}

/// Connection tracking states (`ct state`), combinable with `|`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CtState(pub u32);

impl CtState {
    pub const INVALID: Self = Self(1);
    pub const ESTABLISHED: Self = Self(1 << 1);
    pub const RELATED: Self = Self(1 << 2);
    pub const NEW: Self = Self(1 << 3);
    pub const UNTRACKED: Self = Self(1 << 6);

    fn describe(self) -> String {
        let names = [
            (Self::INVALID, "invalid"),
            (Self::ESTABLISHED, "established"),
            (Self::RELATED, "related"),
            (Self::NEW, "new"),
            (Self::UNTRACKED, "untracked"),
        ];
        let set: Vec<&str> = names
            .iter()
            .filter(|(s, _)| self.0 & s.0 != 0)
            .map(|(_, n)| *n)
            .collect();
        set.join(",")
    }
}

impl std::ops::BitOr for CtState {
    type Output = Self;
    fn bitor(self, rhs: Self) -> Self {
        Self(self.0 | rhs.0)
    }
}

/// A rule of a chain: its expressions, an optional comment (which `nft`
/// shows, and which names the rule for counters), and what `nft` would
/// print for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    pub table: Table,
    pub chain: String,
    pub exprs: Vec<Expr>,
    pub comment: Option<String>,
    words: Vec<String>,
    /// The first thing the builder was asked that cannot be expressed;
    /// the transaction reports it.
    invalid: Option<String>,
    /// The IP version this rule already checked for (inet tables).
    checked: Option<Family>,
}

impl Rule {
    pub fn new(table: &Table, chain: impl Into<String>) -> Self {
        Self {
            table: table.clone(),
            chain: chain.into(),
            exprs: Vec::new(),
            comment: None,
            words: Vec::new(),
            invalid: None,
            checked: None,
        }
    }

    /// The rule as `nft list` prints it (near enough for error messages).
    pub fn describe(&self) -> String {
        let mut s = self.words.join(" ");
        if let Some(c) = &self.comment {
            s.push_str(&format!(" comment \"{c}\""));
        }
        s
    }

    pub(super) fn invalid(&self) -> Option<&str> {
        self.invalid.as_deref()
    }

    /// Records what cannot be expressed, keeping the words asked for so
    /// that the error shows the rule as it was meant.
    fn refuse(mut self, words: String, reason: String) -> Self {
        self.invalid.get_or_insert(reason);
        if !words.is_empty() {
            self.words.push(words);
        }
        self
    }

    fn push(mut self, exprs: impl IntoIterator<Item = Expr>, words: String) -> Self {
        self.exprs.extend(exprs);
        if !words.is_empty() {
            self.words.push(words);
        }
        self
    }

    /// Any expression, as is.
    pub fn expr(self, e: Expr) -> Self {
        let words = format!("[{}]", e.name());
        self.push([e], words)
    }

    /// `meta nfproto ipv4|ipv6`: only packets of that IP version.
    pub fn nfproto(self, version: Family) -> Self {
        let name = match version {
            Family::Ip => "ipv4",
            Family::Ip6 => "ipv6",
            Family::Inet => {
                let reason = "meta nfproto takes ipv4 or ipv6".into();
                return self.refuse("meta nfproto inet".into(), reason);
            }
        };
        self.check_version(version, format!("meta nfproto {name}"))
    }

    /// `meta nfproto` and `cmp` for `version` (ip or ip6).
    fn check_version(mut self, version: Family, words: String) -> Self {
        self.checked = Some(version);
        let exprs = [
            Expr::Meta {
                key: MetaKey::NfProto,
                dreg: Reg::R1,
            },
            cmp(CmpOp::Eq, vec![version.raw()]),
        ];
        self.push(exprs, words)
    }

    /// What `nft` adds, unprinted, before a field of one IP version:
    /// nothing in a table of that version, `meta nfproto` once in an inet
    /// table.
    fn depend(self, field: Field) -> Self {
        let Some(version) = field.family() else {
            return self;
        };
        match self.table.family {
            Family::Inet if self.checked != Some(version) => {
                self.check_version(version, String::new())
            }
            Family::Inet => self,
            f if f == version => self,
            f => {
                let reason = format!("{} in a {} table", field.describe(), f.name());
                self.refuse(String::new(), reason)
            }
        }
    }

    /// `FIELD [!=] VALUE`, e.g. `th dport 80` or `meta l4proto tcp`.
    pub fn cmp(self, field: Field, op: CmpOp, value: Atom) -> Self {
        if value.key_type() != field.key_type() {
            let reason = format!("{} is not a {}", value.describe(), field.describe());
            let words = format!("{} {}", field.describe(), value.describe());
            return self.refuse(words, reason);
        }
        let len = field.key_type().size() as u32;
        let words = format!("{}{} {}", field.describe(), op_word(op), value.describe());
        self.depend(field)
            .push([field.load(Reg::R1, len), cmp(op, value.bytes())], words)
    }

    /// `meta l4proto PROTO`.
    pub fn l4proto(self, proto: u8) -> Self {
        self.cmp(Field::L4Proto, CmpOp::Eq, Atom::Proto(proto))
    }

    /// `ip saddr [!=] NET` and the like: a whole-byte prefix loads only its
    /// bytes, another is masked, as `nft` compiles them.
    pub fn prefix(self, field: Field, op: CmpOp, net: IpNetwork) -> Self {
        let network = Atom::Addr(net.network());
        if network.key_type() != field.key_type() {
            let reason = format!("{net} is not a {}", field.describe());
            return self.refuse(format!("{} {net}", field.describe()), reason);
        }
        let bytes = network.bytes();
        let full = bytes.len() as u32;
        let prefix = u32::from(net.prefix());
        let words = format!("{}{} {net}", field.describe(), op_word(op));
        let exprs = if prefix == full * 8 {
            vec![field.load(Reg::R1, full), cmp(op, bytes)]
        } else if prefix % 8 == 0 && prefix > 0 {
            let len = prefix / 8;
            let part = bytes[..len as usize].to_vec();
            vec![field.load(Reg::R1, len), cmp(op, part)]
        } else {
            let mask = Atom::Addr(net.mask()).bytes();
            vec![
                field.load(Reg::R1, full),
                Expr::Bitwise {
                    sreg: Reg::R1,
                    dreg: Reg::R1,
                    xor: vec![0; mask.len()],
                    mask,
                },
                cmp(op, bytes),
            ]
        };
        self.depend(field).push(exprs, words)
    }

    /// `iifname [!=] NAME`.
    pub fn iifname(self, op: CmpOp, name: &str) -> Self {
        self.ifname(MetaKey::IifName, "iifname", op, name)
    }

    /// `oifname [!=] NAME`.
    pub fn oifname(self, op: CmpOp, name: &str) -> Self {
        self.ifname(MetaKey::OifName, "oifname", op, name)
    }

    /// The kernel compares the whole IFNAMSIZ buffer, NUL-padded.
    fn ifname(self, key: MetaKey, word: &str, op: CmpOp, name: &str) -> Self {
        const IFNAMSIZ: usize = 16;
        if name.is_empty() || name.len() >= IFNAMSIZ {
            let words = format!("{word} \"{name}\"");
            return self.refuse(words, "an interface name has 1 to 15 bytes".into());
        }
        let mut data = name.as_bytes().to_vec();
        data.resize(IFNAMSIZ, 0);
        let load = Expr::Meta { key, dreg: Reg::R1 };
        self.push(
            [load, cmp(op, data)],
            format!("{word}{} \"{name}\"", op_word(op)),
        )
    }

    /// `meta mark [!=] MARK` (the kernel keeps marks in host byte order).
    pub fn mark(self, op: CmpOp, mark: u32) -> Self {
        let load = Expr::Meta {
            key: MetaKey::Mark,
            dreg: Reg::R1,
        };
        let words = format!("meta mark{} {mark:#010x}", op_word(op));
        self.push([load, cmp(op, mark.to_ne_bytes().to_vec())], words)
    }

    /// `ct state S1,S2`: any of the states.
    pub fn ct_state(self, states: CtState) -> Self {
        let exprs = [
            Expr::Ct {
                key: CtKey::State,
                dreg: Reg::R1,
            },
            Expr::Bitwise {
                sreg: Reg::R1,
                dreg: Reg::R1,
                mask: states.0.to_ne_bytes().to_vec(),
                xor: vec![0; 4],
            },
            cmp(CmpOp::Neq, vec![0; 4]),
        ];
        self.push(exprs, format!("ct state {}", states.describe()))
    }

    /// `ct status dnat`: the connection's destination was translated.
    pub fn ct_dnat(self) -> Self {
        /// `IPS_DST_NAT` of `nf_conntrack_common.h`.
        const DST_NAT: u32 = 1 << 5;
        let exprs = [
            Expr::Ct {
                key: CtKey::Status,
                dreg: Reg::R1,
            },
            Expr::Bitwise {
                sreg: Reg::R1,
                dreg: Reg::R1,
                mask: DST_NAT.to_ne_bytes().to_vec(),
                xor: vec![0; 4],
            },
            cmp(CmpOp::Neq, vec![0; 4]),
        ];
        self.push(exprs, "ct status dnat".into())
    }

    /// `FIELDS @set`: the packet's fields, concatenated, are in the set.
    pub fn in_set(self, fields: &[Field], set: &str) -> Self {
        self.lookup(fields, set, false, None)
    }

    /// `FIELDS != @set`.
    pub fn not_in_set(self, fields: &[Field], set: &str) -> Self {
        self.lookup(fields, set, true, None)
    }

    /// `FIELDS vmap @map`: the map's verdict for the fields decides.
    pub fn vmap(self, fields: &[Field], map: &str) -> Self {
        self.lookup(fields, map, false, Some(Reg::VERDICT))
    }

    /// Loads `fields` into consecutive registers (a lone field into
    /// `NFT_REG_1`, concatenated ones a whole 4-byte register each) and
    /// looks them up in `set`, its value (if any) into `dreg`.
    pub fn lookup(mut self, fields: &[Field], set: &str, invert: bool, dreg: Option<Reg>) -> Self {
        let mut offset = 0;
        let mut loads = Vec::new();
        for &f in fields {
            let Some(reg) = Reg::at_offset(offset) else {
                let reason = format!("a key of {} fields is too long", fields.len());
                return self.refuse(format!("@{set}"), reason);
            };
            let len = f.key_type().size();
            self = self.depend(f);
            loads.push(f.load(reg, len as u32));
            offset += len.next_multiple_of(4);
        }
        if fields.is_empty() || offset > Reg::DATA_BYTES {
            let reason = format!("a key of {} fields is too long or empty", fields.len());
            return self.refuse(format!("@{set}"), reason);
        }
        let names: Vec<&str> = fields.iter().map(|f| f.describe()).collect();
        let how = match (dreg, invert) {
            (Some(Reg::VERDICT), _) => " vmap ",
            (Some(_), _) => " map ",
            (None, true) => " != ",
            (None, false) => " ",
        };
        loads.push(Expr::Lookup {
            set: set.to_string(),
            sreg: Reg::R1,
            dreg,
            invert,
        });
        self.push(loads, format!("{}{how}@{set}", names.join(" . ")))
    }

    /// `counter`: its packets and bytes are read back with the rule.
    pub fn counter(self) -> Self {
        let c = Expr::Counter {
            packets: 0,
            bytes: 0,
        };
        self.push([c], "counter".into())
    }

    pub fn verdict(self, v: Verdict) -> Self {
        let words = v.describe();
        let e = Expr::Immediate {
            dreg: Reg::VERDICT,
            data: Data::Verdict(v),
        };
        self.push([e], words)
    }

    pub fn accept(self) -> Self {
        self.verdict(Verdict::Accept)
    }

    pub fn drop(self) -> Self {
        self.verdict(Verdict::Drop)
    }

    /// `masquerade`: the source becomes the outgoing interface's address.
    pub fn masquerade(self) -> Self {
        self.push([Expr::Masquerade], "masquerade".into())
    }

    /// `dnat ip to ADDR:PORT` (or `ip6`, `[ADDR]:PORT`): the connection
    /// goes to `to` instead. In an inet table, the rule must have checked
    /// the IP version first (a field of it, or [`Self::nfproto`]).
    pub fn dnat(self, to: std::net::SocketAddr) -> Self {
        let (family, addr) = match to.ip() {
            std::net::IpAddr::V4(a) => (NFPROTO_IPV4, a.octets().to_vec()),
            std::net::IpAddr::V6(a) => (NFPROTO_IPV6, a.octets().to_vec()),
        };
        // The port in the next register after the address's (16 bytes
        // for either version).
        let port = Reg(2);
        let exprs = [
            Expr::Immediate {
                dreg: Reg::R1,
                data: Data::Value(addr),
            },
            Expr::Immediate {
                dreg: port,
                data: Data::Value(to.port().to_be_bytes().to_vec()),
            },
            Expr::Dnat {
                family,
                addr: Reg::R1,
                port,
            },
        ];
        let words = match to {
            std::net::SocketAddr::V4(_) => format!("dnat ip to {to}"),
            std::net::SocketAddr::V6(_) => format!("dnat ip6 to {to}"),
        };
        self.push(exprs, words)
    }

    /// `fib daddr type local`: the destination is one of this host's
    /// addresses.
    pub fn to_local_address(self) -> Self {
        let exprs = [
            Expr::FibDaddrType { dreg: Reg::R1 },
            Expr::Cmp {
                sreg: Reg::R1,
                op: CmpOp::Eq,
                data: RTN_LOCAL.to_ne_bytes().to_vec(),
            },
        ];
        self.push(exprs, "fib daddr type local".into())
    }

    /// `comment "TEXT"`, kept by the kernel with the rule.
    pub fn comment(mut self, text: impl Into<String>) -> Self {
        self.comment = Some(text.into());
        self
    }

    /// Table, chain, expressions, then user data: the order `nft` sends.
    pub(super) fn encode(&self, w: &mut Writer, position: Option<u64>) {
        w.attr_str(NFTA_RULE_TABLE, &self.table.name);
        w.attr_str(NFTA_RULE_CHAIN, &self.chain);
        w.nest(NFTA_RULE_EXPRESSIONS, |w| {
            for e in &self.exprs {
                e.encode(w);
            }
        });
        if let Some(handle) = position {
            w.attr_be64(NFTA_RULE_POSITION, handle);
        }
        if let Some(c) = &self.comment {
            w.attr(NFTA_RULE_USERDATA, &comment_udata(c));
        }
    }
}

fn cmp(op: CmpOp, data: Vec<u8>) -> Expr {
    Expr::Cmp {
        sreg: Reg::R1,
        op,
        data,
    }
}

fn op_word(op: CmpOp) -> &'static str {
    match op {
        CmpOp::Eq => "",
        CmpOp::Neq => " !=",
        CmpOp::Lt => " <",
        CmpOp::Lte => " <=",
        CmpOp::Gt => " >",
        CmpOp::Gte => " >=",
    }
}

/// libnftnl's user data TLV: type, length (with the NUL), the text. The
/// length is one byte, so a comment is cut to 254 bytes of text.
pub(super) fn comment_udata(text: &str) -> Vec<u8> {
    let mut end = text.len().min(254);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let mut out = vec![UDATA_RULE_COMMENT, (end + 1) as u8];
    out.extend_from_slice(&text.as_bytes()[..end]);
    out.push(0);
    out
}

/// The comment in a listed rule's user data, if it has one.
pub(super) fn comment_from_udata(mut udata: &[u8]) -> Option<String> {
    while udata.len() >= 2 {
        let (kind, len) = (udata[0], usize::from(udata[1]));
        let value = udata.get(2..2 + len)?;
        if kind == UDATA_RULE_COMMENT {
            return super::msg::string(value);
        }
        udata = &udata[2 + len..];
    }
    None
}
