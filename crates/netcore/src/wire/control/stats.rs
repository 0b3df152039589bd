//! Connection quality statistics that ride inside data packets (the stats blob of
//! `datagram::DataHeader`).
//!
//! Field numbers and types match the reference protocol, so a GNS peer's stats parse and ours
//! parse there. Our implementation may send only `flags` (to request an ack); the numbers are
//! carried for interoperability and diagnostics. Fields are proto2 `optional`: `None` means
//! absent on the wire.

/// `UdpStats::flags` bit: please acknowledge end to end.
pub const STATS_ACK_REQUEST_E2E: u32 = 2;
/// `UdpStats::flags` bit: please acknowledge immediately.
pub const STATS_ACK_REQUEST_IMMEDIATE: u32 = 4;
/// `UdpStats::flags` bit: this packet did not travel over the primary transport.
pub const STATS_NOT_PRIMARY_TRANSPORT_E2E: u32 = 16;

/// The stats blob of a data packet (GNS `CMsgSteamSockets_UDP_Stats`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct UdpStats {
    /// End-to-end quality figures.
    #[prost(message, optional, tag = "1")]
    pub stats: Option<ConnectionQuality>,
    /// `STATS_*` bits.
    #[prost(uint32, optional, tag = "3")]
    pub flags: Option<u32>,
}

/// Quality figures (GNS `CMsgSteamDatagramConnectionQuality`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct ConnectionQuality {
    /// Recent rates and ping.
    #[prost(message, optional, tag = "1")]
    pub instantaneous: Option<LinkInstantaneousStats>,
    /// Counters and histograms since the connection started.
    #[prost(message, optional, tag = "2")]
    pub lifetime: Option<LinkLifetimeStats>,
}

/// Recent link figures (GNS `CMsgSteamDatagramLinkInstantaneousStats`); integers rather than
/// floats so most fields take one or two bytes.
#[derive(Clone, PartialEq, prost::Message)]
pub struct LinkInstantaneousStats {
    /// Packets per second sent, times ten.
    #[prost(uint32, optional, tag = "1")]
    pub out_packets_per_sec_x10: Option<u32>,
    /// Bytes per second sent.
    #[prost(uint32, optional, tag = "2")]
    pub out_bytes_per_sec: Option<u32>,
    /// Packets per second received, times ten.
    #[prost(uint32, optional, tag = "3")]
    pub in_packets_per_sec_x10: Option<u32>,
    /// Bytes per second received.
    #[prost(uint32, optional, tag = "4")]
    pub in_bytes_per_sec: Option<u32>,
    /// Round trip, milliseconds.
    #[prost(uint32, optional, tag = "5")]
    pub ping_ms: Option<u32>,
    /// Percentage of packets lost, 0..=100.
    #[prost(uint32, optional, tag = "6")]
    pub packets_dropped_pct: Option<u32>,
    /// Percentage of packets out of order or duplicated, 0..=100.
    #[prost(uint32, optional, tag = "7")]
    pub packets_weird_sequence_pct: Option<u32>,
    /// Peak jitter, microseconds.
    #[prost(uint32, optional, tag = "8")]
    pub peak_jitter_usec: Option<u32>,
}

/// Lifetime link figures (GNS `CMsgSteamDatagramLinkLifetimeStats`): packet and byte
/// counters, then histograms and percentiles of quality, ping, jitter and speed. Field names
/// and numbers are the reference's; each is a count or a value in the unit its name gives.
#[derive(Clone, PartialEq, prost::Message)]
#[allow(missing_docs)]
pub struct LinkLifetimeStats {
    #[prost(uint32, optional, tag = "2")]
    pub connected_seconds: Option<u32>,
    #[prost(uint64, optional, tag = "3")]
    pub packets_sent: Option<u64>,
    #[prost(uint64, optional, tag = "4")]
    pub kb_sent: Option<u64>,
    #[prost(uint64, optional, tag = "5")]
    pub packets_recv: Option<u64>,
    #[prost(uint64, optional, tag = "6")]
    pub kb_recv: Option<u64>,
    #[prost(uint64, optional, tag = "7")]
    pub packets_recv_sequenced: Option<u64>,
    #[prost(uint64, optional, tag = "8")]
    pub packets_recv_dropped: Option<u64>,
    #[prost(uint64, optional, tag = "9")]
    pub packets_recv_out_of_order: Option<u64>,
    #[prost(uint64, optional, tag = "10")]
    pub packets_recv_duplicate: Option<u64>,
    #[prost(uint64, optional, tag = "11")]
    pub packets_recv_lurch: Option<u64>,
    #[prost(uint32, optional, tag = "21")]
    pub quality_histogram_100: Option<u32>,
    #[prost(uint32, optional, tag = "22")]
    pub quality_histogram_99: Option<u32>,
    #[prost(uint32, optional, tag = "23")]
    pub quality_histogram_97: Option<u32>,
    #[prost(uint32, optional, tag = "24")]
    pub quality_histogram_95: Option<u32>,
    #[prost(uint32, optional, tag = "25")]
    pub quality_histogram_90: Option<u32>,
    #[prost(uint32, optional, tag = "26")]
    pub quality_histogram_75: Option<u32>,
    #[prost(uint32, optional, tag = "27")]
    pub quality_histogram_50: Option<u32>,
    #[prost(uint32, optional, tag = "28")]
    pub quality_histogram_1: Option<u32>,
    #[prost(uint32, optional, tag = "29")]
    pub quality_histogram_dead: Option<u32>,
    #[prost(uint32, optional, tag = "30")]
    pub quality_ntile_2nd: Option<u32>,
    #[prost(uint32, optional, tag = "31")]
    pub quality_ntile_5th: Option<u32>,
    #[prost(uint32, optional, tag = "32")]
    pub quality_ntile_25th: Option<u32>,
    #[prost(uint32, optional, tag = "33")]
    pub quality_ntile_50th: Option<u32>,
    #[prost(uint32, optional, tag = "41")]
    pub ping_histogram_25: Option<u32>,
    #[prost(uint32, optional, tag = "42")]
    pub ping_histogram_50: Option<u32>,
    #[prost(uint32, optional, tag = "43")]
    pub ping_histogram_75: Option<u32>,
    #[prost(uint32, optional, tag = "44")]
    pub ping_histogram_100: Option<u32>,
    #[prost(uint32, optional, tag = "45")]
    pub ping_histogram_125: Option<u32>,
    #[prost(uint32, optional, tag = "46")]
    pub ping_histogram_150: Option<u32>,
    #[prost(uint32, optional, tag = "47")]
    pub ping_histogram_200: Option<u32>,
    #[prost(uint32, optional, tag = "48")]
    pub ping_histogram_300: Option<u32>,
    #[prost(uint32, optional, tag = "49")]
    pub ping_histogram_max: Option<u32>,
    #[prost(uint32, optional, tag = "50")]
    pub ping_ntile_5th: Option<u32>,
    #[prost(uint32, optional, tag = "51")]
    pub ping_ntile_50th: Option<u32>,
    #[prost(uint32, optional, tag = "52")]
    pub ping_ntile_75th: Option<u32>,
    #[prost(uint32, optional, tag = "53")]
    pub ping_ntile_95th: Option<u32>,
    #[prost(uint32, optional, tag = "54")]
    pub ping_ntile_98th: Option<u32>,
    #[prost(uint32, optional, tag = "61")]
    pub jitter_histogram_negligible: Option<u32>,
    #[prost(uint32, optional, tag = "62")]
    pub jitter_histogram_1: Option<u32>,
    #[prost(uint32, optional, tag = "63")]
    pub jitter_histogram_2: Option<u32>,
    #[prost(uint32, optional, tag = "64")]
    pub jitter_histogram_5: Option<u32>,
    #[prost(uint32, optional, tag = "65")]
    pub jitter_histogram_10: Option<u32>,
    #[prost(uint32, optional, tag = "66")]
    pub jitter_histogram_20: Option<u32>,
    #[prost(uint32, optional, tag = "67")]
    pub txspeed_max: Option<u32>,
    #[prost(uint32, optional, tag = "68")]
    pub txspeed_histogram_16: Option<u32>,
    #[prost(uint32, optional, tag = "69")]
    pub txspeed_histogram_32: Option<u32>,
    #[prost(uint32, optional, tag = "70")]
    pub txspeed_histogram_64: Option<u32>,
    #[prost(uint32, optional, tag = "71")]
    pub txspeed_histogram_128: Option<u32>,
    #[prost(uint32, optional, tag = "72")]
    pub txspeed_histogram_256: Option<u32>,
    #[prost(uint32, optional, tag = "73")]
    pub txspeed_histogram_512: Option<u32>,
    #[prost(uint32, optional, tag = "74")]
    pub txspeed_histogram_1024: Option<u32>,
    #[prost(uint32, optional, tag = "75")]
    pub txspeed_histogram_max: Option<u32>,
    #[prost(uint32, optional, tag = "76")]
    pub txspeed_ntile_5th: Option<u32>,
    #[prost(uint32, optional, tag = "77")]
    pub txspeed_ntile_50th: Option<u32>,
    #[prost(uint32, optional, tag = "78")]
    pub txspeed_ntile_75th: Option<u32>,
    #[prost(uint32, optional, tag = "79")]
    pub txspeed_ntile_95th: Option<u32>,
    #[prost(uint32, optional, tag = "80")]
    pub txspeed_ntile_98th: Option<u32>,
    #[prost(uint32, optional, tag = "81")]
    pub rxspeed_max: Option<u32>,
    #[prost(uint32, optional, tag = "82")]
    pub rxspeed_histogram_16: Option<u32>,
    #[prost(uint32, optional, tag = "83")]
    pub rxspeed_histogram_32: Option<u32>,
    #[prost(uint32, optional, tag = "84")]
    pub rxspeed_histogram_64: Option<u32>,
    #[prost(uint32, optional, tag = "85")]
    pub rxspeed_histogram_128: Option<u32>,
    #[prost(uint32, optional, tag = "86")]
    pub rxspeed_histogram_256: Option<u32>,
    #[prost(uint32, optional, tag = "87")]
    pub rxspeed_histogram_512: Option<u32>,
    #[prost(uint32, optional, tag = "88")]
    pub rxspeed_histogram_1024: Option<u32>,
    #[prost(uint32, optional, tag = "89")]
    pub rxspeed_histogram_max: Option<u32>,
    #[prost(uint32, optional, tag = "90")]
    pub rxspeed_ntile_5th: Option<u32>,
    #[prost(uint32, optional, tag = "91")]
    pub rxspeed_ntile_50th: Option<u32>,
    #[prost(uint32, optional, tag = "92")]
    pub rxspeed_ntile_75th: Option<u32>,
    #[prost(uint32, optional, tag = "93")]
    pub rxspeed_ntile_95th: Option<u32>,
    #[prost(uint32, optional, tag = "94")]
    pub rxspeed_ntile_98th: Option<u32>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn hand_written_flags_only_blob() {
        // Field 3 (flags), wire type 0 (varint): key byte 0x18, value 2 = ACK_REQUEST_E2E.
        let blob = [0x18, 0x02];
        let stats = UdpStats::decode(&blob[..]).expect("parses");
        assert_eq!(stats.flags, Some(STATS_ACK_REQUEST_E2E));
        assert_eq!(stats.stats, None);
        assert_eq!(stats.encode_to_vec(), blob);
    }

    #[test]
    fn nested_round_trip() {
        let stats = UdpStats {
            stats: Some(ConnectionQuality {
                instantaneous: Some(LinkInstantaneousStats {
                    ping_ms: Some(42),
                    ..Default::default()
                }),
                lifetime: Some(LinkLifetimeStats {
                    packets_sent: Some(1 << 40),
                    rxspeed_ntile_98th: Some(7),
                    ..Default::default()
                }),
            }),
            flags: Some(STATS_ACK_REQUEST_E2E | STATS_ACK_REQUEST_IMMEDIATE),
        };
        let bytes = stats.encode_to_vec();
        assert_eq!(UdpStats::decode(&bytes[..]), Ok(stats));
    }
}
