//! TLS for the webhook listener: TLS 1.2 and 1.3 only, ALPN h2 and http/1.1, optional client
//! certificates, and a certificate that is re-read when its files change.
//!
//! The directories holding the certificate and key are watched ([`crate::watch`]), so the
//! Secret volume's `..data` symlink swap (cert-manager's rotation) is seen. New handshakes
//! get the new certificate; open connections keep theirs and are never dropped.

use std::{
    fs,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use arc_swap::ArcSwap;
use rustls::{
    ServerConfig,
    crypto::CryptoProvider,
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
    server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier},
    sign::CertifiedKey,
};

use crate::{
    telemetry::Metrics,
    watch::{Changes, directory_of},
};

/// Loading the certificate, key or client CA failed.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading {path}: {message}")]
    Read { path: PathBuf, message: String },
    #[error("{path} holds no PEM certificate")]
    NoCertificate { path: PathBuf },
    #[error("the key in {path} does not fit: {message}")]
    Key { path: PathBuf, message: String },
    #[error("client CA {path}: {message}")]
    ClientCa { path: PathBuf, message: String },
    #[error("watching {path}: {message}")]
    Watch { path: PathBuf, message: String },
}

/// The certificate and key files.
#[derive(Clone, Debug)]
pub struct Files {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Files {
    /// Reads and checks the pair: the key must be the certificate's.
    pub fn load(&self, provider: &CryptoProvider) -> Result<CertifiedKey, TlsError> {
        let read = |path: &Path| {
            fs::read(path).map_err(|e| TlsError::Read {
                path: path.to_path_buf(),
                message: e.to_string(),
            })
        };
        let cert_pem = read(&self.cert)?;
        let chain = CertificateDer::pem_slice_iter(&cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| TlsError::Read {
                path: self.cert.clone(),
                message: e.to_string(),
            })?;
        if chain.is_empty() {
            return Err(TlsError::NoCertificate {
                path: self.cert.clone(),
            });
        }
        let key_pem = read(&self.key)?;
        let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| TlsError::Key {
            path: self.key.clone(),
            message: e.to_string(),
        })?;
        let certified =
            CertifiedKey::from_der(chain, key, provider).map_err(|e| TlsError::Key {
                path: self.key.clone(),
                message: e.to_string(),
            })?;
        Ok(certified)
    }
}

/// A certificate resolver whose certificate can be swapped while serving.
#[derive(Debug)]
pub struct Reloading {
    files: Files,
    provider: Arc<CryptoProvider>,
    current: ArcSwap<CertifiedKey>,
}

impl Reloading {
    pub fn new(files: Files, provider: Arc<CryptoProvider>) -> Result<Arc<Self>, TlsError> {
        let current = files.load(&provider)?;
        Ok(Arc::new(Reloading {
            files,
            provider,
            current: ArcSwap::from_pointee(current),
        }))
    }

    /// Re-reads the files; on failure the current certificate stays.
    pub fn reload(&self) -> Result<bool, TlsError> {
        let loaded = self.files.load(&self.provider)?;
        let changed = loaded.cert != self.current.load().cert;
        if changed {
            self.current.store(Arc::new(loaded));
        }
        Ok(changed)
    }

    /// The certificate served now (for tests and logs).
    pub fn current(&self) -> Arc<CertifiedKey> {
        self.current.load_full()
    }
}

impl ResolvesServerCert for Reloading {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// The rustls configuration for the webhook.
pub fn server_config(
    resolver: Arc<Reloading>,
    client_ca: Option<&Path>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = resolver.provider.clone();
    server_config_with(resolver, provider, client_ca)
}

/// The same for any resolver (`tls_manager`'s, serving the certificate from its Secret).
pub fn server_config_with(
    resolver: Arc<dyn ResolvesServerCert>,
    provider: Arc<CryptoProvider>,
    client_ca: Option<&Path>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .expect("the default provider supports TLS 1.2 and 1.3");
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let fail = |message: String| TlsError::ClientCa {
                path: path.to_path_buf(),
                message,
            };
            let pem = fs::read(path).map_err(|e| fail(e.to_string()))?;
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(&pem) {
                roots
                    .add(cert.map_err(|e| fail(e.to_string()))?)
                    .map_err(|e| fail(e.to_string()))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(roots.into(), provider)
                .build()
                .map_err(|e| fail(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Watches the directories of the certificate and key and reloads on any change in them,
/// with a periodic re-read as a safety net for file systems that send no events. Runs until
/// the returned watcher is dropped.
pub fn watch(resolver: Arc<Reloading>, metrics: Arc<Metrics>) -> Result<TlsWatch, TlsError> {
    let dirs = [
        directory_of(&resolver.files.cert),
        directory_of(&resolver.files.key),
    ];
    let mut changes = Changes::watch(dirs).map_err(|e| TlsError::Watch {
        path: e.path,
        message: e.message,
    })?;
    expiry(&resolver, &metrics);
    let task = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        tick.tick().await;
        loop {
            tokio::select! {
                change = changes.next(Duration::from_millis(100)) => if change.is_none() { return },
                _ = tick.tick() => {}
            }
            match resolver.reload() {
                Ok(true) => {
                    metrics.tls_reload(true);
                    expiry(&resolver, &metrics);
                    tracing::info!(cert = %resolver.files.cert.display(), "reloaded the TLS certificate");
                }
                Ok(false) => {}
                Err(error) => {
                    metrics.tls_reload(false);
                    tracing::warn!(%error, "kept the current TLS certificate");
                }
            }
        }
    });
    Ok(TlsWatch { task })
}

/// Sets the expiry gauge from the served certificate.
fn expiry(resolver: &Reloading, metrics: &Metrics) {
    let current = resolver.current();
    let Some(leaf) = current.cert.first() else {
        return;
    };
    match crate::tls_manager::material::Cert::from_der(leaf.to_vec()) {
        Ok(cert) => metrics.tls_certificate(cert.not_after),
        Err(error) => tracing::warn!(%error, "reading the served certificate's expiry"),
    }
}

/// Keeps the certificate watched; dropping it stops the watch.
pub struct TlsWatch {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TlsWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}
