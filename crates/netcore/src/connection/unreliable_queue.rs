//! One lane's unreliable messages waiting to be sent.
//!
//! Their bytes sit end to end in one buffer, so queueing a message copies it once and
//! allocates nothing at steady state, and sending copies straight from that buffer into
//! the packet. A message larger than the room left in a packet goes in several segments:
//! the front message remembers how much of it already went.

use std::collections::VecDeque;

/// Sent bytes at the front of the buffer are dropped once they are at least this many and
/// at least half of it (amortised O(1) per byte; a fully sent buffer is simply cleared).
const COMPACT_AT: usize = 64 << 10;

/// The unsent unreliable messages of one lane, oldest first.
#[derive(Default)]
#[cfg_attr(any(test, fuzzing), derive(Clone))]
pub struct UnreliableQueue {
    /// The messages' bytes, end to end; those before `head` are sent.
    bytes: Vec<u8>,
    /// Where the next unsent byte is.
    head: usize,
    /// Each message's number and length, oldest first.
    messages: VecDeque<(u64, usize)>,
    /// How many bytes of the front message already went.
    front_sent: usize,
}

/// What is left of the front message.
#[derive(Debug, PartialEq, Eq)]
pub struct Front<'a> {
    /// Its message number on the lane.
    pub msg_num: u64,
    /// Where in the message `rest` starts.
    pub offset: usize,
    /// Its bytes not yet sent.
    pub rest: &'a [u8],
}

impl UnreliableQueue {
    /// Queues message `msg_num` made of `parts` (written one after the other).
    pub fn push(&mut self, msg_num: u64, parts: &[&[u8]]) {
        let len = parts.iter().map(|p| p.len()).sum();
        self.bytes.reserve(len);
        for p in parts {
            self.bytes.extend_from_slice(p);
        }
        self.messages.push_back((msg_num, len));
    }

    /// Whether no message waits.
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    /// Unsent bytes, in total.
    pub fn queued_bytes(&self) -> usize {
        self.bytes.len() - self.head
    }

    /// The front message's unsent part.
    pub fn front(&self) -> Option<Front<'_>> {
        let &(msg_num, len) = self.messages.front()?;
        let end = self.head + (len - self.front_sent);
        Some(Front {
            msg_num,
            offset: self.front_sent,
            rest: self.bytes.get(self.head..end)?,
        })
    }

    /// `n` more bytes of the front message went (at most what is left of it); when that
    /// was the rest of it, it leaves the queue.
    pub fn advance(&mut self, n: usize) {
        let Some(&(_, len)) = self.messages.front() else {
            return;
        };
        let n = n.min(len - self.front_sent);
        self.head += n;
        self.front_sent += n;
        if self.front_sent == len {
            self.messages.pop_front();
            self.front_sent = 0;
        }
        if self.messages.is_empty() {
            self.bytes.clear();
            self.head = 0;
        } else if self.head >= COMPACT_AT && self.head * 2 >= self.bytes.len() {
            self.bytes.drain(..self.head);
            self.head = 0;
        }
    }

    /// Gives back the storage an empty queue keeps for reuse.
    pub fn shrink(&mut self) {
        if self.is_empty() {
            *self = UnreliableQueue::default();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sends everything in segments of at most `room` bytes: (number, offset, bytes) each.
    fn drain(q: &mut UnreliableQueue, room: usize) -> Vec<(u64, usize, Vec<u8>)> {
        let mut out = Vec::new();
        while let Some(f) = q.front() {
            let take = f.rest.len().min(room);
            out.push((f.msg_num, f.offset, f.rest[..take].to_vec()));
            q.advance(take);
        }
        out
    }

    #[test]
    fn messages_leave_in_order_whole_or_in_segments() {
        let mut q = UnreliableQueue::default();
        q.push(1, &[b"ab", b"cde"]);
        q.push(2, &[b"", b""]);
        q.push(3, &[b"xyz"]);
        assert_eq!(q.queued_bytes(), 8);
        assert_eq!(
            drain(&mut q, 2),
            vec![
                (1, 0, b"ab".to_vec()),
                (1, 2, b"cd".to_vec()),
                (1, 4, b"e".to_vec()),
                (2, 0, vec![]),
                (3, 0, b"xy".to_vec()),
                (3, 2, b"z".to_vec()),
            ]
        );
        assert!(q.is_empty());
        assert_eq!(q.queued_bytes(), 0);
    }

    #[test]
    fn a_long_backlog_drops_what_was_sent_and_keeps_the_rest_intact() {
        let mut q = UnreliableQueue::default();
        let msg = |n: u64| vec![n as u8; 1000];
        let mut next = 0u64;
        // Keep about 100 KiB queued while sending: the sent front is dropped now and then.
        for _ in 0..100 {
            next += 1;
            q.push(next, &[&msg(next)]);
        }
        for sent in 1..=1000u64 {
            let f = q.front().expect("a message waits");
            assert_eq!((f.msg_num, f.offset, f.rest), (sent, 0, &msg(sent)[..]));
            q.advance(1000);
            next += 1;
            q.push(next, &[&msg(next)]);
            assert!(q.head < COMPACT_AT + 1000 || q.head * 2 < q.bytes.len());
        }
        assert_eq!(q.queued_bytes(), 100 * 1000);
        assert!(q.bytes.capacity() < 400 * 1000, "{}", q.bytes.capacity());
    }

    #[test]
    fn advance_past_the_front_message_stops_at_its_end() {
        let mut q = UnreliableQueue::default();
        q.push(1, &[b"abc"]);
        q.push(2, &[b"def"]);
        q.advance(10);
        assert_eq!(
            q.front(),
            Some(Front {
                msg_num: 2,
                offset: 0,
                rest: b"def"
            })
        );
        q.advance(3);
        assert!(q.front().is_none());
        q.advance(1);
        q.shrink();
        assert_eq!(q.bytes.capacity(), 0);
    }
}
