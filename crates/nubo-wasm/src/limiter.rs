//! What an instance may grow to: its own `memory_mb`, and the app's share
//! of the node's guest memory ([`crate::share`]). Refusals are typed
//! errors that trap the instance, so that the caller can say which limit
//! it met without reading error text.

use crate::share::Charge;
use crate::usage::Tally;
use std::sync::Arc;
use wasmtime::ResourceLimiter;

/// Why an instance's memory could not grow.
#[derive(Debug, thiserror::Error)]
pub enum MemoryRefused {
    #[error("memory would grow to {desired} bytes, past the component's limit of {limit}")]
    OverLimit { desired: usize, limit: usize },
    #[error(
        "the node's guest memory is taken, and this app holds more than its share while other apps need theirs"
    )]
    NodeShare,
}

pub(crate) struct Limiter {
    /// Bytes one instance's memory may reach.
    memory: usize,
    charge: Charge,
    /// Where the run's peak memory is counted.
    tally: Arc<Tally>,
}

impl Limiter {
    pub(crate) fn new(memory: usize, charge: Charge, tally: Arc<Tally>) -> Self {
        Self {
            memory,
            charge,
            tally,
        }
    }
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory {
            return Err(MemoryRefused::OverLimit {
                desired,
                limit: self.memory,
            }
            .into());
        }
        if !self.charge.grow(desired.saturating_sub(current) as u64) {
            return Err(MemoryRefused::NodeShare.into());
        }
        self.tally.memory(desired as u64);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        _desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // Tables are bounded by the pooling allocator's slot size.
        Ok(true)
    }
}
