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
