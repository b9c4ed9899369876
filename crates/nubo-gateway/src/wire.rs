//! Encoders and decoders of bytes from outside that need nothing of the
//! server: they build without the `server` feature, so that the fuzz
//! targets in `fuzz/` compile them alone.

use bytes::Bytes;
use percent_encoding::percent_decode_str;

/// One `data:` event carrying `message`. SSE ends a line at `\r\n`, `\n`
/// or a lone `\r`, so each of them starts a new `data:` line: a message
/// can never end the event early or add a field (`event:`, `id:`,
/// `retry:`) of its own.
pub fn sse_event(message: &[u8]) -> Bytes {
    let text = String::from_utf8_lossy(message);
    let mut out = String::with_capacity(text.len() + 16);
    for line in text.split("\r\n").flat_map(|l| l.split(['\r', '\n'])) {
        out.push_str("data: ");
        out.push_str(line);
        out.push('\n');
    }
    out.push('\n');
    Bytes::from(out)
}

/// The segments of a request path under a static mount, percent-decoded:
/// `None` for a path that is not UTF-8 once decoded or that tries to leave
/// the folder (`..`, or a decoded `/`, `\\` or NUL inside a segment).
/// Empty and `.` segments are dropped, so every segment returned names an
/// entry inside the folder. The fuzz target `static_path` checks that.
pub fn decode_path(rest: &str) -> Option<Vec<std::borrow::Cow<'_, str>>> {
    let mut out = Vec::new();
    for raw in rest.split('/').filter(|s| !s.is_empty()) {
        let seg = percent_decode_str(raw).decode_utf8().ok()?;
        if seg == "." {
            continue;
        }
        if seg == ".." || seg.contains(['/', '\\', '\0']) {
            return None;
        }
        out.push(seg);
    }
    Some(out)
}
