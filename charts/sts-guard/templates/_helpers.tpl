{{- define "sts-guard.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "sts-guard.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else if contains (include "sts-guard.name" .) .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name (include "sts-guard.name" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "sts-guard.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sts-guard.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "sts-guard.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "sts-guard.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "sts-guard.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "sts-guard.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "sts-guard.tlsSecretName" -}}
{{- printf "%s-tls" (include "sts-guard.fullname" .) }}
{{- end }}

{{/* Namespaces that never reach the webhook; with webhook.optIn, only those labelled
sts-guard.io/enabled=true do. */}}
{{- define "sts-guard.namespaceSelector" -}}
namespaceSelector:
  matchExpressions:
    - key: kubernetes.io/metadata.name
      operator: NotIn
      values:
        {{- range (concat (list .Release.Namespace "kube-system") .Values.webhook.excludeNamespaces | uniq) }}
        - {{ . | quote }}
        {{- end }}
    - key: sts-guard.io/ignore
      operator: NotIn
      values: ["true"]
    {{- if .Values.webhook.optIn }}
    - key: sts-guard.io/enabled
      operator: In
      values: ["true"]
    {{- end }}
{{- end }}

{{/* Only pods created by a StatefulSet controller carry this label. */}}
{{- define "sts-guard.podObjectSelector" -}}
objectSelector:
  matchExpressions:
    - key: statefulset.kubernetes.io/pod-name
      operator: Exists
{{- end }}

{{- define "sts-guard.webhookCommon" -}}
sideEffects: None
admissionReviewVersions: ["v1"]
matchPolicy: Equivalent
timeoutSeconds: {{ .Values.webhook.timeoutSeconds }}
{{- end }}

{{/* clientConfig of a webhook: the chart's Service at `path`, with the CA bundle unless
cert-manager injects it. Takes (dict "root" $ "path" "/validate" "caBundle" $caBundle). */}}
{{- define "sts-guard.clientConfig" -}}
clientConfig:
  service:
    name: {{ include "sts-guard.fullname" .root }}
    namespace: {{ .root.Release.Namespace }}
    path: {{ .path }}
    port: 443
  {{- if .caBundle }}
  caBundle: {{ .caBundle }}
  {{- end }}
{{- end }}

{{/* matchConditions are GA in Kubernetes 1.30 (beta and on by default in 1.28-1.29, where
this chart registers its webhooks unfiltered). */}}
{{- define "sts-guard.matchConditions" -}}
{{- if semverCompare ">=1.30.0-0" .Capabilities.KubeVersion.Version }}true{{ end }}
{{- end }}

{{/* The identities kube-controller-manager's controllers act as, as a CEL list: sts-guard
never refuses them a pod or Service delete. The one list is CONTROL_PLANE_USERS in
src/rules/mod.rs; tests/chart/test_chart.py fails when this copy differs from it. */}}
{{- define "sts-guard.controlPlaneUsers" -}}
{{- $users := list
  "system:kube-controller-manager"
  "system:serviceaccount:kube-system:statefulset-controller"
  "system:serviceaccount:kube-system:generic-garbage-collector"
  "system:serviceaccount:kube-system:namespace-controller"
  "system:serviceaccount:kube-system:node-controller"
  "system:serviceaccount:kube-system:pod-garbage-collector" -}}
[{{ range $i, $user := $users }}{{ if $i }}, {{ end }}'{{ $user }}'{{ end }}]
{{- end }}
