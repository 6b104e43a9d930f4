//! The pod's volumes on the node, laid out as the kubelet lays them out
//! (`<root>/pods/<uid>/volumes/kubernetes.io~<plugin>/<name>`): emptyDir (on tmpfs for
//! `medium: Memory`), configMap, secret (on tmpfs), downwardAPI and projected volumes
//! written by an atomic writer (files behind a `..data` symlink swapped in one rename,
//! so readers never see half an update), hostPath with its type checks, and
//! persistentVolumeClaim backed by the local directory recorded in the bound PV (the
//! local-path provisioner's `<data-dir>/storage/pvc-...`), created on first use.
//!
//! A projected service-account token comes from the TokenRequest API
//! (`serviceaccounts/<name>/token`). When the API server does not serve that
//! subresource the token file is left out, the other sources are written, and the agent
//! says so once in its log.

use std::collections::{BTreeMap, HashMap};
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, KeyToPath, PersistentVolume, PersistentVolumeClaim, Pod, Secret, ServiceAccount, Volume,
};
use kube::api::{Api, PostParams};

use super::Shared;
use super::fieldpath::{self, Addresses};

/// Where a volume is on the host, as containers mount it.
#[derive(Clone, Debug, PartialEq)]
pub struct HostVolume {
    pub path: PathBuf,
    /// Mounted read-only whatever the volume mount says (API data volumes).
    pub read_only: bool,
}

/// A volume that could not be set up, and why, for the `FailedMount` event.
#[derive(Clone, Debug, PartialEq)]
pub struct VolumeError {
    pub volume: String,
    pub message: String,
}

impl VolumeError {
    fn new(volume: &str, message: impl Into<String>) -> Self {
        Self { volume: volume.to_owned(), message: message.into() }
    }

    /// The event message the kubelet writes for it.
    pub fn event_message(&self) -> String {
        format!("MountVolume.SetUp failed for volume \"{}\" : {}", self.volume, self.message)
    }
}

/// The directory of a pod on the node.
pub fn pod_dir(root: &Path, uid: &str) -> PathBuf {
    root.join("pods").join(uid)
}

fn plugin_dir(pod_dir: &Path, plugin: &str, name: &str) -> PathBuf {
    pod_dir.join("volumes").join(format!("kubernetes.io~{plugin}")).join(name)
}

/// One file of an API data volume.
#[derive(Clone, Debug, PartialEq)]
pub struct FileEntry {
    pub data: Vec<u8>,
    pub mode: u32,
}

/// A payload: relative path -> file.
pub type Payload = BTreeMap<String, FileEntry>;

fn mode_of(item: Option<i32>, default: Option<i32>) -> u32 {
    item.or(default).unwrap_or(0o644) as u32 & 0o777
}

/// Files for a ConfigMap or Secret: every key, or only `items` (a missing key is an error
/// unless the source is optional).
fn key_payload(
    data: &BTreeMap<String, Vec<u8>>,
    items: Option<&Vec<KeyToPath>>,
    default_mode: Option<i32>,
    optional: bool,
    kind: &str,
) -> Result<Payload, String> {
    let mut out = Payload::new();
    match items {
        Some(items) if !items.is_empty() => {
            for item in items {
                match data.get(&item.key) {
                    Some(v) => {
                        out.insert(
                            item.path.clone(),
                            FileEntry { data: v.clone(), mode: mode_of(item.mode, default_mode) },
                        );
                    }
                    None if optional => {}
                    None => return Err(format!("{kind} references non-existent config key: {}", item.key)),
                }
            }
        }
        _ => {
            for (k, v) in data {
                out.insert(k.clone(), FileEntry { data: v.clone(), mode: mode_of(None, default_mode) });
            }
        }
    }
    Ok(out)
}

fn config_map_data(cm: &ConfigMap) -> BTreeMap<String, Vec<u8>> {
    let mut out: BTreeMap<String, Vec<u8>> =
        cm.data.iter().flatten().map(|(k, v)| (k.clone(), v.clone().into_bytes())).collect();
    for (k, v) in cm.binary_data.iter().flatten() {
        out.insert(k.clone(), v.0.clone());
    }
    out
}

fn secret_data(s: &Secret) -> BTreeMap<String, Vec<u8>> {
    let mut out: BTreeMap<String, Vec<u8>> =
        s.data.iter().flatten().map(|(k, v)| (k.clone(), v.0.clone())).collect();
    for (k, v) in s.string_data.iter().flatten() {
        out.insert(k.clone(), v.clone().into_bytes());
    }
    out
}

async fn get_config_map(shared: &Shared, ns: &str, name: &str) -> Result<Option<ConfigMap>, String> {
    let api: Api<ConfigMap> = Api::namespaced(shared.client.clone(), ns);
    api.get_opt(name).await.map_err(|e| format!("couldn't get configMap {ns}/{name}: {e}"))
}

async fn get_secret(shared: &Shared, ns: &str, name: &str) -> Result<Option<Secret>, String> {
    let api: Api<Secret> = Api::namespaced(shared.client.clone(), ns);
    api.get_opt(name).await.map_err(|e| format!("couldn't get secret {ns}/{name}: {e}"))
}

async fn config_map_payload(
    shared: &Shared,
    ns: &str,
    name: &str,
    items: Option<&Vec<KeyToPath>>,
    default_mode: Option<i32>,
    optional: bool,
) -> Result<Payload, String> {
    match get_config_map(shared, ns, name).await? {
        Some(cm) => key_payload(&config_map_data(&cm), items, default_mode, optional, "configmap"),
        None if optional => Ok(Payload::new()),
        None => Err(format!("configmap \"{name}\" not found")),
    }
}

async fn secret_payload(
    shared: &Shared,
    ns: &str,
    name: &str,
    items: Option<&Vec<KeyToPath>>,
    default_mode: Option<i32>,
    optional: bool,
) -> Result<Payload, String> {
    match get_secret(shared, ns, name).await? {
        Some(s) => key_payload(&secret_data(&s), items, default_mode, optional, "secret"),
        None if optional => Ok(Payload::new()),
        None => Err(format!("secret \"{name}\" not found")),
    }
}

/// Files of a downwardAPI volume (or projection).
pub fn downward_payload(
    pod: &Pod,
    items: &[k8s_openapi::api::core::v1::DownwardAPIVolumeFile],
    default_mode: Option<i32>,
    addresses: &Addresses,
    allocatable: &fieldpath::Allocatable,
) -> Result<Payload, String> {
    let mut out = Payload::new();
    for item in items {
        let value = if let Some(f) = &item.field_ref {
            fieldpath::pod_field(pod, &f.field_path, addresses)?
        } else if let Some(r) = &item.resource_field_ref {
            let name = r.container_name.clone().unwrap_or_default();
            let container = fieldpath::find_container(pod, &name)
                .ok_or_else(|| format!("container {name} not found in pod"))?;
            fieldpath::container_resource(container, &r.resource, r.divisor.as_ref(), allocatable)?
        } else {
            continue;
        };
        out.insert(
            item.path.clone(),
            FileEntry { data: value.into_bytes(), mode: mode_of(item.mode, default_mode) },
        );
    }
    Ok(out)
}

/// Whether an API error means the server does not serve the path at all.
fn not_served(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404 && s.message == "the server could not find the requested resource")
}

/// A token for the pod's service account from the TokenRequest API, bound to the pod;
/// `Ok(None)` when the API server does not serve TokenRequest.
async fn service_account_token(
    shared: &Shared,
    pod: &Pod,
    audience: Option<&str>,
    expiration: Option<i64>,
) -> Result<Option<String>, String> {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let sa =
        pod.spec.as_ref().and_then(|s| s.service_account_name.clone()).unwrap_or_else(|| "default".into());
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let key = format!("{ns}/{sa}/{}/{uid}", audience.unwrap_or(""));
    let now = shared.clock.now();
    if let Some((token, refresh_at)) = shared.tokens().get(&key).cloned()
        && now < refresh_at
    {
        return Ok(Some(token));
    }
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: audience.map(|a| vec![a.to_owned()]).unwrap_or_default(),
            expiration_seconds: Some(expiration.unwrap_or(3600)),
            bound_object_ref: Some(BoundObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: pod.metadata.name.clone(),
                uid: pod.metadata.uid.clone(),
            }),
        },
        ..Default::default()
    };
    let api: Api<ServiceAccount> = Api::namespaced(shared.client.clone(), &ns);
    match api
        .create_subresource::<TokenRequest, TokenRequest>("token", &sa, &PostParams::default(), &request)
        .await
    {
        Ok(tr) => {
            let Some(status) = tr.status else {
                return Err(format!("failed to fetch token: the TokenRequest for {ns}/{sa} has no status"));
            };
            let ttl = status.expiration_timestamp.0.duration_since(now);
            let refresh_at = now + ttl.checked_mul(4).map(|d| d / 5).unwrap_or_default();
            shared.tokens().insert(key, (status.token.clone(), refresh_at));
            Ok(Some(status.token))
        }
        Err(e) if not_served(&e) => {
            if !shared.warned_token_request.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    "the API server does not serve serviceaccounts/token (TokenRequest): projected \
                     service-account token files are left out of pod volumes"
                );
            }
            Ok(None)
        }
        Err(e) => Err(format!("failed to fetch token: {e}")),
    }
}

/// The files of a projected volume.
async fn projected_payload(
    shared: &Shared,
    pod: &Pod,
    source: &k8s_openapi::api::core::v1::ProjectedVolumeSource,
    addresses: &Addresses,
) -> Result<Payload, String> {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let default_mode = source.default_mode;
    let mut out = Payload::new();
    for s in source.sources.iter().flatten() {
        if let Some(cm) = &s.config_map {
            let optional = cm.optional.unwrap_or(false);
            out.extend(
                config_map_payload(shared, &ns, &cm.name, cm.items.as_ref(), default_mode, optional).await?,
            );
        }
        if let Some(sec) = &s.secret {
            let optional = sec.optional.unwrap_or(false);
            out.extend(
                secret_payload(shared, &ns, &sec.name, sec.items.as_ref(), default_mode, optional).await?,
            );
        }
        if let Some(d) = &s.downward_api {
            let items = d.items.clone().unwrap_or_default();
            out.extend(downward_payload(pod, &items, default_mode, addresses, &shared.allocatable)?);
        }
        if let Some(t) = &s.service_account_token
            && let Some(token) =
                service_account_token(shared, pod, t.audience.as_deref(), t.expiration_seconds).await?
        {
            out.insert(
                t.path.clone(),
                FileEntry { data: token.into_bytes(), mode: mode_of(None, default_mode) },
            );
        }
        if s.cluster_trust_bundle.is_some() {
            return Err("clusterTrustBundle projections are not supported by this node agent".into());
        }
    }
    Ok(out)
}

/// Sets up every volume of the pod (idempotent: API data volumes are rewritten only
/// when their content changed) and returns where each one is.
pub async fn setup(
    shared: &Shared,
    pod: &Pod,
    addresses: &Addresses,
) -> Result<HashMap<String, HostVolume>, VolumeError> {
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let dir = pod_dir(&shared.config.root_dir, &uid);
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let fs_group = pod.spec.as_ref().and_then(|s| s.security_context.as_ref()).and_then(|s| s.fs_group);
    let mut out = HashMap::new();
    for v in pod.spec.as_ref().and_then(|s| s.volumes.clone()).unwrap_or_default() {
        let host = setup_one(shared, pod, &dir, &ns, &v, addresses, fs_group)
            .await
            .map_err(|m| VolumeError::new(&v.name, m))?;
        out.insert(v.name.clone(), host);
    }
    Ok(out)
}

async fn setup_one(
    shared: &Shared,
    pod: &Pod,
    dir: &Path,
    ns: &str,
    v: &Volume,
    addresses: &Addresses,
    fs_group: Option<i64>,
) -> Result<HostVolume, String> {
    let name = v.name.as_str();
    if let Some(e) = &v.empty_dir {
        let path = plugin_dir(dir, "empty-dir", name);
        let memory = e.medium.as_deref() == Some("Memory");
        let size = e.size_limit.as_ref().and_then(|q| fieldpath::parse_quantity(&q.0)).map(|b| b as u64);
        let p = path.clone();
        blocking(move || {
            std::fs::create_dir_all(&p)?;
            if memory && !is_mount_point(&p)? {
                mount_tmpfs(&p, size)?;
            }
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o777))?;
            if let Some(g) = fs_group {
                set_group(&p, g, true)?;
            }
            Ok(())
        })
        .await?;
        return Ok(HostVolume { path, read_only: false });
    }
    if let Some(h) = &v.host_path {
        let path = PathBuf::from(&h.path);
        let kind = h.type_.clone().unwrap_or_default();
        let p = path.clone();
        blocking(move || check_host_path(&p, &kind)).await?;
        return Ok(HostVolume { path, read_only: false });
    }
    if let Some(c) = &v.config_map {
        let payload = config_map_payload(
            shared,
            ns,
            &c.name,
            c.items.as_ref(),
            c.default_mode,
            c.optional.unwrap_or(false),
        )
        .await?;
        let path = plugin_dir(dir, "configmap", name);
        write_volume(&path, payload, fs_group, false).await?;
        return Ok(HostVolume { path, read_only: true });
    }
    if let Some(s) = &v.secret {
        let secret_name = s.secret_name.clone().unwrap_or_default();
        let payload = secret_payload(
            shared,
            ns,
            &secret_name,
            s.items.as_ref(),
            s.default_mode,
            s.optional.unwrap_or(false),
        )
        .await?;
        let path = plugin_dir(dir, "secret", name);
        write_volume(&path, payload, fs_group, true).await?;
        return Ok(HostVolume { path, read_only: true });
    }
    if let Some(d) = &v.downward_api {
        let items = d.items.clone().unwrap_or_default();
        let payload = downward_payload(pod, &items, d.default_mode, addresses, &shared.allocatable)?;
        let path = plugin_dir(dir, "downward-api", name);
        write_volume(&path, payload, fs_group, false).await?;
        return Ok(HostVolume { path, read_only: true });
    }
    if let Some(p) = &v.projected {
        let payload = projected_payload(shared, pod, p, addresses).await?;
        let path = plugin_dir(dir, "projected", name);
        write_volume(&path, payload, fs_group, true).await?;
        return Ok(HostVolume { path, read_only: true });
    }
    if let Some(c) = &v.persistent_volume_claim {
        let claims: Api<PersistentVolumeClaim> = Api::namespaced(shared.client.clone(), ns);
        let claim = claims
            .get_opt(&c.claim_name)
            .await
            .map_err(|e| format!("error processing PVC {ns}/{}: {e}", c.claim_name))?
            .ok_or_else(|| format!("persistentvolumeclaim \"{}\" not found", c.claim_name))?;
        let phase = claim.status.as_ref().and_then(|s| s.phase.clone()).unwrap_or_default();
        let pv_name = claim.spec.as_ref().and_then(|s| s.volume_name.clone()).unwrap_or_default();
        if phase != "Bound" || pv_name.is_empty() {
            return Err(format!("error processing PVC {ns}/{}: PVC is not bound", c.claim_name));
        }
        let pvs: Api<PersistentVolume> = Api::all(shared.client.clone());
        let pv = pvs
            .get_opt(&pv_name)
            .await
            .map_err(|e| format!("error processing PVC {ns}/{}: {e}", c.claim_name))?
            .ok_or_else(|| format!("persistentvolume \"{pv_name}\" not found"))?;
        let spec = pv.spec.unwrap_or_default();
        let local = spec
            .local
            .as_ref()
            .map(|l| l.path.clone())
            .or_else(|| spec.host_path.as_ref().map(|h| h.path.clone()));
        let Some(local) = local else {
            return Err(format!(
                "persistentvolume \"{pv_name}\" is neither local nor hostPath, the only kinds this node agent mounts"
            ));
        };
        let path = PathBuf::from(local);
        let p = path.clone();
        blocking(move || {
            if !p.exists() {
                std::fs::create_dir_all(&p)?;
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o777))?;
            }
            Ok(())
        })
        .await?;
        return Ok(HostVolume { path, read_only: c.read_only.unwrap_or(false) });
    }
    Err("this volume type is not supported by this node agent (supported: emptyDir, hostPath, configMap, secret, downwardAPI, projected, persistentVolumeClaim)".into())
}

async fn blocking(f: impl FnOnce() -> std::io::Result<()> + Send + 'static) -> Result<(), String> {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(e) => Err(e.to_string()),
    }
}

async fn write_volume(
    path: &Path,
    payload: Payload,
    fs_group: Option<i64>,
    memory: bool,
) -> Result<(), String> {
    let p = path.to_owned();
    match tokio::task::spawn_blocking(move || {
        std::fs::create_dir_all(&p)?;
        if memory && !is_mount_point(&p)? {
            // Secrets never touch the disk when tmpfs is available; without the
            // privilege to mount, they are written to the directory as is.
            if let Err(error) = mount_tmpfs(&p, None) {
                tracing::debug!(path = %p.display(), %error, "cannot mount tmpfs for a secret volume");
            }
        }
        write_payload(&p, &payload, fs_group)
    })
    .await
    {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(format!("failed to write volume files: {e}")),
        Err(e) => Err(e.to_string()),
    }
}

/// The hostPath `type` checks, creating what `DirectoryOrCreate`/`FileOrCreate` ask for.
pub fn check_host_path(path: &Path, kind: &str) -> std::io::Result<()> {
    use std::os::unix::fs::FileTypeExt;
    let fail = |what: &str| {
        std::io::Error::other(format!("hostPath type check failed: {} is not a {what}", path.display()))
    };
    let meta = std::fs::metadata(path);
    match kind {
        "" => Ok(()),
        "DirectoryOrCreate" => {
            if meta.is_err() {
                std::fs::create_dir_all(path)?;
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))?;
                return Ok(());
            }
            if meta?.is_dir() { Ok(()) } else { Err(fail("directory")) }
        }
        "Directory" => match meta {
            Ok(m) if m.is_dir() => Ok(()),
            _ => Err(fail("directory")),
        },
        "FileOrCreate" => {
            if meta.is_err() {
                std::fs::OpenOptions::new().create(true).append(true).open(path)?;
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644))?;
                return Ok(());
            }
            if meta?.is_file() { Ok(()) } else { Err(fail("file")) }
        }
        "File" => match meta {
            Ok(m) if m.is_file() => Ok(()),
            _ => Err(fail("file")),
        },
        "Socket" => match meta {
            Ok(m) if m.file_type().is_socket() => Ok(()),
            _ => Err(fail("socket file")),
        },
        "CharDevice" => match meta {
            Ok(m) if m.file_type().is_char_device() => Ok(()),
            _ => Err(fail("character device")),
        },
        "BlockDevice" => match meta {
            Ok(m) if m.file_type().is_block_device() => Ok(()),
            _ => Err(fail("block device")),
        },
        other => Err(std::io::Error::other(format!("invalid HostPathType {other:?}"))),
    }
}

/// Whether `path` is the root of a mount.
fn is_mount_point(path: &Path) -> std::io::Result<bool> {
    let here = std::fs::metadata(path)?;
    let parent = path.parent().map(std::fs::metadata).transpose()?;
    Ok(parent.is_none_or(|p| p.dev() != here.dev()))
}

fn c_path(path: &Path) -> std::io::Result<CString> {
    CString::new(path.as_os_str().as_bytes()).map_err(std::io::Error::other)
}

/// Mounts a tmpfs at `path` (of `size` bytes when given).
fn mount_tmpfs(path: &Path, size: Option<u64>) -> std::io::Result<()> {
    let target = c_path(path)?;
    let source = CString::new("tmpfs").map_err(std::io::Error::other)?;
    let data = match size {
        Some(s) => format!("mode=0777,size={s}"),
        None => "mode=0777".to_owned(),
    };
    let data = CString::new(data).map_err(std::io::Error::other)?;
    // SAFETY: every pointer is a valid NUL-terminated string that outlives the call.
    let rc = unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            source.as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV,
            data.as_ptr().cast(),
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Gives `path` (and, for directories, what is in them) to group `gid`, group-readable
/// and writable (directories setgid), as the kubelet applies `fsGroup`.
fn set_group(path: &Path, gid: i64, writable: bool) -> std::io::Result<()> {
    let meta = std::fs::symlink_metadata(path)?;
    if meta.file_type().is_symlink() {
        return Ok(());
    }
    let c = c_path(path)?;
    // SAFETY: `c` is a valid path string; uid -1 keeps the owner.
    if unsafe { libc::lchown(c.as_ptr(), u32::MAX, gid as u32) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut mode = meta.permissions().mode() & 0o7777;
    mode |= 0o040;
    if writable {
        mode |= 0o020;
    }
    if meta.is_dir() {
        mode |= 0o2010;
        for entry in std::fs::read_dir(path)? {
            set_group(&entry?.path(), gid, writable)?;
        }
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

const DATA_LINK: &str = "..data";

fn valid_payload_path(p: &str) -> bool {
    !p.is_empty()
        && !Path::new(p).is_absolute()
        && !p.split('/').any(|c| c == ".." || c.is_empty())
        && !p.starts_with("..")
}

fn current_payload(dir: &Path) -> Option<Payload> {
    let data = dir.join(DATA_LINK);
    std::fs::symlink_metadata(&data).ok()?;
    let mut out = Payload::new();
    fn walk(base: &Path, rel: &str, out: &mut Payload) -> std::io::Result<()> {
        for entry in std::fs::read_dir(base.join(rel))? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = if rel.is_empty() { name } else { format!("{rel}/{name}") };
            let meta = entry.metadata()?;
            if meta.is_dir() {
                walk(base, &path, out)?;
            } else {
                let data = std::fs::read(entry.path())?;
                out.insert(path, FileEntry { data, mode: meta.permissions().mode() & 0o777 });
            }
        }
        Ok(())
    }
    walk(&data, "", &mut out).ok()?;
    Some(out)
}

/// Writes `payload` into `dir` atomically: files go to a fresh `..<timestamp>`
/// directory, `..data` is repointed at it in one rename, each top-level name is a
/// symlink through `..data`, and what the previous version had and this one does not is
/// removed. Returns whether anything changed.
pub fn write_payload(dir: &Path, payload: &Payload, fs_group: Option<i64>) -> std::io::Result<bool> {
    for path in payload.keys() {
        if !valid_payload_path(path) {
            return Err(std::io::Error::other(format!("invalid path {path:?} in volume payload")));
        }
    }
    let old = current_payload(dir);
    if old.as_ref() == Some(payload) {
        return Ok(false);
    }
    let now = jiff::Timestamp::now();
    let stamp =
        format!("..{}.{:09}", now.strftime("%Y_%m_%d_%H_%M_%S"), rand::random::<u32>() % 1_000_000_000);
    let ts_dir = dir.join(&stamp);
    std::fs::create_dir(&ts_dir)?;
    std::fs::set_permissions(&ts_dir, std::fs::Permissions::from_mode(0o755))?;
    for (rel, file) in payload {
        let target = ts_dir.join(rel);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&target, &file.data)?;
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(file.mode))?;
    }
    if let Some(g) = fs_group {
        set_group(&ts_dir, g, false)?;
    }
    let old_target = std::fs::read_link(dir.join(DATA_LINK)).ok();
    let tmp_link = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp_link);
    std::os::unix::fs::symlink(&stamp, &tmp_link)?;
    std::fs::rename(&tmp_link, dir.join(DATA_LINK))?;
    let tops: std::collections::BTreeSet<&str> =
        payload.keys().map(|p| p.split('/').next().unwrap_or(p)).collect();
    for top in &tops {
        let link = dir.join(top);
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(Path::new(DATA_LINK).join(top), &link)?;
        }
    }
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("..") {
            continue;
        }
        if !tops.contains(name.as_str()) && entry.file_type()?.is_symlink() {
            std::fs::remove_file(entry.path())?;
        }
    }
    if let Some(old) = old_target {
        let old_dir = dir.join(old);
        if old_dir != ts_dir {
            let _ = std::fs::remove_dir_all(old_dir);
        }
    }
    Ok(true)
}

/// Unmounts whatever is mounted under the pod's directory (tmpfs volumes), deepest
/// first, then removes the directory. Paths outside it (hostPath, local PVs) are never
/// touched.
pub fn teardown(dir: &Path) -> std::io::Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    let mut mounts: Vec<PathBuf> = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(unescape_mount_path)
        .filter(|p| p.starts_with(dir))
        .collect();
    mounts.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
    for m in mounts {
        let c = c_path(&m)?;
        // SAFETY: `c` is a valid path string.
        if unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) } != 0 {
            let e = std::io::Error::last_os_error();
            tracing::warn!(path = %m.display(), error = %e, "unmounting a pod volume failed");
        }
    }
    std::fs::remove_dir_all(dir)
}

/// Undoes mountinfo's octal escapes (`\040` for a space).
fn unescape_mount_path(s: &str) -> PathBuf {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..i + 4].iter().all(|b| (b'0'..=b'7').contains(b))
        {
            let v = (bytes[i + 1] - b'0') * 64 + (bytes[i + 2] - b'0') * 8 + (bytes[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    PathBuf::from(std::ffi::OsStr::from_bytes(&out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(s: &str) -> FileEntry {
        FileEntry { data: s.as_bytes().to_vec(), mode: 0o644 }
    }

    #[test]
    fn the_atomic_writer_swaps_versions_behind_the_data_link() {
        let dir = tempfile::tempdir().unwrap();
        let mut payload = Payload::new();
        payload.insert("a".into(), entry("1"));
        payload.insert("sub/b".into(), FileEntry { data: b"2".to_vec(), mode: 0o400 });
        assert!(write_payload(dir.path(), &payload, None).unwrap());
        assert_eq!(std::fs::read_to_string(dir.path().join("a")).unwrap(), "1");
        assert_eq!(std::fs::read_to_string(dir.path().join("sub/b")).unwrap(), "2");
        let mode = std::fs::metadata(dir.path().join("sub/b")).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o400);
        assert!(std::fs::symlink_metadata(dir.path().join("a")).unwrap().file_type().is_symlink());
        // The same payload again changes nothing.
        assert!(!write_payload(dir.path(), &payload, None).unwrap());
        // A new version replaces the old one, and dropped keys disappear.
        let mut next = Payload::new();
        next.insert("a".into(), entry("3"));
        assert!(write_payload(dir.path(), &next, None).unwrap());
        assert_eq!(std::fs::read_to_string(dir.path().join("a")).unwrap(), "3");
        assert!(std::fs::symlink_metadata(dir.path().join("sub")).is_err());
        let versions = std::fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| {
                let n = e.as_ref().unwrap().file_name().to_string_lossy().into_owned();
                n.starts_with("..2")
            })
            .count();
        assert_eq!(versions, 1);
        assert!(write_payload(dir.path(), &[("../x".to_string(), entry(""))].into(), None).is_err());
    }

    #[test]
    fn config_map_items_pick_keys_and_missing_ones_fail_unless_optional() {
        let data: BTreeMap<String, Vec<u8>> =
            [("k1".to_string(), b"v1".to_vec()), ("k2".to_string(), b"v2".to_vec())].into();
        let all = key_payload(&data, None, Some(0o600), false, "configmap").unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all["k1"].mode, 0o600);
        let items = vec![KeyToPath { key: "k2".into(), path: "dir/two".into(), mode: Some(0o444) }];
        let some = key_payload(&data, Some(&items), None, false, "configmap").unwrap();
        assert_eq!(some.keys().collect::<Vec<_>>(), ["dir/two"]);
        assert_eq!(some["dir/two"].mode, 0o444);
        let missing = vec![KeyToPath { key: "nope".into(), path: "x".into(), mode: None }];
        assert_eq!(
            key_payload(&data, Some(&missing), None, false, "configmap").unwrap_err(),
            "configmap references non-existent config key: nope"
        );
        assert!(key_payload(&data, Some(&missing), None, true, "configmap").unwrap().is_empty());
    }

    #[test]
    fn host_path_types_are_checked_and_created() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("made");
        check_host_path(&d, "DirectoryOrCreate").unwrap();
        assert!(d.is_dir());
        check_host_path(&d, "Directory").unwrap();
        let f = dir.path().join("file");
        check_host_path(&f, "FileOrCreate").unwrap();
        assert!(f.is_file());
        let err = check_host_path(&f, "Directory").unwrap_err().to_string();
        assert_eq!(err, format!("hostPath type check failed: {} is not a directory", f.display()));
        assert!(check_host_path(&dir.path().join("absent"), "File").is_err());
        check_host_path(&dir.path().join("absent"), "").unwrap();
    }

    #[test]
    fn teardown_removes_the_pod_directory_but_not_what_it_points_at() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("keep"), "x").unwrap();
        let pod = dir.path().join("pods/u1");
        std::fs::create_dir_all(pod.join("volumes")).unwrap();
        std::os::unix::fs::symlink(&outside, pod.join("volumes/link")).unwrap();
        teardown(&pod).unwrap();
        assert!(!pod.exists());
        assert!(outside.join("keep").exists());
        assert_eq!(unescape_mount_path("/a\\040b"), PathBuf::from("/a b"));
    }
}
