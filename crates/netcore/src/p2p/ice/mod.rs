//! ICE (RFC 8445) for one session, with candidates gathered once per endpoint.
//!
//! - [`candidate`]: kinds, priorities, foundations, the `candidate:` text GNS signals, and
//!   Steam's candidate type bits (`P2P_Transport_ICE_Enable`).
//! - [`pair`]: pair priority, checklist states, same-subnet test.
//! - [`agent`]: the per-session agent: checks, roles, nomination, consent, failure reasons.
//! - [`gather`]: the endpoint's candidates: host, server-reflexive (STUN), relayed (TURN).
//!
//! Gathering is per endpoint, not per agent (one socket and one TURN allocation serve every
//! session): host candidates come from the driver's interface list, server-reflexive ones
//! from [`crate::p2p::stun::binding::BindingClient`] (or a TURN allocation's mapped address),
//! relayed ones from [`crate::p2p::turn::TurnClient`]; the endpoint hands the same set to each
//! agent with [`agent::IceAgent::add_local_candidate`]. [`gather::Gatherer`] runs that.

pub mod agent;
pub mod candidate;
pub mod gather;
pub mod pair;

pub use agent::{
    username_local_ufrag, IceAgent, IceConfig, IceError, IceEvent, IceFailure, IceTransmit, Role,
    RouteKind, SelectedPath, Via,
};
pub use candidate::{Candidate, CandidateError, CandidateKind};
pub use gather::{GatherConfig, GatherEvent, GatherInput, Gatherer, Interface, LocalCandidate};
