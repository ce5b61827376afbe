//! The database: one set of SQL queries run against SQLite (the embedded default) or
//! PostgreSQL (shared by several worker machines).
//!
//! Both databases use the same schema shape (times as unix milliseconds, ids as UUIDs)
//! and the same `$N` placeholders, so every query is written once and [`dispatch!`]
//! runs it on whichever pool is configured. Where the two differ (the queue's claim,
//! the migrations) the difference is spelled out next to the query.

mod blobs;
mod datasets;
mod jobs;
mod models;
mod rows;

pub use jobs::{ClaimedJob, Completion, NewJob, NewJobOutcome, OutputModel};
pub use models::{FinalizeSummary, NewFile, NewTensor};
pub use rows::*;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};
use uuid::Uuid;

/// The tenant that owns everything until API keys exist.
pub const DEFAULT_TENANT: Uuid = Uuid::from_u128(1);

/// Errors of the store layer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The row does not exist (or belongs to another tenant).
    #[error("not found")]
    NotFound,
    /// The row exists but is in a state that forbids the change.
    #[error("{0}")]
    Conflict(String),
    /// The database failed.
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    /// Migrations failed.
    #[error("migration error: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// Result alias of the store layer.
pub type StoreResult<T> = Result<T, StoreError>;

/// A connection pool to one of the two supported databases.
#[derive(Clone, Debug)]
pub enum Store {
    /// Embedded SQLite (a file in the data directory).
    Sqlite(SqlitePool),
    /// PostgreSQL.
    Postgres(PgPool),
}

/// Runs `$body` with `$pool` bound to the concrete pool of either database.
macro_rules! dispatch {
    ($store:expr, $pool:ident => $body:expr) => {
        match $store {
            $crate::store::Store::Sqlite($pool) => $body,
            $crate::store::Store::Postgres($pool) => $body,
        }
    };
}
pub(crate) use dispatch;

impl Store {
    /// Connects to `database_url` (`postgres://…` or `sqlite://…`), or to
    /// `shears.db` in `data_dir` when no URL is given, and runs the migrations.
    pub async fn connect(database_url: Option<&str>, data_dir: &Path) -> StoreResult<Store> {
        let store = match database_url {
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                let pool = PgPoolOptions::new()
                    .max_connections(16)
                    .acquire_timeout(Duration::from_secs(10))
                    .connect(url)
                    .await?;
                Store::Postgres(pool)
            }
            Some(url) => Store::Sqlite(sqlite_pool(SqliteConnectOptions::from_str(url)?).await?),
            None => {
                let path = data_dir.join("shears.db");
                Store::Sqlite(sqlite_pool(SqliteConnectOptions::new().filename(path)).await?)
            }
        };
        store.migrate().await?;
        Ok(store)
    }

    /// Applies the migrations of this database that are not applied yet.
    pub async fn migrate(&self) -> StoreResult<()> {
        match self {
            Store::Sqlite(pool) => sqlx::migrate!("./migrations/sqlite").run(pool).await?,
            Store::Postgres(pool) => sqlx::migrate!("./migrations/postgres").run(pool).await?,
        }
        Ok(())
    }

    /// A short name of the database kind, for logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Store::Sqlite(_) => "sqlite",
            Store::Postgres(_) => "postgres",
        }
    }

    /// Checks that the database answers.
    pub async fn ping(&self) -> StoreResult<()> {
        dispatch!(self, pool => sqlx::query("SELECT 1").execute(pool).await.map(|_| ()))?;
        Ok(())
    }

    /// Closes every connection.
    pub async fn close(&self) {
        dispatch!(self, pool => pool.close().await)
    }
}

async fn sqlite_pool(options: SqliteConnectOptions) -> StoreResult<SqlitePool> {
    let options = options
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .foreign_keys(true)
        .busy_timeout(Duration::from_secs(30));
    Ok(SqlitePoolOptions::new()
        .max_connections(8)
        .connect_with(options)
        .await?)
}

/// The current time in unix milliseconds.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// True when `err` is a unique-constraint violation.
fn is_unique_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.is_unique_violation())
}
