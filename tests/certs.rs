//! `tandem certs` as the real binary (files, modes, caBundle, names, validity), a server
//! using what it wrote, and `tandem serve`'s development certificate.

mod common;

use std::{
    fs,
    os::unix::fs::PermissionsExt as _,
    path::Path,
    process::{Command, Output},
    time::Duration,
};

use base64::Engine as _;
use common::{Options, TestServer, bench_fixture};
use tandem::server::tls::Files;
use x509_parser::{certificate::X509Certificate, extensions::GeneralName, pem::parse_x509_pem};

fn tandem(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tandem"))
        .args(args)
        .output()
        .expect("the tandem binary runs")
}

/// `tandem certs --service tandem --namespace tandem-system --out DIR [extra…]`.
fn certs(out: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "certs",
        "--service",
        "tandem",
        "--namespace",
        "tandem-system",
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let output = tandem(&args);
    assert!(
        output.status.success(),
        "tandem certs failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Parses the first certificate of a PEM file and hands it to `check`.
fn with_cert<T>(path: &Path, check: impl FnOnce(&X509Certificate<'_>) -> T) -> T {
    let pem = fs::read(path).unwrap();
    let (_, pem) = parse_x509_pem(&pem).expect("PEM");
    let cert = pem.parse_x509().expect("an X.509 certificate");
    check(&cert)
}

fn dns_names(cert: &X509Certificate<'_>) -> Vec<String> {
    let san = cert
        .subject_alternative_name()
        .expect("a well-formed SAN")
        .expect("a SAN extension");
    san.value
        .general_names
        .iter()
        .filter_map(|name| match name {
            GeneralName::DNSName(dns) => Some(dns.to_string()),
            _ => None,
        })
        .collect()
}

fn validity_days(cert: &X509Certificate<'_>) -> f64 {
    let validity = cert.validity();
    (validity.not_after.timestamp() - validity.not_before.timestamp()) as f64 / 86_400.0
}

#[test]
fn certs_writes_a_ca_and_a_serving_pair_and_prints_the_ca_bundle() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let output = certs(&out, &[]);
    let stdout = String::from_utf8(output.stdout).unwrap();

    let ca_pem = fs::read(out.join("ca.crt")).unwrap();
    let bundle = base64::engine::general_purpose::STANDARD.encode(&ca_pem);
    let printed = stdout
        .lines()
        .skip_while(|line| line.trim() != "caBundle:")
        .nth(1)
        .unwrap_or_else(|| panic!("no caBundle in:\n{stdout}"));
    assert_eq!(printed.trim(), bundle);
    for (file, expected) in [
        ("ca.crt", 0o644),
        ("ca.key", 0o600),
        ("tls.crt", 0o644),
        ("tls.key", 0o600),
    ] {
        assert_eq!(mode(&out.join(file)), expected, "{file}");
    }

    with_cert(&out.join("ca.crt"), |ca| assert!(ca.is_ca()));
    with_cert(&out.join("tls.crt"), |cert| {
        assert!(!cert.is_ca());
        assert_eq!(
            dns_names(cert),
            [
                "tandem.tandem-system.svc",
                "tandem.tandem-system.svc.cluster.local",
                "tandem.tandem-system",
                "tandem"
            ]
        );
        // The default is a year.
        assert!(
            (validity_days(cert) - 365.0).abs() < 1.0,
            "{}",
            validity_days(cert)
        );
    });
}

#[test]
fn days_sets_the_validity_and_the_ca_lives_ten_times_as_long() {
    let dir = tempfile::tempdir().unwrap();
    certs(dir.path(), &["--days", "7"]);
    let serving = with_cert(&dir.path().join("tls.crt"), validity_days);
    let ca = with_cert(&dir.path().join("ca.crt"), validity_days);
    // Both start an hour back, against clock skew.
    assert!((serving - 7.0).abs() < 0.1, "{serving} days");
    assert!((ca - 70.0).abs() < 0.1, "{ca} days");
}

#[test]
fn rerunning_certs_leaves_the_keys_private() {
    let dir = tempfile::tempdir().unwrap();
    certs(dir.path(), &[]);
    let first_ca = fs::read(dir.path().join("ca.crt")).unwrap();
    // Someone loosened the modes (or the files came from elsewhere).
    for key in ["ca.key", "tls.key"] {
        fs::set_permissions(dir.path().join(key), fs::Permissions::from_mode(0o644)).unwrap();
    }
    certs(dir.path(), &[]);
    assert_ne!(
        fs::read(dir.path().join("ca.crt")).unwrap(),
        first_ca,
        "a new CA"
    );
    for key in ["ca.key", "tls.key"] {
        assert_eq!(mode(&dir.path().join(key)), 0o600, "{key}");
    }
}

#[test]
fn certs_refuses_a_validity_it_cannot_write() {
    let dir = tempfile::tempdir().unwrap();
    for days in ["0", "4000000000"] {
        let output = tandem(&[
            "certs",
            "--service",
            "tandem",
            "--namespace",
            "tandem-system",
            "--out",
            dir.path().to_str().unwrap(),
            "--days",
            days,
        ]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "--days {days}: {stderr}");
        assert!(stderr.contains("--days"), "--days {days}: {stderr}");
        assert!(!stderr.contains("panicked"), "--days {days}: {stderr}");
    }
}

async fn status_for(server: &TestServer, ca: &Path, name: &str) -> reqwest::Result<u16> {
    let client = common::client_builder(ca, true)
        .resolve(name, server.addr)
        .build()
        .unwrap();
    let response = client
        .post(format!("https://{name}:{}/mutate", server.addr.port()))
        .header("content-type", "application/json")
        .body(bench_fixture("typical").to_string())
        .send()
        .await?;
    Ok(response.status().as_u16())
}

#[tokio::test]
async fn a_server_with_the_written_pair_is_trusted_for_the_service_names_only() {
    let dir = tempfile::tempdir().unwrap();
    certs(dir.path(), &[]);
    let ca = dir.path().join("ca.crt");
    let server = TestServer::start_with(Options {
        certificate: Some((
            Files {
                cert: dir.path().join("tls.crt"),
                key: dir.path().join("tls.key"),
            },
            ca.clone(),
        )),
        ..Options::default()
    })
    .await;
    for name in [
        "tandem.tandem-system.svc",
        "tandem.tandem-system.svc.cluster.local",
    ] {
        assert_eq!(status_for(&server, &ca, name).await.unwrap(), 200, "{name}");
    }
    for name in ["other.tandem-system.svc", "tandem.default.svc", "localhost"] {
        let error = status_for(&server, &ca, name)
            .await
            .expect_err("the certificate is not for this name");
        assert!(error.is_connect(), "{name}: {error:?}");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_without_tls_flags_writes_and_serves_a_development_certificate() {
    common::install_crypto();
    let dir = tempfile::tempdir().unwrap();
    let dev = dir.path().join("certs/dev");
    let start = || tokio::task::block_in_place(|| common::binary::serve_dev(&dev, "json"));

    let (mut tandem, port) = start();
    // It says where the certificate is and which CA to trust.
    let warning = tokio::task::block_in_place(|| {
        tandem.wait_for_line(Duration::from_secs(5), |line| {
            common::binary::field(line, "message")
                .is_some_and(|m| m.contains("development certificate"))
        })
    });
    let cert = dev.join("tls.crt");
    let ca = dev.join("ca.crt");
    assert_eq!(
        common::binary::field(&warning, "cert").as_deref(),
        cert.to_str()
    );
    assert_eq!(
        common::binary::field(&warning, "ca").as_deref(),
        ca.to_str()
    );
    assert_eq!(mode(&dev.join("tls.key")), 0o600);

    for host in ["localhost", "127.0.0.1"] {
        for http2 in [false, true] {
            let response = common::client(&ca, http2)
                .post(format!("https://{host}:{port}/mutate"))
                .header("content-type", "application/json")
                .body(bench_fixture("typical").to_string())
                .send()
                .await
                .unwrap_or_else(|e| panic!("{host}: {e:?}"));
            assert_eq!(response.status(), 200, "{host}");
        }
    }
    tandem.terminate();
    assert!(tokio::task::block_in_place(|| tandem.wait(Duration::from_secs(30))).success());

    // A second start reuses the pair while it is there.
    let served = fs::read(&cert).unwrap();
    let (mut tandem, port) = start();
    assert_eq!(fs::read(&cert).unwrap(), served);
    let response = common::client(&ca, false)
        .post(format!("https://localhost:{port}/mutate"))
        .header("content-type", "application/json")
        .body(bench_fixture("typical").to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    tandem.terminate();
    assert!(tokio::task::block_in_place(|| tandem.wait(Duration::from_secs(30))).success());
}
