//! Rule expressions: what each one is, its bytes, and reading it back from
//! a rule the kernel lists. The attribute order is the one `nft` (through
//! libnftnl) sends, so podnet's bytes compare equal to its reference.

use super::msg::{be32, be64, find, string, Attrs, Writer};
use super::uapi::*;

/// A register. The kernel has the verdict register, four 16-byte ones
/// (`NFT_REG_1..4`), and the same storage as sixteen 4-byte ones
/// (`NFT_REG32_00..15`), which concatenations fill one after another.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Reg(pub u32);

impl Reg {
    pub const VERDICT: Reg = Reg(0);
    pub const R1: Reg = Reg(1);
    /// `NFT_REG32_00`.
    const REG32_00: u32 = 8;
    /// Bytes all data registers hold together.
    pub const DATA_BYTES: usize = 64;

    /// The register holding the byte at `offset` of the data registers,
    /// named as `nft` names it and the kernel lists it: a 16-byte register
    /// (`NFT_REG_1..4`) where one starts, a 4-byte one elsewhere. `None`
    /// past the end or off a 4-byte boundary.
    pub fn at_offset(offset: usize) -> Option<Reg> {
        if offset % 4 != 0 || offset >= Self::DATA_BYTES {
            return None;
        }
        if offset % 16 == 0 {
            return Some(Reg(1 + (offset / 16) as u32));
        }
        Some(Reg(Self::REG32_00 + (offset / 4) as u32))
    }
}

/// What a rule (or a verdict map's element) decides.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Verdict {
    Accept,
    Drop,
    /// On to the next rule.
    Continue,
    /// Back to the chain that jumped here.
    Return,
    /// Into the chain, coming back after it.
    Jump(String),
    /// Into the chain, not coming back.
    Goto(String),
}

impl Verdict {
    fn code(&self) -> i32 {
        match self {
            Self::Accept => NF_ACCEPT,
            Self::Drop => NF_DROP,
            Self::Continue => NFT_CONTINUE,
            Self::Return => NFT_RETURN,
            Self::Jump(_) => NFT_JUMP,
            Self::Goto(_) => NFT_GOTO,
        }
    }

    /// As `nft` writes it.
    pub fn describe(&self) -> String {
        match self {
            Self::Accept => "accept".into(),
            Self::Drop => "drop".into(),
            Self::Continue => "continue".into(),
            Self::Return => "return".into(),
            Self::Jump(c) => format!("jump {c}"),
            Self::Goto(c) => format!("goto {c}"),
        }
    }

    /// `kind { NFTA_DATA_VERDICT { code, chain } }`.
    pub(super) fn encode(&self, w: &mut Writer, kind: u16) {
        w.nest(kind, |w| {
            w.nest(NFTA_DATA_VERDICT, |w| {
                w.attr_be32(NFTA_VERDICT_CODE, self.code() as u32);
                if let Self::Jump(chain) | Self::Goto(chain) = self {
                    w.attr_str(NFTA_VERDICT_CHAIN, chain);
                }
            })
        });
    }

    /// From the attributes of an `NFTA_DATA_VERDICT` nest.
    pub(super) fn decode(nest: &[u8]) -> Option<Self> {
        let code = be32(find(nest, NFTA_VERDICT_CODE)?)? as i32;
        let chain = || find(nest, NFTA_VERDICT_CHAIN).and_then(string);
        Some(match code {
            NF_ACCEPT => Self::Accept,
            NF_DROP => Self::Drop,
            NFT_CONTINUE => Self::Continue,
            NFT_RETURN => Self::Return,
            NFT_JUMP => Self::Jump(chain()?),
            NFT_GOTO => Self::Goto(chain()?),
            _ => return None,
        })
    }
}

/// What an immediate expression loads.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Data {
    Value(Vec<u8>),
    Verdict(Verdict),
}

/// `from_raw` for a fieldless enum whose discriminants are the uapi's
/// values: the variant of value `v`, when podnet knows one.
macro_rules! from_raw {
    ($ty:ident: $($variant:ident),+) => {
        impl $ty {
            fn from_raw(v: u32) -> Option<Self> {
                [$(Self::$variant),+].into_iter().find(|x| *x as u32 == v)
            }
        }
    };
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CmpOp {
    Eq = 0,
    Neq = 1,
    Lt = 2,
    Lte = 3,
    Gt = 4,
    Gte = 5,
}

from_raw!(CmpOp: Eq, Neq, Lt, Lte, Gt, Gte);

/// Packet metadata a rule can load (`enum nft_meta_keys`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MetaKey {
    Len = 0,
    Protocol = 1,
    Mark = 3,
    Iif = 4,
    Oif = 5,
    IifName = 6,
    OifName = 7,
    NfProto = 15,
    L4Proto = 16,
}

from_raw!(MetaKey: Len, Protocol, Mark, Iif, Oif, IifName, OifName, NfProto, L4Proto);

/// Where a payload offset counts from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PayloadBase {
    Link = 0,
    Network = 1,
    Transport = 2,
}

from_raw!(PayloadBase: Link, Network, Transport);

/// Connection tracking keys (`enum nft_ct_keys`), the ones podnet reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CtKey {
    State = 0,
    Status = 2,
    Mark = 3,
}

from_raw!(CtKey: State, Status, Mark);

/// One expression of a rule, as the kernel knows it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Expr {
    Meta {
        key: MetaKey,
        dreg: Reg,
    },
    Payload {
        base: PayloadBase,
        offset: u32,
        len: u32,
        dreg: Reg,
    },
    Cmp {
        sreg: Reg,
        op: CmpOp,
        data: Vec<u8>,
    },
    /// `dreg = (sreg & mask) ^ xor`, over `mask.len()` bytes.
    Bitwise {
        sreg: Reg,
        dreg: Reg,
        mask: Vec<u8>,
        xor: Vec<u8>,
    },
    /// Set membership, or with `dreg` a map's value (the verdict register
    /// for a verdict map).
    Lookup {
        set: String,
        sreg: Reg,
        dreg: Option<Reg>,
        invert: bool,
    },
    Immediate {
        dreg: Reg,
        data: Data,
    },
    Ct {
        key: CtKey,
        dreg: Reg,
    },
    /// Counts what reaches it; the kernel fills in the numbers it lists.
    Counter {
        packets: u64,
        bytes: u64,
    },
    Masquerade,
    /// `dnat`: the destination becomes the address in `addr` (of the IP
    /// version `family`, `NFPROTO_IPV4` or `NFPROTO_IPV6`) and the port in
    /// `port`.
    Dnat {
        family: u8,
        addr: Reg,
        port: Reg,
    },
    /// `fib daddr type`: the route type of the destination address
    /// (`RTN_LOCAL` for one of this host's).
    FibDaddrType {
        dreg: Reg,
    },
    /// An expression podnet does not write, seen in a listed rule.
    Unknown {
        name: String,
    },
}

impl Expr {
    /// The kernel's name of the expression type.
    pub fn name(&self) -> &str {
        match self {
            Self::Meta { .. } => "meta",
            Self::Payload { .. } => "payload",
            Self::Cmp { .. } => "cmp",
            Self::Bitwise { .. } => "bitwise",
            Self::Lookup { .. } => "lookup",
            Self::Immediate { .. } => "immediate",
            Self::Ct { .. } => "ct",
            Self::Counter { .. } => "counter",
            Self::Masquerade => "masq",
            Self::Dnat { .. } => "nat",
            Self::FibDaddrType { .. } => "fib",
            Self::Unknown { name } => name,
        }
    }

    /// `NFTA_LIST_ELEM { NFTA_EXPR_NAME, NFTA_EXPR_DATA { ... } }`.
    pub(super) fn encode(&self, w: &mut Writer) {
        w.nest(NFTA_LIST_ELEM, |w| {
            w.attr_str(NFTA_EXPR_NAME, self.name());
            w.nest(NFTA_EXPR_DATA, |w| self.encode_data(w));
        });
    }

    fn encode_data(&self, w: &mut Writer) {
        match self {
            Self::Meta { key, dreg } => {
                w.attr_be32(NFTA_META_KEY, *key as u32);
                w.attr_be32(NFTA_META_DREG, dreg.0);
            }
            Self::Payload {
                base,
                offset,
                len,
                dreg,
            } => {
                w.attr_be32(NFTA_PAYLOAD_DREG, dreg.0);
                w.attr_be32(NFTA_PAYLOAD_BASE, *base as u32);
                w.attr_be32(NFTA_PAYLOAD_OFFSET, *offset);
                w.attr_be32(NFTA_PAYLOAD_LEN, *len);
            }
            Self::Cmp { sreg, op, data } => {
                w.attr_be32(NFTA_CMP_SREG, sreg.0);
                w.attr_be32(NFTA_CMP_OP, *op as u32);
                w.nest(NFTA_CMP_DATA, |w| w.attr(NFTA_DATA_VALUE, data));
            }
            Self::Bitwise {
                sreg,
                dreg,
                mask,
                xor,
            } => {
                w.attr_be32(NFTA_BITWISE_SREG, sreg.0);
                w.attr_be32(NFTA_BITWISE_DREG, dreg.0);
                w.attr_be32(NFTA_BITWISE_LEN, mask.len() as u32);
                w.nest(NFTA_BITWISE_MASK, |w| w.attr(NFTA_DATA_VALUE, mask));
                w.nest(NFTA_BITWISE_XOR, |w| w.attr(NFTA_DATA_VALUE, xor));
            }
            Self::Lookup {
                set,
                sreg,
                dreg,
                invert,
            } => {
                w.attr_be32(NFTA_LOOKUP_SREG, sreg.0);
                if let Some(dreg) = dreg {
                    w.attr_be32(NFTA_LOOKUP_DREG, dreg.0);
                }
                w.attr_str(NFTA_LOOKUP_SET, set);
                if *invert {
                    w.attr_be32(NFTA_LOOKUP_FLAGS, NFT_LOOKUP_F_INV);
                }
            }
            Self::Immediate { dreg, data } => {
                w.attr_be32(NFTA_IMMEDIATE_DREG, dreg.0);
                match data {
                    Data::Verdict(v) => v.encode(w, NFTA_IMMEDIATE_DATA),
                    Data::Value(v) => w.nest(NFTA_IMMEDIATE_DATA, |w| w.attr(NFTA_DATA_VALUE, v)),
                }
            }
            Self::Ct { key, dreg } => {
                w.attr_be32(NFTA_CT_KEY, *key as u32);
                w.attr_be32(NFTA_CT_DREG, dreg.0);
            }
            // `nft` sends a counter without numbers: it starts at zero.
            Self::Counter { packets, bytes } => {
                if *packets != 0 || *bytes != 0 {
                    w.attr_be64(NFTA_COUNTER_BYTES, *bytes);
                    w.attr_be64(NFTA_COUNTER_PACKETS, *packets);
                }
            }
            // libnftnl's order.
            Self::Dnat { family, addr, port } => {
                w.attr_be32(NFTA_NAT_TYPE, NFT_NAT_DNAT);
                w.attr_be32(NFTA_NAT_FAMILY, u32::from(*family));
                w.attr_be32(NFTA_NAT_REG_ADDR_MIN, addr.0);
                w.attr_be32(NFTA_NAT_REG_PROTO_MIN, port.0);
            }
            Self::FibDaddrType { dreg } => {
                w.attr_be32(NFTA_FIB_DREG, dreg.0);
                w.attr_be32(NFTA_FIB_RESULT, NFT_FIB_RESULT_ADDRTYPE);
                w.attr_be32(NFTA_FIB_FLAGS, NFTA_FIB_F_DADDR);
            }
            Self::Masquerade | Self::Unknown { .. } => {}
        }
    }

    /// From an `NFTA_LIST_ELEM`'s attributes. An expression podnet does
    /// not know, or with attributes it cannot read, is `Unknown`.
    pub(super) fn decode(elem: &[u8]) -> Option<Self> {
        let name = string(find(elem, NFTA_EXPR_NAME)?)?;
        let data = find(elem, NFTA_EXPR_DATA).unwrap_or(&[]);
        Some(decode_data(&name, data).unwrap_or(Self::Unknown { name }))
    }
}

fn reg(data: &[u8], kind: u16) -> Option<Reg> {
    Some(Reg(be32(find(data, kind)?)?))
}

fn u32_attr(data: &[u8], kind: u16) -> Option<u32> {
    be32(find(data, kind)?)
}

/// The bytes of an `NFTA_DATA_VALUE` inside the nest `kind`.
fn value(data: &[u8], kind: u16) -> Option<Vec<u8>> {
    Some(find(find(data, kind)?, NFTA_DATA_VALUE)?.to_vec())
}

fn decode_data(name: &str, d: &[u8]) -> Option<Expr> {
    Some(match name {
        "meta" => Expr::Meta {
            key: MetaKey::from_raw(u32_attr(d, NFTA_META_KEY)?)?,
            dreg: reg(d, NFTA_META_DREG)?,
        },
        "payload" => Expr::Payload {
            base: PayloadBase::from_raw(u32_attr(d, NFTA_PAYLOAD_BASE)?)?,
            offset: u32_attr(d, NFTA_PAYLOAD_OFFSET)?,
            len: u32_attr(d, NFTA_PAYLOAD_LEN)?,
            dreg: reg(d, NFTA_PAYLOAD_DREG)?,
        },
        "cmp" => Expr::Cmp {
            sreg: reg(d, NFTA_CMP_SREG)?,
            op: CmpOp::from_raw(u32_attr(d, NFTA_CMP_OP)?)?,
            data: value(d, NFTA_CMP_DATA)?,
        },
        "bitwise" => Expr::Bitwise {
            sreg: reg(d, NFTA_BITWISE_SREG)?,
            dreg: reg(d, NFTA_BITWISE_DREG)?,
            mask: value(d, NFTA_BITWISE_MASK)?,
            xor: value(d, NFTA_BITWISE_XOR)?,
        },
        "lookup" => Expr::Lookup {
            set: string(find(d, NFTA_LOOKUP_SET)?)?,
            sreg: reg(d, NFTA_LOOKUP_SREG)?,
            dreg: reg(d, NFTA_LOOKUP_DREG),
            invert: u32_attr(d, NFTA_LOOKUP_FLAGS).unwrap_or(0) & NFT_LOOKUP_F_INV != 0,
        },
        "immediate" => {
            let nest = find(d, NFTA_IMMEDIATE_DATA)?;
            let data = match find(nest, NFTA_DATA_VERDICT) {
                Some(v) => Data::Verdict(Verdict::decode(v)?),
                None => Data::Value(find(nest, NFTA_DATA_VALUE)?.to_vec()),
            };
            Expr::Immediate {
                dreg: reg(d, NFTA_IMMEDIATE_DREG)?,
                data,
            }
        }
        "ct" => Expr::Ct {
            key: CtKey::from_raw(u32_attr(d, NFTA_CT_KEY)?)?,
            dreg: reg(d, NFTA_CT_DREG)?,
        },
        "counter" => Expr::Counter {
            packets: be64(find(d, NFTA_COUNTER_PACKETS)?)?,
            bytes: be64(find(d, NFTA_COUNTER_BYTES)?)?,
        },
        "masq" if Attrs::new(d).next().is_none() => Expr::Masquerade,
        "nat" if u32_attr(d, NFTA_NAT_TYPE)? == NFT_NAT_DNAT => Expr::Dnat {
            family: u8::try_from(u32_attr(d, NFTA_NAT_FAMILY)?).ok()?,
            addr: reg(d, NFTA_NAT_REG_ADDR_MIN)?,
            port: reg(d, NFTA_NAT_REG_PROTO_MIN)?,
        },
        "fib"
            if u32_attr(d, NFTA_FIB_RESULT)? == NFT_FIB_RESULT_ADDRTYPE
                && u32_attr(d, NFTA_FIB_FLAGS)? == NFTA_FIB_F_DADDR =>
        {
            Expr::FibDaddrType {
                dreg: reg(d, NFTA_FIB_DREG)?,
            }
        }
        _ => return None,
    })
}
