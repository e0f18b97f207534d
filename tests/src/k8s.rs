//! Kubernetes schema checks for the tests: objects validated against the OpenAPI schema
//! of Kubernetes 1.30 in strict mode by `kubernetes-validate` (the venv's Python,
//! tests/python/k8s).

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

use crate::{venv_python, workspace_root};

/// The Kubernetes version the manifests and injected pods are checked against.
pub const VERSION: &str = "1.30";

/// Validates `objects`; the validator's report ("N valid"), or its complaint.
pub fn validate(objects: &[Value]) -> Result<String, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let files = write_objects(dir.path(), objects)?;
    run("validate.py", &[VERSION.into()], &files)
}

/// Writes each object to `dir` as `<i>.json`; the files.
fn write_objects(dir: &std::path::Path, objects: &[Value]) -> Result<Vec<PathBuf>, String> {
    let mut files = Vec::new();
    for (i, o) in objects.iter().enumerate() {
        let p = dir.join(format!("{i}.json"));
        std::fs::write(&p, o.to_string()).map_err(|e| e.to_string())?;
        files.push(p);
    }
    Ok(files)
}

/// Validates custom resources against the schemas of `crds` (CustomResourceDefinition
/// objects), strictly: "N valid", or the validator's complaints.
pub fn validate_custom(crds: &[Value], objects: &[Value]) -> Result<String, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let crd_file = dir.path().join("crds.json");
    std::fs::write(&crd_file, Value::Array(crds.to_vec()).to_string())
        .map_err(|e| e.to_string())?;
    let mut files = vec![crd_file];
    files.extend(write_objects(dir.path(), objects)?);
    run("validate_cr.py", &[], &files)
}

/// Applies a webhook's AdmissionReview `answer` to the pod of `review` and validates the
/// result; the patched pod, or the validator's complaint.
pub fn patched_pod(review: &Value, answer: &Value) -> Result<Value, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let (request, response) = (
        dir.path().join("review.json"),
        dir.path().join("answer.json"),
    );
    std::fs::write(&request, review.to_string()).map_err(|e| e.to_string())?;
    std::fs::write(&response, answer.to_string()).map_err(|e| e.to_string())?;
    let pod = run("validate_pod.py", &[], &[request, response, VERSION.into()])?;
    serde_json::from_str(&pod).map_err(|e| format!("the patched pod: {e}"))
}

/// Runs tests/python/k8s/`script` with `args` then `files`; its stdout on success.
fn run(script: &str, args: &[String], files: &[PathBuf]) -> Result<String, String> {
    let out = Command::new(venv_python())
        .arg(workspace_root().join("tests/python/k8s").join(script))
        .args(args)
        .args(files)
        .output()
        .map_err(|e| format!("running {script}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}
