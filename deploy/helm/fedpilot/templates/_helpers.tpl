{{/*
Names and labels. Every object is named after the release; fedpilot.validate keeps the
release name short enough for the learners' pod labels (63 characters).
*/}}
{{- define "fedpilot.fullname" -}}
{{- .Release.Name -}}
{{- end -}}

{{- define "fedpilot.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
app.kubernetes.io/name: fedpilot
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "fedpilot.selectorLabels" -}}
app.kubernetes.io/name: fedpilot
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/*
What the chart reads from the spec (values.spec): the same facts `fedpilot deploy render`
reads from a FederationSpec. Templates return strings: "true" or "" for yes/no.
*/}}
{{- define "fedpilot.port" -}}
{{- dig "runtime" "listen" "0.0.0.0:8000" (fromYaml .Values.spec) | splitList ":" | last -}}
{{- end -}}

{{- define "fedpilot.tls" -}}
{{- if not (dig "runtime" "insecure" false (fromYaml .Values.spec)) -}}true{{- end -}}
{{- end -}}

{{- define "fedpilot.auth" -}}
{{- if dig "runtime" "authorized_learners" "" (fromYaml .Values.spec) -}}true{{- end -}}
{{- end -}}

{{- define "fedpilot.learners" -}}
{{- .Values.learners.replicas | default (dig "data" "num_learners" 10 (fromYaml .Values.spec)) | int -}}
{{- end -}}

{{- define "fedpilot.tlsSecret" -}}
{{- if .Values.tls.create -}}
{{- include "fedpilot.fullname" . }}-tls
{{- else -}}
{{- required "tls.existingSecret: name the Secret with ca.crt, server.pem and server.key (or set tls.create)" .Values.tls.existingSecret -}}
{{- end -}}
{{- end -}}

{{- define "fedpilot.keysSecret" -}}
{{- if .Values.learnerKeys.create -}}
{{- include "fedpilot.fullname" . }}-learner-keys
{{- else -}}
{{- required "learnerKeys.existingSecret: name the Secret with the learners' keys (or set learnerKeys.create)" .Values.learnerKeys.existingSecret -}}
{{- end -}}
{{- end -}}

{{/*
Refuse a spec the deployment could not run, with the field and the value, as
`fedpilot deploy render` does.
*/}}
{{- define "fedpilot.validate" -}}
{{- $spec := fromYaml .Values.spec -}}
{{- if hasKey $spec "Error" -}}
{{- fail (printf "values.spec must be a YAML spec: %s" (get $spec "Error")) -}}
{{- end -}}
{{- $mode := dig "runtime" "mode" "local" $spec -}}
{{- if ne $mode "flower" -}}
{{- fail (printf "the spec's runtime.mode must be flower to deploy, got mode=%s" $mode) -}}
{{- end -}}
{{- with dig "runtime" "superlink" "" $spec -}}
{{- fail (printf "the spec's runtime.superlink must be unset: the server pod starts the SuperLink, got superlink=%s" .) -}}
{{- end -}}
{{- $listen := dig "runtime" "listen" "0.0.0.0:8000" $spec -}}
{{- if has (splitList ":" $listen | initial | join ":") (list "127.0.0.1" "localhost" "[::1]") -}}
{{- fail (printf "the spec's runtime.listen must not be a loopback address, got listen=%s" $listen) -}}
{{- end -}}
{{- $needed := dig "runtime" "min_learners_to_start" 0 $spec | int | default (dig "sampling" "min_learners" 1 $spec | int) -}}
{{- $learners := include "fedpilot.learners" . | int -}}
{{- if lt $learners $needed -}}
{{- fail (printf "the spec needs at least %d learners to start round 1, got %d learner pods" $needed $learners) -}}
{{- end -}}
{{- if gt (len .Release.Name) 40 -}}
{{- fail (printf "the release name must be at most 40 characters, got %s" .Release.Name) -}}
{{- end -}}
{{- end -}}

{{- define "fedpilot.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "fedpilot.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop:
    - ALL
{{- end -}}
