//! The worker pool: claim jobs with a lease, run the engine on the rayon pool,
//! heartbeat while it runs, publish the result.

mod run;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Notify};
use tracing::Instrument;

use crate::blob::BlobStore;
use crate::config::WorkerArgs;
use crate::store::Store;
use crate::tensor::HeaderLimits;

/// Everything a worker needs.
#[derive(Clone)]
pub struct Workers {
    pub store: Store,
    pub blobs: BlobStore,
    pub args: WorkerArgs,
    pub header_limits: HeaderLimits,
    /// The pool the kernels run on.
    pub pool: Arc<rayon::ThreadPool>,
    /// Signalled when a job is queued by this process.
    pub job_queued: Arc<Notify>,
}

/// Builds the kernel thread pool (`threads == 0`: one thread per core). Its threads
/// run at a lower scheduling priority than the async runtime, so the API keeps
/// answering while every core prunes.
pub fn kernel_pool(threads: usize) -> std::io::Result<rayon::ThreadPool> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("shears-kernel-{i}"))
        .start_handler(|_| lower_thread_priority())
        .build()
        .map_err(std::io::Error::other)
}

/// Raises the calling thread's nice value by 10 (on Linux, per thread).
fn lower_thread_priority() {
    // SAFETY: setpriority only reads its integer arguments; `who == 0` names the
    // calling thread. A failure leaves the priority as it was, which is harmless.
    let result = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 10) };
    if result != 0 {
        tracing::debug!("could not lower the kernel threads' priority");
    }
}

impl Workers {
    /// Runs `args.workers` job loops until `shutdown` turns true; running jobs get
    /// `shutdown_grace` to finish, then go back to the queue.
    pub async fn run(self, shutdown: watch::Receiver<bool>) {
        let host = hostname();
        let mut loops = Vec::new();
        for i in 0..self.args.workers {
            let owner = format!("{host}/{}/{i}", uuid::Uuid::new_v4().simple());
            let workers = self.clone();
            let shutdown = shutdown.clone();
            loops.push(tokio::spawn(async move {
                workers.job_loop(owner, shutdown).await
            }));
        }
        for handle in loops {
            if let Err(err) = handle.await {
                tracing::error!(%err, "a worker loop ended abnormally");
            }
        }
    }

    async fn job_loop(&self, owner: String, mut shutdown: watch::Receiver<bool>) {
        tracing::info!(%owner, "worker started");
        let lease_ms = self.args.lease().as_millis() as i64;
        while !*shutdown.borrow() {
            match self.store.claim_job(&owner, lease_ms).await {
                Ok(Some(claim)) => {
                    let span =
                        tracing::info_span!("job", job_id = %claim.job.id, attempt = claim.attempt);
                    self.run_job(claim, shutdown.clone()).instrument(span).await
                }
                Ok(None) => {
                    tokio::select! {
                        _ = self.job_queued.notified() => {}
                        _ = tokio::time::sleep(self.args.poll) => {}
                        _ = shutdown.changed() => {}
                    }
                }
                Err(err) => {
                    tracing::warn!(%err, "claiming a job failed; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                        _ = shutdown.changed() => {}
                    }
                }
            }
        }
        tracing::info!(%owner, "worker stopped");
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "worker".into())
}

#[cfg(test)]
mod tests {
    #[test]
    fn kernel_threads_run_at_a_lower_priority() {
        // SAFETY: getpriority only reads its integer arguments.
        let nice = || unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
        let base = nice();
        let pool = super::kernel_pool(1).unwrap();
        assert_eq!(pool.install(nice), (base + 10).min(19));
        assert_eq!(nice(), base, "the calling thread keeps its priority");
    }
}
