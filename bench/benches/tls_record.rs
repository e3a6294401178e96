//! TLS record protection per message: spinwire's record layer (`engine/src/transport/record.rs`,
//! `ring` AEADs, in place) against rustls 0.23's own record path, TLS 1.3, AES-128-GCM and
//! ChaCha20-Poly1305, messages of 64 B, 512 B, 4 KiB and 16 KiB (one record each).
//!
//! One iteration moves one message from a client to a server, in memory:
//!
//! - `tls_record/{suite}/rustls/{size}`: `client.writer().write_all(msg)`, `client.write_tls`
//!   into a reused `Vec` (the bytes that would go to the socket), `server.read_tls` from that
//!   slice then `server.process_new_packets()` (rustls reads at most 4 KiB per `read_tls`, so a
//!   16 KiB record takes several rounds, as over a socket), then `server.reader().read` into the
//!   destination buffer until the whole message is there.
//! - `tls_record/{suite}/spinwire/{size}`: what the transport does: seal the message as one
//!   application-data record straight into the outgoing buffer, copy the record into the
//!   receiver's incoming buffer (standing in for the socket, as `read_tls` from a slice does on
//!   the rustls side), open it in place there, and copy the plaintext into the destination
//!   buffer.
//!
//! Both sides use the very same keys: each (suite, size) gets one in-memory
//! `ClientConnection`/`ServerConnection` pair (rcgen certificate, `enable_secret_extraction`);
//! the rustls side runs on it, then both connections hand over their secrets
//! (`dangerous_extract_secrets`) and the spinwire side goes on from rustls' sequence numbers
//! with the client's sending keys and the server's receiving keys.
//!
//! Before timing, each side moves patterned messages and checks that the server got exactly
//! the bytes sent, then the allocations per message of each side are counted over
//! [`ALLOC_PROBE_MESSAGES`] messages (a counting global allocator, this thread only) and
//! printed, e.g. `allocs/msg tls13_aes128gcm 512B: rustls=2.00 spinwire=0.00`. The bench fails
//! if the spinwire side allocates at all.
//!
//! Run: `cargo bench -p spinwire-bench --bench tls_record -- --warm-up-time 1 --measurement-time 3`;
//! `cargo test -p spinwire-bench --bench tls_record` runs each case once as a check.

use std::error::Error;
use std::hint::black_box;
use std::io::{self, Read, Write};
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{
    ClientConfig, ClientConnection, ConnectionCommon, ProtocolVersion, RootCertStore, ServerConfig,
    ServerConnection, SupportedCipherSuite,
};
use spinwire_bench::{count_allocations, CountingAlloc};
use spinwire_engine::transport::bench_internals::{RecordKeys, MAX_RECORD_PLAINTEXT};

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

/// Message sizes, bytes. The largest is one full record (2^14 bytes of plaintext).
const SIZES: [usize; 4] = [64, 512, 4 * 1024, 16 * 1024];
/// Messages per side in the allocation count.
const ALLOC_PROBE_MESSAGES: u64 = 1000;
/// Messages per side in the sanity pass before timing.
const SANITY_MESSAGES: usize = 3;

type BoxError = Box<dyn Error + Send + Sync>;

// ---------------------------------------------------------------------------------------------
// Configuration: one TLS 1.3 suite, a private CA and a server certificate for `localhost`.

/// The TLS 1.3 suites measured.
#[derive(Debug, Clone, Copy)]
enum Suite {
    Aes128Gcm,
    Chacha20Poly1305,
}

impl Suite {
    fn name(self) -> &'static str {
        match self {
            Suite::Aes128Gcm => "tls13_aes128gcm",
            Suite::Chacha20Poly1305 => "tls13_chacha20poly1305",
        }
    }

    fn rustls(self) -> SupportedCipherSuite {
        use rustls::crypto::ring::cipher_suite as cs;
        match self {
            Suite::Aes128Gcm => cs::TLS13_AES_128_GCM_SHA256,
            Suite::Chacha20Poly1305 => cs::TLS13_CHACHA20_POLY1305_SHA256,
        }
    }
}

/// The CA certificate and the server's chain and key, made once.
struct Certs {
    ca: CertificateDer<'static>,
    chain: Vec<CertificateDer<'static>>,
    key_pkcs8: Vec<u8>,
}

impl Certs {
    fn generate() -> Result<Certs, BoxError> {
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
            KeyPair, KeyUsagePurpose,
        };
        let ca_key = KeyPair::generate()?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "spinwire bench CA");
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_cert = ca_params.self_signed(&ca_key)?;
        let issuer = Issuer::new(ca_params, ca_key);

        let server_key = KeyPair::generate()?;
        let mut params = CertificateParams::new(vec!["localhost".to_string()])?;
        params
            .distinguished_name
            .push(DnType::CommonName, "spinwire bench");
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server_cert = params.signed_by(&server_key, &issuer)?;
        Ok(Certs {
            ca: ca_cert.der().clone(),
            chain: vec![server_cert.der().clone()],
            key_pkcs8: server_key.serialize_der(),
        })
    }

    /// Client and server configurations offering only `suite`, TLS 1.3 only, with secret
    /// extraction on (the spinwire side takes the keys over).
    fn configs(&self, suite: Suite) -> Result<(Arc<ClientConfig>, Arc<ServerConfig>), BoxError> {
        let provider = Arc::new(CryptoProvider {
            cipher_suites: vec![suite.rustls()],
            ..rustls::crypto::ring::default_provider()
        });
        let mut roots = RootCertStore::empty();
        roots.add(self.ca.clone())?;
        let mut client = ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_root_certificates(roots)
            .with_no_client_auth();
        client.enable_secret_extraction = true;
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_pkcs8.clone()));
        let mut server = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_no_client_auth()
            .with_single_cert(self.chain.clone(), key)?;
        server.enable_secret_extraction = true;
        Ok((Arc::new(client), Arc::new(server)))
    }
}

// ---------------------------------------------------------------------------------------------
// The two sides.

/// An in-memory rustls client/server pair after the handshake.
struct RustlsPair {
    client: ClientConnection,
    server: ServerConnection,
    /// The client's TLS bytes of the current message (reused).
    wire: Vec<u8>,
}

/// Moves whatever `from` has to send into `to` and lets `to` process it.
fn transfer<A, B>(
    from: &mut ConnectionCommon<A>,
    to: &mut ConnectionCommon<B>,
    wire: &mut Vec<u8>,
) -> Result<(), BoxError> {
    wire.clear();
    while from.wants_write() {
        from.write_tls(wire)?;
    }
    let mut rd = &wire[..];
    while !rd.is_empty() {
        to.read_tls(&mut rd)?;
        to.process_new_packets()?;
    }
    Ok(())
}

impl RustlsPair {
    fn handshake(client: Arc<ClientConfig>, server: Arc<ServerConfig>) -> Result<Self, BoxError> {
        let mut pair = RustlsPair {
            client: ClientConnection::new(client, ServerName::try_from("localhost")?)?,
            server: ServerConnection::new(server)?,
            wire: Vec::with_capacity(2 * MAX_RECORD_PLAINTEXT),
        };
        let mut rounds = 0;
        while pair.client.is_handshaking()
            || pair.server.is_handshaking()
            || pair.client.wants_write()
            || pair.server.wants_write()
        {
            rounds += 1;
            if rounds > 16 {
                return Err("the in-memory TLS handshake does not finish".into());
            }
            transfer(&mut pair.client, &mut pair.server, &mut pair.wire)?;
            transfer(&mut pair.server, &mut pair.client, &mut pair.wire)?;
        }
        if pair.client.negotiated_cipher_suite() != pair.server.negotiated_cipher_suite()
            || pair.client.protocol_version() != Some(ProtocolVersion::TLSv1_3)
        {
            return Err("the pair did not agree on the TLS 1.3 suite offered".into());
        }
        Ok(pair)
    }

    /// Sends `msg` from the client and reads it on the server into `dst`; returns the bytes
    /// read.
    fn send(&mut self, msg: &[u8], dst: &mut [u8]) -> Result<usize, BoxError> {
        self.client.writer().write_all(msg)?;
        self.wire.clear();
        while self.client.wants_write() {
            self.client.write_tls(&mut self.wire)?;
        }
        let mut rd = &self.wire[..];
        while !rd.is_empty() {
            self.server.read_tls(&mut rd)?;
            self.server.process_new_packets()?;
        }
        let mut got = 0;
        while got < msg.len() {
            match self.server.reader().read(&mut dst[got..msg.len()]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e.into()),
            }
        }
        Ok(got)
    }

    /// Hands both connections' secrets over: the spinwire side with the client's sending keys
    /// and the server's receiving keys, going on from rustls' sequence numbers.
    fn into_spinwire(self) -> Result<Spinwire, BoxError> {
        let client = self.client.dangerous_extract_secrets()?;
        let server = self.server.dangerous_extract_secrets()?;
        let (tx_seq, tx_secrets) = client.tx;
        let (rx_seq, rx_secrets) = server.rx;
        if tx_seq != rx_seq {
            return Err(format!("client sent {tx_seq} records, server read {rx_seq}").into());
        }
        Ok(Spinwire {
            tx: RecordKeys::new(ProtocolVersion::TLSv1_3, tx_seq, tx_secrets)?,
            rx: RecordKeys::new(ProtocolVersion::TLSv1_3, rx_seq, rx_secrets)?,
            out: vec![0; 2 * MAX_RECORD_PLAINTEXT],
            incoming: vec![0; 2 * MAX_RECORD_PLAINTEXT],
        })
    }
}

/// spinwire's record layer with the keys of a rustls pair.
struct Spinwire {
    /// The client's sending keys.
    tx: RecordKeys,
    /// The server's receiving keys.
    rx: RecordKeys,
    /// The client's outgoing buffer (records are sealed straight into it).
    out: Vec<u8>,
    /// The server's incoming buffer (records are opened in place there).
    incoming: Vec<u8>,
}

impl Spinwire {
    /// Sends `msg` (one record per 2^14 bytes) from the client and reads it on the server into
    /// `dst`; returns the bytes read.
    fn send(&mut self, msg: &[u8], dst: &mut [u8]) -> Result<usize, BoxError> {
        let mut got = 0;
        for chunk in msg.chunks(MAX_RECORD_PLAINTEXT) {
            let n = self.tx.seal_application_data(chunk, &mut self.out)?;
            // The socket: the record lands in the receiver's incoming buffer.
            self.incoming[..n].copy_from_slice(&self.out[..n]);
            let opened = self.rx.open_in_place(&mut self.incoming[..n])?;
            if !opened.is_application_data() || opened.record_len != n {
                return Err("the record did not open to one application-data record".into());
            }
            let plain = &self.incoming[opened.plaintext];
            dst[got..got + plain.len()].copy_from_slice(plain);
            got += plain.len();
        }
        Ok(got)
    }
}

// ---------------------------------------------------------------------------------------------
// Checks before timing.

/// A message of `len` bytes that differs per `seed`.
fn message(len: usize, seed: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i.wrapping_mul(31) ^ seed.wrapping_mul(7)) as u8)
        .collect()
}

/// Sends a few distinct messages through `send` and checks the receiver got exactly them.
fn check_round_trips(
    side: &str,
    size: usize,
    mut send: impl FnMut(&[u8], &mut [u8]) -> Result<usize, BoxError>,
) {
    let mut dst = vec![0u8; size];
    for seed in 0..SANITY_MESSAGES {
        let msg = message(size, seed);
        dst.fill(0);
        let got = send(&msg, &mut dst).unwrap_or_else(|e| panic!("{side} {size}B: {e}"));
        assert_eq!(got, size, "{side} {size}B: bytes received");
        assert!(dst == msg, "{side} {size}B: the receiver got other bytes");
    }
}

/// Allocations per message of `send` over [`ALLOC_PROBE_MESSAGES`] messages.
fn allocs_per_message(
    msg: &[u8],
    mut send: impl FnMut(&[u8], &mut [u8]) -> Result<usize, BoxError>,
) -> f64 {
    let mut dst = vec![0u8; msg.len()];
    let mut failed = None;
    let allocs = count_allocations(|| {
        for _ in 0..ALLOC_PROBE_MESSAGES {
            if let Err(e) = send(msg, &mut dst) {
                failed = Some(e);
                return;
            }
        }
    });
    if let Some(e) = failed {
        panic!("allocation probe: {e}");
    }
    allocs as f64 / ALLOC_PROBE_MESSAGES as f64
}

// ---------------------------------------------------------------------------------------------
// The benchmark.

fn bench_tls_record(c: &mut Criterion) {
    let probe = count_allocations(|| {
        black_box(Vec::<u8>::with_capacity(black_box(8)));
    });
    assert_eq!(probe, 1, "the counting allocator works");

    let certs = Certs::generate().expect("rcgen certificates");
    for suite in [Suite::Aes128Gcm, Suite::Chacha20Poly1305] {
        let (client_config, server_config) = certs.configs(suite).expect("rustls configs");
        let mut group = c.benchmark_group(format!("tls_record/{}", suite.name()));
        for size in SIZES {
            group.throughput(Throughput::Bytes(size as u64));
            let msg = message(size, 99);
            let mut dst = vec![0u8; size];

            let mut rustls = RustlsPair::handshake(client_config.clone(), server_config.clone())
                .expect("in-memory TLS handshake");
            check_round_trips("rustls", size, |m, d| rustls.send(m, d));
            let rustls_allocs = allocs_per_message(&msg, |m, d| rustls.send(m, d));
            group.bench_with_input(BenchmarkId::new("rustls", size), &msg, |b, msg| {
                b.iter(|| {
                    rustls
                        .send(black_box(msg), &mut dst)
                        .expect("rustls record path")
                })
            });

            let mut ours = rustls.into_spinwire().expect("secret hand-over");
            check_round_trips("spinwire", size, |m, d| ours.send(m, d));
            let ours_allocs = allocs_per_message(&msg, |m, d| ours.send(m, d));
            println!(
                "allocs/msg {} {size}B: rustls={rustls_allocs:.2} spinwire={ours_allocs:.2}",
                suite.name()
            );
            assert_eq!(ours_allocs, 0.0, "spinwire's record path allocates");
            group.bench_with_input(BenchmarkId::new("spinwire", size), &msg, |b, msg| {
                b.iter(|| {
                    ours.send(black_box(msg), &mut dst)
                        .expect("spinwire record path")
                })
            });
        }
        group.finish();
    }
}

criterion_group!(benches, bench_tls_record);
criterion_main!(benches);
