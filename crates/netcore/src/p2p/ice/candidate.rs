//! ICE candidates (RFC 8445 section 5.1): kinds, priorities, foundations, the RFC 5245
//! `candidate-attribute` text that rendezvous messages carry, and Steam's candidate type bits
//! (`P2P_Transport_ICE_Enable`).

use std::fmt;
use std::net::{IpAddr, SocketAddr};

/// Where a candidate's address comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CandidateKind {
    /// A local interface address.
    Host,
    /// Our address as a STUN (or TURN) server saw it.
    ServerReflexive,
    /// Our address as the peer saw it in a check.
    PeerReflexive,
    /// An address on a TURN server that relays to us.
    Relayed,
}

impl CandidateKind {
    /// RFC 8445 5.1.2.2's recommended type preference (GNS uses the same values).
    pub const fn type_preference(self) -> u32 {
        match self {
            CandidateKind::Host => 126,
            CandidateKind::PeerReflexive => 110,
            CandidateKind::ServerReflexive => 100,
            CandidateKind::Relayed => 0,
        }
    }

    /// The `typ` token.
    pub const fn as_str(self) -> &'static str {
        match self {
            CandidateKind::Host => "host",
            CandidateKind::ServerReflexive => "srflx",
            CandidateKind::PeerReflexive => "prflx",
            CandidateKind::Relayed => "relay",
        }
    }
}

/// RFC 8445 5.1.2.1: `2^24 * type preference + 2^8 * local preference + (256 - component)`.
/// Component 1 (we carry one), so the last term is 255 as in GNS.
pub const fn priority(kind: CandidateKind, local_preference: u16) -> u32 {
    (kind.type_preference() << 24) | ((local_preference as u32) << 8) | 255
}

/// One candidate, ours or the peer's.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Candidate {
    /// Same for candidates of one kind from one base via one server (1..=32 ice-chars).
    pub foundation: String,
    /// Component id (always 1 here; GNS writes 0 and ignores it).
    pub component: u16,
    /// Priority.
    pub priority: u32,
    /// Transport address.
    pub address: SocketAddr,
    /// Kind.
    pub kind: CandidateKind,
    /// `raddr`/`rport`: the base of a reflexive or relayed candidate, if told.
    pub related: Option<SocketAddr>,
}

/// Longest candidate line we parse (GNS bounds them too; real ones are under 200 bytes).
pub const MAX_CANDIDATE_LEN: usize = 512;

/// Why a candidate line was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CandidateError {
    /// Over [`MAX_CANDIDATE_LEN`].
    #[error("candidate line too long")]
    TooLong,
    /// Not `candidate:` followed by the fixed fields.
    #[error("malformed candidate line: {0}")]
    Malformed(&'static str),
    /// A transport other than UDP.
    #[error("candidate transport is not UDP")]
    NotUdp,
    /// An unknown `typ`.
    #[error("unknown candidate type")]
    UnknownType,
}

impl Candidate {
    /// A candidate of `kind` at `address` with `local_preference`, its foundation derived from
    /// the kind, base IP and server (RFC 8445 5.1.1.3).
    pub fn new(
        kind: CandidateKind,
        address: SocketAddr,
        base: IpAddr,
        server: Option<IpAddr>,
        local_preference: u16,
    ) -> Candidate {
        Candidate {
            foundation: foundation(kind, base, server),
            component: 1,
            priority: priority(kind, local_preference),
            address,
            kind,
            related: (kind != CandidateKind::Host).then_some(SocketAddr::new(base, 0)),
        }
    }

    /// Parses an RFC 5245 `candidate-attribute` (with or without a leading `a=`), as GNS's
    /// parser does: the fixed fields, then ignored `name value` extensions except
    /// `raddr`/`rport`.
    pub fn parse(line: &str) -> Result<Candidate, CandidateError> {
        if line.len() > MAX_CANDIDATE_LEN {
            return Err(CandidateError::TooLong);
        }
        let line = line.trim();
        let line = line.strip_prefix("a=").unwrap_or(line);
        let rest = line
            .strip_prefix("candidate:")
            .ok_or(CandidateError::Malformed("no candidate: prefix"))?;
        let mut f = rest.split_ascii_whitespace();
        let mut next = |what| f.next().ok_or(CandidateError::Malformed(what));
        let foundation = next("foundation")?;
        if foundation.len() > 32 {
            return Err(CandidateError::Malformed("foundation over 32 characters"));
        }
        let component: u16 = next("component")?
            .parse()
            .map_err(|_| CandidateError::Malformed("component"))?;
        if !next("transport")?.eq_ignore_ascii_case("udp") {
            return Err(CandidateError::NotUdp);
        }
        let priority: u32 = next("priority")?
            .parse()
            .map_err(|_| CandidateError::Malformed("priority"))?;
        let ip: IpAddr = next("address")?
            .parse()
            .map_err(|_| CandidateError::Malformed("address (names are not resolved)"))?;
        let port: u16 = next("port")?
            .parse()
            .map_err(|_| CandidateError::Malformed("port"))?;
        if next("typ")? != "typ" {
            return Err(CandidateError::Malformed("typ"));
        }
        let kind = match next("type")? {
            "host" => CandidateKind::Host,
            "srflx" => CandidateKind::ServerReflexive,
            "prflx" => CandidateKind::PeerReflexive,
            "relay" => CandidateKind::Relayed,
            _ => return Err(CandidateError::UnknownType),
        };
        let (mut raddr, mut rport) = (None, None);
        let mut count = 0;
        while let Some(name) = f.next() {
            count += 1;
            if count > 16 {
                return Err(CandidateError::Malformed("too many extensions"));
            }
            let value = f
                .next()
                .ok_or(CandidateError::Malformed("extension without a value"))?;
            match name {
                "raddr" => raddr = value.parse::<IpAddr>().ok(),
                "rport" => rport = value.parse::<u16>().ok(),
                _ => {}
            }
        }
        Ok(Candidate {
            foundation: foundation.to_owned(),
            component,
            priority,
            address: crate::identity::normalize(SocketAddr::new(ip, port)),
            kind,
            related: raddr.map(|ip| SocketAddr::new(ip, rport.unwrap_or(0))),
        })
    }
}

impl fmt::Display for Candidate {
    /// The `candidate-attribute` text (without `a=`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "candidate:{} {} udp {} {} {} typ {}",
            self.foundation,
            self.component,
            self.priority,
            self.address.ip(),
            self.address.port(),
            self.kind.as_str()
        )?;
        if let Some(r) = self.related {
            write!(f, " raddr {} rport {}", r.ip(), r.port())?;
        }
        Ok(())
    }
}

/// A foundation: a stable hash (FNV-1a) of kind, base IP and server IP, in decimal.
fn foundation(kind: CandidateKind, base: IpAddr, server: Option<IpAddr>) -> String {
    let mut h: u32 = 0x811c_9dc5;
    let mut eat = |b: &[u8]| {
        for &x in b {
            h ^= u32::from(x);
            h = h.wrapping_mul(0x0100_0193);
        }
    };
    eat(kind.as_str().as_bytes());
    eat(&ip_bytes(base));
    if let Some(s) = server {
        eat(&ip_bytes(s));
    }
    h.to_string()
}

fn ip_bytes(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(v) => v.to_ipv6_mapped().octets(),
        IpAddr::V6(v) => v.octets(),
    }
}

/// Whether an address is in private, link-local or shared (CGNAT) space: reachable only
/// inside its own network.
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v) => {
            let o = v.octets();
            v.is_private() || v.is_link_local() || (o[0] == 100 && (o[1] & 0xC0) == 64)
        }
        IpAddr::V6(v) => {
            let s = v.segments()[0];
            (s & 0xfe00) == 0xfc00 || (s & 0xffc0) == 0xfe80
        }
    }
}

/// Steam's `EICECandidateType` bit for a candidate (GNS's `CalcICECandidateType`); 0 for an
/// unusable address (loopback, unspecified).
pub fn type_bit(kind: CandidateKind, addr: SocketAddr) -> u32 {
    let ip = addr.ip();
    if ip.is_loopback() || ip.is_unspecified() {
        return 0;
    }
    let v6 = ip.is_ipv6();
    match kind {
        // GNS counts every IPv6 host address as public.
        CandidateKind::Host if v6 => 0x400,
        CandidateKind::Host if is_private(ip) => 0x02,
        CandidateKind::Host => 0x04,
        CandidateKind::ServerReflexive | CandidateKind::PeerReflexive => {
            if v6 {
                0x800
            } else {
                0x08
            }
        }
        CandidateKind::Relayed => {
            if v6 {
                0x100
            } else {
                0x01
            }
        }
    }
}

/// Steam's `k_nSteamNetworkingConfig_P2P_Transport_ICE_Enable_Relay`.
pub const ICE_ENABLE_RELAY: i32 = 1;
/// `..._Private`: host addresses in private space.
pub const ICE_ENABLE_PRIVATE: i32 = 2;
/// `..._Public`: public host addresses and STUN reflexive ones.
pub const ICE_ENABLE_PUBLIC: i32 = 4;
/// `..._All`.
pub const ICE_ENABLE_ALL: i32 = 0x7fff_ffff;

/// The candidate type bits `P2P_Transport_ICE_Enable` permits (GNS's `CheckInitICE`).
pub fn allowed_types(ice_enable: i32) -> u32 {
    let mut t = 0;
    if ice_enable <= 0 {
        return 0;
    }
    if ice_enable & ICE_ENABLE_PRIVATE != 0 {
        t |= 0x02 | 0x200;
    }
    if ice_enable & ICE_ENABLE_PUBLIC != 0 {
        t |= 0x04 | 0x400 | 0x08 | 0x800;
    }
    if ice_enable & ICE_ENABLE_RELAY != 0 {
        t |= 0x01 | 0x100;
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priorities_order_kinds() {
        let p = |k| priority(k, 65535);
        assert_eq!(p(CandidateKind::Host), 2_130_706_431);
        assert!(p(CandidateKind::Host) > p(CandidateKind::PeerReflexive));
        assert!(p(CandidateKind::PeerReflexive) > p(CandidateKind::ServerReflexive));
        assert!(p(CandidateKind::ServerReflexive) > p(CandidateKind::Relayed));
    }

    #[test]
    fn text_round_trip() {
        let c = Candidate::new(
            CandidateKind::ServerReflexive,
            "198.51.100.7:40000".parse().unwrap(),
            "192.168.1.2".parse().unwrap(),
            Some("203.0.113.1".parse().unwrap()),
            65535,
        );
        let s = c.to_string();
        assert!(s.starts_with("candidate:"));
        assert!(s.contains(" typ srflx raddr 192.168.1.2 rport 0"));
        assert_eq!(Candidate::parse(&s).unwrap(), c);
        let v6 = Candidate::new(
            CandidateKind::Host,
            "[2001:db8::5]:7".parse().unwrap(),
            "2001:db8::5".parse().unwrap(),
            None,
            1,
        );
        assert_eq!(Candidate::parse(&v6.to_string()).unwrap(), v6);
    }

    #[test]
    fn parses_gns_and_browser_lines() {
        // GNS: component 0, no related address.
        let c =
            Candidate::parse("candidate:3142 0 udp 2130706431 192.168.1.2 50000 typ host").unwrap();
        assert_eq!(c.kind, CandidateKind::Host);
        assert_eq!(c.address, "192.168.1.2:50000".parse().unwrap());
        // WebRTC: extensions after the type.
        let c = Candidate::parse(
            "a=candidate:2442523459 1 UDP 2122262784 2602:801:f001::3 63368 typ host generation 0 ufrag WLM82 network-id 2",
        )
        .unwrap();
        assert_eq!(c.address.port(), 63368);
        assert_eq!(
            Candidate::parse("candidate:1 1 tcp 1 1.2.3.4 5 typ host"),
            Err(CandidateError::NotUdp)
        );
        assert_eq!(
            Candidate::parse("candidate:1 1 udp 1 1.2.3.4 5 typ weird"),
            Err(CandidateError::UnknownType)
        );
        assert!(Candidate::parse("candidate:1 1 udp 1 example.com 5 typ host").is_err());
        assert!(Candidate::parse("candidate:1 1 udp 1 1.2.3.4 5 typ host raddr").is_err());
        assert!(Candidate::parse("candidate:1 1 udp").is_err());
        assert_eq!(
            Candidate::parse(&"x".repeat(600)),
            Err(CandidateError::TooLong)
        );
    }

    #[test]
    fn foundations_group_by_kind_base_and_server() {
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let s: IpAddr = "203.0.113.1".parse().unwrap();
        let a1 = "1.1.1.1:1".parse().unwrap();
        let a2 = "1.1.1.1:2".parse().unwrap();
        let f = |k, a, srv| Candidate::new(k, a, b, srv, 1).foundation;
        assert_eq!(
            f(CandidateKind::ServerReflexive, a1, Some(s)),
            f(CandidateKind::ServerReflexive, a2, Some(s))
        );
        assert_ne!(
            f(CandidateKind::ServerReflexive, a1, Some(s)),
            f(CandidateKind::Relayed, a1, Some(s))
        );
    }

    #[test]
    fn steam_type_bits() {
        let a = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert_eq!(type_bit(CandidateKind::Host, a("192.168.1.2:1")), 0x02);
        assert_eq!(type_bit(CandidateKind::Host, a("203.0.113.5:1")), 0x04);
        assert_eq!(type_bit(CandidateKind::Host, a("[2001:db8::1]:1")), 0x400);
        assert_eq!(
            type_bit(CandidateKind::ServerReflexive, a("203.0.113.5:1")),
            0x08
        );
        assert_eq!(type_bit(CandidateKind::Relayed, a("203.0.113.5:1")), 0x01);
        assert_eq!(type_bit(CandidateKind::Host, a("127.0.0.1:1")), 0);
        assert_eq!(allowed_types(ICE_ENABLE_ALL), 0xf0f);
        assert_eq!(allowed_types(ICE_ENABLE_RELAY), 0x101);
        assert_eq!(allowed_types(0), 0);
        assert!(is_private("100.64.0.1".parse().unwrap()));
        assert!(is_private("fd00::1".parse().unwrap()));
        assert!(!is_private("8.8.8.8".parse().unwrap()));
    }
}
