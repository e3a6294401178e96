//! Client TLS configuration: which roots to trust. Verification is always on.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};

use super::error::TlsConfigError;

/// The ALPN protocol offered: WebSocket upgrades run over HTTP/1.1.
const ALPN_HTTP11: &[u8] = b"http/1.1";

/// Where trust anchors come from.
#[derive(Debug, Clone)]
enum Anchor {
    /// A PEM file on disk.
    File(PathBuf),
    /// PEM bytes in memory.
    Pem(Vec<u8>),
}

/// An immutable client TLS configuration (rustls, `ring` provider), cheap to clone and share
/// between connections.
///
/// Server certificates are always verified (chain to a trusted root, validity period, host
/// name); there is deliberately no way to turn that off.
#[derive(Debug, Clone)]
pub struct TlsConfig {
    /// The rustls configuration.
    inner: Arc<ClientConfig>,
}

impl TlsConfig {
    /// Starts a configuration that trusts the system's root certificates.
    pub fn builder() -> TlsConfigBuilder {
        TlsConfigBuilder {
            anchors: Vec::new(),
        }
    }

    /// The rustls configuration, for connecting.
    pub(crate) fn client_config(&self) -> &Arc<ClientConfig> {
        &self.inner
    }
}

/// Builds a [`TlsConfig`]. Trusts the system roots unless a private CA is given.
#[derive(Debug, Clone)]
pub struct TlsConfigBuilder {
    /// Private CAs; empty means "system roots".
    anchors: Vec<Anchor>,
}

impl TlsConfigBuilder {
    /// Trusts the CA certificate(s) in the PEM file at `path` *instead of* the system roots
    /// (for a venue test environment or the local simulator with a private CA). May be called
    /// more than once to trust several CAs. The file is read by [`TlsConfigBuilder::build`].
    pub fn ca_file(mut self, path: impl AsRef<Path>) -> Self {
        self.anchors.push(Anchor::File(path.as_ref().to_path_buf()));
        self
    }

    /// Like [`TlsConfigBuilder::ca_file`], with the PEM text already in memory.
    pub fn ca_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.anchors.push(Anchor::Pem(pem.into()));
        self
    }

    /// Loads the roots and builds the configuration: TLS 1.3 and 1.2 with rustls' safe
    /// defaults, the `ring` provider, ALPN `http/1.1`, no client certificate. Secret extraction
    /// is on: after the handshake the transport protects records itself, in place (rustls hands
    /// it the traffic secrets and keeps the key schedule; the secrets never leave the transport).
    pub fn build(self) -> Result<TlsConfig, TlsConfigError> {
        let roots = if self.anchors.is_empty() {
            system_roots()?
        } else {
            let mut roots = RootCertStore::empty();
            for anchor in &self.anchors {
                add_anchor(&mut roots, anchor)?;
            }
            roots
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![ALPN_HTTP11.to_vec()];
        config.enable_secret_extraction = true;
        Ok(TlsConfig {
            inner: Arc::new(config),
        })
    }
}

/// The system trust store via rustls-native-certs (honours `SSL_CERT_FILE` / `SSL_CERT_DIR`).
fn system_roots() -> Result<RootCertStore, TlsConfigError> {
    let loaded = rustls_native_certs::load_native_certs();
    let mut details = String::new();
    for (i, err) in loaded.errors.iter().enumerate() {
        details.push_str(if i == 0 { ": " } else { "; " });
        details.push_str(&err.to_string());
    }
    let mut roots = RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(loaded.certs);
    if added == 0 {
        return Err(TlsConfigError::NoSystemRoots { details });
    }
    Ok(roots)
}

/// Adds every certificate of one PEM anchor source to `roots`.
fn add_anchor(roots: &mut RootCertStore, anchor: &Anchor) -> Result<(), TlsConfigError> {
    let (path, certs): (PathBuf, Vec<Result<CertificateDer<'static>, _>>) = match anchor {
        Anchor::File(path) => {
            let iter = CertificateDer::pem_file_iter(path).map_err(|e| TlsConfigError::CaFile {
                path: path.clone(),
                reason: e.to_string(),
            })?;
            (path.clone(), iter.collect())
        }
        Anchor::Pem(pem) => (
            PathBuf::from("<in-memory PEM>"),
            CertificateDer::pem_slice_iter(pem).collect(),
        ),
    };
    let mut added = 0;
    for cert in certs {
        let cert = cert.map_err(|e| TlsConfigError::CaFile {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        roots.add(cert).map_err(|e| TlsConfigError::CaFile {
            path: path.clone(),
            reason: format!("certificate rejected as trust anchor: {e}"),
        })?;
        added += 1;
    }
    if added == 0 {
        return Err(TlsConfigError::NoCertificates { path });
    }
    Ok(())
}
