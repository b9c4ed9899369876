//! Server-Sent Events framing: whatever bytes a message holds, its event
//! parses back (by the WHATWG event-stream rules) as exactly one event
//! with only `data` fields, whose data is the message with its line ends
//! made `\n`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nubo_gateway::fuzzing::sse_event;

fuzz_target!(|data: &[u8]| {
    let event = sse_event(data);
    let text = std::str::from_utf8(&event).expect("an event is UTF-8");
    // The event-stream parser: lines end at CRLF, LF or a lone CR; a
    // blank line dispatches the event.
    let mut lines = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find(['\r', '\n']) {
        lines.push(&rest[..i]);
        let skip = if rest[i..].starts_with("\r\n") { 2 } else { 1 };
        rest = &rest[i + skip..];
    }
    assert!(rest.is_empty(), "an event ends with a line end: {text:?}");
    let (blank, fields) = lines.split_last().expect("at least one line");
    assert!(
        blank.is_empty(),
        "an event ends with a blank line: {text:?}"
    );
    let mut got = Vec::new();
    for line in fields {
        let value = line
            .strip_prefix("data: ")
            .unwrap_or_else(|| panic!("a line that is not data: {line:?} in {text:?}"));
        got.push(value);
    }
    let want = String::from_utf8_lossy(data)
        .replace("\r\n", "\n")
        .replace('\r', "\n");
    assert_eq!(got.join("\n"), want);
});
