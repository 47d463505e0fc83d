{{/* Env of the agent (and of the helm test pod). */}}
{{/* Env of the agent, or with check=true of the helm test pod (no serving, no election). Arg: dict root, check. */}}
{{- define "la.env" -}}
{{- $check := .check -}}
{{- $root := .root -}}
{{- $v := $root.Values -}}
- name: HOME
  value: /home/launch_agent
{{- if not $v.oidc.enabled }}
{{- if $v.apiKeySecret.mountAsFile }}
- name: WANDB_API_KEY_FILE
  value: /etc/launch-agent/api-key/{{ $v.apiKeySecret.key }}
{{- else }}
- name: WANDB_API_KEY
  valueFrom:
    secretKeyRef:
      name: {{ include "la.apiKeySecretName" $root }}
      key: {{ $v.apiKeySecret.key }}
{{- end }}
{{- else }}
- name: WANDB_IDENTITY_TOKEN_FILE
  value: {{ $v.oidc.tokenPath }}/token
- name: WANDB_CREDENTIALS_FILE
  value: /home/launch_agent/.cache/wandb/credentials.json
{{- end }}
- name: WANDB_BASE_URL
  valueFrom:
    configMapKeyRef:
      name: {{ include "la.configMapName" $root }}
      key: wandb-base-url
- name: WANDB_LAUNCH_SERVICE_ACCOUNT_NAME
{{- with include "la.kanikoServiceAccount" $root }}
  value: {{ . | quote }}
{{- else }}
  valueFrom:
    fieldRef:
      fieldPath: spec.serviceAccountName
{{- end }}
- name: WANDB_LAUNCH_START_TIMEOUT
  value: {{ $v.agent.startTimeout | toString | quote }}
- name: WANDB_RELEASE_NAME
  value: {{ $root.Release.Name | quote }}
- name: LAUNCH_AGENT_TARGET_NAMESPACES
  value: {{ include "la.targets" $root | fromJsonArray | join "," | quote }}
- name: LAUNCH_AGENT_JOB_SECRETS
  value: {{ $v.rbac.jobSecrets | quote }}
{{- if include "la.rustAgent" $root }}
# The GPU pre-check lists nodes and pods cluster-wide: only with its ClusterRole.
- name: LAUNCH_AGENT_PRECHECK
  value: {{ $v.rbac.precheck.enabled | toString | quote }}
{{- end }}
{{- if and (include "la.rustAgent" $root) (not $check) }}
- name: LAUNCH_AGENT_HEALTH_ADDR
  value: ":{{ $v.health.port }}"
{{- if $v.metrics.enabled }}
- name: LAUNCH_AGENT_METRICS_ADDR
  value: ":{{ $v.metrics.port }}"
{{- end }}
{{- end }}
{{- if and (include "la.leaderElection" $root) (not $check) }}
- name: LAUNCH_AGENT_LEADER_ELECTION
  value: "true"
- name: LAUNCH_AGENT_LEASE_NAME
  value: {{ include "la.leaseName" $root | quote }}
- name: LAUNCH_AGENT_LEASE_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
- name: LAUNCH_AGENT_LEASE_DURATION_SECONDS
  value: {{ $v.leaderElection.leaseDurationSeconds | toString | quote }}
- name: LAUNCH_AGENT_RENEW_DEADLINE_SECONDS
  value: {{ $v.leaderElection.renewDeadlineSeconds | toString | quote }}
- name: LAUNCH_AGENT_RETRY_PERIOD_SECONDS
  value: {{ $v.leaderElection.retryPeriodSeconds | toString | quote }}
- name: POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
{{- end }}
{{- $ca := include "la.ca" $root | fromJson }}
{{- if $ca.name }}
{{- $file := printf "/etc/launch-agent/ca/%s" $ca.key }}
{{- if not (include "la.rustAgent" $root) }}
# W&B's Python agent only reads a replacement bundle for its HTTP client.
- name: REQUESTS_CA_BUNDLE
  value: {{ $file }}
{{- else if eq $v.customCABundle.mode "replace" }}
- name: SSL_CERT_FILE
  value: {{ $file }}
- name: REQUESTS_CA_BUNDLE
  value: {{ $file }}
- name: GIT_SSL_CAINFO
  value: {{ $file }}
{{- else }}
- name: LAUNCH_AGENT_EXTRA_CA_FILE
  value: {{ $file }}
{{- end }}
{{- end }}
{{- with include "la.kanikoPvc" $root }}
- name: WANDB_LAUNCH_KANIKO_PVC_NAME
  value: {{ . | quote }}
- name: WANDB_LAUNCH_KANIKO_PVC_MOUNT_PATH
  value: /home/launch_agent/kaniko
{{- end }}
{{- with include "la.kanikoDockerConfig" $root }}
- name: WANDB_LAUNCH_KANIKO_AUTH_SECRET
  value: {{ . | quote }}
{{- end }}
{{- if include "la.pushSecretMount" $root }}
# The same Secret, mounted: the image-exists check's credentials when it names the
# destination, unless the launch config sets builder.registry-credentials-file.
- name: LAUNCH_AGENT_REGISTRY_CREDENTIALS_FILE
  value: /etc/launch-agent/registry/config.json
{{- end }}
{{- with include "la.azureSecret" $root }}
- name: LAUNCH_AGENT_AZURE_STORAGE_SECRET
  value: {{ . | quote }}
{{- end }}
{{- with $v.codeMountPvcName }}
- name: WANDB_LAUNCH_CODE_PVC_NAME
  value: {{ . | quote }}
- name: WANDB_LAUNCH_CODE_PVC_MOUNT_PATH
  value: /home/launch_agent/code
{{- end }}
{{- with $v.additionalEnvVars }}
{{- include "la.envPairs" . }}
{{- end }}
{{- $full := include "la.fullname" $root }}
{{- range include "la.secretEnvNames" $root | fromJsonArray }}
- name: {{ . | quote }}
  valueFrom:
    secretKeyRef:
      name: {{ $full }}-env
      key: {{ . | quote }}
{{- end }}
{{- with $v.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Volume mounts of the agent (and of the helm test pod). */}}
{{- define "la.volumeMounts" -}}
{{- $v := .Values -}}
- name: home
  mountPath: /home/launch_agent
- name: tmp
  mountPath: /tmp
- name: kube-api-access
  mountPath: /var/run/secrets/kubernetes.io/serviceaccount
  readOnly: true
- name: wandb-launch-config
  mountPath: /home/launch_agent/.config/wandb/launch-config.yaml
  subPath: launch-config.yaml
  readOnly: true
{{- if and (not $v.oidc.enabled) $v.apiKeySecret.mountAsFile }}
- name: api-key
  mountPath: /etc/launch-agent/api-key
  readOnly: true
{{- end }}
{{- if $v.oidc.enabled }}
- name: oidc-token
  mountPath: {{ $v.oidc.tokenPath }}
  readOnly: true
{{- end }}
{{- if include "la.gitCredsSecret" . }}
- name: git-creds
  mountPath: /home/launch_agent/.git-credentials
  subPath: .git-credentials
  readOnly: true
- name: git-creds
  mountPath: /home/launch_agent/.gitconfig
  subPath: .gitconfig
  readOnly: true
{{- end }}
{{- if $v.sshAuthSecrets }}
- name: ssh-config
  mountPath: /home/launch_agent/.ssh/config
  subPath: config
  readOnly: true
- name: ssh-config
  mountPath: /home/launch_agent/.ssh/known_hosts
  subPath: known_hosts
  readOnly: true
{{- range $i, $s := $v.sshAuthSecrets }}
- name: ssh-key-{{ $i }}
  mountPath: /home/launch_agent/.ssh/id_repo{{ $i }}
  subPath: ssh-privatekey
  readOnly: true
{{- end }}
{{- end }}
{{- if (include "la.ca" . | fromJson).name }}
- name: custom-ca
  mountPath: /etc/launch-agent/ca
  readOnly: true
{{- end }}
{{- if include "la.kanikoPvc" . }}
- name: kaniko-pvc
  mountPath: /home/launch_agent/kaniko
{{- end }}
{{- if include "la.pushSecretMount" . }}
- name: registry-credentials
  mountPath: /etc/launch-agent/registry
  readOnly: true
{{- end }}
{{- if $v.codeMountPvcName }}
- name: code-pvc
  mountPath: /home/launch_agent/code
{{- end }}
{{- with $v.extraVolumeMounts }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Volumes of the agent pod (and of the helm test pod). */}}
{{- define "la.volumes" -}}
{{- $v := .Values -}}
- name: home
  emptyDir: {}
- name: tmp
  emptyDir: {}
# The agent's API token, explicitly (automountServiceAccountToken is off).
- name: kube-api-access
  projected:
    defaultMode: 0444
    sources:
      - serviceAccountToken:
          path: token
          expirationSeconds: 3607
      - configMap:
          name: kube-root-ca.crt
          items:
            - key: ca.crt
              path: ca.crt
      - downwardAPI:
          items:
            - path: namespace
              fieldRef:
                apiVersion: v1
                fieldPath: metadata.namespace
- name: wandb-launch-config
  configMap:
    name: {{ include "la.configMapName" . }}
{{- if and (not $v.oidc.enabled) $v.apiKeySecret.mountAsFile }}
- name: api-key
  secret:
    secretName: {{ include "la.apiKeySecretName" . }}
    defaultMode: 0440
{{- end }}
{{- if $v.oidc.enabled }}
- name: oidc-token
  projected:
    sources:
      - serviceAccountToken:
          path: token
          {{- with $v.oidc.audience }}
          audience: {{ . | quote }}
          {{- end }}
          expirationSeconds: {{ $v.oidc.expirationSeconds }}
{{- end }}
{{- with include "la.gitCredsSecret" . }}
- name: git-creds
  secret:
    secretName: {{ . }}
    defaultMode: 0440
{{- end }}
{{- if $v.sshAuthSecrets }}
- name: ssh-config
  configMap:
    name: ssh-config-{{ .Release.Name }}
{{- range $i, $s := $v.sshAuthSecrets }}
- name: ssh-key-{{ $i }}
  secret:
    secretName: {{ $s.name }}
    defaultMode: 0440
{{- end }}
{{- end }}
{{- $ca := include "la.ca" . | fromJson }}
{{- if $ca.name }}
- name: custom-ca
  {{- if eq $ca.kind "configMap" }}
  configMap:
    name: {{ $ca.name }}
    items:
      - key: {{ $ca.key }}
        path: {{ $ca.key }}
  {{- else }}
  secret:
    secretName: {{ $ca.name }}
    items:
      - key: {{ $ca.key }}
        path: {{ $ca.key }}
  {{- end }}
{{- end }}
{{- with include "la.kanikoPvc" . }}
- name: kaniko-pvc
  persistentVolumeClaim:
    claimName: {{ . }}
{{- end }}
{{- with include "la.pushSecretMount" . }}
- name: registry-credentials
  secret:
    secretName: {{ . }}
    defaultMode: 0440
    items:
      - key: .dockerconfigjson
        path: config.json
{{- end }}
{{- with $v.codeMountPvcName }}
- name: code-pvc
  persistentVolumeClaim:
    claimName: {{ . }}
{{- end }}
{{- with $v.extraVolumes }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Pod-level fields shared by the agent and the helm test pod. */}}
{{- define "la.podCommon" -}}
serviceAccountName: {{ include "la.serviceAccountName" . }}
automountServiceAccountToken: false
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.agent.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.agent.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.agent.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- end -}}
