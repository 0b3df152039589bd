//! Packet AEAD (`crypto::aead::PacketCipher`, AES-256-GCM): sealing and opening one
//! full data packet's payload in place.
//!
//! Run: `cargo bench -p netcore --bench aead`.

// criterion_group! makes public functions that cannot carry doc comments.
#![allow(missing_docs)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use netcore::crypto::aead::{PacketCipher, TAG_LEN};
use netcore::wire::datagram::MAX_PLAINTEXT_SEND;

/// The largest payload a data packet carries (`MAX_PLAINTEXT_SEND`, 1,232 bytes).
const PAYLOAD: usize = MAX_PLAINTEXT_SEND;

fn aead(c: &mut Criterion) {
    let cipher = PacketCipher::new(&[0x42; 32], &[0x24; 12]);
    let mut g = c.benchmark_group("aead_aes256gcm");
    g.throughput(Throughput::Bytes(PAYLOAD as u64));

    let mut buf = vec![0xabu8; PAYLOAD + TAG_LEN];
    let mut pn = 0u64;
    g.bench_function("seal_in_place_1232B", |b| {
        b.iter(|| {
            pn += 1;
            cipher
                .seal_in_place(pn, black_box(&mut buf), PAYLOAD)
                .expect("room for the tag")
        })
    });

    // Opening needs a genuine packet each time; decrypting in place destroys it, so each
    // iteration restores the sealed bytes first (a 1,248-byte copy, a few percent of the cost).
    let mut sealed = vec![0xabu8; PAYLOAD + TAG_LEN];
    cipher
        .seal_in_place(7, &mut sealed, PAYLOAD)
        .expect("seals");
    let mut work = sealed.clone();
    g.bench_function("open_in_place_1232B", |b| {
        b.iter(|| {
            work.copy_from_slice(&sealed);
            cipher
                .open_in_place(7, black_box(&mut work))
                .expect("authentic")
        })
    });
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
}

criterion_group! { name = benches; config = config(); targets = aead }
criterion_main!(benches);
