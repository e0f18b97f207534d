//! The control service's configuration stream: many sidecar clients against the real
//! gRPC service over loopback (snapshots, shared deltas, NACKs, resuming), and `shardcar
//! local --config-stream`, where the app sidecar knows its keyspaces, VSchema, shards
//! and tablets only from the stream, follows a reparent, refuses a broken VSchema while
//! serving on the last good one, and starts again from its cache with the control
//! service gone.

use std::sync::Arc;
use std::time::{Duration, Instant};

use mysql_async::prelude::*;
use shardcar::local::{run_until, LocalArgs, TopoMode};
use shardcar_config_api::pb::{self, config_discovery_client::ConfigDiscoveryClient};
use shardcar_control::{config, planned_reparent, ControlMetrics, ReparentOptions};
use shardcar_tests::client::opts;
use shardcar_tests::{etcd_cluster, free_port, http_get, metric_or_zero};
use shardcar_topo::{
    EtcdStore, KeyspaceRecord, Layout, MemoryStore, ShardRecord, TabletRecord, TabletType, Topology,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

const VSCHEMA: &str = r#"{"keyspaces": {"user": {"sharded": true,
  "vindexes": {"hash": {"type": "hash"}},
  "tables": {"items": {"column_vindexes": [{"column": "id", "name": "hash"}]}}}}}"#;

const SCHEMA: &str =
    "CREATE TABLE items (id BIGINT NOT NULL PRIMARY KEY, name VARCHAR(40)) ENGINE=InnoDB;\n";

/// One sidecar's end of a stream.
struct Client {
    outbound: mpsc::Sender<pb::SidecarMessage>,
    inbound: tonic::Streaming<pb::ConfigUpdate>,
    parts: shardcar_config_api::Parts,
}

impl Client {
    async fn open(address: &str, pod: &str, last_version: u64) -> Client {
        let mut client = ConfigDiscoveryClient::connect(address.to_string())
            .await
            .expect("connecting to the control service");
        let (outbound, rx) = mpsc::channel(8);
        outbound
            .send(hello(pod, last_version))
            .await
            .expect("queueing the hello");
        let inbound = client
            .stream(ReceiverStream::new(rx))
            .await
            .expect("opening a stream")
            .into_inner();
        Client {
            outbound,
            inbound,
            parts: Default::default(),
        }
    }

    /// The next whole update (its parts joined).
    async fn next(&mut self) -> pb::ConfigUpdate {
        loop {
            let part = tokio::time::timeout(Duration::from_secs(20), self.inbound.message())
                .await
                .expect("an update within 20 s")
                .expect("a healthy stream")
                .expect("an open stream");
            if let Some(update) = self.parts.push(part).expect("parts of one update") {
                return update;
            }
        }
    }

    async fn answer(&self, message: pb::sidecar_message::Message) {
        self.outbound
            .send(pb::SidecarMessage {
                message: Some(message),
            })
            .await
            .expect("answering");
    }
}

fn hello(pod: &str, last_version: u64) -> pb::SidecarMessage {
    pb::SidecarMessage {
        message: Some(pb::sidecar_message::Message::Hello(pb::Hello {
            identity: Some(pb::Identity {
                cluster: "test".into(),
                cell: "zone1".into(),
                namespace: "default".into(),
                pod: pod.into(),
                role: pb::Role::App.into(),
                ..pb::Identity::default()
            }),
            last_version,
        })),
    }
}

fn tablet(uid: u32, shard: &str, port: u16) -> TabletRecord {
    TabletRecord {
        alias: TabletRecord::alias_of("zone1", uid),
        cell: "zone1".into(),
        keyspace: "user".into(),
        shard: shard.into(),
        tablet_type: TabletType::Replica,
        hostname: "127.0.0.1".into(),
        mysql_port: port,
        ..TabletRecord::default()
    }
}

/// A loopback listener for the control service, and its URL.
async fn grpc_listener() -> (tokio::net::TcpListener, String) {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .expect("a port");
    let address = format!("http://{}", listener.local_addr().expect("address"));
    (listener, address)
}

/// Waits until `check` holds for the server's stream list.
async fn wait_streams(
    streams: &config::Streams,
    what: &str,
    check: impl Fn(&[config::StreamStatus]) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let list = streams.list();
        if check(&list) {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: {list:#?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_streams_get_snapshots_shared_deltas_and_resume() {
    let topology = Topology::new(Arc::new(MemoryStore::default()), Layout::default());
    let vschema: serde_json::Value = serde_json::from_str(VSCHEMA).expect("vschema");
    topology
        .create_keyspace(
            "user",
            &KeyspaceRecord {
                vschema: Some(vschema["keyspaces"]["user"].clone()),
                ..KeyspaceRecord::default()
            },
        )
        .await
        .expect("keyspace");
    for shard in ["-80", "80-"] {
        topology
            .create_shard("user", shard, &ShardRecord::default())
            .await
            .expect("shard");
    }
    let _leases = [
        topology
            .register_tablet(&tablet(100, "-80", 3306), Duration::from_secs(30))
            .await
            .expect("tablet"),
        topology
            .register_tablet(&tablet(200, "80-", 3307), Duration::from_secs(30))
            .await
            .expect("tablet"),
    ];

    let (listener, address) = grpc_listener().await;
    let metrics = Arc::new(ControlMetrics::default());
    let service = config::service(metrics, "control-test".into());
    let streams = service.streams.clone();
    let (_stop, shutdown) = tokio::sync::watch::channel(false);
    tokio::spawn(config::serve(listener, topology.clone(), service, shutdown));

    // Every client starts with the whole view.
    let mut clients = Vec::new();
    for i in 0..200 {
        clients.push(Client::open(&address, &format!("app-{i}"), 0).await);
    }
    let mut first = None;
    for c in &mut clients {
        let update = c.next().await;
        assert!(update.full, "the first update is a snapshot");
        assert_eq!(update.control_instance, "control-test");
        assert_eq!((update.shards.len(), update.tablets.len()), (2, 2));
        let mut view = shardcar_config_api::View::default();
        view.apply(update.clone()).expect("a snapshot applies");
        assert!(view.srv_vschema_json().expect("json").contains("\"hash\""));
        c.answer(pb::sidecar_message::Message::Ack(pb::Ack {
            version: update.version,
        }))
        .await;
        first.get_or_insert(update.version);
    }
    let first = first.expect("200 clients");
    wait_streams(&streams, "every stream acknowledged", |l| {
        l.len() == 200 && l.iter().all(|s| s.acked_version == first)
    })
    .await;

    // One primary change reaches everyone as the same small delta.
    topology
        .set_primary("user", "-80", "zone1-0000000100")
        .await
        .expect("primary");
    let mut second = None;
    for c in &mut clients {
        let update = c.next().await;
        assert!(!update.full);
        assert_eq!(update.base_version, first);
        assert_eq!(update.shards.len(), 1, "only the changed shard: {update:?}");
        assert!(update.tablets.is_empty() && update.keyspaces.is_empty());
        assert_eq!(update.shards[0].primary_alias, "zone1-0000000100");
        second.get_or_insert(update.version);
        assert_eq!(Some(update.version), second, "one version for all");
    }
    let second = second.expect("200 clients");
    assert!(second > first);

    // A NACK shows in the stream's status; a later ACK clears it.
    clients[7]
        .answer(pb::sidecar_message::Message::Nack(pb::Nack {
            version: second,
            error: "VSchema: unknown vindex".into(),
        }))
        .await;
    wait_streams(&streams, "the NACK is reported", |l| {
        l.iter()
            .any(|s| s.pod == "app-7" && s.nack == Some((second, "VSchema: unknown vindex".into())))
    })
    .await;

    // Resuming at the version held sends nothing until the next change, which comes as
    // a delta on that version.
    drop(clients);
    wait_streams(&streams, "the old streams are gone", |l| l.is_empty()).await;
    let mut resumed = Client::open(&address, "app-resumed", second).await;
    let mut fresh = Client::open(&address, "app-fresh", 0).await;
    let snapshot = fresh.next().await;
    assert!(snapshot.full && snapshot.version == second);
    topology
        .store()
        .delete(&topology.layout().tablet("zone1", "zone1-0000000200"), None)
        .await
        .expect("removing a tablet");
    let update = resumed.next().await;
    assert!(
        !update.full,
        "no snapshot for a stream that resumed: {update:?}"
    );
    assert_eq!(update.base_version, second);
    assert_eq!(update.removed_tablets, vec!["zone1-0000000200".to_string()]);
    let update = fresh.next().await;
    assert_eq!(update.removed_tablets, vec!["zone1-0000000200".to_string()]);

    // A stream that does not start with a Hello is refused with a clear status.
    let mut client = ConfigDiscoveryClient::connect(address.clone())
        .await
        .expect("connecting");
    let (tx, rx) = mpsc::channel(1);
    tx.send(pb::SidecarMessage {
        message: Some(pb::sidecar_message::Message::Ack(pb::Ack { version: 1 })),
    })
    .await
    .expect("queueing");
    let refused = client
        .stream(ReceiverStream::new(rx))
        .await
        .expect_err("no hello");
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    assert!(refused.message().contains("Hello"), "{refused:?}");
}

fn app_metrics(admin_port: u16) -> String {
    http_get(admin_port, "/metrics")
        .expect("app sidecar metrics")
        .1
}

async fn wait_metric(admin_port: u16, series: &str, at_least: f64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let value = metric_or_zero(&app_metrics(admin_port), series);
        if value >= at_least {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{series} stayed at {value}, below {at_least}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn local_app_sidecar_configured_only_by_the_stream() {
    let etcd = etcd_cluster(1).await.expect("etcd");
    let dir = tempfile::tempdir().expect("temp dir");
    let schema = dir.path().join("schema").join("user");
    std::fs::create_dir_all(&schema).expect("schema dir");
    std::fs::write(schema.join("001_items.sql"), SCHEMA).expect("schema");
    std::fs::write(dir.path().join("vschema.json"), VSCHEMA).expect("vschema");
    let (port, admin_port) = (free_port(), free_port());
    let args = LocalArgs {
        keyspaces: vec!["user:2".parse().expect("keyspace")],
        schema_dir: Some(dir.path().join("schema")),
        vschema: Some(dir.path().join("vschema.json")),
        port,
        admin_port,
        data_dir: Some(dir.path().join("cluster")),
        replicas: 1,
        topo: Some(TopoMode::Etcd),
        etcd: etcd.endpoints(),
        no_orchestrator: true,
        config_stream: true,
        control_port: free_port(),
        ..LocalArgs::default()
    };
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let mut task = tokio::spawn(run_until(args, shutdown));
    shardcar_tests::wait_for_local(port, &mut task, Duration::from_secs(120)).await;
    let store = EtcdStore::connect(&etcd.endpoints()).await.expect("etcd");
    let topology = Topology::new(Arc::new(store), Layout::default());

    let mut conn = mysql_async::Conn::new(opts(port, "app", "app").db_name(Some("user")))
        .await
        .expect("connecting through the app sidecar");
    // The first writes may wait in the failover buffer until the tablets' health is in.
    for id in 1..=20 {
        conn.exec_drop(
            "INSERT INTO items (id, name) VALUES (?, ?)",
            (id, format!("item {id}")),
        )
        .await
        .expect("a routed insert");
    }
    let count: Option<u64> = conn
        .query_first("SELECT COUNT(*) FROM items")
        .await
        .expect("scatter count");
    assert_eq!(count, Some(20));
    let shards: Vec<(String,)> = conn
        .query("SELECT shard FROM hash WHERE id IN (1, 2, 3, 4, 5, 6)")
        .await
        .expect("the vindex as a table");
    assert!(
        shards.iter().any(|s| s.0 == "-80") && shards.iter().any(|s| s.0 == "80-"),
        "rows on both shards: {shards:?}"
    );
    let text = app_metrics(admin_port);
    assert_eq!(
        metric_or_zero(&text, "shardcar_config_stream_connected"),
        1.0
    );
    assert!(metric_or_zero(&text, "shardcar_config_version") > 0.0);

    // A planned reparent reaches the sidecar through the stream: writes keep working.
    let token = std::fs::read_to_string(dir.path().join("cluster/action-token")).expect("token");
    let options = ReparentOptions {
        action_token: Some(token.trim().into()),
        ..ReparentOptions::default()
    };
    let before: Option<u32> = conn
        .query_first("SELECT @@server_id FROM items WHERE id = 1")
        .await
        .expect("primary of id 1");
    let shard_of_1 = {
        let row: Option<String> = conn
            .query_first("SELECT shard FROM hash WHERE id = 1")
            .await
            .expect("shard of 1");
        row.expect("a shard")
    };
    let report = planned_reparent(&topology, "user", &shard_of_1, &options)
        .await
        .expect("planned reparent");
    conn.exec_drop("UPDATE items SET name = 'moved' WHERE id = ?", (1,))
        .await
        .expect("a write after the reparent");
    let after: Option<(u32, String)> = conn
        .query_first("SELECT @@server_id, name FROM items WHERE id = 1")
        .await
        .expect("read after the reparent");
    let (server, name) = after.expect("the row");
    assert_eq!(name, "moved");
    assert_ne!(
        Some(server),
        before,
        "served by the new primary ({report:?})"
    );

    // A broken VSchema is refused (NACK) and the last good one keeps serving.
    let rejected = metric_or_zero(
        &app_metrics(admin_port),
        "shardcar_config_updates_total{result=\"rejected\"}",
    );
    topology
        .set_vschema(
            "user",
            serde_json::json!({"sharded": true, "tables": {"items": {"column_vindexes": [{"column": "id", "name": "missing"}]}}}),
        )
        .await
        .expect("a broken vschema");
    wait_metric(
        admin_port,
        "shardcar_config_updates_total{result=\"rejected\"}",
        rejected + 1.0,
    )
    .await;
    let name: Option<String> = conn
        .query_first("SELECT name FROM items WHERE id = 2")
        .await
        .expect("served on the last good VSchema");
    assert_eq!(name.as_deref(), Some("item 2"));
    // A VSchema that builds (a second table) is applied live.
    let applied = metric_or_zero(
        &app_metrics(admin_port),
        "shardcar_config_updates_total{result=\"applied\"}",
    );
    let mut good: serde_json::Value = serde_json::from_str(VSCHEMA).expect("json");
    good["keyspaces"]["user"]["tables"]["notes"] =
        serde_json::json!({"column_vindexes": [{"column": "id", "name": "hash"}]});
    topology
        .set_vschema("user", good["keyspaces"]["user"].clone())
        .await
        .expect("a good vschema");
    wait_metric(
        admin_port,
        "shardcar_config_updates_total{result=\"applied\"}",
        applied + 1.0,
    )
    .await;
    let count: Option<u64> = conn
        .query_first("SELECT COUNT(*) FROM items")
        .await
        .expect("scatter count");
    assert_eq!(count, Some(20));
    drop(conn);
    stop.send(true).expect("stopping");
    tokio::time::timeout(Duration::from_secs(60), task)
        .await
        .expect("stops")
        .expect("no panic")
        .expect("clean exit");
    assert!(
        dir.path().join("cluster/config-cache.pb").is_file(),
        "the last good configuration is cached"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_sidecar_starts_from_its_cache_when_control_is_unreachable() {
    use prost::Message as _;
    let cluster = shardcar_tests::shared_cluster();
    let keyspace = cluster.database.clone();
    // The configuration a control service sent earlier: one unsharded keyspace whose
    // primary is the cluster's MariaDB.
    let mut view = shardcar_config_api::View {
        version: 42,
        ..Default::default()
    };
    view.keyspaces.insert(
        keyspace.clone(),
        pb::Keyspace {
            name: keyspace.clone(),
            ..Default::default()
        },
    );
    let alias = TabletRecord::alias_of("zone1", 1);
    view.shards.insert(
        (keyspace.clone(), "0".into()),
        pb::Shard {
            keyspace: keyspace.clone(),
            name: "0".into(),
            primary_alias: alias.clone(),
            term: 1,
            ..Default::default()
        },
    );
    let mut primary = tablet(1, "0", cluster.mariadb.port());
    primary.keyspace = keyspace.clone();
    primary.tablet_type = TabletType::Primary;
    primary.primary_term = 1;
    primary.health.serving = true;
    view.tablets
        .insert(alias, shardcar_config_api::convert::tablet(&primary));
    let dir = tempfile::tempdir().expect("temp dir");
    let cache = dir.path().join("config-cache.pb");
    std::fs::write(&cache, view.snapshot().encode_to_vec()).expect("cache file");

    // Nothing listens at the control address.
    let dead = format!("http://127.0.0.1:{}", free_port());
    let yaml = format!(
        "sharding:\n  topology:\n    cell: zone1\n    control:\n      address: {dead}\n      cache_file: {}\n      startup_timeout_ms: 500\n",
        cache.display()
    );
    let sidecar = shardcar_tests::SidecarProcess::start(cluster.sidecar_options(yaml))
        .expect("the sidecar starts from its cache");
    let mut conn = mysql_async::Conn::from_url(cluster.url(sidecar.port()))
        .await
        .expect("connecting through the sidecar");
    let one: Option<u32> = conn.query_first("SELECT 1").await.expect("served");
    assert_eq!(one, Some(1));
    let text = sidecar.metrics().expect("metrics");
    assert_eq!(metric_or_zero(&text, "shardcar_config_version"), 42.0);
    assert_eq!(
        metric_or_zero(&text, "shardcar_config_stream_connected"),
        0.0
    );

    // Without a cache, the sidecar says why it cannot start.
    std::fs::remove_file(&cache).expect("removing the cache");
    let yaml = format!(
        "sharding:\n  topology:\n    cell: zone1\n    control:\n      address: {dead}\n      cache_file: {}\n      startup_timeout_ms: 500\n",
        cache.display()
    );
    let err = shardcar_tests::SidecarProcess::start(cluster.sidecar_options(yaml))
        .expect_err("no configuration at all");
    let text = format!("{err:#}");
    assert!(text.contains("no cache file to start from"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clusters_federate_with_labels_stale_marks_and_conflicts() {
    let east_etcd = shardcar_tests::Etcd::start().expect("east etcd");
    let mut west_etcd = shardcar_tests::Etcd::start().expect("west etcd");
    let connect = |url: String| async move {
        let store = EtcdStore::connect(&[url]).await.expect("etcd");
        Topology::new(Arc::new(store), Layout::default())
    };
    let east = connect(east_etcd.client_url()).await;
    let west = connect(west_etcd.client_url()).await;
    for (topology, primary) in [(&east, "zone1-0000000100"), (&west, "zone2-0000000300")] {
        topology
            .create_keyspace("user", &KeyspaceRecord::default())
            .await
            .expect("keyspace");
        // Both clusters name a primary for -80 in term 1: a conflict to report.
        topology
            .create_shard(
                "user",
                "-80",
                &ShardRecord {
                    primary_alias: Some(primary.into()),
                    term: 1,
                    reparenting: false,
                },
            )
            .await
            .expect("shard");
    }
    east.create_shard("user", "80-", &ShardRecord::default())
        .await
        .expect("shard");
    let mut leases = Vec::new();
    for (topology, cell, uids) in [(&east, "zone1", [100, 200]), (&west, "zone2", [300, 400])] {
        for (uid, shard) in uids.into_iter().zip(["-80", "80-"]) {
            let mut t = tablet(uid, shard, 3306);
            t.cell = cell.into();
            t.alias = TabletRecord::alias_of(cell, uid);
            t.health.serving = true;
            t.health.replicating = true;
            leases.push(
                topology
                    .register_tablet(&t, Duration::from_secs(30))
                    .await
                    .expect("tablet"),
            );
        }
    }

    let (listener, address) = grpc_listener().await;
    let hub = config::Hub::new(Duration::from_secs(2));
    let service = config::service_with(hub, Arc::new(ControlMetrics::default()), "fed".into());
    let hub = service.hub.clone();
    let source = |cluster: &str, region: &str, topology: &Topology| config::Source {
        cluster: cluster.into(),
        region: region.into(),
        cloud: "test".into(),
        topology: config::SourceTopology::Ready(topology.clone()),
    };
    let sources = vec![
        source("east", "us-east1", &east),
        source("west", "us-west1", &west),
    ];
    let (_stop, shutdown) = tokio::sync::watch::channel(false);
    tokio::spawn(config::serve_sources(listener, sources, service, shutdown));

    // One view of both clusters, each tablet labelled with where it runs.
    let mut client = Client::open(&address, "app-fed", 0).await;
    let mut view = shardcar_config_api::View::default();
    view.apply(client.next().await).expect("snapshot");
    assert_eq!(view.tablets.len(), 4, "{view:#?}");
    let labels = |alias: &str, view: &shardcar_config_api::View| {
        let t = &view.tablets[alias];
        (t.cluster.clone(), t.region.clone(), t.stale)
    };
    assert_eq!(
        labels("zone1-0000000100", &view),
        ("east".into(), "us-east1".into(), false)
    );
    assert_eq!(
        labels("zone2-0000000300", &view),
        ("west".into(), "us-west1".into(), false)
    );
    // The shard records are united; the conflict on -80 is reported, east (first by
    // name) serving.
    assert_eq!(view.shards.len(), 2);
    assert_eq!(
        view.shards[&("user".to_string(), "-80".to_string())].primary_alias,
        "zone1-0000000100"
    );
    let conflicts = hub.conflicts();
    assert!(
        conflicts.iter().any(|c| c.starts_with("shard user/-80")),
        "{conflicts:?}"
    );

    // West becomes unreachable: its tablets stay, marked stale, then go after the grace.
    west_etcd.kill9();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !view.tablets["zone2-0000000300"].stale {
        assert!(Instant::now() < deadline, "never marked stale");
        view.apply(client.next().await).expect("delta");
    }
    assert!(view.tablets["zone2-0000000400"].stale);
    assert!(!view.tablets["zone1-0000000100"].stale);
    let status = hub.sources();
    assert!(
        status.iter().any(|s| s.cluster == "west" && !s.reachable),
        "{status:?}"
    );
    while view.tablets.contains_key("zone2-0000000300") {
        assert!(Instant::now() < deadline, "never dropped after the grace");
        view.apply(client.next().await).expect("delta");
    }
    assert_eq!(view.tablets.len(), 2);
    // East keeps streaming.
    east.set_primary("user", "80-", "zone1-0000000200")
        .await
        .expect("primary");
    while view.shards[&("user".to_string(), "80-".to_string())].primary_alias != "zone1-0000000200"
    {
        assert!(Instant::now() < deadline, "east's change never came");
        view.apply(client.next().await).expect("delta");
    }
    drop(leases);
}
