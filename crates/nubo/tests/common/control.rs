//! A real `nubo node` process and the control API, for the plan/apply tests.

use super::{AppDir, Reply, nubo, request};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A running `nubo node`; killed on drop.
pub struct NodeProc {
    pub child: Child,
    pub http: String,
    pub control: String,
    pub state: PathBuf,
    pub stderr: Arc<Mutex<String>>,
    /// Given with `--token`; else the state dir's file.
    given_token: Option<String>,
}

impl NodeProc {
    pub fn start(state: &Path, extra: &[&str]) -> NodeProc {
        Self::start_with(state, extra, &[])
    }

    /// [`NodeProc::start`] with environment variables set for the node.
    pub fn start_with(state: &Path, extra: &[&str], env: &[(&str, &str)]) -> NodeProc {
        let mut cmd = nubo();
        cmd.envs(env.iter().copied());
        Self::spawn(cmd, state, extra)
    }

    /// A node whose state dir is a tmpfs of `mib` MiB mounted in a mount
    /// namespace of the node's own (`unshare` as an unprivileged user), so
    /// that its disk fills up; it keeps 8 MiB free. Only the node sees the mount: the CLI is
    /// given the node's token. `None` where the system forbids user
    /// namespaces.
    pub fn start_on_small_disk(state: &Path, mib: u32) -> Option<NodeProc> {
        let probe = Command::new("unshare")
            .args(["--user", "--map-root-user", "--mount", "true"])
            .status();
        if !probe.is_ok_and(|s| s.success()) {
            return None;
        }
        let mut cmd = Command::new("unshare");
        cmd.args(["--user", "--map-root-user", "--mount", "sh", "-c"])
            .arg(format!(
                "mount -t tmpfs -o size={mib}m tmpfs \"$0\" && exec \"$@\""
            ))
            .arg(state)
            .arg(nubo().get_program());
        for (k, v) in nubo().get_envs() {
            if let Some(v) = v {
                cmd.env(k, v);
            }
        }
        let extra = ["--token", "small-disk-token", "--disk-reserve-mb", "8"];
        Some(Self::spawn(cmd, state, &extra))
    }

    /// Starts `cmd node --state STATE …`, with `cmd` the `nubo` binary or
    /// a wrapper that ends by running it.
    fn spawn(mut cmd: Command, state: &Path, extra: &[&str]) -> NodeProc {
        let mut child = cmd
            .arg("node")
            .arg("--state")
            .arg(state)
            .args(["--listen", "127.0.0.1:0", "--control", "127.0.0.1:0"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn nubo node");
        let stderr = Arc::new(Mutex::new(String::new()));
        super::collect_into(child.stderr.take().unwrap(), stderr.clone());
        let (tx, rx) = std::sync::mpsc::channel();
        let out = BufReader::new(child.stdout.take().unwrap());
        std::thread::spawn(move || {
            for line in out.lines().map_while(Result::ok) {
                let rest = line
                    .strip_prefix("node ready: apps on ")
                    .filter(|r| r.starts_with("http"));
                if let Some(rest) = rest {
                    let (http, control) = rest.split_once(", control API on http://").unwrap();
                    let _ = tx.send(Some((http.to_string(), control.to_string())));
                }
            }
            let _ = tx.send(None);
        });
        match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(Some((http, control))) => NodeProc {
                child,
                http,
                control: format!("http://{control}"),
                state: state.to_path_buf(),
                stderr,
                given_token: extra
                    .iter()
                    .position(|a| *a == "--token")
                    .and_then(|i| extra.get(i + 1))
                    .map(|t| t.to_string()),
            },
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("nubo node did not start: {}", stderr.lock().unwrap());
            }
        }
    }

    /// Waits until stderr contains `needle` (logs are asynchronous).
    pub fn wait_log(&self, needle: &str) -> String {
        super::wait_text(&self.stderr, needle)
    }

    pub fn token(&self) -> String {
        match &self.given_token {
            Some(t) => t.clone(),
            None => std::fs::read_to_string(self.state.join("token")).unwrap(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.http)
    }

    /// A control API call with the node's token.
    pub async fn api(&self, method: &str, path: &str, body: &str) -> Reply {
        let auth = format!("Bearer {}", self.token());
        request(
            method,
            &format!("{}{path}", self.control),
            &[
                ("authorization", &auth),
                ("content-type", "application/json"),
            ],
            body.as_bytes(),
        )
        .await
    }

    pub async fn json(&self, path: &str) -> serde_json::Value {
        let r = self.api("GET", path, "").await;
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        serde_json::from_slice(&r.body).unwrap()
    }

    /// Runs a CLI command against this node: (exit code, stdout, stderr).
    pub fn cli(&self, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
        let mut cmd = nubo();
        cmd.args(args)
            .args(["--node", &self.control])
            .arg("--state")
            .arg(&self.state);
        if let Some(t) = &self.given_token {
            cmd.args(["--token", t]);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// `nubo apply APP --auto-approve` against this node; it must
    /// succeed. What it printed.
    pub fn apply(&self, app: &AppDir) -> String {
        let (code, out, err) = self.cli(
            &["apply", app.path().to_str().unwrap(), "--auto-approve"],
            &[],
        );
        assert_eq!(code, 0, "{out}{err}");
        out
    }

    /// Stops the node as Ctrl-C would, and waits for it to exit.
    pub fn stop(&mut self) {
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let _ = self.child.wait();
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An app folder with the probe component at `/probe/...`, config
/// `greeting = "{{ greeting }}"` and `version = "{{ version }}"`.
pub fn probe_app(name: &str, mount: &str) -> AppDir {
    AppDir::new(&format!(
        r#"
[app]
name = "{name}"
{mount}

[variables]
greeting = {{ default = "hello" }}
version = {{ default = "1" }}

[component.probe]
source = "{wasm}"
config = {{ greeting = "{{{{ greeting }}}}", version = "{{{{ version }}}}" }}

[[http]]
route = "/probe/..."
component = "probe"
"#,
        wasm = super::wasm("probe").display()
    ))
}
