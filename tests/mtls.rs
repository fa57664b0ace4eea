//! Client certificates (`--client-ca`): only clients with a certificate signed by the
//! configured CA are served, as when the API server is set up to authenticate to webhooks.

mod common;

use std::{fs, path::Path};

use common::{Options, TestServer, bench_fixture};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rstest::rstest;

/// A CA for client certificates: writes its certificate to `path`, returns the issuer.
fn client_ca(path: &Path) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "test client CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
    let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
    fs::write(path, issuer.pem()).unwrap();
    issuer
}

/// A client certificate for the API server, signed by `issuer`, as PEM key + certificate.
fn client_identity(issuer: &CertifiedIssuer<'static, KeyPair>) -> reqwest::Identity {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "kube-apiserver");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, issuer).unwrap();
    let pem = key.serialize_pem() + &cert.pem();
    reqwest::Identity::from_pem(pem.as_bytes()).unwrap()
}

async fn send(server: &TestServer, client: &reqwest::Client) -> reqwest::Result<u16> {
    let response = client
        .post(server.url())
        .header("content-type", "application/json")
        .body(bench_fixture("typical").to_string())
        .send()
        .await?;
    Ok(response.status().as_u16())
}

#[rstest]
#[tokio::test]
async fn only_clients_with_a_certificate_from_the_client_ca_are_served(
    #[values(false, true)] http2: bool,
) {
    common::install_crypto();
    let dir = tempfile::tempdir().unwrap();
    let trusted = client_ca(&dir.path().join("client-ca.crt"));
    let stranger = client_ca(&dir.path().join("other-ca.crt"));
    let server = TestServer::start_with(Options {
        client_ca: Some(dir.path().join("client-ca.crt")),
        ..Options::default()
    })
    .await;
    let with = |identity: Option<reqwest::Identity>| {
        let builder = common::client_builder(&server.ca, http2);
        match identity {
            Some(identity) => builder.identity(identity),
            None => builder,
        }
        .build()
        .unwrap()
    };

    let anonymous = send(&server, &with(None)).await;
    assert!(
        anonymous.is_err(),
        "served without a client certificate: {anonymous:?}"
    );
    let foreign = send(&server, &with(Some(client_identity(&stranger)))).await;
    assert!(
        foreign.is_err(),
        "served a certificate from another CA: {foreign:?}"
    );

    let client = with(Some(client_identity(&trusted)));
    assert_eq!(send(&server, &client).await.unwrap(), 200);
    // Refused handshakes leave the server serving: once more, on the open connection.
    assert_eq!(send(&server, &client).await.unwrap(), 200);
    server.stop().await;
}
