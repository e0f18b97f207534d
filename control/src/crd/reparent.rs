//! Reconciling `Reparent` resources: a planned reparent runs once per resource. An
//! instance claims the resource by moving its status to `Running` under the
//! resourceVersion it read (a concurrent claim by another control replica fails with a
//! conflict, so exactly one runs it), then records `Succeeded` with the new primary and
//! term, or `Failed` with the reason. A `Running` resource this instance did not claim
//! (its claimer stopped midway) is marked `Failed`: whether the reparent happened is for
//! the shard's record to say, and a new resource asks again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::api::Api;
use kube::runtime::controller::Action;
use kube::ResourceExt;
use tokio::sync::watch;
use tracing::{info, warn};

use super::reconcile::{patch_status, run_controller, Context, ReconcileError};
use super::{Reparent, ReparentStatus};
use crate::reparent::planned_reparent;

/// The Reparent controller's state: the resources this instance claimed, by uid, with
/// the outcome still to be written when writing it failed.
#[derive(Debug, Default)]
pub struct Claims {
    uids: Mutex<HashMap<String, Option<ReparentStatus>>>,
}

impl Claims {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Option<ReparentStatus>>> {
        crate::lock(&self.uids)
    }
}

/// What one resource needs next.
async fn step(
    reparent: &Reparent,
    ctx: &Context,
    claims: &Claims,
) -> Result<Action, ReconcileError> {
    let api: Api<Reparent> = Api::namespaced(
        ctx.client.clone(),
        &reparent.namespace().unwrap_or_default(),
    );
    let name = reparent.name_any();
    let uid = reparent.uid().unwrap_or_default();
    let status = reparent.status.clone().unwrap_or_default();
    match status.phase.as_str() {
        "Succeeded" | "Failed" => Ok(Action::await_change()),
        "" => {
            let running = ReparentStatus {
                phase: "Running".into(),
                message: format!(
                    "reparenting {}/{}",
                    reparent.spec.keyspace, reparent.spec.shard
                ),
                ..ReparentStatus::default()
            };
            // Under the version read: of two instances, one claims it.
            match patch_status(
                &api,
                &name,
                serde_json::to_value(&running).unwrap_or_default(),
                reparent.resource_version().as_deref(),
            )
            .await
            {
                Ok(()) => {}
                Err(kube::Error::Api(e)) if e.code == 409 => {
                    return Ok(Action::requeue(Duration::from_secs(1)));
                }
                Err(e) => return Err(e.into()),
            }
            claims.lock().insert(uid.clone(), None);
            let mut options = ctx.reparent.clone();
            options.to.clone_from(&reparent.spec.to);
            let outcome = planned_reparent(
                &ctx.topology,
                &reparent.spec.keyspace,
                &reparent.spec.shard,
                &options,
            )
            .await;
            if let Some(m) = &ctx.metrics {
                m.action("planned", outcome.is_ok());
            }
            let done = match outcome {
                Ok(report) => {
                    info!(resource = %name, ?report, "reparent done");
                    ReparentStatus {
                        phase: "Succeeded".into(),
                        old_primary: report.old_primary,
                        new_primary: report.new_primary,
                        term: i64::try_from(report.term).unwrap_or(i64::MAX),
                        message: format!(
                            "writes held {} ms, {} ms in all",
                            report.write_pause_ms, report.total_ms
                        ),
                    }
                }
                Err(e) => {
                    warn!(resource = %name, error = %e, "reparent failed");
                    ReparentStatus {
                        phase: "Failed".into(),
                        message: e.to_string(),
                        ..ReparentStatus::default()
                    }
                }
            };
            // Kept until written: a failed write is retried, not lost.
            claims.lock().insert(uid.clone(), Some(done));
            write_outcome(&api, &name, &uid, claims).await
        }
        _ if claims.lock().contains_key(&uid) => write_outcome(&api, &name, &uid, claims).await,
        _ => {
            let failed = ReparentStatus {
                phase: "Failed".into(),
                message: "interrupted: the control instance running it stopped; check the shard's primary and create a new Reparent".into(),
                ..status
            };
            patch_status(
                &api,
                &name,
                serde_json::to_value(&failed).unwrap_or_default(),
                reparent.resource_version().as_deref(),
            )
            .await?;
            Ok(Action::await_change())
        }
    }
}

/// Writes the outcome this instance holds for a resource it claimed (nothing while the
/// reparent still runs).
async fn write_outcome(
    api: &Api<Reparent>,
    name: &str,
    uid: &str,
    claims: &Claims,
) -> Result<Action, ReconcileError> {
    let pending = claims.lock().get(uid).cloned().flatten();
    if let Some(done) = pending {
        patch_status(
            api,
            name,
            serde_json::to_value(&done).unwrap_or_default(),
            None,
        )
        .await?;
        claims.lock().remove(uid);
    }
    Ok(Action::await_change())
}

async fn reconcile(
    reparent: Arc<Reparent>,
    ctx: Arc<(Context, Claims)>,
) -> Result<Action, ReconcileError> {
    step(&reparent, &ctx.0, &ctx.1).await
}

/// Runs the Reparent controller (every namespace) until `shutdown`.
pub async fn run(ctx: Context, shutdown: watch::Receiver<bool>) {
    let api: Api<Reparent> = Api::all(ctx.client.clone());
    let ctx = Arc::new((ctx, Claims::default()));
    run_controller("reparent", api, reconcile, ctx, shutdown).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::reconcile::tests::serve_status_patches;
    use http::{Request, Response};
    use kube::client::Body;
    use serde_json::json;
    use shardcar_topo::{Layout, MemoryStore, Topology};

    #[tokio::test]
    async fn a_reparent_is_claimed_under_its_version_then_reports_its_outcome() {
        let topology = Topology::new(Arc::new(MemoryStore::default()), Layout::default());
        let object = json!({
            "apiVersion": "shardcar.io/v1alpha1",
            "kind": "Reparent",
            "metadata": {"name": "move", "namespace": "shop", "resourceVersion": "77",
                         "uid": "7a1d2c9e-0000-4000-8000-000000000002"},
            "spec": {"keyspace": "user", "shard": "-80"},
        });
        let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let client = kube::Client::new(service, "default");
        let server = tokio::spawn(serve_status_patches(
            handle,
            object.clone(),
            "/apis/shardcar.io/v1alpha1/namespaces/shop/reparents/move/status",
            2,
        ));
        let reparent: Reparent = serde_json::from_value(object).expect("a Reparent");
        let ctx = Context {
            client,
            topology,
            reparent: Default::default(),
            metrics: None,
        };
        let action = step(&reparent, &ctx, &Claims::default())
            .await
            .expect("stepped");
        assert_eq!(action, Action::await_change());
        let patches = server.await.expect("server");
        assert_eq!(patches[0]["status"]["phase"], "Running");
        assert_eq!(
            patches[0]["metadata"]["resourceVersion"], "77",
            "claimed under its version"
        );
        assert_eq!(patches[1]["status"]["phase"], "Failed");
        assert!(
            patches[1]["status"]["message"]
                .as_str()
                .unwrap_or("")
                .contains("not in the topology"),
            "{}",
            patches[1]
        );
    }

    #[tokio::test]
    async fn an_outcome_that_could_not_be_written_is_written_on_the_next_pass() {
        let topology = Topology::new(Arc::new(MemoryStore::default()), Layout::default());
        let object = json!({
            "apiVersion": "shardcar.io/v1alpha1",
            "kind": "Reparent",
            "metadata": {"name": "move", "namespace": "shop", "resourceVersion": "77",
                         "uid": "7a1d2c9e-0000-4000-8000-000000000003"},
            "spec": {"keyspace": "user", "shard": "-80"},
        });
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let ctx = Context {
            client: kube::Client::new(service, "default"),
            topology,
            reparent: Default::default(),
            metrics: None,
        };
        let claims = Claims::default();
        let reparent: Reparent = serde_json::from_value(object.clone()).expect("a Reparent");
        let answered = object.clone();
        // The claim is accepted; writing the outcome meets a server error.
        let server = tokio::spawn(async move {
            let (_, send) = handle.next_request().await.expect("the claim");
            let body = serde_json::to_vec(&answered).expect("json");
            send.send_response(
                Response::builder()
                    .status(200)
                    .body(Body::from(body))
                    .expect("ok"),
            );
            let (_, send) = handle.next_request().await.expect("the outcome");
            let error = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                "message": "etcdserver: request timed out", "reason": "InternalError", "code": 500});
            let body = serde_json::to_vec(&error).expect("json");
            send.send_response(
                Response::builder()
                    .status(500)
                    .body(Body::from(body))
                    .expect("500"),
            );
            handle
        });
        assert!(step(&reparent, &ctx, &claims).await.is_err());
        let handle = server.await.expect("server");
        // The resource now says Running (the claim); the next pass writes the outcome.
        let mut running = object.clone();
        running["status"] = json!({"phase": "Running"});
        let server = tokio::spawn(serve_status_patches(
            handle,
            running.clone(),
            "/apis/shardcar.io/v1alpha1/namespaces/shop/reparents/move/status",
            1,
        ));
        let reparent: Reparent = serde_json::from_value(running).expect("a Reparent");
        assert_eq!(
            step(&reparent, &ctx, &claims).await.expect("written"),
            Action::await_change()
        );
        let patches = server.await.expect("server");
        assert_eq!(patches[0]["status"]["phase"], "Failed");
        assert!(claims.lock().is_empty());
    }
}
