"""The API through the official Python client (kubernetes on PyPI): typed CRUD, patches,
label selectors, watch, errors as ApiException with Kubernetes' codes, deletion with a
propagation policy, and custom resources through CustomObjectsApi. Usage: api.py."""

import json
import time

from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

config.load_kube_config()
core = client.CoreV1Api()
apps = client.AppsV1Api()
ext = client.ApiextensionsV1Api()
custom = client.CustomObjectsApi()


def expect_error(code, fn, *args, **kwargs):
    try:
        fn(*args, **kwargs)
    except ApiException as e:
        assert e.status == code, (e.status, e.body)
        body = json.loads(e.body)
        assert body["kind"] == "Status" and body["code"] == code, body
        return body
    raise AssertionError(f"expected {code} from {fn.__name__}")


ns = "pyclient"
core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
expect_error(409, core.create_namespace, client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))

# ConfigMaps: create, read, list by label, replace, merge patch, delete.
for i in range(3):
    cm = client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name=f"cm{i}", labels={"app": "py", "n": str(i)}), data={"k": str(i)}
    )
    core.create_namespaced_config_map(ns, cm)
assert core.read_namespaced_config_map("cm1", ns).data == {"k": "1"}
listed = core.list_namespaced_config_map(ns, label_selector="app=py,n!=0")
assert sorted(c.metadata.name for c in listed.items) == ["cm1", "cm2"], listed.items
assert listed.metadata.resource_version
cm = core.read_namespaced_config_map("cm2", ns)
cm.data["extra"] = "x"
replaced = core.replace_namespaced_config_map("cm2", ns, cm)
assert int(replaced.metadata.resource_version) > int(cm.metadata.resource_version)
patched = core.patch_namespaced_config_map("cm2", ns, {"metadata": {"labels": {"patched": "yes"}}})
assert patched.metadata.labels["patched"] == "yes" and patched.data["extra"] == "x"
stale = cm
stale.data["k"] = "stale"
expect_error(409, core.replace_namespaced_config_map, "cm2", ns, stale)
expect_error(404, core.read_namespaced_config_map, "missing", ns)
invalid = expect_error(
    422, core.create_namespaced_config_map, ns, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="Bad_Name"))
)
assert invalid["reason"] == "Invalid", invalid

# Watch from a resource version: the events after it, in order.
rv = core.list_namespaced_config_map(ns).metadata.resource_version
core.delete_namespaced_config_map("cm0", ns)
core.create_namespaced_config_map(ns, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="late")))
seen = []
w = watch.Watch()
for event in w.stream(core.list_namespaced_config_map, ns, resource_version=rv, timeout_seconds=5):
    seen.append((event["type"], event["object"].metadata.name))
    if len(seen) == 2:
        w.stop()
assert seen == [("DELETED", "cm0"), ("ADDED", "late")], seen

# A Deployment: strategic merge patch of its containers, scale, status.
dep = client.V1Deployment(
    metadata=client.V1ObjectMeta(name="web"),
    spec=client.V1DeploymentSpec(
        replicas=2,
        selector=client.V1LabelSelector(match_labels={"app": "web"}),
        template=client.V1PodTemplateSpec(
            metadata=client.V1ObjectMeta(labels={"app": "web"}),
            spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="busybox:1")]),
        ),
    ),
)
created = apps.create_namespaced_deployment(ns, dep)
assert created.spec.strategy.type == "RollingUpdate", created.spec.strategy
assert created.spec.template.spec.containers[0].image_pull_policy == "IfNotPresent"
patch = {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "busybox:2"}]}}}}
patched = apps.patch_namespaced_deployment("web", ns, patch)
assert [c.image for c in patched.spec.template.spec.containers] == ["busybox:2"]
scale = apps.read_namespaced_deployment_scale("web", ns)
assert scale.spec.replicas == 2
apps.patch_namespaced_deployment_scale("web", ns, {"spec": {"replicas": 3}})
assert apps.read_namespaced_deployment("web", ns).spec.replicas == 3
apps.delete_namespaced_deployment("web", ns, propagation_policy="Foreground")

# A custom resource definition and its objects.
crd = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "gadgets.example.com"},
    "spec": {
        "group": "example.com",
        "scope": "Namespaced",
        "names": {"plural": "gadgets", "singular": "gadget", "kind": "Gadget"},
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {"type": "object", "properties": {"size": {"type": "integer"}}}
                        },
                    }
                },
            }
        ],
    },
}
ext.create_custom_resource_definition(crd)
deadline = time.time() + 20
while True:
    try:
        custom.list_namespaced_custom_object("example.com", "v1", ns, "gadgets")
        break
    except ApiException:
        if time.time() > deadline:
            raise
        time.sleep(0.2)
gadget = {"apiVersion": "example.com/v1", "kind": "Gadget", "metadata": {"name": "g1"}, "spec": {"size": 3}}
custom.create_namespaced_custom_object("example.com", "v1", ns, "gadgets", gadget)
got = custom.get_namespaced_custom_object("example.com", "v1", ns, "gadgets", "g1")
assert got["spec"]["size"] == 3, got
custom.patch_namespaced_custom_object("example.com", "v1", ns, "gadgets", "g1", {"spec": {"size": 5}})
items = custom.list_namespaced_custom_object("example.com", "v1", ns, "gadgets")["items"]
assert [i["spec"]["size"] for i in items] == [5], items
bad = dict(gadget, metadata={"name": "g2"}, spec={"size": "big"})
expect_error(422, custom.create_namespaced_custom_object, "example.com", "v1", ns, "gadgets", bad)
custom.delete_namespaced_custom_object("example.com", "v1", ns, "gadgets", "g1")

core.delete_namespace(ns)
print("python api ok")
