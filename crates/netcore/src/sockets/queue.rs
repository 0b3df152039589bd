//! A connection's receive queue: messages in arrival order, each with an instance-wide
//! sequence number so a poll group can take them in arrival order across connections.

use std::collections::VecDeque;

use bytes::Bytes;

use super::HConn;
use crate::identity::Identity;
use crate::time::Timestamp;

/// A message received on a connection (Steam's `SteamNetworkingMessage_t`).
#[derive(Clone, Debug)]
pub struct Received {
    /// The connection it came on.
    pub conn: HConn,
    /// The connection's user data when it arrived.
    pub user_data: i64,
    /// The lane it came on.
    pub lane: u16,
    /// The sender's message number on that lane.
    pub number: u64,
    /// `Reliable` (8) or 0.
    pub flags: u32,
    /// When its last piece arrived.
    pub received_at: Timestamp,
    /// Who sent it.
    pub peer: Identity,
    /// The payload.
    pub data: Bytes,
    /// Arrival order across the instance.
    pub seq: u64,
}

/// Messages waiting on one connection.
#[derive(Default)]
pub struct RecvQueue {
    msgs: VecDeque<Received>,
    bytes: usize,
}

impl RecvQueue {
    /// Adds a message at the back.
    pub fn push(&mut self, m: Received) {
        self.bytes += m.data.len();
        self.msgs.push_back(m);
    }

    /// Takes up to `max` from the front.
    pub fn take(&mut self, max: usize) -> Vec<Received> {
        let n = max.min(self.msgs.len());
        let out: Vec<Received> = self.msgs.drain(..n).collect();
        self.bytes -= out.iter().map(|m| m.data.len()).sum::<usize>();
        out
    }

    /// Takes the front message if it is the one with `seq` (a poll group's next); `None` if
    /// it was already taken through the connection.
    pub fn take_seq(&mut self, seq: u64) -> Option<Received> {
        if self.msgs.front()?.seq != seq {
            return None;
        }
        let m = self.msgs.pop_front()?;
        self.bytes -= m.data.len();
        Some(m)
    }

    /// The sequence numbers waiting, in order.
    pub fn seqs(&self) -> impl Iterator<Item = u64> + '_ {
        self.msgs.iter().map(|m| m.seq)
    }

    /// Messages waiting.
    pub fn len(&self) -> usize {
        self.msgs.len()
    }

    /// Payload bytes waiting.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Whether the queue holds `max_msgs` messages or `max_bytes` bytes (its connection
    /// refuses more reliable data, and its filling pauses reading).
    pub fn at_limit(&self, max_msgs: usize, max_bytes: usize) -> bool {
        self.len() >= max_msgs || self.bytes >= max_bytes
    }
}
