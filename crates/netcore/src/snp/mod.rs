//! SNP, the message transport inside a connection (named after the reference
//! implementation's "Steam Networking Protocol" layer): packet numbers and the replay
//! window, ack tracking, RTT, loss detection and its reordering tolerance, reliable streams per lane, unreliable
//! reassembly, congestion control and pacing. Each mechanism lives in its own module;
//! the connection composes them.

pub mod ack_ranges;
pub mod ack_request;
pub mod congestion;
pub mod pacing;
pub mod packet_number;
pub mod recv_stream;
pub mod reorder;
pub mod rtt;
pub mod send_stream;
pub mod sent_packets;
pub mod unreliable_reassembly;
