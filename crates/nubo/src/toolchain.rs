//! Making sure the wasm32-wasip2 target is there before a build needs it.

use crate::{CliError, CliResult};
use std::process::Command;

pub const TARGET: &str = "wasm32-wasip2";

/// If `command` builds for wasm32-wasip2 and the target is missing, installs
/// it with rustup (saying so), or explains how when rustup is not there.
pub fn ensure_wasm_target(command: &str) -> CliResult<()> {
    if !command.contains(TARGET) {
        return Ok(());
    }
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output();
    match installed {
        Ok(out) if out.status.success() => {
            if String::from_utf8_lossy(&out.stdout)
                .lines()
                .any(|l| l.trim() == TARGET)
            {
                return Ok(());
            }
            println!("installing the {TARGET} target: rustup target add {TARGET}");
            let status = Command::new("rustup")
                .args(["target", "add", TARGET])
                .status()
                .map_err(|e| CliError::new(format!("cannot run rustup: {e}")))?;
            if status.success() {
                Ok(())
            } else {
                Err(
                    CliError::new(format!("`rustup target add {TARGET}` failed")).hint(format!(
                        "run `rustup target add {TARGET}` yourself and retry"
                    )),
                )
            }
        }
        _ => {
            // No rustup: the toolchain may still have the target (e.g. a
            // distribution package); check with rustc before failing.
            let sysroot_has_target = Command::new("rustc")
                .args(["--print", "target-libdir", "--target", TARGET])
                .output()
                .ok()
                .filter(|o| o.status.success())
                .map(|o| std::path::PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
                .is_some_and(|p| p.is_dir());
            if sysroot_has_target {
                Ok(())
            } else {
                Err(CliError::new(format!(
                    "the Rust target {TARGET} is not installed and rustup is not available"
                ))
                .hint(format!(
                    "install rustup (https://rustup.rs), then run: rustup target add {TARGET}"
                )))
            }
        }
    }
}
