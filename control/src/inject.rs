//! Sidecar injection: turns a Kubernetes `AdmissionReview` of a Pod into the review's
//! answer, with a JSON Patch that adds the Shardcar sidecar when the pod asks for one.
//! Pure: JSON in, JSON out; the HTTPS endpoint is [`crate::webhook`].
//!
//! A pod asks with the label `shardcar.io/inject: app|db|none`; a namespace-wide webhook
//! entry can call `/inject?default=app|db` so that unlabelled pods get one role. The
//! sidecar is a native sidecar (an init container with `restartPolicy: Always`, first in
//! the list, so it is up before the application starts and stops after it), configured
//! from a ConfigMap mounted at `/etc/shardcar`, with its identity from the downward API,
//! probes on its admin port, requests and limits, and a non-root, read-only container.
//!
//! Annotations override the defaults: `shardcar.io/image`, `shardcar.io/config-map`,
//! `shardcar.io/cpu`, `shardcar.io/memory` (requests; the memory limit is twice the
//! request); `shardcar.io/tablet-uid-base` numbers the tablets of a StatefulSet
//! (`SHARDCAR_TABLET_UID` = base + the pod's ordinal; ordinal 0 starts as the primary, so
//! it claims a new shard); `shardcar.io/secret` mounts a Secret at `/etc/shardcar-secrets`
//! (passwords, the action token). A db sidecar learns its pod IP as
//! `SHARDCAR_TABLET_HOSTNAME`. A bad annotation denies the pod with a message naming it. A pod that already
//! has the sidecar (a container named `shardcar`) is left alone, so a second pass patches
//! nothing.

use serde_json::{json, Value};

/// The sidecar container's name.
pub const CONTAINER: &str = "shardcar";
/// The pod label that asks for a sidecar.
pub const INJECT_LABEL: &str = "shardcar.io/inject";
/// Where the admin endpoints (probes, metrics) listen in the pod.
pub const ADMIN_PORT: u16 = 15000;
/// The app role's MySQL port: applications connect to `127.0.0.1:3306`.
pub const APP_PORT: u16 = 3306;
/// The db role's MySQL port, beside mysqld's own 3306 (Vitess's vttablet port).
pub const DB_PORT: u16 = 15306;

/// The sidecar role a pod gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    App,
    Db,
}

impl Role {
    fn parse(s: &str) -> Option<Role> {
        match s {
            "app" => Some(Role::App),
            "db" => Some(Role::Db),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Role::App => "app",
            Role::Db => "db",
        }
    }
}

/// The defaults every injected sidecar gets.
#[derive(Debug, Clone)]
pub struct InjectConfig {
    pub image: String,
    pub cpu_request: String,
    pub memory_request: String,
}

impl Default for InjectConfig {
    fn default() -> Self {
        InjectConfig {
            image: "ghcr.io/shardcar/shardcar:0.1.0".to_string(),
            cpu_request: "100m".to_string(),
            memory_request: "64Mi".to_string(),
        }
    }
}

/// The answer to one `AdmissionReview` request (`review`), as an `AdmissionReview`
/// response. `default_role` is the namespace default (`?default=`). Errs when the review
/// itself is malformed (the HTTP layer answers 400).
pub fn answer(
    review: &Value,
    config: &InjectConfig,
    default_role: Option<Role>,
) -> Result<Value, String> {
    let request = review
        .get("request")
        .ok_or("the AdmissionReview has no request")?;
    let uid = request
        .get("uid")
        .and_then(Value::as_str)
        .ok_or("the AdmissionReview request has no uid")?;
    let api_version = review
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("admission.k8s.io/v1");
    let pod = request
        .get("object")
        .filter(|o| {
            o.get("kind")
                .and_then(Value::as_str)
                .is_none_or(|k| k == "Pod")
        })
        .ok_or("the AdmissionReview request has no Pod object")?;
    let response = match patch(pod, config, default_role) {
        Ok(None) => json!({"uid": uid, "allowed": true}),
        Ok(Some(ops)) => json!({
            "uid": uid,
            "allowed": true,
            "patchType": "JSONPatch",
            "patch": base64_encode(ops.to_string().as_bytes()),
        }),
        Err(message) => json!({
            "uid": uid,
            "allowed": false,
            "status": {"code": 400, "message": message},
        }),
    };
    Ok(json!({
        "apiVersion": api_version,
        "kind": "AdmissionReview",
        "response": response,
    }))
}

/// The JSON Patch for `pod`: `None` when it gets no sidecar, an error naming the bad
/// annotation or label when it cannot.
pub fn patch(
    pod: &Value,
    config: &InjectConfig,
    default_role: Option<Role>,
) -> Result<Option<Value>, String> {
    let metadata = pod.get("metadata").cloned().unwrap_or_else(|| json!({}));
    let label = metadata
        .get("labels")
        .and_then(|l| l.get(INJECT_LABEL))
        .and_then(Value::as_str);
    let role = match label {
        Some("none") => return Ok(None),
        Some(v) => Some(
            Role::parse(v)
                .ok_or_else(|| format!("label {INJECT_LABEL}={v:?}: expected app, db or none"))?,
        ),
        None => default_role,
    };
    let Some(role) = role else {
        return Ok(None);
    };
    let spec = pod.get("spec").ok_or("the pod has no spec")?;
    let has_sidecar = ["containers", "initContainers"].iter().any(|list| {
        spec.get(list)
            .and_then(Value::as_array)
            .is_some_and(|cs| cs.iter().any(|c| c.get("name") == Some(&json!(CONTAINER))))
    });
    if has_sidecar {
        return Ok(None);
    }
    let annotation = |key: &str| {
        metadata
            .get("annotations")
            .and_then(|a| a.get(key))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let image = annotation("shardcar.io/image").unwrap_or_else(|| config.image.clone());
    if image.trim().is_empty() || image.chars().any(char::is_whitespace) {
        return Err(format!(
            "annotation shardcar.io/image={image:?} is not an image reference"
        ));
    }
    let config_map =
        annotation("shardcar.io/config-map").unwrap_or_else(|| format!("shardcar-{}", role.name()));
    if !is_dns_label(&config_map) {
        return Err(format!(
            "annotation shardcar.io/config-map={config_map:?} is not a ConfigMap name"
        ));
    }
    let cpu = annotation("shardcar.io/cpu").unwrap_or_else(|| config.cpu_request.clone());
    if !is_quantity(&cpu) {
        return Err(format!(
            "annotation shardcar.io/cpu={cpu:?} is not a quantity"
        ));
    }
    let memory = annotation("shardcar.io/memory").unwrap_or_else(|| config.memory_request.clone());
    let Some(memory_limit) = doubled(&memory) else {
        return Err(format!(
            "annotation shardcar.io/memory={memory:?} is not a quantity (like 64Mi)"
        ));
    };

    // A StatefulSet's pods are numbered: tablet uid = base + ordinal.
    let tablet_uid = match annotation("shardcar.io/tablet-uid-base") {
        None => None,
        Some(base) => {
            let name = metadata.get("name").and_then(Value::as_str).unwrap_or("");
            let ordinal = name
                .rsplit_once('-')
                .and_then(|(_, n)| n.parse::<u32>().ok());
            match (base.parse::<u32>(), ordinal) {
                (Ok(base), Some(n)) if base.checked_add(n).is_some() => Some(base + n),
                _ => {
                    return Err(format!(
                        "annotation shardcar.io/tablet-uid-base={base:?} needs a number and a pod named <name>-<ordinal> (a StatefulSet's), not {name:?}"
                    ))
                }
            }
        }
    };
    let secret = annotation("shardcar.io/secret");
    if let Some(name) = secret.as_deref().filter(|n| !is_dns_label(n)) {
        return Err(format!(
            "annotation shardcar.io/secret={name:?} is not a Secret name"
        ));
    }
    let first_of_set = tablet_uid.is_some()
        && metadata
            .get("name")
            .and_then(Value::as_str)
            .is_some_and(|n| n.ends_with("-0"));
    let mut container = sidecar(role, &image, &cpu, &memory, &memory_limit, tablet_uid);
    if first_of_set {
        if let Some(env) = container["env"].as_array_mut() {
            env.push(json!({"name": "SHARDCAR_TABLET_TYPE", "value": "primary"}));
        }
    }
    if secret.is_some() {
        if let Some(mounts) = container["volumeMounts"].as_array_mut() {
            mounts.push(json!({
                "name": "shardcar-secrets",
                "mountPath": "/etc/shardcar-secrets",
                "readOnly": true,
            }));
        }
    }
    let mut ops = Vec::new();
    match spec.get("initContainers").and_then(Value::as_array) {
        Some(list) if !list.is_empty() => {
            ops.push(json!({"op": "add", "path": "/spec/initContainers/0", "value": container}))
        }
        _ => ops.push(json!({"op": "add", "path": "/spec/initContainers", "value": [container]})),
    }
    let mut volumes = vec![
        json!({"name": "shardcar-config", "configMap": {"name": config_map}}),
        json!({"name": "shardcar-tmp", "emptyDir": {}}),
    ];
    if let Some(name) = &secret {
        volumes.push(json!({
            "name": "shardcar-secrets",
            "secret": {"secretName": name, "defaultMode": 0o440},
        }));
    }
    match spec.get("volumes").and_then(Value::as_array) {
        Some(_) => ops.extend(
            volumes
                .into_iter()
                .map(|v| json!({"op": "add", "path": "/spec/volumes/-", "value": v})),
        ),
        None => ops.push(json!({"op": "add", "path": "/spec/volumes", "value": volumes})),
    }
    let injected = json!(role.name());
    match metadata.get("annotations") {
        Some(_) => ops.push(json!({
            "op": "add",
            "path": "/metadata/annotations/shardcar.io~1injected",
            "value": injected,
        })),
        None => ops.push(json!({
            "op": "add",
            "path": "/metadata/annotations",
            "value": {"shardcar.io/injected": injected},
        })),
    }
    Ok(Some(Value::Array(ops)))
}

/// The sidecar container.
fn sidecar(
    role: Role,
    image: &str,
    cpu: &str,
    memory: &str,
    memory_limit: &str,
    tablet_uid: Option<u32>,
) -> Value {
    let (port_name, port) = match role {
        Role::App => ("mysql", APP_PORT),
        Role::Db => ("shardcar-mysql", DB_PORT),
    };
    let listen = match role {
        // Applications in the pod connect over loopback.
        Role::App => format!("127.0.0.1:{APP_PORT}"),
        // App sidecars in other pods connect to the pod's address.
        Role::Db => format!("0.0.0.0:{DB_PORT}"),
    };
    let probe = |path: &str, period: u32, failures: u32| {
        json!({
            "httpGet": {"path": path, "port": ADMIN_PORT},
            "periodSeconds": period,
            "failureThreshold": failures,
            "timeoutSeconds": 1,
        })
    };
    let field = |name: &str, path: &str| json!({"name": name, "valueFrom": {"fieldRef": {"fieldPath": path}}});
    let mut env = vec![
        json!({"name": "SHARDCAR_LISTEN", "value": listen}),
        // The kubelet probes the pod's address.
        json!({"name": "SHARDCAR_ADMIN_LISTEN", "value": format!("0.0.0.0:{ADMIN_PORT}")}),
        // The sidecar's identity on the control service's configuration stream.
        field("SHARDCAR_POD_NAME", "metadata.name"),
        field("SHARDCAR_POD_NAMESPACE", "metadata.namespace"),
    ];
    if role == Role::Db {
        // Other pods reach this tablet (its sidecar and its mysqld) at the pod's IP.
        env.push(field("SHARDCAR_TABLET_HOSTNAME", "status.podIP"));
        if let Some(uid) = tablet_uid {
            env.push(json!({"name": "SHARDCAR_TABLET_UID", "value": uid.to_string()}));
        }
    }
    json!({
        "name": CONTAINER,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "restartPolicy": "Always",
        "args": [role.name(), "--config", "/etc/shardcar/config.yaml"],
        "env": env,
        "ports": [
            {"name": port_name, "containerPort": port, "protocol": "TCP"},
            {"name": "shardcar-admin", "containerPort": ADMIN_PORT, "protocol": "TCP"},
        ],
        "startupProbe": probe("/healthz", 1, 120),
        "livenessProbe": probe("/healthz", 10, 3),
        "readinessProbe": probe("/ready", 2, 2),
        "resources": {
            "requests": {"cpu": cpu, "memory": memory},
            "limits": {"memory": memory_limit},
        },
        "securityContext": {
            "runAsNonRoot": true,
            "runAsUser": 65532,
            "runAsGroup": 65532,
            "allowPrivilegeEscalation": false,
            "readOnlyRootFilesystem": true,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumeMounts": [
            {"name": "shardcar-config", "mountPath": "/etc/shardcar", "readOnly": true},
            {"name": "shardcar-tmp", "mountPath": "/tmp"},
        ],
    })
}

/// An RFC 1123 label (ConfigMap names may have dots too; labels are the common case).
fn is_dns_label(s: &str) -> bool {
    (1..=253).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && !s.starts_with(['-', '.'])
        && !s.ends_with(['-', '.'])
}

/// A Kubernetes quantity in the common forms: `250m`, `1`, `0.5`, `64Mi`, `1G`.
fn is_quantity(s: &str) -> bool {
    split_quantity(s).is_some()
}

fn split_quantity(s: &str) -> Option<(f64, &str)> {
    let digits = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, suffix) = s.split_at(digits);
    let value: f64 = number.parse().ok()?;
    const SUFFIXES: [&str; 14] = [
        "", "m", "k", "M", "G", "T", "P", "E", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei",
    ];
    (value > 0.0 && SUFFIXES.contains(&suffix)).then_some((value, suffix))
}

/// Twice a memory quantity, in the same unit.
fn doubled(s: &str) -> Option<String> {
    let (value, suffix) = split_quantity(s)?;
    if suffix == "m" {
        return None;
    }
    let twice = value * 2.0;
    Some(if twice.fract() == 0.0 {
        format!("{twice:.0}{suffix}")
    } else {
        format!("{twice}{suffix}")
    })
}

/// Standard base64 with padding (the AdmissionReview `patch` field).
fn base64_encode(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(labels: Value, annotations: Option<Value>) -> Value {
        let mut metadata = json!({"name": "web-0", "namespace": "shop", "labels": labels});
        if let Some(a) = annotations {
            metadata["annotations"] = a;
        }
        json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": metadata,
            "spec": {"containers": [{"name": "web", "image": "shop:1"}]},
        })
    }

    #[test]
    fn base64_matches_the_rfc_vectors() {
        for (plain, coded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64_encode(plain.as_bytes()), coded);
        }
    }

    #[test]
    fn the_label_or_the_namespace_default_chooses_the_role() {
        let config = InjectConfig::default();
        assert!(patch(&pod(json!({}), None), &config, None)
            .unwrap()
            .is_none());
        let ops = patch(&pod(json!({}), None), &config, Some(Role::App))
            .unwrap()
            .unwrap();
        assert_eq!(ops[0]["path"], "/spec/initContainers");
        assert_eq!(ops[0]["value"][0]["args"][0], "app");
        let labelled = pod(json!({INJECT_LABEL: "db"}), None);
        let ops = patch(&labelled, &config, Some(Role::App)).unwrap().unwrap();
        assert_eq!(ops[0]["value"][0]["args"][0], "db");
        let none = pod(json!({INJECT_LABEL: "none"}), None);
        assert!(patch(&none, &config, Some(Role::App)).unwrap().is_none());
        let bad = pod(json!({INJECT_LABEL: "proxy"}), None);
        assert!(patch(&bad, &config, None)
            .unwrap_err()
            .contains(INJECT_LABEL));
    }

    #[test]
    fn annotations_override_and_bad_ones_name_themselves() {
        let config = InjectConfig::default();
        let p = pod(
            json!({INJECT_LABEL: "app"}),
            Some(json!({"shardcar.io/image": "reg/shardcar:2", "shardcar.io/memory": "96Mi"})),
        );
        let ops = patch(&p, &config, None).unwrap().unwrap();
        let c = &ops[0]["value"][0];
        assert_eq!(c["image"], "reg/shardcar:2");
        assert_eq!(c["resources"]["limits"]["memory"], "192Mi");
        assert_eq!(
            ops.as_array().unwrap().last().unwrap()["path"],
            "/metadata/annotations/shardcar.io~1injected"
        );
        for (key, value) in [
            ("shardcar.io/memory", "lots"),
            ("shardcar.io/cpu", "-1"),
            ("shardcar.io/config-map", "Bad_Name"),
            ("shardcar.io/image", "a b"),
        ] {
            let p = pod(json!({INJECT_LABEL: "app"}), Some(json!({key: value})));
            let e = patch(&p, &config, None).unwrap_err();
            assert!(e.contains(key), "{e}");
        }
    }

    #[test]
    fn statefulset_pods_get_numbered_tablets() {
        let config = InjectConfig::default();
        let mut p = pod(
            json!({INJECT_LABEL: "db"}),
            Some(json!({"shardcar.io/tablet-uid-base": "100"})),
        );
        p["metadata"]["name"] = json!("mysql-2");
        let ops = patch(&p, &config, None).unwrap().unwrap();
        let env = ops[0]["value"][0]["env"].as_array().unwrap().clone();
        assert!(env.contains(&json!({"name": "SHARDCAR_TABLET_UID", "value": "102"})));
        assert!(env.contains(&json!({"name": "SHARDCAR_POD_NAME",
            "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}})));
        assert!(!env.iter().any(|e| e["name"] == "SHARDCAR_TABLET_TYPE"));
        p["metadata"]["name"] = json!("mysql-0");
        let ops = patch(&p, &config, None).unwrap().unwrap();
        let env = ops[0]["value"][0]["env"].as_array().unwrap().clone();
        assert!(env.contains(&json!({"name": "SHARDCAR_TABLET_TYPE", "value": "primary"})));
        p["metadata"]["name"] = json!("mysql");
        assert!(patch(&p, &config, None)
            .unwrap_err()
            .contains("shardcar.io/tablet-uid-base"));
    }

    #[test]
    fn an_injected_pod_is_left_alone() {
        let mut p = pod(json!({INJECT_LABEL: "app"}), None);
        p["spec"]["initContainers"] = json!([{"name": CONTAINER, "image": "x"}]);
        assert!(patch(&p, &InjectConfig::default(), None).unwrap().is_none());
    }
}
