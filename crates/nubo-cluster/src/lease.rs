//! Exactly-one-node work: whoever creates the key first holds the lease.
//!
//! A cron run is named by its schedule and its due time, so every node
//! that sees the run due tries to create the same key and only one
//! succeeds; the keys expire from the bucket after a day.

use crate::{Cluster, ClusterError};

impl Cluster {
    /// Takes the lease `name` for this node; `false` if another node took
    /// it first.
    pub async fn lease(&self, name: &str, holder: &str) -> Result<bool, ClusterError> {
        let holder = bytes::Bytes::from(holder.to_string());
        Ok(nubo_jetstream::write_if(&self.js, &self.leases, name, holder, 0).await?)
    }
}
