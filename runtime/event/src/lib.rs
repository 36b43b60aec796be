//! CloudEvents 1.0: the event type every part of Sluice passes along.
