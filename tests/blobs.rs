//! Blob collection on both stores: a blob goes only when nothing refers to it.

mod common;

use std::cell::Cell;

use common::{fresh_store, Db};
use shears::store::{FinalizeSummary, NewFile, DEFAULT_TENANT};

async fn collection_follows_references(db: Db) {
    let Some((store, _dir)) = fresh_store(db).await else {
        return;
    };
    let file = NewFile {
        name: "config.json".into(),
        sha256: "a".repeat(64),
        size: 2,
    };
    let model = store
        .create_ready_model(
            DEFAULT_TENANT,
            "m",
            std::slice::from_ref(&file),
            &FinalizeSummary::default(),
        )
        .await
        .unwrap();
    let dataset = store
        .create_dataset(DEFAULT_TENANT, "d", &"b".repeat(64), 3)
        .await
        .unwrap();
    let removed = Cell::new(0);
    let remove = || {
        removed.set(removed.get() + 1);
        Ok(())
    };
    assert!(
        !store.collect_blob(&file.sha256, remove).await.unwrap(),
        "a model file refers to it"
    );
    assert!(
        !store.collect_blob(&dataset.sha256, remove).await.unwrap(),
        "a dataset refers to it"
    );
    assert_eq!(removed.get(), 0);
    let shas = store.delete_model(DEFAULT_TENANT, model.id).await.unwrap();
    assert_eq!(shas, vec![file.sha256.clone()]);
    assert!(store.collect_blob(&file.sha256, remove).await.unwrap());
    store
        .delete_dataset(DEFAULT_TENANT, dataset.id)
        .await
        .unwrap();
    assert!(store.collect_blob(&dataset.sha256, remove).await.unwrap());
    // Bytes that were placed but never recorded are removed too.
    assert!(store.collect_blob(&"c".repeat(64), remove).await.unwrap());
    assert_eq!(removed.get(), 3);
}

both_stores!(collection_follows_references);
