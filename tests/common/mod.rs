//! Test harness: start the real app on port 0 against SQLite or a fresh PostgreSQL
//! database, and build small models in Hugging Face layout.
#![allow(dead_code)]

pub mod model;

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;
use shears::app::Running;
use shears::config::{ServeArgs, StoreArgs, WorkerArgs};

/// Which database a test runs against.
#[derive(Clone, Copy, Debug)]
pub enum Db {
    Sqlite,
    Postgres,
}

/// A running app and a client for it.
pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub running: Option<Running>,
    pub data_dir: PathBuf,
    _dir: tempfile::TempDir,
}

/// Settings a test may change.
pub struct Options {
    pub workers: usize,
    pub max_upload_bytes: u64,
    pub upload_ttl: Duration,
    pub shutdown_grace: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            workers: 1,
            max_upload_bytes: 64 << 20,
            upload_ttl: Duration::from_secs(3600),
            shutdown_grace: Duration::from_secs(5),
        }
    }
}

impl Options {
    /// The API alone: no worker claims the jobs.
    pub fn api_only() -> Self {
        Options {
            workers: 0,
            ..Options::default()
        }
    }
}

/// The server URL of the PostgreSQL used by tests, or `None` (with a notice) when
/// none is configured and the default one does not answer.
async fn postgres_admin_url() -> Option<String> {
    match std::env::var("SHEARS_TEST_POSTGRES_URL") {
        Ok(url) => Some(url),
        Err(_) => {
            let url = "postgres://postgres@127.0.0.1:5432/postgres".to_string();
            match sqlx::PgPool::connect(&url).await {
                Ok(pool) => {
                    pool.close().await;
                    Some(url)
                }
                Err(err) => {
                    eprintln!("SKIPPED: PostgreSQL at {url} does not answer ({err}); set SHEARS_TEST_POSTGRES_URL to run the Postgres tests");
                    None
                }
            }
        }
    }
}

/// A fresh, empty PostgreSQL database for one test.
async fn fresh_postgres() -> Option<String> {
    let admin_url = postgres_admin_url().await?;
    let admin = sqlx::PgPool::connect(&admin_url)
        .await
        .expect("SHEARS_TEST_POSTGRES_URL must name a reachable PostgreSQL server");
    let name = format!("shears_test_{}", uuid::Uuid::new_v4().simple());
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&admin)
        .await
        .expect("create a test database");
    admin.close().await;
    let (base, _) = admin_url
        .rsplit_once('/')
        .expect("a database URL has a path");
    Some(format!("{base}/{name}"))
}

/// A migrated, empty store of either kind (and the folder its SQLite file lives in).
pub async fn fresh_store(db: Db) -> Option<(shears::store::Store, tempfile::TempDir)> {
    let dir = tempfile::tempdir().unwrap();
    let url = match db {
        Db::Sqlite => None,
        Db::Postgres => Some(fresh_postgres().await?),
    };
    let store = shears::store::Store::connect(url.as_deref(), dir.path())
        .await
        .expect("the store opens");
    Some((store, dir))
}

/// Starts the app; `None` when the Postgres variant cannot run here.
pub async fn spawn_app(db: Db, options: Options) -> Option<TestApp> {
    let dir = tempfile::tempdir().unwrap();
    let database_url = match db {
        Db::Sqlite => None,
        Db::Postgres => Some(fresh_postgres().await?),
    };
    let store = StoreArgs {
        data_dir: dir.path().join("data"),
        database_url,
    };
    let serve = ServeArgs {
        bind: "127.0.0.1:0".parse().unwrap(),
        max_upload_bytes: options.max_upload_bytes,
        max_header_bytes: 1 << 20,
        upload_ttl: options.upload_ttl,
        worker: WorkerArgs {
            workers: options.workers,
            threads: 2,
            lease_secs: 30,
            poll: Duration::from_millis(100),
            shutdown_grace: options.shutdown_grace,
        },
    };
    let running = shears::app::serve(&store, &serve)
        .await
        .expect("the app starts");
    Some(TestApp {
        base: format!("http://{}", running.addr),
        client: reqwest::Client::new(),
        running: Some(running),
        data_dir: store.data_dir,
        _dir: dir,
    })
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).send().await.unwrap()
    }

    pub async fn get_json(&self, path: &str) -> Value {
        let resp = self.get(path).await;
        assert_eq!(resp.status(), 200, "GET {path}");
        resp.json().await.unwrap()
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .unwrap()
    }

    /// Uploads `files` in one multipart request.
    pub async fn upload_multipart(
        &self,
        name: &str,
        files: &[(String, Vec<u8>)],
    ) -> reqwest::Response {
        let mut form = reqwest::multipart::Form::new().text("name", name.to_string());
        for (file, bytes) in files {
            form = form.part(
                "file",
                reqwest::multipart::Part::bytes(bytes.clone()).file_name(file.clone()),
            );
        }
        self.client
            .post(self.url("/v1/models"))
            .multipart(form)
            .send()
            .await
            .unwrap()
    }

    /// Uploads `files` in one multipart request; returns the ready model.
    pub async fn upload_model(&self, name: &str, files: &[(String, Vec<u8>)]) -> Value {
        let resp = self.upload_multipart(name, files).await;
        assert_eq!(resp.status(), 201);
        resp.json().await.unwrap()
    }

    /// Queues a job with `body` (`{model_id, recipe}`); returns the job.
    pub async fn queue_job(&self, body: &Value) -> Value {
        let resp = self.post_json("/v1/jobs", body).await;
        assert_eq!(resp.status(), 202, "{body}");
        resp.json().await.unwrap()
    }

    /// Creates an empty model; returns its id.
    pub async fn create_model(&self, name: &str) -> String {
        let resp = self
            .post_json("/v1/models", &serde_json::json!({"name": name}))
            .await;
        assert_eq!(resp.status(), 201);
        let model: Value = resp.json().await.unwrap();
        model["id"].as_str().unwrap().to_string()
    }

    /// PUTs one file (`name` is used in the URL as given) into model `id`.
    pub async fn put_file(
        &self,
        id: &str,
        name: &str,
        body: impl Into<reqwest::Body>,
    ) -> reqwest::Response {
        self.client
            .put(self.url(&format!("/v1/models/{id}/files/{name}")))
            .body(body)
            .send()
            .await
            .unwrap()
    }

    /// Uploads `files` with create + PUT per file + finalize; returns the model.
    pub async fn upload_put(&self, name: &str, files: &[(String, Vec<u8>)]) -> Value {
        let id = self.create_model(name).await;
        for (file, bytes) in files {
            assert_eq!(
                self.put_file(&id, file, bytes.clone()).await.status(),
                201,
                "PUT {file}"
            );
        }
        let resp = self
            .client
            .post(self.url(&format!("/v1/models/{id}/finalize")))
            .send()
            .await
            .unwrap();
        assert_eq!(
            resp.status(),
            200,
            "finalize: {}",
            resp.text().await.unwrap()
        );
        resp.json().await.unwrap()
    }

    /// Polls a job until it ends.
    pub async fn wait_job(&self, id: &str) -> Value {
        for _ in 0..600 {
            let job = self.get_json(&format!("/v1/jobs/{id}")).await;
            if matches!(
                job["status"].as_str(),
                Some("succeeded" | "failed" | "cancelled")
            ) {
                return job;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("job {id} did not end in 30 s");
    }

    /// Downloads a file of a model.
    pub async fn download(&self, model_id: &str, file: &str) -> Vec<u8> {
        let resp = self
            .get(&format!("/v1/models/{model_id}/files/{file}"))
            .await;
        assert_eq!(resp.status(), 200, "download {file}");
        resp.bytes().await.unwrap().to_vec()
    }

    /// Files (relative paths) under a folder of the data directory.
    pub fn files_under(&self, folder: &str) -> Vec<String> {
        fn walk(dir: &std::path::Path, out: &mut Vec<String>) {
            if let Ok(entries) = std::fs::read_dir(dir) {
                for e in entries.flatten() {
                    if e.path().is_dir() {
                        walk(&e.path(), out);
                    } else {
                        out.push(e.path().display().to_string());
                    }
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.data_dir.join(folder), &mut out);
        out
    }

    pub async fn stop(mut self) {
        if let Some(running) = self.running.take() {
            running.shutdown().await;
        }
    }
}

/// Defines one test per database from an async body taking `Db`.
#[macro_export]
macro_rules! both_stores {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() { super::$name($crate::common::Db::Sqlite).await }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() { super::$name($crate::common::Db::Postgres).await }
            )*
        }
    };
}
