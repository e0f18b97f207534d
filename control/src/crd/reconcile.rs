//! Reconciling `Keyspace` resources into the topology: each one's VSchema is checked
//! (it must build, with its shards, as the app sidecars will build it), then written to
//! the keyspace's record with its durability policy, and its shard records are created;
//! the outcome goes into the resource's status as a `Ready` condition. The
//! configuration streams then carry the VSchema to the sidecars.
//!
//! Reconciling is idempotent, so every control replica runs the controller.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::ResourceExt;
use shardcar_filter::plan::RoutingSchema;
use shardcar_filter::vindex::ParamFileLoader;
use shardcar_filter::vschema::SrvVSchema;
use shardcar_topo::{KeyspaceRecord, ShardRecord, TopoError, Topology};
use tokio::sync::watch;
use tracing::{info, warn};

use super::{Condition, Keyspace, KeyspaceStatus};

/// The field manager of the status patches.
const MANAGER: &str = "shardcar-control";

/// What the controllers work with.
#[derive(Clone)]
pub struct Context {
    pub client: kube::Client,
    pub topology: Topology,
    /// Defaults of the reparents `Reparent` resources ask for (the action token).
    pub reparent: crate::ReparentOptions,
    pub metrics: Option<Arc<crate::ControlMetrics>>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("topology", self.topology.layout())
            .finish_non_exhaustive()
    }
}

/// Why a keyspace could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The resource itself is wrong: its status says so until it changes.
    #[error("{0}")]
    Invalid(String),
    /// The topology did not answer: tried again soon.
    #[error("topology: {0}")]
    Topology(#[from] TopoError),
}

/// Why reconciling failed (retried with a backoff).
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("updating the status: {0}")]
    Status(#[from] kube::Error),
    #[error(transparent)]
    Topology(TopoError),
}

/// vindex parameter files are not available to the control service.
#[derive(Debug, Clone, Copy)]
struct NoFiles;

impl ParamFileLoader for NoFiles {
    fn load(&self, path: &str) -> Result<Vec<u8>, String> {
        Err(format!(
            "{path}: vindex parameter files cannot be read from a Keyspace resource"
        ))
    }
}

/// The topology name of `ks`'s keyspace.
pub fn keyspace_name(ks: &Keyspace) -> String {
    ks.spec.keyspace.clone().unwrap_or_else(|| ks.name_any())
}

/// Checks `ks` and writes it into `topology`; returns the keyspace's name and how many
/// shards it has.
pub async fn apply(topology: &Topology, ks: &Keyspace) -> Result<(String, usize), ApplyError> {
    let name = keyspace_name(ks);
    if name.is_empty() || name.contains('/') {
        return Err(ApplyError::Invalid(format!(
            "keyspace name {name:?}: must be non-empty and without '/'"
        )));
    }
    let shards = &ks.spec.shards;
    if let Some(bad) = shards.iter().find(|s| s.is_empty() || s.contains('/')) {
        return Err(ApplyError::Invalid(format!("shard name {bad:?}")));
    }
    if let Some(vschema) = &ks.spec.vschema {
        // Built as the sidecars will build it; without declared shards, over one that
        // covers the keyrange.
        let srv = serde_json::json!({"keyspaces": {name.clone(): vschema}});
        let parsed = SrvVSchema::from_json(&srv.to_string())
            .map_err(|e| ApplyError::Invalid(format!("vschema: {e}")))?;
        let names = if shards.is_empty() {
            vec!["-".to_string()]
        } else {
            shards.clone()
        };
        RoutingSchema::build(parsed, &BTreeMap::from([(name.clone(), names)]), &NoFiles)
            .map_err(|e| ApplyError::Invalid(format!("vschema: {e}")))?;
    }
    let record = KeyspaceRecord {
        durability_policy: ks.spec.durability_policy.name().to_string(),
        vschema: ks.spec.vschema.clone(),
    };
    match topology.create_keyspace(&name, &record).await {
        Ok(()) => {}
        Err(TopoError::Exists(_)) => {
            topology
                .update_keyspace(&name, |k| {
                    k.durability_policy.clone_from(&record.durability_policy);
                    k.vschema.clone_from(&record.vschema);
                    Ok(())
                })
                .await?;
        }
        Err(e) => return Err(e.into()),
    }
    for shard in shards {
        match topology
            .create_shard(&name, shard, &ShardRecord::default())
            .await
        {
            Ok(()) | Err(TopoError::Exists(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let count = topology.shard_names(&name).await?.len();
    Ok((name, count))
}

/// The status after an attempt: `Ready` true, or false with the reason. The transition
/// time moves only when the condition's status does.
pub fn status_after(
    ks: &Keyspace,
    outcome: &Result<(String, usize), ApplyError>,
    now: &str,
) -> KeyspaceStatus {
    let previous = ks.status.clone().unwrap_or_default();
    let (status, reason, message, keyspace, shards) = match outcome {
        Ok((name, n)) => (
            "True",
            "Applied",
            format!("written to the topology with {n} shards"),
            name.clone(),
            i32::try_from(*n).unwrap_or(i32::MAX),
        ),
        Err(ApplyError::Invalid(m)) => (
            "False",
            "Invalid",
            m.clone(),
            previous.keyspace.clone(),
            previous.shards,
        ),
        Err(ApplyError::Topology(e)) => (
            "False",
            "TopologyUnavailable",
            e.to_string(),
            previous.keyspace.clone(),
            previous.shards,
        ),
    };
    KeyspaceStatus {
        keyspace,
        shards,
        conditions: vec![ready_condition(
            &previous.conditions,
            status == "True",
            reason,
            message,
            ks.metadata.generation,
            now,
        )],
        observed_generation: ks.metadata.generation,
    }
}

/// A `Ready` condition; its transition time moves only when its status does (kept from
/// `previous` otherwise).
pub(crate) fn ready_condition(
    previous: &[Condition],
    ready: bool,
    reason: &str,
    message: String,
    generation: Option<i64>,
    now: &str,
) -> Condition {
    let status = if ready { "True" } else { "False" };
    let since = previous
        .iter()
        .find(|c| c.type_ == "Ready" && c.status == status)
        .map_or_else(|| now.to_string(), |c| c.last_transition_time.clone());
    Condition {
        type_: "Ready".into(),
        status: status.into(),
        reason: reason.into(),
        message,
        last_transition_time: since,
        observed_generation: generation,
    }
}

/// Applies one Keyspace and records the outcome in its status.
pub async fn reconcile(ks: Arc<Keyspace>, ctx: Arc<Context>) -> Result<Action, ReconcileError> {
    let outcome = apply(&ctx.topology, &ks).await;
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let status = status_after(&ks, &outcome, &now);
    let namespace = ks.namespace().unwrap_or_default();
    let api: Api<Keyspace> = Api::namespaced(ctx.client.clone(), &namespace);
    patch_status(
        &api,
        &ks.name_any(),
        serde_json::to_value(&status).unwrap_or_default(),
        None,
    )
    .await?;
    match outcome {
        Ok((name, shards)) => {
            info!(resource = %ks.name_any(), keyspace = %name, shards, "keyspace applied");
            Ok(Action::requeue(Duration::from_secs(600)))
        }
        Err(ApplyError::Invalid(message)) => {
            warn!(resource = %ks.name_any(), %message, "keyspace refused");
            // Nothing changes until the resource does.
            Ok(Action::await_change())
        }
        Err(ApplyError::Topology(e)) => Err(ReconcileError::Topology(e)),
    }
}

/// Merges `status` into a resource's status; with `resource_version`, only if the
/// resource is still at that version (a 409 conflict otherwise).
pub(crate) async fn patch_status<K>(
    api: &Api<K>,
    name: &str,
    status: serde_json::Value,
    resource_version: Option<&str>,
) -> Result<(), kube::Error>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let params = PatchParams {
        field_manager: Some(MANAGER.into()),
        ..PatchParams::default()
    };
    let mut patch = serde_json::json!({ "status": status });
    if let Some(version) = resource_version {
        patch["metadata"] = serde_json::json!({ "resourceVersion": version });
    }
    api.patch_status(name, &params, &Patch::Merge(patch))
        .await?;
    Ok(())
}

/// Runs the Keyspace controller (every namespace) until `shutdown`.
pub async fn run(ctx: Context, shutdown: watch::Receiver<bool>) {
    let api: Api<Keyspace> = Api::all(ctx.client.clone());
    run_controller("keyspace", api, reconcile, Arc::new(ctx), shutdown).await;
}

/// Runs a controller over every resource of `api` until `shutdown`; failed reconciles
/// are retried after 5 s.
pub(crate) async fn run_controller<K, C, F, Fut>(
    what: &'static str,
    api: Api<K>,
    reconcile: F,
    ctx: Arc<C>,
    mut shutdown: watch::Receiver<bool>,
) where
    K: kube::Resource
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone + std::fmt::Debug + Unpin,
    C: Send + Sync + 'static,
    F: FnMut(Arc<K>, Arc<C>) -> Fut,
    Fut: std::future::Future<Output = Result<Action, ReconcileError>> + Send + 'static,
{
    use futures::StreamExt;
    let error_policy = move |_: Arc<K>, error: &ReconcileError, _: Arc<C>| {
        warn!(%error, controller = what, "reconcile failed; retrying");
        Action::requeue(Duration::from_secs(5))
    };
    let stop = async move {
        let _ = shutdown.wait_for(|s| *s).await;
    };
    Controller::new(api, watcher::Config::default())
        .graceful_shutdown_on(stop)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                warn!(error = %e, controller = what, "controller");
            }
        })
        .await;
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use http::{Request, Response};
    use kube::client::Body;
    use serde_json::{json, Value};
    use shardcar_topo::{Layout, MemoryStore};

    fn resource(spec: Value) -> Value {
        json!({
            "apiVersion": "shardcar.io/v1alpha1",
            "kind": "Keyspace",
            "metadata": {"name": "user", "namespace": "shop", "generation": 3,
                         "resourceVersion": "41", "uid": "7a1d2c9e-0000-4000-8000-000000000001"},
            "spec": spec,
        })
    }

    /// The mocked API server's side: answers `count` merge patches of `path` (a status
    /// subresource) with `object` carrying the patched status; returns the patches.
    pub(crate) async fn serve_status_patches(
        mut handle: tower_test::mock::Handle<Request<Body>, Response<Body>>,
        object: Value,
        path: &str,
        count: usize,
    ) -> Vec<Value> {
        let mut patches = Vec::new();
        for _ in 0..count {
            let (request, send) = handle.next_request().await.expect("a request");
            assert_eq!(request.method(), "PATCH");
            assert_eq!(request.uri().path(), path);
            assert_eq!(
                request.headers()["content-type"],
                "application/merge-patch+json"
            );
            let body = request.into_body().collect_bytes().await.expect("body");
            let patch: Value = serde_json::from_slice(&body).expect("JSON patch");
            let mut answer = object.clone();
            answer["status"] = patch["status"].clone();
            let body = serde_json::to_vec(&answer).expect("json");
            send.send_response(
                Response::builder()
                    .status(200)
                    .body(Body::from(body))
                    .expect("response"),
            );
            patches.push(patch);
        }
        patches
    }

    /// Reconciles `object` against a mocked API server; returns the status patch it sent.
    async fn reconcile_once(topology: &Topology, object: Value) -> (Value, Action) {
        let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let client = kube::Client::new(service, "default");
        let server = tokio::spawn(serve_status_patches(
            handle,
            object.clone(),
            "/apis/shardcar.io/v1alpha1/namespaces/shop/keyspaces/user/status",
            1,
        ));
        let keyspace: Keyspace = serde_json::from_value(object).expect("a Keyspace");
        let ctx = Context {
            client,
            topology: topology.clone(),
            reparent: Default::default(),
            metrics: None,
        };
        let action = reconcile(Arc::new(keyspace), Arc::new(ctx))
            .await
            .expect("reconciled");
        let mut patches = server.await.expect("server");
        (patches.remove(0), action)
    }

    #[tokio::test]
    async fn a_keyspace_goes_into_the_topology_and_its_status_says_ready() {
        let topology = Topology::new(Arc::new(MemoryStore::default()), Layout::default());
        let vschema = json!({"sharded": true, "vindexes": {"hash": {"type": "hash"}},
            "tables": {"users": {"column_vindexes": [{"column": "id", "name": "hash"}]}}});
        let object = resource(json!({
            "durabilityPolicy": "semi_sync",
            "shards": ["-80", "80-"],
            "vschema": vschema,
        }));
        let (patch, _) = reconcile_once(&topology, object).await;
        let condition = &patch["status"]["conditions"][0];
        assert_eq!(condition["type"], "Ready");
        assert_eq!(condition["status"], "True");
        assert_eq!(condition["observedGeneration"], 3);
        assert_eq!(patch["status"]["shards"], 2);
        let record = topology
            .keyspace("user")
            .await
            .expect("read")
            .expect("written");
        assert_eq!(record.durability_policy, "semi_sync");
        assert_eq!(record.vschema, Some(vschema));
        assert_eq!(
            topology.shard_names("user").await.expect("shards"),
            vec!["-80".to_string(), "80-".to_string()]
        );
    }

    #[tokio::test]
    async fn a_vschema_that_does_not_build_is_refused_in_the_status() {
        let topology = Topology::new(Arc::new(MemoryStore::default()), Layout::default());
        let object = resource(json!({
            "shards": ["-80", "80-"],
            "vschema": {"sharded": true, "tables": {"users": {"column_vindexes": [{"column": "id", "name": "nope"}]}}},
        }));
        let (patch, action) = reconcile_once(&topology, object).await;
        let condition = &patch["status"]["conditions"][0];
        assert_eq!(condition["status"], "False");
        assert_eq!(condition["reason"], "Invalid");
        assert!(
            condition["message"].as_str().unwrap_or("").contains("nope"),
            "{condition}"
        );
        assert_eq!(action, Action::await_change());
        assert_eq!(topology.keyspace("user").await.expect("read"), None);

        // Shards that leave a gap are refused too.
        let object = resource(json!({
            "shards": ["-40", "80-"],
            "vschema": {"sharded": true},
        }));
        let (patch, _) = reconcile_once(&topology, object).await;
        assert_eq!(patch["status"]["conditions"][0]["reason"], "Invalid");
    }
}
