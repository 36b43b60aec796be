//! The embedded bus behind the `Bus` trait: thin adapters over its inherent methods.

use std::time::Duration;

use futures::{FutureExt, future::BoxFuture};
use sluice_event::CloudEvent;

use super::EmbeddedBus;
use crate::{
    Bus, BusFuture, DeadLetter, DeadLetterPage, Delivery, Depth, Enqueue, Publish, Published,
    TriggerId, sched_ms, trace::Step,
};

impl Bus for EmbeddedBus {
    fn kind(&self) -> &'static str {
        "embedded"
    }

    fn health(&self) -> Result<(), String> {
        EmbeddedBus::health(self)
    }

    fn publish(&self, items: Vec<Publish>) -> BusFuture<'_, Vec<Published>> {
        EmbeddedBus::publish(self, items).boxed()
    }

    fn head<'a>(&'a self, bus: &'a str) -> BusFuture<'a, u64> {
        let head = EmbeddedBus::head(self, bus);
        async move { Ok(head) }.boxed()
    }

    fn read<'a>(
        &'a self,
        bus: &'a str,
        after: u64,
        limit: usize,
    ) -> BusFuture<'a, Vec<(u64, u64, CloudEvent)>> {
        let got = EmbeddedBus::read(self, bus, after, limit);
        async move { got }.boxed()
    }

    fn wait_published<'a>(&'a self, _bus: &'a str, max: Duration) -> BoxFuture<'a, ()> {
        let since = self.published_version();
        EmbeddedBus::wait_published(self, since, max).boxed()
    }

    fn enqueue(&self, items: Vec<Enqueue>) -> BusFuture<'_, ()> {
        let steps = crate::trace::enqueued(&items);
        async move {
            EmbeddedBus::enqueue(self, items).await?;
            self.shared.trace.record(steps);
            Ok(())
        }
        .boxed()
    }

    fn lease<'a>(&'a self, trigger: &'a str, max: usize) -> BusFuture<'a, Vec<Delivery>> {
        let got = EmbeddedBus::lease(self, trigger, max);
        async move { Ok(got) }.boxed()
    }

    fn queued_version(&self) -> u64 {
        EmbeddedBus::queued_version(self)
    }

    fn wait_queued<'a>(
        &'a self,
        triggers: &'a [TriggerId],
        since: u64,
        max: Duration,
    ) -> BoxFuture<'a, ()> {
        EmbeddedBus::wait_queued(self, triggers, since, max).boxed()
    }

    fn ack<'a>(&'a self, d: &'a Delivery, replies: Vec<Publish>) -> BusFuture<'a, ()> {
        EmbeddedBus::ack(self, d, replies).boxed()
    }

    fn retry<'a>(&'a self, d: &'a Delivery, delay: Duration, error: &'a str) -> BusFuture<'a, ()> {
        EmbeddedBus::retry(self, d, sched_ms() + delay.as_millis() as u64, error).boxed()
    }

    fn dead_letter<'a>(
        &'a self,
        dead: DeadLetter,
        to_bus: Option<&'a str>,
        _from: Option<&'a Delivery>,
    ) -> BusFuture<'a, ()> {
        EmbeddedBus::dead_letter(self, dead, to_bus).boxed()
    }

    fn record_outcome<'a>(&'a self, trigger: &'a str, ok: bool) -> BusFuture<'a, ()> {
        EmbeddedBus::record_outcome(self, trigger, ok);
        async { Ok(()) }.boxed()
    }

    fn breaker(&self, trigger: &str) -> Option<crate::gate::BreakerStatus> {
        EmbeddedBus::breaker(self, trigger).map(|b| b.status(sched_ms(), crate::now_ms()))
    }

    fn depth<'a>(&'a self, trigger: &'a str) -> BusFuture<'a, Depth> {
        let d = EmbeddedBus::depth(self, trigger);
        async move { Ok(d) }.boxed()
    }

    fn dead_letters<'a>(
        &'a self,
        trigger: &'a str,
        offset: usize,
        limit: usize,
    ) -> BusFuture<'a, DeadLetterPage> {
        let got = EmbeddedBus::dead_letters(self, trigger, offset, limit);
        async move { got }.boxed()
    }

    fn redrive<'a>(&'a self, trigger: &'a str) -> BusFuture<'a, usize> {
        EmbeddedBus::redrive(self, trigger).boxed()
    }

    fn purge<'a>(&'a self, trigger: &'a str) -> BusFuture<'a, usize> {
        EmbeddedBus::purge(self, trigger).boxed()
    }

    fn trace(&self, steps: Vec<Step>) {
        self.shared.trace.record(steps);
    }

    fn traced<'a>(&'a self, id: &'a str) -> BusFuture<'a, Vec<Step>> {
        let got = self.shared.trace.of(id);
        async move { Ok(got) }.boxed()
    }

    fn recent_steps(&self, limit: usize) -> BusFuture<'_, Vec<Step>> {
        let got = self.shared.trace.latest(limit);
        async move { Ok(got) }.boxed()
    }
}
