//! The sidecar-injection admission webhook, end to end: real HTTPS (curl with the test's
//! CA) carrying real AdmissionReview JSON (tests/fixtures/k8s, as the API server sends
//! it for a Deployment's and a StatefulSet's pod); each answer's JSON Patch is applied
//! and the resulting pod validated against the Kubernetes 1.30 OpenAPI schema in strict
//! mode (kubernetes-validate, tests/python/k8s/validate_pod.py).

// Test code: a failed step should stop the test with its message.
#![allow(clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};
use shardcar_control::inject::InjectConfig;
use shardcar_tests::k8s;
use shardcar_tests::workspace_root;

/// A CA and a server certificate for 127.0.0.1 signed by it, as PEM files in `dir`:
/// (ca, cert, key).
fn certificates(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, SanType};
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca = CertificateParams::default();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "shardcar webhook test CA");
    let ca_cert = ca.self_signed(&ca_key).expect("CA certificate");
    let key = KeyPair::generate().expect("server key");
    let mut server = CertificateParams::default();
    server.subject_alt_names = vec![SanType::IpAddress(std::net::Ipv4Addr::LOCALHOST.into())];
    let cert = server
        .signed_by(&key, &ca_cert, &ca_key)
        .expect("server certificate");
    let write = |name: &str, body: String| {
        let p = dir.join(name);
        std::fs::write(&p, body).expect("writing a PEM file");
        p
    };
    (
        write("ca.pem", ca_cert.pem()),
        write("server.pem", cert.pem()),
        write("server.key", key.serialize_pem()),
    )
}

/// The webhook, serving over HTTPS on a loopback port.
struct Webhook {
    port: u16,
    ca: PathBuf,
    dir: tempfile::TempDir,
    _stop: tokio::sync::watch::Sender<bool>,
}

async fn start() -> Webhook {
    let dir = tempfile::tempdir().expect("temp dir");
    let (ca, cert, key) = certificates(dir.path());
    let tls = shardcar_control::webhook::tls_acceptor(&cert, &key).expect("TLS configuration");
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .expect("a port");
    let port = listener.local_addr().expect("address").port();
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let config = InjectConfig {
        image: "registry.example.com/shardcar:0.1.0".into(),
        ..InjectConfig::default()
    };
    tokio::spawn(shardcar_control::webhook::serve(
        listener, tls, config, shutdown,
    ));
    Webhook {
        port,
        ca,
        dir,
        _stop: stop,
    }
}

impl Webhook {
    /// `method` `path` with `body` over HTTPS (curl, verifying the certificate against
    /// the test CA): the status and the body.
    fn call(&self, method: &str, path: &str, body: &[u8]) -> (u16, String) {
        let input = self.dir.path().join("request.json");
        let output = self.dir.path().join("response.body");
        std::fs::write(&input, body).expect("request file");
        let out = Command::new("curl")
            .args(["-sS", "--cacert"])
            .arg(&self.ca)
            .args(["-X", method, "-H", "Content-Type: application/json"])
            .arg("--data-binary")
            .arg(format!("@{}", input.display()))
            .arg("-o")
            .arg(&output)
            .args(["-w", "%{http_code}"])
            .arg(format!("https://127.0.0.1:{}{path}", self.port))
            .output()
            .expect("running curl");
        assert!(
            out.status.success(),
            "curl failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let status = String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("an HTTP status");
        (status, std::fs::read_to_string(&output).unwrap_or_default())
    }

    /// Sends `review` to `/inject{query}`; the AdmissionReview answer.
    fn review(&self, review: &Value, query: &str) -> Value {
        let (status, body) = self.call(
            "POST",
            &format!("/inject{query}"),
            review.to_string().as_bytes(),
        );
        assert_eq!(status, 200, "{body}");
        let answer: Value = serde_json::from_str(&body).expect("an AdmissionReview answer");
        assert_eq!(answer["kind"], "AdmissionReview");
        assert_eq!(answer["apiVersion"], "admission.k8s.io/v1");
        assert_eq!(answer["response"]["uid"], review["request"]["uid"]);
        answer
    }
}

fn fixture(name: &str) -> Value {
    let path = workspace_root().join("tests/fixtures/k8s").join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).expect("fixture")).expect("fixture JSON")
}

/// The env value named `name` of a container.
fn env<'a>(container: &'a Value, name: &str) -> Option<&'a Value> {
    container["env"]
        .as_array()?
        .iter()
        .find(|e| e["name"] == name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_pod_gets_a_valid_app_sidecar_once() {
    let w = start().await;
    let review = fixture("review-deployment-pod.json");
    let answer = w.review(&review, "");
    assert_eq!(answer["response"]["allowed"], true);
    assert_eq!(answer["response"]["patchType"], "JSONPatch");
    let pod = k8s::patched_pod(&review, &answer).expect("a valid pod");
    let sidecar = &pod["spec"]["initContainers"][0];
    assert_eq!(sidecar["name"], "shardcar");
    assert_eq!(sidecar["restartPolicy"], "Always", "a native sidecar");
    assert_eq!(sidecar["image"], "registry.example.com/shardcar:0.1.0");
    assert_eq!(
        sidecar["args"],
        json!(["app", "--config", "/etc/shardcar/config.yaml"])
    );
    assert_eq!(
        env(sidecar, "SHARDCAR_LISTEN").expect("listen")["value"],
        "127.0.0.1:3306"
    );
    assert_eq!(sidecar["readinessProbe"]["httpGet"]["path"], "/ready");
    assert_eq!(sidecar["securityContext"]["runAsNonRoot"], true);
    assert_eq!(sidecar["securityContext"]["readOnlyRootFilesystem"], true);
    let volumes = pod["spec"]["volumes"].as_array().expect("volumes");
    assert!(volumes
        .iter()
        .any(|v| v["configMap"]["name"] == "shardcar-app"));
    assert_eq!(volumes.len(), 3, "the service-account volume stays");
    assert_eq!(
        pod["metadata"]["annotations"]["shardcar.io/injected"],
        "app"
    );
    assert_eq!(
        pod["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"],
        "2026-12-01T10:00:00Z"
    );
    assert_eq!(pod["spec"]["containers"][0]["name"], "web");

    // A second pass over the injected pod patches nothing.
    let mut again = review.clone();
    again["request"]["object"] = pod;
    let answer = w.review(&again, "");
    assert_eq!(answer["response"]["allowed"], true);
    assert!(answer["response"].get("patch").is_none(), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statefulset_pod_gets_a_numbered_db_sidecar() {
    let w = start().await;
    let review = fixture("review-statefulset-pod.json");
    let answer = w.review(&review, "");
    let pod = k8s::patched_pod(&review, &answer).expect("a valid pod");
    let sidecar = &pod["spec"]["initContainers"][0];
    assert_eq!(sidecar["args"][0], "db");
    assert_eq!(
        env(sidecar, "SHARDCAR_TABLET_UID").expect("uid")["value"],
        "102"
    );
    assert_eq!(
        env(sidecar, "SHARDCAR_TABLET_HOSTNAME").expect("hostname")["valueFrom"]["fieldRef"]
            ["fieldPath"],
        "status.podIP"
    );
    assert_eq!(
        env(sidecar, "SHARDCAR_LISTEN").expect("listen")["value"],
        "0.0.0.0:15306"
    );
    assert_eq!(sidecar["resources"]["requests"]["memory"], "128Mi");
    assert_eq!(sidecar["resources"]["limits"]["memory"], "256Mi");
    assert_eq!(pod["spec"]["containers"][0]["name"], "mariadb");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn labels_defaults_and_bad_input() {
    let w = start().await;
    let base = fixture("review-deployment-pod.json");
    let with_label = |value: Option<&str>| {
        let mut r = base.clone();
        let labels = &mut r["request"]["object"]["metadata"]["labels"];
        match value {
            Some(v) => labels["shardcar.io/inject"] = json!(v),
            None => {
                labels
                    .as_object_mut()
                    .expect("labels")
                    .remove("shardcar.io/inject");
            }
        }
        r
    };
    // No label: only a namespace default injects.
    let unlabelled = with_label(None);
    assert!(w.review(&unlabelled, "")["response"].get("patch").is_none());
    let answer = w.review(&unlabelled, "?default=db");
    let pod = k8s::patched_pod(&unlabelled, &answer).expect("a valid pod");
    assert_eq!(pod["spec"]["initContainers"][0]["args"][0], "db");
    // The path form the webhook configuration uses (manifests/base/webhook.yaml).
    let answer = w.review(&unlabelled, "/app");
    let pod = k8s::patched_pod(&unlabelled, &answer).expect("a valid pod");
    assert_eq!(pod["spec"]["initContainers"][0]["args"][0], "app");
    // `none` opts a pod out of the namespace default.
    let opted_out = with_label(Some("none"));
    assert!(w.review(&opted_out, "?default=app")["response"]
        .get("patch")
        .is_none());
    // A bad label or annotation denies the pod, naming it.
    let answer = w.review(&with_label(Some("proxy")), "");
    assert_eq!(answer["response"]["allowed"], false);
    assert!(answer["response"]["status"]["message"]
        .as_str()
        .is_some_and(|m| m.contains("shardcar.io/inject")));
    let mut bad = base.clone();
    bad["request"]["object"]["metadata"]["annotations"]["shardcar.io/memory"] = json!("lots");
    let answer = w.review(&bad, "");
    assert_eq!(answer["response"]["allowed"], false);
    assert!(answer["response"]["status"]["message"]
        .as_str()
        .is_some_and(|m| m.contains("shardcar.io/memory")));
    // Malformed requests get 400; other methods 405.
    assert_eq!(w.call("POST", "/inject", b"{not json").0, 400);
    assert_eq!(
        w.call("POST", "/inject", b"{\"kind\": \"AdmissionReview\"}")
            .0,
        400
    );
    assert_eq!(
        w.call("POST", "/inject?default=proxy", base.to_string().as_bytes())
            .0,
        400
    );
    assert_eq!(w.call("GET", "/inject", b"").0, 405);
    assert_eq!(w.call("GET", "/healthz", b"").0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_validator_rejects_a_broken_pod() {
    // The schema check is real: a field Kubernetes does not know fails it.
    let w = start().await;
    let mut review = fixture("review-deployment-pod.json");
    review["request"]["object"]["spec"]["containers"][0]["sidecarMode"] = json!(true);
    let answer = w.review(&review, "");
    let complaint = k8s::patched_pod(&review, &answer).expect_err("an invalid pod");
    assert!(complaint.contains("sidecarMode"), "{complaint}");
}
