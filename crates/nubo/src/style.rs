//! Terminal output: colour only on a terminal without `NO_COLOR`, and
//! progress lines on stderr so that stdout stays clean for pipes.

use std::io::{IsTerminal, Write};

pub fn color() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

pub fn paint(code: &str, text: &str) -> String {
    if color() {
        format!("\x1b[{code}m{text}\x1b[0m")
    } else {
        text.to_string()
    }
}

pub fn green(t: &str) -> String {
    paint("32", t)
}
pub fn yellow(t: &str) -> String {
    paint("33", t)
}
pub fn red(t: &str) -> String {
    paint("31", t)
}
pub fn bold(t: &str) -> String {
    paint("1", t)
}

/// A step of long work, e.g. `uploading 2/5: web.wasm (1.2 MiB)`.
pub fn progress(msg: &str) {
    let mut err = std::io::stderr();
    let _ = writeln!(err, "  … {msg}");
}

pub fn progress_done(msg: &str) {
    let mut err = std::io::stderr();
    let _ = writeln!(err, "  ✓ {msg}");
}
