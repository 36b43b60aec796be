//! The compiled matcher over all patterns of a bus. Patterns become conjunctions of clauses
//! (field + OR-list of conditions); clauses are shared between patterns and indexed per field
//! (see `index`); conjunctions form a trie over sorted clause ids. An event is flattened once,
//! each leaf runs through its field's index once, and the trie is walked only along satisfied
//! clauses, so cost follows what matches rather than how many patterns exist.

use std::{cell::RefCell, collections::HashMap, hash::Hash};

use serde_json::Value;

use crate::{
    flatten::{
        EventError, FieldId, PathTrie, Read, Sink, Step, Stop, WalkBuffers, flatten_bytes,
        flatten_value,
    },
    index::{ClauseId, FieldIndex, LeafVal},
    pattern::{Leaf, Pattern},
};

/// All patterns of one bus, compiled for matching many events.
///
/// `Matcher` is `Send + Sync` and matching takes `&self`, so any number of threads can match
/// against one instance. Updates take `&mut self` and are incremental: `insert` and `remove`
/// cost about the size of the pattern (never a rebuild of the whole automaton). To update
/// without ever stalling readers, keep the current matcher in an `Arc` snapshot (for example
/// `arc_swap::ArcSwap<Matcher<_>>`): a writer clones it, applies a batch of inserts and
/// removes to the clone, and swaps the `Arc`; matches in flight finish on the old snapshot.
/// Cloning copies the compiled tables (a few milliseconds for 10,000 patterns), which is why
/// writers should batch.
#[derive(Clone, Debug)]
pub struct Matcher<Id> {
    paths: PathTrie,
    fields: Vec<FieldIndex>,
    /// Fields that some clause tests with `exists: false`.
    absent_fields: Vec<FieldId>,
    clauses: Vec<Option<ClauseData>>,
    clause_by_key: HashMap<String, ClauseId>,
    free_clauses: Vec<ClauseId>,
    nodes: Vec<Node>,
    /// Per node, what the walk needs to decide where to go (`Hot`), kept dense so that the
    /// ~300 nodes an event visits cost a few L2 reads instead of a miss per `Node`.
    hot: Vec<Hot<Id>>,
    /// The root's children again, indexed by clause id (`NIL` when absent): every satisfied
    /// clause is looked up at the root, which has the most children, on every event.
    root_child: Vec<u32>,
    free_nodes: Vec<u32>,
    slots: Vec<Option<Slot>>,
    by_id: HashMap<Id, u32>,
    free_slots: Vec<u32>,
}

#[derive(Clone, Debug)]
struct ClauseData {
    key: String,
    field: FieldId,
    leaves: Vec<Leaf>,
    refs: u32,
}

/// A node of the conjunction trie; the path from the root spells a clause list. The part the
/// walk reads on every visit lives apart, in `Hot`.
#[derive(Clone, Debug)]
struct Node {
    /// Sorted by clause id.
    children: Vec<(ClauseId, u32)>,
    /// The clause list spelled by the path, kept for the array-consistency check.
    conj: Vec<ClauseId>,
}

impl Node {
    fn new() -> Self {
        Node {
            children: Vec::new(),
            conj: Vec::new(),
        }
    }
}

/// The hot part of a node: its terminals, how many children it has and its first child inline
/// (most nodes have at most one), so the walk touches `Node` only to branch.
#[derive(Clone, Debug)]
struct Hot<Id> {
    /// Patterns whose conjunction ends here: slot, whether the pattern has other alternatives
    /// (and so needs de-duplication), and the id itself, stored inline so that reporting a
    /// match is a sequential read rather than a cache miss per pattern.
    terminal: Vec<(u32, bool, Id)>,
    nchild: u32,
    /// The first child's clause and node (meaningful when `nchild > 0`).
    c0: ClauseId,
    n0: u32,
}

impl<Id> Hot<Id> {
    fn new() -> Self {
        Hot {
            terminal: Vec::new(),
            nchild: 0,
            c0: NIL,
            n0: NIL,
        }
    }
}

#[derive(Clone, Debug)]
struct Slot {
    /// Per alternative: the trie path (distinct clauses, rarest first) and every clause
    /// reference taken, repeats included.
    conjs: Vec<(Vec<ClauseId>, Vec<ClauseId>)>,
}

impl<Id: Clone + Eq + Hash> Default for Matcher<Id> {
    fn default() -> Self {
        Self::new()
    }
}

impl<Id: Clone + Eq + Hash> Matcher<Id> {
    pub fn new() -> Self {
        Matcher {
            paths: PathTrie::default(),
            fields: Vec::new(),
            absent_fields: Vec::new(),
            clauses: Vec::new(),
            clause_by_key: HashMap::new(),
            free_clauses: Vec::new(),
            nodes: vec![Node::new()],
            hot: vec![Hot::new()],
            root_child: Vec::new(),
            free_nodes: Vec::new(),
            slots: Vec::new(),
            by_id: HashMap::new(),
            free_slots: Vec::new(),
        }
    }

    /// Number of patterns.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    pub fn contains(&self, id: &Id) -> bool {
        self.by_id.contains_key(id)
    }

    /// Adds a pattern under `id`, replacing the pattern that `id` had.
    pub fn insert(&mut self, id: Id, pattern: &Pattern) {
        self.remove(&id);
        let mut conjs = Vec::new();
        for alt in pattern.alternatives() {
            let all: Vec<ClauseId> = alt
                .into_iter()
                .map(|(path, leaves)| self.intern_clause(&path, leaves))
                .collect();
            let mut path = all.clone();
            path.sort_unstable();
            // A clause repeated through $or adds nothing to the conjunction, but every interned
            // reference in `all` is released once on removal.
            path.dedup();
            // Rarest clause first: the trie then branches early on selective clauses, and a
            // node shared by many patterns (say `source = X`) is reached only after a rare
            // clause held, instead of being visited on every event with hundreds of children
            // to intersect. Ties go to the newer clause, the likelier to be rare.
            path.sort_by_key(|&c| {
                let refs = self.clauses[c as usize].as_ref().map_or(0, |d| d.refs);
                (refs, std::cmp::Reverse(c))
            });
            conjs.push((path, all));
        }
        let slot = match self.free_slots.pop() {
            Some(s) => s,
            None => {
                self.slots.push(None);
                (self.slots.len() - 1) as u32
            }
        };
        let multi = conjs.len() > 1;
        for (path, _) in &conjs {
            let node = self.node_for(path);
            self.hot[node as usize]
                .terminal
                .push((slot, multi, id.clone()));
        }
        self.slots[slot as usize] = Some(Slot { conjs });
        self.by_id.insert(id, slot);
    }

    /// Removes the pattern of `id`, if any.
    pub fn remove(&mut self, id: &Id) {
        let Some(slot) = self.by_id.remove(id) else {
            return;
        };
        let Some(data) = self.slots[slot as usize].take() else {
            return;
        };
        self.free_slots.push(slot);
        for (path, all) in &data.conjs {
            self.unlink(path, slot);
            for &c in all {
                self.release_clause(c);
            }
        }
    }

    fn intern_clause(&mut self, path: &[String], leaves: Vec<Leaf>) -> ClauseId {
        let next_field = self.fields.len() as FieldId;
        let field = self.paths.intern(path, || next_field);
        if field == next_field {
            self.fields.push(FieldIndex::default());
        }
        let key = format!("{field}\u{0}{leaves:?}");
        if let Some(&c) = self.clause_by_key.get(&key)
            && let Some(data) = &mut self.clauses[c as usize]
        {
            data.refs += 1;
            return c;
        }
        let c = match self.free_clauses.pop() {
            Some(c) => c,
            None => {
                self.clauses.push(None);
                (self.clauses.len() - 1) as ClauseId
            }
        };
        let index = &mut self.fields[field as usize];
        let had_absent = !index.exists_false.is_empty();
        for leaf in &leaves {
            index.insert(leaf, c);
        }
        if !had_absent && !index.exists_false.is_empty() {
            self.absent_fields.push(field);
        }
        self.clause_by_key.insert(key.clone(), c);
        self.clauses[c as usize] = Some(ClauseData {
            key,
            field,
            leaves,
            refs: 1,
        });
        c
    }

    fn release_clause(&mut self, c: ClauseId) {
        let Some(data) = &mut self.clauses[c as usize] else {
            return;
        };
        data.refs -= 1;
        if data.refs > 0 {
            return;
        }
        let Some(data) = self.clauses[c as usize].take() else {
            return;
        };
        let index = &mut self.fields[data.field as usize];
        for leaf in &data.leaves {
            index.remove(leaf, c);
        }
        if index.exists_false.is_empty() {
            self.absent_fields.retain(|&f| f != data.field);
        }
        self.clause_by_key.remove(&data.key);
        self.free_clauses.push(c);
    }

    fn node_for(&mut self, conj: &[ClauseId]) -> u32 {
        let mut n = 0u32;
        for (depth, &c) in conj.iter().enumerate() {
            let children = &self.nodes[n as usize].children;
            n = match children.binary_search_by_key(&c, |e| e.0) {
                Ok(i) => children[i].1,
                Err(i) => {
                    let node = Node {
                        conj: conj[..=depth].to_vec(),
                        ..Node::new()
                    };
                    let id = match self.free_nodes.pop() {
                        Some(id) => {
                            self.nodes[id as usize] = node;
                            id
                        }
                        None => {
                            self.nodes.push(node);
                            self.hot.push(Hot::new());
                            (self.nodes.len() - 1) as u32
                        }
                    };
                    self.sync_hot(id);
                    self.nodes[n as usize].children.insert(i, (c, id));
                    self.sync_hot(n);
                    if n == 0 {
                        if self.root_child.len() <= c as usize {
                            self.root_child.resize(c as usize + 1, NIL);
                        }
                        self.root_child[c as usize] = id;
                    }
                    id
                }
            };
        }
        n
    }

    fn sync_hot(&mut self, n: u32) {
        let node = &self.nodes[n as usize];
        let (c0, n0) = node.children.first().copied().unwrap_or((NIL, NIL));
        let h = &mut self.hot[n as usize];
        h.nchild = node.children.len() as u32;
        (h.c0, h.n0) = (c0, n0);
    }

    /// Takes `slot` off the node of `conj` and prunes nodes left without purpose.
    fn unlink(&mut self, conj: &[ClauseId], slot: u32) {
        let mut path = vec![0u32];
        for &c in conj {
            let n = *path.last().unwrap_or(&0);
            let children = &self.nodes[n as usize].children;
            match children.binary_search_by_key(&c, |e| e.0) {
                Ok(i) => path.push(children[i].1),
                Err(_) => return,
            }
        }
        let last = *path.last().unwrap_or(&0) as usize;
        if let Some(i) = self.hot[last].terminal.iter().position(|t| t.0 == slot) {
            self.hot[last].terminal.swap_remove(i);
        }
        for d in (1..path.len()).rev() {
            let n = path[d] as usize;
            if !self.hot[n].terminal.is_empty() || !self.nodes[n].children.is_empty() {
                break;
            }
            let parent = path[d - 1] as usize;
            let c = conj[d - 1];
            if let Ok(i) = self.nodes[parent]
                .children
                .binary_search_by_key(&c, |e| e.0)
            {
                self.nodes[parent].children.remove(i);
                self.sync_hot(parent as u32);
            }
            if parent == 0
                && let Some(r) = self.root_child.get_mut(c as usize)
            {
                *r = NIL;
            }
            self.nodes[n] = Node::new();
            self.hot[n] = Hot::new();
            self.free_nodes.push(n as u32);
        }
    }

    /// Ids of every pattern that `event` (a CloudEvent as JSON, `data` inline) matches, each once.
    pub fn matches(&self, event: &Value) -> Vec<Id> {
        let mut out = Vec::new();
        self.with_scratch(|s| {
            s.begin(self);
            let mut sink = EvalSink { m: self, s };
            sink = flatten_value(&self.paths, event, sink);
            self.finish(sink.s, &mut out);
        });
        out
    }

    /// Like [`matches`](Self::matches), from raw JSON bytes, without building a tree: only the
    /// keys some pattern mentions are decoded.
    pub fn matches_json(&self, event: &[u8]) -> Result<Vec<Id>, EventError> {
        let mut out = Vec::new();
        self.matches_json_into(event, &mut out)?;
        Ok(out)
    }

    /// Appends the ids of matching patterns to `out` (which is not cleared), so a hot loop can
    /// reuse one buffer.
    pub fn matches_json_into(&self, event: &[u8], out: &mut Vec<Id>) -> Result<(), EventError> {
        self.match_bytes(event, Read::All, out)
    }

    /// Like [`matches_json_into`](Self::matches_json_into), for JSON known to be valid with
    /// each key once, such as events Sluice wrote itself (their ingress parsed them and wrote
    /// them out again). Reading stops as soon as every key some pattern names has been read,
    /// so the rest of the event, usually most of it, is never scanned. On bytes that break the
    /// promise the result is still some set of ids, never a panic: JSON errors after the
    /// last key read go unnoticed, as does a key repeated after it.
    pub fn matches_valid_json_into(
        &self,
        event: &[u8],
        out: &mut Vec<Id>,
    ) -> Result<(), EventError> {
        self.match_bytes(event, Read::UntilDecided, out)
    }

    fn match_bytes(&self, event: &[u8], read: Read, out: &mut Vec<Id>) -> Result<(), EventError> {
        let dup = self.with_scratch(|s| {
            s.begin(self);
            let mut bufs = std::mem::take(&mut s.walk);
            let r =
                match flatten_bytes(&self.paths, event, read, &mut bufs, EvalSink { m: self, s }) {
                    Ok(sink) => {
                        self.finish(sink.s, out);
                        Ok(false)
                    }
                    Err(Stop::DuplicateKey) => Ok(true),
                    Err(Stop::Bad(e)) => Err(e),
                    // `flatten_bytes` turns the early stop into success.
                    Err(Stop::Done) => Ok(false),
                };
            s.walk = bufs;
            r
        })?;
        if dup {
            // Repeated keys on a pattern path: let serde_json decide (the last one wins).
            let v: Value = serde_json::from_slice(event).map_err(|_| EventError {
                offset: 0,
                reason: "invalid JSON",
            })?;
            out.extend(self.matches(&v));
        }
        Ok(())
    }

    fn with_scratch<R>(&self, f: impl FnOnce(&mut Scratch) -> R) -> R {
        thread_local! {
            static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
        }
        SCRATCH.with(|cell| match cell.try_borrow_mut() {
            Ok(mut s) => f(&mut s),
            // Only reachable if a caller re-enters from inside a match; stay correct anyway.
            Err(_) => f(&mut Scratch::default()),
        })
    }

    fn finish(&self, s: &mut Scratch, out: &mut Vec<Id>) {
        let gen_ = s.generation;
        for &f in &self.absent_fields {
            if s.field_seen[f as usize] != gen_ {
                for &c in &self.fields[f as usize].exists_false {
                    s.hit(c, &[]);
                }
            }
        }
        if s.satisfied.is_empty() {
            return;
        }
        let mut stack = std::mem::take(&mut s.stack);
        stack.clear();
        // (node, how many clauses on its path were hit only inside arrays of objects): the
        // array-consistency check is needed only from two such clauses on.
        stack.push((0u32, 0u32));
        let bound = |s: &Scratch, c: ClauseId| u32::from(s.clause[c as usize].free != gen_);
        while let Some((n, b)) = stack.pop() {
            let h = &self.hot[n as usize];
            if !h.terminal.is_empty() && (b < 2 || s.consistent(&self.nodes[n as usize].conj)) {
                for (slot, multi, id) in &h.terminal {
                    if !*multi {
                        out.push(id.clone());
                    } else if s.slot_seen[*slot as usize] != gen_ {
                        s.slot_seen[*slot as usize] = gen_;
                        out.push(id.clone());
                    }
                }
            }
            // A trie path never repeats a clause, so every node is reached at most once; the
            // next steps are children ∩ satisfied, found from the smaller side.
            if n == 0 {
                for &c in &s.satisfied {
                    match self.root_child.get(c as usize) {
                        Some(&child) if child != NIL => stack.push((child, bound(s, c))),
                        _ => {}
                    }
                }
            } else if h.nchild == 1 {
                if s.clause[h.c0 as usize].stamp == gen_ {
                    stack.push((h.n0, b + bound(s, h.c0)));
                }
            } else if h.nchild > 1 {
                let node = &self.nodes[n as usize];
                if node.children.len() <= s.satisfied.len() {
                    for &(c, child) in &node.children {
                        if s.clause[c as usize].stamp == gen_ {
                            stack.push((child, b + bound(s, c)));
                        }
                    }
                } else {
                    for &c in &s.satisfied {
                        if let Ok(k) = node.children.binary_search_by_key(&c, |e| e.0) {
                            stack.push((node.children[k].1, b + bound(s, c)));
                        }
                    }
                }
            }
        }
        s.stack = stack;
    }
}

/// Per-thread working memory of a match, reused across events: generation stamps make
/// clearing free.
#[derive(Default)]
struct Scratch {
    generation: u32,
    /// Per clause, together so that a hit touches one cache line.
    clause: Vec<ClauseState>,
    /// (trail start in `trails`, trail length, next link)
    links: Vec<(u32, u32, u32)>,
    trails: Vec<Step>,
    satisfied: Vec<ClauseId>,
    field_seen: Vec<u32>,
    slot_seen: Vec<u32>,
    stack: Vec<(u32, u32)>,
    tmp: Vec<u32>,
    walk: WalkBuffers,
}

#[derive(Clone, Copy, Default)]
struct ClauseState {
    /// `== generation`: the clause is satisfied.
    stamp: u32,
    /// `== generation`: some hit of the clause is consistent with any array choice.
    free: u32,
    /// Head of the clause's list of trails in `links`.
    head: u32,
}

const NIL: u32 = u32::MAX;

impl Scratch {
    fn begin<Id>(&mut self, m: &Matcher<Id>) {
        if self.generation == u32::MAX {
            *self = Scratch::default();
        }
        self.generation += 1;
        let grow = |v: &mut Vec<u32>, n: usize| {
            if v.len() < n {
                v.resize(n, 0);
            }
        };
        if self.clause.len() < m.clauses.len() {
            self.clause.resize(m.clauses.len(), ClauseState::default());
        }
        grow(&mut self.field_seen, m.fields.len());
        grow(&mut self.slot_seen, m.slots.len());
        self.links.clear();
        self.trails.clear();
        self.satisfied.clear();
    }

    #[inline]
    fn hit(&mut self, c: ClauseId, trail: &[Step]) {
        let g = self.generation;
        let st = &mut self.clause[c as usize];
        if st.stamp != g {
            st.stamp = g;
            st.head = NIL;
            self.satisfied.push(c);
        }
        if trail.is_empty() {
            st.free = g;
        } else if st.free != g {
            let start = self.trails.len() as u32;
            self.trails.extend_from_slice(trail);
            self.links.push((start, trail.len() as u32, st.head));
            st.head = (self.links.len() - 1) as u32;
        }
    }

    /// Can one choice of array elements satisfy every clause of `conj` at once? Clauses hit
    /// outside arrays of objects fit any choice; the rest go to `consistent_at`.
    fn consistent(&self, conj: &[ClauseId]) -> bool {
        let is_bound = |c: &&ClauseId| self.clause[**c as usize].free != self.generation;
        if conj.iter().filter(is_bound).nth(1).is_none() {
            return true;
        }
        if let Some(ok) = self.consistent_flat(conj) {
            return ok;
        }
        let bound: Vec<ClauseId> = conj.iter().filter(is_bound).copied().collect();
        let cands: Vec<Vec<&[Step]>> = bound
            .iter()
            .map(|&c| {
                let mut v = Vec::new();
                let mut l = self.clause[c as usize].head;
                while l != NIL {
                    let (start, len, next) = self.links[l as usize];
                    v.push(&self.trails[start as usize..(start + len) as usize]);
                    l = next;
                }
                v
            })
            .collect();
        consistent_at(cands, 0)
    }
}

impl Scratch {
    /// The trails of clause `c`, newest first.
    fn trails_of(&self, c: ClauseId) -> impl Iterator<Item = &[Step]> + '_ {
        let mut l = self.clause[c as usize].head;
        std::iter::from_fn(move || {
            if l == NIL {
                return None;
            }
            let (start, len, next) = self.links[l as usize];
            l = next;
            Some(&self.trails[start as usize..(start + len) as usize])
        })
    }

    /// `consistent` without allocating, for the common case where every trail of every bound
    /// clause crosses exactly one array of objects: per array, one element must hold a hit
    /// of every clause entering it (what `consistent_at` decides at depth 0, its depth-1 calls
    /// being trivially true). `None` when some trail is longer.
    fn consistent_flat(&self, conj: &[ClauseId]) -> Option<bool> {
        let g = self.generation;
        let bound = || {
            conj.iter()
                .copied()
                .filter(|&c| self.clause[c as usize].free != g)
        };
        for c in bound() {
            if self.trails_of(c).any(|t| t.len() != 1) {
                return None;
            }
        }
        // As in `consistent_at`, a clause enters the array of its newest trail.
        let array_of = |c: ClauseId| self.trails_of(c).next().map(|t| t[0].0);
        for (i, c) in bound().enumerate() {
            let Some(array) = array_of(c) else {
                return Some(false);
            };
            // Each group is checked once, from its first clause.
            if bound().take(i).any(|d| array_of(d) == Some(array)) {
                continue;
            }
            let others = bound().skip(i + 1).filter(|&d| array_of(d) == Some(array));
            if others.clone().next().is_none() {
                continue;
            }
            let found = self.trails_of(c).filter(|t| t[0].0 == array).any(|t| {
                others
                    .clone()
                    .all(|d| self.trails_of(d).any(|u| u[0] == t[0]))
            });
            if !found {
                return Some(false);
            }
        }
        Some(true)
    }
}

/// All candidate trails of each clause share their first `depth` steps. A clause with a trail
/// ending here fits any deeper choice. The others are grouped by the array they enter next
/// (a path meets one array at a time, so each clause enters exactly one); per array, some
/// element must hold a candidate of every clause of the group, recursively consistent.
fn consistent_at(cands: Vec<Vec<&[Step]>>, depth: usize) -> bool {
    let mut groups: Vec<(u32, Vec<Vec<&[Step]>>)> = Vec::new();
    for c in cands {
        if c.is_empty() {
            return false;
        }
        if c.iter().any(|t| t.len() <= depth) {
            continue;
        }
        let array = c[0][depth].0;
        let c: Vec<&[Step]> = c.into_iter().filter(|t| t[depth].0 == array).collect();
        match groups.iter_mut().find(|g| g.0 == array) {
            Some(g) => g.1.push(c),
            None => groups.push((array, vec![c])),
        }
    }
    for (_, mut group) in groups {
        if group.len() < 2 {
            continue;
        }
        for c in &mut group {
            c.sort_unstable_by_key(|t| t[depth].1);
        }
        let mut elements: Vec<u32> = group[0].iter().map(|t| t[depth].1).collect();
        elements.dedup();
        let found = elements.into_iter().any(|e| {
            let mut sub = Vec::with_capacity(group.len());
            for c in &group {
                let lo = c.partition_point(|t| t[depth].1 < e);
                let hi = c.partition_point(|t| t[depth].1 <= e);
                if lo == hi {
                    return false;
                }
                sub.push(c[lo..hi].to_vec());
            }
            consistent_at(sub, depth + 1)
        });
        if !found {
            return false;
        }
    }
    true
}

struct EvalSink<'m, 's, Id> {
    m: &'m Matcher<Id>,
    s: &'s mut Scratch,
}

impl<'a, Id> Sink<'a> for EvalSink<'_, '_, Id> {
    #[inline]
    fn leaf(&mut self, field: FieldId, value: LeafVal<'a>, trail: &[Step]) {
        let s = &mut *self.s;
        s.field_seen[field as usize] = s.generation;
        let mut tmp = std::mem::take(&mut s.tmp);
        self.m.fields[field as usize].eval(&value, &mut tmp, &mut |c| s.hit(c, trail));
        s.tmp = tmp;
    }
}
