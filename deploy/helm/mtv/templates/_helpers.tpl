{{/* Names ------------------------------------------------------------------------------------ */}}

{{- define "mtv.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* <release>-mtv, or the release name alone if it already contains the chart name. Service names
are appended to it, so it is cut to 50 characters to leave room for "-converter". */}}
{{- define "mtv.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 50 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "mtv.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels: call with (dict "root" $ "component" "inventory"). ------------------------------- */}}

{{- define "mtv.selectorLabels" -}}
app.kubernetes.io/name: {{ include "mtv.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- with .component }}
app.kubernetes.io/component: {{ . }}
{{- end }}
{{- end }}

{{- define "mtv.labels" -}}
helm.sh/chart: {{ include "mtv.chart" .root }}
{{ include "mtv.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: mtv
{{- end }}

{{/* Objects ---------------------------------------------------------------------------------- */}}

{{- define "mtv.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}

{{- define "mtv.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "mtv.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "mtv.converterServiceAccountName" -}}
{{- if .Values.converter.serviceAccount.create }}
{{- default (printf "%s-converter" (include "mtv.fullname" .)) .Values.converter.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.converter.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "mtv.transferServiceAccountName" -}}
{{- if .Values.transfer.serviceAccount.create }}
{{- default (printf "%s-transfer" (include "mtv.fullname" .)) .Values.transfer.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.transfer.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "mtv.kafkaSecretName" -}}
{{- if .Values.kafka.existingSecret }}
{{- .Values.kafka.existingSecret }}
{{- else }}
{{- printf "%s-kafka" (include "mtv.fullname" .) }}
{{- end }}
{{- end }}

{{- define "mtv.kafkaSecretKey" -}}
{{- if .Values.kafka.existingSecret }}{{ .Values.kafka.existingSecretKey }}{{ else }}bootstrap{{ end }}
{{- end }}

{{/* Pod pieces shared by the four Deployments ------------------------------------------------ */}}

{{/* Pod annotations: call with (dict "root" $ "service" .Values.inventory). */}}
{{- define "mtv.podAnnotations" -}}
{{- $root := .root }}
{{- if $root.Values.metrics.annotations }}
prometheus.io/scrape: "true"
prometheus.io/port: {{ $root.Values.ports.http | quote }}
prometheus.io/path: /metrics
{{- end }}
{{- if not $root.Values.kafka.existingSecret }}
{{- /* Roll the pods when the chart-managed Kafka Secret changes. */}}
checksum/kafka: {{ include (print $root.Template.BasePath "/secret-kafka.yaml") $root | sha256sum }}
{{- end }}
{{- with $root.Values.podAnnotations }}
{{ toYaml . }}
{{- end }}
{{- with .service.podAnnotations }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Scheduling, pull secrets and the pod security context. */}}
{{- define "mtv.podCommon" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* Environment every service gets. Call with (dict "root" $ "service" "inventory"). */}}
{{- define "mtv.commonEnv" -}}
- name: MTV_KAFKA_BOOTSTRAP
  valueFrom:
    secretKeyRef:
      name: {{ include "mtv.kafkaSecretName" .root }}
      key: {{ include "mtv.kafkaSecretKey" .root }}
- name: MTV_HTTP_HOST
  value: "0.0.0.0"
- name: MTV_HTTP_PORT
  value: {{ .root.Values.ports.http | quote }}
- name: MTV_LOG_LEVEL
  value: {{ .root.Values.logLevel | quote }}
- name: MTV_INSTANCE_ID
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
# The image's user has no home directory; libraries that cache files get a writable one.
- name: HOME
  value: /tmp
{{- end }}

{{/* Image, security context, ports, probes of a service container.
Call with (dict "root" $ "grpcPort" 50051); grpcPort is optional. */}}
{{- define "mtv.containerCommon" -}}
{{- $root := .root }}
image: {{ include "mtv.image" $root }}
imagePullPolicy: {{ $root.Values.image.pullPolicy }}
securityContext:
  {{- toYaml $root.Values.securityContext | nindent 2 }}
# Relative paths (faust's <app id>-data directory) land in a writable emptyDir.
workingDir: /var/lib/mtv
ports:
  - name: http
    containerPort: {{ $root.Values.ports.http }}
    protocol: TCP
  {{- with .grpcPort }}
  - name: grpc
    containerPort: {{ . }}
    protocol: TCP
  {{- end }}
livenessProbe:
  httpGet:
    path: /healthz
    port: http
  {{- toYaml $root.Values.probes.liveness | nindent 2 }}
readinessProbe:
  httpGet:
    path: /readyz
    port: http
  {{- toYaml $root.Values.probes.readiness | nindent 2 }}
{{- end }}

{{- define "mtv.commonVolumeMounts" -}}
- name: tmp
  mountPath: /tmp
- name: work
  mountPath: /var/lib/mtv
- name: run
  mountPath: /run/mtv
{{- end }}

{{/* /run/mtv is in memory: private copies of mounted Secrets live there, never on the node's disk. */}}
{{- define "mtv.commonVolumes" -}}
- name: tmp
  emptyDir: {}
- name: work
  emptyDir: {}
- name: run
  emptyDir:
    medium: Memory
    sizeLimit: 16Mi
{{- end }}

{{/* Init containers: create the topics, then copy Secrets into private files.
Call with (dict "root" $ "copies" (list (dict "volume" "providers" "to" "/run/mtv/providers"))).
The services refuse key files that group or others may read and chmod their provider directory,
neither of which a Secret volume (read-only, root-owned, group-readable under fsGroup) allows:
each copy is a 0700 directory of 0600 files owned by the service's user. */}}
{{- define "mtv.initContainers" -}}
{{- $root := .root }}
{{- if $root.Values.topics.create }}
- name: create-topics
  image: {{ include "mtv.image" $root }}
  imagePullPolicy: {{ $root.Values.image.pullPolicy }}
  command: ["mtvctl", "topics", "create", "--timeout", {{ $root.Values.topics.timeoutSeconds | quote }}]
  env:
    - name: MTV_KAFKA_BOOTSTRAP
      valueFrom:
        secretKeyRef:
          name: {{ include "mtv.kafkaSecretName" $root }}
          key: {{ include "mtv.kafkaSecretKey" $root }}
    - name: HOME
      value: /tmp
  securityContext:
    {{- toYaml $root.Values.securityContext | nindent 4 }}
  resources:
    requests: {cpu: 10m, memory: 64Mi}
    limits: {cpu: 500m, memory: 256Mi}
  volumeMounts:
    - name: tmp
      mountPath: /tmp
{{- end }}
{{- if .copies }}
- name: copy-secrets
  image: {{ include "mtv.image" $root }}
  imagePullPolicy: {{ $root.Values.image.pullPolicy }}
  command:
    - sh
    - -ec
    - |
      umask 077
      {{- range .copies }}
      mkdir -p {{ .to }}
      for f in /secrets/{{ .volume }}/*; do
        if [ -f "$f" ]; then cp -L "$f" {{ .to }}/; fi
      done
      chmod 700 {{ .to }}
      chmod 600 {{ .to }}/* 2>/dev/null || true
      echo "copied $(ls {{ .to }} | wc -l) file(s) of Secret volume {{ .volume }} to {{ .to }}"
      {{- end }}
  securityContext:
    {{- toYaml $root.Values.securityContext | nindent 4 }}
  resources:
    requests: {cpu: 10m, memory: 16Mi}
    limits: {cpu: 100m, memory: 64Mi}
  volumeMounts:
    - name: run
      mountPath: /run/mtv
    {{- range .copies }}
    - name: {{ .volume }}
      mountPath: /secrets/{{ .volume }}
      readOnly: true
    {{- end }}
{{- end }}
{{- end }}

{{/* A Secret volume readable by the pod's group only (fsGroup), for the copy-secrets init container. */}}
{{- define "mtv.secretVolume" -}}
- name: {{ .volume }}
  secret:
    secretName: {{ .secret }}
    defaultMode: 288  # 0440
{{- end }}

{{/* What the converter does to the objects of a target namespace. */}}
{{- define "mtv.converterTargetRules" -}}
# The VM and its disks: server-side apply (patch), ownership checks (get, list), cleanup (delete).
- apiGroups: [kubevirt.io]
  resources: [virtualmachines]
  verbs: [get, list, create, patch, delete]
- apiGroups: [cdi.kubevirt.io]
  resources: [datavolumes]
  verbs: [get, list, create, patch, delete]
{{- end }}

{{- define "mtv.transferTargetRules" -}}
# A CDI upload token per disk copy: wait for the DataVolume (get), then an UploadTokenRequest (create).
- apiGroups: [cdi.kubevirt.io]
  resources: [datavolumes]
  verbs: [get]
- apiGroups: [upload.cdi.kubevirt.io]
  resources: [uploadtokenrequests]
  verbs: [create]
{{- end }}
