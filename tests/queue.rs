//! The job queue on both stores: atomic claims, leases, retries, guarded writes.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{fresh_store, Db};
use serde_json::json;
use shears::store::{
    Completion, JobError, NewJob, NewJobOutcome, Progress, Store, StoreError, DEFAULT_TENANT,
};
use uuid::Uuid;

async fn enqueue(store: &Store, max_attempts: i32) -> Uuid {
    let new = NewJob {
        tenant_id: DEFAULT_TENANT,
        kind: "prune".into(),
        model_id: Uuid::now_v7(),
        recipe: json!({"sparsity": 0.5}),
        resolved_recipe: json!({"sparsity": 0.5}),
        max_attempts,
        idempotency_key: None,
        request_hash: "h".into(),
        engine_version: "test".into(),
    };
    match store.create_job(&new).await.unwrap() {
        NewJobOutcome::Created(job) => job.id,
        NewJobOutcome::Replayed(_) => panic!("no key, no replay"),
    }
}

fn done() -> Completion {
    Completion {
        output: None,
        progress: Progress::default(),
        metrics: vec![],
        report: json!({}),
    }
}

async fn concurrent_claims_take_each_job_once(db: Db) {
    let Some((store, _dir)) = fresh_store(db).await else {
        return;
    };
    let mut ids = BTreeSet::new();
    for _ in 0..40 {
        ids.insert(enqueue(&store, 3).await);
    }
    let mut claimers = Vec::new();
    for w in 0..8 {
        let store = store.clone();
        claimers.push(tokio::spawn(async move {
            let mut got = Vec::new();
            while let Some(claim) = store.claim_job(&format!("w{w}"), 60_000).await.unwrap() {
                assert_eq!(claim.attempt, 1);
                assert_eq!(claim.job.progress.0.phase, "starting");
                store.complete_job(&claim, &done()).await.unwrap();
                got.push(claim.job.id);
            }
            got
        }));
    }
    let mut claimed = Vec::new();
    for c in claimers {
        claimed.extend(c.await.unwrap());
    }
    let unique: BTreeSet<_> = claimed.iter().copied().collect();
    assert_eq!(claimed.len(), 40, "no job runs twice");
    assert_eq!(unique, ids, "no job is lost");
}

async fn expired_lease_returns_the_job_and_fences_the_old_worker(db: Db) {
    let Some((store, _dir)) = fresh_store(db).await else {
        return;
    };
    let id = enqueue(&store, 2).await;
    let first = store.claim_job("a", 50).await.unwrap().unwrap();
    assert!(
        store.claim_job("b", 50).await.unwrap().is_none(),
        "a live lease is not stolen"
    );
    tokio::time::sleep(Duration::from_millis(120)).await;
    let second = store
        .claim_job("b", 60_000)
        .await
        .unwrap()
        .expect("an expired lease is reclaimed");
    assert_eq!((second.job.id, second.attempt), (id, 2));
    // The first worker lost its lease: none of its writes land.
    assert!(matches!(
        store.heartbeat(&first, &Progress::default(), 1000).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        store.complete_job(&first, &done()).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(store
        .fail_job(
            &first,
            &JobError {
                title: "x".into(),
                detail: "y".into()
            },
            false
        )
        .await
        .is_err());
    let job = store.complete_job(&second, &done()).await.unwrap();
    assert_eq!((job.status.as_str(), job.attempts), ("succeeded", 2));
}

async fn retries_stop_at_max_attempts(db: Db) {
    let Some((store, _dir)) = fresh_store(db).await else {
        return;
    };
    let id = enqueue(&store, 2).await;
    let error = JobError {
        title: "I/O error".into(),
        detail: "disk".into(),
    };
    let claim = store.claim_job("a", 60_000).await.unwrap().unwrap();
    store.fail_job(&claim, &error, true).await.unwrap();
    assert_eq!(
        store
            .get_job(DEFAULT_TENANT, id)
            .await
            .unwrap()
            .unwrap()
            .status,
        "queued"
    );
    let claim = store.claim_job("a", 60_000).await.unwrap().unwrap();
    assert_eq!(claim.attempt, 2);
    store.fail_job(&claim, &error, true).await.unwrap();
    let job = store.get_job(DEFAULT_TENANT, id).await.unwrap().unwrap();
    assert_eq!(job.status, "failed");
    assert_eq!(job.error.unwrap().0, error);
    assert!(store.claim_job("a", 60_000).await.unwrap().is_none());

    // A worker that dies on the last attempt: the job fails once the lease expires.
    let id = enqueue(&store, 1).await;
    store.claim_job("dead", 30).await.unwrap().unwrap();
    tokio::time::sleep(Duration::from_millis(80)).await;
    assert!(store.claim_job("b", 60_000).await.unwrap().is_none());
    let job = store.get_job(DEFAULT_TENANT, id).await.unwrap().unwrap();
    assert_eq!(job.status, "failed");
    assert_eq!(job.error.unwrap().0.title, "worker lost");
}

async fn release_and_cancel(db: Db) {
    let Some((store, _dir)) = fresh_store(db).await else {
        return;
    };
    let id = enqueue(&store, 3).await;
    let claim = store.claim_job("a", 60_000).await.unwrap().unwrap();
    store.release_job(&claim).await.unwrap();
    let job = store.get_job(DEFAULT_TENANT, id).await.unwrap().unwrap();
    assert_eq!(
        (job.status.as_str(), job.attempts),
        ("queued", 0),
        "a release does not count as an attempt"
    );
    let claim = store.claim_job("a", 60_000).await.unwrap().unwrap();
    let job = store.cancel_job(DEFAULT_TENANT, id).await.unwrap();
    assert_eq!(
        (job.status.as_str(), job.cancel_requested),
        ("running", true)
    );
    assert!(
        store
            .heartbeat(&claim, &Progress::default(), 60_000)
            .await
            .unwrap(),
        "the worker learns of the cancel"
    );
    store.mark_cancelled(&claim).await.unwrap();
    assert_eq!(
        store
            .get_job(DEFAULT_TENANT, id)
            .await
            .unwrap()
            .unwrap()
            .status,
        "cancelled"
    );
    assert!(matches!(
        store.cancel_job(DEFAULT_TENANT, id).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        store.cancel_job(DEFAULT_TENANT, Uuid::now_v7()).await,
        Err(StoreError::NotFound)
    ));
}

both_stores!(
    concurrent_claims_take_each_job_once,
    expired_lease_returns_the_job_and_fences_the_old_worker,
    retries_stop_at_max_attempts,
    release_and_cancel,
);
