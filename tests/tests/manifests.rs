//! The Kubernetes manifests (manifests/): every object is valid against the Kubernetes
//! 1.30 OpenAPI schema in strict mode (kubernetes-validate); the example ConfigMaps'
//! sidecar configurations pass `shardcar check-config` with the environment the webhook
//! injects; the example pods, run through the injection webhook's logic, are still valid.

// Test code: a failed step should stop the test with its message.
#![allow(clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};
use shardcar_control::inject::{self, InjectConfig};
use shardcar_tests::k8s::{self, validate};
use shardcar_tests::{shardcar_binary, workspace_root};

/// Every object of every YAML file under manifests/, with its file.
fn objects() -> Vec<(PathBuf, Value)> {
    let mut files = Vec::new();
    let mut dirs = vec![workspace_root().join("manifests")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("manifests dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "yaml")
                && path.file_name().is_some_and(|n| n != "kustomization.yaml")
            {
                files.push(path);
            }
        }
    }
    files.sort();
    let mut objects = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("manifest");
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let value: Value = serde::Deserialize::deserialize(doc)
                .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            if !value.is_null() {
                objects.push((file.clone(), value));
            }
        }
    }
    objects
}

/// Whether `object` is a Kubernetes object kubernetes-validate knows the schema of:
/// not Istio's (checked by `wasm_manifests_configure_the_real_module`) and not an Envoy
/// bootstrap.
fn kubernetes(object: &Value) -> bool {
    object["apiVersion"]
        .as_str()
        .is_some_and(|v| !v.contains("istio.io/"))
}

/// Whether `object` is one of our custom resources (validated against our CRDs).
fn custom(object: &Value) -> bool {
    object["apiVersion"]
        .as_str()
        .is_some_and(|v| v.starts_with("shardcar.io/"))
}

#[test]
fn every_manifest_is_valid_kubernetes() {
    let objects: Vec<Value> = objects()
        .into_iter()
        .map(|(_, o)| o)
        .filter(|o| kubernetes(o) && !custom(o))
        .collect();
    let kinds: Vec<&str> = objects.iter().filter_map(|o| o["kind"].as_str()).collect();
    for kind in [
        "Namespace",
        "ServiceAccount",
        "Deployment",
        "PodDisruptionBudget",
        "Service",
        "MutatingWebhookConfiguration",
        "StatefulSet",
        "ConfigMap",
        "CustomResourceDefinition",
        "ClusterRole",
        "ClusterRoleBinding",
    ] {
        assert!(kinds.contains(&kind), "no {kind} among {kinds:?}");
    }
    let report = validate(&objects).unwrap_or_else(|e| panic!("invalid manifests:\n{e}"));
    // `kubectl apply -k manifests/base` finds every file it lists.
    let base = workspace_root().join("manifests/base");
    let kustomization = std::fs::read_to_string(base.join("kustomization.yaml"))
        .expect("manifests/base/kustomization.yaml");
    let kustomization: Value = serde_yaml::from_str(&kustomization).expect("kustomization");
    let resources = kustomization["resources"].as_array().expect("resources");
    assert_eq!(resources.len(), 6);
    for r in resources {
        let file = base.join(r.as_str().expect("a file name"));
        assert!(file.exists(), "{} is missing", file.display());
    }
    assert_eq!(report, format!("{} valid", objects.len()));
    // The check is real: a misspelt field fails it.
    let mut broken = objects
        .iter()
        .find(|o| o["kind"] == "Deployment")
        .expect("a Deployment")
        .clone();
    broken["spec"]["replica"] = json!(2);
    assert!(validate(&[broken]).is_err());
}

#[test]
fn the_crds_are_generated_from_the_rust_types() {
    let path = workspace_root().join("manifests/crds/shardcar.io.yaml");
    let committed = std::fs::read_to_string(&path).expect("manifests/crds/shardcar.io.yaml");
    let generated = shardcar_control::crd::crds_yaml().expect("CRDs");
    assert!(
        committed == generated,
        "{} is stale: run `cargo run -p shardcar-control -- crds > manifests/crds/shardcar.io.yaml`",
        path.display()
    );
    for kind in [
        "Keyspace",
        "QueryPolicy",
        "AccessPolicy",
        "RemoteCluster",
        "Reparent",
    ] {
        assert!(generated.contains(&format!("kind: {kind}\n")), "no {kind}");
    }
}

#[test]
fn example_custom_resources_match_their_crds() {
    let all: Vec<Value> = objects().into_iter().map(|(_, o)| o).collect();
    let crds: Vec<Value> = all
        .iter()
        .filter(|o| o["kind"] == "CustomResourceDefinition")
        .cloned()
        .collect();
    let resources: Vec<Value> = all.iter().filter(|o| custom(o)).cloned().collect();
    assert!(resources.iter().any(|o| o["kind"] == "Keyspace"));
    let report = k8s::validate_custom(&crds, &resources)
        .unwrap_or_else(|e| panic!("invalid custom resources:\n{e}"));
    assert_eq!(report, format!("{} valid", resources.len()));
    // Every status subresource is there, and the check is real.
    for crd in &crds {
        assert!(
            crd["spec"]["versions"][0]["subresources"]["status"].is_object(),
            "{} has no status subresource",
            crd["metadata"]["name"]
        );
    }
    let keyspace = resources
        .iter()
        .find(|o| o["kind"] == "Keyspace")
        .expect("a Keyspace");
    let mut broken = keyspace.clone();
    broken["spec"]["durabilityPolicy"] = json!("fast");
    assert!(k8s::validate_custom(&crds, &[broken]).is_err());
    let mut broken = keyspace.clone();
    broken["spec"]["shard"] = json!(["-80"]);
    assert!(
        k8s::validate_custom(&crds, &[broken]).is_err(),
        "a misspelt field"
    );
}

/// Applies RFC 6902 `add` and `replace` operations (what the overlays use) to `target`.
fn apply_json_patch(target: &mut Value, ops: &Value) {
    for op in ops.as_array().expect("a JSON patch is a list") {
        let path = op["path"].as_str().expect("path");
        let (parent, last) = path.rsplit_once('/').expect("a pointer");
        let parent = target
            .pointer_mut(parent)
            .unwrap_or_else(|| panic!("{path}: no such place in the base"));
        let value = op["value"].clone();
        match (op["op"].as_str(), parent) {
            (Some("add"), Value::Array(items)) if last == "-" => items.push(value),
            (Some("add" | "replace"), Value::Object(fields)) => {
                fields.insert(last.to_string(), value);
            }
            (kind, _) => panic!("{path}: unsupported operation {kind:?}"),
        }
    }
}

#[test]
fn overlays_patch_objects_of_the_base_into_valid_kubernetes() {
    let base: Vec<Value> = objects()
        .into_iter()
        .filter(|(f, _)| f.to_string_lossy().contains("/base/"))
        .map(|(_, o)| o)
        .collect();
    let overlays = workspace_root().join("manifests/overlays");
    let mut checked = Vec::new();
    for entry in std::fs::read_dir(&overlays).expect("manifests/overlays") {
        let dir = entry.expect("entry").path();
        let text = std::fs::read_to_string(dir.join("kustomization.yaml"))
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let kustomization: Value = serde_yaml::from_str(&text).expect("kustomization");
        for r in kustomization["resources"].as_array().expect("resources") {
            let path = dir.join(r.as_str().expect("a path"));
            assert!(
                path.join("kustomization.yaml").is_file(),
                "{}",
                path.display()
            );
        }
        let mut patched = Vec::new();
        for p in kustomization["patches"].as_array().expect("patches") {
            let (kind, name) = (&p["target"]["kind"], &p["target"]["metadata"]["name"]);
            let name = if name.is_null() {
                &p["target"]["name"]
            } else {
                name
            };
            let mut object = base
                .iter()
                .find(|o| &o["kind"] == kind && &o["metadata"]["name"] == name)
                .unwrap_or_else(|| panic!("{}: no {kind} {name} in the base", dir.display()))
                .clone();
            let ops: Value = serde_yaml::from_str(p["patch"].as_str().expect("patch text"))
                .expect("a JSON patch");
            apply_json_patch(&mut object, &ops);
            patched.push(object);
        }
        validate(&patched).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        checked.push((dir, patched));
    }
    assert_eq!(
        checked.len(),
        2,
        "the single-cluster and federation overlays"
    );
    let federated = checked
        .iter()
        .find(|(d, _)| d.ends_with("federation-east"))
        .expect("the federation overlay");
    let args = &federated.1[0]["spec"]["template"]["spec"]["containers"][0]["args"];
    assert!(
        args.as_array().expect("args").iter().any(|a| a
            .as_str()
            .is_some_and(|a| a.starts_with("--remote-cluster=name=west,"))),
        "{args}"
    );
}

/// The secret files a configuration names under /etc/shardcar-secrets, created with
/// placeholder contents in `dir`.
fn fake_secrets(config: &str, dir: &Path) {
    for word in config.split_whitespace() {
        if let Some(name) = word.strip_prefix("/etc/shardcar-secrets/") {
            std::fs::write(dir.join(name), "placeholder-secret\n").expect("secret file");
        }
    }
}

#[test]
fn example_sidecar_configs_pass_check_config() {
    let mut checked = 0;
    for (file, object) in objects() {
        if object["kind"] != "ConfigMap" || !file.to_string_lossy().contains("examples") {
            continue;
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let (files, secrets) = (dir.path().join("files"), dir.path().join("secrets"));
        std::fs::create_dir_all(&files).expect("dir");
        std::fs::create_dir_all(&secrets).expect("dir");
        let data = object["data"].as_object().expect("ConfigMap data");
        let relocate = |text: &str| {
            text.replace("/etc/shardcar-secrets/", &format!("{}/", secrets.display()))
                .replace("/etc/shardcar/", &format!("{}/", files.display()))
        };
        for (key, value) in data {
            let text = value.as_str().expect("text data");
            fake_secrets(text, &secrets);
            std::fs::write(files.join(key), relocate(text)).expect("data file");
        }
        let name = object["metadata"]["name"].as_str().expect("name");
        let role = name.strip_prefix("shardcar-").expect("shardcar-<role>");
        // As the webhook sets them (inject.rs).
        let listen = if role == "db" {
            "0.0.0.0:15306"
        } else {
            "127.0.0.1:3306"
        };
        let out = Command::new(shardcar_binary().expect("the shardcar binary"))
            .args(["check-config", "--config"])
            .arg(files.join("config.yaml"))
            .env("SHARDCAR_LISTEN", listen)
            .env("SHARDCAR_ADMIN_LISTEN", "0.0.0.0:15000")
            .env("SHARDCAR_TABLET_UID", "100")
            .env("SHARDCAR_TABLET_HOSTNAME", "10.0.0.5")
            .output()
            .expect("running shardcar check-config");
        assert!(
            out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "ok",
            "{name} in {}: {}{}",
            file.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        checked += 1;
    }
    assert_eq!(checked, 2, "the app and db examples");
}

#[test]
fn example_pods_are_valid_after_injection() {
    let mut injected = 0;
    for (_, object) in objects() {
        let kind = object["kind"].as_str().unwrap_or("");
        if !matches!(kind, "Deployment" | "StatefulSet")
            || object["spec"]["template"]["metadata"]["labels"]["shardcar.io/inject"].is_null()
        {
            continue;
        }
        // The pod the controller would create from the template.
        let mut metadata = object["spec"]["template"]["metadata"].clone();
        let name = object["metadata"]["name"].as_str().expect("name");
        metadata["name"] = json!(format!("{name}-0"));
        metadata["namespace"] = object["metadata"]["namespace"].clone();
        let pod = json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": metadata,
            "spec": object["spec"]["template"]["spec"],
        });
        let review = json!({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {"uid": format!("uid-{name}"), "object": pod},
        });
        let answer = inject::answer(&review, &InjectConfig::default(), None).expect("an answer");
        assert_eq!(answer["response"]["allowed"], true, "{answer}");
        let patched = k8s::patched_pod(&review, &answer)
            .unwrap_or_else(|e| panic!("{kind}/{name} after injection: {e}"));
        let sidecar = &patched["spec"]["initContainers"][0];
        assert_eq!(sidecar["name"], "shardcar");
        let mounts = sidecar["volumeMounts"].as_array().expect("mounts");
        assert!(
            mounts
                .iter()
                .any(|m| m["mountPath"] == "/etc/shardcar-secrets"),
            "{kind}/{name}: the secret is not mounted"
        );
        injected += 1;
    }
    assert_eq!(injected, 2, "the app Deployment and the db StatefulSet");
}

/// The Istio WasmPlugin, the EnvoyFilter and the standalone Envoy bootstrap
/// (manifests/wasm/): their fields are ones Istio's and Envoy's APIs define, the filter
/// sits before tcp_proxy on 3306, and the plugin configuration each carries is accepted
/// by the real module in the test host.
#[test]
fn wasm_manifests_configure_the_real_module() {
    use shardcar_tests::wasm_host::{Variant, WasmHost};
    let dir = workspace_root().join("manifests/wasm");
    let load = |file: &str| -> Value {
        let text = std::fs::read_to_string(dir.join(file)).expect("manifest");
        serde_yaml::from_str(&text).expect("yaml")
    };
    let accepts = |what: &str, config: &str| {
        let host = WasmHost::load(Variant::Full, config)
            .unwrap_or_else(|e| panic!("{what}: the module refuses its configuration: {e:#}"));
        assert!(
            host.logs().iter().all(|(level, _)| *level < 4),
            "{what}: {:?}",
            host.logs()
        );
    };

    let plugin = load("wasmplugin.yaml");
    assert_eq!(plugin["apiVersion"], "extensions.istio.io/v1alpha1");
    assert_eq!(plugin["kind"], "WasmPlugin");
    // The fields of Istio's WasmPlugin spec (istio.io/latest/docs/reference/config/proxy_extensions/wasm-plugin).
    const SPEC: &[&str] = &[
        "selector",
        "targetRef",
        "targetRefs",
        "url",
        "sha256",
        "imagePullPolicy",
        "imagePullSecret",
        "pluginConfig",
        "pluginName",
        "phase",
        "priority",
        "vmConfig",
        "match",
        "type",
        "failStrategy",
    ];
    let spec = plugin["spec"].as_object().expect("spec");
    for key in spec.keys() {
        assert!(
            SPEC.contains(&key.as_str()),
            "WasmPlugin spec has no field {key}"
        );
    }
    assert_eq!(spec["type"], "NETWORK");
    assert_eq!(spec["failStrategy"], "FAIL_CLOSE");
    assert!(["UNSPECIFIED_PHASE", "AUTHN", "AUTHZ", "STATS"]
        .contains(&spec["phase"].as_str().unwrap_or("")));
    assert_eq!(spec["match"][0]["mode"], "SERVER");
    assert_eq!(spec["match"][0]["ports"][0]["number"], 3306);
    assert!(spec["url"]
        .as_str()
        .is_some_and(|u| u.starts_with("oci://")));
    accepts("wasmplugin.yaml", &spec["pluginConfig"].to_string());

    let filter = load("envoyfilter.yaml");
    assert_eq!(filter["apiVersion"], "networking.istio.io/v1alpha3");
    assert_eq!(filter["kind"], "EnvoyFilter");
    let patch = &filter["spec"]["configPatches"][0];
    assert_eq!(patch["applyTo"], "NETWORK_FILTER");
    assert_eq!(patch["match"]["context"], "SIDECAR_INBOUND");
    assert_eq!(patch["match"]["listener"]["portNumber"], 3306);
    assert_eq!(
        patch["match"]["listener"]["filterChain"]["filter"]["name"],
        "envoy.filters.network.tcp_proxy"
    );
    assert_eq!(patch["patch"]["operation"], "INSERT_BEFORE");
    let wasm = &patch["patch"]["value"];
    assert_eq!(wasm["name"], "envoy.filters.network.wasm");
    let config = wasm_config(wasm);
    accepts("envoyfilter.yaml", config);

    let bootstrap = load("envoy-bootstrap.yaml");
    let filters = &bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"];
    assert_eq!(filters[0]["name"], "envoy.filters.network.wasm");
    assert_eq!(filters[1]["name"], "envoy.filters.network.tcp_proxy");
    assert_eq!(
        filters[1]["typed_config"]["cluster"],
        bootstrap["static_resources"]["clusters"][0]["name"]
    );
    let module = filters[0]["typed_config"]["config"]["vm_config"]["code"]["local"]["filename"]
        .as_str()
        .expect("module file");
    assert_eq!(module, "target/wasm/shardcar_filter.wasm");
    accepts("envoy-bootstrap.yaml", wasm_config(&filters[0]));
}

/// The JSON configuration of an `envoy.filters.network.wasm` filter.
fn wasm_config(filter: &Value) -> &str {
    let typed = &filter["typed_config"];
    assert_eq!(
        typed["@type"],
        "type.googleapis.com/envoy.extensions.filters.network.wasm.v3.Wasm"
    );
    let config = &typed["config"];
    assert_eq!(config["vm_config"]["runtime"], "envoy.wasm.runtime.v8");
    assert_eq!(config["fail_open"], false);
    assert_eq!(
        config["configuration"]["@type"],
        "type.googleapis.com/google.protobuf.StringValue"
    );
    config["configuration"]["value"]
        .as_str()
        .expect("configuration value")
}
