//! A failed delivery goes back on its queue with a due time or leaves it for the dead-letter
//! table, kept for `sluice dlq`; both settle like an ack, so a key's next event waits for them.

use redb::ReadableDatabase;

use super::{
    EmbeddedBus, QueueRecord, codec,
    publish::Logged,
    tables::{DEAD, storage},
    writer::Op,
};
use crate::{BusError, DeadLetter, DeadLetterPage, Delivery, Publish};

impl EmbeddedBus {
    /// The delivery failed and may be retried at `at_ms` ([`crate::sched_ms`]).
    pub async fn retry(&self, d: &Delivery, at_ms: u64, error: &str) -> Result<(), BusError> {
        let record = {
            let s = self.shared.state();
            let Some(e) = s.queues.get(&d.trigger).and_then(|q| q.get(d.seq)) else {
                return Err(BusError::lease_lost(d));
            };
            QueueRecord {
                attempts: e.attempts,
                not_before: at_ms,
                accepted_ms: e.payload.accepted_ms,
                key: e.key.clone(),
                last_error: error.to_owned(),
                event: e.payload.event.clone(),
            }
        };
        let (trigger, seq) = (d.trigger.clone(), d.seq);
        let record = codec::encode_queued(&record);
        let op = |reply| Op::Put {
            trigger,
            seq,
            record,
            reply,
        };
        // Released after the op is queued: a retry due at once could otherwise be leased,
        // handled and acked ahead of this op, which would then store the entry again.
        self.settle(&d.trigger, Some((d.seq, d.attempt)), op, |q| {
            q.release(d.seq, at_ms);
            None
        })
        .await
    }

    /// Gives the delivery up (or, with `seq` 0, an event that never was on the queue, such as
    /// a reply stopped by the hop limit): records the dead letter and, when the trigger has a
    /// dead-letter bus, publishes it there as a CloudEvent, in one durable commit.
    pub async fn dead_letter(
        &self,
        dead: DeadLetter,
        to_bus: Option<&str>,
    ) -> Result<(), BusError> {
        let (trigger, seq) = (dead.trigger.clone(), dead.seq);
        // A queue entry's dead letter names the delivery that gave it up.
        let lease = (seq != 0).then_some((seq, dead.attempts));
        let publish = to_bus.map(|bus| {
            Box::new(Logged::new(&Publish {
                bus: bus.to_owned(),
                event: dead.to_event(),
                dedupe: false,
            }))
        });
        let record = codec::encode_dead(
            &dead.reason,
            dead.attempts,
            dead.at_ms,
            &dead.last_error,
            &dead.event,
        );
        let op = |reply| Op::Dead {
            dead: Box::new(dead),
            record,
            publish,
            reply,
        };
        self.settle(&trigger, lease, op, |q| q.remove(seq)).await
    }

    /// Dead letters kept for a trigger, oldest first.
    /// Decodes only the page; the rest is counted.
    pub fn dead_letters(
        &self,
        trigger: &str,
        offset: usize,
        limit: usize,
    ) -> Result<DeadLetterPage, BusError> {
        let r = self.store.get()?.begin_read().map_err(storage)?;
        let t = r.open_table(DEAD).map_err(storage)?;
        let mut page = DeadLetterPage::default();
        for row in t
            .range((trigger, 0)..=(trigger, u64::MAX))
            .map_err(storage)?
        {
            let (k, v) = row.map_err(storage)?;
            let i = page.total;
            page.total += 1;
            if i < offset || page.items.len() >= limit {
                continue;
            }
            let (reason, attempts, at_ms, last_error, event) = codec::decode_dead(v.value())?;
            page.items.push(DeadLetter {
                trigger: trigger.to_owned(),
                seq: k.value().1,
                reason,
                attempts,
                last_error,
                at_ms,
                event,
            });
        }
        Ok(page)
    }

    /// Puts a trigger's dead letters back on its queue with fresh attempts.
    pub async fn redrive(&self, trigger: &str) -> Result<usize, BusError> {
        let trigger = trigger.to_owned();
        self.call(|reply| Op::Redrive { trigger, reply }).await
    }

    /// Deletes a trigger's dead letters.
    pub async fn purge(&self, trigger: &str) -> Result<usize, BusError> {
        let trigger = trigger.to_owned();
        self.call(|reply| Op::Purge { trigger, reply }).await
    }
}
