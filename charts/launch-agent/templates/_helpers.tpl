{{/* Chart name. */}}
{{- define "la.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* `launch-agent-<release>`: the Deployment name of W&B's chart, kept for in-place upgrades. */}}
{{- define "la.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" (include "la.name" .) .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* The namespace of every object: `namespace`, else the release namespace. */}}
{{- define "la.namespace" -}}
{{- default .Release.Namespace .Values.namespace -}}
{{- end -}}

{{/* Target namespaces as a JSON list: additionalTargetNamespaces plus the agent namespace. */}}
{{- define "la.targets" -}}
{{- $ns := include "la.namespace" . -}}
{{- $all := concat (list $ns) (.Values.additionalTargetNamespaces | default list) | uniq -}}
{{- toJson $all -}}
{{- end -}}

{{- define "la.serviceAccountName" -}}
{{- if .Values.serviceAccount.name -}}
{{- .Values.serviceAccount.name -}}
{{- else if .Values.serviceAccount.create -}}
{{- printf "wandb-launch-serviceaccount-%s" .Release.Name -}}
{{- else -}}
default
{{- end -}}
{{- end -}}

{{- define "la.configMapName" -}}
{{- printf "wandb-launch-configmap-%s" .Release.Name -}}
{{- end -}}

{{/* The API-key Secret the pod reads. */}}
{{- define "la.apiKeySecretName" -}}
{{- default (printf "wandb-api-key-%s" .Release.Name) .Values.apiKeySecret.name -}}
{{- end -}}

{{/* "true" when the chart makes the API-key Secret. */}}
{{- define "la.createApiKeySecret" -}}
{{- if and (not .Values.oidc.enabled) (not .Values.agent.useExternalWandbSecret) (not .Values.apiKeySecret.name) (not .Values.externalSecret.enabled) -}}
true
{{- end -}}
{{- end -}}

{{/* "true" unless the image is W&B's Python agent, which has no probes, metrics or election. */}}
{{- define "la.rustAgent" -}}
{{- if not (hasPrefix "wandb/launch-agent" (.Values.agent.image | default "")) -}}
true
{{- end -}}
{{- end -}}

{{/* "true" when leader election runs. */}}
{{- define "la.leaderElection" -}}
{{- if and (include "la.rustAgent" .) .Values.leaderElection.enabled (gt (int .Values.replicaCount) 1) -}}
true
{{- end -}}
{{- end -}}

{{- define "la.leaseName" -}}
{{- default (include "la.fullname" .) .Values.leaderElection.leaseName -}}
{{- end -}}

{{- define "la.image" -}}
{{- if .Values.agent.image -}}
{{- .Values.agent.image -}}
{{- else -}}
{{- $repo := .Values.image.repository -}}
{{- if .Values.image.registry -}}{{- $repo = printf "%s/%s" .Values.image.registry $repo -}}{{- end -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" $repo .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" $repo (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "la.pullPolicy" -}}
{{- default .Values.image.pullPolicy .Values.agent.imagePullPolicy -}}
{{- end -}}

{{- define "la.kanikoPvc" -}}
{{- default .Values.kaniko.pvc.existingClaim .Values.kanikoPvcName -}}
{{- end -}}

{{- define "la.kanikoDockerConfig" -}}
{{- default .Values.kaniko.dockerConfigSecret .Values.kanikoDockerConfigSecret -}}
{{- end -}}

{{/* The push Secret mounted into the rlaunch agent for its image-exists check, if any. */}}
{{- define "la.pushSecretMount" -}}
{{- if include "la.rustAgent" . -}}{{ include "la.kanikoDockerConfig" . }}{{- end -}}
{{- end -}}

{{- define "la.gitCredsSecret" -}}
{{- if .Values.gitCredsSecret -}}{{ .Values.gitCredsSecret }}{{- else if .Values.gitCreds -}}{{ include "la.fullname" . }}-git-creds{{- end -}}
{{- end -}}

{{- define "la.azureSecret" -}}
{{- if .Values.azureStorageAccessKeySecret -}}{{ .Values.azureStorageAccessKeySecret }}{{- else if .Values.azureStorageAccessKey -}}{{ include "la.fullname" . }}-azure-storage{{- end -}}
{{- end -}}

{{/* Custom CA source as a dict {kind, name, key}, empty when none. */}}
{{- define "la.ca" -}}
{{- $cm := .Values.customCABundle.configMap | default dict -}}
{{- $s := .Values.customCABundle.secret | default dict -}}
{{- if $cm.name -}}
{{- toJson (dict "kind" "configMap" "name" $cm.name "key" $cm.key) -}}
{{- else if $s.name -}}
{{- toJson (dict "kind" "secret" "name" $s.name "key" $s.key) -}}
{{- else -}}
{}
{{- end -}}
{{- end -}}

{{/* Env list from a list of {name, value} or a map; values always strings. Arg: the list or map. */}}
{{- define "la.envPairs" -}}
{{- if kindIs "map" . -}}
{{- range $k, $v := . }}
- name: {{ $k | quote }}
  value: {{ $v | toString | quote }}
{{- end -}}
{{- else -}}
{{- range . }}
- name: {{ .name | quote }}
  value: {{ .value | toString | quote }}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Names of additionalSecretEnvVars, sorted, from a list or a map. */}}
{{- define "la.secretEnvNames" -}}
{{- $names := list -}}
{{- if kindIs "map" .Values.additionalSecretEnvVars -}}
{{- $names = keys .Values.additionalSecretEnvVars -}}
{{- else -}}
{{- range .Values.additionalSecretEnvVars }}{{ $names = append $names .name }}{{ end -}}
{{- end -}}
{{- toJson (sortAlpha $names) -}}
{{- end -}}

{{/* Selector labels: W&B's `app` label (the Deployment selector is immutable). */}}
{{- define "la.selectorLabels" -}}
app: launch-agent-{{ .Release.Name }}
{{- end -}}

{{- define "la.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "la.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* The enabled CustomWorkload groups, as a JSON list. */}}
{{- define "la.workloadGroups" -}}
{{- $p := .Values.rbac.presets -}}
{{- $g := list -}}
{{- if or $p.volcano .Values.volcano }}{{ $g = append $g "batch.volcano.sh" }}{{ end -}}
{{- if $p.kubeflow }}{{ $g = concat $g (list "kubeflow.org" "trainer.kubeflow.org") }}{{ end -}}
{{- if $p.jobset }}{{ $g = append $g "jobset.x-k8s.io" }}{{ end -}}
{{- if $p.ray }}{{ $g = append $g "ray.io" }}{{ end -}}
{{- if $p.leaderWorkerSet }}{{ $g = append $g "leaderworkerset.x-k8s.io" }}{{ end -}}
{{- toJson $g -}}
{{- end -}}

{{/* RBAC rules of files/rbac-rules.yaml that apply. Arg: dict root, scope. YAML list. */}}
{{- define "la.rules" -}}
{{- $root := .root -}}
{{- $v := $root.Values -}}
{{- $groups := include "la.workloadGroups" $root | fromJsonArray -}}
{{- $data := $root.Files.Get "files/rbac-rules.yaml" | fromYaml -}}
{{- range $data.rules -}}
{{- $need := .need -}}
{{- $on := or (eq $need "Always")
      (and (eq $need "CreatedSecrets") (eq $v.rbac.jobSecrets "perRun"))
      (and (eq $need "AdditionalServices") $v.rbac.presets.auxiliaryResources)
      (and (eq $need "CustomWorkload") (has .group $groups))
      (and (eq $need "Precheck") $v.rbac.precheck.enabled) -}}
{{- if and $on (eq .scope $.scope) }}
- apiGroups: [{{ .group | quote }}]
  resources: [{{ .resource | quote }}]
  verbs: {{ toJson .verbs }}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Container security context. */}}
{{- define "la.securityContext" -}}
{{ toYaml .Values.securityContext }}
{{- end -}}

{{/* checkov suppressions for the agent's pod owner, each with its reason. Arg: root. */}}
{{- define "la.checkovSkips" -}}
checkov.io/skip1: CKV_K8S_11=no CPU limit on purpose; throttling the poll loop would miss heartbeats, the request reserves CPU
checkov.io/skip2: CKV_K8S_15=IfNotPresent on purpose; the image is pinned by tag or digest (image.digest)
checkov.io/skip3: CKV2_K8S_6=egress to the W&B API is site-specific; add a NetworkPolicy for your site
{{- if and (not .Values.apiKeySecret.mountAsFile) (not .Values.oidc.enabled) }}
checkov.io/skip4: CKV_K8S_35=W&B's agent contract reads WANDB_API_KEY; set apiKeySecret.mountAsFile or oidc.enabled to avoid it
{{- else if .Values.additionalSecretEnvVars }}
checkov.io/skip4: CKV_K8S_35=additionalSecretEnvVars are env vars by definition (W&B's key); mount such Secrets with extraVolumes to avoid it
{{- end }}
{{- if and (not .Values.image.digest) (not (contains "@sha256:" (.Values.agent.image | default ""))) }}
checkov.io/skip5: CKV_K8S_43=no digest given; set image.digest to pin the image
{{- end }}
{{- end -}}

{{/* The build pods' ServiceAccount, empty when they use the agent's. */}}
{{- define "la.kanikoServiceAccount" -}}
{{- $k := .Values.kaniko.serviceAccount -}}
{{- if $k.name -}}{{ $k.name }}{{- else if $k.create -}}{{ include "la.fullname" . }}-kaniko{{- end -}}
{{- end -}}
