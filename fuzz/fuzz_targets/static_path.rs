//! The static file path decoder: never panics, and every segment it
//! hands back names an entry inside the folder (no `..`, no separator,
//! no NUL, not empty, not `.`), so joining them cannot leave the root.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nubo_gateway::fuzzing::decode_path;

fuzz_target!(|data: &[u8]| {
    let Ok(path) = std::str::from_utf8(data) else {
        return;
    };
    let Some(segments) = decode_path(path) else {
        return;
    };
    let mut joined = std::path::PathBuf::from("/root");
    for s in &segments {
        assert!(
            !s.is_empty() && s != "." && s != "..",
            "{s:?} from {path:?}"
        );
        assert!(!s.contains(['/', '\\', '\0']), "{s:?} from {path:?}");
        joined.push(s.as_ref());
    }
    assert!(
        joined.components().all(|c| matches!(
            c,
            std::path::Component::RootDir | std::path::Component::Normal(_)
        )),
        "{joined:?} from {path:?}"
    );
});
