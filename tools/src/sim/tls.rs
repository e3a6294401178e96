//! TLS for `wss`: a rustls 0.23 server (ring provider) and self-signed certificates by rcgen.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::SimError;

/// Where the server certificate comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsSetup {
    /// Generate a fresh CA and a server certificate for `127.0.0.1`/`localhost`, and write
    /// `ca.pem`, `server.pem` and `server.key` into the directory (created if missing).
    SelfSigned(PathBuf),
    /// Use an existing certificate chain and private key (PEM files).
    Files {
        /// PEM certificate chain, leaf first.
        cert: PathBuf,
        /// PEM private key (PKCS#8, PKCS#1 or SEC1).
        key: PathBuf,
    },
}

/// The files written by [`write_self_signed`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelfSignedFiles {
    /// The CA certificate clients should trust (`--ca-file`).
    pub ca: PathBuf,
    /// The server certificate chain.
    pub cert: PathBuf,
    /// The server private key.
    pub key: PathBuf,
}

/// Generates a CA and a server certificate for `127.0.0.1`, `::1` and `localhost` and writes
/// them into `dir` as `ca.pem`, `server.pem`, `server.key`.
pub fn write_self_signed(dir: &Path) -> Result<SelfSignedFiles, SimError> {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, KeyUsagePurpose,
    };
    let tls_err = |e: rcgen::Error| SimError::Tls(format!("certificate generation: {e}"));
    std::fs::create_dir_all(dir).map_err(|e| SimError::io(dir, e))?;

    let ca_key = KeyPair::generate().map_err(tls_err)?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(tls_err)?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "spinwire sim CA");
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca_params.self_signed(&ca_key).map_err(tls_err)?;
    let issuer = Issuer::new(ca_params, ca_key);

    let server_key = KeyPair::generate().map_err(tls_err)?;
    let mut params = CertificateParams::new(vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ])
    .map_err(tls_err)?;
    params
        .distinguished_name
        .push(DnType::CommonName, "spinwire sim");
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let server_cert = params.signed_by(&server_key, &issuer).map_err(tls_err)?;

    let files = SelfSignedFiles {
        ca: dir.join("ca.pem"),
        cert: dir.join("server.pem"),
        key: dir.join("server.key"),
    };
    let write = |p: &Path, s: String| std::fs::write(p, s).map_err(|e| SimError::io(p, e));
    write(&files.ca, ca_cert.pem())?;
    write(&files.cert, server_cert.pem())?;
    write_private(&files.key, server_key.serialize_pem())?;
    Ok(files)
}

/// Builds the rustls server configuration for a [`TlsSetup`]; returns it with the path of the
/// CA file clients should trust when the certificate was generated.
pub fn server_config(
    setup: &TlsSetup,
) -> Result<(Arc<rustls::ServerConfig>, Option<PathBuf>), SimError> {
    let (cert, key, ca) = match setup {
        TlsSetup::SelfSigned(dir) => {
            let f = write_self_signed(dir)?;
            (f.cert, f.key, Some(f.ca))
        }
        TlsSetup::Files { cert, key } => (cert.clone(), key.clone(), None),
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert)
        .map_err(|e| SimError::Tls(format!("{}: {e}", cert.display())))?
        .collect::<Result<_, _>>()
        .map_err(|e| SimError::Tls(format!("{}: {e}", cert.display())))?;
    if chain.is_empty() {
        return Err(SimError::Tls(format!(
            "{}: no certificate found",
            cert.display()
        )));
    }
    let key = PrivateKeyDer::from_pem_file(&key)
        .map_err(|e| SimError::Tls(format!("{}: {e}", key.display())))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| SimError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| SimError::Tls(e.to_string()))?;
    Ok((Arc::new(config), ca))
}

/// Writes a private key readable by its owner only (mode 0600, set when the file is created,
/// and again on an existing file), so no other user of the machine can read it.
fn write_private(path: &Path, pem: String) -> Result<(), SimError> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| SimError::io(path, e))?;
    f.set_permissions(std::fs::Permissions::from_mode(0o600))
        .map_err(|e| SimError::io(path, e))?;
    f.write_all(pem.as_bytes())
        .map_err(|e| SimError::io(path, e))
}
