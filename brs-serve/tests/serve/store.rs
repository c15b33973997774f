//! One contract for every store: the same suite against the `fs` store and the `s3` store (on a
//! moto server started for it).

use brs_serve::store::{Backend, FsStore, Key, S3Store, Store};
use bytes::Bytes;

use brs_serve::store::namespaces::{Access, NAMESPACES};

use crate::common::aws::{AwsRole, LocalAws, s3_client};

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

/// A delete that empties a directory removes it; a put racing it into the same directory still
/// succeeds (the fs store once failed such a put with "File exists" now and then).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fs_puts_succeed_while_deletes_empty_their_directory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = std::sync::Arc::new(Store::new(Backend::Fs(
        FsStore::open(dir.path()).expect("open"),
    )));
    let churn = |name: &'static str| {
        let store = store.clone();
        tokio::spawn(async move {
            let k = key(&format!("race/d/{name}"));
            for i in 0..1500 {
                if let Err(e) = store.put(&k, Bytes::from_static(b"x")).await {
                    return Err(format!("put {i}: {e}"));
                }
                store
                    .delete(&k)
                    .await
                    .map_err(|e| format!("delete {i}: {e}"))?;
            }
            Ok(())
        })
    };
    let (a, b) = (churn("a"), churn("b"));
    for r in [a.await, b.await] {
        r.expect("task").expect("no put or delete fails");
    }
    assert!(store.list(&key("race")).await.expect("list").is_empty());
    assert_eq!(
        walkdir_hidden(dir.path()),
        0,
        "temp files left in the store"
    );
}

#[tokio::test]
async fn the_s3_store_keeps_the_contract() {
    let aws = LocalAws::start(30, 3).await;
    let endpoint = aws.moto.endpoint();
    let store = Store::new(Backend::S3(S3Store::with_client(
        s3_client(&endpoint, &aws.admin),
        &aws.s3_settings(&endpoint),
    )));
    keeps_the_contract(&store).await;
    // A prefix keeps deployments sharing a bucket apart.
    let mut settings = aws.s3_settings(&endpoint);
    settings.prefix = "other".into();
    let other = Store::new(Backend::S3(S3Store::with_client(
        s3_client(&endpoint, &aws.admin),
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

/// What the code does under each namespace, by role, is exactly what terraform grants: every
/// access the table lists works when signed as the role, every other is denied (as AWS denies
/// it), and nothing can be written outside the namespaces.
#[tokio::test]
async fn each_role_may_do_what_the_code_needs_and_nothing_else() {
    let aws = LocalAws::start(30, 3).await;
    let endpoint = aws.moto.endpoint();
    let mut problems = Vec::new();
    for role in AwsRole::ALL {
        let store = Store::new(Backend::S3(S3Store::with_client(
            s3_client(&endpoint, aws.role_keys(role)),
            &aws.s3_settings(&endpoint),
        )));
        for ns in NAMESPACES {
            let granted: Vec<Access> = match role {
                AwsRole::Serve => ns.api.iter().chain(ns.worker).copied().collect(),
                AwsRole::Worker | AwsRole::LambdaWorker => ns.worker.to_vec(),
                AwsRole::LambdaApi => ns.api.to_vec(),
            };
            let k = key(&format!("{}/2026120600/probe-{}", ns.name, role.name()));
            // Read and delete something that is there, so a denial cannot hide as a 404.
            aws.s3
                .put_object()
                .bucket(&aws.bucket)
                .key(k.as_str())
                .body(b"x".to_vec().into())
                .send()
                .await
                .expect("admin put");
            for access in [Access::Get, Access::Put, Access::Delete] {
                let ok = match access {
                    Access::Get => store.get(&k).await.is_ok(),
                    Access::Put => store.put(&k, Bytes::from_static(b"y")).await.is_ok(),
                    Access::Delete => store.delete(&k).await.is_ok(),
                };
                if ok != granted.contains(&access) {
                    problems.push(format!(
                        "{}: {} {}/ {}",
                        role.name(),
                        access.as_str(),
                        ns.name,
                        if ok {
                            "allowed, not in the table"
                        } else {
                            "denied"
                        }
                    ));
                }
            }
            // Listing a namespace the role reads answers (an empty list is fine).
            if granted.contains(&Access::Get) && store.list(&key(ns.name)).await.is_err() {
                problems.push(format!("{}: list {}/ denied", role.name(), ns.name));
            }
        }
        for outside in ["leases/prune", "sizes/2026120600", "lease"] {
            if store
                .put(&key(outside), Bytes::from_static(b"x"))
                .await
                .is_ok()
            {
                problems.push(format!("{}: put {outside} allowed", role.name()));
            }
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
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
