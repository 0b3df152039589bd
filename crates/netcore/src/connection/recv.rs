//! Receiving one data packet: replay check, decryption, then its stats blob and frames,
//! validated as a whole before any is acted on.

use std::collections::BTreeMap;

use smallvec::SmallVec;

use prost::Message as _;

use super::lanes::Refused;
use super::state::{ConnectionState, State};
use super::{Connection, InMessage};
use crate::crypto::TAG_LEN;
use crate::end_reason::EndReason;
use crate::snp::ack_ranges::Elicits;
use crate::snp::packet_number::Verdict;
use crate::time::Timestamp;
use crate::wire::control::{UdpStats, STATS_ACK_REQUEST_E2E, STATS_ACK_REQUEST_IMMEDIATE};
use crate::wire::datagram::{DataHeader, MAX_PLAINTEXT_RECV};
use crate::wire::frames::{Frame, FrameDecoder};

/// Ack at once after this many packets with reliable data (or that asked), rather than
/// waiting for the delayed-ack timer: at high rates a 50 ms ack clock would starve the
/// sender's congestion window.
const ACK_EVERY: u32 = 4;

/// Ack at once after this many packets whose only data is unreliable (each counts a quarter
/// of a reliable one toward [`ACK_EVERY`]). Nothing in them is resent, and a sender whose
/// window is the limit asks for its ack outright (`snp::ack_request`), so the count only
/// bounds how long a peer sending small unreliable messages waits between acks: a game
/// client sending 20 a second gets about one ack a second, not five.
const LAZY_ACK_EVERY: u32 = 16;

/// What one packet adds to [`Connection::unacked_received`]: units of which
/// `LAZY_ACK_EVERY` (= `ACK_EVERY` prompt packets) force an ack.
const fn ack_units(elicits: Elicits) -> u32 {
    match elicits {
        Elicits::Nothing => 0,
        Elicits::Lazily => 1,
        Elicits::Promptly => LAZY_ACK_EVERY / ACK_EVERY,
    }
}

impl Connection {
    /// Handles one datagram from the peer, appending delivered messages to `out`.
    /// Returns false if the datagram was dropped (not acknowledged). A packet refused
    /// part-way may still have appended messages completed by its earlier segments: those
    /// left the stream and must be delivered whatever this returns.
    pub fn handle_datagram(
        &mut self,
        now: Timestamp,
        datagram: &[u8],
        out: &mut Vec<InMessage>,
    ) -> bool {
        let ok = self.accept_datagram(now, datagram, out);
        if !ok {
            self.stats.packets_dropped += 1;
        }
        self.shed_if_idle(now);
        ok
    }

    fn accept_datagram(
        &mut self,
        now: Timestamp,
        datagram: &[u8],
        out: &mut Vec<InMessage>,
    ) -> bool {
        self.meter.tick(now, self.totals());
        let Ok((header, sealed)) = DataHeader::decode(datagram) else {
            return false;
        };
        let Some(pn) = self.replay.expand(header.wire_pkt_num) else {
            return false;
        };
        match self.replay.check(pn) {
            Verdict::New => {}
            Verdict::Duplicate => {
                // Counted for the quality reports (before authentication, as the check is).
                self.stats.packets_replayed += 1;
                self.reports.on_duplicate();
                self.meter.on_peer_duplicate();
                return false;
            }
            Verdict::TooOld => {
                self.stats.packets_replayed += 1;
                return false;
            }
        }
        let Some(link) = self.state.link_mut() else {
            return false;
        };
        // Decrypt on the stack, so an idle connection holds no receive buffer; nothing about
        // the connection changes unless the packet authenticates (a forged or damaged one is
        // dropped and counted). Receivers are lenient up to `MAX_PLAINTEXT_RECV`, no further.
        let mut space = [0u8; MAX_PLAINTEXT_RECV + TAG_LEN];
        let Some(buf) = space.get_mut(..sealed.len()) else {
            return false;
        };
        buf.copy_from_slice(sealed);
        match link.keys.cipher().recv.open_in_place(pn, buf) {
            Ok(n) => {
                let payload = buf.get(..n).unwrap_or_default();
                self.process_packet(now, pn, header.stats, payload, datagram.len(), out)
            }
            Err(_) => {
                self.stats.packets_unauthenticated += 1;
                false
            }
        }
    }

    /// Acts on an authenticated packet's stats blob and frames.
    fn process_packet(
        &mut self,
        now: Timestamp,
        pn: u64,
        stats: Option<&[u8]>,
        payload: &[u8],
        wire_len: usize,
        out: &mut Vec<InMessage>,
    ) -> bool {
        let mut ack_request = 0;
        let mut report = None;
        if let Some(blob) = stats {
            match UdpStats::decode(blob) {
                Ok(stats) => {
                    ack_request = stats.flags.unwrap_or(0);
                    if stats.stats.is_some() {
                        // A quality report asks for an ack without saying so (the reference
                        // leaves the implied flag out).
                        ack_request |= STATS_ACK_REQUEST_E2E;
                    }
                    report = stats.stats;
                }
                Err(_) => return false,
            }
        }
        // Validate every frame before acting on any, so a corrupt packet changes nothing.
        let mut carries_reliable = false;
        let mut carries_data = false;
        let asked = ack_request & (STATS_ACK_REQUEST_E2E | STATS_ACK_REQUEST_IMMEDIATE) != 0;
        let mut ack_eliciting = asked;
        for frame in FrameDecoder::new(payload) {
            match frame {
                Ok(Frame::Reliable(_)) => {
                    carries_reliable = true;
                    carries_data = true;
                    ack_eliciting = true;
                }
                Ok(Frame::Unreliable(_)) => {
                    carries_data = true;
                    ack_eliciting = true;
                }
                Ok(_) => {}
                Err(_) => return false,
            }
        }
        if carries_reliable && self.recv_blocked {
            // Back-pressure: unacknowledged, so the peer resends once we have room. The
            // peer is alive all the same (it counts as heard), and we answer at once with an
            // ack-only packet (not acking this one) so it hears from us too: neither side
            // times the session out while we are full.
            self.last_heard = Some(now);
            self.ack_now = true;
            return false;
        }
        let max_message = self.cfg.max_message;
        // Each lane's first unreliable segment in a packet resolves its message number
        // against the highest seen on that lane before the packet.
        let mut unreliable_ref = LaneRefs::default();
        for frame in FrameDecoder::new(payload).flatten() {
            match frame {
                Frame::Ack(ack) => {
                    self.note_report_acked(now, ack);
                    self.on_ack_frame(now, ack);
                }
                Frame::StopWaiting(sw) => {
                    if let Some(first) = sw.first_wanted(pn) {
                        self.acks.forget_below(first);
                    }
                }
                Frame::SelectLane(_) => {}
                Frame::Reliable(seg) => {
                    match self.recv.on_reliable(seg, now, max_message, out) {
                        Ok(()) => {}
                        // Out of window or too many gaps: don't ack; the peer resends.
                        Err(Refused::Later) => return false,
                        Err(Refused::Protocol(why)) => return self.fail_protocol(why),
                    }
                }
                Frame::Unreliable(seg) => {
                    let recv = &self.recv;
                    let reference = unreliable_ref
                        .get_or_insert(seg.lane, || recv.highest_unreliable(seg.lane));
                    self.recv
                        .on_unreliable(seg, reference, now, max_message, out);
                }
            }
        }
        let out_of_order = pn < self.replay.largest();
        if out_of_order {
            self.reports.on_out_of_order();
        }
        self.replay.commit(pn);
        self.meter.on_peer_packet(pn, out_of_order);
        if let Some(q) = report {
            self.reports.on_peer_report(now, &q);
            if let Some(quality) = self.reports.peer().and_then(|p| p.quality()) {
                self.meter.on_peer_quality(quality);
            }
        }
        // Unreliable-only data is acked lazily (see `ack_ranges`), unless the peer asked.
        let elicits = if !ack_eliciting {
            Elicits::Nothing
        } else if carries_reliable || asked {
            Elicits::Promptly
        } else {
            Elicits::Lazily
        };
        self.acks.on_packet(pn, now, elicits);
        self.unacked_received = self.unacked_received.saturating_add(ack_units(elicits));
        if ack_request & STATS_ACK_REQUEST_IMMEDIATE != 0 || self.unacked_received >= LAZY_ACK_EVERY
        {
            self.ack_now = true;
        }
        self.last_heard = Some(now);
        self.shed = false;
        if carries_data {
            self.last_data = now;
        }
        // The peer sealed this with the session's keys, so it took our ConnectOK: no request
        // of its can call for it again.
        if let State::Answering { .. } = self.state {
            self.establish();
        }
        self.stats.packets_received += 1;
        self.stats.bytes_received += wire_len as u64;
        true
    }

    fn fail_protocol(&mut self, why: &str) -> bool {
        self.end_with(
            ConnectionState::ProblemDetectedLocally,
            EndReason::MiscInternalError,
            format!("peer broke the protocol: {why}"),
        );
        false
    }
}

/// Lanes' reference numbers for one packet's unreliable segments. A packet names few lanes:
/// they are looked up in a short list on the stack (no allocation per packet), and only a
/// packet naming many goes on to a map, so a hostile one costs no more than a map's lookups.
#[derive(Default)]
struct LaneRefs {
    few: SmallVec<[(u32, u64); LaneRefs::FEW]>,
    many: BTreeMap<u32, u64>,
}

impl LaneRefs {
    const FEW: usize = 8;

    fn get_or_insert(&mut self, lane: u32, reference: impl FnOnce() -> u64) -> u64 {
        if let Some(&(_, r)) = self.few.iter().find(|e| e.0 == lane) {
            return r;
        }
        if self.few.len() < Self::FEW {
            let r = reference();
            self.few.push((lane, r));
            return r;
        }
        *self.many.entry(lane).or_insert_with(reference)
    }
}
