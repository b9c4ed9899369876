//! Route patterns and matching: parsing never panics, and a pattern that
//! matches a path hands back a part of that path.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nubo_manifest::RoutePattern;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (route, path) = text.split_once('\n').unwrap_or((text, "/"));
    for parsed in [
        RoutePattern::parse_http(route),
        RoutePattern::parse_static(route),
    ] {
        let Ok(p) = parsed else { continue };
        let shown = p.to_string();
        // What a pattern prints parses back to the same pattern.
        assert_eq!(
            RoutePattern::parse_http(&shown)
                .ok()
                .or(RoutePattern::parse_static(&shown).ok()),
            Some(p.clone())
        );
        if let Some(rest) = p.matches(path) {
            assert!(rest.len() <= path.len() + 1, "{rest:?} from {path:?}");
        }
        let _ = nubo_manifest::normalize_base(route);
    }
});
