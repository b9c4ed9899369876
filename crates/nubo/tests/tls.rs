//! TLS on the app listener, over real connections to a real node:
//! `nubo node --tls-cert --tls-key` serves HTTP/2 and HTTP/1.1 by ALPN
//! with a certificate made at test time, gives the component `https`
//! URIs, sets the session cookie `Secure` with the `__Host-` prefix, and
//! takes a new certificate when the files change.

mod common;

use bytes::Bytes;
use common::AppDir;
use common::control::NodeProc;
use http_body_util::BodyExt;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::sync::Arc;
use tokio_rustls::rustls;

/// A self-signed certificate for `localhost`: (certificate PEM, key PEM,
/// certificate DER).
fn certificate() -> (String, String, rustls::pki_types::CertificateDer<'static>) {
    let c = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    (
        c.cert.pem(),
        c.signing_key.serialize_pem(),
        c.cert.der().clone(),
    )
}

/// A TLS connection to `port` that trusts only `cert`, offering `alpn`.
async fn connect(
    port: u16,
    cert: &rustls::pki_types::CertificateDer<'static>,
    alpn: &[&[u8]],
) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, std::io::Error> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.clone()).unwrap();
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    connector.connect(name, tcp).await
}

/// One request over `tls`: (HTTP version, status, set-cookie, body).
async fn send(
    tls: tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    method: &str,
    path: &str,
    body: &str,
) -> (http::Version, u16, String, String) {
    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
    let req = http::Request::builder()
        .method(method)
        .uri(format!("https://localhost{path}"))
        .header("host", "localhost")
        .body(http_body_util::Full::new(Bytes::from(body.to_string())))
        .unwrap();
    let io = TokioIo::new(tls);
    let resp = if h2 {
        let (mut s, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
            .await
            .unwrap();
        tokio::spawn(conn);
        s.send_request(req).await.unwrap()
    } else {
        let (mut s, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
        tokio::spawn(conn);
        s.send_request(req).await.unwrap()
    };
    let version = resp.version();
    let status = resp.status().as_u16();
    let cookie = resp
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (
        version,
        status,
        cookie,
        String::from_utf8_lossy(&body).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn apps_are_served_over_tls_with_http2_and_certificates_reload() {
    let s = tempfile::tempdir().unwrap();
    let (cert_pem, key_pem, der) = certificate();
    let (cert_file, key_file) = (s.path().join("cert.pem"), s.path().join("key.pem"));
    std::fs::write(&cert_file, &cert_pem).unwrap();
    std::fs::write(&key_file, &key_pem).unwrap();
    let node = NodeProc::start(
        &s.path().join("state"),
        &[
            "--tls-cert",
            cert_file.to_str().unwrap(),
            "--tls-key",
            key_file.to_str().unwrap(),
        ],
    );
    assert!(node.url("").starts_with("https://"), "{}", node.url(""));
    let port: u16 = node.url("").rsplit(':').next().unwrap().parse().unwrap();
    node.apply(&AppDir::new(&format!(
        "[app]\nname = \"secure\"\n\n[auth]\naccounts = true\n\n[component.probe]\nsource = \"{}\"\n\n[[http]]\nroute = \"/probe/...\"\ncomponent = \"probe\"\n",
        common::wasm("probe").display()
    )));

    // HTTP/2 by ALPN; the component sees an https URI.
    let tls = connect(port, &der, &[b"h2", b"http/1.1"]).await.unwrap();
    let (version, status, _, body) = send(tls, "GET", "/probe/echo", "").await;
    assert_eq!((version, status), (http::Version::HTTP_2, 200), "{body}");
    assert!(
        body.starts_with("GET https://localhost/probe/echo"),
        "{body}"
    );
    // HTTP/1.1 for a client that offers only it.
    let tls = connect(port, &der, &[b"http/1.1"]).await.unwrap();
    let (version, status, _, _) = send(tls, "GET", "/probe/echo", "").await;
    assert_eq!((version, status), (http::Version::HTTP_11, 200));

    // The session cookie is Secure, with the __Host- prefix.
    let tls = connect(port, &der, &[b"h2"]).await.unwrap();
    let creds = r#"{"email":"ada@example.com","password":"correct horse"}"#;
    let (_, status, cookie, body) = send(tls, "POST", "/auth/signup", creds).await;
    assert_eq!(status, 201, "{body}");
    assert!(cookie.starts_with("__Host-nubo_session="), "{cookie}");
    assert!(
        cookie.contains("; Secure") && cookie.contains("Path=/;"),
        "{cookie}"
    );

    // A new certificate written over the files is served to new connections.
    let (cert2, key2, der2) = certificate();
    std::fs::write(&key_file, &key2).unwrap();
    std::fs::write(&cert_file, &cert2).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        if connect(port, &der2, &[b"h2"]).await.is_ok() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the new certificate was never served"
        );
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
    assert!(connect(port, &der, &[b"h2"]).await.is_err());
    node.wait_log("TLS certificate reloaded");
}

#[test]
fn a_key_that_does_not_load_is_refused_at_start() {
    let s = tempfile::tempdir().unwrap();
    let (cert_pem, _, _) = certificate();
    let cert = s.path().join("cert.pem");
    std::fs::write(&cert, cert_pem).unwrap();
    let key = s.path().join("key.pem");
    std::fs::write(&key, "not a key").unwrap();
    let out = common::nubo()
        .args([
            "node",
            "--listen",
            "127.0.0.1:0",
            "--control",
            "127.0.0.1:0",
            "--state",
        ])
        .arg(s.path().join("state"))
        .args([
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot serve TLS") && err.contains("key.pem holds no PEM private key"),
        "{err}"
    );
}
