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

{{/* The name of the NATS chart's objects (its fullname): its client Service and StatefulSet. */}}
{{- define "rebeam.natsName" -}}
{{- if .Values.nats.fullnameOverride }}
{{- .Values.nats.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := .Values.nats.nameOverride | default "nats" }}
{{- ternary .Release.Name (printf "%s-%s" .Release.Name $name) (contains $name .Release.Name) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{/* The NATS the operator and its pods use: natsUrl, else the NATS chart's client Service. */}}
{{- define "rebeam.natsUrl" -}}
{{- if .Values.natsUrl }}
{{- .Values.natsUrl }}
{{- else if .Values.nats.enabled }}
{{- $scheme := ternary "tls" "nats" (eq (include "rebeam.natsTls" .) "true") }}
{{- printf "%s://%s.%s.svc:4222" $scheme (include "rebeam.natsName" .) .Release.Namespace }}
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

{{/* "true" when the NATS chart's NATS speaks TLS (tls.enabled), else empty. */}}
{{- define "rebeam.natsTls" -}}
{{- if and .Values.nats.enabled .Values.tls.enabled }}true{{ end }}
{{- end }}

{{/* "true" when cert-manager makes the certificates: tls.certManager.enabled, where "auto" asks
the API server whether cert-manager.io/v1 is served. */}}
{{- define "rebeam.certManager" -}}
{{- $want := .Values.tls.certManager.enabled }}
{{- if eq (toString $want) "auto" }}
{{- if .Capabilities.APIVersions.Has "cert-manager.io/v1" }}true{{ end }}
{{- else if $want }}true{{ end }}
{{- end }}

{{/* The Secret the NATS chart mounts: certificate, key and CA (ca.crt, which clients trust). */}}
{{- define "rebeam.natsTlsSecret" -}}
{{- required "nats.config.nats.tls.secretName is required with tls.enabled" .Values.nats.config.nats.tls.secretName }}
{{- end }}

{{/* The names the NATS server certificate is valid for, as a JSON list: the client Service
(short, namespaced and full names), every server of the StatefulSet through the headless
Service (their routes connect by those names), localhost (port-forwarding) and
tls.extraDNSNames. */}}
{{- define "rebeam.natsTlsNames" -}}
{{- $nats := include "rebeam.natsName" . }}
{{- $ns := .Release.Namespace }}
{{- $names := list }}
{{- range (list $nats (printf "*.%s-headless" $nats)) }}
{{- $names = concat $names (list . (printf "%s.%s" . $ns) (printf "%s.%s.svc" . $ns) (printf "%s.%s.svc.cluster.local" . $ns)) }}
{{- end }}
{{- concat $names (list "localhost") .Values.tls.extraDNSNames | uniq | toJson }}
{{- end }}

{{/* When a certificate Secret the chart made expires (its rebeam.io/not-after annotation), as
Unix seconds; a Secret without a readable one counts as expired. */}}
{{- define "rebeam.notAfter" -}}
{{- $at := dig "metadata" "annotations" "rebeam.io/not-after" "" . }}
{{- if $at }}{{ toDate "2006-01-02T15:04:05Z07:00" $at | unixEpoch }}{{ else }}0{{ end }}
{{- end }}

{{/* Mount and environment of the CA that clients trust, for the operator and `helm test`:
from the NATS TLS Secret (its ca.crt only), or the ConfigMap of tls.externalCA. Empty without
TLS. */}}
{{- define "rebeam.natsCaVolume" -}}
{{- if (include "rebeam.natsTls" .) }}
- name: nats-ca
  secret:
    secretName: {{ include "rebeam.natsTlsSecret" . }}
    items: [{key: ca.crt, path: ca.crt}]
{{- else if .Values.tls.externalCA }}
- name: nats-ca
  configMap:
    name: {{ include "rebeam.fullname" . }}-nats-ca
    items: [{key: ca.crt, path: ca.crt}]
{{- end }}
{{- end }}

{{- define "rebeam.natsCaFile" -}}/etc/rebeam/nats-ca/ca.crt{{- end }}
