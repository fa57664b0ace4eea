//! Certificates for development and for installs without cert-manager: a CA and a serving
//! certificate signed by it (`tandem certs`), and the throwaway pair `tandem serve` makes
//! for itself when it is given none.

use std::{
    fs,
    io::Write,
    path::{Path, PathBuf},
    sync::Arc,
    time::{SystemTime, UNIX_EPOCH},
};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::{
    RootCertStore,
    client::{WebPkiServerVerifier, danger::ServerCertVerifier as _},
    pki_types::{CertificateDer, ServerName, UnixTime, pem::PemObject},
};
use time::{Duration, OffsetDateTime};

/// A development certificate is made for 30 days and replaced once less than this is left,
/// so that a server started on it does not run into its end.
const DEVELOPMENT_MARGIN: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);

/// Writing certificates failed.
#[derive(Debug, thiserror::Error)]
pub enum CertsError {
    #[error("generating the certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error(
        "a validity of {days} days (the CA's ten times that) ends after the year 9999, the last an X.509 date can name; accepted: fewer days"
    )]
    Validity { days: u32 },
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The files written: PEM CA certificate and key, serving certificate and key.
#[derive(Debug, Clone)]
pub struct Written {
    pub ca_cert: PathBuf,
    pub ca_key: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The CA certificate, base64 of its PEM: what a MutatingWebhookConfiguration's
    /// `caBundle` takes.
    pub ca_bundle: String,
}

/// The DNS names the API server uses to reach a webhook Service.
pub fn service_names(service: &str, namespace: &str) -> Vec<String> {
    vec![
        format!("{service}.{namespace}.svc"),
        format!("{service}.{namespace}.svc.cluster.local"),
        format!("{service}.{namespace}"),
        service.to_string(),
    ]
}

/// A serving certificate's parameters for `names` (the first is also the common name),
/// validity left to the caller: the development certificate, `tandem certs` and the
/// self-managed TLS of `tls_manager` all issue theirs from these.
pub fn serving_params(names: &[String]) -> Result<CertificateParams, rcgen::Error> {
    let mut params = CertificateParams::new(names.to_vec())?;
    let common_name = names.first().map_or("tandem", String::as_str);
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    Ok(params)
}

/// Writes a new CA and a certificate for `names` signed by it into `dir`, valid for `days`
/// (the CA for ten times as long, so that the serving certificate can be renewed under it).
pub fn write(dir: &Path, names: &[String], days: u32) -> Result<Written, CertsError> {
    let now = OffsetDateTime::now_utc();
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "tandem webhook CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let until = |span: i64| {
        now.checked_add(Duration::days(span))
            .filter(|end| end.year() <= 9999)
            .ok_or(CertsError::Validity { days })
    };
    ca_params.not_before = now - Duration::hours(1);
    ca_params.not_after = until(i64::from(days) * 10)?;
    let ca_key = KeyPair::generate()?;
    let ca_key_pem = ca_key.serialize_pem();
    let ca = CertifiedIssuer::self_signed(ca_params, ca_key)?;

    let mut params = serving_params(names)?;
    params.not_before = now - Duration::hours(1);
    params.not_after = until(i64::from(days))?;
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &ca)?;

    fs::create_dir_all(dir).map_err(|source| CertsError::Write {
        path: dir.to_path_buf(),
        source,
    })?;
    let ca_pem = ca.pem();
    let written = Written {
        ca_cert: save(dir, "ca.crt", &ca_pem, false)?,
        ca_key: save(dir, "ca.key", &ca_key_pem, true)?,
        cert: save(dir, "tls.crt", &cert.pem(), false)?,
        key: save(dir, "tls.key", &key.serialize_pem(), true)?,
        ca_bundle: base64_simd::STANDARD.encode_to_string(ca_pem),
    };
    Ok(written)
}

/// The development pair for `tandem serve` without `--tls-cert`: reused while it is there
/// and good for another week, replaced otherwise.
pub fn development(dir: &Path) -> Result<Written, CertsError> {
    let cert = dir.join("tls.crt");
    let key = dir.join("tls.key");
    let ca_cert = dir.join("ca.crt");
    if key.is_file() && reusable(&ca_cert, &cert) {
        let ca_bundle = fs::read(&ca_cert)
            .map(|pem| base64_simd::STANDARD.encode_to_string(pem))
            .unwrap_or_default();
        return Ok(Written {
            ca_key: dir.join("ca.key"),
            ca_cert,
            cert,
            key,
            ca_bundle,
        });
    }
    if cert.exists() {
        tracing::info!(
            dir = %dir.display(),
            "the development certificate expires within a week (or no longer matches its CA); writing a new one"
        );
    }
    let names = ["localhost", "127.0.0.1", "::1"].map(String::from);
    write(dir, &names, 30)
}

/// Whether the development certificate `cert` can be served again: it is signed by the CA
/// in `ca_cert`, names localhost, and is still valid [`DEVELOPMENT_MARGIN`] from now.
fn reusable(ca_cert: &Path, cert: &Path) -> bool {
    let (Ok(ca_pem), Ok(cert_pem)) = (fs::read(ca_cert), fs::read(cert)) else {
        return false;
    };
    let mut roots = RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(&ca_pem) {
        let Ok(Ok(())) = ca.map(|ca| roots.add(ca)) else {
            return false;
        };
    }
    let Some(Ok(leaf)) = CertificateDer::pem_slice_iter(&cert_pem).next() else {
        return false;
    };
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let Ok(verifier) =
        WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider).build()
    else {
        return false;
    };
    let Ok(now) = SystemTime::now().duration_since(UNIX_EPOCH) else {
        return false;
    };
    let later = UnixTime::since_unix_epoch(now + DEVELOPMENT_MARGIN);
    let localhost = ServerName::try_from("localhost").expect("localhost is a DNS name");
    verifier
        .verify_server_cert(&leaf, &[], &localhost, &[], later)
        .is_ok()
}

/// Writes `contents` to `dir/name`; keys are readable by their owner only.
fn save(dir: &Path, name: &str, contents: &str, secret: bool) -> Result<PathBuf, CertsError> {
    let path = dir.join(name);
    let wrap = |source| CertsError::Write {
        path: path.clone(),
        source,
    };
    let mode = if secret { 0o600 } else { 0o644 };
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mode);
    }
    let mut file = options.open(&path).map_err(wrap)?;
    #[cfg(unix)]
    {
        // The mode above applies only to a file created now; one that was already there
        // keeps its own (perhaps world-readable), so set it before the key goes in.
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(fs::Permissions::from_mode(mode))
            .map_err(wrap)?;
    }
    file.write_all(contents.as_bytes()).map_err(wrap)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_validity_past_the_year_9999_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let names = ["tandem.tandem-system.svc".to_string()];
        let error = write(dir.path(), &names, u32::MAX).unwrap_err();
        assert!(
            matches!(error, CertsError::Validity { days: u32::MAX }),
            "{error}"
        );
        assert!(error.to_string().contains("9999"), "{error}");
        // The longest `--days` accepted on the command line is fine.
        write(dir.path(), &names, crate::config::MAX_DAYS as u32).unwrap();
    }

    #[test]
    fn a_development_pair_is_reused_while_good_for_another_week() {
        let dir = tempfile::tempdir().unwrap();
        let first = development(dir.path()).unwrap();
        let served = fs::read(&first.cert).unwrap();
        let again = development(dir.path()).unwrap();
        assert_eq!(fs::read(&again.cert).unwrap(), served, "reused");
        assert_eq!(again.ca_bundle, first.ca_bundle);
    }

    #[test]
    fn a_development_pair_near_its_end_or_unfit_is_replaced() {
        fn localhost() -> [String; 3] {
            ["localhost", "127.0.0.1", "::1"].map(String::from)
        }
        fn ending(dir: &Path) {
            write(dir, &localhost(), 2).unwrap();
        }
        fn elsewhere(dir: &Path) {
            write(dir, &["tandem.tandem-system.svc".to_string()], 30).unwrap();
        }
        fn foreign_ca(dir: &Path) {
            write(dir, &localhost(), 30).unwrap();
            let other = tempfile::tempdir().unwrap();
            let other = write(other.path(), &localhost(), 30).unwrap();
            fs::copy(other.ca_cert, dir.join("ca.crt")).unwrap();
        }
        fn garbage(dir: &Path) {
            write(dir, &localhost(), 30).unwrap();
            fs::write(dir.join("tls.crt"), "not a certificate").unwrap();
        }
        type Prepare = fn(&Path);
        let cases: [(&str, Prepare); 4] = [
            ("two days left", ending),
            ("not for localhost", elsewhere),
            ("signed by another CA", foreign_ca),
            ("not a certificate", garbage),
        ];
        for (case, prepare) in cases {
            let dir = tempfile::tempdir().unwrap();
            prepare(dir.path());
            let before = fs::read(dir.path().join("tls.crt")).unwrap();
            let written = development(dir.path()).unwrap();
            assert_ne!(fs::read(&written.cert).unwrap(), before, "{case}: replaced");
            assert!(reusable(&written.ca_cert, &written.cert), "{case}");
        }
    }
}
