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

{{/* Namespaces that never reach the webhook. */}}
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
failurePolicy: {{ .Values.webhook.failurePolicy }}
timeoutSeconds: {{ .Values.webhook.timeoutSeconds }}
{{- end }}
