//! One contract for every store: the same suite against the `fs` store and the `s3` store (on a
//! moto server started for it).

use brs_serve::store::{Backend, FsStore, Key, S3Store, Store};
use bytes::Bytes;

use crate::common::aws::{LocalAws, s3_client};

fn key(k: &str) -> Key {
    Key::new(k).expect("valid key")
}

async fn keeps_the_contract(store: &Store) {
    // Absent things.
    assert_eq!(store.get(&key("a/b")).await.expect("get"), None);
    store
        .delete(&key("a/b"))
        .await
        .expect("deleting nothing is fine");
    assert!(store.list(&key("a")).await.expect("list").is_empty());
    assert!(
        store
            .children(&key("a"))
            .await
            .expect("children")
            .is_empty()
    );
    // Put, get, overwrite.
    store
        .put(&key("a/b/c.png"), Bytes::from_static(b"one"))
        .await
        .expect("put");
    assert_eq!(
        store.get(&key("a/b/c.png")).await.expect("get").as_deref(),
        Some(&b"one"[..])
    );
    store
        .put(&key("a/b/c.png"), Bytes::from_static(b"two!"))
        .await
        .expect("put");
    assert_eq!(
        store.get(&key("a/b/c.png")).await.expect("get").as_deref(),
        Some(&b"two!"[..])
    );
    // Listing: every object below a prefix, sorted, with sizes; children one level down.
    store
        .put(&key("a/b/d.png"), Bytes::from_static(b"x"))
        .await
        .expect("put");
    store
        .put(&key("a/e/f"), Bytes::from_static(b"yy"))
        .await
        .expect("put");
    store
        .put(&key("ab/g"), Bytes::from_static(b"z"))
        .await
        .expect("put");
    let listed: Vec<(String, u64)> = store
        .list(&key("a"))
        .await
        .expect("list")
        .into_iter()
        .map(|e| (e.key.as_str().to_string(), e.bytes))
        .collect();
    assert_eq!(
        listed,
        [
            ("a/b/c.png".to_string(), 4),
            ("a/b/d.png".to_string(), 1),
            ("a/e/f".to_string(), 2)
        ]
    );
    assert_eq!(
        store.children(&key("a")).await.expect("children"),
        ["b", "e"]
    );
    assert_eq!(
        store.children(&key("a/b")).await.expect("children"),
        ["c.png", "d.png"]
    );
    // Written only if absent: exactly one of two writers wins, and the first content stays.
    assert!(
        store
            .put_if_absent(&key("lease"), Bytes::from_static(b"first"))
            .await
            .expect("put")
    );
    assert!(
        !store
            .put_if_absent(&key("lease"), Bytes::from_static(b"second"))
            .await
            .expect("put")
    );
    assert_eq!(
        store.get(&key("lease")).await.expect("get").as_deref(),
        Some(&b"first"[..])
    );
    // Delete.
    store.delete(&key("a/b/c.png")).await.expect("delete");
    assert_eq!(store.get(&key("a/b/c.png")).await.expect("get"), None);
    assert_eq!(store.list(&key("a/b")).await.expect("list").len(), 1);
    // A larger object round-trips byte for byte.
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    store
        .put(&key("big/one"), Bytes::from(big.clone()))
        .await
        .expect("put");
    assert_eq!(
        store.get(&key("big/one")).await.expect("get").as_deref(),
        Some(&big[..])
    );
}

#[tokio::test]
async fn the_fs_store_keeps_the_contract() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::new(Backend::Fs(FsStore::open(dir.path()).expect("open")));
    keeps_the_contract(&store).await;
    // Its temp files never show as objects, and nothing is left behind.
    let hidden = walkdir_hidden(dir.path());
    assert_eq!(hidden, 0, "temp files left in the store");
}

#[tokio::test]
async fn the_s3_store_keeps_the_contract() {
    let aws = LocalAws::start(30, 3).await;
    let endpoint = aws.moto.endpoint();
    let store = Store::new(Backend::S3(S3Store::with_client(
        s3_client(&endpoint),
        &aws.s3_settings(&endpoint),
    )));
    keeps_the_contract(&store).await;
    // A prefix keeps deployments sharing a bucket apart.
    let mut settings = aws.s3_settings(&endpoint);
    settings.prefix = "other".into();
    let other = Store::new(Backend::S3(S3Store::with_client(
        s3_client(&endpoint),
        &settings,
    )));
    assert_eq!(other.get(&key("lease")).await.expect("get"), None);
    other
        .put(&key("lease"), Bytes::from_static(b"x"))
        .await
        .expect("put");
    assert!(
        aws.keys("other/")
            .await
            .contains(&"other/lease".to_string())
    );
}

fn walkdir_hidden(dir: &std::path::Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| {
            let p = e.path();
            let hidden = usize::from(e.file_name().to_string_lossy().starts_with('.'));
            hidden + if p.is_dir() { walkdir_hidden(&p) } else { 0 }
        })
        .sum()
}
