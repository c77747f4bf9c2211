"""A tiny kopf operator the tests run with `kopf run` against the local plane."""

import kopf


@kopf.on.create("example.com", "v1", "widgets")
def create_fn(spec, name, namespace, body, patch, **_):
    cm = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": f"{name}-child", "namespace": namespace},
        "data": {"size": spec["size"]},
    }
    kopf.adopt(cm, owner=body)
    import kubernetes

    kubernetes.config.load_kube_config()
    kubernetes.client.CoreV1Api().create_namespaced_config_map(namespace, cm)
    patch.status["replicas"] = spec.get("replicas", 1)
    kopf.info(body, reason="ChildCreated", message=f"created ConfigMap {cm['metadata']['name']}")
    return {"child": cm["metadata"]["name"]}


@kopf.on.update("example.com", "v1", "widgets", field="spec.replicas")
def scale_fn(new, patch, **_):
    patch.status["replicas"] = new


@kopf.on.delete("example.com", "v1", "widgets")
def delete_fn(name, logger, **_):
    logger.info(f"deleting {name}")
