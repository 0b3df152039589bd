//! What the P2P layer (`crate::p2p::layer`) asks of an endpoint: failing a connection whose
//! path ICE or signaling could not provide, with the reason, reported like any other failure.

use super::{ConnectionHandle, Endpoint};
use crate::end_reason::EndReason;

impl Endpoint {
    /// Fails connection `h` with `reason` and `debug` (Steam's `ProblemDetectedLocally`),
    /// reported by [`Endpoint::poll_event`]; the connection stays in the table, dead, until
    /// its owner forgets it. False if `h` is gone or already ended.
    pub fn fail(&mut self, h: ConnectionHandle, reason: EndReason, debug: String) -> bool {
        let Some(id) = self.live_id(h) else {
            return false;
        };
        let Some(c) = self.touch(id) else {
            return false;
        };
        if c.is_dead() {
            return false;
        }
        c.fail(reason, debug);
        self.note_change(h);
        true
    }
}
