//! Starting the service: store, blobs, API, workers and the janitor, with graceful
//! shutdown. Used by `shears serve`, `shears worker` and the HTTP tests.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

use crate::api::{self, ApiSettings, AppState};
use crate::blob::BlobStore;
use crate::config::{ServeArgs, StoreArgs, WorkerArgs};
use crate::store::{now_ms, Store};
use crate::tensor::HeaderLimits;
use crate::worker::{kernel_pool, Workers};

/// A running service.
pub struct Running {
    /// The address the API listens on.
    pub addr: SocketAddr,
    pub store: Store,
    pub data_dir: PathBuf,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Running {
    /// Stops accepting work, lets running jobs finish (or puts them back in the
    /// queue after the grace period), and waits for everything to end.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
    }

    /// A receiver that turns true when shutdown begins.
    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }
}

/// Opens the data directory, the database and the blob store.
pub async fn open(store_args: &StoreArgs) -> anyhow::Result<(Store, BlobStore)> {
    std::fs::create_dir_all(&store_args.data_dir)?;
    let store = Store::connect(store_args.database_url.as_deref(), &store_args.data_dir).await?;
    let blobs = BlobStore::open(&store_args.data_dir)?;
    Ok((store, blobs))
}

/// The process-wide Prometheus recorder (installed once).
pub fn metrics_handle() -> Option<PrometheusHandle> {
    static HANDLE: std::sync::OnceLock<Option<PrometheusHandle>> = std::sync::OnceLock::new();
    HANDLE
        .get_or_init(|| PrometheusBuilder::new().install_recorder().ok())
        .clone()
}

fn start_workers(
    store: &Store,
    blobs: &BlobStore,
    args: &WorkerArgs,
    header_limits: &HeaderLimits,
    job_queued: &Arc<Notify>,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<Option<JoinHandle<()>>> {
    if args.workers == 0 {
        return Ok(None);
    }
    let workers = Workers {
        store: store.clone(),
        blobs: blobs.clone(),
        args: args.clone(),
        header_limits: header_limits.clone(),
        pool: Arc::new(kernel_pool(args.threads)?),
        job_queued: job_queued.clone(),
    };
    Ok(Some(tokio::spawn(workers.run(shutdown))))
}

/// Starts the API (and the embedded workers) on `args.bind`.
pub async fn serve(store_args: &StoreArgs, args: &ServeArgs) -> anyhow::Result<Running> {
    let (store, blobs) = open(store_args).await?;
    let header_limits = HeaderLimits {
        max_header_bytes: args.max_header_bytes,
        ..HeaderLimits::default()
    };
    let job_queued = Arc::new(Notify::new());
    let state = AppState {
        store: store.clone(),
        blobs: blobs.clone(),
        settings: Arc::new(ApiSettings {
            max_upload_bytes: args.max_upload_bytes,
            header_limits: header_limits.clone(),
            default_max_attempts: 3,
        }),
        metrics: metrics_handle(),
        job_queued: job_queued.clone(),
    };
    let (shutdown, signal) = watch::channel(false);
    let listener = tokio::net::TcpListener::bind(args.bind).await?;
    let addr = listener.local_addr()?;
    let mut tasks = Vec::new();
    let mut http_signal = signal.clone();
    tasks.push(tokio::spawn(async move {
        let server = axum::serve(listener, api::router(state)).with_graceful_shutdown(async move {
            let _ = http_signal.wait_for(|stop| *stop).await;
        });
        if let Err(err) = server.await {
            tracing::error!(%err, "the HTTP server failed");
        }
    }));
    tasks.push(tokio::spawn(janitor(
        store.clone(),
        blobs.clone(),
        args.upload_ttl,
        signal.clone(),
    )));
    tasks.extend(start_workers(
        &store,
        &blobs,
        &args.worker,
        &header_limits,
        &job_queued,
        signal,
    )?);
    tracing::info!(%addr, database = store.kind(), data_dir = %store_args.data_dir.display(), workers = args.worker.workers, "shears is listening");
    Ok(Running {
        addr,
        store,
        data_dir: store_args.data_dir.clone(),
        shutdown,
        tasks,
    })
}

/// Starts workers only (`shears worker`), for machines that share the database.
pub async fn work(store_args: &StoreArgs, args: &WorkerArgs) -> anyhow::Result<Running> {
    let (store, blobs) = open(store_args).await?;
    let (shutdown, signal) = watch::channel(false);
    let mut args = args.clone();
    args.workers = args.workers.max(1);
    let tasks = start_workers(
        &store,
        &blobs,
        &args,
        &HeaderLimits::default(),
        &Arc::new(Notify::new()),
        signal,
    )?
    .into_iter()
    .collect();
    Ok(Running {
        addr: SocketAddr::from(([0, 0, 0, 0], 0)),
        store,
        data_dir: store_args.data_dir.clone(),
        shutdown,
        tasks,
    })
}

/// Removes models left `uploading` longer than `ttl` with their blobs, and temporary
/// or scratch files that a crashed process left behind for as long.
async fn janitor(store: Store, blobs: BlobStore, ttl: Duration, mut stop: watch::Receiver<bool>) {
    let period = (ttl / 10).clamp(Duration::from_millis(200), Duration::from_secs(60));
    loop {
        tokio::select! {
            _ = tokio::time::sleep(period) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let cutoff = now_ms() - ttl.as_millis() as i64;
        let stale = match store.stale_uploads(cutoff).await {
            Ok(stale) => stale,
            Err(err) => {
                tracing::warn!(%err, "could not look for abandoned uploads");
                continue;
            }
        };
        remove_leftovers(&store, &blobs, ttl).await;
        for (tenant, id) in stale {
            match store.delete_model(tenant, id).await {
                Ok(shas) => {
                    tracing::info!(model_id = %id, "removed an upload abandoned for longer than the upload TTL");
                    for sha in shas {
                        let _ = store.collect_blob(&sha, || blobs.remove(&sha)).await;
                    }
                }
                Err(err) => {
                    tracing::warn!(model_id = %id, %err, "could not remove an abandoned upload")
                }
            }
        }
    }
}

/// Removes upload temporaries and scratch folders that dead processes left behind:
/// a scratch folder goes once its job attempt is no longer running.
async fn remove_leftovers(store: &Store, blobs: &BlobStore, age: Duration) {
    let scan = blobs.clone();
    let found = tokio::task::spawn_blocking(move || {
        let uploads = scan.remove_stale_uploads(age)?;
        Ok::<_, std::io::Error>((uploads, scan.stale_scratch(age)?))
    })
    .await;
    let Ok(Ok((uploads, scratch))) = found else {
        tracing::warn!("could not scan for leftover temporary files");
        return;
    };
    if uploads > 0 {
        tracing::info!(
            files = uploads,
            "removed upload temporaries left by an interrupted process"
        );
    }
    for (path, job, attempt) in scratch {
        if let Ok(false) = store.attempt_running(job, attempt).await {
            if std::fs::remove_dir_all(&path).is_ok() {
                tracing::info!(%job, attempt, "removed the scratch folder of an ended job attempt");
            }
        }
    }
}
