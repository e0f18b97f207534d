//! The custom resources of group `shardcar.io`, version `v1alpha1`, as Rust types: the
//! CRDs in `manifests/crds/` are generated from them (`shardcar-control crds`; CI fails
//! when the two drift apart).
//!
//! - [`Keyspace`]: a keyspace's VSchema, durability policy, shards and cells; reconciled
//!   into the topology ([`reconcile`]).
//! - [`QueryPolicy`]: db-role protection rules for the tablets a selector picks.
//! - [`AccessPolicy`]: which workloads may read or write which keyspaces and tables.
//! - [`RemoteCluster`]: a federated cluster's topology, with credentials from a Secret.
//! - [`Reparent`]: a planned reparent request and its progress; run once, by one
//!   control replica ([`reparent`]).
//!
//! Secrets are referenced by name and key, never inlined.

pub mod policy;
pub mod reconcile;
pub mod reparent;

use std::collections::BTreeMap;

use kube::CustomResource;
use kube::CustomResourceExt;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A schema for free-form JSON objects (a VSchema, a rule): kept as given.
fn any_object(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true
    })
}

/// A list of free-form objects.
fn any_objects(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "array",
        "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}
    })
}

/// A status condition, as Kubernetes conventions have it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// `Ready`, `Applied`, ...
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// One CamelCase word.
    pub reason: String,
    pub message: String,
    /// RFC 3339.
    pub last_transition_time: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// How a keyspace's writes are made durable.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DurabilityPolicy {
    #[default]
    None,
    SemiSync,
    CrossCell,
}

impl DurabilityPolicy {
    /// The policy's name in the topology's keyspace record.
    pub fn name(self) -> &'static str {
        match self {
            DurabilityPolicy::None => "none",
            DurabilityPolicy::SemiSync => "semi_sync",
            DurabilityPolicy::CrossCell => "cross_cell",
        }
    }
}

/// A keyspace: what the topology's keyspace record holds, and its shards.
#[derive(CustomResource, Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "shardcar.io",
    version = "v1alpha1",
    kind = "Keyspace",
    namespaced,
    status = "KeyspaceStatus",
    shortname = "sks",
    printcolumn = r#"{"name":"Keyspace","type":"string","jsonPath":".status.keyspace"}"#,
    printcolumn = r#"{"name":"Shards","type":"integer","jsonPath":".status.shards"}"#,
    printcolumn = r#"{"name":"Durability","type":"string","jsonPath":".spec.durabilityPolicy"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct KeyspaceSpec {
    /// The keyspace's name in the topology; default: the resource's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keyspace: Option<String>,
    /// The keyspace's Vitess VSchema (`{"sharded": true, "vindexes": ..., "tables": ...}`);
    /// none for an unsharded keyspace without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "any_object")]
    pub vschema: Option<serde_json::Value>,
    #[serde(default)]
    pub durability_policy: DurabilityPolicy,
    /// Vitess shard names (`-80`, `80-`; `0` unsharded); their records are created in
    /// the topology without a primary (the first tablet claims it).
    #[serde(default)]
    pub shards: Vec<String>,
    /// The cells the keyspace serves in (informational for now).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cells: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KeyspaceStatus {
    /// The keyspace as written to the topology.
    #[serde(default)]
    pub keyspace: String,
    #[serde(default)]
    pub shards: i32,
    #[serde(default)]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// Label selection, as Kubernetes' `matchLabels`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Selector {
    #[serde(default)]
    pub match_labels: BTreeMap<String, String>,
}

/// Protection rules for the db sidecars of the pods `selector` picks: the same fields as
/// the db role's `db.limits`, `db.builtin_rules` and `db.rules`.
#[derive(CustomResource, Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "shardcar.io",
    version = "v1alpha1",
    kind = "QueryPolicy",
    namespaced,
    status = "PolicyStatus",
    printcolumn = r#"{"name":"Rules","type":"integer","jsonPath":".status.rules"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct QueryPolicySpec {
    #[serde(default)]
    pub selector: Selector,
    /// As `db.limits` of the db role's configuration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "any_object")]
    pub limits: Option<serde_json::Value>,
    /// As `db.builtin_rules`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "any_object")]
    pub builtin_rules: Option<serde_json::Value>,
    /// As `db.rules`: name, action (deny, allow, log, rate_limit, rewrite), match, ...
    #[serde(default)]
    #[schemars(schema_with = "any_objects")]
    pub rules: Vec<serde_json::Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyStatus {
    #[serde(default)]
    pub rules: i32,
    #[serde(default)]
    pub conditions: Vec<Condition>,
}

/// What a grant lets a workload do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Access {
    Read,
    Write,
}

/// One grant: these keyspaces (and tables, `*` for all) to these workloads.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Grant {
    /// Service accounts (`namespace/name`) the grant is for.
    #[serde(default)]
    pub service_accounts: Vec<String>,
    pub keyspaces: Vec<String>,
    /// Tables, `*` for all.
    #[serde(default = "all_tables")]
    pub tables: Vec<String>,
    pub access: Vec<Access>,
}

fn all_tables() -> Vec<String> {
    vec!["*".to_string()]
}

/// Which workloads may read or write which keyspaces and tables.
#[derive(CustomResource, Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "shardcar.io",
    version = "v1alpha1",
    kind = "AccessPolicy",
    namespaced,
    status = "PolicyStatus",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct AccessPolicySpec {
    pub grants: Vec<Grant>,
}

/// A key of a Secret.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    pub name: String,
    pub key: String,
}

/// A federated cluster: its topology's etcd, where it runs, and its credentials.
#[derive(CustomResource, Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "shardcar.io",
    version = "v1alpha1",
    kind = "RemoteCluster",
    namespaced,
    status = "RemoteClusterStatus",
    printcolumn = r#"{"name":"Region","type":"string","jsonPath":".spec.region"}"#,
    printcolumn = r#"{"name":"Cloud","type":"string","jsonPath":".spec.cloud"}"#,
    printcolumn = r#"{"name":"Reachable","type":"string","jsonPath":".status.conditions[?(@.type==\"Reachable\")].status"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct RemoteClusterSpec {
    /// etcd client URLs of the cluster's topology.
    pub etcd_endpoints: Vec<String>,
    #[serde(default = "default_root")]
    pub root: String,
    #[serde(default)]
    pub region: String,
    #[serde(default)]
    pub cloud: String,
    /// A kubeconfig for the cluster's API server (for its Pods and EndpointSlices).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubeconfig: Option<SecretKeyRef>,
    /// etcd client certificate and key, PEM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etcd_client_cert: Option<SecretKeyRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etcd_client_key: Option<SecretKeyRef>,
}

fn default_root() -> String {
    "/shardcar".to_string()
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RemoteClusterStatus {
    #[serde(default)]
    pub tablets: i32,
    #[serde(default)]
    pub conditions: Vec<Condition>,
}

/// A planned reparent, requested by creating the resource.
#[derive(CustomResource, Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "shardcar.io",
    version = "v1alpha1",
    kind = "Reparent",
    namespaced,
    status = "ReparentStatus",
    printcolumn = r#"{"name":"Keyspace","type":"string","jsonPath":".spec.keyspace"}"#,
    printcolumn = r#"{"name":"Shard","type":"string","jsonPath":".spec.shard"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Primary","type":"string","jsonPath":".status.newPrimary"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ReparentSpec {
    pub keyspace: String,
    pub shard: String,
    /// The replica to promote (`cell-uid`); default: the healthiest replica.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReparentStatus {
    /// `Running`, `Succeeded` or `Failed`.
    #[serde(default)]
    pub phase: String,
    #[serde(default)]
    pub old_primary: String,
    #[serde(default)]
    pub new_primary: String,
    #[serde(default)]
    pub term: i64,
    #[serde(default)]
    pub message: String,
}

/// Every CRD, in a stable order, as one multi-document YAML (what `manifests/crds/`
/// holds).
pub fn crds_yaml() -> Result<String, serde_yaml::Error> {
    let crds = [
        Keyspace::crd(),
        QueryPolicy::crd(),
        AccessPolicy::crd(),
        RemoteCluster::crd(),
        Reparent::crd(),
    ];
    let mut out = String::from(
        "# Generated by `shardcar-control crds` from control/src/crd/mod.rs: do not edit.\n",
    );
    for crd in crds {
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(&crd)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The wasm filter takes an AccessPolicy's and a QueryPolicy's spec as its plugin
    /// configuration: what the CRD types write, the filter must read.
    #[test]
    fn policy_specs_are_the_wasm_filters_configuration() {
        let access = AccessPolicySpec {
            grants: vec![Grant {
                service_accounts: vec!["shop/web".into()],
                keyspaces: vec!["shop".into()],
                tables: vec!["*".into()],
                access: vec![Access::Read, Access::Write],
            }],
        };
        let query = QueryPolicySpec {
            limits: Some(serde_json::json!({"max_rows": 100, "max_rows_mode": "truncate"})),
            builtin_rules: Some(serde_json::json!({"ddl": "deny"})),
            rules: vec![
                serde_json::json!({"name": "r", "match": {"tables": ["t"]}, "action": "deny"}),
            ],
            ..QueryPolicySpec::default()
        };
        let config = serde_json::json!({"accessPolicy": access, "queryPolicy": query});
        let policy =
            shardcar_filter::stream::policy::StreamPolicy::from_json(config.to_string().as_bytes())
                .expect("the filter reads the CRD specs");
        assert_eq!(policy.max_rows, Some(100));
        assert!(!policy.access.is_empty());
    }
}
