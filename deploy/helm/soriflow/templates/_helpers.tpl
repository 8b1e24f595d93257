{{/*
Shared helpers. Components are addressed by name (gateway, stt, scoring,
summarizer, tts); most helpers take a dict with `root` (the top context) and
`name` (the component).
*/}}

{{- define "soriflow.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* `<release>-soriflow`, or the release name alone when it already contains the chart name. */}}
{{- define "soriflow.fullname" -}}
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

{{/* The components in a fixed order, so renders are stable. */}}
{{- define "soriflow.components" -}}
gateway stt scoring summarizer tts
{{- end }}

{{/* The stage services the gateway calls (and only it, plus scoring -> stt). */}}
{{- define "soriflow.stages" -}}
stt scoring summarizer tts
{{- end }}

{{/* gRPC and metrics ports, as in docs/development.md and each service's settings. */}}
{{- define "soriflow.grpcPort" -}}
{{- get (dict "gateway" 50050 "stt" 50051 "scoring" 50052 "summarizer" 50053 "tts" 50054) . }}
{{- end }}
{{- define "soriflow.metricsPort" -}}
{{- get (dict "gateway" 9150 "stt" 9151 "scoring" 9152 "summarizer" 9153 "tts" 9154) . }}
{{- end }}

{{- define "soriflow.componentName" -}}
{{- printf "%s-%s" (include "soriflow.fullname" .root) .name }}
{{- end }}

{{/* host:port of a component's Service, as peers dial it. */}}
{{- define "soriflow.address" -}}
{{- $port := include "soriflow.grpcPort" .name }}
{{- if eq .name "gateway" }}{{ $port = .root.Values.gateway.service.port | toString }}{{ end }}
{{- printf "%s-%s.%s.svc:%s" (include "soriflow.fullname" .root) .name .root.Release.Namespace $port }}
{{- end }}

{{- define "soriflow.chartLabel" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object of the release. */}}
{{- define "soriflow.labels" -}}
helm.sh/chart: {{ include "soriflow.chartLabel" . }}
app.kubernetes.io/name: {{ include "soriflow.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: soriflow
{{- end }}

{{/* Selector labels of one component (dict root, name). */}}
{{- define "soriflow.selectorLabels" -}}
app.kubernetes.io/name: {{ include "soriflow.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .name }}
{{- end }}

{{- define "soriflow.componentLabels" -}}
{{ include "soriflow.labels" .root }}
app.kubernetes.io/component: {{ .name }}
{{- end }}

{{- define "soriflow.serviceAccountName" -}}
{{- $c := index .root.Values .name }}
{{- if $c.serviceAccountName }}
{{- $c.serviceAccountName }}
{{- else if .root.Values.serviceAccount.create }}
{{- default (include "soriflow.fullname" .root) .root.Values.serviceAccount.name }}
{{- else }}
{{- default "default" .root.Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
"true" when the component's model runs elsewhere (the summarizer's `openai` engine: a chat
server such as vLLM holds the model and its GPU): no model file, no GPU, the model name as is.
*/}}
{{- define "soriflow.remoteModel" -}}
{{- $c := index .root.Values .name }}
{{- if and (eq .name "summarizer") (eq ($c.engine | toString) "openai") }}true{{ end }}
{{- end }}

{{/* "true" when the component runs on a GPU (only stt and summarizer have one; never for a remote model). */}}
{{- define "soriflow.gpuOn" -}}
{{- $c := index .root.Values .name }}
{{- if and (hasKey $c "gpu") $c.gpu.enabled (not (include "soriflow.remoteModel" .)) }}true{{ end }}
{{- end }}

{{/* "true" when the summarizer runs llama.cpp in-process: its image is the `-llama` build. */}}
{{- define "soriflow.llamaCpp" -}}
{{- $c := index .root.Values .name }}
{{- if and (eq .name "summarizer") (eq ($c.engine | toString) "llama-cpp") }}true{{ end }}
{{- end }}

{{/*
The image reference of a component; GPU images switch to their CPU variant without a GPU, and
the summarizer to its llama.cpp build (`make images LLAMA=1`) with engine llama-cpp.
*/}}
{{- define "soriflow.image" -}}
{{- $v := .root.Values }}
{{- $c := index $v .name }}
{{- $tag := $c.image.tag | default $v.image.tag | default .root.Chart.AppVersion | toString }}
{{- if and (hasKey $c "gpu") (not (include "soriflow.gpuOn" .)) }}
{{- $tag = printf "%s%s" $tag $v.image.cpuTagSuffix }}
{{- end }}
{{- if include "soriflow.llamaCpp" . }}
{{- $tag = printf "%s%s" $tag $v.image.llamaTagSuffix }}
{{- end }}
{{- printf "%s/%s:%s" ($v.image.registry | trimSuffix "/") $c.image.repository $tag }}
{{- end }}

{{/*
A model spec as the service resolves it: full specs (s3://, file://, pkg:, absolute
paths) pass through; a relative name is placed under the model volume (source pvc)
or the S3 prefix (source s3); with source bundled it stays a bundled name.
Takes dict root, spec.
*/}}
{{- define "soriflow.modelSpec" -}}
{{- $m := .root.Values.models }}
{{- $spec := .spec | toString }}
{{- if or (hasPrefix "s3://" $spec) (hasPrefix "file://" $spec) (hasPrefix "pkg:" $spec) (hasPrefix "/" $spec) }}
{{- $spec }}
{{- else if eq $m.source "pvc" }}
{{- printf "%s/%s" ($m.pvc.mountPath | trimSuffix "/") $spec }}
{{- else if eq $m.source "s3" }}
{{- printf "%s/%s/" ($m.s3.prefix | trimSuffix "/") ($spec | trimSuffix "/") }}
{{- else }}
{{- $spec }}
{{- end }}
{{- end }}

{{/* The s3:// specs a component needs before it starts, one per line (dict root, name). */}}
{{- define "soriflow.s3Specs" -}}
{{- $c := index .root.Values .name }}
{{- $specs := list }}
{{- if not (include "soriflow.remoteModel" .) }}
{{- if $c.model }}{{ $specs = append $specs $c.model }}{{ end }}
{{- if $c.adapter }}{{ $specs = append $specs $c.adapter }}{{ end }}
{{- end }}
{{- range ($c.extraModels | default list) }}{{ $specs = append $specs . }}{{ end }}
{{- range $specs }}
{{- $resolved := include "soriflow.modelSpec" (dict "root" $.root "spec" .) }}
{{- if hasPrefix "s3://" $resolved }}
{{ $resolved }}
{{- end }}
{{- end }}
{{- end }}

{{/* An environment value from a values entry: strings as they are, lists and maps as JSON (pydantic reads JSON), whole numbers without an exponent. */}}
{{- define "soriflow.envValue" -}}
{{- if kindIs "string" . }}
{{- . }}
{{- else if or (kindIs "slice" .) (kindIs "map" .) }}
{{- toJson . }}
{{- else if kindIs "float64" . }}
{{- if eq . (floor .) }}{{ int64 . }}{{ else }}{{ . }}{{ end }}
{{- else if kindIs "invalid" . }}
{{- "" }}
{{- else }}
{{- toString . }}
{{- end }}
{{- end }}

{{/*
What requests may name as s3:// audio (SORIFLOW_READ_URIS), as a JSON list: readUris plus the
gateway's inputs and submissions, which the stage services read for its jobs.
*/}}
{{- define "soriflow.readUris" -}}
{{- $v := .Values }}
{{- $uris := concat ($v.readUris | default list) ($v.gateway.inputUris | default list) (list $v.gateway.submissionsUri) }}
{{- $uris | uniq | toJson }}
{{- end }}

{{/* The Secret holding the bearer token: the one named in auth.existingSecret, or the generated one. */}}
{{- define "soriflow.authSecretName" -}}
{{- .Values.auth.existingSecret | default (printf "%s-auth" (include "soriflow.fullname" .)) }}
{{- end }}

{{/* The label that lets a pod of the release namespace call the gateway's API. */}}
{{- define "soriflow.clientLabel" -}}
{{- printf "%s-client" (include "soriflow.fullname" .) }}
{{- end }}

{{/* Settings every process reads (common ConfigMap). */}}
{{- define "soriflow.commonEnv" -}}
{{- $v := .Values }}
{{- $env := dict
  "SORIFLOW_LOG_LEVEL" $v.logging.level
  "SORIFLOW_LOG_FORMAT" $v.logging.format
  "SORIFLOW_AWS_REGION" $v.aws.region
  "SORIFLOW_CACHE_DIR" "/var/cache/soriflow"
  "SORIFLOW_HOST" "0.0.0.0"
}}
{{- if $v.aws.s3EndpointUrl }}
{{- $_ := set $env "SORIFLOW_S3_ENDPOINT_URL" $v.aws.s3EndpointUrl }}
{{- end }}
{{- $_ := set $env "SORIFLOW_READ_URIS" (include "soriflow.readUris" . | fromJsonArray | toJson) }}
{{- range $name := splitList " " (include "soriflow.components" .) }}
{{- $_ := set $env (printf "SORIFLOW_%s_ADDRESS" (upper $name)) (include "soriflow.address" (dict "root" $ "name" $name)) }}
{{- end }}
{{- if $v.tls.enabled }}
{{- $_ := set $env "SORIFLOW_TLS_CERT_FILE" "/etc/soriflow/tls/tls.crt" }}
{{- $_ := set $env "SORIFLOW_TLS_KEY_FILE" "/etc/soriflow/tls/tls.key" }}
{{- $_ := set $env "SORIFLOW_TLS_CA_FILE" "/etc/soriflow/tls/ca.crt" }}
{{- end }}
{{- toYaml $env }}
{{- end }}

{{/* Settings of one component (its ConfigMap); `settings` entries override the chart's. */}}
{{- define "soriflow.componentEnv" -}}
{{- $root := .root }}
{{- $name := .name }}
{{- $c := index $root.Values $name }}
{{- $gpu := include "soriflow.gpuOn" . }}
{{- $env := dict
  "SORIFLOW_PORT" (include "soriflow.grpcPort" $name)
  "SORIFLOW_METRICS_PORT" (include "soriflow.metricsPort" $name)
  "SORIFLOW_GRACE_PERIOD_S" (include "soriflow.envValue" $c.gracePeriodSeconds)
}}
{{- if eq $name "gateway" }}
{{- if $c.queueUrl }}{{ $_ := set $env "SORIFLOW_GATEWAY_QUEUE_URL" $c.queueUrl }}{{ end }}
{{- $_ := set $env "SORIFLOW_GATEWAY_OUTPUT_URI" $c.outputUri }}
{{- $_ := set $env "SORIFLOW_GATEWAY_SUBMISSIONS_URI" $c.submissionsUri }}
{{- $_ := set $env "SORIFLOW_GATEWAY_CONCURRENCY" (include "soriflow.envValue" $c.concurrency) }}
{{- if $c.inputUris }}{{ $_ := set $env "SORIFLOW_GATEWAY_INPUT_URIS" (toJson $c.inputUris) }}{{ end }}
{{- with $c.notifications.snsTopicArn }}{{ $_ := set $env "SORIFLOW_GATEWAY_SNS_TOPIC_ARN" . }}{{ end }}
{{- with $c.notifications.webhookUrl }}{{ $_ := set $env "SORIFLOW_GATEWAY_WEBHOOK_URL" . }}{{ end }}
{{- if not $c.database.existingSecret }}
{{- $_ := set $env "SORIFLOW_GATEWAY_DATABASE_URL" "sqlite:////var/lib/soriflow/jobs.db" }}
{{- else if include "soriflow.migrationHook" $root }}
{{- /* the pre-install/pre-upgrade Job has upgraded the schema: a gateway never migrates, and refuses a schema it was not built for */}}
{{- $_ := set $env "SORIFLOW_GATEWAY_DATABASE_UPGRADE" "false" }}
{{- end }}
{{- $images := $c.images }}
{{- $_ := set $env "SORIFLOW_IMAGE_ENGINE" $images.engine }}
{{- with $images.openai.model }}{{ $_ := set $env "SORIFLOW_IMAGE_OPENAI_MODEL" . }}{{ end }}
{{- with $images.openai.baseUrl }}{{ $_ := set $env "SORIFLOW_IMAGE_OPENAI_BASE_URL" . }}{{ end }}
{{- with $images.bedrock.modelId }}{{ $_ := set $env "SORIFLOW_IMAGE_BEDROCK_MODEL_ID" . }}{{ end }}
{{- with $images.bedrock.region }}{{ $_ := set $env "SORIFLOW_IMAGE_BEDROCK_REGION" . }}{{ end }}
{{- with $images.bedrock.endpointUrl }}{{ $_ := set $env "SORIFLOW_IMAGE_BEDROCK_ENDPOINT_URL" . }}{{ end }}
{{- if or $c.pipelines $c.existingPipelinesConfigMap }}
{{- $_ := set $env "SORIFLOW_GATEWAY_PIPELINES_FILE" "/etc/soriflow/pipelines/pipelines.yaml" }}
{{- end }}
{{- else if eq $name "stt" }}
{{- $_ := set $env "SORIFLOW_STT_ENGINE" $c.engine }}
{{- $_ := set $env "SORIFLOW_STT_MODEL" (include "soriflow.modelSpec" (dict "root" $root "spec" $c.model)) }}
{{- $_ := set $env "SORIFLOW_STT_DEVICE" (ternary "cuda" "cpu" (eq $gpu "true")) }}
{{- $_ := set $env "SORIFLOW_STT_COMPUTE_TYPE" $c.computeType }}
{{- else if eq $name "summarizer" }}
{{- $_ := set $env "SORIFLOW_SUMMARIZER_ENGINE" $c.engine }}
{{- if include "soriflow.remoteModel" . }}
{{- /* the name the chat server serves, as is: not a file under the model volume or prefix */}}
{{- $_ := set $env "SORIFLOW_SUMMARIZER_MODEL" ($c.model | toString) }}
{{- with $c.openai.baseUrl }}{{ $_ := set $env "SORIFLOW_SUMMARIZER_OPENAI_BASE_URL" . }}{{ end }}
{{- if $c.openai.apiKey.existingSecret }}
{{- $_ := set $env "SORIFLOW_SUMMARIZER_OPENAI_API_KEY_FILE" (printf "%s/api-key" (include "soriflow.summarizerKeyDir" .)) }}
{{- end }}
{{- else }}
{{- $_ := set $env "SORIFLOW_SUMMARIZER_MODEL" (include "soriflow.modelSpec" (dict "root" $root "spec" $c.model)) }}
{{- end }}
{{- if $c.adapter }}
{{- $_ := set $env "SORIFLOW_SUMMARIZER_ADAPTER" (include "soriflow.modelSpec" (dict "root" $root "spec" $c.adapter)) }}
{{- end }}
{{- $_ := set $env "SORIFLOW_SUMMARIZER_DEVICE" (ternary "cuda" "cpu" (eq $gpu "true")) }}
{{- end }}
{{- range $field, $value := ($c.settings | default dict) }}
{{- $_ := set $env (printf "SORIFLOW_%s" (upper $field)) (include "soriflow.envValue" $value) }}
{{- end }}
{{- toYaml $env }}
{{- end }}

{{/* Where the summarizer's chat-server API key is mounted (a Secret volume). */}}
{{- define "soriflow.summarizerKeyDir" -}}
/var/run/secrets/soriflow/llm
{{- end }}

{{/*
"true" when a pre-install/pre-upgrade Job upgrades the job store's schema (`soriflow db upgrade`):
PostgreSQL (gateway.database.existingSecret) with gateway.database.migrations.mode=hook. The
embedded SQLite file lives in the gateway pod's emptyDir, out of a Job's reach: that gateway
upgrades it at start.
*/}}
{{- define "soriflow.migrationHook" -}}
{{- $gw := .Values.gateway }}
{{- if and $gw.enabled $gw.database.existingSecret (eq $gw.database.migrations.mode "hook") }}true{{ end }}
{{- end }}

{{/* Probes: native gRPC health checks; with TLS the kubelet cannot speak it, so `soriflow health` runs in the container. */}}
{{- define "soriflow.probeHandler" -}}
{{- $port := include "soriflow.grpcPort" .name | int }}
{{- if .root.Values.tls.enabled }}
{{- /* leave the CLI's own start-up (about 1-2 s) inside the probe's timeout */}}
{{- $timeout := max 1 (sub (.probe.timeoutSeconds | default 1 | int) 2) }}
exec:
  command: [soriflow, health, {{ printf "localhost:%d" $port | quote }}, --timeout, {{ $timeout | quote }}]
{{- else }}
grpc:
  port: {{ $port }}
{{- end }}
{{- end }}

{{/* Replicas are left to the autoscaler when one manages the component. */}}
{{- define "soriflow.autoscaled" -}}
{{- $c := index .root.Values .name }}
{{- if or $c.autoscaling.enabled (and (hasKey $c "keda") $c.keda.enabled) }}true{{ end }}
{{- end }}

{{/* Default spread: over zones, then nodes; soft so that small clusters still schedule. */}}
{{- define "soriflow.topologySpread" -}}
{{- $c := index .root.Values .name }}
{{- if $c.topologySpreadConstraints }}
{{- toYaml $c.topologySpreadConstraints }}
{{- else if .root.Values.topologySpread.enabled }}
{{- range $key := list "topology.kubernetes.io/zone" "kubernetes.io/hostname" }}
- maxSkew: {{ $.root.Values.topologySpread.maxSkew }}
  topologyKey: {{ $key }}
  whenUnsatisfiable: ScheduleAnyway
  labelSelector:
    matchLabels:
      {{- include "soriflow.selectorLabels" $ | nindent 6 }}
  matchLabelKeys: [pod-template-hash]
{{- end }}
{{- end }}
{{- end }}

{{/*
Shutdown grace of a component (dict root, name): how long in-flight work may finish on
SIGTERM (SORIFLOW_GRACE_PERIOD_S); `settings.grace_period_s` overrides gracePeriodSeconds.
*/}}
{{- define "soriflow.gracePeriod" -}}
{{- $c := index .root.Values .name }}
{{- $settings := $c.settings | default dict }}
{{- if hasKey $settings "grace_period_s" }}
{{- get $settings "grace_period_s" | float64 }}
{{- else }}
{{- $c.gracePeriodSeconds | float64 }}
{{- end }}
{{- end }}

{{/* Seconds a pod needs after its grace period to close clients and hand work back. */}}
{{- define "soriflow.shutdownMargin" -}}
10
{{- end }}

{{/*
The least terminationGracePeriodSeconds that lets a component finish its shutdown (dict root,
name): stage services drain RPCs for one grace period; the gateway drains RPCs, then its
consumer and running jobs, each for up to one grace period.
*/}}
{{- define "soriflow.terminationNeeded" -}}
{{- $grace := include "soriflow.gracePeriod" . | float64 }}
{{- $phases := ternary 2 1 (eq .name "gateway") }}
{{- addf (mulf $grace $phases) (include "soriflow.shutdownMargin" . | float64) }}
{{- end }}

{{/*
The model cache of a component (dict root, name): models.cache.type, where `auto` means a
node-level hostPath cache for components that pull s3:// models (downloaded once per node,
not once per replica) and a pod emptyDir for the others (nothing is downloaded there).
*/}}
{{- define "soriflow.cacheType" -}}
{{- $type := .root.Values.models.cache.type }}
{{- if eq $type "auto" }}
{{- ternary "hostPath" "emptyDir" (ne (include "soriflow.s3Specs" . | trim) "") }}
{{- else }}
{{- $type }}
{{- end }}
{{- end }}
