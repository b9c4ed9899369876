//! Slows guessing: after [`MAX_FAILURES`] failed sign-ins for one email,
//! or from one client address, within [`WINDOW`], sign-in is refused
//! (`429` with `Retry-After`) until the window ends. A success clears
//! the email's and the address's count. Counts live in the node's
//! memory: on a cluster each node counts its own.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub const MAX_FAILURES: u32 = 10;
pub const WINDOW: Duration = Duration::from_secs(15 * 60);
/// Past this many keys, expired ones are dropped.
const KEEP: usize = 100_000;

#[derive(Default)]
pub struct Throttle {
    counts: Mutex<HashMap<String, (u32, Instant)>>,
}

impl Throttle {
    /// How long any of `keys` must still wait, if one is over the limit.
    pub fn blocked(&self, keys: &[String]) -> Option<Duration> {
        let counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        keys.iter()
            .filter_map(|k| counts.get(k))
            .filter(|(n, since)| *n >= MAX_FAILURES && since.elapsed() < WINDOW)
            .map(|(_, since)| WINDOW.saturating_sub(since.elapsed()))
            .max()
    }

    pub fn failed(&self, keys: &[String]) {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if counts.len() > KEEP {
            counts.retain(|_, (_, since)| since.elapsed() < WINDOW);
        }
        for k in keys {
            let entry = counts.entry(k.clone()).or_insert((0, Instant::now()));
            if entry.1.elapsed() >= WINDOW {
                *entry = (0, Instant::now());
            }
            entry.0 += 1;
        }
    }

    pub fn forget(&self, keys: &[String]) {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        for k in keys {
            counts.remove(k);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_holds_per_key_and_a_success_clears_it() {
        let t = Throttle::default();
        let keys = ["email:a@b.c".to_string(), "ip:1.2.3.4".to_string()];
        for _ in 0..MAX_FAILURES - 1 {
            t.failed(&keys);
        }
        assert!(t.blocked(&keys).is_none());
        t.failed(&keys);
        assert!(t.blocked(&keys).is_some());
        assert!(t.blocked(&["ip:1.2.3.4".to_string()]).is_some());
        assert!(t.blocked(&["email:other@b.c".to_string()]).is_none());
        t.forget(&keys);
        assert!(t.blocked(&keys).is_none());
    }
}
