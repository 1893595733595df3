{{/* Names, labels and derived values of the rebeam chart. */}}

{{- define "rebeam.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "rebeam.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* The operator's objects: Deployment, ServiceAccount, roles. */}}
{{- define "rebeam.operatorName" -}}
{{- printf "%s-operator" (include "rebeam.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "rebeam.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "rebeam.operatorName" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "rebeam.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "rebeam.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "rebeam.operatorSelector" -}}
app.kubernetes.io/name: {{ include "rebeam.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{/* The NATS the operator and its pods use: natsUrl, else the NATS chart's client Service. */}}
{{- define "rebeam.natsUrl" -}}
{{- if .Values.natsUrl }}
{{- .Values.natsUrl }}
{{- else if .Values.nats.enabled }}
{{- $nats := ternary .Release.Name (printf "%s-nats" .Release.Name) (contains "nats" .Release.Name) }}
{{- printf "nats://%s.%s.svc:4222" ($nats | trunc 63 | trimSuffix "-") .Release.Namespace }}
{{- else }}
{{- fail "rebeam needs NATS: keep nats.enabled=true, or set natsUrl to a NATS server with JetStream" }}
{{- end }}
{{- end }}

{{- define "rebeam.operatorImage" -}}
{{- printf "%s:%s" .Values.operator.image.repository (default .Chart.AppVersion .Values.operator.image.tag) }}
{{- end }}

{{/* The actor pods the operator creates, as rebeam_operator/pods.py labels them. */}}
{{- define "rebeam.actorPodSelector" -}}
matchLabels:
  app.kubernetes.io/managed-by: rebeam-operator
matchExpressions:
  - {key: rebeam.io/host-uid, operator: Exists}
{{- end }}

{{/* The pods of the NATS dependency (its servers and nats-box), by the NATS chart's labels. */}}
{{- define "rebeam.natsPodSelector" -}}
matchLabels:
  app.kubernetes.io/name: {{ .Values.nats.nameOverride | default "nats" }}
  app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Namespaces whose actor pods the NetworkPolicies isolate: the watched ones and any listed
in networkPolicy.actors.namespaces, as a JSON list. */}}
{{- define "rebeam.actorNamespaces" -}}
{{- concat .Values.operator.watchNamespaces .Values.networkPolicy.actors.namespaces | uniq | toJson }}
{{- end }}
