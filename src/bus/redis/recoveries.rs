//! A shard's questions to its rooms' history in Redis, answered in the
//! order of the rooms' events (README, History and recovery).

use super::publisher::Unavailable;
use crate::history::{Since, Ticket};

/// The questions a shard sends on its subscriber connection.
#[derive(Default)]
pub struct Recoveries {}

impl Recoveries {
    /// Asks what `stream` holds after `since`; the answer comes back under
    /// `ticket`.
    pub fn fetch(&self, _ticket: Ticket, _stream: &str, _since: Option<&Since>) -> Result<(), Unavailable> {
        Err(Unavailable)
    }
}
