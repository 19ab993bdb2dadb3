{{/* Names, labels and the pieces shared by both Deployments. */}}

{{- define "postgate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "postgate.fullname" -}}
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

{{- define "postgate.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "postgate.labels" -}}
helm.sh/chart: {{ include "postgate.chart" . }}
{{ include "postgate.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: postgate
{{- end }}

{{- define "postgate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "postgate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Selector labels of one role's pods. Call with (dict "root" $ "role" "ingress"). */}}
{{- define "postgate.roleSelectorLabels" -}}
{{ include "postgate.selectorLabels" .root }}
app.kubernetes.io/component: {{ .role }}
{{- end }}

{{- define "postgate.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "postgate.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "postgate.migrationServiceAccountName" -}}
{{- if .Values.migrations.serviceAccountName }}
{{- .Values.migrations.serviceAccountName }}
{{- else if and (not .Values.serviceAccount.create) .Values.serviceAccount.name }}
{{- .Values.serviceAccount.name }}
{{- else }}
{{- "default" }}
{{- end }}
{{- end }}

{{- define "postgate.secretName" -}}
{{- default (include "postgate.fullname" .) .Values.existingSecret }}
{{- end }}

{{- define "postgate.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
How Meta reaches the gateway: publicURL, else the first ingress host.
*/}}
{{- define "postgate.publicURL" -}}
{{- if .Values.publicURL }}
{{- trimSuffix "/" .Values.publicURL }}
{{- else if and .Values.ingress.enabled .Values.ingress.hosts }}
{{- $host := (first .Values.ingress.hosts).host }}
{{- $tls := false }}
{{- range .Values.ingress.tls }}
{{- if has $host (default list .hosts) }}{{ $tls = true }}{{ end }}
{{- end }}
{{- printf "%s://%s" (ternary "https" "http" $tls) $host }}
{{- end }}
{{- end }}

{{/* The secrets the gateway refuses to start without, and which are missing. */}}
{{- define "postgate.missingSecrets" -}}
{{- if not .Values.existingSecret }}
{{- $missing := list }}
{{- if not .Values.secret.databaseURL }}{{ $missing = append $missing "secret.databaseURL" }}{{ end }}
{{- if not .Values.secret.redisURL }}{{ $missing = append $missing "secret.redisURL" }}{{ end }}
{{- if not .Values.secret.adminJWTSecret }}{{ $missing = append $missing "secret.adminJWTSecret" }}{{ end }}
{{- if not .Values.secret.secretKey }}{{ $missing = append $missing "secret.secretKey" }}{{ end }}
{{- join ", " $missing }}
{{- end }}
{{- end }}

{{/*
The grace period: longer than preStop + readiness delay + drain. Call with
(dict "root" $ "role" "ingress").
*/}}
{{- define "postgate.gracePeriod" -}}
{{- $d := index .root.Values.deployments .role }}
{{- $drain := add (int $d.preStopSleepSeconds) (int $d.shutdown.delaySeconds) (int $d.shutdown.timeoutSeconds) }}
{{- if kindIs "invalid" $d.terminationGracePeriodSeconds }}
{{- add $drain 10 }}
{{- else if le (int $d.terminationGracePeriodSeconds) $drain }}
{{- fail (printf "deployments.%s.terminationGracePeriodSeconds (%d) must be longer than preStopSleepSeconds + shutdown.delaySeconds + shutdown.timeoutSeconds (%d)" .role (int $d.terminationGracePeriodSeconds) $drain) }}
{{- else }}
{{- int $d.terminationGracePeriodSeconds }}
{{- end }}
{{- end }}

{{/* Environment from the Secret, shared by the Deployments and the Job. */}}
{{- define "postgate.secretEnv" -}}
{{- $name := include "postgate.secretName" . -}}
- name: DATABASE_URL
  valueFrom:
    secretKeyRef: {name: {{ $name | quote }}, key: {{ .Values.secretKeys.databaseURL | quote }}}
- name: REDIS_URL
  valueFrom:
    secretKeyRef: {name: {{ $name | quote }}, key: {{ .Values.secretKeys.redisURL | quote }}}
- name: ADMIN_JWT_SECRET
  valueFrom:
    secretKeyRef: {name: {{ $name | quote }}, key: {{ .Values.secretKeys.adminJWTSecret | quote }}}
- name: SECRET_KEY
  valueFrom:
    secretKeyRef: {name: {{ $name | quote }}, key: {{ .Values.secretKeys.secretKey | quote }}}
- name: SECRET_KEY_PREVIOUS
  valueFrom:
    secretKeyRef: {name: {{ $name | quote }}, key: {{ .Values.secretKeys.secretKeyPrevious | quote }}, optional: true}
{{- end }}

{{/*
One role's Deployment. Call with (dict "root" $ "role" "ingress").
*/}}
{{- define "postgate.deployment" -}}
{{- $root := .root }}
{{- $role := .role }}
{{- $d := index $root.Values.deployments $role }}
{{- $sel := include "postgate.roleSelectorLabels" (dict "root" $root "role" $role) }}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "postgate.fullname" $root }}-{{ $role }}
  labels:
    {{- include "postgate.labels" $root | nindent 4 }}
    app.kubernetes.io/component: {{ $role }}
spec:
  {{- if not $d.autoscaling.enabled }}
  replicas: {{ $d.replicas }}
  {{- end }}
  revisionHistoryLimit: 5
  selector:
    matchLabels:
      {{- $sel | nindent 6 }}
  strategy:
    type: RollingUpdate
    rollingUpdate:
      maxSurge: 25%
      maxUnavailable: 0
  template:
    metadata:
      labels:
        {{- $sel | nindent 8 }}
        postgate.io/metrics: "true"
        {{- with merge (deepCopy $d.podLabels) $root.Values.podLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      annotations:
        checksum/config: {{ include (print $root.Template.BasePath "/configmap.yaml") $root | sha256sum }}
        {{- if not $root.Values.existingSecret }}
        checksum/secret: {{ include (print $root.Template.BasePath "/secret.yaml") $root | sha256sum }}
        {{- end }}
        {{- with merge (deepCopy $d.podAnnotations) $root.Values.podAnnotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    spec:
      serviceAccountName: {{ include "postgate.serviceAccountName" $root }}
      automountServiceAccountToken: {{ $root.Values.serviceAccount.automountServiceAccountToken }}
      enableServiceLinks: false
      terminationGracePeriodSeconds: {{ include "postgate.gracePeriod" (dict "root" $root "role" $role) }}
      {{- with $root.Values.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $root.Values.priorityClassName }}
      priorityClassName: {{ . }}
      {{- end }}
      securityContext:
        {{- toYaml $root.Values.podSecurityContext | nindent 8 }}
      containers:
        - name: gateway
          image: {{ include "postgate.image" $root | quote }}
          imagePullPolicy: {{ $root.Values.image.pullPolicy }}
          args: ["serve", "--role={{ $role }}", "--migrate=false"]
          ports:
            - name: http
              containerPort: 8080
              protocol: TCP
            - name: metrics
              containerPort: 9090
              protocol: TCP
          envFrom:
            - configMapRef:
                name: {{ include "postgate.fullname" $root }}
          env:
            - name: HTTP_ADDR
              value: ":8080"
            - name: METRICS_ADDR
              value: ":9090"
            - name: SHUTDOWN_DELAY
              value: "{{ int $d.shutdown.delaySeconds }}s"
            - name: SHUTDOWN_TIMEOUT
              value: "{{ int $d.shutdown.timeoutSeconds }}s"
            {{- include "postgate.secretEnv" $root | nindent 12 }}
            {{- with concat $root.Values.extraEnv $d.extraEnv }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
          startupProbe:
            {{- toYaml $root.Values.probes.startup | nindent 12 }}
          livenessProbe:
            {{- toYaml $root.Values.probes.liveness | nindent 12 }}
          readinessProbe:
            {{- toYaml $root.Values.probes.readiness | nindent 12 }}
          {{- if gt (int $d.preStopSleepSeconds) 0 }}
          lifecycle:
            preStop:
              sleep:
                seconds: {{ int $d.preStopSleepSeconds }}
          {{- end }}
          resources:
            {{- toYaml $d.resources | nindent 12 }}
          securityContext:
            {{- toYaml $root.Values.securityContext | nindent 12 }}
      {{- with (default $root.Values.nodeSelector $d.nodeSelector) }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with (default $root.Values.tolerations $d.tolerations) }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with (default $root.Values.affinity $d.affinity) }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      topologySpreadConstraints:
      {{- if $d.topologySpreadConstraints }}
      {{- range $d.topologySpreadConstraints }}
        - {{- toYaml (merge (deepCopy .) (dict "labelSelector" (dict "matchLabels" ($sel | fromYaml)))) | nindent 10 }}
      {{- end }}
      {{- else }}
        - maxSkew: 1
          topologyKey: topology.kubernetes.io/zone
          whenUnsatisfiable: ScheduleAnyway
          labelSelector:
            matchLabels:
              {{- $sel | nindent 14 }}
          matchLabelKeys: [pod-template-hash]
        - maxSkew: 1
          topologyKey: kubernetes.io/hostname
          whenUnsatisfiable: ScheduleAnyway
          labelSelector:
            matchLabels:
              {{- $sel | nindent 14 }}
          matchLabelKeys: [pod-template-hash]
      {{- end }}
{{- end }}

{{/* One role's HorizontalPodAutoscaler. */}}
{{- define "postgate.hpa" -}}
{{- $root := .root }}
{{- $role := .role }}
{{- $a := (index $root.Values.deployments $role).autoscaling }}
{{- if $a.enabled }}
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: {{ include "postgate.fullname" $root }}-{{ $role }}
  labels:
    {{- include "postgate.labels" $root | nindent 4 }}
    app.kubernetes.io/component: {{ $role }}
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: {{ include "postgate.fullname" $root }}-{{ $role }}
  minReplicas: {{ $a.minReplicas }}
  maxReplicas: {{ $a.maxReplicas }}
  metrics:
    - type: Resource
      resource:
        name: cpu
        target:
          type: Utilization
          averageUtilization: {{ $a.targetCPUUtilizationPercentage }}
    {{- with $a.extraMetrics }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- with $a.behavior }}
  behavior:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}
{{- end }}

{{/* One role's PodDisruptionBudget. */}}
{{- define "postgate.pdb" -}}
{{- $root := .root }}
{{- $role := .role }}
{{- $p := (index $root.Values.deployments $role).pdb }}
{{- if $p.enabled }}
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ include "postgate.fullname" $root }}-{{ $role }}
  labels:
    {{- include "postgate.labels" $root | nindent 4 }}
    app.kubernetes.io/component: {{ $role }}
spec:
  {{- if hasKey $p "minAvailable" }}
  minAvailable: {{ $p.minAvailable }}
  {{- else }}
  maxUnavailable: {{ $p.maxUnavailable }}
  {{- end }}
  unhealthyPodEvictionPolicy: AlwaysAllow
  selector:
    matchLabels:
      {{- include "postgate.roleSelectorLabels" (dict "root" $root "role" $role) | nindent 6 }}
{{- end }}
{{- end }}
