//! What the embedded queue keeps in memory, so that a delivered message
//! costs the database only its `INSERT` and its `DELETE`.
//!
//! A lease writes nothing: writing each message it hands out (the
//! attempt, the lease's deadline, an index entry of its due time) would be
//! the largest single cost of the queue, for a change that a crash may
//! lose anyway (the message is then delivered again). Which messages are
//! out, and until when, lives only here, and so does a window of the
//! newest committed messages, so that a lease under load reads nothing
//! either.
//!
//! The table stays the truth. A restart, or a group that rolled back,
//! starts from empty lanes that read the table again, and every live
//! message is due again then: out or not, it is delivered once more, which
//! at-least-once delivery allows. Only failures are written (the attempt,
//! when it is due again, why it failed), so a delivery cut short by a
//! crash does not count as an attempt.
//!
//! A [`Lane`] (one per queue) knows every live message with an id up to
//! `scanned`: it is `ready` (due, oldest first), `later` (due at a time of
//! its own) or `out` (leased). Messages past `scanned` are only in the
//! table, until a lease reads them; a lane that knows there are none is
//! `complete`, and a committed publish then joins its `ready` at once,
//! while the window has room.
//!
//! A lease that runs on the database task also takes publishes of the
//! group it runs in, before they commit, as a lease reading the table in
//! that group would see them; this keeps batches full under load. Should
//! that commit fail, the publisher hears so, and the message may still be
//! delivered once.

use crate::{Message, QueueName};
use std::collections::{BTreeSet, HashMap, VecDeque};

/// Most messages a lane holds ready; past that they wait in the table.
pub(super) const READY_MESSAGES: usize = 10_000;
/// Most bytes of bodies a lane holds ready.
pub(super) const READY_BYTES: usize = 16 << 20;

#[derive(Default)]
pub(super) struct Lanes {
    lanes: HashMap<QueueName, Lane>,
    /// Published in the group now running; ready once it commits.
    pending: Vec<(QueueName, Message)>,
}

impl Lanes {
    pub(super) fn lane(&mut self, q: &QueueName) -> &mut Lane {
        self.lanes.entry(q.clone()).or_default()
    }

    /// `m` was inserted in the group now running.
    pub(super) fn published(&mut self, q: QueueName, m: Message) {
        self.pending.push((q, m));
    }

    /// The group ended: its publishes join their lanes, or, if it rolled
    /// back, nothing in memory can be trusted and every lane reads the
    /// table again.
    pub(super) fn group_done(&mut self, committed: bool) {
        if !committed {
            self.forget();
            return;
        }
        for (q, m) in std::mem::take(&mut self.pending) {
            self.lanes.entry(q).or_default().append(m);
        }
    }

    /// Drops everything in memory: every lane reads the table again, and
    /// what was out is delivered again.
    pub(super) fn forget(&mut self) {
        self.pending.clear();
        self.lanes.clear();
    }

    /// Moves to `out`, up to `max`, messages of `q` that the group now
    /// running published (not yet committed), oldest first, once the lane
    /// holds nothing older: they are leased from the group that stores
    /// them, as a lease of the table in that group would see them.
    pub(super) fn take_pending(&mut self, q: &QueueName, max: usize, out: &mut Vec<Message>) {
        let Some(lane) = self.lanes.get_mut(q) else {
            return;
        };
        if !lane.complete || !lane.ready.is_empty() || out.len() >= max {
            return;
        }
        let mut room = max - out.len();
        let taken = self.pending.extract_if(.., |(p, m)| {
            let take = room > 0 && p == q && m.id > lane.scanned;
            if take {
                lane.scanned = m.id;
                room -= 1;
            }
            take
        });
        out.extend(taken.map(|(_, m)| m));
    }

    /// Every waiting message of `q` was deleted (dead ones are not in
    /// lanes), including those published earlier in this group.
    /// Every queue of `app` was emptied.
    pub(super) fn purged_app(&mut self, app: &str) {
        self.pending.retain(|(p, _)| p.app != app);
        self.lanes.retain(|q, _| q.app != app);
    }

    pub(super) fn purged(&mut self, q: &QueueName) {
        self.pending.retain(|(p, _)| p != q);
        let lane = self.lane(q);
        lane.ready.clear();
        lane.ready_bytes = 0;
        lane.later.clear();
        lane.complete = true;
    }
}

#[derive(Default)]
pub(super) struct Lane {
    /// Every live message with an id up to this one is in the lane.
    scanned: u64,
    /// No live message has an id past `scanned`.
    complete: bool,
    /// Due now, in id order.
    ready: VecDeque<Message>,
    ready_bytes: usize,
    /// (due, id): waiting for a retry; read from the table when due.
    later: BTreeSet<(i64, u64)>,
    /// Leased: id → the lease's deadline.
    out: HashMap<u64, i64>,
    /// (deadline, id) of every lease in `out`, soonest first.
    deadlines: BTreeSet<(i64, u64)>,
}

impl Lane {
    /// A committed publish.
    fn append(&mut self, m: Message) {
        if m.id <= self.scanned {
            // A lease of the same group read it from the table already.
            return;
        }
        let fits =
            self.ready.len() < READY_MESSAGES && self.ready_bytes + m.body.len() <= READY_BYTES;
        if self.complete && fits {
            self.scanned = m.id;
            self.ready_bytes += m.body.len();
            self.ready.push_back(m);
        } else {
            self.complete = false;
        }
    }

    /// Whether a lease of `want` messages must read the table: for a
    /// retry or an expired lease that is due, or for messages not read yet.
    pub(super) fn needs_table(&self, now: i64, want: usize) -> bool {
        self.later.first().is_some_and(|&(due, _)| due <= now)
            || self.deadlines.first().is_some_and(|&(at, _)| at <= now)
            || (!self.complete && self.ready.len() < want)
    }

    /// Messages ready in memory.
    pub(super) fn ready_len(&self) -> usize {
        self.ready.len()
    }

    /// Moves up to `max - out.len()` ready messages to `out`.
    pub(super) fn take_ready(&mut self, max: usize, out: &mut Vec<Message>) {
        while out.len() < max {
            let Some(m) = self.ready.pop_front() else {
                break;
            };
            self.ready_bytes -= m.body.len();
            out.push(m);
        }
    }

    /// Ids of up to `n` leases that ran out by `now`, no longer out.
    pub(super) fn expired(&mut self, now: i64, n: usize) -> Vec<u64> {
        let mut ids = Vec::new();
        while ids.len() < n {
            match self.deadlines.first() {
                Some(&(at, id)) if at <= now => {
                    self.deadlines.pop_first();
                    self.out.remove(&id);
                    ids.push(id);
                }
                _ => break,
            }
        }
        ids
    }

    /// Ids of up to `n` retries due by `now`, taken from `later`.
    pub(super) fn due_later(&mut self, now: i64, n: usize) -> Vec<u64> {
        let mut ids = Vec::new();
        while ids.len() < n {
            match self.later.first() {
                Some(&(due, _)) if due <= now => {
                    if let Some((_, id)) = self.later.pop_first() {
                        ids.push(id);
                    }
                }
                _ => break,
            }
        }
        ids
    }

    /// Where the next read of the table starts: `(after, complete)`.
    pub(super) fn unread(&self) -> (u64, bool) {
        (self.scanned, self.complete)
    }

    /// Messages read from the table past `scanned`, in id order, each
    /// with when it is due; `all` when they were all there are. Due ones
    /// fill `out` up to `max`, the rest of those go to `ready` while it
    /// has room; the first that does not fit, and every one after it, is
    /// left for the next read.
    pub(super) fn read(
        &mut self,
        rows: Vec<(Message, i64)>,
        all: bool,
        now: i64,
        max: usize,
        out: &mut Vec<Message>,
    ) {
        for (m, due) in rows {
            let id = m.id;
            if due > now {
                self.later.insert((due, id));
            } else if out.len() < max {
                out.push(m);
            } else if self.ready.len() < READY_MESSAGES
                && self.ready_bytes + m.body.len() <= READY_BYTES
            {
                self.ready_bytes += m.body.len();
                self.ready.push_back(m);
            } else {
                return;
            }
            self.scanned = self.scanned.max(id);
        }
        if all {
            self.complete = true;
        }
    }

    /// `id` is leased until `until`.
    pub(super) fn lease(&mut self, id: u64, until: i64) {
        if let Some(old) = self.out.insert(id, until) {
            self.deadlines.remove(&(old, id));
        }
        self.deadlines.insert((until, id));
    }

    /// `id`'s delivery is over, acknowledged or dead.
    pub(super) fn settle(&mut self, id: u64) {
        if let Some(at) = self.out.remove(&id) {
            self.deadlines.remove(&(at, id));
        }
    }

    /// `id` failed and is due again at `due`.
    pub(super) fn retry_at(&mut self, id: u64, due: i64) {
        self.settle(id);
        // One past `scanned` is found in the table, due then, when a
        // lease reads that far.
        if id <= self.scanned {
            self.later.insert((due, id));
        }
    }

    /// Milliseconds from `now` until a lease may find something: `None`
    /// when nothing at all is waiting or out.
    pub(super) fn next_due(&self, now: i64) -> Option<u64> {
        if !self.complete || !self.ready.is_empty() {
            return Some(0);
        }
        let later = self.later.first().map(|&(due, _)| due);
        let lease = self.deadlines.first().map(|&(at, _)| at);
        let soonest = match (later, lease) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => a.or(b)?,
        };
        Some(soonest.saturating_sub(now).max(0) as u64)
    }

    /// Messages leased and not yet settled.
    pub(super) fn in_flight(&self) -> usize {
        self.out.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q() -> QueueName {
        QueueName {
            app: "a".into(),
            queue: "jobs".into(),
        }
    }

    fn m(id: u64) -> Message {
        Message {
            id,
            body: vec![0; 10],
            attempt: 1,
            published_at: 0,
            last_error: None,
            by: None,
        }
    }

    #[test]
    fn a_new_lane_reads_the_table_first_then_takes_committed_publishes() {
        let mut lanes = Lanes::default();
        // Published before anything was read: only the table has it.
        lanes.published(q(), m(1));
        lanes.group_done(true);
        let lane = lanes.lane(&q());
        assert!(lane.needs_table(0, 1));
        let mut out = Vec::new();
        lane.read(vec![(m(1), 0)], true, 0, 10, &mut out);
        assert_eq!(out.len(), 1);
        // Complete now: the next publishes are ready without a read.
        lanes.published(q(), m(2));
        lanes.published(q(), m(3));
        let mut none = Vec::new();
        lanes.lane(&q()).take_ready(10, &mut none);
        assert!(none.is_empty(), "not committed yet");
        lanes.group_done(true);
        let lane = lanes.lane(&q());
        assert!(!lane.needs_table(0, 2));
        let mut out = Vec::new();
        lane.take_ready(10, &mut out);
        assert_eq!(out.iter().map(|m| m.id).collect::<Vec<_>>(), [2, 3]);
    }

    #[test]
    fn a_rolled_back_group_makes_every_lane_read_the_table_again() {
        let mut lanes = Lanes::default();
        lanes
            .lane(&q())
            .read(Vec::new(), true, 0, 10, &mut Vec::new());
        lanes.lane(&q()).lease(7, 100);
        lanes.published(q(), m(8));
        lanes.group_done(false);
        let lane = lanes.lane(&q());
        assert_eq!((lane.in_flight(), lane.unread()), (0, (0, false)));
    }

    #[test]
    fn a_full_window_leaves_later_publishes_in_the_table() {
        let mut lanes = Lanes::default();
        lanes
            .lane(&q())
            .read(Vec::new(), true, 0, 0, &mut Vec::new());
        for id in 1..=(READY_MESSAGES as u64 + 2) {
            lanes.published(q(), m(id));
        }
        lanes.group_done(true);
        let lane = lanes.lane(&q());
        assert_eq!(lane.unread(), (READY_MESSAGES as u64, false));
        // Taking all but one ready still leaves enough for one more.
        let mut out = Vec::new();
        lane.take_ready(READY_MESSAGES - 1, &mut out);
        assert!(!lane.needs_table(0, 1));
        assert!(lane.needs_table(0, 2));
    }

    #[test]
    fn a_read_past_a_full_window_stops_where_memory_ends() {
        let mut lanes = Lanes::default();
        let lane = lanes.lane(&q());
        let big = |id| Message {
            body: vec![0; READY_BYTES / 2],
            ..m(id)
        };
        let mut out = Vec::new();
        lane.read(
            vec![(m(1), 0), (big(2), 0), (big(3), 0), (big(4), 0)],
            true,
            0,
            1,
            &mut out,
        );
        // 1 is leased, 2 and 3 fill the window; 4 stays in the table.
        assert_eq!(out.len(), 1);
        assert_eq!(lane.unread(), (3, false));
        assert_eq!(lane.ready_len(), 2);
    }

    #[test]
    fn leases_run_out_and_failures_come_back_when_due() {
        let mut lanes = Lanes::default();
        let lane = lanes.lane(&q());
        let mut out = Vec::new();
        lane.read(
            vec![(m(1), 0), (m(2), 0), (m(3), 50)],
            true,
            0,
            10,
            &mut out,
        );
        assert_eq!(out.len(), 2, "3 is due later");
        lane.lease(1, 100);
        lane.lease(2, 100);
        assert_eq!(lane.next_due(0), Some(50));
        lane.retry_at(2, 70);
        assert_eq!(lane.in_flight(), 1);
        assert!(!lane.needs_table(49, 1));
        assert_eq!(lane.due_later(80, 10), [3, 2]);
        assert_eq!(lane.expired(99, 10), Vec::<u64>::new());
        assert_eq!(lane.expired(100, 10), [1]);
        assert_eq!(lane.next_due(100), None);
    }

    #[test]
    fn a_lease_takes_its_own_groups_publishes_once_nothing_older_waits() {
        let other = QueueName {
            app: "a".into(),
            queue: "other".into(),
        };
        let mut lanes = Lanes::default();
        lanes
            .lane(&q())
            .read(Vec::new(), true, 0, 0, &mut Vec::new());
        lanes.published(q(), m(1));
        lanes.published(other.clone(), m(2));
        lanes.published(q(), m(3));
        let mut out = Vec::new();
        lanes.take_pending(&q(), 10, &mut out);
        assert_eq!(out.iter().map(|m| m.id).collect::<Vec<_>>(), [1, 3]);
        lanes.group_done(true);
        let mut again = Vec::new();
        lanes.lane(&q()).take_ready(10, &mut again);
        assert!(again.is_empty(), "leased already");
        // A lane that has not read the table yet takes none.
        let mut none = Vec::new();
        lanes.published(other.clone(), m(4));
        lanes.take_pending(&other, 10, &mut none);
        assert!(none.is_empty());
    }

    #[test]
    fn a_purge_drops_what_was_published_before_it_in_the_same_group() {
        let mut lanes = Lanes::default();
        lanes
            .lane(&q())
            .read(Vec::new(), true, 0, 0, &mut Vec::new());
        lanes.published(q(), m(1));
        lanes.purged(&q());
        lanes.published(q(), m(2));
        lanes.group_done(true);
        let mut out = Vec::new();
        lanes.lane(&q()).take_ready(10, &mut out);
        assert_eq!(out.iter().map(|m| m.id).collect::<Vec<_>>(), [2]);
    }
}
