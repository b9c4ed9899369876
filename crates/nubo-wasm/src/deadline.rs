//! When a run's guest code is interrupted: the epoch deadline that holds
//! it to `limits.timeout_ms` and, if set, to `limits.cpu_ms`.
//!
//! wasmtime checks the deadline where guest code enters a function or
//! loops, and the node's epoch advances every [`EPOCH_TICK`], so a guest
//! spinning in a loop is stopped within a tick of its limit. Waits on the
//! host are cut by the run's wall-clock limit ([`crate::waits::WallLimit`])
//! instead, as no guest code runs then.
//!
//! - A request's deadline is its wall-clock limit; it traps when reached.
//! - A task's deadline comes every [`TASK_YIELD_TICKS`] and yields to the
//!   runtime each time (a cancelled task's future is dropped at its next
//!   yield), and its limit leaves out the time it waited on other tasks.
//! - With a CPU limit, each time the deadline comes the run's CPU so far
//!   (the time inside polls of its future, [`crate::usage::Tally::cpu`])
//!   is held to it, and the next deadline is never later than the CPU
//!   time left; a run over it ends with [`CpuSpent`].

use crate::engine::EPOCH_TICK;
use crate::host::Host;
use crate::usage::Tally;
use crate::waits::WaitClock;
use nubo_manifest::Limits;
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmtime::{Store, Trap, UpdateDeadline};

/// A running task yields to the runtime at least every this many epoch
/// ticks, so cancelling it takes effect within that even in a busy loop.
const TASK_YIELD_TICKS: u64 = 5;

/// The error that ends a run that used its `limits.cpu_ms`.
#[derive(Debug, thiserror::Error)]
#[error("used its CPU time")]
pub(crate) struct CpuSpent;

/// Epoch ticks that cover `d`, and one more for the tick under way.
fn ticks(d: Duration) -> u64 {
    (d.as_millis() as u64).div_ceil(EPOCH_TICK.as_millis() as u64) + 1
}

/// Sets the deadlines of a run of `limits` in `store`, started now.
/// `clock` counts a task's waits on other tasks; `tally` its CPU time.
pub(crate) fn set(
    store: &mut Store<Host>,
    limits: Limits,
    task: bool,
    clock: Arc<WaitClock>,
    tally: Arc<Tally>,
) {
    let wall = Duration::from_millis(limits.timeout_ms);
    let cpu = limits.cpu_ms.map(Duration::from_millis);
    let first = ticks(cpu.map_or(wall, |c| c.min(wall)));
    if !task && cpu.is_none() {
        store.set_epoch_deadline(first);
        store.epoch_deadline_trap();
        return;
    }
    store.set_epoch_deadline(if task {
        first.min(TASK_YIELD_TICKS)
    } else {
        first
    });
    let started = Instant::now();
    store.epoch_deadline_callback(move |_| {
        let waited = if task { clock.waited() } else { Duration::ZERO };
        let mut left = (wall + waited)
            .checked_sub(started.elapsed())
            .filter(|l| !l.is_zero())
            .ok_or(Trap::Interrupt)?;
        if let Some(cpu) = cpu {
            let cpu_left = cpu
                .checked_sub(tally.cpu())
                .filter(|l| !l.is_zero())
                .ok_or(CpuSpent)?;
            left = left.min(cpu_left);
        }
        Ok(if task {
            UpdateDeadline::Yield(ticks(left).min(TASK_YIELD_TICKS))
        } else {
            UpdateDeadline::Continue(ticks(left))
        })
    });
}
