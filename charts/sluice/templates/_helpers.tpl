{{/* Names, labels and the pieces every component's pod shares. */}}

{{- define "sluice.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The release's name prefix: `helm install sluice` gives sluice-operator, sluice-router, … */}}
{{- define "sluice.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Name of one component's objects; call with (dict "root" $ "component" "router"). */}}
{{- define "sluice.component" -}}
{{- printf "%s-%s" (include "sluice.fullname" .root) .component | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "sluice.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sluice.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "sluice.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "sluice.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: sluice
{{- with .root.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* The image reference, by digest when one is given. */}}
{{- define "sluice.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository $tag -}}
{{- end -}}
{{- end -}}

{{- define "sluice.serviceAccountName" -}}
{{- $sa := index .root.Values .component "serviceAccount" -}}
{{- if $sa.create -}}
{{- default (include "sluice.component" .) $sa.name -}}
{{- else -}}
{{- default "default" $sa.name -}}
{{- end -}}
{{- end -}}

{{/* The Secret holding the ingress's bearer token: the one named, or the generated one. */}}
{{- define "sluice.tokenSecret" -}}
{{- default (printf "%s-token" (include "sluice.fullname" .)) .Values.ingress.auth.secretName -}}
{{- end -}}

{{- define "sluice.natsUrl" -}}
{{- required "nats.url is required: the NATS JetStream server, e.g. --set nats.url=nats://nats.nats.svc.cluster.local:4222" .Values.nats.url -}}
{{- end -}}

{{/* Environment every component reads: the NATS URL for $(SLUICE_NATS_URL) in args, the
     namespace, the log filter. */}}
{{- define "sluice.env" -}}
- name: SLUICE_NATS_URL
  value: {{ include "sluice.natsUrl" .root | quote }}
- name: POD_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
- name: RUST_LOG
  value: {{ .root.Values.logLevel | quote }}
{{- with (index .root.Values .component "extraEnv") }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "sluice.natsCredsArgs" -}}
{{- if .Values.nats.credentials.secretName }}
- --nats-creds
- /etc/sluice/nats/creds
{{- end }}
{{- end -}}

{{/* The bus streams' limits (the archive), for the processes that set them. */}}
{{- define "sluice.retentionArgs" -}}
{{- with .Values.nats.retention }}
{{- with .default }}
- --retention
- {{ printf "%s:%s" .maxAge .maxBytes | quote }}
{{- end }}
{{- range $bus, $r := .buses }}
- --retention
- {{ printf "%s=%s:%s" $bus $r.maxAge $r.maxBytes | quote }}
{{- end }}
{{- end }}
{{- end -}}

{{- define "sluice.natsCredsMount" -}}
{{- if .Values.nats.credentials.secretName }}
- name: nats-creds
  mountPath: /etc/sluice/nats
  readOnly: true
{{- end }}
{{- end -}}

{{- define "sluice.natsCredsVolume" -}}
{{- if .Values.nats.credentials.secretName }}
- name: nats-creds
  secret:
    secretName: {{ .Values.nats.credentials.secretName }}
    defaultMode: 0440
    items:
      - key: {{ .Values.nats.credentials.key }}
        path: creds
{{- end }}
{{- end -}}

{{/* Pod-level settings shared by the Deployments: scheduling, pull secrets, security. */}}
{{- define "sluice.podSpecCommon" -}}
{{- $c := index .root.Values .component -}}
serviceAccountName: {{ include "sluice.serviceAccountName" . }}
securityContext:
  {{- toYaml .root.Values.podSecurityContext | nindent 2 }}
{{- with .root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $c.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with $c.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $c.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $c.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* Pod template metadata: selector labels plus the user's labels and annotations. */}}
{{- define "sluice.podMetadata" -}}
{{- $c := index .root.Values .component -}}
labels:
  {{- include "sluice.selectorLabels" . | nindent 2 }}
  app.kubernetes.io/part-of: sluice
  {{- with $c.podLabels }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- with $c.podAnnotations }}
annotations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* PodDisruptionBudget apiVersion: policy/v1 from Kubernetes 1.21, v1beta1 before. */}}
{{- define "sluice.pdbApiVersion" -}}
{{- if semverCompare ">=1.21-0" .Capabilities.KubeVersion.Version -}}
policy/v1
{{- else -}}
policy/v1beta1
{{- end -}}
{{- end -}}
