//! The certificates in tandem's TLS Secret: the CAs the webhook's caBundle trusts, the key of
//! the newest, and the serving certificate with its key. Made with rcgen, read with
//! x509-parser; everything here is a plain function of bytes and the time.
//!
//! The Secret's keys: `ca.crt` is the trust bundle (PEM, newest CA first; during a rotation
//! the older CAs follow), `ca.key` the newest CA's key, `tls.crt` and `tls.key` the serving
//! certificate. `ca.crt` is exactly what the caBundle holds.

use std::{collections::BTreeSet, net::IpAddr};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::{CertificateDer, pem::PemObject};
use time::OffsetDateTime;
use x509_parser::{extensions::GeneralName, prelude::FromDer, x509::SubjectPublicKeyInfo};

/// The trust bundle: PEM, newest CA first.
pub const CA_CERT: &str = "ca.crt";
/// The newest CA's private key (PKCS#8 PEM).
pub const CA_KEY: &str = "ca.key";
/// The serving certificate (PEM).
pub const TLS_CERT: &str = "tls.crt";
/// The serving certificate's private key (PKCS#8 PEM).
pub const TLS_KEY: &str = "tls.key";

/// Certificates start this long before they are made, for clocks a little behind.
const BACKDATE: i64 = 5 * 60;

/// Making or reading a certificate failed.
#[derive(Debug, thiserror::Error)]
pub enum MaterialError {
    #[error("generating a certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("{what} is not a certificate tandem can read: {message}")]
    Unreadable { what: String, message: String },
}

/// One parsed certificate: its DER and what tandem decides on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cert {
    pub der: Vec<u8>,
    /// Unix seconds.
    pub not_before: i64,
    /// Unix seconds.
    pub not_after: i64,
    /// SHA-256 of the DER, lower-case hex.
    pub fingerprint: String,
}

impl Cert {
    pub fn from_der(der: Vec<u8>) -> Result<Cert, MaterialError> {
        let (not_before, not_after) = {
            let parsed = parse(&der, "a certificate")?;
            (
                parsed.validity().not_before.timestamp(),
                parsed.validity().not_after.timestamp(),
            )
        };
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &der);
        let fingerprint = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        Ok(Cert {
            der,
            not_before,
            not_after,
            fingerprint,
        })
    }

    /// Every certificate in a PEM text; an unreadable one is an error.
    pub fn parse_pem(pem: &[u8], what: &str) -> Result<Vec<Cert>, MaterialError> {
        let unreadable = |message: String| MaterialError::Unreadable {
            what: what.to_string(),
            message,
        };
        CertificateDer::pem_slice_iter(pem)
            .map(|der| {
                let der = der.map_err(|e| unreadable(e.to_string()))?;
                Cert::from_der(der.to_vec()).map_err(|e| unreadable(e.to_string()))
            })
            .collect()
    }

    pub fn pem(&self) -> String {
        let body = base64_simd::STANDARD.encode_to_string(&self.der);
        let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
        for line in body.as_bytes().chunks(64) {
            pem.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
            pem.push('\n');
        }
        pem.push_str("-----END CERTIFICATE-----\n");
        pem
    }

    /// The short form of the fingerprint that logs and replica reports carry.
    pub fn short(&self) -> &str {
        &self.fingerprint[..16]
    }

    pub fn expired(&self, now: i64) -> bool {
        now >= self.not_after
    }

    /// A third of its lifetime is left (cert-manager's default point of renewal).
    pub fn renewal_due(&self, now: i64) -> bool {
        let issued = self.not_before + BACKDATE;
        let lifetime = (self.not_after - issued).max(0);
        now >= self.not_after - lifetime / 3
    }

    /// Whether `ca` signed this certificate (its issuer is `ca`'s subject and the signature
    /// checks out with `ca`'s key).
    pub fn issued_by(&self, ca: &Cert) -> bool {
        let (Ok(leaf), Ok(ca)) = (parse(&self.der, ""), parse(&ca.der, "")) else {
            return false;
        };
        leaf.issuer() == ca.subject() && leaf.verify_signature(Some(ca.public_key())).is_ok()
    }

    /// Whether the certificate names every one of `names` (DNS names and IP addresses).
    pub fn covers(&self, names: &[String]) -> bool {
        let Ok(parsed) = parse(&self.der, "") else {
            return false;
        };
        let mut dns = BTreeSet::new();
        let mut ips = BTreeSet::new();
        if let Ok(Some(san)) = parsed.subject_alternative_name() {
            for name in &san.value.general_names {
                match name {
                    GeneralName::DNSName(name) => {
                        dns.insert(name.to_ascii_lowercase());
                    }
                    GeneralName::IPAddress(bytes) => {
                        let ip = match bytes.len() {
                            4 => <[u8; 4]>::try_from(*bytes).ok().map(IpAddr::from),
                            16 => <[u8; 16]>::try_from(*bytes).ok().map(IpAddr::from),
                            _ => None,
                        };
                        ips.extend(ip);
                    }
                    _ => {}
                }
            }
        }
        names.iter().all(|name| match name.parse::<IpAddr>() {
            Ok(ip) => ips.contains(&ip),
            Err(_) => dns.contains(&name.to_ascii_lowercase()),
        })
    }

    /// Whether `key_pem` is this certificate's private key.
    pub fn matches_key(&self, key_pem: &str) -> bool {
        let (Ok(parsed), Ok(key)) = (parse(&self.der, ""), KeyPair::from_pem(key_pem)) else {
            return false;
        };
        public_key_of(parsed.public_key()) == key.public_key_raw()
    }
}

fn parse<'a>(
    der: &'a [u8],
    what: &str,
) -> Result<x509_parser::certificate::X509Certificate<'a>, MaterialError> {
    x509_parser::certificate::X509Certificate::from_der(der)
        .map(|(_, cert)| cert)
        .map_err(|e| MaterialError::Unreadable {
            what: what.to_string(),
            message: e.to_string(),
        })
}

fn public_key_of<'a>(spki: &'a SubjectPublicKeyInfo<'a>) -> &'a [u8] {
    &spki.subject_public_key.data
}

/// A CA and its key, as made or read from the Secret.
#[derive(Clone, Debug)]
pub struct Ca {
    pub cert: Cert,
    pub key_pem: String,
}

/// A serving certificate and its key.
#[derive(Clone, Debug)]
pub struct Leaf {
    pub cert: Cert,
    pub key_pem: String,
}

/// A new self-signed CA valid for `lifetime` seconds from `now`.
pub fn issue_ca(now: i64, lifetime: i64) -> Result<Ca, MaterialError> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params
        .distinguished_name
        .push(DnType::CommonName, "tandem webhook CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_before = at(now - BACKDATE)?;
    params.not_after = at(now + lifetime)?;
    let key = KeyPair::generate()?;
    let key_pem = key.serialize_pem();
    let cert = params.self_signed(&key)?;
    Ok(Ca {
        cert: Cert::from_der(cert.der().to_vec())?,
        key_pem,
    })
}

/// A serving certificate for `names` signed by `ca`, valid for `lifetime` seconds from `now`
/// but never past the CA's own end.
pub fn issue_leaf(
    ca: &Ca,
    names: &[String],
    now: i64,
    lifetime: i64,
) -> Result<Leaf, MaterialError> {
    let ca_key = KeyPair::from_pem(&ca.key_pem)?;
    let issuer = Issuer::from_ca_cert_der(&CertificateDer::from(ca.cert.der.as_slice()), ca_key)?;
    let mut params = crate::certs::serving_params(names)?;
    params.not_before = at(now - BACKDATE)?;
    params.not_after = at((now + lifetime).min(ca.cert.not_after))?;
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer)?;
    Ok(Leaf {
        cert: Cert::from_der(cert.der().to_vec())?,
        key_pem: key.serialize_pem(),
    })
}

fn at(unix: i64) -> Result<OffsetDateTime, MaterialError> {
    OffsetDateTime::from_unix_timestamp(unix).map_err(|e| MaterialError::Unreadable {
        what: "a validity date".into(),
        message: e.to_string(),
    })
}

/// The PEM text of a bundle.
pub fn bundle_pem(cas: &[Cert]) -> String {
    cas.iter().map(Cert::pem).collect()
}

/// What the Secret holds, read leniently: a part that cannot be read is absent, and the
/// planner replaces it.
#[derive(Clone, Debug, Default)]
pub struct Material {
    /// `ca.crt`, in order (empty when missing or unreadable).
    pub cas: Vec<Cert>,
    pub ca_key_pem: Option<String>,
    pub leaf: Option<Leaf>,
    /// Why parts were unreadable, for the log.
    pub problems: Vec<String>,
}

impl Material {
    /// Reads the four keys of the Secret's data.
    pub fn read(get: impl Fn(&str) -> Option<Vec<u8>>) -> Material {
        let mut material = Material::default();
        let text = |key: &str| get(key).and_then(|bytes| String::from_utf8(bytes).ok());
        match get(CA_CERT).map(|pem| Cert::parse_pem(&pem, CA_CERT)) {
            Some(Ok(cas)) => material.cas = cas,
            Some(Err(error)) => material.problems.push(error.to_string()),
            None => material.problems.push(format!("{CA_CERT} is missing")),
        }
        material.ca_key_pem = text(CA_KEY);
        let leaf = get(TLS_CERT).map(|pem| Cert::parse_pem(&pem, TLS_CERT));
        match (leaf, text(TLS_KEY)) {
            (Some(Ok(chain)), Some(key_pem)) if !chain.is_empty() => {
                let cert = chain.into_iter().next().expect("not empty");
                if cert.matches_key(&key_pem) {
                    material.leaf = Some(Leaf { cert, key_pem });
                } else {
                    material
                        .problems
                        .push(format!("{TLS_KEY} is not the key of {TLS_CERT}"));
                }
            }
            (Some(Err(error)), _) => material.problems.push(error.to_string()),
            _ => material
                .problems
                .push(format!("{TLS_CERT} or {TLS_KEY} is missing")),
        }
        material
    }

    /// The newest CA with its key, if the key is there and is that CA's and the CA is
    /// still valid.
    pub fn signer(&self, now: i64) -> Option<Ca> {
        let cert = self.cas.first()?;
        let key_pem = self.ca_key_pem.as_ref()?;
        (cert.matches_key(key_pem) && !cert.expired(now)).then(|| Ca {
            cert: cert.clone(),
            key_pem: key_pem.clone(),
        })
    }

    /// The Secret's data for these contents.
    pub fn data(cas: &[Cert], ca: &Ca, leaf: &Leaf) -> Vec<(&'static str, Vec<u8>)> {
        vec![
            (CA_CERT, bundle_pem(cas).into_bytes()),
            (CA_KEY, ca.key_pem.clone().into_bytes()),
            (TLS_CERT, leaf.cert.pem().into_bytes()),
            (TLS_KEY, leaf.key_pem.clone().into_bytes()),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;
    const DAY: i64 = 86_400;

    fn names() -> Vec<String> {
        vec!["tandem.tandem-system.svc".into(), "127.0.0.1".into()]
    }

    #[test]
    fn a_leaf_is_issued_by_its_ca_and_names_what_it_was_made_for() {
        let ca = issue_ca(NOW, 365 * DAY).unwrap();
        let other = issue_ca(NOW, 365 * DAY).unwrap();
        let leaf = issue_leaf(&ca, &names(), NOW, 30 * DAY).unwrap();
        assert!(leaf.cert.issued_by(&ca.cert));
        assert!(!leaf.cert.issued_by(&other.cert));
        assert!(leaf.cert.covers(&names()));
        assert!(leaf.cert.covers(&["TANDEM.tandem-system.svc".into()]));
        assert!(!leaf.cert.covers(&["tandem.other.svc".into()]));
        assert!(!leaf.cert.covers(&["127.0.0.2".into()]));
        assert!(leaf.cert.matches_key(&leaf.key_pem));
        assert!(!leaf.cert.matches_key(&ca.key_pem));
        assert_eq!(leaf.cert.not_after, NOW + 30 * DAY);
    }

    #[test]
    fn a_leaf_never_outlives_its_ca() {
        let ca = issue_ca(NOW, 10 * DAY).unwrap();
        let leaf = issue_leaf(&ca, &names(), NOW, 90 * DAY).unwrap();
        assert_eq!(leaf.cert.not_after, ca.cert.not_after);
    }

    #[test]
    fn renewal_is_due_when_a_third_of_the_lifetime_is_left() {
        let ca = issue_ca(NOW, 90 * DAY).unwrap();
        assert!(!ca.cert.renewal_due(NOW));
        assert!(!ca.cert.renewal_due(NOW + 59 * DAY));
        assert!(ca.cert.renewal_due(NOW + 60 * DAY));
        assert!(!ca.cert.expired(NOW + 89 * DAY));
        assert!(ca.cert.expired(NOW + 90 * DAY));
    }

    #[test]
    fn the_secret_round_trips_and_bad_parts_are_named() {
        let ca = issue_ca(NOW, 365 * DAY).unwrap();
        let old = issue_ca(NOW, 365 * DAY).unwrap();
        let leaf = issue_leaf(&ca, &names(), NOW, 30 * DAY).unwrap();
        let cas = vec![ca.cert.clone(), old.cert.clone()];
        let data: std::collections::HashMap<_, _> =
            Material::data(&cas, &ca, &leaf).into_iter().collect();
        let read = Material::read(|key| data.get(key).cloned());
        assert_eq!(read.cas, cas);
        assert_eq!(read.signer(NOW).unwrap().cert, ca.cert);
        assert_eq!(read.leaf.as_ref().unwrap().cert, leaf.cert);
        assert!(read.problems.is_empty(), "{:?}", read.problems);
        assert!(
            read.signer(ca.cert.not_after).is_none(),
            "an expired CA signs nothing"
        );

        let mut broken = data.clone();
        broken.insert(TLS_KEY, old.key_pem.clone().into_bytes());
        broken.insert(
            CA_CERT,
            b"-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n".to_vec(),
        );
        let read = Material::read(|key| broken.get(key).cloned());
        assert!(read.cas.is_empty() && read.leaf.is_none() && read.signer(NOW).is_none());
        let problems = read.problems.join("; ");
        assert!(problems.contains("ca.crt"), "{problems}");
        assert!(
            problems.contains("tls.key is not the key of tls.crt"),
            "{problems}"
        );
    }

    #[test]
    fn pem_is_what_rustls_reads_back() {
        let ca = issue_ca(NOW, DAY).unwrap();
        let bundle = bundle_pem(&[ca.cert.clone(), ca.cert.clone()]);
        let back = Cert::parse_pem(bundle.as_bytes(), "bundle").unwrap();
        assert_eq!(back, vec![ca.cert.clone(), ca.cert]);
    }
}
