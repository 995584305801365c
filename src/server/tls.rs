//! TLS for the server: rustls with ALPN (`h2`, then `http/1.1`), from PEM files or a self-signed
//! certificate made at start-up for local development. The handshake runs in the connection's own
//! task, under a timeout, so a client that never finishes it holds nothing but its socket.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// How long a client may take to complete the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read the certificate chain from {path}: {reason}")]
    Certificate { path: String, reason: String },
    #[error("cannot read the private key from {path}: {reason}")]
    Key { path: String, reason: String },
    #[error("the certificate and key do not work together: {0}")]
    Config(#[from] rustls::Error),
    #[error("cannot make a self-signed certificate: {0}")]
    SelfSigned(#[from] rcgen::Error),
}

/// A server configuration from a PEM certificate chain and a PEM private key.
pub fn from_pem_files(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| TlsError::Certificate {
            path: cert.display().to_string(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Certificate {
            path: cert.display().to_string(),
            reason: "no CERTIFICATE block in the file".into(),
        });
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::Key {
        path: key.display().to_string(),
        reason: e.to_string(),
    })?;
    config(certs, key_der)
}

/// A self-signed certificate for `localhost`, `127.0.0.1` and `::1`, and its SHA-256 fingerprint
/// (colon-separated hex, as browsers and `openssl x509 -fingerprint -sha256` show it).
pub fn self_signed() -> Result<(Arc<ServerConfig>, String), TlsError> {
    let names = vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
    let certified = rcgen::generate_simple_self_signed(names)?;
    let der = certified.cert.der().clone();
    let fingerprint = fingerprint(&der);
    let key = PrivateKeyDer::Pkcs8(certified.signing_key.serialize_der().into());
    Ok((config(vec![der], key)?, fingerprint))
}

/// SHA-256 of a certificate, as `AB:CD:…`.
pub fn fingerprint(cert: &CertificateDer<'_>) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, cert.as_ref());
    digest
        .as_ref()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn config(
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let mut config =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
