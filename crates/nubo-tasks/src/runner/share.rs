//! The node's run permits, shared fairly between apps.
//!
//! A node runs at most a few tasks per core at once. A first-come queue of
//! permits would let one app with a deep backlog take every permit and
//! keep them: each permit it gives back would go to its own next waiter,
//! ahead of another app's first. Two rules prevent that:
//!
//! - **A reserve.** An app that already holds permits leaves one free for
//!   each other app that may spawn tasks and holds none (up to half the
//!   node): any app can start a task at once, whatever the others do.
//! - **Max-min hand-out.** A freed permit goes to the waiting app that
//!   holds the fewest (the one that waited longest among equals), so apps
//!   that all want more converge on equal shares as their tasks finish.
//!
//! One app alone still uses all but the reserve. Tasks are never
//! preempted; their wall-clock limit bounds how long a permit is held.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::oneshot;

pub(super) struct FairShare {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    free: usize,
    /// At most this many permits are kept for apps that hold none.
    reserve_cap: usize,
    /// The apps that may spawn tasks.
    apps: std::collections::HashSet<Arc<str>>,
    /// Permits each app holds now.
    held: HashMap<Arc<str>, usize>,
    /// Each waiting app's waiters, oldest first, and when the app began
    /// waiting (a counter), to break ties between equals.
    waiting: HashMap<Arc<str>, (u64, VecDeque<oneshot::Sender<SharePermit>>)>,
    arrivals: u64,
}

impl State {
    fn held(&self, app: &str) -> usize {
        self.held.get(app).copied().unwrap_or(0)
    }

    /// Whether `app` may take a free permit: always if it holds none,
    /// else only past the reserve kept for the others.
    fn may_take(&self, app: &str) -> bool {
        if self.free == 0 {
            return false;
        }
        if self.held(app) == 0 {
            return true;
        }
        let idle_others = self
            .apps
            .iter()
            .filter(|a| &***a != app && self.held(a) == 0)
            .count()
            .min(self.reserve_cap);
        self.free > idle_others
    }
}

/// One run permit of one app; given back when dropped.
pub(super) struct SharePermit {
    share: Arc<FairShare>,
    app: Arc<str>,
    /// False for a permit that was never handed over (its waiter left).
    live: bool,
}

impl Drop for SharePermit {
    fn drop(&mut self) {
        if self.live {
            self.share.release(&self.app);
        }
    }
}

impl FairShare {
    pub(super) fn new(permits: usize) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State {
                free: permits,
                reserve_cap: permits / 2,
                ..State::default()
            }),
        })
    }

    /// Says whether `app` may spawn tasks (it counts for the reserve).
    pub(super) fn register(self: &Arc<Self>, app: &str, spawns: bool) {
        let mut s = self.lock();
        if spawns {
            s.apps.insert(app.into());
        } else {
            s.apps.remove(app);
            self.hand_out(&mut s);
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Permits no one holds now.
    pub(super) fn available(&self) -> usize {
        self.lock().free
    }

    fn grant(self: &Arc<Self>, s: &mut State, app: Arc<str>) -> SharePermit {
        s.free -= 1;
        *s.held.entry(app.clone()).or_default() += 1;
        SharePermit {
            share: self.clone(),
            app,
            live: true,
        }
    }

    /// A permit for `app` if it may take one now (after those waiting
    /// who may).
    pub(super) fn try_acquire(self: &Arc<Self>, app: &str) -> Option<SharePermit> {
        let mut s = self.lock();
        self.hand_out(&mut s);
        s.may_take(app).then(|| self.grant(&mut s, app.into()))
    }

    /// A permit for `app`, waiting for its fair turn.
    pub(super) async fn acquire(self: &Arc<Self>, app: &str) -> Option<SharePermit> {
        let rx = {
            let mut s = self.lock();
            if s.waiting.is_empty() && s.may_take(app) {
                return Some(self.grant(&mut s, app.into()));
            }
            let (tx, rx) = oneshot::channel();
            let arrival = s.arrivals;
            s.arrivals += 1;
            s.waiting
                .entry(app.into())
                .or_insert_with(|| (arrival, VecDeque::new()))
                .1
                .push_back(tx);
            self.hand_out(&mut s);
            rx
        };
        rx.await.ok()
    }

    fn release(self: &Arc<Self>, app: &str) {
        let mut s = self.lock();
        if let Some(n) = s.held.get_mut(app) {
            *n -= 1;
            if *n == 0 {
                s.held.remove(app);
            }
        }
        s.free += 1;
        self.hand_out(&mut s);
    }

    /// Gives free permits to waiters: each to the waiting app that holds
    /// the fewest, among those the reserve lets take one.
    fn hand_out(self: &Arc<Self>, s: &mut State) {
        while s.free > 0 {
            let next = s
                .waiting
                .iter()
                .filter(|(app, _)| s.may_take(app))
                .min_by_key(|(app, (arrival, _))| (s.held(app), *arrival))
                .map(|(app, _)| app.clone());
            let Some(app) = next else { return };
            let Some((_, queue)) = s.waiting.get_mut(&app) else {
                return;
            };
            let tx = queue.pop_front();
            if queue.is_empty() {
                s.waiting.remove(&app);
            }
            let Some(tx) = tx else { continue };
            let permit = self.grant(s, app.clone());
            if let Err(mut unsent) = tx.send(permit) {
                // The waiter left: take the permit back without a release
                // (which would lock again).
                unsent.live = false;
                s.free += 1;
                if let Some(n) = s.held.get_mut(&app) {
                    *n -= 1;
                    if *n == 0 {
                        s.held.remove(&app);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_freed_permit_goes_to_the_app_holding_fewest() {
        let share = FairShare::new(4);
        // App a takes the whole node, and queues more.
        let mut a: Vec<SharePermit> = (0..4).map(|_| share.try_acquire("a").unwrap()).collect();
        assert!(share.try_acquire("b").is_none());
        let a_more = tokio::spawn({
            let share = share.clone();
            async move { share.acquire("a").await }
        });
        tokio::task::yield_now().await;
        let b = tokio::spawn({
            let share = share.clone();
            async move { share.acquire("b").await }
        });
        tokio::task::yield_now().await;
        // a's waiter came first, but b holds none: b gets the next permit.
        drop(a.pop());
        let b = b.await.unwrap().unwrap();
        assert!(!a_more.is_finished());
        drop(a.pop());
        let a_more = a_more.await.unwrap().unwrap();
        drop((a, a_more, b));
        assert_eq!(share.available(), 4);
    }

    #[tokio::test]
    async fn an_app_that_holds_none_can_always_start_one() {
        let share = FairShare::new(4);
        share.register("a", true);
        share.register("b", true);
        // a takes all it may: one permit stays for b.
        let a: Vec<SharePermit> = std::iter::from_fn(|| share.try_acquire("a"))
            .take(10)
            .collect();
        assert_eq!(a.len(), 3);
        let b = share.try_acquire("b").expect("b starts at once");
        assert!(share.try_acquire("b").is_none());
        // With b gone, a may use the whole node.
        drop(b);
        share.register("b", false);
        assert!(share.try_acquire("a").is_some());
    }

    #[tokio::test]
    async fn a_waiter_that_left_gives_its_turn_on() {
        let share = FairShare::new(1);
        let only = share.try_acquire("a").unwrap();
        let gone = tokio::spawn({
            let share = share.clone();
            async move { share.acquire("b").await }
        });
        tokio::task::yield_now().await;
        gone.abort();
        let _ = gone.await;
        let c = tokio::spawn({
            let share = share.clone();
            async move { share.acquire("c").await }
        });
        tokio::task::yield_now().await;
        drop(only);
        assert!(c.await.unwrap().is_some());
        assert_eq!(share.available(), 1);
    }
}
