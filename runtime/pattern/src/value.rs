//! Leaf-value primitives shared by the parser and the compiled matcher: case folding,
//! wildcard globs, CIDR blocks, the order-preserving number encoding and a fast hasher for
//! the small keys the indexes use.

use std::{
    borrow::Cow,
    hash::{BuildHasherDefault, Hasher},
    net::IpAddr,
};

/// Case folding for the `equals-ignore-case` family: both sides are lowercased (Unicode
/// simple lowercase), with an allocation-free path for strings that are already lowercase ASCII.
pub(crate) fn lower(s: &str) -> Cow<'_, str> {
    if s.bytes().all(|b| !b.is_ascii_uppercase() && b.is_ascii()) {
        Cow::Borrowed(s)
    } else {
        Cow::Owned(s.to_lowercase())
    }
}

/// Encodes a double so that unsigned integer order is numeric order (sign bit flipped for
/// positives, all bits flipped for negatives); `-0.0` and `0.0` share one code.
pub(crate) fn num_key(x: f64) -> u64 {
    let x = if x == 0.0 { 0.0 } else { x };
    let bits = x.to_bits();
    if bits >> 63 == 1 {
        !bits
    } else {
        bits | (1 << 63)
    }
}

/// A `wildcard` glob: literal segments separated by `*`. `\*` is a literal star and `\\` a
/// literal backslash; consecutive stars are refused, as in EventBridge.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Wildcard {
    /// `segs.len() - 1` stars sit between the segments; `segs[0]` is the required prefix and
    /// the last segment the required suffix.
    pub(crate) segs: Vec<String>,
}

impl Wildcard {
    pub(crate) fn parse(s: &str) -> Result<Wildcard, String> {
        let mut segs = vec![String::new()];
        let mut chars = s.chars();
        let mut last_star = false;
        while let Some(c) = chars.next() {
            match c {
                '*' => {
                    if last_star {
                        return Err(format!(
                            "{s:?}: consecutive wildcard characters are not allowed"
                        ));
                    }
                    last_star = true;
                    segs.push(String::new());
                    continue;
                }
                '\\' => match chars.next() {
                    Some(e @ ('*' | '\\')) => push(&mut segs, e),
                    _ => {
                        return Err(format!("{s:?}: a backslash may only escape * or \\"));
                    }
                },
                c => push(&mut segs, c),
            }
            last_star = false;
        }
        Ok(Wildcard { segs })
    }

    /// Greedy glob matching: with only `*` as a metacharacter, taking the leftmost occurrence of
    /// each middle segment is always safe, so this runs in linear time without backtracking.
    pub(crate) fn matches(&self, value: &str) -> bool {
        let v = value.as_bytes();
        let n = self.segs.len();
        let first = self.segs[0].as_bytes();
        if n == 1 {
            return v == first;
        }
        let last = self.segs[n - 1].as_bytes();
        if v.len() < first.len() + last.len() || !v.starts_with(first) || !v.ends_with(last) {
            return false;
        }
        let mut rest = &v[first.len()..v.len() - last.len()];
        for seg in &self.segs[1..n - 1] {
            match memchr::memmem::find(rest, seg.as_bytes()) {
                Some(i) => rest = &rest[i + seg.len()..],
                None => return false,
            }
        }
        true
    }
}

fn push(segs: &mut [String], c: char) {
    if let Some(last) = segs.last_mut() {
        last.push(c);
    }
}

/// An IPv4 or IPv6 block; host bits are masked off, as EventBridge does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Cidr {
    pub(crate) v6: bool,
    pub(crate) len: u8,
    pub(crate) net: u128,
}

impl Cidr {
    pub(crate) fn parse(s: &str) -> Result<Cidr, String> {
        let bad =
            || format!("{s:?} is not a CIDR block such as \"10.0.0.0/24\" or \"2001:db8::/32\"");
        let (addr, len) = s.split_once('/').ok_or_else(bad)?;
        let ip: IpAddr = addr.parse().map_err(|_| bad())?;
        let len: u8 = len.parse().map_err(|_| bad())?;
        let (v6, bits, max) = ip_bits(ip);
        if len > max {
            return Err(format!("{s:?}: prefix length {len} exceeds {max}"));
        }
        Ok(Cidr {
            v6,
            len,
            net: mask(bits, len, max),
        })
    }

    pub(crate) fn contains(&self, ip: IpAddr) -> bool {
        let (v6, bits, max) = ip_bits(ip);
        v6 == self.v6 && mask(bits, self.len, max) == self.net
    }
}

/// `(is IPv6, address bits right-aligned, bit width)`.
pub(crate) fn ip_bits(ip: IpAddr) -> (bool, u128, u8) {
    match ip {
        IpAddr::V4(a) => (false, u128::from(u32::from(a)), 32),
        IpAddr::V6(a) => (true, u128::from(a), 128),
    }
}

/// Keeps the top `len` bits of a `width`-bit address.
pub(crate) fn mask(bits: u128, len: u8, width: u8) -> u128 {
    if len == 0 {
        return 0;
    }
    let shift = u32::from(width - len.min(width));
    (bits >> shift) << shift
}

/// FxHash (as in rustc): the keys here are short strings and integers chosen by pattern
/// authors, hashed on every event, so speed matters more than DoS resistance.
#[derive(Default, Clone, Copy)]
pub(crate) struct FxHasher(u64);

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl FxHasher {
    #[inline]
    fn add(&mut self, w: u64) {
        self.0 = (self.0.rotate_left(5) ^ w).wrapping_mul(SEED);
    }
}

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut b = [0u8; 8];
            b.copy_from_slice(c);
            self.add(u64::from_le_bytes(b));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut b = [0u8; 8];
            b[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(b));
        }
    }
    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }
    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }
    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }
    #[inline]
    fn write_u128(&mut self, i: u128) {
        self.add(i as u64);
        self.add((i >> 64) as u64);
    }
    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }
    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
}

pub(crate) type FxMap<K, V> = std::collections::HashMap<K, V, BuildHasherDefault<FxHasher>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn num_key_orders_like_numbers() {
        let xs = [-1e300, -5.5, -1.0, -1e-300, 0.0, 1e-300, 1.0, 2.5, 1e300];
        for w in xs.windows(2) {
            assert!(num_key(w[0]) < num_key(w[1]), "{} < {}", w[0], w[1]);
        }
        assert_eq!(num_key(-0.0), num_key(0.0));
    }

    #[test]
    fn wildcard_escapes_and_greedy_match() {
        let w = Wildcard::parse(r"a\*b*c\\").unwrap();
        assert_eq!(w.segs, vec!["a*b".to_string(), "c\\".to_string()]);
        assert!(w.matches("a*bxxc\\"));
        assert!(!w.matches("abxxc\\"));
        assert!(Wildcard::parse("a**b").is_err());
        assert!(Wildcard::parse(r"a\b").is_err());
        assert!(Wildcard::parse("a\\").is_err());
        let w = Wildcard::parse("*ab*ab*").unwrap();
        assert!(w.matches("abab"));
        assert!(!w.matches("aba"));
        // prefix and suffix must not overlap
        assert!(!Wildcard::parse("ab*ba").unwrap().matches("aba"));
    }

    #[test]
    fn cidr_masks_and_matches_both_families() {
        let c = Cidr::parse("10.1.2.3/8").unwrap();
        assert!(c.contains("10.200.0.1".parse().unwrap()));
        assert!(!c.contains("11.0.0.1".parse().unwrap()));
        assert!(!c.contains("::ffff:10.0.0.1".parse().unwrap()));
        let c = Cidr::parse("2001:db8::/32").unwrap();
        assert!(c.contains("2001:db8:1::1".parse().unwrap()));
        assert!(!c.contains("2001:db9::1".parse().unwrap()));
        assert!(Cidr::parse("10.0.0.0/33").is_err());
        assert!(Cidr::parse("10.0.0.0").is_err());
        assert!(
            Cidr::parse("0.0.0.0/0")
                .unwrap()
                .contains("1.2.3.4".parse().unwrap())
        );
    }
}
