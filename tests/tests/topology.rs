//! The topology store against a real 3-member etcd cluster and the embedded store: the
//! same conformance checks for both (versions and compare-and-set, prefix listing and
//! watches, leases, locks), the typed records over them, and etcd surviving the loss of
//! one member.

use std::sync::Arc;
use std::time::{Duration, Instant};

use shardcar_tests::etcd_cluster;
use shardcar_topo::{
    EtcdStore, KeyspaceRecord, Layout, MemoryStore, ShardRecord, Store, TabletRecord, TabletType,
    TopoError, Topology, WatchEvent,
};

async fn next_event(w: &mut shardcar_topo::Watch) -> WatchEvent {
    tokio::time::timeout(Duration::from_secs(10), w.events.recv())
        .await
        .expect("a watch event within 10 s")
        .expect("the watch is open")
}

/// What every store must do, under `root` so runs do not see each other.
async fn conformance(store: Arc<dyn Store>, root: &str, expiring_leases: bool) {
    let k = |s: &str| format!("{root}/{s}");
    // Create, then compare-and-set by version.
    assert_eq!(store.get(&k("a")).await.unwrap(), None);
    let v1 = store.create(&k("a"), b"1".to_vec()).await.unwrap();
    assert_eq!(
        store.create(&k("a"), b"x".to_vec()).await,
        Err(TopoError::Exists(k("a")))
    );
    let got = store.get(&k("a")).await.unwrap().unwrap();
    assert_eq!((got.value.as_slice(), got.version), (&b"1"[..], v1));
    let v2 = store
        .update(&k("a"), b"2".to_vec(), Some(v1))
        .await
        .unwrap();
    assert!(v2 > v1);
    assert_eq!(
        store.update(&k("a"), b"3".to_vec(), Some(v1)).await,
        Err(TopoError::BadVersion(k("a")))
    );
    assert_eq!(
        store.update(&k("nope"), b"3".to_vec(), Some(v1)).await,
        Err(TopoError::NoNode(k("nope")))
    );
    assert_eq!(
        store.delete(&k("a"), Some(v1)).await,
        Err(TopoError::BadVersion(k("a")))
    );
    store.delete(&k("a"), Some(v2)).await.unwrap();
    assert_eq!(
        store.delete(&k("a"), None).await,
        Err(TopoError::NoNode(k("a")))
    );

    // Prefix listing in key order, and a watch that starts where the listing ends.
    store
        .update(&k("dir/b"), b"b".to_vec(), None)
        .await
        .unwrap();
    store
        .update(&k("dir/a"), b"a".to_vec(), None)
        .await
        .unwrap();
    store
        .update(&k("other"), b"o".to_vec(), None)
        .await
        .unwrap();
    let listed: Vec<String> = store
        .list(&k("dir/"))
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.key)
        .collect();
    assert_eq!(listed, vec![k("dir/a"), k("dir/b")]);
    let mut w = store.watch(&k("dir/")).await.unwrap();
    assert_eq!(w.initial.len(), 2);
    store
        .update(&k("other"), b"o2".to_vec(), None)
        .await
        .unwrap();
    let vc = store.create(&k("dir/c"), b"c".to_vec()).await.unwrap();
    match next_event(&mut w).await {
        WatchEvent::Put(e) => {
            assert_eq!((e.key, e.value, e.version), (k("dir/c"), b"c".to_vec(), vc))
        }
        other => panic!("expected the put of dir/c, got {other:?}"),
    }
    store.delete(&k("dir/a"), None).await.unwrap();
    match next_event(&mut w).await {
        WatchEvent::Delete { key, .. } => assert_eq!(key, k("dir/a")),
        other => panic!("expected the delete of dir/a, got {other:?}"),
    }

    // A leased key lives while its lease does.
    let lease = store
        .put_leased(&k("dir/leased"), b"l".to_vec(), Duration::from_secs(2))
        .await
        .unwrap();
    assert!(matches!(next_event(&mut w).await, WatchEvent::Put(e) if e.key == k("dir/leased")));
    // Renewed past its TTL.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(!lease.lost());
    assert!(store.get(&k("dir/leased")).await.unwrap().is_some());
    lease.revoke().await;
    assert_eq!(store.get(&k("dir/leased")).await.unwrap(), None);
    assert!(
        matches!(next_event(&mut w).await, WatchEvent::Delete { key, .. } if key == k("dir/leased"))
    );
    if expiring_leases {
        // A holder that stops renewing (its process died) loses the key after the TTL.
        let lease = store
            .put_leased(&k("dir/expiring"), b"e".to_vec(), Duration::from_secs(1))
            .await
            .unwrap();
        lease.abandon();
        let deadline = Instant::now() + Duration::from_secs(10);
        while store.get(&k("dir/expiring")).await.unwrap().is_some() {
            assert!(
                Instant::now() < deadline,
                "an unrenewed lease did not expire"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    // Locks exclude each other and time out.
    let name = k("locks/shard");
    let held = store
        .lock(&name, Duration::from_secs(5), Duration::from_secs(5))
        .await
        .unwrap();
    let started = Instant::now();
    assert_eq!(
        store
            .lock(&name, Duration::from_secs(5), Duration::from_millis(500))
            .await
            .map(|_| ()),
        Err(TopoError::LockTimeout(name.clone()))
    );
    assert!(started.elapsed() >= Duration::from_millis(400));
    let waiter = {
        let store = store.clone();
        let name = name.clone();
        tokio::spawn(async move {
            store
                .lock(&name, Duration::from_secs(5), Duration::from_secs(10))
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiter.is_finished(), "the lock is held");
    held.unlock().await;
    let second = waiter.await.unwrap().unwrap();
    second.unlock().await;

    // A listing larger than one gRPC message (4 MiB) comes whole, in key order, and the
    // watch over it starts at the revision it was read at.
    let value = vec![b'x'; 2_100];
    let mut writes = tokio::task::JoinSet::new();
    let limit = Arc::new(tokio::sync::Semaphore::new(32));
    for i in 0..2_100 {
        let (store, key, value, limit) = (
            store.clone(),
            k(&format!("big/{i:05}")),
            value.clone(),
            limit.clone(),
        );
        writes.spawn(async move {
            let _permit = limit.acquire_owned().await;
            store.update(&key, value, None).await
        });
    }
    let mut last = 0;
    while let Some(written) = writes.join_next().await {
        last = last.max(written.unwrap().unwrap());
    }
    let listed = store.list(&k("big/")).await.unwrap();
    assert_eq!(listed.len(), 2_100);
    assert!(listed.windows(2).all(|w| w[0].key < w[1].key));
    let watch = store.watch(&k("big/")).await.unwrap();
    assert_eq!(watch.initial.len(), 2_100);
    assert!(watch.revision >= last, "{} < {last}", watch.revision);
}

/// The typed records: keyspaces, shards with their term, leased tablets.
async fn records(topo: &Topology) {
    topo.create_keyspace("shop", &KeyspaceRecord::default())
        .await
        .unwrap();
    topo.create_keyspace(
        "lookup",
        &KeyspaceRecord {
            durability_policy: "semi_sync".into(),
            vschema: None,
        },
    )
    .await
    .unwrap();
    for shard in ["-80", "80-"] {
        topo.create_shard("shop", shard, &ShardRecord::default())
            .await
            .unwrap();
    }
    assert_eq!(topo.keyspace_names().await.unwrap(), vec!["lookup", "shop"]);
    assert_eq!(topo.shard_names("shop").await.unwrap(), vec!["-80", "80-"]);
    assert_eq!(
        topo.keyspace("lookup")
            .await
            .unwrap()
            .unwrap()
            .durability_policy,
        "semi_sync"
    );

    let primary = TabletRecord {
        alias: TabletRecord::alias_of("zone1", 100),
        cell: "zone1".into(),
        keyspace: "shop".into(),
        shard: "-80".into(),
        tablet_type: TabletType::Primary,
        hostname: "127.0.0.1".into(),
        mysql_port: 3306,
        admin_port: 15000,
        mysqld_host: "127.0.0.1".into(),
        mysqld_port: 3307,
        primary_term: 1,
        health: Default::default(),
    };
    let replica = TabletRecord {
        alias: TabletRecord::alias_of("zone2", 101),
        cell: "zone2".into(),
        tablet_type: TabletType::Replica,
        ..primary.clone()
    };
    let mut w = topo.watch_tablets(None).await.unwrap();
    let l1 = topo
        .register_tablet(&primary, Duration::from_secs(5))
        .await
        .unwrap();
    let l2 = topo
        .register_tablet(&replica, Duration::from_secs(5))
        .await
        .unwrap();
    match next_event(&mut w).await {
        WatchEvent::Put(e) => assert_eq!(Topology::tablet_of(&e).unwrap(), primary),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        topo.tablets(Some("zone2")).await.unwrap(),
        vec![replica.clone()]
    );
    assert_eq!(topo.tablets(None).await.unwrap().len(), 2);

    // Every change of primary raises the term; concurrent changes are serialized by
    // compare-and-set, none is lost.
    let s = topo
        .set_primary("shop", "-80", &primary.alias)
        .await
        .unwrap();
    assert_eq!(
        (s.term, s.primary_alias.as_deref()),
        (1, Some("zone1-0000000100"))
    );
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let topo = topo.clone();
        tasks.push(tokio::spawn(async move {
            topo.set_primary("shop", "-80", "zone2-0000000101").await
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let (s, _) = topo.shard("shop", "-80").await.unwrap().unwrap();
    assert_eq!(s.term, 9);
    l1.revoke().await;
    drop(l2);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !topo.tablets(None).await.unwrap().is_empty() {
        assert!(
            Instant::now() < deadline,
            "tablets stayed after their leases ended"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_store_passes_the_conformance_checks() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    conformance(store.clone(), "/t", false).await;
    records(&Topology::new(store, Layout::new("/shardcar"))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_passes_the_conformance_checks_and_survives_a_lost_member() {
    let mut cluster = etcd_cluster(3).await.expect("a 3-member etcd cluster");
    let store: Arc<dyn Store> = Arc::new(
        EtcdStore::connect(&cluster.endpoints())
            .await
            .expect("connecting to etcd"),
    );
    conformance(store.clone(), "/t", true).await;
    let topo = Topology::new(store.clone(), Layout::new("/shardcar"));
    records(&topo).await;

    // The leader down: the other two elect a new one and the store's calls ride out the
    // election (they retry; nothing is visible to the caller).
    let leader = cluster.leader().expect("a leader");
    cluster.members[leader].kill9();
    let s = topo
        .update_shard("shop", "80-", |s| {
            s.reparenting = true;
            Ok(())
        })
        .await
        .expect("a write while a new leader is elected");
    assert!(s.reparenting);
    let lock = topo
        .lock_shard(
            "shop",
            "80-",
            Duration::from_secs(5),
            Duration::from_secs(10),
        )
        .await
        .expect("a reparent lock with 2 of 3 members");
    lock.unlock().await;
}
