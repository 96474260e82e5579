//! A lease table in memory on an injected clock: the store of the leadership tests (two
//! candidates share one by cloning it) and of the daemon's tests, with the same rules as
//! the HSDB's `leader_lease` (docs/hsdb.md): a lease changes holder only once expired or
//! released, every new lease gets the next token, a release keeps the row and its token.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use super::{Lease, LeaseOutcome, LeaseStore};
use crate::clock::Clock;

#[derive(Debug, Clone)]
struct Row {
    lease: Lease,
    released: bool,
}

/// The shared table; clones see the same rows.
#[derive(Clone)]
pub struct MemoryLeases {
    rows: Arc<Mutex<HashMap<String, Row>>>,
    clock: Arc<dyn Clock>,
    down: Arc<AtomicBool>,
}

impl std::fmt::Debug for MemoryLeases {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryLeases").finish_non_exhaustive()
    }
}

impl MemoryLeases {
    /// An empty table whose "database clock" is `clock`.
    pub fn new(clock: Arc<dyn Clock>) -> MemoryLeases {
        MemoryLeases {
            rows: Arc::new(Mutex::new(HashMap::new())),
            clock,
            down: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Make every call fail (the database unreachable) or work again.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    /// The lease of `group`, if any.
    pub fn lease(&self, group: &str) -> Option<Lease> {
        self.rows
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(group)
            .map(|r| r.lease.clone())
    }

    fn up(&self) -> Result<(), String> {
        if self.down.load(Ordering::SeqCst) {
            Err("lease store unreachable (injected)".to_owned())
        } else {
            Ok(())
        }
    }
}

impl LeaseStore for MemoryLeases {
    fn acquire(&mut self, group: &str, holder: &str, ttl_ms: u64) -> Result<LeaseOutcome, String> {
        self.up()?;
        let now = self.clock.now_ms();
        let expires = now.saturating_add(i64::try_from(ttl_ms).unwrap_or(i64::MAX));
        let mut rows = self.rows.lock().unwrap_or_else(PoisonError::into_inner);
        let fresh = |token| Lease {
            host_group: group.to_owned(),
            holder: holder.to_owned(),
            token,
            acquired_ms: now,
            renewed_ms: now,
            expires_ms: expires,
        };
        let Some(row) = rows.get_mut(group) else {
            let lease = fresh(1);
            rows.insert(
                group.to_owned(),
                Row {
                    lease: lease.clone(),
                    released: false,
                },
            );
            return Ok(LeaseOutcome::Acquired(lease));
        };
        let live = !row.released && row.lease.expires_ms > now;
        if live && row.lease.holder == holder {
            row.lease.renewed_ms = now;
            row.lease.expires_ms = expires;
            return Ok(LeaseOutcome::Renewed(row.lease.clone()));
        }
        if live {
            return Ok(LeaseOutcome::HeldBy(row.lease.clone()));
        }
        row.lease = fresh(row.lease.token + 1);
        row.released = false;
        Ok(LeaseOutcome::Acquired(row.lease.clone()))
    }

    fn release(&mut self, group: &str, holder: &str) -> Result<bool, String> {
        self.up()?;
        let now = self.clock.now_ms();
        let mut rows = self.rows.lock().unwrap_or_else(PoisonError::into_inner);
        match rows.get_mut(group) {
            Some(row) if row.lease.holder == holder && !row.released => {
                row.released = true;
                row.lease.expires_ms = row.lease.expires_ms.min(now);
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}
