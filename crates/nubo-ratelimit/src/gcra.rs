//! The generic cell rate algorithm: one number per key, the theoretical
//! arrival time (TAT) of the next request if requests came exactly at
//! the rate. A request at `now` passes if `TAT - now` is within the
//! burst's allowance; it then moves TAT on by one interval. A key whose
//! TAT is in the past has its whole burst again, so it can be forgotten.
//!
//! Times are microseconds since the Unix epoch: a rate of 5,000/s is an
//! interval of 200 µs.

/// One limit: `burst` requests at once, then one per `interval_us`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub interval_us: u64,
    pub burst: u64,
}

/// What the algorithm decided for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// The key's TAT after this request (unchanged if refused).
    pub tat_us: u64,
    /// Requests the key may still make at once.
    pub remaining: u64,
    /// Until the next request would pass (0 if one would now).
    pub retry_after_us: u64,
    /// Until the key has its whole burst again.
    pub reset_us: u64,
}

impl Rate {
    /// How far ahead of now a TAT may be for a request to pass.
    fn tolerance(&self) -> u64 {
        self.interval_us
            .saturating_mul(self.burst.saturating_sub(1))
    }

    pub fn decide(&self, tat_us: Option<u64>, now_us: u64) -> Decision {
        let tat = tat_us.unwrap_or(now_us).max(now_us);
        let ahead = tat - now_us;
        let allowed = ahead <= self.tolerance();
        let new_tat = if allowed {
            tat.saturating_add(self.interval_us)
        } else {
            tat
        };
        let after = new_tat - now_us;
        let left = self
            .interval_us
            .saturating_mul(self.burst)
            .saturating_sub(after);
        Decision {
            allowed,
            tat_us: new_tat,
            remaining: left / self.interval_us.max(1),
            retry_after_us: if allowed { 0 } else { ahead - self.tolerance() },
            reset_us: after,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_one_per_interval() {
        let r = Rate {
            interval_us: 1_000_000,
            burst: 3,
        };
        let mut tat = None;
        let mut now = 10_000_000;
        for left in [2, 1, 0] {
            let d = r.decide(tat, now);
            assert!(d.allowed);
            assert_eq!(d.remaining, left);
            tat = Some(d.tat_us);
        }
        let d = r.decide(tat, now);
        assert!(!d.allowed);
        assert_eq!(d.retry_after_us, 1_000_000);
        assert_eq!(d.reset_us, 3_000_000);
        now += 1_000_000;
        assert!(r.decide(tat, now).allowed);
        // After the whole reset the key has its burst again.
        now += 3_000_000;
        assert_eq!(r.decide(tat, now).remaining, 2);
    }
}
