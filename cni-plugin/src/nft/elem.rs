//! Set elements as the kernel takes them (see `set.rs` for the two ways
//! of writing an interval).

use super::expr::Verdict;
use super::msg::Writer;
use super::set::{Atom, ElemData, Element, KeyType, MapData, Set};
use super::uapi::*;

/// One `NFTA_LIST_ELEM` of a NEWSETELEM or DELSETELEM message.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Wire {
    /// The index of the element this came from.
    pub(super) source: usize,
    interval_end: bool,
    key: Vec<u8>,
    key_end: Option<Vec<u8>>,
    data: Option<WireData>,
}

#[derive(Debug, PartialEq, Eq)]
enum WireData {
    Verdict(Verdict),
    Value(Vec<u8>),
}

/// A netlink attribute's length is 16 bits: a message carries at most
/// this many bytes of elements, and a long list takes several messages
/// (in the same batch, so still one transaction).
const CHUNK_BYTES: usize = 48 * 1024;
/// And at most this many elements, each numbered in a 14-bit type.
const CHUNK_ELEMENTS: usize = 4096;

/// The elements of `elems` as the kernel takes them, each with the index
/// of the element it came from. A map's data goes with additions only:
/// deleting names keys. Errors say what does not fit the set.
pub(super) fn wire(set: &Set, elems: &[Element], with_data: bool) -> Result<Vec<Wire>, String> {
    let mut out = Vec::with_capacity(elems.len() * 2);
    for (i, e) in elems.iter().enumerate() {
        let start = out.len();
        to_wire(set, e, with_data, &mut out).map_err(|r| format!("{}: {r}", e.describe()))?;
        for w in &mut out[start..] {
            w.source = i;
        }
    }
    Ok(out)
}

/// Splits `wire` into runs that fit one message each, never between an
/// interval's start and its end.
pub(super) fn chunks(wire: &[Wire]) -> Vec<&[Wire]> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, w) in wire.iter().enumerate() {
        let size = w.size();
        let full = bytes + size > CHUNK_BYTES || i - start >= CHUNK_ELEMENTS;
        if full && i > start && !w.interval_end {
            out.push(&wire[start..i]);
            (start, bytes) = (i, 0);
        }
        bytes += size;
    }
    if start < wire.len() {
        out.push(&wire[start..]);
    }
    out
}

/// Writes `NFTA_SET_ELEM_LIST_ELEMENTS` for `wire`. The kernel ignores
/// the type of a list's entries; libnftnl numbers them from 1, and so
/// does podnet, to send the same bytes (a chunk is short enough for the
/// numbers to fit the 14 bits of a type).
pub(super) fn encode(w: &mut Writer, wire: &[Wire]) {
    w.nest(NFTA_SET_ELEM_LIST_ELEMENTS, |w| {
        for (i, e) in wire.iter().enumerate() {
            w.nest((i + 1) as u16, |w| e.encode(w));
        }
    });
}

impl Wire {
    /// An upper bound of its encoded size.
    fn size(&self) -> usize {
        let data = match &self.data {
            None => 0,
            Some(WireData::Verdict(Verdict::Jump(c) | Verdict::Goto(c))) => 32 + c.len(),
            Some(WireData::Verdict(_)) => 32,
            Some(WireData::Value(v)) => 12 + v.len(),
        };
        let end = self.key_end.as_ref().map_or(0, |k| 12 + k.len());
        4 + 8 + 12 + self.key.len() + end + data + 8
    }

    /// Flags, key, key end, data: the order `nft` sends.
    fn encode(&self, w: &mut Writer) {
        if self.interval_end {
            w.attr_be32(NFTA_SET_ELEM_FLAGS, NFT_SET_ELEM_INTERVAL_END);
        }
        w.nest(NFTA_SET_ELEM_KEY, |w| w.attr(NFTA_DATA_VALUE, &self.key));
        if let Some(end) = &self.key_end {
            w.nest(NFTA_SET_ELEM_KEY_END, |w| w.attr(NFTA_DATA_VALUE, end));
        }
        match &self.data {
            None => {}
            Some(WireData::Verdict(v)) => v.encode(w, NFTA_SET_ELEM_DATA),
            Some(WireData::Value(v)) => w.nest(NFTA_SET_ELEM_DATA, |w| w.attr(NFTA_DATA_VALUE, v)),
        }
    }
}

fn to_wire(set: &Set, e: &Element, with_data: bool, out: &mut Vec<Wire>) -> Result<(), String> {
    let (from, to) = bounds(set, e)?;
    let key = join(&set.key, &from)?;
    let key_last = join(&set.key, &to)?;
    let data = if with_data { data(set, e)? } else { None };
    // A concatenated interval (pipapo) carries its end in the element; a
    // single-field interval (rbtree) is a start element and an end element.
    let concat_interval = set.interval && set.key.len() > 1;
    out.push(Wire {
        source: 0,
        interval_end: false,
        key,
        key_end: concat_interval.then_some(key_last.clone()),
        data,
    });
    if set.interval && !concat_interval {
        // An interval reaching the top of the key space has no end
        // element: the kernel's rbtree treats an open start as "to the end".
        if let Some(end) = one_past(&key_last) {
            out.push(Wire {
                source: 0,
                interval_end: true,
                key: end,
                key_end: None,
                data: None,
            });
        }
    }
    Ok(())
}

/// The inclusive first and last key, field by field.
fn bounds(set: &Set, e: &Element) -> Result<(Vec<Atom>, Vec<Atom>), String> {
    if e.key.len() != set.key.len() {
        return Err(format!(
            "{} key fields for a set keyed by {}",
            e.key.len(),
            set.key.len()
        ));
    }
    let mut from = Vec::with_capacity(e.key.len());
    let mut to = Vec::with_capacity(e.key.len());
    for part in &e.key {
        let (a, b) = part.bounds();
        if a != b && !set.interval {
            return Err("a range needs an interval set".into());
        }
        if a.key_type() != b.key_type() || a > b {
            return Err(format!("{} is not a range", part.describe()));
        }
        from.push(a);
        to.push(b);
    }
    Ok((from, to))
}

/// The bytes of one key or value: a lone field as it is, concatenated
/// fields each padded to whole 4-byte registers.
fn join(types: &[KeyType], atoms: &[Atom]) -> Result<Vec<u8>, String> {
    let concat = types.len() > 1;
    let mut out = Vec::new();
    for (t, a) in types.iter().zip(atoms) {
        if a.key_type() != *t {
            return Err(format!("{} is not of type {}", a.describe(), t.name()));
        }
        out.extend_from_slice(&a.bytes());
        if concat {
            out.resize(out.len().next_multiple_of(4), 0);
        }
    }
    Ok(out)
}

fn data(set: &Set, e: &Element) -> Result<Option<WireData>, String> {
    match (&set.data, &e.data) {
        (None, None) => Ok(None),
        (None, Some(_)) => Err("a set's element has no data".into()),
        (Some(_), None) => Err("a map's element needs data".into()),
        (Some(MapData::Verdict), Some(ElemData::Verdict(v))) => {
            Ok(Some(WireData::Verdict(v.clone())))
        }
        (Some(MapData::Value(types)), Some(ElemData::Value(atoms))) => {
            if types.len() != atoms.len() {
                return Err(format!("{} data fields for {}", atoms.len(), types.len()));
            }
            Ok(Some(WireData::Value(join(types, atoms)?)))
        }
        (Some(_), Some(_)) => Err("data of the wrong kind for this map".into()),
    }
}

/// The big-endian number one greater; `None` past the largest.
fn one_past(bytes: &[u8]) -> Option<Vec<u8>> {
    let mut out = bytes.to_vec();
    for b in out.iter_mut().rev() {
        let (v, carry) = b.overflowing_add(1);
        *b = v;
        if !carry {
            return Some(out);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_past_carries_and_stops_at_the_top() {
        assert_eq!(one_past(&[10, 0, 0, 255]), Some(vec![10, 0, 1, 0]));
        assert_eq!(one_past(&[0xff, 0xff]), None);
        assert_eq!(one_past(&[0, 80]), Some(vec![0, 81]));
    }
}
