{{/* Labels every object carries. */}}
{{- define "amber.labels" -}}
app.kubernetes.io/name: amber
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end }}

{{/* The operator pods' labels; the same selector as deploy/ (Deployment selectors are immutable). */}}
{{- define "amber.selectorLabels" -}}
app.kubernetes.io/name: amber
app.kubernetes.io/component: operator
{{- end }}

{{- define "amber.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{/* The collection Jobs' pull secrets, comma-separated: collection.imagePullSecrets, else imagePullSecrets. */}}
{{- define "amber.collectorPullSecrets" -}}
{{- if .Values.collection.imagePullSecrets -}}
{{- join "," .Values.collection.imagePullSecrets -}}
{{- else -}}
{{- $names := list -}}
{{- range .Values.imagePullSecrets }}{{ $names = append $names .name }}{{ end -}}
{{- join "," $names -}}
{{- end -}}
{{- end }}

{{/* The namespace of an optional monitoring object: its own value, else the release's. */}}
{{- define "amber.monitoringNamespace" -}}
{{- .namespace | default .root.Release.Namespace -}}
{{- end }}
