//! Certificate rotation while serving: files overwritten in place, the Kubernetes Secret
//! volume's `..data` symlink swap (as the kubelet's AtomicWriter does it, and so as
//! cert-manager's renewals arrive), and a broken pair that must not replace a good one.
//! New handshakes see the new certificate; connections opened before keep theirs.

mod common;

use std::{
    fs,
    os::unix::fs::symlink,
    path::{Path, PathBuf},
    time::Duration,
};

use common::{Options, TestServer, bench_fixture};
use reqwest::StatusCode;
use rstest::rstest;
use rustls::pki_types::{CertificateDer, pem::PemObject};
use tandem::{certs, server::tls::Files};
use tokio::time::Instant;

const NAMES: [&str; 2] = ["localhost", "127.0.0.1"];

fn names() -> Vec<String> {
    NAMES.map(String::from).to_vec()
}

/// The DER of the first certificate in a PEM file.
fn der(pem_file: &Path) -> Vec<u8> {
    let pem = fs::read(pem_file).unwrap();
    CertificateDer::pem_slice_iter(&pem)
        .next()
        .expect("a certificate")
        .unwrap()
        .to_vec()
}

/// A client trusting only `ca`, reporting the peer certificate of each response. A new
/// client is a new handshake (no pooled connection, no session to resume).
fn client(ca: &Path, http2: bool) -> reqwest::Client {
    common::client_builder(ca, http2)
        .tls_info(true)
        .build()
        .unwrap()
}

/// Sends a review; the status and the certificate the server presented on that connection.
async fn review(server: &TestServer, client: &reqwest::Client) -> reqwest::Result<(u16, Vec<u8>)> {
    let response = client
        .post(server.url())
        .header("content-type", "application/json")
        .body(bench_fixture("typical").to_string())
        .send()
        .await?;
    let peer = response
        .extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|info| info.peer_certificate())
        .expect("tls_info is on")
        .to_vec();
    let status = response.status().as_u16();
    response.bytes().await?;
    Ok((status, peer))
}

/// Waits until a fresh handshake trusting `ca` is served `expected`.
async fn until_served(server: &TestServer, ca: &Path, expected: &[u8]) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok((200, peer)) = review(server, &client(ca, false)).await
            && peer == expected
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the new certificate is not served within 10s"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

const EXPIRY: &str = "tandem_tls_certificate_expiry_timestamp_seconds";

/// A certificate's notAfter, Unix seconds, as the gauge reports it.
fn not_after(der: &[u8]) -> f64 {
    let (_, cert) = x509_parser::parse_x509_certificate(der).unwrap();
    cert.validity().not_after.timestamp() as f64
}

fn metric(server: &TestServer, series: &str) -> f64 {
    server
        .metrics
        .encode()
        .lines()
        .find_map(|line| {
            line.strip_prefix(series)?
                .strip_prefix(' ')?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0.0)
}

#[rstest]
#[tokio::test]
async fn files_overwritten_in_place_are_served_to_new_handshakes_only(
    #[values(false, true)] http2: bool,
) {
    let server = TestServer::start().await;
    let cert = server.cert_dir.join("tls.crt");
    let key = server.cert_dir.join("tls.key");
    let old = der(&cert);
    assert_eq!(server.resolver.current().cert[0].as_ref(), &old[..]);
    assert_eq!(metric(&server, EXPIRY), not_after(&old));
    let before = client(&server.ca, http2);
    assert_eq!(review(&server, &before).await.unwrap(), (200, old.clone()));

    // A new pair from a new CA (and another end date): the old client cannot complete a
    // handshake with it.
    let elsewhere = tempfile::tempdir().unwrap();
    let next = certs::write(elsewhere.path(), &names(), 3).unwrap();
    let new = der(&next.cert);
    fs::write(&cert, fs::read(&next.cert).unwrap()).unwrap();
    fs::write(&key, fs::read(&next.key).unwrap()).unwrap();

    until_served(&server, &next.ca_cert, &new).await;
    assert_eq!(server.resolver.current().cert[0].as_ref(), &new[..]);
    assert!(metric(&server, r#"tandem_tls_reloads_total{result="ok"}"#) >= 1.0);
    // The expiry gauge follows (set right after the swap, in the same task).
    let deadline = Instant::now() + Duration::from_secs(5);
    while metric(&server, EXPIRY) != not_after(&new) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(metric(&server, EXPIRY), not_after(&new));
    assert_ne!(not_after(&new), not_after(&old));
    // The connection opened before is still up, still with the old certificate.
    assert_eq!(review(&server, &before).await.unwrap(), (200, old));
    // And a handshake trusting only the old CA now fails.
    assert!(review(&server, &client(&server.ca, http2)).await.is_err());
    server.stop().await;
}

/// A directory laid out as the kubelet writes a Secret volume:
///
/// ```text
/// ..2026_11_23_10_00_00.1/{ca.crt,tls.crt,tls.key}
/// ..data -> ..2026_11_23_10_00_00.1
/// tls.crt -> ..data/tls.crt   (and tls.key, ca.crt)
/// ```
struct SecretVolume {
    dir: PathBuf,
    generation: u32,
}

impl SecretVolume {
    fn new(dir: &Path) -> (SecretVolume, certs::Written) {
        let mut volume = SecretVolume {
            dir: dir.to_path_buf(),
            generation: 0,
        };
        let written = volume.payload();
        symlink(
            written.cert.parent().unwrap().file_name().unwrap(),
            dir.join("..data"),
        )
        .unwrap();
        for file in ["ca.crt", "tls.crt", "tls.key"] {
            symlink(Path::new("..data").join(file), dir.join(file)).unwrap();
        }
        (volume, written)
    }

    /// A new timestamped directory with a new pair (and a new CA).
    fn payload(&mut self) -> certs::Written {
        self.generation += 1;
        let timestamped = format!(
            "..2026_11_23_10_0{}_00.{}",
            self.generation, self.generation
        );
        let written = certs::write(&self.dir.join(timestamped), &names(), 2).unwrap();
        // A Secret holds only these three keys.
        fs::remove_file(&written.ca_key).unwrap();
        written
    }

    /// Rotates as the kubelet's AtomicWriter does: write the new payload beside the old,
    /// point `..data_tmp` at it, rename that over `..data`, remove the old payload.
    fn rotate(&mut self) -> certs::Written {
        let old = fs::read_link(self.dir.join("..data")).unwrap();
        let written = self.payload();
        let tmp = self.dir.join("..data_tmp");
        symlink(written.cert.parent().unwrap().file_name().unwrap(), &tmp).unwrap();
        fs::rename(&tmp, self.dir.join("..data")).unwrap();
        fs::remove_dir_all(self.dir.join(old)).unwrap();
        written
    }
}

#[tokio::test]
async fn a_secret_volume_symlink_swap_is_picked_up_every_time() {
    let dir = tempfile::tempdir().unwrap();
    let (mut volume, first) = SecretVolume::new(dir.path());
    let files = Files {
        cert: dir.path().join("tls.crt"),
        key: dir.path().join("tls.key"),
    };
    let server = TestServer::start_with(Options {
        certificate: Some((files, dir.path().join("ca.crt"))),
        ..Options::default()
    })
    .await;
    let first_der = der(&first.cert);
    let before = client(&first.ca_cert, true);
    assert_eq!(
        review(&server, &before).await.unwrap(),
        (200, first_der.clone())
    );

    // Twice: a watch that follows the first `..data` it saw would miss the second swap.
    for _ in 0..2 {
        let next = volume.rotate();
        // The volume's own path now leads to the new pair.
        assert_eq!(der(&dir.path().join("tls.crt")), der(&next.cert));
        until_served(&server, &next.ca_cert, &der(&next.cert)).await;
    }
    assert!(metric(&server, r#"tandem_tls_reloads_total{result="ok"}"#) >= 2.0);
    // The first connection outlived both rotations (its payload directory is long gone).
    assert_eq!(review(&server, &before).await.unwrap(), (200, first_der));
    server.stop().await;
}

#[tokio::test]
async fn a_broken_pair_keeps_the_old_certificate_and_counts_an_error() {
    let server = TestServer::start().await;
    let cert = server.cert_dir.join("tls.crt");
    let key = server.cert_dir.join("tls.key");
    let old = der(&cert);
    let elsewhere = tempfile::tempdir().unwrap();
    let next = certs::write(elsewhere.path(), &names(), 2).unwrap();

    fs::write(&cert, fs::read(&next.cert).unwrap()).unwrap();
    fs::write(
        &key,
        "-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric(&server, r#"tandem_tls_reloads_total{result="error"}"#) < 1.0 {
        assert!(
            Instant::now() < deadline,
            "no failed reload counted within 10s"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(server.resolver.current().cert[0].as_ref(), &old[..]);
    assert_eq!(
        review(&server, &client(&server.ca, false)).await.unwrap(),
        (200, old)
    );
    assert_eq!(
        metric(&server, r#"tandem_tls_reloads_total{result="ok"}"#),
        0.0
    );

    // Once the key is fixed, the new pair is taken.
    fs::write(&key, fs::read(&next.key).unwrap()).unwrap();
    until_served(&server, &next.ca_cert, &der(&next.cert)).await;
    let status = review(&server, &client(&next.ca_cert, true))
        .await
        .unwrap()
        .0;
    assert_eq!(StatusCode::from_u16(status).unwrap(), StatusCode::OK);
    server.stop().await;
}
