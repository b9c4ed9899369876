//! Bearer credentials at the gateway, over real HTTP to a real node:
//! API keys made and revoked with `nubo auth keys`, accounts managed with
//! `nubo auth users` and `nubo auth sessions`, and JWTs checked against
//! an issuer's JWKS (served by another app on the node) or a secret.

mod common;

use base64::Engine as _;
use bytes::Bytes;
use common::control::NodeProc;
use common::{AppDir, Reply, request, wasm};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use ring::signature::KeyPair as _;
use serde_json::{Value, json};

const HOST: &str = "club.test";

fn app(extra_auth: &str) -> AppDir {
    AppDir::new(&format!(
        r#"
[app]
name = "club"
hosts = ["{HOST}"]

[variables]
jwt_secret = {{ default = "a-test-secret-of-some-length", secret = true }}

[auth]
accounts = true
{extra_auth}

[component.probe]
source = "{}"

[[http]]
route = "/members/..."
component = "probe"
auth = "required"

[[http]]
route = "/admin/..."
component = "probe"
roles = ["admin"]
"#,
        wasm("probe").display()
    ))
}

async fn call(
    node: &NodeProc,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Reply {
    let mut h = vec![("host", HOST)];
    h.extend_from_slice(headers);
    request(method, &node.url(path), &h, body.as_bytes()).await
}

fn session(r: &Reply) -> String {
    let cookie = r.header("set-cookie").unwrap_or_default();
    cookie.split(';').next().unwrap_or_default().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn accounts_sessions_and_api_keys_are_managed_from_the_cli() {
    let s = tempfile::tempdir().unwrap();
    let node = NodeProc::start(s.path(), &[]);
    node.apply(&app("api_keys = true"));
    let creds = json!({ "email": "ada@example.com", "password": "correct horse" }).to_string();
    let r = call(&node, "POST", "/auth/signup", &[], &creds).await;
    assert_eq!(r.status, 201, "{}", r.text());
    let cookie = session(&r);
    let with = [("cookie", cookie.as_str())];

    let (code, out, err) = node.cli(&["auth", "users", "list", "club"], &[]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("ada@example.com") && out.contains("roles: none"),
        "{out}"
    );

    // A role takes effect on the next request of a running session.
    assert_eq!(
        call(&node, "GET", "/admin/echo", &with, "").await.status,
        403
    );
    let (code, out, err) = node.cli(
        &[
            "auth",
            "users",
            "set-roles",
            "club",
            "ada@example.com",
            "admin",
        ],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("roles admin"), "{out}");
    let r = call(&node, "GET", "/admin/nubo-headers", &with, "").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("nubo-user-roles=admin"), "{}", r.text());

    // Revoking ends the session; signing in again works.
    let (code, _, err) = node.cli(
        &["auth", "sessions", "revoke", "club", "ada@example.com"],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        call(&node, "GET", "/members/echo", &with, "").await.status,
        401
    );
    let r = call(&node, "POST", "/auth/login", &[], &creds).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let cookie = session(&r);

    // Disabled: the session stops and sign-in is refused.
    let (code, _, err) = node.cli(
        &["auth", "users", "disable", "club", "ada@example.com"],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        call(&node, "GET", "/members/echo", &[("cookie", &cookie)], "")
            .await
            .status,
        401
    );
    assert_eq!(
        call(&node, "POST", "/auth/login", &[], &creds).await.status,
        401
    );
    let (code, _, err) = node.cli(&["auth", "users", "delete", "club", "ada@example.com"], &[]);
    assert_eq!(code, 0, "{err}");
    let (_, out, _) = node.cli(&["auth", "users", "list", "club"], &[]);
    assert!(out.contains("no accounts"), "{out}");
    let (code, _, err) = node.cli(&["auth", "users", "delete", "club", "ada@example.com"], &[]);
    assert_ne!(code, 0);
    assert!(err.contains("has no account `ada@example.com`"), "{err}");

    // An API key: shown once, sent either way, revoked.
    let (code, key, err) = node.cli(
        &[
            "auth",
            "keys",
            "create",
            "club",
            "--name",
            "ci",
            "--roles",
            "admin,deploy",
        ],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    let key = key.trim().to_string();
    assert!(
        key.starts_with("nubo_") && err.contains("shown only now"),
        "{key} {err}"
    );
    let bearer = format!("Bearer {key}");
    for h in [
        ("authorization", bearer.as_str()),
        ("x-api-key", key.as_str()),
    ] {
        let r = call(&node, "GET", "/admin/nubo-headers", &[h], "").await;
        assert_eq!(r.status, 200, "{}", r.text());
        let seen = r.text();
        assert!(
            seen.contains("nubo-auth=api-key") && seen.contains("nubo-user-id=key:ci"),
            "{seen}"
        );
        assert!(seen.contains("nubo-user-roles=admin,deploy"), "{seen}");
    }
    let (_, out, _) = node.cli(&["auth", "keys", "list", "club"], &[]);
    assert!(
        out.contains("ci  roles: admin,deploy") && !out.contains(&key),
        "{out}"
    );
    let (code, _, err) = node.cli(&["auth", "keys", "create", "club", "--name", "ci"], &[]);
    assert_ne!(code, 0);
    assert!(err.contains("has a key named `ci`"), "{err}");
    let (code, _, err) = node.cli(&["auth", "keys", "revoke", "club", "ci"], &[]);
    assert_eq!(code, 0, "{err}");
    let r = call(&node, "GET", "/members/echo", &[("x-api-key", &key)], "").await;
    assert_eq!(r.status, 401, "{}", r.text());
    assert!(r.text().contains("API key is not valid"), "{}", r.text());
    let r = call(
        &node,
        "GET",
        "/members/echo",
        &[("authorization", "Bearer nubo_made-up")],
        "",
    )
    .await;
    assert_eq!(r.status, 401);
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_need_api_keys_in_auth() {
    let s = tempfile::tempdir().unwrap();
    let node = NodeProc::start(s.path(), &[]);
    node.apply(&app(""));
    let (code, _, err) = node.cli(&["auth", "keys", "create", "club", "--name", "ci"], &[]);
    assert_ne!(code, 0);
    assert!(err.contains("add api_keys = true to its [auth]"), "{err}");
    let (code, _, err) = node.cli(&["auth", "users", "list", "nope"], &[]);
    assert_ne!(code, 0);
    assert!(err.contains("no app `nope`"), "{err}");
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn claims(iss: &str, aud: &str, exp: u64) -> Value {
    json!({ "iss": iss, "aud": aud, "sub": "user-7", "email": "grace@example.com",
            "roles": ["admin"], "exp": exp, "iat": now() })
}

fn sign(alg: Algorithm, kid: Option<&str>, claims: &Value, key: &EncodingKey) -> String {
    let mut h = Header::new(alg);
    h.kid = kid.map(str::to_string);
    jsonwebtoken::encode(&h, claims, key).unwrap()
}

/// An issuer's keys: RSA from a fixture, ECDSA P-256 and Ed25519 made now.
struct Keys {
    rsa: EncodingKey,
    ec: EncodingKey,
    ed: EncodingKey,
    jwks_rsa: Value,
    jwks_all: Value,
}

fn keys() -> Keys {
    let rng = ring::rand::SystemRandom::new();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let rsa = EncodingKey::from_rsa_der(&std::fs::read(dir.join("jwt-rs256.der")).unwrap());
    let rsa_jwk: Value =
        serde_json::from_slice(&std::fs::read(dir.join("jwt-rs256.jwk.json")).unwrap()).unwrap();
    let alg = &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING;
    let ec_doc = ring::signature::EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
    let ec_pair = ring::signature::EcdsaKeyPair::from_pkcs8(alg, ec_doc.as_ref(), &rng).unwrap();
    let point = ec_pair.public_key().as_ref();
    let ec_jwk = json!({ "kty": "EC", "crv": "P-256", "kid": "ec-1", "alg": "ES256",
        "x": b64(&point[1..33]), "y": b64(&point[33..65]) });
    let ed_doc = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
    let ed_pair = ring::signature::Ed25519KeyPair::from_pkcs8(ed_doc.as_ref()).unwrap();
    let ed_jwk = json!({ "kty": "OKP", "crv": "Ed25519", "kid": "ed-1", "alg": "EdDSA",
        "x": b64(ed_pair.public_key().as_ref()) });
    Keys {
        rsa,
        ec: EncodingKey::from_ec_der(ec_doc.as_ref()),
        ed: EncodingKey::from_ed_der(ed_doc.as_ref()),
        jwks_rsa: json!({ "keys": [rsa_jwk.clone()] }),
        jwks_all: json!({ "keys": [rsa_jwk, ec_jwk, ed_jwk] }),
    }
}

async fn put_jwks(node: &NodeProc, jwks: &Value) {
    let r = node
        .api("PUT", "/v1/apps/issuer/kv/default/jwks", &jwks.to_string())
        .await;
    assert!(r.status < 300, "{}", r.text());
}

async fn get(node: &NodeProc, token: String) -> Reply {
    let auth = format!("Bearer {token}");
    call(
        node,
        "GET",
        "/admin/nubo-headers",
        &[("authorization", &auth)],
        "",
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn jwts_are_checked_against_the_issuers_keys() {
    let s = tempfile::tempdir().unwrap();
    let node = NodeProc::start(s.path(), &[]);
    // The issuer: another app on the node, serving its JWKS from a
    // key-value store the test writes.
    let issuer = AppDir::new(&format!(
        "[app]\nname = \"issuer\"\n\n[component.probe]\nsource = \"{}\"\nkey_value_stores = [\"default\"]\n\n[[http]]\nroute = \"/probe/...\"\ncomponent = \"probe\"\n",
        wasm("probe").display()
    ));
    node.apply(&issuer);
    let k = keys();
    put_jwks(&node, &k.jwks_rsa).await;
    let jwks_url = node.url("/probe/kv-get?jwks");
    node.apply(&app(&format!(
        "jwt = [{{ issuer = \"https://id.test/\", jwks = \"{jwks_url}\", audience = \"club-api\" }}, {{ issuer = \"hs\", secret = \"{{{{ jwt_secret }}}}\" }}]"
    )));

    let iss = "https://id.test/";
    let good = claims(iss, "club-api", now() + 300);

    let r = get(&node, sign(Algorithm::RS256, Some("rsa-1"), &good, &k.rsa)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = r.text();
    for want in [
        "nubo-auth=jwt",
        "nubo-user-id=user-7",
        "nubo-user-email=grace@example.com",
        "nubo-user-roles=admin",
    ] {
        assert!(seen.contains(want), "{want}: {seen}");
    }

    // Refused, each with its reason.
    let refused = [
        (
            sign(
                Algorithm::RS256,
                Some("rsa-1"),
                &claims(iss, "club-api", now() - 120),
                &k.rsa,
            ),
            "expired",
        ),
        (
            sign(
                Algorithm::RS256,
                Some("rsa-1"),
                &claims(iss, "other-api", now() + 300),
                &k.rsa,
            ),
            "audience",
        ),
        (
            sign(Algorithm::RS256, Some("rsa-9"), &good, &k.rsa),
            "key id",
        ),
        (
            sign(
                Algorithm::RS256,
                Some("rsa-1"),
                &claims("https://evil.test/", "club-api", now() + 300),
                &k.rsa,
            ),
            "issuer",
        ),
        (
            format!(
                "{}.{}.",
                b64(br#"{"alg":"none","typ":"JWT"}"#),
                b64(good.to_string().as_bytes())
            ),
            "header",
        ),
        // An HMAC token for the JWKS issuer: its keys verify no HS256.
        (
            sign(
                Algorithm::HS256,
                Some("rsa-1"),
                &good,
                &EncodingKey::from_secret(b"a-test-secret-of-some-length"),
            ),
            "algorithm",
        ),
    ];
    for (token, why) in refused {
        let r = get(&node, token).await;
        assert_eq!(r.status, 401, "{why}: {}", r.text());
        assert!(r.text().contains(why), "{why}: {}", r.text());
        assert!(r.header("www-authenticate").is_some());
    }
    // Within the clock skew, an expired token still holds.
    let r = get(
        &node,
        sign(
            Algorithm::RS256,
            Some("rsa-1"),
            &claims(iss, "club-api", now() - 20),
            &k.rsa,
        ),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());

    // The issuer rotates in new keys: an unknown key id fetches them again.
    put_jwks(&node, &k.jwks_all).await;
    tokio::time::sleep(std::time::Duration::from_millis(5200)).await;
    for (alg, kid, key) in [
        (Algorithm::ES256, "ec-1", &k.ec),
        (Algorithm::EdDSA, "ed-1", &k.ed),
    ] {
        let r = get(&node, sign(alg, Some(kid), &good, key)).await;
        assert_eq!(r.status, 200, "{kid}: {}", r.text());
    }

    // HS256 with the secret variable.
    let hs = EncodingKey::from_secret(b"a-test-secret-of-some-length");
    let mut c = claims("hs", "anyone", now() + 60);
    c["roles"] = json!("admin staff");
    let r = get(&node, sign(Algorithm::HS256, None, &c, &hs)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        r.text().contains("nubo-user-roles=admin,staff"),
        "{}",
        r.text()
    );
    let r = get(
        &node,
        sign(
            Algorithm::HS256,
            None,
            &c,
            &EncodingKey::from_secret(b"wrong"),
        ),
    )
    .await;
    assert_eq!(r.status, 401);
    assert!(r.text().contains("signature"), "{}", r.text());
}

/// `[[sse]]` and `[[websocket]]` routes take `auth` and `roles` like
/// `[[http]]` ones.
#[tokio::test(flavor = "multi_thread")]
async fn event_streams_and_websockets_need_their_identity_too() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let s = tempfile::tempdir().unwrap();
    let node = NodeProc::start(s.path(), &[]);
    node.apply(&AppDir::new(&format!(
        r#"
[app]
name = "live"

[auth]
api_keys = true

[component.probe]
source = "{}"
topics = ["chat"]

[[sse]]
route = "/events"
topics = ["chat"]
auth = "required"

[[websocket]]
route = "/ws"
topics = ["chat"]
component = "probe"
path = "/ws-in"
roles = ["admin"]
"#,
        wasm("probe").display()
    )));
    let key = |name: &str, roles: &str| {
        let (code, out, err) = node.cli(
            &[
                "auth", "keys", "create", "live", "--name", name, "--roles", roles,
            ],
            &[],
        );
        assert_eq!(code, 0, "{err}");
        out.trim().to_string()
    };
    let (admin, viewer) = (key("admin", "admin"), key("viewer", "viewer"));
    let addr = node.url("").trim_start_matches("http://").to_string();

    // SSE: the status and type come before the stream, which never ends.
    let sse = |key: Option<String>| {
        let addr = addr.clone();
        async move {
            let stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
            let (mut sender, conn) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                    .await
                    .unwrap();
            tokio::spawn(conn);
            let mut req = http::Request::get("/events").header("host", &addr);
            if let Some(k) = key {
                req = req.header("x-api-key", k);
            }
            let resp = sender
                .send_request(req.body(http_body_util::Empty::<Bytes>::new()).unwrap())
                .await
                .unwrap();
            let kind = resp.headers().get("content-type").cloned();
            (resp.status().as_u16(), kind)
        }
    };
    assert_eq!(sse(None).await.0, 401);
    let (status, kind) = sse(Some(viewer.clone())).await;
    assert_eq!(status, 200);
    assert_eq!(kind.unwrap(), "text/event-stream");

    // WebSocket: a role it lacks is 403 before the upgrade.
    let ws = |key: String| {
        let url = format!("ws://{addr}/ws");
        async move {
            let mut req = url.into_client_request().unwrap();
            req.headers_mut().insert("x-api-key", key.parse().unwrap());
            match tokio_tungstenite::connect_async(req).await {
                Ok((_, resp)) => resp.status().as_u16(),
                Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => resp.status().as_u16(),
                Err(e) => panic!("{e}"),
            }
        }
    };
    assert_eq!(ws(viewer).await, 403);
    assert_eq!(ws(admin).await, 101);
}
