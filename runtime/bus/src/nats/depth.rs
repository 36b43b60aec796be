//! Depth is asked of the server rather than counted here: a Trigger's consumers are shared by
//! every replica, and only the stream leader's counts cover them all.

use futures::TryStreamExt;
use sluice_api::jetstream as names;

use super::{NatsBus, nats_err, split_id, stream_missing};
use crate::{BusError, Depth};

impl NatsBus {
    pub(super) async fn depth_of(&self, trigger: &str) -> Result<Depth, BusError> {
        let (ns, name) = split_id(trigger)?;
        let bus = self.home_of(trigger)?;
        let stream = match self.0.js.get_stream(names::bus_stream(&bus)).await {
            Ok(s) => s,
            Err(e) if stream_missing(&e) => {
                return Ok(Depth::default());
            }
            Err(e) => return Err(nats_err(e)),
        };
        let infos: Vec<_> = stream.consumers().try_collect().await.map_err(nats_err)?;
        Ok(infos
            .iter()
            .filter(|i| names::is_trigger_consumer(&i.name, ns, name))
            .fold(Depth::default(), |d, i| Depth {
                queued: d.queued + i.num_pending,
                inflight: d.inflight + i.num_ack_pending as u64,
            }))
    }
}
