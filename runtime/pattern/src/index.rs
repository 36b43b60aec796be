//! Value automata: for one field path, every condition of every pattern on that field, indexed
//! so that one leaf value of an event is run through them once (hash lookups for exact values,
//! byte tries for prefixes and suffixes, a segment tree over order-preserving number codes for
//! ranges, anchored candidates for wildcards) and reports the clauses it satisfies.

use std::net::IpAddr;

use crate::{
    pattern::{AnythingBut, Leaf, Range, Scalar},
    value::{Cidr, FxMap, Wildcard, ip_bits, lower, mask, num_key},
};

pub(crate) type ClauseId = u32;

/// One leaf value of an event, borrowed from the event where possible.
#[derive(Debug)]
pub(crate) enum LeafVal<'a> {
    Str(std::borrow::Cow<'a, str>),
    Num(f64),
    Bool(bool),
    Null,
}

/// A trie over bytes whose nodes hold ids; walking a key reports the ids of every node on the
/// way, i.e. of every stored key that is a prefix of the walked one.
#[derive(Clone, Debug, Default)]
pub(crate) struct ByteTrie {
    nodes: Vec<TrieNode>,
}

#[derive(Clone, Debug, Default)]
struct TrieNode {
    /// Sorted by byte.
    edges: Vec<(u8, u32)>,
    ids: Vec<u32>,
}

impl ByteTrie {
    fn insert(&mut self, key: impl Iterator<Item = u8>, id: u32) {
        if self.nodes.is_empty() {
            self.nodes.push(TrieNode::default());
        }
        let mut n = 0usize;
        for b in key {
            n = match self.nodes[n].edges.binary_search_by_key(&b, |e| e.0) {
                Ok(i) => self.nodes[n].edges[i].1 as usize,
                Err(i) => {
                    let next = self.nodes.len();
                    self.nodes.push(TrieNode::default());
                    self.nodes[n].edges.insert(i, (b, next as u32));
                    next
                }
            };
        }
        self.nodes[n].ids.push(id);
    }

    /// Removes one `id` at `key`; nodes stay (they cost a few bytes and keep ids stable).
    fn remove(&mut self, key: impl Iterator<Item = u8>, id: u32) {
        let mut n = 0usize;
        if self.nodes.is_empty() {
            return;
        }
        for b in key {
            match self.nodes[n].edges.binary_search_by_key(&b, |e| e.0) {
                Ok(i) => n = self.nodes[n].edges[i].1 as usize,
                Err(_) => return,
            }
        }
        remove_one(&mut self.nodes[n].ids, id);
    }

    #[inline]
    fn walk(&self, key: impl Iterator<Item = u8>, mut f: impl FnMut(u32)) {
        let Some(root) = self.nodes.first() else {
            return;
        };
        root.ids.iter().for_each(|&id| f(id));
        let mut n = root;
        for b in key {
            match n.edges.binary_search_by_key(&b, |e| e.0) {
                Ok(i) => n = &self.nodes[n.edges[i].1 as usize],
                Err(_) => return,
            }
            n.ids.iter().for_each(|&id| f(id));
        }
    }
}

fn remove_one(v: &mut Vec<u32>, id: u32) {
    if let Some(i) = v.iter().position(|&x| x == id) {
        v.swap_remove(i);
    }
}

/// Numeric ranges of one field. A segment tree over the elementary intervals between the
/// sorted bound codes answers "which ranges hold x" in O(log n + hits); ranges added since the
/// last build wait in a short list scanned linearly, and the tree is rebuilt when that list
/// grows past an eighth of the tree, so n insertions cost O(n log n) overall.
#[derive(Clone, Debug, Default)]
struct NumIndex {
    all: Vec<(Range, ClauseId)>,
    /// `all[..built]` is in the tree, `all[built..]` is scanned.
    built: usize,
    points: Vec<u64>,
    tree: Vec<Vec<ClauseId>>,
    slots: usize,
}

impl NumIndex {
    fn insert(&mut self, r: Range, c: ClauseId) {
        self.all.push((r, c));
        if self.all.len() - self.built > 8 + self.built / 8 {
            self.rebuild();
        }
    }

    fn remove(&mut self, r: Range, c: ClauseId) {
        if let Some(i) = self.all.iter().position(|(x, y)| *y == c && *x == r) {
            self.all.remove(i);
            self.rebuild();
        }
    }

    fn slot_of(&self, key: u64) -> usize {
        let pos = self.points.partition_point(|&p| p < key);
        if self.points.get(pos) == Some(&key) {
            2 * pos + 1
        } else {
            2 * pos
        }
    }

    fn rebuild(&mut self) {
        let mut points: Vec<u64> = self
            .all
            .iter()
            .flat_map(|(r, _)| [r.lo, r.hi])
            .flatten()
            .map(|(b, _)| num_key(b))
            .collect();
        points.sort_unstable();
        points.dedup();
        self.points = points;
        self.slots = 2 * self.points.len() + 1;
        self.tree = vec![Vec::new(); 4 * self.slots];
        for i in 0..self.all.len() {
            let (r, c) = self.all[i];
            let start = match r.lo {
                None => 0,
                Some((b, incl)) => self.slot_of(num_key(b)) + usize::from(!incl),
            };
            let end = match r.hi {
                None => self.slots - 1,
                Some((b, incl)) => {
                    let s = self.slot_of(num_key(b));
                    if incl { s } else { s - 1 }
                }
            };
            if start <= end {
                self.add(1, 0, self.slots - 1, start, end, c);
            }
        }
        self.built = self.all.len();
    }

    fn add(&mut self, node: usize, lo: usize, hi: usize, a: usize, b: usize, c: ClauseId) {
        if a <= lo && hi <= b {
            self.tree[node].push(c);
            return;
        }
        let mid = (lo + hi) / 2;
        if a <= mid {
            self.add(2 * node, lo, mid, a, b, c);
        }
        if b > mid {
            self.add(2 * node + 1, mid + 1, hi, a, b, c);
        }
    }

    #[inline]
    fn query(&self, x: f64, f: &mut impl FnMut(ClauseId)) {
        if self.all.is_empty() {
            return;
        }
        if self.built > 0 {
            let slot = self.slot_of(num_key(x));
            let (mut node, mut lo, mut hi) = (1, 0, self.slots - 1);
            loop {
                self.tree[node].iter().for_each(|&c| f(c));
                if lo == hi {
                    break;
                }
                let mid = (lo + hi) / 2;
                if slot <= mid {
                    (node, hi) = (2 * node, mid);
                } else {
                    (node, lo) = (2 * node + 1, mid + 1);
                }
            }
        }
        for (r, c) in &self.all[self.built..] {
            if r.contains(x) {
                f(*c);
            }
        }
    }
}

/// Wildcards of one field. A glob is anchored on its literal prefix and suffix together: a
/// byte trie of prefixes whose nodes hold reversed-suffix tries, so walking the value forwards
/// and then backwards yields only globs whose both ends fit. Globs with neither (`*x*`) are
/// keyed by the first three bytes of their longest inner literal (a trigram map). A value only
/// verifies globs whose anchors it contains, so thousands of wildcards cost what the few
/// plausible ones cost, instead of the state explosion an NFA over all of them suffers.
#[derive(Clone, Debug, Default)]
struct WildIndex {
    globs: Vec<Option<(Wildcard, Vec<ClauseId>)>>,
    by_glob: FxMap<Wildcard, u32>,
    free: Vec<u32>,
    /// Prefix trie; its ids index `buckets`.
    prefix: ByteTrie,
    bucket_of: FxMap<Box<[u8]>, u32>,
    /// Per distinct prefix, a trie of reversed suffixes holding glob ids.
    buckets: Vec<ByteTrie>,
    infix: FxMap<[u8; 3], Vec<u32>>,
    scan: Vec<u32>,
    len: usize,
}

enum Anchor<'a> {
    /// Prefix and suffix (either may be empty, not both).
    Ends(&'a [u8], &'a [u8]),
    Infix([u8; 3]),
    Scan,
}

fn anchor(w: &Wildcard) -> Anchor<'_> {
    let first = w.segs[0].as_bytes();
    if w.segs.len() == 1 {
        return Anchor::Ends(first, b"");
    }
    let last = w.segs[w.segs.len() - 1].as_bytes();
    if !first.is_empty() || !last.is_empty() {
        return Anchor::Ends(first, last);
    }
    let longest = w.segs.iter().map(|s| s.as_bytes()).max_by_key(|s| s.len());
    match longest {
        Some(s) if s.len() >= 3 => Anchor::Infix([s[0], s[1], s[2]]),
        _ => Anchor::Scan,
    }
}

impl WildIndex {
    fn insert(&mut self, w: &Wildcard, c: ClauseId) {
        self.len += 1;
        if let Some(&id) = self.by_glob.get(w)
            && let Some((_, clauses)) = &mut self.globs[id as usize]
        {
            clauses.push(c);
            return;
        }
        let id = match self.free.pop() {
            Some(id) => {
                self.globs[id as usize] = Some((w.clone(), vec![c]));
                id
            }
            None => {
                self.globs.push(Some((w.clone(), vec![c])));
                (self.globs.len() - 1) as u32
            }
        };
        self.by_glob.insert(w.clone(), id);
        match anchor(w) {
            Anchor::Ends(p, s) => {
                let b = match self.bucket_of.get(p) {
                    Some(&b) => b,
                    None => {
                        let b = self.buckets.len() as u32;
                        self.buckets.push(ByteTrie::default());
                        self.bucket_of.insert(p.into(), b);
                        self.prefix.insert(p.iter().copied(), b);
                        b
                    }
                };
                self.buckets[b as usize].insert(s.iter().rev().copied(), id);
            }
            Anchor::Infix(t) => self.infix.entry(t).or_default().push(id),
            Anchor::Scan => self.scan.push(id),
        }
    }

    fn remove(&mut self, w: &Wildcard, c: ClauseId) {
        let Some(&id) = self.by_glob.get(w) else {
            return;
        };
        let Some((_, clauses)) = &mut self.globs[id as usize] else {
            return;
        };
        let Some(i) = clauses.iter().position(|&x| x == c) else {
            return;
        };
        clauses.swap_remove(i);
        self.len -= 1;
        if !clauses.is_empty() {
            return;
        }
        match anchor(w) {
            Anchor::Ends(p, s) => {
                // The (possibly empty) bucket stays, so bucket ids remain stable.
                if let Some(&b) = self.bucket_of.get(p) {
                    self.buckets[b as usize].remove(s.iter().rev().copied(), id);
                }
            }
            Anchor::Infix(t) => {
                if let Some(v) = self.infix.get_mut(&t) {
                    remove_one(v, id);
                    if v.is_empty() {
                        self.infix.remove(&t);
                    }
                }
            }
            Anchor::Scan => remove_one(&mut self.scan, id),
        }
        self.by_glob.remove(w);
        self.globs[id as usize] = None;
        self.free.push(id);
    }

    fn eval(&self, s: &str, cands: &mut Vec<u32>, f: &mut impl FnMut(ClauseId)) {
        if self.len == 0 {
            return;
        }
        cands.clear();
        let b = s.as_bytes();
        let buckets = &self.buckets;
        self.prefix.walk(b.iter().copied(), |bucket| {
            buckets[bucket as usize].walk(b.iter().rev().copied(), |id| cands.push(id));
        });
        // Each glob sits in exactly one bucket, so only trigram hits can repeat.
        let anchored = cands.len();
        if !self.infix.is_empty() {
            for w in b.windows(3) {
                if let Some(ids) = self.infix.get(&[w[0], w[1], w[2]]) {
                    cands.extend_from_slice(ids);
                }
            }
        }
        if cands.len() > anchored {
            cands[anchored..].sort_unstable();
            let mut i = anchored;
            let mut last = None;
            for j in anchored..cands.len() {
                if Some(cands[j]) != last {
                    last = Some(cands[j]);
                    cands[i] = cands[j];
                    i += 1;
                }
            }
            cands.truncate(i);
        }
        cands.extend_from_slice(&self.scan);
        for &id in cands.iter() {
            if let Some((w, clauses)) = &self.globs[id as usize]
                && w.matches(s)
            {
                clauses.iter().for_each(|&c| f(c));
            }
        }
    }
}

/// CIDR blocks of one field: one hash lookup per distinct prefix length in use.
#[derive(Clone, Debug, Default)]
struct CidrIndex {
    blocks: FxMap<(bool, u8, u128), Vec<ClauseId>>,
    /// (IPv6, prefix length, how many blocks use it)
    lens: Vec<(bool, u8, u32)>,
}

impl CidrIndex {
    fn insert(&mut self, c: &Cidr, id: ClauseId) {
        self.blocks
            .entry((c.v6, c.len, c.net))
            .or_default()
            .push(id);
        match self.lens.iter_mut().find(|l| l.0 == c.v6 && l.1 == c.len) {
            Some(l) => l.2 += 1,
            None => self.lens.push((c.v6, c.len, 1)),
        }
    }

    fn remove(&mut self, c: &Cidr, id: ClauseId) {
        let key = (c.v6, c.len, c.net);
        if let Some(v) = self.blocks.get_mut(&key) {
            remove_one(v, id);
            if v.is_empty() {
                self.blocks.remove(&key);
            }
        }
        if let Some(i) = self.lens.iter().position(|l| l.0 == c.v6 && l.1 == c.len) {
            self.lens[i].2 -= 1;
            if self.lens[i].2 == 0 {
                self.lens.swap_remove(i);
            }
        }
    }

    fn eval(&self, s: &str, f: &mut impl FnMut(ClauseId)) {
        if self.lens.is_empty() {
            return;
        }
        let Ok(ip) = s.parse::<IpAddr>() else {
            return;
        };
        let (v6, bits, width) = ip_bits(ip);
        for &(lv6, len, _) in &self.lens {
            if lv6 == v6
                && let Some(ids) = self.blocks.get(&(v6, len, mask(bits, len, width)))
            {
                ids.iter().for_each(|&c| f(c));
            }
        }
    }
}

/// Every condition on one field path.
#[derive(Clone, Debug, Default)]
pub(crate) struct FieldIndex {
    exact_str: FxMap<Box<str>, Vec<ClauseId>>,
    exact_num: FxMap<u64, Vec<ClauseId>>,
    exact_true: Vec<ClauseId>,
    exact_false: Vec<ClauseId>,
    exact_null: Vec<ClauseId>,
    eq_ic: FxMap<Box<str>, Vec<ClauseId>>,
    prefix: ByteTrie,
    prefix_ic: ByteTrie,
    suffix: ByteTrie,
    suffix_ic: ByteTrie,
    /// Conditions needing the lowercased value; zero means no lowercasing on the hot path.
    ic_count: usize,
    wild: WildIndex,
    numeric: NumIndex,
    cidr: CidrIndex,
    /// `anything-but` value lists: (leaf key, clause); matches unless the value is excluded.
    ab: Vec<(u32, ClauseId)>,
    ab_str: FxMap<Box<str>, Vec<u32>>,
    ab_num: FxMap<u64, Vec<u32>>,
    ab_next: u32,
    /// `anything-but` prefix/suffix/wildcard/equals-ignore-case, checked one by one.
    ab_other: Vec<(AnythingBut, ClauseId)>,
    exists_true: Vec<ClauseId>,
    pub exists_false: Vec<ClauseId>,
}

fn push_to<K: std::hash::Hash + Eq>(m: &mut FxMap<K, Vec<ClauseId>>, k: K, c: ClauseId) {
    m.entry(k).or_default().push(c);
}

fn remove_from<K: std::hash::Hash + Eq>(m: &mut FxMap<K, Vec<ClauseId>>, k: &K, c: ClauseId) {
    if let Some(v) = m.get_mut(k) {
        remove_one(v, c);
        if v.is_empty() {
            m.remove(k);
        }
    }
}

impl FieldIndex {
    pub fn insert(&mut self, leaf: &Leaf, c: ClauseId) {
        match leaf {
            Leaf::Exact(Scalar::Str(s)) => push_to(&mut self.exact_str, s.as_str().into(), c),
            Leaf::Exact(Scalar::Num(n)) => push_to(&mut self.exact_num, num_key(*n), c),
            Leaf::Exact(Scalar::Bool(true)) => self.exact_true.push(c),
            Leaf::Exact(Scalar::Bool(false)) => self.exact_false.push(c),
            Leaf::Exact(Scalar::Null) => self.exact_null.push(c),
            Leaf::Prefix(p) => self.prefix.insert(p.bytes(), c),
            Leaf::PrefixIc(p) => {
                self.ic_count += 1;
                self.prefix_ic.insert(p.bytes(), c)
            }
            Leaf::Suffix(p) => self.suffix.insert(p.bytes().rev(), c),
            Leaf::SuffixIc(p) => {
                self.ic_count += 1;
                self.suffix_ic.insert(p.bytes().rev(), c)
            }
            Leaf::EqIc(p) => {
                self.ic_count += 1;
                push_to(&mut self.eq_ic, p.as_str().into(), c)
            }
            Leaf::Wildcard(w) => self.wild.insert(w, c),
            Leaf::Numeric(r) => self.numeric.insert(*r, c),
            Leaf::Cidr(b) => self.cidr.insert(b, c),
            Leaf::AnythingBut(AnythingBut::Values(vals)) => {
                let key = self.ab_next;
                self.ab_next = self.ab_next.wrapping_add(1);
                self.ab.push((key, c));
                for v in vals {
                    match v {
                        Scalar::Str(s) => {
                            self.ab_str.entry(s.as_str().into()).or_default().push(key)
                        }
                        Scalar::Num(n) => self.ab_num.entry(num_key(*n)).or_default().push(key),
                        Scalar::Bool(_) | Scalar::Null => {}
                    }
                }
            }
            Leaf::AnythingBut(other) => self.ab_other.push((other.clone(), c)),
            Leaf::Exists(true) => self.exists_true.push(c),
            Leaf::Exists(false) => self.exists_false.push(c),
        }
    }

    pub fn remove(&mut self, leaf: &Leaf, c: ClauseId) {
        match leaf {
            Leaf::Exact(Scalar::Str(s)) => remove_from(&mut self.exact_str, &s.as_str().into(), c),
            Leaf::Exact(Scalar::Num(n)) => remove_from(&mut self.exact_num, &num_key(*n), c),
            Leaf::Exact(Scalar::Bool(true)) => remove_one(&mut self.exact_true, c),
            Leaf::Exact(Scalar::Bool(false)) => remove_one(&mut self.exact_false, c),
            Leaf::Exact(Scalar::Null) => remove_one(&mut self.exact_null, c),
            Leaf::Prefix(p) => self.prefix.remove(p.bytes(), c),
            Leaf::PrefixIc(p) => {
                self.ic_count -= 1;
                self.prefix_ic.remove(p.bytes(), c)
            }
            Leaf::Suffix(p) => self.suffix.remove(p.bytes().rev(), c),
            Leaf::SuffixIc(p) => {
                self.ic_count -= 1;
                self.suffix_ic.remove(p.bytes().rev(), c)
            }
            Leaf::EqIc(p) => {
                self.ic_count -= 1;
                remove_from(&mut self.eq_ic, &p.as_str().into(), c)
            }
            Leaf::Wildcard(w) => self.wild.remove(w, c),
            Leaf::Numeric(r) => self.numeric.remove(*r, c),
            Leaf::Cidr(b) => self.cidr.remove(b, c),
            Leaf::AnythingBut(AnythingBut::Values(_)) => {
                // A clause holds at most a handful of anything-but leaves; drop one of its keys.
                if let Some(i) = self.ab.iter().position(|&(_, x)| x == c) {
                    let (key, _) = self.ab.remove(i);
                    self.ab_str.retain(|_, keys| {
                        keys.retain(|&k| k != key);
                        !keys.is_empty()
                    });
                    self.ab_num.retain(|_, keys| {
                        keys.retain(|&k| k != key);
                        !keys.is_empty()
                    });
                }
            }
            Leaf::AnythingBut(other) => {
                if let Some(i) = self
                    .ab_other
                    .iter()
                    .position(|(a, x)| *x == c && a == other)
                {
                    self.ab_other.swap_remove(i);
                }
            }
            Leaf::Exists(true) => remove_one(&mut self.exists_true, c),
            Leaf::Exists(false) => remove_one(&mut self.exists_false, c),
        }
    }

    /// Reports (possibly repeatedly) every clause that `v` satisfies on this field.
    #[inline]
    pub fn eval(&self, v: &LeafVal<'_>, tmp: &mut Vec<u32>, f: &mut impl FnMut(ClauseId)) {
        self.exists_true.iter().for_each(|&c| f(c));
        match v {
            LeafVal::Str(s) => {
                let s: &str = s;
                if let Some(cs) = self.exact_str.get(s) {
                    cs.iter().for_each(|&c| f(c));
                }
                self.prefix.walk(s.bytes(), &mut *f);
                self.suffix.walk(s.bytes().rev(), &mut *f);
                if self.ic_count > 0 {
                    let l = lower(s);
                    if let Some(cs) = self.eq_ic.get(&*l) {
                        cs.iter().for_each(|&c| f(c));
                    }
                    self.prefix_ic.walk(l.bytes(), &mut *f);
                    self.suffix_ic.walk(l.bytes().rev(), &mut *f);
                }
                self.wild.eval(s, tmp, f);
                self.cidr.eval(s, f);
                if !self.ab.is_empty() {
                    let excl = self.ab_str.get(s).map(Vec::as_slice).unwrap_or(&[]);
                    self.anything_but(excl, tmp, f);
                }
                for (ab, c) in &self.ab_other {
                    if !excluded_str(ab, s) {
                        f(*c);
                    }
                }
            }
            LeafVal::Num(x) => {
                let key = num_key(*x);
                if let Some(cs) = self.exact_num.get(&key) {
                    cs.iter().for_each(|&c| f(c));
                }
                self.numeric.query(*x, f);
                if !self.ab.is_empty() {
                    let excl = self.ab_num.get(&key).map(Vec::as_slice).unwrap_or(&[]);
                    self.anything_but(excl, tmp, f);
                }
                // prefix/suffix/wildcard/ignore-case exclusions only exclude strings
                self.ab_other.iter().for_each(|(_, c)| f(*c));
            }
            LeafVal::Bool(b) => {
                let list = if *b {
                    &self.exact_true
                } else {
                    &self.exact_false
                };
                list.iter().for_each(|&c| f(c));
                self.anything_but(&[], tmp, f);
                self.ab_other.iter().for_each(|(_, c)| f(*c));
            }
            LeafVal::Null => {
                self.exact_null.iter().for_each(|&c| f(c));
                self.anything_but(&[], tmp, f);
                self.ab_other.iter().for_each(|(_, c)| f(*c));
            }
        }
    }

    fn anything_but(&self, excl: &[u32], tmp: &mut Vec<u32>, f: &mut impl FnMut(ClauseId)) {
        if excl.len() <= 8 {
            for &(key, c) in &self.ab {
                if !excl.contains(&key) {
                    f(c);
                }
            }
        } else {
            tmp.clear();
            tmp.extend_from_slice(excl);
            tmp.sort_unstable();
            for &(key, c) in &self.ab {
                if tmp.binary_search(&key).is_err() {
                    f(c);
                }
            }
        }
    }
}

fn excluded_str(ab: &AnythingBut, s: &str) -> bool {
    match ab {
        AnythingBut::Values(list) => list.iter().any(|v| matches!(v, Scalar::Str(x) if x == s)),
        AnythingBut::Prefix(list) => list.iter().any(|p| s.starts_with(p.as_str())),
        AnythingBut::Suffix(list) => list.iter().any(|p| s.ends_with(p.as_str())),
        AnythingBut::Wildcard(list) => list.iter().any(|w| w.matches(s)),
        AnythingBut::EqIc(list) => {
            let l = lower(s);
            list.iter().any(|x| *x == *l)
        }
    }
}
