//! Settings from flags and the environment (every flag has an `SHEARS_*` variable).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};

/// Where the state lives: shared by every command that touches the database.
#[derive(Args, Clone, Debug)]
pub struct StoreArgs {
    /// Directory for the SQLite database, blobs and scratch space.
    #[arg(long, env = "SHEARS_DATA_DIR", default_value = "./shears-data")]
    pub data_dir: PathBuf,
    /// `postgres://…` to use PostgreSQL instead of the embedded SQLite database.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: Option<String>,
}

/// Log output format.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Settings of the worker pool.
#[derive(Args, Clone, Debug)]
pub struct WorkerArgs {
    /// Number of jobs run at once by this process (0: serve the API alone).
    #[arg(long, env = "SHEARS_WORKERS", default_value_t = 1)]
    pub workers: usize,
    /// Threads of the pruning pool (0: one per core).
    #[arg(long, env = "SHEARS_THREADS", default_value_t = 0)]
    pub threads: usize,
    /// How long a worker's claim on a job lasts without a heartbeat.
    #[arg(long, env = "SHEARS_LEASE_SECS", default_value_t = 30)]
    pub lease_secs: u64,
    /// How often an idle worker looks for queued jobs.
    #[arg(long, env = "SHEARS_POLL", default_value = "1s", value_parser = humantime::parse_duration)]
    pub poll: Duration,
    /// How long a running job may take to finish on shutdown before it is put back
    /// in the queue.
    #[arg(long, env = "SHEARS_SHUTDOWN_GRACE", default_value = "30s", value_parser = humantime::parse_duration)]
    pub shutdown_grace: Duration,
}

impl WorkerArgs {
    /// The lease length.
    pub fn lease(&self) -> Duration {
        Duration::from_secs(self.lease_secs.max(1))
    }
}

/// Settings of `shears serve`.
#[derive(Args, Clone, Debug)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "SHEARS_BIND", default_value = "127.0.0.1:8080")]
    pub bind: SocketAddr,
    /// Largest accepted upload body, in bytes (a single file, or a whole multipart upload).
    #[arg(long, env = "SHEARS_MAX_UPLOAD_BYTES", default_value_t = 64 << 30)]
    pub max_upload_bytes: u64,
    /// Largest accepted safetensors header, in bytes.
    #[arg(long, env = "SHEARS_MAX_HEADER_BYTES", default_value_t = 100 << 20)]
    pub max_header_bytes: u64,
    /// A model still `uploading` this long after its last change is removed.
    #[arg(long, env = "SHEARS_UPLOAD_TTL", default_value = "24h", value_parser = humantime::parse_duration)]
    pub upload_ttl: Duration,
    #[command(flatten)]
    pub worker: WorkerArgs,
}
