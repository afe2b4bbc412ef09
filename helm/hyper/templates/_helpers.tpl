{{/* Labels every object of the release carries; "component" is the service's name. */}}
{{- define "hyper.labels" -}}
app.kubernetes.io/name: {{ .component }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/part-of: hyper
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ .root.Chart.Name }}-{{ .root.Chart.Version }}
{{- end }}

{{- define "hyper.selector" -}}
app.kubernetes.io/name: {{ .component }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- end }}

{{- define "hyper.image" -}}
{{ .root.Values.image.registry }}/{{ .image }}:{{ .root.Values.image.tag | default .root.Chart.AppVersion }}
{{- end }}

{{- define "hyper.secretName" -}}
{{ .Values.secrets.existingSecret | default (printf "%s-secrets" .Release.Name) }}
{{- end }}

{{/* "true" when ppm keeps its state in PostgreSQL (the release's or an external one), else "". */}}
{{- define "hyper.database" -}}
{{- if or .Values.postgresql.enabled .Values.postgresql.externalUrl }}true{{ end }}
{{- end }}

{{- define "hyper.stateClaim" -}}
{{ .Values.state.existingClaim | default (printf "%s-state" .Release.Name) }}
{{- end }}

{{/* gRPC health as the probe: the kubelet's own gRPC probe where the cluster has it
(Kubernetes >= 1.24) and the port is plain gRPC; otherwise `hyper health`, which speaks TLS. */}}
{{- define "hyper.grpcProbe" -}}
{{- if and (semverCompare ">=1.24-0" .root.Capabilities.KubeVersion.Version) (not .root.Values.tls.enabled) -}}
grpc: {port: {{ .port }}}
{{- else -}}
exec: {command: ["hyper", "health", "localhost:{{ .port }}"]}
{{- end }}
{{- end }}

{{/* The TLS Secret as a volume, and where it is mounted. */}}
{{- define "hyper.tlsVolume" -}}
{{- if .Values.tls.enabled }}
- name: tls
  secret: {secretName: {{ required "tls.secretName is required when tls.enabled" .Values.tls.secretName }}}
{{- end }}
{{- end }}

{{- define "hyper.tlsMount" -}}
{{- if .Values.tls.enabled }}
- {name: tls, mountPath: /etc/hyper/tls, readOnly: true}
{{- end }}
{{- end }}
