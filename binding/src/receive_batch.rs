//! The receive batch: many received messages packed into one buffer, so a batch costs one
//! JS value however many messages it holds.
//!
//! Layout, little-endian: a 24-byte head (message count `n`, distinct sender count `p`,
//! bytes of sender names, bytes of payloads, messages left on the channel after this batch,
//! zero), then `u64` message numbers `[n]`, `u64`
//! arrival times (µs on the endpoint's clock) `[n]`, `u32` sizes `[n]`, `u32` send flags
//! `[n]`, `u32` sender indexes `[n]`, `u32` sender name lengths `[p]`, the sender names
//! (canonical text, UTF-8, back to back), and the payloads back to back. `ts/receive-batch.ts`
//! reads it.

use netcore::messages::Delivered;
use netcore::Identity;

/// Packs `msgs` (not empty) into one buffer in the layout above; `left` messages are still
/// waiting on the channel.
pub fn pack(msgs: &[Delivered], left: usize) -> Vec<u8> {
    let n = msgs.len();
    let mut peers: Vec<String> = Vec::new();
    let mut peer_index = Vec::with_capacity(n);
    let mut last_peer: Option<(&Identity, u32)> = None;
    for d in msgs {
        // Runs of messages from one peer are the common case: compare with the last one
        // before searching the (short) list.
        let idx = match last_peer {
            Some((p, i)) if p == &d.peer => i,
            _ => {
                let text = d.peer.to_string();
                let i = match peers.iter().position(|p| p == &text) {
                    Some(i) => i as u32,
                    None => {
                        peers.push(text);
                        (peers.len() - 1) as u32
                    }
                };
                last_peer = Some((&d.peer, i));
                i
            }
        };
        peer_index.push(idx);
    }
    let names: usize = peers.iter().map(String::len).sum();
    let data: usize = msgs.iter().map(|d| d.msg.data.len()).sum();
    let mut out = Vec::with_capacity(24 + 28 * n + 4 * peers.len() + names + data);
    let u32s = |out: &mut Vec<u8>, v: u32| out.extend_from_slice(&v.to_le_bytes());
    u32s(&mut out, n as u32);
    u32s(&mut out, peers.len() as u32);
    u32s(&mut out, names as u32);
    u32s(&mut out, data as u32);
    u32s(&mut out, u32::try_from(left).unwrap_or(u32::MAX));
    u32s(&mut out, 0);
    for d in msgs {
        out.extend_from_slice(&d.msg.number.to_le_bytes());
    }
    for d in msgs {
        out.extend_from_slice(&d.msg.received_at.as_micros().to_le_bytes());
    }
    for d in msgs {
        u32s(&mut out, d.msg.data.len() as u32);
    }
    for d in msgs {
        u32s(&mut out, d.msg.send_flags);
    }
    for &i in &peer_index {
        u32s(&mut out, i);
    }
    for p in &peers {
        u32s(&mut out, p.len() as u32);
    }
    for p in &peers {
        out.extend_from_slice(p.as_bytes());
    }
    for d in msgs {
        out.extend_from_slice(&d.msg.data);
    }
    out
}
