//! Structure-aware control messages: typed messages of all six kinds (with certificates,
//! crypt info and legacy identities), encoded and decoded back; a message the encoder takes
//! must read back equal, one it refuses must be refused for a reason its size shows.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use netcore::wire::control::{
    CertificateSigned, ChallengeReply, ChallengeRequest, ConnectOk, ConnectRequest,
    ConnectionClosed, ControlMessage, IdentityLegacyBinary, NoConnection, SessionCryptInfoSigned,
};
use netcore::wire::fuzz_checks::control_structured;

#[derive(Arbitrary, Debug)]
struct Cert {
    cert: Option<Vec<u8>>,
    ca_key_id: Option<u64>,
    ca_signature: Option<Vec<u8>>,
}

#[derive(Arbitrary, Debug)]
struct Crypt {
    info: Option<Vec<u8>>,
    signature: Option<Vec<u8>>,
}

#[derive(Arbitrary, Debug)]
struct Legacy {
    steam_id: Option<u64>,
    generic_bytes: Option<Vec<u8>>,
    generic_string: Option<String>,
    ipv6_and_port: Option<Vec<u8>>,
}

#[derive(Arbitrary, Debug)]
enum Msg {
    ChallengeRequest(Option<u32>, Option<u64>, Option<u32>),
    ChallengeReply(Option<u32>, Option<u64>, Option<u64>, Option<u32>),
    ConnectRequest {
        client_connection_id: Option<u32>,
        challenge: Option<u64>,
        my_timestamp: Option<u64>,
        ping_est_ms: Option<u32>,
        crypt: Option<Crypt>,
        cert: Option<Cert>,
        legacy_protocol_version: Option<u32>,
        identity_string: Option<String>,
        legacy_client_steam_id: Option<u64>,
        legacy: Option<Legacy>,
    },
    ConnectOk {
        client_connection_id: Option<u32>,
        server_connection_id: Option<u32>,
        your_timestamp: Option<u64>,
        delay_time_usec: Option<u32>,
        crypt: Option<Crypt>,
        cert: Option<Cert>,
        identity_string: Option<String>,
        legacy_server_steam_id: Option<u64>,
        legacy: Option<Legacy>,
    },
    ConnectionClosed(Option<u32>, Option<u32>, Option<String>, Option<u32>),
    NoConnection(Option<u32>, Option<u32>),
}

fn cert(c: Cert) -> CertificateSigned {
    CertificateSigned {
        cert: c.cert,
        ca_key_id: c.ca_key_id,
        ca_signature: c.ca_signature,
        private_key_data: None,
    }
}

fn crypt(c: Crypt) -> SessionCryptInfoSigned {
    SessionCryptInfoSigned {
        info: c.info,
        signature: c.signature,
    }
}

fn legacy(l: Legacy) -> IdentityLegacyBinary {
    IdentityLegacyBinary {
        steam_id: l.steam_id,
        generic_bytes: l.generic_bytes,
        generic_string: l.generic_string,
        ipv6_and_port: l.ipv6_and_port,
    }
}

fuzz_target!(|m: Msg| {
    let msg = match m {
        Msg::ChallengeRequest(connection_id, my_timestamp, protocol_version) => {
            ControlMessage::ChallengeRequest(ChallengeRequest {
                connection_id,
                my_timestamp,
                protocol_version,
            })
        }
        Msg::ChallengeReply(connection_id, challenge, your_timestamp, protocol_version) => {
            ControlMessage::ChallengeReply(ChallengeReply {
                connection_id,
                challenge,
                your_timestamp,
                protocol_version,
            })
        }
        Msg::ConnectRequest {
            client_connection_id,
            challenge,
            my_timestamp,
            ping_est_ms,
            crypt: c,
            cert: ce,
            legacy_protocol_version,
            identity_string,
            legacy_client_steam_id,
            legacy: l,
        } => ControlMessage::ConnectRequest(ConnectRequest {
            client_connection_id,
            challenge,
            my_timestamp,
            ping_est_ms,
            crypt: c.map(crypt),
            cert: ce.map(cert),
            legacy_protocol_version,
            identity_string,
            legacy_client_steam_id,
            legacy_identity_binary: l.map(legacy),
        }),
        Msg::ConnectOk {
            client_connection_id,
            server_connection_id,
            your_timestamp,
            delay_time_usec,
            crypt: c,
            cert: ce,
            identity_string,
            legacy_server_steam_id,
            legacy: l,
        } => ControlMessage::ConnectOk(ConnectOk {
            client_connection_id,
            server_connection_id,
            your_timestamp,
            delay_time_usec,
            crypt: c.map(crypt),
            cert: ce.map(cert),
            identity_string,
            legacy_server_steam_id,
            legacy_identity_binary: l.map(legacy),
        }),
        Msg::ConnectionClosed(to_connection_id, from_connection_id, debug, reason_code) => {
            ControlMessage::ConnectionClosed(ConnectionClosed {
                to_connection_id,
                from_connection_id,
                debug,
                reason_code,
            })
        }
        Msg::NoConnection(from_connection_id, to_connection_id) => {
            ControlMessage::NoConnection(NoConnection {
                from_connection_id,
                to_connection_id,
            })
        }
    };
    control_structured(&msg);
});
