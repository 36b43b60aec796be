//! A trigger's delivery queue in memory: which entries may be leased now, honouring retry
//! times, the in-flight bound and per-key FIFO. Pure bookkeeping (no I/O, no clock), so the
//! ordering rules are unit-tested directly; backends persist entries and call into this.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

/// One queued event as the queue sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct QueueEntry<T> {
    /// Deliveries already made (0 for a fresh entry).
    pub attempts: u32,
    /// Not to be delivered before this time (ms since the Unix epoch).
    pub not_before: u64,
    /// Ordering key; entries sharing one are delivered one at a time, in sequence order.
    pub key: Option<String>,
    pub payload: T,
}

/// The in-memory state of one trigger's queue. `T` is whatever the backend needs to deliver
/// (the event and its bookkeeping).
#[derive(Debug)]
pub struct Queue<T> {
    entries: BTreeMap<u64, QueueEntry<T>>,
    /// Entries that may be leased once their time comes: not in flight and, when keyed, the
    /// oldest of their key.
    ready: BTreeSet<(u64, u64)>,
    /// Lease deadlines (ms) by sequence.
    inflight: HashMap<u64, u64>,
    by_key: HashMap<String, VecDeque<u64>>,
    max_inflight: usize,
}

impl<T: Clone> Queue<T> {
    pub fn new(max_inflight: usize) -> Self {
        Self {
            entries: BTreeMap::new(),
            ready: BTreeSet::new(),
            inflight: HashMap::new(),
            by_key: HashMap::new(),
            max_inflight: max_inflight.max(1),
        }
    }

    pub fn set_max_inflight(&mut self, n: usize) {
        self.max_inflight = n.max(1);
    }

    /// Adds an entry. Sequences must grow per key for FIFO to hold (backends assign them
    /// in bus order).
    pub fn push(&mut self, seq: u64, entry: QueueEntry<T>) {
        let eligible = match &entry.key {
            Some(k) => {
                let q = self.by_key.entry(k.clone()).or_default();
                q.push_back(seq);
                q.len() == 1
            }
            None => true,
        };
        if eligible {
            self.ready.insert((entry.not_before, seq));
        }
        self.entries.insert(seq, entry);
    }

    /// Leases up to `max` entries due at `now`, each until `deadline`. Returns (sequence,
    /// attempts including this one, payload).
    pub fn lease(&mut self, now: u64, deadline: u64, max: usize) -> Vec<(u64, u32, T)> {
        let mut out = Vec::new();
        while out.len() < max && self.inflight.len() < self.max_inflight {
            let Some(&(at, seq)) = self.ready.first() else {
                break;
            };
            if at > now {
                break;
            }
            self.ready.pop_first();
            let Some(entry) = self.entries.get_mut(&seq) else {
                continue;
            };
            entry.attempts += 1;
            self.inflight.insert(seq, deadline);
            out.push((seq, entry.attempts, entry.payload.clone()));
        }
        out
    }

    /// Whether the lease made as delivery number `attempt` of `seq` still holds (it has not
    /// expired and been made again); if so, keeps it from expiring while its outcome is being
    /// written, so no other worker can be handed the entry meanwhile.
    pub fn pin(&mut self, seq: u64, attempt: u32) -> bool {
        let current = self
            .entries
            .get(&seq)
            .is_some_and(|e| e.attempts == attempt);
        match self.inflight.get_mut(&seq) {
            Some(deadline) if current => {
                *deadline = u64::MAX;
                true
            }
            _ => false,
        }
    }

    /// Removes a delivered (or dead-lettered) entry and lets the next of its key go.
    pub fn remove(&mut self, seq: u64) -> Option<QueueEntry<T>> {
        self.inflight.remove(&seq);
        let entry = self.entries.remove(&seq)?;
        self.ready.remove(&(entry.not_before, seq));
        if let Some(k) = &entry.key
            && let Some(q) = self.by_key.get_mut(k)
        {
            q.retain(|s| *s != seq);
            match q.front() {
                Some(&next) => {
                    if let Some(n) = self.entries.get(&next)
                        && !self.inflight.contains_key(&next)
                    {
                        self.ready.insert((n.not_before, next));
                    }
                }
                None => {
                    self.by_key.remove(k);
                }
            }
        }
        Some(entry)
    }

    /// Puts back an entry [`Queue::remove`] took (its removal could not be stored), not in
    /// flight and in its place among its key's entries: it goes next unless a later one of
    /// its key was leased meanwhile.
    pub fn restore(&mut self, seq: u64, entry: QueueEntry<T>) {
        if self.entries.contains_key(&seq) {
            return;
        }
        let eligible = match &entry.key {
            Some(k) => {
                let q = self.by_key.entry(k.clone()).or_default();
                let at = q.partition_point(|s| *s < seq);
                q.insert(at, seq);
                if at == 0
                    && let Some(&was) = q.get(1)
                    && let Some(w) = self.entries.get(&was)
                {
                    // The entry that took its turn waits again, unless already leased.
                    self.ready.remove(&(w.not_before, was));
                    !self.inflight.contains_key(&was)
                } else {
                    at == 0
                }
            }
            None => true,
        };
        if eligible {
            self.ready.insert((entry.not_before, seq));
        }
        self.entries.insert(seq, entry);
    }

    /// Returns a leased entry to the queue, due at `not_before`. Its key stays blocked
    /// behind it, so FIFO per key survives retries.
    pub fn release(&mut self, seq: u64, not_before: u64) {
        if self.inflight.remove(&seq).is_none() {
            return;
        }
        if let Some(e) = self.entries.get_mut(&seq) {
            e.not_before = not_before;
            self.ready.insert((not_before, seq));
        }
    }

    /// Releases leases whose deadline passed (a worker that never answered), now due.
    pub fn expire(&mut self, now: u64) -> usize {
        let late: Vec<u64> = self
            .inflight
            .iter()
            .filter(|(_, d)| **d <= now)
            .map(|(s, _)| *s)
            .collect();
        for seq in &late {
            self.release(*seq, now);
        }
        late.len()
    }

    /// When the earliest not-yet-due entry becomes due, if nothing is due now.
    pub fn next_due(&self) -> Option<u64> {
        self.ready.first().map(|(at, _)| *at)
    }

    /// Entries waiting (not in flight).
    pub fn queued(&self) -> usize {
        self.entries.len() - self.inflight.len()
    }

    pub fn inflight(&self) -> usize {
        self.inflight.len()
    }

    pub fn get(&self, seq: u64) -> Option<&QueueEntry<T>> {
        self.entries.get(&seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(key: Option<&str>, not_before: u64) -> QueueEntry<&'static str> {
        QueueEntry {
            attempts: 0,
            not_before,
            key: key.map(str::to_owned),
            payload: "e",
        }
    }

    fn seqs(v: Vec<(u64, u32, &str)>) -> Vec<u64> {
        v.into_iter().map(|(s, _, _)| s).collect()
    }

    #[test]
    fn a_restored_entry_goes_next_of_its_key_unless_a_later_one_is_in_flight() {
        let mut q = Queue::new(10);
        for seq in 1..=3 {
            q.push(seq, entry(Some("k"), 0));
        }
        q.push(4, entry(None, 0));
        assert_eq!(seqs(q.lease(0, 100, 10)), vec![1, 4]);
        let one = q.remove(1).unwrap();
        let four = q.remove(4).unwrap();
        // 2 got its turn; 1's removal failed to be stored and 1 comes back ahead of it.
        q.restore(1, one.clone());
        q.restore(4, four);
        q.restore(1, one);
        assert_eq!(seqs(q.lease(0, 100, 10)), vec![1, 4], "once each, 2 waits");
        assert_eq!(q.queued(), 2);

        // Restored behind a later entry of its key that is in flight: it waits for it.
        let one = q.remove(1).unwrap();
        assert_eq!(seqs(q.lease(0, 100, 10)), vec![2]);
        q.restore(1, one);
        assert!(q.lease(0, 100, 10).is_empty());
        q.remove(2);
        assert_eq!(seqs(q.lease(0, 100, 10)), vec![1]);
        q.remove(1);
        assert_eq!(seqs(q.lease(0, 100, 10)), vec![3]);
    }

    #[test]
    fn only_the_current_lease_can_be_pinned_and_a_pinned_one_does_not_expire() {
        let mut q = Queue::new(10);
        q.push(1, entry(None, 0));
        assert_eq!(q.lease(0, 100, 1)[0].1, 1);
        assert!(q.expire(100) == 1, "the first lease expired");
        assert_eq!(q.lease(100, 200, 1)[0].1, 2, "handed out again");
        assert!(!q.pin(1, 1), "the expired lease's outcome is refused");
        assert!(q.pin(1, 2));
        assert_eq!(q.expire(u64::MAX - 1), 0, "a pinned lease does not expire");
        assert!(!q.pin(2, 1), "no such entry");
    }

    #[test]
    fn unordered_entries_go_in_due_order_within_inflight_bound() {
        let mut q = Queue::new(2);
        q.push(1, entry(None, 0));
        q.push(2, entry(None, 50));
        q.push(3, entry(None, 0));
        assert_eq!(
            seqs(q.lease(10, 100, 10)),
            vec![1, 3],
            "seq 2 is not due yet"
        );
        assert_eq!(q.next_due(), Some(50));
        assert!(q.lease(60, 100, 10).is_empty(), "max in flight reached");
        q.remove(1);
        assert_eq!(seqs(q.lease(60, 100, 10)), vec![2]);
        assert_eq!((q.queued(), q.inflight()), (0, 2));
    }

    #[test]
    fn keyed_entries_are_fifo_even_across_retries() {
        let mut q = Queue::new(100);
        q.push(1, entry(Some("a"), 0));
        q.push(2, entry(Some("a"), 0));
        q.push(3, entry(Some("b"), 0));
        assert_eq!(
            seqs(q.lease(0, 100, 10)),
            vec![1, 3],
            "only the head of each key"
        );
        q.release(1, 500); // retry later: key a stays blocked behind it
        assert!(q.lease(100, 200, 10).is_empty());
        let again = q.lease(500, 900, 10);
        assert_eq!(again, vec![(1, 2, "e")], "second attempt of seq 1");
        q.remove(1);
        assert_eq!(seqs(q.lease(500, 900, 10)), vec![2]);
    }

    #[test]
    fn expired_leases_come_back() {
        let mut q = Queue::new(10);
        q.push(7, entry(None, 0));
        assert_eq!(seqs(q.lease(0, 100, 1)), vec![7]);
        assert_eq!(q.expire(99), 0);
        assert_eq!(q.expire(100), 1);
        assert_eq!(q.lease(100, 200, 1), vec![(7, 2, "e")]);
    }

    #[test]
    fn removing_unknown_or_releasing_unleased_is_harmless() {
        let mut q: Queue<&str> = Queue::new(1);
        assert!(q.remove(42).is_none());
        q.release(42, 0);
        q.push(1, entry(Some("k"), 0));
        q.release(1, 99); // not leased: no change
        assert_eq!(q.next_due(), Some(0));
    }
}
