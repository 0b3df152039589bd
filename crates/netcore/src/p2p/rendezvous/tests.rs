use super::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn sample() -> Rendezvous {
    Rendezvous {
        from_identity: Some("str:alice".into()),
        from_connection_id: Some(0x1234_5678),
        to_identity: Some("str:bob".into()),
        ice_enabled: Some(true),
        connect_request: Some(ConnectRequest {
            cert: Some(CertificateSigned {
                cert: Some(vec![1, 2]),
                ca_key_id: Some(7),
                ca_signature: Some(b"sig".to_vec()),
                private_key_data: None,
            }),
            crypt: Some(SessionCryptInfoSigned {
                info: Some(vec![9; 4]),
                signature: Some(vec![8; 64]),
            }),
            to_virtual_port: Some(0),
            from_virtual_port: Some(5),
            from_fakeip: None,
        }),
        ack_reliable_msg: Some(0),
        first_reliable_msg: Some(1),
        reliable_messages: vec![
            ReliableMessage {
                ice: Some(IceRendezvous {
                    auth: Some(IceAuth {
                        pwd_frag: Some("AbCdE".into()),
                    }),
                    add_candidate: None,
                }),
            },
            ReliableMessage {
                ice: Some(IceRendezvous {
                    auth: None,
                    add_candidate: Some(IceCandidateMsg {
                        candidate: Some(
                            "candidate:1 1 udp 2130706431 192.0.2.1 5000 typ host".into(),
                        ),
                    }),
                }),
            },
        ],
        application_messages: vec![ApplicationMessage {
            data: Some(b"hi".to_vec()),
            msg_num: Some(3),
            flags: Some(0),
            lane_idx: None,
        }],
        connection_closed: Some(ConnectionClosed {
            debug: Some("bye".into()),
            reason_code: Some(1000),
        }),
        connect_ok: Some(ConnectOk {
            crypt: None,
            cert: None,
        }),
        ..Default::default()
    }
}

/// The same message in protobuf text format, for protoc.
const SAMPLE_TEXT: &str = r#"
from_identity: "str:alice"
from_connection_id: 305419896
to_identity: "str:bob"
ice_enabled: true
connect_request {
  crypt { info: "\t\t\t\t" signature: "\010\010\010\010\010\010\010\010\010\010\010\010\010\010\010\010\010\010\010\010\010\010\010\010\010\010\010\010\010\010\010\010\010\010\010\010\010\010\010\010\010\010\010\010\010\010\010\010\010\010\010\010\010\010\010\010\010\010\010\010\010\010\010\010" }
  cert { cert: "\001\002" ca_key_id: 7 ca_signature: "sig" }
  to_virtual_port: 0
  from_virtual_port: 5
}
connect_ok { }
connection_closed { debug: "bye" reason_code: 1000 }
ack_reliable_msg: 0
first_reliable_msg: 1
reliable_messages { ice { auth { pwd_frag: "AbCdE" } } }
reliable_messages { ice { add_candidate { candidate: "candidate:1 1 udp 2130706431 192.0.2.1 5000 typ host" } } }
application_messages { data: "hi" msg_num: 3 flags: 0 }
"#;

#[test]
fn round_trip() {
    let m = sample();
    let bytes = m.encode_signal().unwrap();
    assert_eq!(Rendezvous::decode_signal(&bytes).unwrap(), m);
    assert!(matches!(
        Rendezvous::decode_signal(&vec![0u8; MAX_RENDEZVOUS_LEN + 1]),
        Err(RendezvousError::TooLong(_))
    ));
    assert!(Rendezvous::decode_signal(&[0x0a, 0x05, 1]).is_err());
}

#[test]
fn ufrag_encoding_matches_gns() {
    assert_eq!(base64_lower_30_bits(0), "AAAAA");
    assert_eq!(base64_lower_30_bits(u32::MAX), "/////");
    // 0x12345678: low 30 bits 0x12345678 -> 6-bit groups 18, 13, 5, 25, 56.
    assert_eq!(base64_lower_30_bits(0x1234_5678), "SNFZ4");
}

/// The .proto files from the GNS tarball beside the project (`../shared/vendor`), unpacked
/// into a temporary directory; `None` (with a message) when the tarball or protoc is missing.
fn gns_protos() -> Option<PathBuf> {
    let tarball = std::env::var_os("NETMESSAGES_GNS_TARBALL")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../../shared/vendor/GameNetworkingSockets-e707b3a.tar.gz")
        });
    if !tarball.exists() {
        eprintln!("SKIP: GNS tarball not found at {}", tarball.display());
        return None;
    }
    if Command::new("protoc").arg("--version").output().is_err() {
        eprintln!("SKIP: protoc not installed (apt-get install protobuf-compiler)");
        return None;
    }
    let dir = std::env::temp_dir().join(format!("netcore-rendezvous-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ok = Command::new("tar")
        .args(["-xzf"])
        .arg(&tarball)
        .arg("-C")
        .arg(&dir)
        .args([
            "--wildcards",
            "*/src/common/steamnetworkingsockets_messages*.proto",
        ])
        .status()
        .unwrap()
        .success();
    assert!(ok, "could not unpack the .proto files");
    Some(dir.join("GameNetworkingSockets/src/common"))
}

fn protoc(dir: &Path, mode: &str, input: &[u8]) -> Vec<u8> {
    let mut child = Command::new("protoc")
        .arg(format!("--{mode}=CMsgSteamNetworkingP2PRendezvous"))
        .arg(format!("-I{}", dir.display()))
        .arg("steamnetworkingsockets_messages.proto")
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "protoc {mode}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Bytes made by protobuf from GNS's own .proto decode to what we expect, and what we
/// encode reads back through GNS's .proto to the same message.
#[test]
fn matches_gns_proto() {
    let Some(dir) = gns_protos() else { return };
    let theirs = protoc(&dir, "encode", SAMPLE_TEXT.as_bytes());
    let decoded = Rendezvous::decode_signal(&theirs).unwrap();
    assert_eq!(decoded, sample());

    let ours = sample().encode_signal().unwrap();
    let their_text = protoc(&dir, "decode", &theirs);
    let our_text = protoc(&dir, "decode", &ours);
    assert_eq!(
        String::from_utf8_lossy(&our_text),
        String::from_utf8_lossy(&their_text)
    );
    let _ = std::fs::remove_dir_all(dir.parent().unwrap().parent().unwrap());
}

fn ice_candidate(s: &str) -> ReliableMessage {
    ReliableMessage {
        ice: Some(IceRendezvous {
            auth: None,
            add_candidate: Some(IceCandidateMsg {
                candidate: Some(s.into()),
            }),
        }),
    }
}

#[test]
fn reliable_stream_delivers_in_order_despite_loss() {
    let t = |ms: u64| Timestamp::from_micros(ms * 1000);
    let mut a = ReliableSignals::new();
    let mut b = ReliableSignals::new();
    assert!(a.push(ice_candidate("c1")));
    assert!(a.push(ice_candidate("c2")));
    assert!(a.wants_to_send(t(0)));

    // First signal is lost.
    let mut lost = Rendezvous::default();
    a.fill(&mut lost, t(0));
    assert_eq!(lost.first_reliable_msg, Some(1));
    assert_eq!(lost.reliable_messages.len(), 2);
    assert!(!a.wants_to_send(t(100)));
    assert_eq!(a.poll_timeout(), Some(t(2000)));

    // A third message goes out alone, skipping ahead: b must not take it.
    assert!(a.push(ice_candidate("c3")));
    let mut s = Rendezvous::default();
    a.fill(&mut s, t(100));
    assert_eq!(s.first_reliable_msg, Some(3));
    assert!(b.receive(&s).is_empty());

    // The resend carries all three from id 1.
    let mut s = Rendezvous::default();
    a.fill(&mut s, t(2000));
    assert_eq!(s.first_reliable_msg, Some(1));
    let got = b.receive(&s);
    assert_eq!(got.len(), 3);
    // A duplicate gives nothing new.
    assert!(b.receive(&s).is_empty());

    // b's ack clears a.
    assert!(b.wants_to_send(t(2001)));
    let mut ack = Rendezvous::default();
    b.fill(&mut ack, t(2001));
    assert_eq!(ack.ack_reliable_msg, Some(3));
    assert!(a.receive(&ack).is_empty());
    assert_eq!(a.poll_timeout(), None);
    assert!(!a.wants_to_send(t(10_000)));
}

#[test]
fn reliable_stream_is_bounded() {
    let mut a = ReliableSignals::new();
    for i in 0..MAX_UNACKED {
        assert!(a.push(ice_candidate(&i.to_string())));
    }
    assert!(!a.push(ice_candidate("one too many")));
}
