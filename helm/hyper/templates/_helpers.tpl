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

{{/* The TLS Secret a component mounts: its own (tls.perComponent, cert-manager's layout:
tls.crt, tls.key, ca.crt) or the one every pod shares (tls.secretName). */}}
{{- define "hyper.tlsSecret" -}}
{{- if .root.Values.tls.perComponent -}}
{{ printf "%s-tls-%s" .root.Release.Name .component }}
{{- else -}}
{{ required "tls.secretName is required when tls.enabled (or set tls.perComponent)" .root.Values.tls.secretName }}
{{- end }}
{{- end }}

{{/* The TLS Secret as a volume, and where it is mounted. */}}
{{- define "hyper.tlsVolume" -}}
{{- if .root.Values.tls.enabled }}
- name: tls
  secret: {secretName: {{ include "hyper.tlsSecret" . }}}
{{- end }}
{{- end }}

{{- define "hyper.tlsMount" -}}
{{- if .Values.tls.enabled }}
- {name: tls, mountPath: /etc/hyper/tls, readOnly: true}
{{- end }}
{{- end }}

{{/* The Secret holding the access policy and the calling components' tokens: the operator's
(access.secretName), or the one the chart writes (access.generate); empty: no policy. */}}
{{- define "hyper.accessSecret" -}}
{{- if .Values.access.secretName -}}
{{ .Values.access.secretName }}
{{- else if .Values.access.generate -}}
{{ printf "%s-access" .Release.Name }}
{{- end }}
{{- end }}

{{/* The access policy, mounted from its Secret (policy.json alone, not the tokens). */}}
{{- define "hyper.accessVolume" -}}
{{- with include "hyper.accessSecret" . }}
- name: access
  secret:
    secretName: {{ . }}
    items: [{key: policy.json, path: policy.json}]
{{- end }}
{{- end }}

{{- define "hyper.accessMount" -}}
{{- if include "hyper.accessSecret" . }}
- {name: access, mountPath: /etc/hyper/access, readOnly: true}
{{- end }}
{{- end }}

{{/* The policy a server enforces and, for a component that calls others, the token it presents. */}}
{{- define "hyper.accessEnv" -}}
{{- with include "hyper.accessSecret" .root }}
- {name: HYPER_ACCESS_POLICY, value: /etc/hyper/access/policy.json}
{{- if has $.component (list "router" "gateway") }}
- name: HYPER_CALLER_TOKEN
  valueFrom:
    secretKeyRef: {name: {{ . }}, key: {{ $.component }}-token}
{{- end }}
{{- end }}
{{- end }}

{{/* A service's environment beyond the ConfigMap: its secrets and the access policy. */}}
{{- define "hyper.serviceEnv" -}}
{{- $root := .root }}
{{- if eq .component "tagger" }}
- name: HYPER_REDIS_URL
  valueFrom:
    secretKeyRef: {name: {{ include "hyper.secretName" $root }}, key: redis-url}
- name: HYPER_JUDGE_API_KEY
  valueFrom:
    secretKeyRef: {name: {{ include "hyper.secretName" $root }}, key: judge-api-key, optional: true}
{{- end }}
{{- if eq .component "ppm" }}
- name: HYPER_PPM_RECORD_TOKEN
  valueFrom:
    secretKeyRef: {name: {{ include "hyper.secretName" $root }}, key: ppm-record-token}
{{- end }}
{{- if and (has .component (list "ppm" "router")) (include "hyper.database" $root) }}
- name: HYPER_DATABASE_URL
  valueFrom:
    secretKeyRef: {name: {{ include "hyper.secretName" $root }}, key: database-url}
{{- end }}
{{- include "hyper.accessEnv" . }}
{{- end }}
