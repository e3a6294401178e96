//! The default configuration trusts the system roots and says so clearly when there are none.
//! One test in its own binary: it points the loader at an empty trust store through the
//! environment, which no other test may observe.

use spinwire_engine::transport::{TlsConfig, TlsConfigError};

#[test]
fn missing_system_roots_are_a_clear_error() {
    let dir = std::env::temp_dir().join(format!("spinwire-no-roots-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let empty = dir.join("empty.pem");
    std::fs::write(&empty, b"").unwrap();
    // rustls-native-certs reads SSL_CERT_FILE / SSL_CERT_DIR instead of the platform store.
    std::env::set_var("SSL_CERT_FILE", &empty);
    std::env::set_var("SSL_CERT_DIR", &dir);
    let result = TlsConfig::builder().build();
    std::env::remove_var("SSL_CERT_FILE");
    std::env::remove_var("SSL_CERT_DIR");
    std::fs::remove_dir_all(&dir).unwrap();

    let err = result.unwrap_err();
    assert!(
        matches!(err, TlsConfigError::NoSystemRoots { .. }),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(msg.contains("no usable system root certificates"), "{msg}");
}
