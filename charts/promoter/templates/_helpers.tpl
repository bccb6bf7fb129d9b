{{/* Names and labels shared by every template. */}}

{{- define "promoter.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
The prefix of what is named per release. A release named like the chart ("promoter") gets the plain
names the docs use (promoter-operator, promoter-tracking). Cluster-scoped names add the namespace:
promoter.clusterFullname.
*/}}
{{- define "promoter.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/*
The prefix of cluster-scoped names (ClusterRoles, ClusterRoleBindings, and namespaced objects the
chart puts in a namespace another release may share, such as Argo CD's): the release's prefix and
its namespace, so that two releases of one name in two namespaces (the GitOps layout's `promoter`
in `staging` and in `production`, one cluster) never claim the same object. The release installed
the documented way (release `promoter` in namespace `promoter`) keeps the plain names the docs use:
promoter-editor, promoter-approver, promoter-operator-cluster.
*/}}
{{- define "promoter.clusterFullname" -}}
{{- $fullname := include "promoter.fullname" . -}}
{{- if eq $fullname .Release.Namespace -}}
{{- $fullname -}}
{{- else -}}
{{- printf "%s-%s" $fullname .Release.Namespace -}}
{{- end -}}
{{- end -}}

{{- define "promoter.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Selector labels of one component: call with (dict "root" $ "component" "operator"). */}}
{{- define "promoter.selectorLabels" -}}
app.kubernetes.io/name: {{ include "promoter.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* Every object's labels: call with (dict "root" $ "component" "operator"). */}}
{{- define "promoter.labels" -}}
{{ include "promoter.selectorLabels" . }}
app.kubernetes.io/part-of: promoter
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
helm.sh/chart: {{ include "promoter.chart" .root }}
{{- with .root.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* The image: a digest wins over the tag; no tag: the chart's appVersion. */}}
{{- define "promoter.image" -}}
{{- $image := .Values.image -}}
{{- if $image.digest -}}
{{- printf "%s@%s" $image.repository $image.digest -}}
{{- else -}}
{{- printf "%s:%s" $image.repository (default .Chart.AppVersion $image.tag) -}}
{{- end -}}
{{- end -}}

{{/* The namespaces the operator drives: watchNamespaces, or the release's. */}}
{{- define "promoter.watchNamespaces" -}}
{{- if .Values.operator.watchNamespaces -}}
{{- toJson .Values.operator.watchNamespaces -}}
{{- else -}}
{{- toJson (list .Release.Namespace) -}}
{{- end -}}
{{- end -}}

{{- define "promoter.trackingService" -}}
{{- printf "%s-tracking" (include "promoter.fullname" .) -}}
{{- end -}}

{{/*
The tracking server's --allowed-hosts: every name of its Service in the cluster, bare and with the
port, localhost (any port: port-forward), then tracking.allowedHosts (e.g. an Ingress host).
*/}}
{{- define "promoter.trackingAllowedHosts" -}}
{{- $service := include "promoter.trackingService" . -}}
{{- $hosts := list -}}
{{- range $name := list $service (printf "%s.%s" $service .Release.Namespace) (printf "%s.%s.svc" $service .Release.Namespace) (printf "%s.%s.svc.cluster.local" $service .Release.Namespace) -}}
{{- $hosts = append $hosts $name -}}
{{- $hosts = append $hosts (printf "%s:%d" $name (int $.Values.tracking.port)) -}}
{{- end -}}
{{- $hosts = concat $hosts (list "localhost" "localhost:*") .Values.tracking.allowedHosts -}}
{{- join "," $hosts -}}
{{- end -}}

{{/* The URI the operator, its Workflow steps and the serving pods reach MLflow at; empty: none. */}}
{{- define "promoter.trackingUri" -}}
{{- if .Values.tracking.enabled -}}
{{- printf "http://%s.%s.svc:%d" (include "promoter.trackingService" .) .Release.Namespace (int .Values.tracking.port) -}}
{{- else -}}
{{- .Values.tracking.externalUri -}}
{{- end -}}
{{- end -}}

{{/*
How one component's pods log in to Vault: its OWN role and path (manifests/vault/roles.yaml), with
a projected service-account token for Vault's audience (the default token's audience is the API
server, which the roles refuse). The same shape the operator gives its own pods
(promoter.vault_setup.VaultLayout.pod). Call with (dict "root" $ "role" "promoter-server" "path"
"promoter/server"); "env" renders the variables, "volume" and "mount" the token.
*/}}
{{- define "promoter.vaultEnv" -}}
{{- if .root.Values.vault.addr }}
- {name: VAULT_ADDR, value: {{ .root.Values.vault.addr | quote }}}
- {name: VAULT_AUTH_METHOD, value: kubernetes}
- {name: VAULT_ROLE, value: {{ .role | quote }}}
- {name: VAULT_SECRET_PATH, value: {{ .path | quote }}}
- {name: VAULT_KV_MOUNT, value: {{ .root.Values.vault.kvMount | quote }}}
- {name: VAULT_CREDENTIAL_FILE, value: /var/run/secrets/vault/token}
{{- end }}
{{- end -}}

{{- define "promoter.vaultVolume" -}}
{{- if .Values.vault.addr }}
- name: vault-token
  projected:
    sources:
      - serviceAccountToken: {audience: {{ .Values.vault.audience | quote }}, path: token, expirationSeconds: 3600}
{{- end }}
{{- end -}}

{{- define "promoter.vaultMount" -}}
{{- if .Values.vault.addr }}
- {name: vault-token, mountPath: /var/run/secrets/vault, readOnly: true}
{{- end }}
{{- end -}}

{{/* Non-root, no privilege, read-only root filesystem: the container side. */}}
{{- define "promoter.containerSecurity" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities: {drop: [ALL]}
{{- end -}}

{{- define "promoter.podSecurity" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
seccompProfile: {type: RuntimeDefault}
{{- end -}}

{{/*
The model URI a model's Rollout runs. The operator owns PROMOTER_MODEL_URI once the Rollout exists:
promoting a candidate rewrites it in the live pod template. If `helm upgrade` rendered the value
from values.yaml, every upgrade would put the first model back (and start a blue/green rollout to
it, or worse, promote it by the next approval). So when the Rollout exists, its live value is kept
(`lookup`); values' modelUri is only the first. `helm template` cannot look up (no cluster): it
renders values' modelUri, or without one the model's alias of this environment
(models:/NAME@<operator.championAlias>). Argo CD renders like `helm template`: the Applications
`promoter gitops init` writes keep the operator's fields with ignoreDifferences instead. Call with
(dict "root" $ "model" $model).
*/}}
{{- define "promoter.modelUri" -}}
{{- $uri := default (printf "models:/%s@%s" .model.name .root.Values.operator.championAlias) .model.modelUri -}}
{{- $live := lookup "argoproj.io/v1alpha1" "Rollout" .root.Release.Namespace (printf "%s-serving" .model.name) -}}
{{- if $live -}}
{{- range $live.spec.template.spec.containers -}}
{{- if eq .name "server" -}}
{{- range .env -}}
{{- if and (eq .name "PROMOTER_MODEL_URI") .value -}}
{{- $uri = .value -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- $uri -}}
{{- end -}}

{{/*
Checks no schema can make, run by every render (operator.yaml): Vault's roles
(manifests/vault/roles.yaml) bind the ServiceAccounts of namespace `promoter`, so components
installed elsewhere could never log in; better refused now than at the first login.
*/}}
{{- define "promoter.checks" -}}
{{- if and .Values.vault.addr (ne .Release.Namespace "promoter") -}}
{{- fail (printf "vault.addr: Vault's roles (manifests/vault/roles.yaml) bind the service accounts of namespace promoter, not %s: install with --namespace promoter" .Release.Namespace) -}}
{{- end -}}
{{- end -}}
