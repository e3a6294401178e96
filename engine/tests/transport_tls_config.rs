//! Building the TLS client configuration: private CA files, and their failure messages.

mod transport_support;

use std::path::PathBuf;

use spinwire_engine::transport::{Security, TlsConfig, TlsConfigError};
use transport_support::*;

/// A file under the temp dir, unique to this test process and `name`.
fn temp_file(name: &str, contents: &[u8]) -> PathBuf {
    let path = std::env::temp_dir().join(format!("spinwire-{}-{name}", std::process::id()));
    std::fs::write(&path, contents).unwrap();
    path
}

#[test]
fn ca_file_with_the_private_ca_lets_the_handshake_verify() {
    let pki = Pki::new("file CA");
    let path = temp_file("ca.pem", pki.ca_pem.as_bytes());
    let config = TlsConfig::builder().ca_file(&path).build().unwrap();
    let (addr, server) = tls_echo_server(pki.server_config(&["localhost"]), 1);
    let mut reactor = reactor(blocking());
    let token = add_client(
        &mut reactor,
        addr,
        Security::Tls {
            config: &config,
            host: "localhost",
        },
        b"hi".to_vec(),
        64,
    );
    let client = echo_round_trip(&mut reactor, token);
    assert!(
        matches!(client.end, Some(End::PeerClosed)),
        "{:?}",
        client.end
    );
    assert_eq!(client.received, b"hi");
    server.join().unwrap();
    std::fs::remove_file(path).unwrap();
}

#[test]
fn missing_ca_file_is_named_in_the_error() {
    let path = PathBuf::from("/nonexistent/spinwire/ca.pem");
    let err = TlsConfig::builder().ca_file(&path).build().unwrap_err();
    assert!(
        matches!(&err, TlsConfigError::CaFile { path: p, .. } if *p == path),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("/nonexistent/spinwire/ca.pem"),
        "{err}"
    );
}

#[test]
fn ca_file_without_a_certificate_is_rejected() {
    let path = temp_file("empty.pem", b"not a certificate\n");
    let err = TlsConfig::builder().ca_file(&path).build().unwrap_err();
    assert!(
        matches!(&err, TlsConfigError::NoCertificates { path: p } if *p == path),
        "{err:?}"
    );
    assert!(err.to_string().contains("no usable CERTIFICATE"), "{err}");
    std::fs::remove_file(path).unwrap();
}

#[test]
fn ca_file_with_broken_pem_is_rejected_with_the_reason() {
    let path = temp_file(
        "broken.pem",
        b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
    );
    let err = TlsConfig::builder().ca_file(&path).build().unwrap_err();
    assert!(matches!(&err, TlsConfigError::CaFile { .. }), "{err:?}");
    std::fs::remove_file(path).unwrap();
}
