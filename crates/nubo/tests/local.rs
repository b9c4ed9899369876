//! On the node's own machine: the state dir and everything in it belong
//! to the node's user alone, and a token others can read is refused.

mod common;

use common::control::NodeProc;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn the_state_dir_is_private_and_a_shared_token_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let mut node = NodeProc::start(&state, &[]);
    assert_eq!(mode(&state), 0o700, "state dir");
    for f in [
        "token",
        "nubo.db",
        "kv.db",
        "queues.db",
        "tasks.db",
        "cron.db",
        "blobs.db",
    ] {
        assert_eq!(mode(&state.join(f)), 0o600, "{f}");
    }
    node.kill9();

    std::fs::set_permissions(state.join("token"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = common::nubo()
        .arg("node")
        .arg("--state")
        .arg(&state)
        .args(["--listen", "127.0.0.1:0", "--control", "127.0.0.1:0"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a node started with a shared token");
    assert!(
        err.contains("can be read by others") && err.contains("chmod 600"),
        "{err}"
    );
}

/// A secret variable's value is encrypted in the node's state: no file of
/// the state dir holds it, and the component still reads it.
#[tokio::test(flavor = "multi_thread")]
async fn secret_values_are_encrypted_at_rest() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let node = NodeProc::start(&state, &[]);
    let app = common::AppDir::new(&common::probe_app("", ""));
    let (code, out, err) = node.cli(
        &["apply", app.path().to_str().unwrap(), "--auto-approve"],
        &[("NUBO_VAR_SECRET", "pa55-w0rd-at-rest")],
    );
    assert_eq!(code, 0, "{out}{err}");
    let r = common::get(&node.url("/probe/config?token")).await;
    assert_eq!(r.text(), "pa55-w0rd-at-rest");
    assert_eq!(mode(&state.join("secrets.key")), 0o600);
    let mut stack = vec![state.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(bytes) = std::fs::read(&p) {
                let found = bytes.windows(17).any(|w| w == b"pa55-w0rd-at-rest");
                assert!(!found, "{} holds the secret in the clear", p.display());
            }
        }
    }
}

/// A TLS endpoint on loopback, with a certificate for `localhost` that no
/// CA signed, in front of `backend`: (its port, the certificate as PEM).
async fn tls_proxy(backend: String) -> (u16, String) {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let pem = cert.cert.pem();
    let config = tokio_rustls::rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
        tokio_rustls::rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![cert.cert.der().clone()],
        tokio_rustls::rustls::pki_types::PrivateKeyDer::Pkcs8(
            cert.signing_key.serialize_der().into(),
        ),
    )
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (acceptor, backend) = (acceptor.clone(), backend.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(stream).await else {
                    return;
                };
                let Ok(mut plain) = tokio::net::TcpStream::connect(&backend).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    (port, pem)
}

/// `nubo` commands reach a node behind `https://`, trusting the CAs the
/// system (here `SSL_CERT_FILE`) trusts, and refuse a certificate no
/// trusted CA vouches for.
#[tokio::test(flavor = "multi_thread")]
async fn the_cli_speaks_https_and_checks_the_certificate() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let node = NodeProc::start(&state, &[]);
    let backend = node.control.trim_start_matches("http://").to_string();
    let (port, pem) = tls_proxy(backend).await;
    let trusted = tmp.path().join("trusted.pem");
    std::fs::write(&trusted, pem).unwrap();
    let other = tmp.path().join("other.pem");
    let stranger = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    std::fs::write(&other, stranger.cert.pem()).unwrap();

    let run = |ca: std::path::PathBuf| {
        let mut cmd = common::nubo();
        cmd.args(["ps", "--node", &format!("https://localhost:{port}")])
            .arg("--state")
            .arg(&state)
            .env("SSL_CERT_FILE", ca)
            .env_remove("SSL_CERT_DIR");
        tokio::task::spawn_blocking(move || cmd.output().unwrap())
    };
    let out = run(trusted).await.unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}\n{stderr}");

    let out = run(other).await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "an unknown certificate was accepted");
    assert!(
        stderr.contains("cannot reach the node at https://localhost")
            && stderr.contains("certificate"),
        "{stderr}"
    );
}
