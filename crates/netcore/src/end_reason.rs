//! Why a connection ended: Steam's `ESteamNetConnectionEnd`, one enum for every layer.
//!
//! Steam's codes are ranges: an application picks its own code in 1000..=1999 (normal) or
//! 2000..=2999 (exceptional), the library uses 3000.. (local problem), 4000.. (the remote end's
//! fault) and 5000.. (neither, or unknown). A peer may send any code, so [`EndReason`] keeps
//! the ones it has no name for as [`EndReason::Other`], unchanged on the wire.

use std::fmt;

/// Why a connection ended (Steam's `ESteamNetConnectionEnd`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EndReason {
    /// `k_ESteamNetConnectionEnd_Invalid` (0): no reason (a live connection).
    Invalid,
    /// An application's code in 1000..=1999 (`k_ESteamNetConnectionEnd_App_*`): a normal end.
    App(i32),
    /// An application's code in 2000..=2999 (`k_ESteamNetConnectionEnd_AppException_*`).
    AppException(i32),
    /// 3004: a local network configuration problem (P2P: STUN/TURN servers unusable).
    LocalNetworkConfig,
    /// 3006: P2P: ICE found no public address for us.
    LocalP2PIceNoPublicAddresses,
    /// 4001: the remote end timed out.
    RemoteTimeout,
    /// 4002: the remote end's crypto was bad (key exchange, signature).
    RemoteBadCrypt,
    /// 4003: the remote end's certificate was missing, untrusted or did not prove its identity.
    RemoteBadCert,
    /// 4006: the remote end speaks a protocol version we do not.
    RemoteBadProtocolVersion,
    /// 4007: P2P: ICE found no public address for the remote end.
    RemoteP2PIceNoPublicAddresses,
    /// 5001: a generic problem.
    MiscGeneric,
    /// 5002: an internal error, or a peer that broke the protocol.
    MiscInternalError,
    /// 5003: the connection timed out (no reply for `timeoutConnected`, or not established
    /// within `timeoutInitial`).
    MiscTimeout,
    /// 5008: P2P: the rendezvous (signaling) failed.
    MiscP2PRendezvous,
    /// 5009: P2P: no route through the NATs or firewalls.
    MiscP2PNatFirewall,
    /// 5010: the peer said it has no such connection (it restarted or forgot us).
    MiscPeerSentNoConnection,
    /// Any other code, as received.
    Other(i32),
}

impl EndReason {
    /// Steam's numeric value.
    pub fn code(self) -> i32 {
        match self {
            EndReason::Invalid => 0,
            EndReason::App(c) | EndReason::AppException(c) | EndReason::Other(c) => c,
            EndReason::LocalNetworkConfig => 3004,
            EndReason::LocalP2PIceNoPublicAddresses => 3006,
            EndReason::RemoteTimeout => 4001,
            EndReason::RemoteBadCrypt => 4002,
            EndReason::RemoteBadCert => 4003,
            EndReason::RemoteBadProtocolVersion => 4006,
            EndReason::RemoteP2PIceNoPublicAddresses => 4007,
            EndReason::MiscGeneric => 5001,
            EndReason::MiscInternalError => 5002,
            EndReason::MiscTimeout => 5003,
            EndReason::MiscP2PRendezvous => 5008,
            EndReason::MiscP2PNatFirewall => 5009,
            EndReason::MiscPeerSentNoConnection => 5010,
        }
    }

    /// The reason for a numeric value (from the wire or the application).
    pub fn from_code(code: i32) -> Self {
        match code {
            0 => EndReason::Invalid,
            1000..=1999 => EndReason::App(code),
            2000..=2999 => EndReason::AppException(code),
            3004 => EndReason::LocalNetworkConfig,
            3006 => EndReason::LocalP2PIceNoPublicAddresses,
            4001 => EndReason::RemoteTimeout,
            4002 => EndReason::RemoteBadCrypt,
            4003 => EndReason::RemoteBadCert,
            4006 => EndReason::RemoteBadProtocolVersion,
            4007 => EndReason::RemoteP2PIceNoPublicAddresses,
            5001 => EndReason::MiscGeneric,
            5002 => EndReason::MiscInternalError,
            5003 => EndReason::MiscTimeout,
            5008 => EndReason::MiscP2PRendezvous,
            5009 => EndReason::MiscP2PNatFirewall,
            5010 => EndReason::MiscPeerSentNoConnection,
            other => EndReason::Other(other),
        }
    }

    /// The reason for a code received on the wire (an unsigned protobuf field).
    pub fn from_wire(code: u32) -> Self {
        Self::from_code(i32::try_from(code).unwrap_or(i32::MAX))
    }

    /// Whether an application may close a connection with this code (Steam accepts only its
    /// two application ranges from `CloseConnection`).
    pub fn is_application(code: i32) -> bool {
        (1000..=2999).contains(&code)
    }

    /// Every named reason with its Steam name (for docs and the generated TS enum).
    pub const NAMED: &'static [(&'static str, i32)] = &[
        ("Invalid", 0),
        ("App_Min", 1000),
        ("App_Generic", 1000),
        ("App_Max", 1999),
        ("AppException_Min", 2000),
        ("AppException_Generic", 2000),
        ("AppException_Max", 2999),
        ("Local_Min", 3000),
        ("Local_OfflineMode", 3001),
        ("Local_ManyRelayConnectivity", 3002),
        ("Local_HostedServerPrimaryRelay", 3003),
        ("Local_NetworkConfig", 3004),
        ("Local_Rights", 3005),
        ("Local_P2P_ICE_NoPublicAddresses", 3006),
        ("Local_Max", 3999),
        ("Remote_Min", 4000),
        ("Remote_Timeout", 4001),
        ("Remote_BadCrypt", 4002),
        ("Remote_BadCert", 4003),
        ("Remote_BadProtocolVersion", 4006),
        ("Remote_P2P_ICE_NoPublicAddresses", 4007),
        ("Remote_Max", 4999),
        ("Misc_Min", 5000),
        ("Misc_Generic", 5001),
        ("Misc_InternalError", 5002),
        ("Misc_Timeout", 5003),
        ("Misc_SteamConnectivity", 5005),
        ("Misc_NoRelaySessionsToClient", 5006),
        ("Misc_P2P_Rendezvous", 5008),
        ("Misc_P2P_NAT_Firewall", 5009),
        ("Misc_PeerSentNoConnection", 5010),
        ("Misc_Max", 5999),
    ];
}

impl fmt::Display for EndReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.code())
    }
}

impl EndReason {
    /// Steam's name for this code (`Remote_BadCert`), if it has one; the `_Min` / `_Max`
    /// range bounds are not names, except where a generic value shares the number.
    pub fn name(self) -> Option<&'static str> {
        let code = self.code();
        Self::NAMED
            .iter()
            .find(|(n, c)| *c == code && !n.ends_with("_Min") && !n.ends_with("_Max"))
            .map(|(n, _)| *n)
    }
}

impl fmt::Display for End {
    /// `4003 Remote_BadCert: <detail>`, for logs and status text.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.reason.code())?;
        if let Some(name) = self.reason.name() {
            write!(f, " {name}")?;
        }
        if !self.debug.is_empty() {
            write!(f, ": {}", self.debug)?;
        }
        Ok(())
    }
}

/// How a connection ended: the reason and a human-readable detail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct End {
    /// The reason code.
    pub reason: EndReason,
    /// Detail for logs and for the peer (`ConnectionInfo.endDebug`).
    pub debug: String,
}

impl End {
    /// An end with this reason and detail.
    pub fn new(reason: EndReason, debug: impl Into<String>) -> Self {
        End {
            reason,
            debug: debug.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip() {
        for code in (-5..6000).chain([i32::MIN, i32::MAX]) {
            assert_eq!(EndReason::from_code(code).code(), code, "{code}");
        }
        for &(name, code) in EndReason::NAMED {
            let r = EndReason::from_code(code);
            assert_eq!(r.code(), code, "{name}");
        }
        assert_eq!(EndReason::from_wire(u32::MAX), EndReason::Other(i32::MAX));
        assert!(EndReason::is_application(1000) && EndReason::is_application(2999));
        assert!(!EndReason::is_application(999) && !EndReason::is_application(3000));
    }

    #[test]
    fn names_and_display() {
        assert_eq!(EndReason::RemoteBadCert.name(), Some("Remote_BadCert"));
        assert_eq!(EndReason::App(1000).name(), Some("App_Generic"));
        assert_eq!(EndReason::App(1001).name(), None);
        assert_eq!(
            End::new(EndReason::RemoteTimeout, "no reply").to_string(),
            "4001 Remote_Timeout: no reply"
        );
        assert_eq!(End::new(EndReason::App(1234), "").to_string(), "1234");
    }
}
