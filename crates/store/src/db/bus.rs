//! The event bus: after each commit the writer thread publishes the events
//! that commit appended, in id order, to every subscriber. Nothing is
//! published before its commit, so a subscriber never sees an event that
//! could still roll back.

use std::sync::{Arc, Mutex};

use crossbeam_channel::{unbounded, Receiver, Sender};

pub use crate::events::Committed;

/// The events of one commit, shared by every subscriber.
pub type Batch = Arc<Vec<Committed>>;

#[derive(Default)]
pub struct Bus {
    subscribers: Mutex<Vec<Sender<Batch>>>,
}

impl Bus {
    /// A receiver of every batch published from now on.
    pub fn subscribe(&self) -> Receiver<Batch> {
        let (tx, rx) = unbounded();
        self.lock().push(tx);
        rx
    }

    pub(super) fn has_subscribers(&self) -> bool {
        !self.lock().is_empty()
    }

    /// Sends `batch` to every subscriber still listening.
    pub(super) fn publish(&self, batch: Vec<Committed>) {
        let batch = Arc::new(batch);
        self.lock().retain(|s| s.send(batch.clone()).is_ok());
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Sender<Batch>>> {
        self.subscribers.lock().unwrap_or_else(|p| p.into_inner())
    }
}
