{{/* Names and labels shared by every object of the release. */}}

{{- define "stevedore.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "stevedore.fullname" -}}
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

{{- define "stevedore.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "stevedore.selectorLabels" -}}
app.kubernetes.io/name: {{ include "stevedore.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "stevedore.labels" -}}
helm.sh/chart: {{ include "stevedore.chart" . }}
{{ include "stevedore.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: stevedore
{{- end }}

{{- define "stevedore.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "stevedore.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "stevedore.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* The Settings document the controller reads (--config). */}}
{{- define "stevedore.config" -}}
{{- $settings := deepCopy (default (dict) .Values.settings) }}
{{- /* The AWS block names the cluster too: default it to clusterName so the two agree. */}}
{{- if and (eq .Values.provider "aws") (kindIs "map" $settings.aws) }}
{{- if not $settings.aws.clusterName }}
{{- $_ := set $settings.aws "clusterName" .Values.clusterName }}
{{- end }}
{{- end }}
apiVersion: stevedore.dev/v1
kind: Settings
{{- with $settings }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Checks that cannot be said in values.schema.json. */}}
{{- define "stevedore.validate" -}}
{{- if not .Values.clusterName }}
{{- fail "clusterName is required: the cluster's name (the AWS provider tags and finds its instances by it). Set --set clusterName=<name>." }}
{{- end }}
{{- if and (gt (int .Values.replicaCount) 1) (not .Values.leaderElection.enabled) }}
{{- fail "replicaCount > 1 needs leaderElection.enabled=true: two active controllers would launch and delete nodes twice." }}
{{- end }}
{{- if and .Values.aws.roleArn (ne .Values.provider "aws") }}
{{- fail "aws.roleArn is only used with provider=aws." }}
{{- end }}
{{- end }}

{{/*
Non-empty when the provider creates Node objects itself (no kubelet) and keeps them Ready
with heartbeats: `fake` and `simulated`. They need Node create/get, nodes/status and the
node Leases in kube-node-lease.
*/}}
{{- define "stevedore.createsNodes" -}}
{{- if has .Values.provider (list "fake" "simulated") }}true{{ end }}
{{- end }}
