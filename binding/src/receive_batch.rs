//! The receive batch: many received messages packed into one buffer, so a batch costs one
//! JS value however many messages it holds.
//!
//! Layout, little-endian: a 24-byte head (message count `n`, distinct sender count `p`,
//! bytes of sender names, bytes of payloads, messages left after this batch (on the channel,
//! connection or poll group), zero), then `u64` message numbers `[n]`, `u64`
//! arrival times (µs on the endpoint's clock) `[n]`, `u32` sizes `[n]`, `u32` send flags
//! `[n]`; for the connection API only, `u32` connection handles `[n]`, `u32` lanes `[n]`
//! and `i64` connection user data `[n]`; then `u32` sender indexes `[n]`, `u32` sender name
//! lengths `[p]`, the sender names (canonical text, UTF-8, back to back), and the payloads
//! back to back. `ts/receive-batch.ts` reads it.
//!
//! The batch is written straight into a buffer the JS engine allocates (payloads copied once,
//! from the core's message into JS memory): packing into a `Vec` and copying that into a
//! `Buffer` was a second copy of every payload (3 % of a 1200-byte receiver's CPU).

use std::collections::HashMap;
use std::io::Write as _;

use napi::bindgen_prelude::{BufferSlice, FromNapiValue};
use napi::{sys, Env, Error, Result, Status};
use netcore::messages::Delivered;
use netcore::sockets::Received;
use netcore::Identity;

/// One message's columns.
struct Row<'a> {
    peer: &'a Identity,
    number: u64,
    received_at: u64,
    flags: u32,
    data: &'a [u8],
    /// Connection handle, lane and user data (connection API).
    conn: Option<(u32, u32, i64)>,
}

/// Packs messages of the messages model (not empty) into a new JS buffer; `left` messages
/// are still waiting on the channel.
pub fn pack<'env>(env: &'env Env, msgs: &[Delivered], left: usize) -> Result<BufferSlice<'env>> {
    let rows: Vec<Row<'_>> = msgs
        .iter()
        .map(|d| Row {
            peer: &d.peer,
            number: d.msg.number,
            received_at: d.msg.received_at.as_micros(),
            flags: d.msg.send_flags,
            data: &d.msg.data,
            conn: None,
        })
        .collect();
    pack_rows(env, &rows, false, left)
}

/// Packs messages of the connection API (not empty) into a new JS buffer; `left` messages
/// still wait.
pub fn pack_received<'env>(
    env: &'env Env,
    msgs: &[Received],
    left: usize,
) -> Result<BufferSlice<'env>> {
    let rows: Vec<Row<'_>> = msgs
        .iter()
        .map(|m| Row {
            peer: &m.peer,
            number: m.number,
            received_at: m.received_at.as_micros(),
            flags: m.flags,
            data: &m.data,
            conn: Some((m.conn, u32::from(m.lane), m.user_data)),
        })
        .collect();
    pack_rows(env, &rows, true, left)
}

fn pack_rows<'env>(
    env: &'env Env,
    rows: &[Row<'_>],
    with_conn: bool,
    left: usize,
) -> Result<BufferSlice<'env>> {
    let n = rows.len();
    // The distinct senders' names, back to back, and each one's length: written once per
    // batch, into one buffer (no string per sender).
    let mut names_text: Vec<u8> = Vec::new();
    let mut name_lens: Vec<u32> = Vec::new();
    let mut peer_index = Vec::with_capacity(n);
    // Each distinct peer is written out once per batch. Runs of messages from one peer are
    // the common case (compared with the last one); a server hears from many peers in one
    // batch, so the others are found by identity, without formatting or a linear search.
    let mut seen: HashMap<&Identity, u32> = HashMap::new();
    let mut last_peer: Option<(&Identity, u32)> = None;
    for r in rows {
        let idx = match last_peer {
            Some((p, i)) if p == r.peer => i,
            _ => {
                let i = *seen.entry(r.peer).or_insert_with(|| {
                    let before = names_text.len();
                    // Writing into a Vec cannot fail.
                    let _ = write!(names_text, "{}", r.peer);
                    name_lens.push((names_text.len() - before) as u32);
                    (name_lens.len() - 1) as u32
                });
                last_peer = Some((r.peer, i));
                i
            }
        };
        peer_index.push(idx);
    }
    let names = names_text.len();
    let data: usize = rows.iter().map(|r| r.data.len()).sum();
    let per_row = 28 + if with_conn { 16 } else { 0 };
    let len = 24 + per_row * n + 4 * name_lens.len() + names + data;
    let mut buf = js_buffer(env, len)?;
    let mut out = Writer {
        buf: &mut buf,
        at: 0,
    };
    let u32s = |out: &mut Writer<'_>, v: u32| out.put(&v.to_le_bytes());
    u32s(&mut out, n as u32);
    u32s(&mut out, name_lens.len() as u32);
    u32s(&mut out, names as u32);
    u32s(&mut out, data as u32);
    u32s(&mut out, u32::try_from(left).unwrap_or(u32::MAX));
    u32s(&mut out, 0);
    for r in rows {
        out.put(&r.number.to_le_bytes());
    }
    for r in rows {
        out.put(&r.received_at.to_le_bytes());
    }
    for r in rows {
        u32s(&mut out, r.data.len() as u32);
    }
    for r in rows {
        u32s(&mut out, r.flags);
    }
    if with_conn {
        let conn = |r: &Row<'_>| r.conn.unwrap_or((0, 0, -1));
        for r in rows {
            u32s(&mut out, conn(r).0);
        }
        for r in rows {
            u32s(&mut out, conn(r).1);
        }
        for r in rows {
            out.put(&conn(r).2.to_le_bytes());
        }
    }
    for &i in &peer_index {
        u32s(&mut out, i);
    }
    for &l in &name_lens {
        u32s(&mut out, l);
    }
    out.put(&names_text);
    for r in rows {
        out.put(r.data);
    }
    if out.at != len {
        return Err(Error::new(
            Status::GenericFailure,
            "receive batch: packed size differs from the computed one",
        ));
    }
    Ok(buf)
}

/// Writes at a cursor into a buffer of precomputed size; bytes past its end are dropped
/// (the size check after packing reports it).
struct Writer<'b> {
    buf: &'b mut [u8],
    at: usize,
}

impl Writer<'_> {
    fn put(&mut self, bytes: &[u8]) {
        let end = self.at + bytes.len();
        if let Some(dst) = self.buf.get_mut(self.at..end) {
            dst.copy_from_slice(bytes);
        }
        self.at = end;
    }
}

/// A new JS `Buffer` of `len` bytes, uninitialised (the packer writes every byte).
fn js_buffer(env: &Env, len: usize) -> Result<BufferSlice<'_>> {
    let mut data = std::ptr::null_mut();
    let mut value = std::ptr::null_mut();
    // SAFETY: `env` is the running call's environment and both out-pointers are valid.
    let status = unsafe { sys::napi_create_buffer(env.raw(), len, &mut data, &mut value) };
    if status != sys::Status::napi_ok {
        return Err(Error::new(
            Status::GenericFailure,
            format!("receive batch: cannot allocate a {len}-byte buffer"),
        ));
    }
    // SAFETY: `value` is the Buffer just created in `env`; napi-rs reads its data pointer
    // back with `napi_get_buffer_info` (the only pointer valid on every target).
    unsafe { BufferSlice::from_napi_value(env.raw(), value) }
}
