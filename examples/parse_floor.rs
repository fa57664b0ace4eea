//! The bench kit's `limit` server plus the one piece of work tandem's contract forbids
//! skipping: reading the whole body as JSON (product.md: a malformed body is answered 400),
//! here with serde_json's cheapest full check (`IgnoredAny`). No routing, no pod, no log
//! line, no metrics. It measures how close to `limit` any conforming webhook can get on
//! this machine, for the plain (pass-through) fixture:
//!
//!     cargo build --release --example parse_floor
//!     ../shared/bench/run --repeat 3 --protocols h1 --fixtures plain -- \
//!         target/release/examples/parse_floor {addr} {cert} {key}

use std::{convert::Infallible, sync::Arc};

use http_body_util::{BodyExt, Full};
use hyper::{
    Request, Response, StatusCode,
    body::{Bytes, Incoming},
    header::CONTENT_TYPE,
    server::conn::{http1, http2},
    service::service_fn,
};
use hyper_util::rt::{TokioExecutor, TokioIo};
use memchr::memmem;
use rustls::{
    ServerConfig,
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

const HEAD: &[u8] =
    br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":""#;
const TAIL: &[u8] = br#"","allowed":true}}"#;

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(addr), Some(cert), Some(key)) = (args.next(), args.next(), args.next()) else {
        eprintln!("usage: parse_floor ADDR CERT KEY");
        std::process::exit(2);
    };
    let certs = CertificateDer::pem_file_iter(&cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .expect("reading the certificate");
    let key = PrivateKeyDer::from_pem_file(&key).expect("reading the key");
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("certificate and key");
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind(&addr).await.expect("bind");
    eprintln!("parse_floor listening on https://{addr}");
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
            let io = TokioIo::new(tls);
            let service = service_fn(review);
            let _ = if h2 {
                http2::Builder::new(TokioExecutor::new())
                    .serve_connection(io, service)
                    .await
            } else {
                http1::Builder::new().serve_connection(io, service).await
            };
        });
    }
}

async fn review(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let body = match request.into_body().collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => return Ok(bad_request()),
    };
    // The only difference from `limit`.
    if serde_json::from_slice::<serde::de::IgnoredAny>(&body).is_err() {
        return Ok(bad_request());
    }
    let uid = request_uid(&body).unwrap_or_default();
    let mut answer = Vec::with_capacity(HEAD.len() + uid.len() + TAIL.len());
    answer.extend_from_slice(HEAD);
    answer.extend_from_slice(uid);
    answer.extend_from_slice(TAIL);
    Ok(Response::builder()
        .header(CONTENT_TYPE, "application/json")
        .body(answer.into())
        .expect("a valid response"))
}

fn bad_request() -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::default());
    *response.status_mut() = StatusCode::BAD_REQUEST;
    response
}

/// The value of the first `"uid"` key after `"request"`, found as `limit` finds it.
fn request_uid(body: &[u8]) -> Option<&[u8]> {
    let after_request = memmem::find(body, br#""request""#)? + 9;
    let rest = &body[after_request..];
    let after_key = &rest[memmem::find(rest, br#""uid""#)? + 5..];
    let value = after_key.iter().position(|b| !b" \t\r\n:".contains(b))?;
    let quoted = after_key[value..].strip_prefix(b"\"")?;
    Some(&quoted[..memchr::memchr(b'"', quoted)?])
}
