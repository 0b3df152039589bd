//! Configuration values, with Steam's names (camelCase), defaults and validation.
//!
//! One table defines every key once: its field, default and accepted range. Validation lives
//! here rather than in TypeScript so that there is a single source of truth for the JS API,
//! the Rust API and the tests. A rejected value changes nothing.

use std::fmt;

macro_rules! config_table {
    ($( $(#[doc = $doc:literal])* $field:ident : $js:literal = $default:expr, [$min:expr, $max:expr]; )*) => {
        /// Every tunable of an endpoint and its sessions.
        #[derive(Clone, Debug, PartialEq)]
        pub struct Config {
            $( $(#[doc = $doc])* pub $field: i64, )*
        }

        impl Default for Config {
            fn default() -> Self {
                Config { $( $field: $default, )* }
            }
        }

        /// Name, accepted range and accessors of one key; `KEYS` lists them all.
        pub struct KeySpec {
            /// The camelCase name used by the JS API.
            pub name: &'static str,
            /// Smallest accepted value.
            pub min: i64,
            /// Largest accepted value.
            pub max: i64,
            /// The default (Steam's, where Steam has the key).
            pub default: i64,
            /// What it sets, with its unit (the field's doc comment).
            pub doc: &'static str,
            get: fn(&Config) -> i64,
            set: fn(&mut Config, i64),
        }

        /// All keys, in declaration order.
        pub const KEYS: &[KeySpec] = &[
            $( KeySpec {
                name: $js,
                min: $min,
                max: $max,
                default: $default,
                doc: concat!($($doc),*),
                get: |c| c.$field,
                set: |c, v| c.$field = v,
            }, )*
        ];
    };
}

const I32_MAX: i64 = i32::MAX as i64;
/// Highest send rate accepted (16 GiB/s): far above Steam's, since loopback and LANs go past 1 GB/s.
const MAX_RATE: i64 = 1 << 34;
/// Default upper bound of the send rate: high enough that congestion control, not the bound,
/// sets the rate on loopback, LANs and datacentre links.
pub const DEFAULT_RATE_MAX: i64 = 1 << 30;
/// Largest message the API accepts (Steam's `k_cbMaxSteamNetworkingSocketsMessageSizeSend`).
pub const MAX_MESSAGE_SIZE: usize = 512 * 1024;

config_table! {
    /// How long a session may take to connect before it fails with `sessionFailed` (milliseconds).
    timeout_initial: "timeoutInitial" = 10_000, [0, I32_MAX];
    /// How long a connected peer may stay silent before the session fails with `sessionFailed` (milliseconds).
    timeout_connected: "timeoutConnected" = 10_000, [0, I32_MAX];
    /// Data a session may hold queued and not yet sent; a send beyond it returns `LimitExceeded` (bytes).
    send_buffer_size: "sendBufferSize" = 524_288, [0, 0x1000_0000];
    /// Lower bound of the send rate (B/s): congestion control never paces below it. Steam's
    /// default, 256 KiB/s.
    send_rate_min: "sendRateMin" = 262_144, [1024, MAX_RATE];
    /// Upper bound of the send rate (B/s): congestion control finds the path's rate below
    /// it. 1 GiB/s by default (Steam fixes both bounds at 256 KiB/s, having no bandwidth
    /// estimation; set both to that for Steam's fixed rate).
    send_rate_max: "sendRateMax" = DEFAULT_RATE_MAX, [1024, MAX_RATE];
    /// How long a message sent without `NoNagle` may wait for others to share its packet; 0 turns Nagle off (microseconds).
    nagle_time: "nagleTime" = 5_000, [0, 20_000];
    /// Largest UDP payload sent (bytes).
    mtu_packet_size: "mtuPacketSize" = 1_300, [200, 1_500];
    /// Received, unread data one session may hold, all channels together; past it the peer's reliable data waits and `receiveBlocked` names the channel (bytes).
    recv_buffer_size: "recvBufferSize" = 1_048_576, [0, 0x1000_0000];
    /// Received, unread messages one session may hold, all channels together; past it the peer's reliable data waits and `receiveBlocked` names the channel (messages).
    recv_buffer_messages: "recvBufferMessages" = 1_000, [0, 0x1000_0000];
    /// Largest message accepted from a peer (bytes).
    recv_max_message_size: "recvMaxMessageSize" = 524_288, [1_024, 0x1000_0000];
    /// Congestion controller of new sessions: 0 = BBR (paces at the measured delivery rate, keeps router queues short, tolerates random loss), 1 = CUBIC (grows until loss).
    congestion_control: "congestionControl" = 0, [0, 1];
    /// Idle time after which a session closes silently; traffic either way counts as use; 0 never (milliseconds).
    messages_session_idle_timeout: "messagesSessionIdleTimeout" = 180_000, [0, I32_MAX];
    /// Outgoing datagrams this endpoint drops on purpose (percent).
    fake_packet_loss_send: "fakePacketLossSend" = 0, [0, 100];
    /// Incoming datagrams this endpoint drops on purpose (percent).
    fake_packet_loss_recv: "fakePacketLossRecv" = 0, [0, 100];
    /// Delay added to outgoing datagrams (milliseconds).
    fake_packet_lag_send: "fakePacketLagSend" = 0, [0, 5_000];
    /// Delay added to incoming datagrams (milliseconds).
    fake_packet_lag_recv: "fakePacketLagRecv" = 0, [0, 5_000];
    /// Outgoing datagrams held back by `fakePacketReorderTime` to arrive out of order (percent).
    fake_packet_reorder_send: "fakePacketReorderSend" = 0, [0, 100];
    /// Incoming datagrams held back by `fakePacketReorderTime` to arrive out of order (percent).
    fake_packet_reorder_recv: "fakePacketReorderRecv" = 0, [0, 100];
    /// How long a reordered datagram is held back (milliseconds).
    fake_packet_reorder_time: "fakePacketReorderTime" = 15, [0, 5_000];
    /// Outgoing datagrams sent twice (percent).
    fake_packet_dup_send: "fakePacketDupSend" = 0, [0, 100];
    /// Incoming datagrams delivered twice (percent).
    fake_packet_dup_recv: "fakePacketDupRecv" = 0, [0, 100];
    /// Longest delay of a duplicate after its original (milliseconds).
    fake_packet_dup_time_max: "fakePacketDupTimeMax" = 10, [0, 5_000];
    /// P2P: which ICE candidate types to use and share (Steam's bits: 1 relay (TURN), 2
    /// private host addresses, 4 public host and STUN reflexive addresses; 0 disables ICE).
    p2p_transport_ice_enable: "p2pTransportIceEnable" = 0x7fff_ffff, [0, I32_MAX];
    /// P2P: added to the ICE transport's route score when choosing among P2P transports (ms).
    /// ICE is the only one here (no Steam Datagram Relay), so it changes no choice today.
    p2p_transport_ice_penalty: "p2pTransportIcePenalty" = 0, [0, I32_MAX];
}

/// Why a configuration change was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// No such key.
    UnknownKey(String),
    /// The value is not an integer.
    NotInteger {
        /// The key.
        key: &'static str,
    },
    /// The value is outside the key's range.
    OutOfRange {
        /// The key.
        key: &'static str,
        /// Smallest value allowed.
        min: i64,
        /// Largest value allowed.
        max: i64,
    },
    /// The combination of values is inconsistent.
    Inconsistent(String),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::UnknownKey(k) => write!(f, "unknown config key {k:?}"),
            ConfigError::NotInteger { key } => write!(f, "config {key} must be an integer"),
            ConfigError::OutOfRange { key, min, max } => {
                write!(f, "config {key} must be between {min} and {max}")
            }
            ConfigError::Inconsistent(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Looks a key up by its JS name.
    pub fn spec(name: &str) -> Option<&'static KeySpec> {
        KEYS.iter().find(|k| k.name == name)
    }

    /// Reads a value by its JS name.
    pub fn get(&self, name: &str) -> Option<i64> {
        Config::spec(name).map(|k| (k.get)(self))
    }

    /// Applies a set of changes all-or-nothing: on any error `self` is unchanged.
    pub fn apply(&mut self, changes: &[(String, f64)]) -> Result<(), ConfigError> {
        let mut next = self.clone();
        for (name, value) in changes {
            let spec = Config::spec(name).ok_or_else(|| ConfigError::UnknownKey(name.clone()))?;
            if !value.is_finite() || value.fract() != 0.0 {
                return Err(ConfigError::NotInteger { key: spec.name });
            }
            // Every range fits well inside f64's exact integers, so this comparison is exact.
            if *value < spec.min as f64 || *value > spec.max as f64 {
                return Err(ConfigError::OutOfRange {
                    key: spec.name,
                    min: spec.min,
                    max: spec.max,
                });
            }
            (spec.set)(&mut next, *value as i64);
        }
        if next.send_rate_min > next.send_rate_max {
            return Err(ConfigError::Inconsistent(format!(
                "sendRateMin ({}) must not exceed sendRateMax ({})",
                next.send_rate_min, next.send_rate_max
            )));
        }
        *self = next;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_steams() {
        let c = Config::default();
        // The one deliberate difference: the upper send rate bound leaves room for
        // congestion control (Steam fixes both bounds at 256 KiB/s).
        assert_eq!(c.get("sendRateMin"), Some(262_144));
        assert_eq!(c.get("sendRateMax"), Some(1 << 30));
        assert_eq!(c.get("timeoutInitial"), Some(10_000));
        assert_eq!(c.get("sendBufferSize"), Some(524_288));
        assert_eq!(c.get("nagleTime"), Some(5_000));
        assert_eq!(c.get("mtuPacketSize"), Some(1_300));
        assert_eq!(c.get("recvBufferMessages"), Some(1_000));
        assert_eq!(c.get("messagesSessionIdleTimeout"), Some(180_000));
        assert_eq!(c.get("fakePacketReorderTime"), Some(15));
        assert_eq!(c.get("fakePacketDupTimeMax"), Some(10));
        assert_eq!(KEYS.len(), 24);
        assert_eq!(c.get("congestionControl"), Some(0));
    }

    #[test]
    fn apply_is_all_or_nothing() {
        let mut c = Config::default();
        let err = c
            .apply(&[
                ("nagleTime".into(), 0.0),
                ("fakePacketLossSend".into(), 101.0),
            ])
            .unwrap_err();
        assert!(matches!(
            err,
            ConfigError::OutOfRange {
                key: "fakePacketLossSend",
                ..
            }
        ));
        assert_eq!(c, Config::default());
        assert!(matches!(
            c.apply(&[("noSuchKey".into(), 1.0)]),
            Err(ConfigError::UnknownKey(_))
        ));
        assert!(matches!(
            c.apply(&[("nagleTime".into(), 1.5)]),
            Err(ConfigError::NotInteger { .. })
        ));
        assert!(matches!(
            c.apply(&[("nagleTime".into(), f64::NAN)]),
            Err(ConfigError::NotInteger { .. })
        ));
        assert!(matches!(
            c.apply(&[("sendRateMin".into(), (DEFAULT_RATE_MAX + 1) as f64)]),
            Err(ConfigError::Inconsistent(_))
        ));
        c.apply(&[
            ("nagleTime".into(), 0.0),
            ("sendRateMax".into(), 1_000_000.0),
        ])
        .unwrap();
        assert_eq!(c.nagle_time, 0);
        assert_eq!(c.send_rate_max, 1_000_000);
    }
}
