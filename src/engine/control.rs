//! What a running engine shares with whoever supervises it: a cancel flag and progress.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use crate::store::Progress;

/// Cancellation and progress of one engine run, shared across threads.
#[derive(Debug, Default)]
pub struct Control {
    cancelled: AtomicBool,
    done: AtomicU64,
    total: AtomicU64,
    phase: Mutex<(String, String)>,
}

impl Control {
    /// Asks the run to stop at its next check.
    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::SeqCst);
    }

    /// Whether a stop was asked for.
    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::SeqCst)
    }

    /// Fails with [`Cancelled`] when a stop was asked for.
    pub fn check(&self) -> Result<(), Cancelled> {
        if self.is_cancelled() {
            Err(Cancelled)
        } else {
            Ok(())
        }
    }

    /// Starts a phase counting `total` units.
    pub fn begin(&self, phase: &str, unit: &str, total: u64) {
        *self.phase.lock().expect("progress lock") = (phase.to_string(), unit.to_string());
        self.done.store(0, Ordering::SeqCst);
        self.total.store(total, Ordering::SeqCst);
    }

    /// Counts one more unit done.
    pub fn step(&self) {
        self.done.fetch_add(1, Ordering::SeqCst);
    }

    /// The progress now.
    pub fn progress(&self) -> Progress {
        let (phase, unit) = self.phase.lock().expect("progress lock").clone();
        Progress {
            phase,
            unit,
            done: self.done.load(Ordering::SeqCst),
            total: self.total.load(Ordering::SeqCst),
        }
    }
}

/// The run stopped because it was cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("cancelled")]
pub struct Cancelled;
