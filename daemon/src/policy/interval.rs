//! Sets of addresses as sorted, merged, inclusive intervals: the form an
//! nftables interval set takes, and cheap to subtract `except` holes from.

use std::net::{Ipv4Addr, Ipv6Addr};

/// An address with neighbours, so intervals can touch and be cut.
pub(crate) trait Point: Copy + Ord {
    fn next(self) -> Option<Self>;
    fn prev(self) -> Option<Self>;
}

impl Point for Ipv4Addr {
    fn next(self) -> Option<Self> {
        u32::from(self).checked_add(1).map(Self::from)
    }
    fn prev(self) -> Option<Self> {
        u32::from(self).checked_sub(1).map(Self::from)
    }
}

impl Point for Ipv6Addr {
    fn next(self) -> Option<Self> {
        u128::from(self).checked_add(1).map(Self::from)
    }
    fn prev(self) -> Option<Self> {
        u128::from(self).checked_sub(1).map(Self::from)
    }
}

/// Sorted, with overlapping and adjacent intervals joined into one.
pub(crate) fn merge<T: Point>(mut ranges: Vec<(T, T)>) -> Vec<(T, T)> {
    ranges.retain(|(a, b)| a <= b);
    ranges.sort_unstable();
    let mut out: Vec<(T, T)> = Vec::with_capacity(ranges.len());
    for (first, last) in ranges {
        match out.last_mut() {
            Some((_, end)) if *end >= first || end.next() == Some(first) => {
                *end = (*end).max(last);
            }
            _ => out.push((first, last)),
        }
    }
    out
}

/// `set` without `holes`; both merged (as [`merge`] leaves them).
pub(crate) fn subtract<T: Point>(set: &[(T, T)], holes: &[(T, T)]) -> Vec<(T, T)> {
    let mut out = Vec::with_capacity(set.len());
    for &(first, last) in set {
        // What is left of this interval, from `from` onwards; `None` once
        // a hole reaches past its end.
        let mut from = Some(first);
        for &(hole_first, hole_last) in holes {
            let Some(start) = from else { break };
            if hole_last < start {
                continue;
            }
            if hole_first > last {
                break;
            }
            if hole_first > start {
                if let Some(before) = hole_first.prev() {
                    out.push((start, before));
                }
            }
            from = hole_last.next().filter(|n| *n <= last);
        }
        if let Some(start) = from {
            out.push((start, last));
        }
    }
    out
}

/// Whether a merged set holds `x`.
pub(crate) fn contains<T: Point>(set: &[(T, T)], x: T) -> bool {
    let after = set.partition_point(|(first, _)| *first <= x);
    after > 0 && set.get(after - 1).is_some_and(|(_, last)| x <= *last)
}
