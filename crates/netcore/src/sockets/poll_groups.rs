//! Poll groups (Steam's `HSteamNetPollGroup`): one receive order across many connections.
//!
//! A group keeps tokens (connection, sequence number) in arrival order; the messages stay in
//! their connections' queues, so a group never holds more tokens than its connections hold
//! messages: taking messages through a connection removes their tokens too.

use std::collections::VecDeque;

use super::queue::Received;
use super::{HConn, HPollGroup};
use crate::endpoint::Map;

#[derive(Default)]
struct Group {
    tokens: VecDeque<(HConn, u64)>,
}

/// Every poll group of an instance.
#[derive(Default)]
pub struct PollGroups {
    groups: Map<HPollGroup, Group>,
    /// Which group each connection's tokens are in.
    member_of: Map<HConn, HPollGroup>,
}

impl PollGroups {
    /// A new, empty group `g`.
    pub fn create(&mut self, g: HPollGroup) {
        self.groups.insert(g, Group::default());
    }

    /// Whether `g` exists.
    pub fn contains(&self, g: HPollGroup) -> bool {
        self.groups.contains_key(&g)
    }

    /// Destroys `g`; false if there is none.
    pub fn destroy(&mut self, g: HPollGroup) -> bool {
        self.member_of.retain(|_, m| *m != g);
        self.groups.remove(&g).is_some()
    }

    /// Records that connection `h`'s message `seq` arrived, in group `g`.
    pub fn push(&mut self, g: HPollGroup, h: HConn, seq: u64) {
        if let Some(group) = self.groups.get_mut(&g) {
            group.tokens.push_back((h, seq));
            self.member_of.insert(h, g);
        }
    }

    /// Removes connection `h`'s tokens (it left its group, or closed).
    pub fn forget_conn(&mut self, h: HConn) {
        if let Some(g) = self.member_of.remove(&h) {
            if let Some(group) = self.groups.get_mut(&g) {
                group.tokens.retain(|(c, _)| *c != h);
            }
        }
    }

    /// Connection `h`'s messages up to `seq` were taken through the connection itself: their
    /// tokens are stale.
    pub fn taken_through(&mut self, h: HConn, seq: u64) {
        if let Some(group) = self.member_of.get(&h).and_then(|g| self.groups.get_mut(g)) {
            group.tokens.retain(|&(c, s)| c != h || s > seq);
        }
    }

    /// How many messages wait on group `g`'s connections (0 for no group).
    pub fn waiting(&self, g: HPollGroup) -> usize {
        self.groups.get(&g).map_or(0, |group| group.tokens.len())
    }

    /// Takes up to `max` messages of group `g` in arrival order, `take(conn, seq)` fetching
    /// each from its connection (`None`: already taken there). `None` if `g` is no group.
    pub fn take(
        &mut self,
        g: HPollGroup,
        max: usize,
        mut take: impl FnMut(HConn, u64) -> Option<Received>,
    ) -> Option<Vec<Received>> {
        let group = self.groups.get_mut(&g)?;
        let mut out = Vec::new();
        while out.len() < max {
            let Some((h, seq)) = group.tokens.pop_front() else {
                break;
            };
            if let Some(m) = take(h, seq) {
                out.push(m);
            }
        }
        Some(out)
    }
}
