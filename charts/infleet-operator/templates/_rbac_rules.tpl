{{/*
The operator's permissions, one list for both RBAC modes, and no more than its code uses:
tests/charts/test_rbac.py derives the needs from the operator (kopf handlers, applied
children, client calls) and fails on a missing or a spare permission.
*/}}

{{/* Namespaced resources: granted cluster-wide (mode cluster) or per watched namespace. */}}
{{- define "infleet-operator.namespacedRules" -}}
# InferenceServices: watched and indexed by kopf; read again when a status write meets a
# newer version; patched once to drop the finalizer the operator before 0.2 added.
- apiGroups: [infleet.io]
  resources: [inferenceservices]
  verbs: [get, list, watch, patch]
# Status (conditions, replica counts, URL): the only part the operator writes. Never spec.
- apiGroups: [infleet.io]
  resources: [inferenceservices/status]
  verbs: [patch]
# LoRAAdapters: watched and indexed (the adapter controller; their names are what a
# service's router accepts), read when one is deleted meanwhile; their status (Ready, loadedReplicas, checksum) is all the operator writes.
- apiGroups: [infleet.io]
  resources: [loraadapters]
  verbs: [get, list, watch]
- apiGroups: [infleet.io]
  resources: [loraadapters/status]
  verbs: [patch]
# Secrets: a tenant's adapter credentials (credentialsSecretRef) are read into memory for
# one fetch and never written anywhere; the engines' admin key of each service whose
# engines have keys is created once (<service>-admin-key, owned by the service; a legacy
# <service>-lora-admin's key is read to carry it over) and read to load/unload adapters; a
# pvc:// adapter's one-time upload token is created in its namespace (owned by the
# adapter) and deleted once spent.
- apiGroups: [""]
  resources: [secrets]
  verbs: [get, create, delete]
# pvc:// adapters: the claim is looked up (a missing one is named in the adapter's
# status), and an upload Job (owned by the adapter) runs in the adapter's namespace, is
# read for its outcome and deleted when done; its failed pod's message is read from the
# pods list below.
- apiGroups: [""]
  resources: [persistentvolumeclaims]
  verbs: [get]
- apiGroups: [batch]
  resources: [jobs]
  verbs: [get, create, delete]
# Children: server-side applied under one field manager (apply creates a missing object, so
# create too); watched so that a hand edit is put back. Owner references delete them with
# their InferenceService; a pool's Deployment is deleted when the pool leaves the spec, the
# router's children when the router is turned off.
- apiGroups: [apps]
  resources: [deployments]
  verbs: [list, watch, create, patch, delete]
- apiGroups: [""]
  resources: [services, configmaps, serviceaccounts]
  verbs: [list, watch, create, patch, delete]
- apiGroups: [policy]
  resources: [poddisruptionbudgets]
  verbs: [list, watch, create, patch, delete]
# The router's Role (read its EndpointSlices) and RoleBinding (to its ServiceAccount).
- apiGroups: [rbac.authorization.k8s.io]
  resources: [roles, rolebindings]
  verbs: [list, watch, create, patch, delete]
# Never used by the operator itself: RBAC lets it create the router's Role only with
# permissions it holds (escalation prevention), so it holds them.
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [get, list, watch]
# Each service's NetworkPolicy: its engines admit only what the platform policy names.
- apiGroups: [networking.k8s.io]
  resources: [networkpolicies]
  verbs: [list, watch, create, patch]
# Monitoring children, applied only where the Prometheus Operator's CRDs exist.
- apiGroups: [monitoring.coreos.com]
  resources: [servicemonitors, prometheusrules]
  verbs: [create, patch]
# A replica across nodes is a LeaderWorkerSet group, where its CRD is installed.
- apiGroups: [leaderworkerset.x-k8s.io]
  resources: [leaderworkersets]
  verbs: [list, watch, create, patch, delete]
# The autoscaler watches the services' pods to scrape their /metrics and see spot evictions.
- apiGroups: [""]
  resources: [pods]
  verbs: [list, watch]
# Events for the operator's decisions (core/v1).
- apiGroups: [""]
  resources: [events]
  verbs: [create]
{{- end -}}

{{/* Cluster-scoped reads, needed in both modes. */}}
{{- define "infleet-operator.clusterRules" -}}
# kopf watches CRDs to notice resources appearing or going.
- apiGroups: [apiextensions.k8s.io]
  resources: [customresourcedefinitions]
  verbs: [list, watch]
# The platform policy's namespaceSelector rules read a service's namespace labels; a
# service's engine.lora.namespaceSelector lists and watches them (its tenants' API keys).
- apiGroups: [""]
  resources: [namespaces]
  verbs: [get, list, watch]
{{- end -}}


{{/* The leader Lease, in the operator's own namespace only. */}}
{{- define "infleet-operator.releaseRules" -}}
# Leader election: any replica may create the Lease; only this one may be read or renewed.
- apiGroups: [coordination.k8s.io]
  resources: [leases]
  verbs: [create]
- apiGroups: [coordination.k8s.io]
  resources: [leases]
  resourceNames: [{{ include "infleet-operator.fullname" . }}]
  verbs: [get, update]
{{- end -}}
