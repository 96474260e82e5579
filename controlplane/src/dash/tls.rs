//! HTTPS with the operator's certificate: rustls with the ring provider, TLS 1.2 and
//! 1.3, the certificate chain and key read from PEM files. A file that cannot be read,
//! holds no certificate or key, or a key that does not belong to the certificate is an
//! error naming the file; `hactl run` does not start with it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::config::TlsFiles;

/// Why the certificate or key cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The certificate file.
    #[error("dashboard tls_cert {}: {why}", path.display())]
    Cert {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// The key file.
    #[error("dashboard tls_key {}: {why}", path.display())]
    Key {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
}

fn pem_error(e: rustls_pki_types::pem::Error) -> String {
    match e {
        rustls_pki_types::pem::Error::Io(e) => e.to_string(),
        other => format!("not a valid PEM file ({other:?})"),
    }
}

/// Read the chain: every `CERTIFICATE` block, the server's first.
pub fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let err = |why: String| TlsError::Cert {
        path: path.to_owned(),
        why,
    };
    std::fs::metadata(path).map_err(|e| err(e.to_string()))?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|e| err(pem_error(e)))?
        .collect::<Result<_, _>>()
        .map_err(|e| err(pem_error(e)))?;
    if certs.is_empty() {
        return Err(err("no PEM CERTIFICATE block in it".into()));
    }
    Ok(certs)
}

/// Read the private key (the first PKCS#8, PKCS#1 or SEC1 block).
pub fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let err = |why: String| TlsError::Key {
        path: path.to_owned(),
        why,
    };
    std::fs::metadata(path).map_err(|e| err(e.to_string()))?;
    PrivateKeyDer::from_pem_file(path).map_err(|e| match e {
        rustls_pki_types::pem::Error::NoItemsFound => err("no PEM PRIVATE KEY block in it".into()),
        other => err(pem_error(other)),
    })
}

/// The server's TLS configuration from the files (ALPN `http/1.1`).
pub fn server_config(files: &TlsFiles) -> Result<Arc<ServerConfig>, TlsError> {
    let certs = read_certs(&files.cert)?;
    let key = read_key(&files.key)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Cert {
            path: files.cert.clone(),
            why: e.to_string(),
        })?
        .with_no_client_auth();
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| TlsError::Key {
            path: files.key.clone(),
            why: match e {
                rustls::Error::InconsistentKeys(_) => format!(
                    "this key does not belong to the certificate in {}",
                    files.cert.display()
                ),
                other => format!("cannot be used with {}: {other}", files.cert.display()),
            },
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
