//! Making sure a container's image is present, as the kubelet's image manager does:
//! the pull policy (`Always`, `IfNotPresent`, `Never`, defaulted from the tag), registry
//! credentials from the pod's `imagePullSecrets`, a per pod-and-image back-off after a
//! failed pull (`ImagePullBackOff`), and the `Pulling`/`Pulled`/`Failed`/`BackOff`
//! events with upstream wording.

use std::time::Instant;

use cri::api::{AuthConfig, ImageSpec, PodSandboxConfig};
use k8s_openapi::api::core::v1::{Container, Pod, Secret};
use kube::api::Api;
use serde_json::Value;

use super::events::EventType;
use super::{Shared, StartError, go_duration, grpc_message};

/// The pull policy of a container, defaulted as the API server does: `Always` for
/// `:latest` or untagged images, otherwise `IfNotPresent`.
pub fn pull_policy(container: &Container) -> String {
    if let Some(p) = container.image_pull_policy.as_deref().filter(|p| !p.is_empty()) {
        return p.to_owned();
    }
    let image = container.image.as_deref().unwrap_or_default();
    if image.contains('@') {
        return "IfNotPresent".into();
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.split_once(':') {
        Some((_, "latest")) | None => "Always".into(),
        Some(_) => "IfNotPresent".into(),
    }
}

/// The registry host of an image reference (`docker.io` for Docker Hub names).
pub fn registry_host(image: &str) -> String {
    match image.split_once('/') {
        Some((first, _)) if first.contains('.') || first.contains(':') || first == "localhost" => {
            first.to_owned()
        }
        _ => "docker.io".to_owned(),
    }
}

/// The host a docker config key names (`https://index.docker.io/v1/` is `docker.io`).
fn key_host(key: &str) -> String {
    let without_scheme = key.split_once("://").map(|(_, rest)| rest).unwrap_or(key);
    let host = without_scheme.split('/').next().unwrap_or(without_scheme);
    match host {
        "index.docker.io" | "registry-1.docker.io" => "docker.io".to_owned(),
        h => h.to_owned(),
    }
}

/// Credentials for `image` from docker config JSON (`{"auths": {...}}` or the legacy
/// `.dockercfg` map).
pub fn auth_from_docker_config(config: &Value, image: &str) -> Option<AuthConfig> {
    let auths = config.get("auths").unwrap_or(config).as_object()?;
    let host = registry_host(image);
    let (key, entry) = auths.iter().find(|(k, _)| key_host(k) == host)?;
    let s = |f: &str| entry.get(f).and_then(Value::as_str).unwrap_or_default().to_owned();
    Some(AuthConfig {
        username: s("username"),
        password: s("password"),
        auth: s("auth"),
        server_address: key.clone(),
        identity_token: s("identitytoken"),
        registry_token: s("registrytoken"),
    })
}

/// Looks up the pod's pull secrets; returns credentials for `image` if one matches, and
/// the names of secrets that could not be read.
async fn pull_credentials(shared: &Shared, pod: &Pod, image: &str) -> (Option<AuthConfig>, Vec<String>) {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let api: Api<Secret> = Api::namespaced(shared.client.clone(), &ns);
    let mut missing = Vec::new();
    let refs = pod.spec.as_ref().and_then(|s| s.image_pull_secrets.clone()).unwrap_or_default();
    for r in refs {
        let name = r.name.clone();
        let secret = match api.get_opt(&name).await {
            Ok(Some(s)) => s,
            _ => {
                missing.push(name);
                continue;
            }
        };
        let data = secret.data.unwrap_or_default();
        let raw = data.get(".dockerconfigjson").or_else(|| data.get(".dockercfg"));
        let Some(raw) = raw else { continue };
        let Ok(config) = serde_json::from_slice::<Value>(&raw.0) else { continue };
        if let Some(auth) = auth_from_docker_config(&config, image) {
            return (Some(auth), missing);
        }
    }
    (None, missing)
}

/// Makes sure `container`'s image is present and returns the runtime's image id, or
/// the waiting reason and message the container shows when it is not.
pub async fn ensure_image(
    shared: &Shared,
    pod: &Pod,
    container: &Container,
    sandbox_config: &PodSandboxConfig,
) -> Result<String, StartError> {
    let image = container.image.clone().unwrap_or_default();
    let name = container.name.as_str();
    let spec = ImageSpec { image: image.clone(), user_specified_image: image.clone(), ..Default::default() };
    let present = match shared.images.image_status(spec.clone()).await {
        Ok(p) => p,
        Err(e) => {
            let msg = format!("Failed to inspect image \"{image}\": {}", grpc_message(&e));
            shared.recorder.pod(pod, Some(name), EventType::Warning, "InspectFailed", &msg).await;
            return Err(StartError::new("ImageInspectError", msg));
        }
    };
    let policy = pull_policy(container);
    let must_pull = match policy.as_str() {
        "Always" => true,
        "Never" => false,
        _ => present.is_none(),
    };
    if !must_pull {
        return match present {
            Some(img) => {
                let msg = format!("Container image \"{image}\" already present on machine");
                shared.recorder.pod(pod, Some(name), EventType::Normal, "Pulled", &msg).await;
                Ok(img.id)
            }
            None => {
                let msg = format!("Container image \"{image}\" is not present with pull policy of Never");
                shared.recorder.pod(pod, Some(name), EventType::Warning, "ErrImageNeverPull", &msg).await;
                Err(StartError::new("ErrImageNeverPull", msg))
            }
        };
    }

    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let key = format!("{uid}_{image}");
    let now = shared.clock.now();
    let backing_off = shared.pull_backoff().is_in_backoff_since_update(&key, now);
    if backing_off {
        let msg = format!("Back-off pulling image \"{image}\"");
        shared.recorder.pod(pod, Some(name), EventType::Normal, "BackOff", &msg).await;
        let previous = shared.pull_errors().get(&key).cloned();
        let full = match previous {
            Some(prev) => format!("{msg}: ErrImagePull: {prev}"),
            None => msg,
        };
        return Err(StartError::new("ImagePullBackOff", full));
    }

    let (auth, missing) = pull_credentials(shared, pod, &image).await;
    if !missing.is_empty() {
        let msg = format!(
            "Unable to retrieve some image pull secrets ({}); attempting to pull the image may not succeed.",
            missing.join(", ")
        );
        shared.recorder.pod(pod, None, EventType::Warning, "FailedToRetrieveImagePullSecret", &msg).await;
    }
    let msg = format!("Pulling image \"{image}\"");
    shared.recorder.pod(pod, Some(name), EventType::Normal, "Pulling", &msg).await;
    let started = Instant::now();
    match shared.images.pull_image(spec.clone(), auth, Some(sandbox_config.clone())).await {
        Ok(image_ref) => {
            let took = started.elapsed();
            shared.pull_errors().remove(&key);
            let size = match shared.images.image_status(spec).await {
                Ok(Some(img)) => img.size,
                _ => 0,
            };
            let msg = format!(
                "Successfully pulled image \"{image}\" in {} ({} including waiting). Image size: {size} bytes.",
                go_duration(took),
                go_duration(took)
            );
            shared.recorder.pod(pod, Some(name), EventType::Normal, "Pulled", &msg).await;
            Ok(image_ref)
        }
        Err(e) => {
            let detail = grpc_message(&e);
            let msg = format!("Failed to pull image \"{image}\": {detail}");
            shared.recorder.pod(pod, Some(name), EventType::Warning, "Failed", &msg).await;
            let now = shared.clock.now();
            shared.pull_backoff().next(&key, now, now);
            shared.pull_errors().insert(key, detail.clone());
            Err(StartError::new("ErrImagePull", detail))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn container(image: &str, policy: Option<&str>) -> Container {
        Container {
            name: "c".into(),
            image: Some(image.into()),
            image_pull_policy: policy.map(str::to_owned),
            ..Default::default()
        }
    }

    #[test]
    fn pull_policy_defaults_from_the_tag() {
        let cases = [
            ("busybox", None, "Always"),
            ("busybox:latest", None, "Always"),
            ("busybox:1.36", None, "IfNotPresent"),
            ("127.0.0.1:5000/app", None, "Always"),
            ("127.0.0.1:5000/app:v1", None, "IfNotPresent"),
            ("app@sha256:abc", None, "IfNotPresent"),
            ("busybox", Some("Never"), "Never"),
        ];
        for (image, policy, want) in cases {
            assert_eq!(pull_policy(&container(image, policy)), want, "{image}");
        }
    }

    #[test]
    fn docker_config_credentials_match_the_image_registry() {
        let config = json!({"auths": {
            "https://index.docker.io/v1/": {"username": "hub", "password": "p1"},
            "registry.test:5000": {"auth": "dXNlcjpwYXNz"},
        }});
        assert_eq!(auth_from_docker_config(&config, "library/nginx").unwrap().username, "hub");
        let a = auth_from_docker_config(&config, "registry.test:5000/team/app:1").unwrap();
        assert_eq!((a.auth.as_str(), a.server_address.as_str()), ("dXNlcjpwYXNz", "registry.test:5000"));
        assert!(auth_from_docker_config(&config, "quay.io/x/y").is_none());
    }
}
