//! Defaults Kubernetes applies when it decodes built-in objects (its `SetDefaults_*`
//! functions), for the fields users see in `kubectl get -o yaml`.

use k8s_openapi::api::core::v1::{Container, PodSpec, PodTemplateSpec, Probe, ResourceRequirements, Volume};

fn set<T>(slot: &mut Option<T>, v: T) {
    if slot.is_none() {
        *slot = Some(v);
    }
}

/// `imagePullPolicy`: Always for `:latest` or untagged images, else IfNotPresent.
pub fn pull_policy(image: &str) -> &'static str {
    if image.contains('@') {
        return "IfNotPresent";
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.rsplit_once(':') {
        Some((_, "latest")) | None => "Always",
        Some(_) => "IfNotPresent",
    }
}

fn probe(p: &mut Probe) {
    set(&mut p.timeout_seconds, 1);
    set(&mut p.period_seconds, 10);
    set(&mut p.success_threshold, 1);
    set(&mut p.failure_threshold, 3);
    if let Some(h) = p.http_get.as_mut() {
        set(&mut h.scheme, "HTTP".to_string());
        set(&mut h.path, "/".to_string());
    }
}

/// Defaults of one container (app, init or sidecar).
pub fn container(c: &mut Container) {
    if let Some(image) = c.image.as_deref() {
        let p = pull_policy(image);
        set(&mut c.image_pull_policy, p.to_string());
    }
    set(&mut c.termination_message_path, "/dev/termination-log".to_string());
    set(&mut c.termination_message_policy, "File".to_string());
    let r = c.resources.get_or_insert_with(ResourceRequirements::default);
    // Requests default to limits for every resource with a limit and no request.
    if let Some(limits) = r.limits.clone() {
        let req = r.requests.get_or_insert_with(Default::default);
        for (k, v) in limits {
            req.entry(k).or_insert(v);
        }
    }
    for p in c.ports.iter_mut().flatten() {
        set(&mut p.protocol, "TCP".to_string());
    }
    for p in [&mut c.liveness_probe, &mut c.readiness_probe, &mut c.startup_probe].into_iter().flatten() {
        probe(p);
    }
    for e in c.env.iter_mut().flatten() {
        if let Some(fr) = e.value_from.as_mut().and_then(|vf| vf.field_ref.as_mut()) {
            set(&mut fr.api_version, "v1".to_string());
        }
    }
}

fn volume(v: &mut Volume) {
    if let Some(cm) = v.config_map.as_mut() {
        set(&mut cm.default_mode, 0o644);
    }
    if let Some(s) = v.secret.as_mut() {
        set(&mut s.default_mode, 0o644);
    }
    if let Some(d) = v.downward_api.as_mut() {
        set(&mut d.default_mode, 0o644);
        for item in d.items.iter_mut().flatten() {
            if let Some(fr) = item.field_ref.as_mut() {
                set(&mut fr.api_version, "v1".to_string());
            }
        }
    }
    if let Some(p) = v.projected.as_mut() {
        set(&mut p.default_mode, 0o644);
    }
    if let Some(h) = v.host_path.as_mut() {
        set(&mut h.type_, String::new());
    }
    if let Some(pvc) = v.persistent_volume_claim.as_mut() {
        let _ = pvc;
    }
}

/// Defaults of a pod spec (in pods and in every pod template).
pub fn pod_spec(s: &mut PodSpec) {
    set(&mut s.dns_policy, "ClusterFirst".to_string());
    set(&mut s.restart_policy, "Always".to_string());
    set(&mut s.termination_grace_period_seconds, 30);
    set(&mut s.security_context, Default::default());
    set(&mut s.scheduler_name, "default-scheduler".to_string());
    set(&mut s.enable_service_links, true);
    let host_network = s.host_network.unwrap_or(false);
    for c in s.containers.iter_mut().chain(s.init_containers.iter_mut().flatten()) {
        container(c);
        if host_network {
            for p in c.ports.iter_mut().flatten() {
                set(&mut p.host_port, p.container_port);
            }
        }
    }
    for v in s.volumes.iter_mut().flatten() {
        volume(v);
    }
    // `serviceAccount` is the deprecated twin of `serviceAccountName`.
    if s.service_account_name.is_none()
        && let Some(sa) = s.service_account.clone().filter(|s| !s.is_empty())
    {
        s.service_account_name = Some(sa);
    }
}

pub fn pod_template(t: &mut PodTemplateSpec) {
    if let Some(s) = t.spec.as_mut() {
        pod_spec(s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_pull_policy_follows_the_tag() {
        assert_eq!(pull_policy("nginx"), "Always");
        assert_eq!(pull_policy("nginx:latest"), "Always");
        assert_eq!(pull_policy("nginx:1.25"), "IfNotPresent");
        assert_eq!(pull_policy("localhost:5000/busybox"), "Always");
        assert_eq!(pull_policy("localhost:5000/busybox:1"), "IfNotPresent");
        assert_eq!(pull_policy("busybox@sha256:abc"), "IfNotPresent");
    }
}
