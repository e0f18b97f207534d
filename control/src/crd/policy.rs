//! Checking `QueryPolicy` and `AccessPolicy` resources: each spec is compiled with the
//! code that enforces it (`shardcar_filter::stream::policy`, which the wasm filter runs
//! and whose rules are the db role's), and the outcome goes into the resource's status:
//! `Ready` with the number of rules, or not ready with the error naming the bad field.
//! Delivering the policies to the db-role sidecars is not built yet (issue 6).

use std::sync::Arc;

use kube::api::Api;
use kube::runtime::controller::Action;
use kube::ResourceExt;
use shardcar_filter::stream::policy::StreamPolicy;
use tokio::sync::watch;
use tracing::{info, warn};

use super::reconcile::{patch_status, ready_condition, run_controller, Context, ReconcileError};
use super::{AccessPolicy, PolicyStatus, QueryPolicy};

/// Compiles a filter configuration; the error names the bad field.
pub fn check(config: serde_json::Value) -> Result<StreamPolicy, String> {
    StreamPolicy::from_json(config.to_string().as_bytes()).map_err(|e| e.to_string())
}

/// The status after a check.
pub fn status_after(
    previous: Option<&PolicyStatus>,
    outcome: &Result<usize, String>,
    generation: Option<i64>,
    now: &str,
) -> PolicyStatus {
    let previous = previous.cloned().unwrap_or_default();
    let (ready, reason, message, rules) = match outcome {
        Ok(n) => (
            true,
            "Valid",
            format!("{n} rules compile"),
            i32::try_from(*n).unwrap_or(i32::MAX),
        ),
        Err(e) => (false, "Invalid", e.clone(), previous.rules),
    };
    PolicyStatus {
        rules,
        conditions: vec![ready_condition(
            &previous.conditions,
            ready,
            reason,
            message,
            generation,
            now,
        )],
    }
}

async fn record<K>(
    resource: &K,
    previous: Option<&PolicyStatus>,
    outcome: Result<usize, String>,
    ctx: &Context,
) -> Result<Action, ReconcileError>
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let status = status_after(previous, &outcome, resource.meta().generation, &now);
    let api: Api<K> = Api::namespaced(
        ctx.client.clone(),
        &resource.namespace().unwrap_or_default(),
    );
    patch_status(
        &api,
        &resource.name_any(),
        serde_json::to_value(&status).unwrap_or_default(),
        None,
    )
    .await?;
    match outcome {
        Ok(rules) => info!(resource = %resource.name_any(), rules, "policy valid"),
        Err(message) => warn!(resource = %resource.name_any(), %message, "policy refused"),
    }
    // Checking is pure: nothing changes until the resource does.
    Ok(Action::await_change())
}

/// Checks one QueryPolicy.
pub async fn reconcile_query(
    policy: Arc<QueryPolicy>,
    ctx: Arc<Context>,
) -> Result<Action, ReconcileError> {
    // The query rules, the built-in ones included.
    let outcome =
        check(serde_json::json!({ "queryPolicy": policy.spec })).map(|p| p.rules.names().count());
    record(policy.as_ref(), policy.status.as_ref(), outcome, &ctx).await
}

/// Checks one AccessPolicy.
pub async fn reconcile_access(
    policy: Arc<AccessPolicy>,
    ctx: Arc<Context>,
) -> Result<Action, ReconcileError> {
    let outcome = check(serde_json::json!({ "accessPolicy": policy.spec })).map(|p| p.access.len());
    record(policy.as_ref(), policy.status.as_ref(), outcome, &ctx).await
}

/// Runs both controllers (every namespace) until `shutdown`.
pub async fn run(ctx: Context, shutdown: watch::Receiver<bool>) {
    let ctx = Arc::new(ctx);
    let query = run_controller(
        "query-policy",
        Api::<QueryPolicy>::all(ctx.client.clone()),
        reconcile_query,
        Arc::clone(&ctx),
        shutdown.clone(),
    );
    let access = run_controller(
        "access-policy",
        Api::<AccessPolicy>::all(ctx.client.clone()),
        reconcile_access,
        ctx,
        shutdown,
    );
    tokio::join!(query, access);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::reconcile::tests::serve_status_patches;
    use http::{Request, Response};
    use kube::client::Body;
    use serde_json::{json, Value};
    use shardcar_topo::{Layout, MemoryStore, Topology};

    fn object(kind: &str, spec: Value) -> Value {
        json!({
            "apiVersion": "shardcar.io/v1alpha1",
            "kind": kind,
            "metadata": {"name": "p", "namespace": "shop", "generation": 2,
                         "resourceVersion": "9", "uid": "7a1d2c9e-0000-4000-8000-000000000002"},
            "spec": spec,
        })
    }

    async fn status_of(kind: &str, plural: &str, spec: Value) -> Value {
        let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let object = object(kind, spec);
        let path = format!("/apis/shardcar.io/v1alpha1/namespaces/shop/{plural}/p/status");
        let answered = object.clone();
        let server =
            tokio::spawn(async move { serve_status_patches(handle, answered, &path, 1).await });
        let ctx = Arc::new(Context {
            client: kube::Client::new(service, "default"),
            topology: Topology::new(Arc::new(MemoryStore::default()), Layout::default()),
            reparent: Default::default(),
            metrics: None,
        });
        let action = if kind == "QueryPolicy" {
            let p: QueryPolicy = serde_json::from_value(object).expect("QueryPolicy");
            reconcile_query(Arc::new(p), ctx).await
        } else {
            let p: AccessPolicy = serde_json::from_value(object).expect("AccessPolicy");
            reconcile_access(Arc::new(p), ctx).await
        }
        .expect("reconciled");
        assert_eq!(action, Action::await_change());
        server.await.expect("server").remove(0)["status"].clone()
    }

    #[tokio::test]
    async fn a_query_policy_that_compiles_is_ready_with_its_rule_count() {
        let status = status_of(
            "QueryPolicy",
            "querypolicies",
            json!({"limits": {"max_rows": 100},
                   "rules": [{"name": "no-secret", "match": {"tables": ["secret"]}, "action": "deny"}]}),
        )
        .await;
        // The two built-in rules on by default, and the one configured.
        assert_eq!(status["rules"], 3);
        let ready = &status["conditions"][0];
        assert_eq!(
            (ready["type"].as_str(), ready["status"].as_str()),
            (Some("Ready"), Some("True"))
        );
        assert_eq!(ready["observedGeneration"], 2);
    }

    #[tokio::test]
    async fn a_bad_rule_or_grant_is_refused_naming_the_field() {
        let status = status_of(
            "QueryPolicy",
            "querypolicies",
            json!({"rules": [{"name": "r", "action": "rewrite", "pattern": "("}]}),
        )
        .await;
        let ready = &status["conditions"][0];
        assert_eq!(ready["status"], "False");
        assert_eq!(ready["reason"], "Invalid");
        assert!(
            ready["message"]
                .as_str()
                .unwrap_or("")
                .contains("rules[0] (r)"),
            "{ready}"
        );
        let status = status_of(
            "AccessPolicy",
            "accesspolicies",
            json!({"grants": [{"serviceAccounts": ["shop/web"], "keyspaces": [], "access": ["read"]}]}),
        )
        .await;
        let ready = &status["conditions"][0];
        assert_eq!(ready["status"], "False");
        assert!(
            ready["message"]
                .as_str()
                .unwrap_or("")
                .contains("accessPolicy.grants[0]"),
            "{ready}"
        );
        let status = status_of(
            "AccessPolicy",
            "accesspolicies",
            json!({"grants": [{"serviceAccounts": ["shop/web"], "keyspaces": ["shop"], "access": ["read"]}]}),
        )
        .await;
        assert_eq!(status["conditions"][0]["status"], "True");
        assert_eq!(status["rules"], 1);
    }
}
