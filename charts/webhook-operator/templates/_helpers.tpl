{{/* Chart name, truncated to the 63 characters of a DNS label. */}}
{{- define "webhook-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: <release>-<chart>, or the release name when it already contains the chart name. */}}
{{- define "webhook-operator.fullname" -}}
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

{{- define "webhook-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Selector labels: stable across upgrades (a Deployment's selector is immutable). */}}
{{- define "webhook-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "webhook-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "webhook-operator.labels" -}}
helm.sh/chart: {{ include "webhook-operator.chart" . }}
{{ include "webhook-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: webhook-operator
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "webhook-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "webhook-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "webhook-operator.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* Name of the Secret holding the intake token(s): existingSecret, else <fullname>-intake (created by the chart
when intake.token is set, otherwise by you: it is mounted optional, and no token is accepted until it exists).
"" only for anonymous intake without tokens. */}}
{{- define "webhook-operator.intakeSecretName" -}}
{{- if .Values.intake.existingSecret }}
{{- .Values.intake.existingSecret }}
{{- else if or .Values.intake.token (not .Values.intake.allowAnonymous) }}
{{- printf "%s-intake" (include "webhook-operator.fullname" .) }}
{{- end }}
{{- end }}

{{- define "webhook-operator.intakeSecretKey" -}}
{{- if .Values.intake.existingSecret }}
{{- .Values.intake.existingSecretKey }}
{{- else }}
{{- "token" }}
{{- end }}
{{- end }}

{{- define "webhook-operator.claimName" -}}
{{- default (printf "%s-store" (include "webhook-operator.fullname" .)) .Values.persistence.existingClaim }}
{{- end }}

{{/*
RBAC rules on the watched resources, shared by the ClusterRole (all namespaces) and the per-namespace Roles.
Every verb is one the operator issues; see docs/install.md "RBAC".
*/}}
{{- define "webhook-operator.watchRules" -}}
# The Webhooks: kopf lists and watches them, patches finalizers and its progress annotations; the operations API
# reads single ones.
- apiGroups: ["events.open-metadata.org"]
  resources: ["webhooks"]
  verbs: ["get", "list", "watch", "patch"]
# Delivery state is written through the status subresource only.
- apiGroups: ["events.open-metadata.org"]
  resources: ["webhooks/status"]
  verbs: ["get", "patch"]
# Events about Webhooks (kopf posts core/v1 Events; the operator's own go to events.k8s.io/v1 and patch a series).
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "patch"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}

{{/* Secrets referenced by Webhooks (HMAC keys, headersFrom, CA bundles), watched so rotations apply at once.
RBAC cannot restrict list/watch to a label: the operator itself watches only Secrets labelled
events.open-metadata.org/webhook-secret=true and uses no other. */}}
{{- define "webhook-operator.secretRules" -}}
# Secrets referenced by Webhooks; the operator watches and uses only those labelled
# events.open-metadata.org/webhook-secret=true (RBAC cannot filter by label).
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "list", "watch"]
{{- end }}

{{/* Cluster-scoped, needed in both modes: authenticating and authorizing callers of the operations API. */}}
{{- define "webhook-operator.authRules" -}}
- apiGroups: ["authentication.k8s.io"]
  resources: ["tokenreviews"]
  verbs: ["create"]
- apiGroups: ["authorization.k8s.io"]
  resources: ["subjectaccessreviews"]
  verbs: ["create"]
{{- end }}
