//! Running one claimed job.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{oneshot, watch};

use super::Workers;
use crate::engine::{
    prune_model_guarded, Control, EngineError, EngineOptions, PruneOutput, SourceFile,
};
use crate::recipe::Recipe;
use crate::store::{ClaimedJob, Completion, JobError, NewFile, OutputModel, Progress, StoreError};

/// How a run ended, as far as the queue is concerned.
enum Ending {
    Done(PruneOutput),
    Cancelled,
    /// Shutting down: back to the queue without counting the attempt.
    Released,
    /// The lease went to another worker: write nothing.
    LeaseLost,
    Failed {
        error: JobError,
        retry: bool,
    },
}

impl Workers {
    pub(super) async fn run_job(&self, claim: ClaimedJob, mut shutdown: watch::Receiver<bool>) {
        let job = &claim.job;
        tracing::info!(model_id = %job.model_id, "job started");
        let started = Instant::now();
        let scratch = match self.blobs.scratch_dir(job.id, claim.attempt) {
            Ok(dir) => dir,
            Err(err) => {
                self.finish(
                    &claim,
                    Ending::Failed {
                        error: io_error(&err),
                        retry: true,
                    },
                )
                .await;
                return;
            }
        };
        let ending = match self.prepare(&claim).await {
            Err(ending) => ending,
            Ok((files, recipe)) => {
                let ctl = Arc::new(Control::default());
                let (tx, mut rx) = oneshot::channel();
                {
                    let (ctl, scratch) = (ctl.clone(), scratch.clone());
                    let options = EngineOptions {
                        limits: self.header_limits.clone(),
                        durable: true,
                    };
                    self.pool.spawn(move || {
                        let result = prune_model_guarded(&files, &recipe, &scratch, &ctl, &options);
                        let _ = tx.send(result);
                    });
                }
                self.supervise(&claim, &ctl, &mut rx, &mut shutdown).await
            }
        };
        let status = self.finish(&claim, ending).await;
        if let Err(err) = std::fs::remove_dir_all(&scratch) {
            tracing::warn!(%err, "could not remove the job's scratch directory");
        }
        metrics::histogram!("shears_job_duration_seconds", "status" => status)
            .record(started.elapsed().as_secs_f64());
        tracing::info!(
            status,
            seconds = started.elapsed().as_secs_f64(),
            "job ended"
        );
    }

    /// The input files and the recipe, or why the job cannot run.
    async fn prepare(&self, claim: &ClaimedJob) -> Result<(Vec<SourceFile>, Recipe), Ending> {
        let job = &claim.job;
        let recipe = Recipe::parse(&job.recipe.0).map_err(|e| permanent("invalid recipe", e))?;
        let model = match self.store.get_model(job.tenant_id, job.model_id).await {
            Ok(Some(model)) => model,
            Ok(None) => return Err(permanent("model not found", "the input model was deleted")),
            Err(err) => return Err(transient(err)),
        };
        let files = self.store.model_files(model.id).await.map_err(transient)?;
        Ok((
            files
                .into_iter()
                .map(|f| SourceFile {
                    path: self.blobs.path(&f.sha256),
                    name: f.name,
                    sha256: f.sha256,
                    size: f.size as u64,
                })
                .collect(),
            recipe,
        ))
    }

    /// Heartbeats until the engine answers; turns cancellation, a lost lease and
    /// shutdown into a stop request.
    async fn supervise(
        &self,
        claim: &ClaimedJob,
        ctl: &Control,
        rx: &mut oneshot::Receiver<Result<PruneOutput, EngineError>>,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Ending {
        let lease = self.args.lease();
        let lease_ms = lease.as_millis() as i64;
        let mut beat = tokio::time::interval((lease / 3).min(Duration::from_millis(500)));
        let mut lost = false;
        let mut release = false;
        let mut grace: Option<tokio::time::Instant> = None;
        loop {
            tokio::select! {
                result = &mut *rx => {
                    return match result {
                        _ if lost => Ending::LeaseLost,
                        _ if release => Ending::Released,
                        Ok(Ok(output)) => Ending::Done(output),
                        Ok(Err(EngineError::Cancelled)) => Ending::Cancelled,
                        Ok(Err(EngineError::Invalid(msg))) => permanent("the model cannot be pruned with this recipe", msg),
                        Ok(Err(EngineError::Io(err))) => Ending::Failed { error: io_error(&err), retry: true },
                        Ok(Err(EngineError::Internal(msg))) => {
                            tracing::error!(panic = %msg, "the pruning engine panicked");
                            permanent("internal error", "the pruning engine failed on this job; the server log has the details")
                        }
                        Err(_) => Ending::Failed {
                            error: JobError { title: "internal error".into(), detail: "the pruning engine stopped unexpectedly".into() },
                            retry: true,
                        },
                    };
                }
                _ = beat.tick() => {
                    match self.store.heartbeat(claim, &ctl.progress(), lease_ms).await {
                        Ok(true) => ctl.cancel(),
                        Ok(false) => {}
                        Err(StoreError::Conflict(_)) => {
                            tracing::warn!("lease lost; stopping without writing");
                            lost = true;
                            ctl.cancel();
                        }
                        Err(err) => tracing::warn!(%err, "heartbeat failed; will retry"),
                    }
                }
                _ = shutdown.changed(), if grace.is_none() => {
                    tracing::info!(grace = ?self.args.shutdown_grace, "shutting down: the running job may finish within the grace period");
                    grace = Some(tokio::time::Instant::now() + self.args.shutdown_grace);
                }
                _ = tokio::time::sleep_until(grace.unwrap_or_else(tokio::time::Instant::now)), if grace.is_some() && !release => {
                    tracing::info!("grace period over: the job goes back to the queue");
                    release = true;
                    ctl.cancel();
                }
            }
        }
    }

    /// Records the ending in the store; returns the status label for metrics.
    async fn finish(&self, claim: &ClaimedJob, ending: Ending) -> &'static str {
        let recorded = match ending {
            Ending::Done(output) => return self.publish(claim, output).await,
            Ending::LeaseLost => return "lease_lost",
            Ending::Cancelled => self.store.mark_cancelled(claim).await.map(|_| "cancelled"),
            Ending::Released => self.store.release_job(claim).await.map(|_| "released"),
            Ending::Failed { error, retry } => {
                tracing::warn!(title = %error.title, detail = %error.detail, retry, "job attempt failed");
                self.store
                    .fail_job(claim, &error, retry)
                    .await
                    .map(|_| "failed")
            }
        };
        recorded.unwrap_or_else(|err| {
            tracing::warn!(%err, "could not record the job's end");
            "unrecorded"
        })
    }

    /// Publishes the output model: blobs first, then the job and model rows in one
    /// transaction; on failure the new blobs are collected again.
    async fn publish(&self, claim: &ClaimedJob, output: PruneOutput) -> &'static str {
        let rewritten: Vec<_> = output
            .files
            .iter()
            .filter_map(|f| f.rewritten.as_ref().map(|p| (p.clone(), f.sha256.clone())))
            .collect();
        let place = |blobs: &crate::blob::BlobStore| -> std::io::Result<()> {
            for (path, sha) in &rewritten {
                blobs.place(path, sha)?;
            }
            Ok(())
        };
        let model = self
            .store
            .get_model(claim.job.tenant_id, claim.job.model_id)
            .await
            .ok()
            .flatten();
        let label = claim.job.resolved_recipe.0["method"]
            .as_str()
            .unwrap_or("pruned")
            .to_string();
        let completion = Completion {
            output: Some(OutputModel {
                name: format!(
                    "{} ({label})",
                    model.map_or_else(|| "model".into(), |m| m.name)
                ),
                files: output
                    .files
                    .iter()
                    .map(|f| NewFile {
                        name: f.name.clone(),
                        sha256: f.sha256.clone(),
                        size: f.size as i64,
                    })
                    .collect(),
                summary: output.summary,
            }),
            progress: Progress {
                phase: "done".into(),
                unit: "tensors".into(),
                done: output.metrics.len() as u64,
                total: output.metrics.len() as u64,
            },
            metrics: output.metrics,
            report: output.totals,
        };
        let result = match place(&self.blobs) {
            Ok(()) => self
                .store
                .complete_job(claim, &completion)
                .await
                .map(|_| ()),
            Err(err) => {
                let _ = self.store.fail_job(claim, &io_error(&err), true).await;
                Err(StoreError::Conflict(err.to_string()))
            }
        };
        match result {
            Ok(()) => {
                if let Err(err) = place(&self.blobs) {
                    tracing::error!(%err, "an output blob could not be restored after publishing");
                }
                "succeeded"
            }
            Err(err) => {
                tracing::warn!(%err, "the output was not published");
                for (_, sha) in &rewritten {
                    let blobs = self.blobs.clone();
                    let _ = self.store.collect_blob(sha, || blobs.remove(sha)).await;
                }
                "unpublished"
            }
        }
    }
}

fn permanent(title: &str, detail: impl std::fmt::Display) -> Ending {
    Ending::Failed {
        error: JobError {
            title: title.into(),
            detail: detail.to_string(),
        },
        retry: false,
    }
}

fn transient(err: StoreError) -> Ending {
    Ending::Failed {
        error: JobError {
            title: "database error".into(),
            detail: err.to_string(),
        },
        retry: true,
    }
}

fn io_error(err: &std::io::Error) -> JobError {
    JobError {
        title: "I/O error".into(),
        detail: err.to_string(),
    }
}
