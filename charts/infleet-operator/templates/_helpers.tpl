{{/* Names and labels shared by every object of the chart. */}}

{{- define "infleet-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The release's full name: the release name alone when it already says infleet-operator. */}}
{{- define "infleet-operator.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains (include "infleet-operator.name" .) .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "infleet-operator.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "infleet-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "infleet-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "infleet-operator.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "infleet-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: infleet
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "infleet-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "infleet-operator.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "infleet-operator.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* Whether the cluster serves the Prometheus Operator's API (ServiceMonitor, PrometheusRule). */}}
{{- define "infleet-operator.hasPrometheusOperator" -}}
{{- if .Capabilities.APIVersions.Has "monitoring.coreos.com/v1" -}}true{{- end -}}
{{- end -}}

{{/* The platform policy file: platformPolicy, plus the operator's pods as a network peer. */}}
{{- define "infleet-operator.platformPolicy" -}}
{{- $policy := deepCopy .Values.platformPolicy -}}
{{- $network := get $policy "network" | default dict -}}
{{- if not (hasKey $network "operator") -}}
{{- $peer := dict "namespaceSelector" (dict "matchLabels" (dict "kubernetes.io/metadata.name" .Release.Namespace)) "podSelector" (dict "matchLabels" (include "infleet-operator.selectorLabels" . | fromYaml)) -}}
{{- $_ := set $network "operator" (list $peer) -}}
{{- end -}}
{{- $_ := set $policy "network" $network -}}
{{- toYaml $policy -}}
{{- end -}}
