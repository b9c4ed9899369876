//! The node's instance slots and guest memory, shared fairly between apps.
//!
//! Each component has its own `max_instances` and per-instance memory
//! limit, but those add up across apps to more than a node has: one app
//! with many busy components could take every slot of the pooling
//! allocator, or grow its instances' memory until the machine swaps or the
//! kernel kills the node, and every other app would go down with it.
//!
//! So both are [`FairPool`]s: a node-wide total, and a guaranteed share
//! for each app that has instances running or was just refused one (the
//! total divided by their number; a refusal counts for [`WANTING_FOR`]). An app may always grow up to its share. Past it, it borrows,
//! but only from what no other app is owed: the free amount must stay at
//! least the sum of what the other running apps lack of their shares. One
//! app alone can use the whole node; when others come, it can keep what it
//! holds (nothing running is taken away), but what it frees goes first to
//! the apps below their share.
//!
//! An instance that cannot get a slot is answered 503 like a component at
//! its `max_instances`; a `memory.grow` past the app's allowance fails, so
//! the guest sees an allocation failure (and usually traps) while the node
//! and the other apps go on.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long an app that was refused and holds nothing still counts as
/// wanting its share.
pub const WANTING_FOR: Duration = Duration::from_secs(5);

/// A node-wide amount shared between apps.
pub struct FairPool {
    what: &'static str,
    total: u64,
    state: Mutex<State>,
}

/// The apps that hold some or want some, in a list: the rule looks at
/// every one of them anyway, a node runs few apps at once, and a list
/// found by pointer needs no hashing on a path every request takes.
#[derive(Default)]
struct State {
    used: u64,
    apps: Vec<Entry>,
    /// How many entries hold nothing and only want.
    wanting: usize,
}

struct Entry {
    app: Arc<str>,
    held: u64,
    /// When it was last refused while holding nothing.
    refused: Option<Instant>,
}

impl State {
    fn find(&self, app: &Arc<str>) -> Option<usize> {
        self.apps
            .iter()
            .position(|e| Arc::ptr_eq(&e.app, app) || e.app == *app)
    }

    /// Drops the apps that stopped wanting: refused too long ago.
    fn expire(&mut self) {
        if self.wanting == 0 {
            return;
        }
        let before = self.apps.len();
        self.apps
            .retain(|e| e.held > 0 || e.refused.is_some_and(|at| at.elapsed() < WANTING_FOR));
        self.wanting -= before - self.apps.len();
    }

    fn allows(&self, total: u64, mine: Option<usize>, amount: u64) -> bool {
        let after = self.used.saturating_add(amount);
        if after > total {
            return false;
        }
        let held = mine.map_or(0, |i| self.apps[i].held);
        let others = self.apps.len() - usize::from(mine.is_some());
        let share = total / (others as u64 + 1);
        if held.saturating_add(amount) <= share {
            return true;
        }
        // Borrowing: leave free what the others still lack of their share.
        let owed: u64 = (self.apps.iter().enumerate())
            .filter(|(i, _)| Some(*i) != mine)
            .map(|(_, e)| share.saturating_sub(e.held))
            .sum();
        total - after >= owed
    }
}

impl FairPool {
    pub fn new(what: &'static str, total: u64) -> Self {
        Self {
            what,
            total: total.max(1),
            state: Mutex::new(State::default()),
        }
    }

    pub fn total(&self) -> u64 {
        self.total
    }

    /// Takes `amount` for `app` if the rule in the module docs allows it.
    pub fn try_take(&self, app: &Arc<str>, amount: u64) -> bool {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.expire();
        let mine = s.find(app);
        let allowed = s.allows(self.total, mine, amount);
        match (mine, allowed) {
            (Some(i), true) => {
                let e = &mut s.apps[i];
                if e.held == 0 {
                    e.refused = None;
                    s.wanting -= 1;
                }
                s.apps[i].held += amount;
            }
            (None, true) => s.apps.push(Entry {
                app: app.clone(),
                held: amount,
                refused: None,
            }),
            (Some(i), false) => {
                if s.apps[i].held == 0 {
                    s.apps[i].refused = Some(Instant::now());
                }
            }
            (None, false) => {
                s.apps.push(Entry {
                    app: app.clone(),
                    held: 0,
                    refused: Some(Instant::now()),
                });
                s.wanting += 1;
            }
        }
        if allowed {
            s.used += amount;
        }
        allowed
    }

    /// Gives back `amount` that `app` took.
    pub fn give(&self, app: &Arc<str>, amount: u64) {
        if amount == 0 {
            return;
        }
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.used = s.used.saturating_sub(amount);
        if let Some(i) = s.find(app) {
            let e = &mut s.apps[i];
            e.held = e.held.saturating_sub(amount);
            if e.held == 0 {
                s.apps.swap_remove(i);
            }
        }
    }

    /// What `app` holds now.
    pub fn held(&self, app: &str) -> u64 {
        let s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.apps.iter().find(|e| &*e.app == app).map_or(0, |e| e.held)
    }

    pub(crate) fn what(&self) -> &'static str {
        self.what
    }
}

/// The node's pools: instance slots and bytes of guest memory.
pub struct NodeShare {
    pub instances: FairPool,
    pub memory: FairPool,
}

impl NodeShare {
    pub fn new(instances: u64, memory_bytes: u64) -> Arc<Self> {
        Arc::new(Self {
            instances: FairPool::new("instance slots", instances),
            memory: FairPool::new("guest memory", memory_bytes),
        })
    }
}

/// What one instance holds of the node's pools; given back when dropped
/// (the instance's store is gone).
pub(crate) struct Charge {
    share: Arc<NodeShare>,
    app: Arc<str>,
    slot: bool,
    bytes: u64,
}

impl Charge {
    /// An instance slot for `app`, or `None` when the app may not take one.
    pub(crate) fn instance(share: &Arc<NodeShare>, app: &Arc<str>) -> Option<Self> {
        share.instances.try_take(app, 1).then(|| Self {
            share: share.clone(),
            app: app.clone(),
            slot: true,
            bytes: 0,
        })
    }

    /// `delta` more bytes of memory; `false` if the app may not have them.
    pub(crate) fn grow(&mut self, delta: u64) -> bool {
        if !self.share.memory.try_take(&self.app, delta) {
            tracing::warn!(
                app = %self.app,
                "memory.grow by {delta} bytes refused: the app holds {} of the node's {} bytes of {}, more than its share while other apps need theirs",
                self.share.memory.held(&self.app),
                self.share.memory.total(),
                self.share.memory.what()
            );
            return false;
        }
        self.bytes += delta;
        true
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.share.memory.give(&self.app, self.bytes);
        if self.slot {
            self.share.instances.give(&self.app, 1);
        }
    }
}

/// Guest memory for a node not told otherwise: three quarters of the
/// machine's memory (Linux `/proc/meminfo`), else 4 GiB.
pub fn default_memory_budget() -> u64 {
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let total_kb = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok());
    match total_kb {
        Some(kb) => kb * 1024 / 4 * 3,
        None => 4 << 30,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(s: &str) -> Arc<str> {
        s.into()
    }

    #[test]
    fn one_app_alone_uses_everything() {
        let p = FairPool::new("t", 100);
        assert!(p.try_take(&app("a"), 100));
        assert!(!p.try_take(&app("a"), 1));
    }

    #[test]
    fn a_greedy_app_leaves_the_others_their_share() {
        let p = FairPool::new("t", 100);
        let (a, b) = (app("a"), app("b"));
        // B holds a little; A may borrow up to what B is not owed.
        assert!(p.try_take(&b, 10));
        assert!(p.try_take(&a, 50));
        assert!(!p.try_take(&a, 1), "B is owed 40 of its 50");
        // B can still reach its share.
        assert!(p.try_take(&b, 40));
        assert!(!p.try_take(&b, 1), "the pool is full");
        // What A frees goes to whoever is below its share first.
        p.give(&a, 20);
        assert_eq!(p.held("a"), 30);
        assert!(p.try_take(&a, 20), "A is below its share again");
    }

    #[test]
    fn a_newcomer_is_owed_its_share_of_what_frees() {
        let p = FairPool::new("t", 90);
        let (a, b, c) = (app("a"), app("b"), app("c"));
        assert!(p.try_take(&a, 90));
        // B arrives: nothing is free, so it is refused (503s) for now, and
        // counts as wanting its share.
        assert!(!p.try_take(&b, 1));
        p.give(&a, 30);
        // The share is 45 each; B is owed 45, so A cannot grow again.
        assert!(!p.try_take(&a, 1));
        assert!(p.try_take(&b, 30));
        p.give(&a, 60);
        // A holds nothing now: B and C share the pool, 45 each.
        assert!(p.try_take(&c, 30));
        assert!(!p.try_take(&b, 16), "C still lacks 15 of its share");
        assert!(p.try_take(&b, 15));
        p.give(&b, 45);
        p.give(&c, 30);
        assert_eq!((p.held("a"), p.held("b"), p.held("c")), (0, 0, 0));
        assert!(p.try_take(&a, 90), "alone again, A may take it all");
    }
}
