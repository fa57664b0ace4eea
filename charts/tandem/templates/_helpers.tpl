{{/*
The chart name, for the app.kubernetes.io/name label.
*/}}
{{- define "tandem.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The full name of the resources, also the Service name the certificate is made for.
*/}}
{{- define "tandem.fullname" -}}
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

{{- define "tandem.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels of every object.
*/}}
{{- define "tandem.labels" -}}
helm.sh/chart: {{ include "tandem.chart" . }}
app.kubernetes.io/name: {{ include "tandem.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: tandem
{{- end }}

{{/*
Labels that select the webhook pods (not the helm test pod, whose component is "test").
The webhook's objectSelector skips pods carrying this app.kubernetes.io/name, so tandem
never depends on itself.
*/}}
{{- define "tandem.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tandem.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: webhook
{{- end }}

{{- define "tandem.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "tandem.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "tandem.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{/*
The DNS names the serving certificate must carry: the API server calls
https://<service>.<namespace>.svc:443/mutate.
*/}}
{{- define "tandem.dnsNames" -}}
{{- $svc := include "tandem.fullname" . }}
{{- $ns := .Release.Namespace }}
{{- toJson (list $svc (printf "%s.%s" $svc $ns) (printf "%s.%s.svc" $svc $ns) (printf "%s.%s.svc.%s" $svc $ns .Values.clusterDomain)) }}
{{- end }}

{{/*
The Secret holding tls.crt, tls.key and ca.crt.
*/}}
{{- define "tandem.tlsSecretName" -}}
{{- if eq .Values.tls.mode "secret" }}
{{- required "tls.secret.name is required when tls.mode is secret" .Values.tls.secret.name }}
{{- else }}
{{- printf "%s-tls" (include "tandem.fullname" .) }}
{{- end }}
{{- end }}

{{/*
tls.mode=helm: the CA and serving certificate, as base64 strings {ca, crt, key}.
An existing Secret made for the same DNS names is reused (lookup), so `helm upgrade`
keeps the caBundle that running pods and the API server trust. Generated once per
render and memoized, because the Secret and the webhook configuration are separate
templates and genCA is random.
*/}}
{{- define "tandem.helmTLS" -}}
{{- if not (hasKey .Values "__tandemHelmTLS") }}
{{- $dnsNames := include "tandem.dnsNames" . | fromJsonArray }}
{{- $existing := lookup "v1" "Secret" .Release.Namespace (include "tandem.tlsSecretName" .) }}
{{- $data := dig "data" (dict) $existing }}
{{- $madeFor := dig "metadata" "annotations" "tandem.dev/dns-names" "" $existing }}
{{- $tls := dict }}
{{- if and (index $data "ca.crt") (index $data "tls.crt") (index $data "tls.key") (eq $madeFor (join "," $dnsNames)) }}
{{- $_ := set $tls "ca" (index $data "ca.crt") }}
{{- $_ := set $tls "crt" (index $data "tls.crt") }}
{{- $_ := set $tls "key" (index $data "tls.key") }}
{{- else }}
{{- $ca := genCA (printf "%s-ca" (include "tandem.fullname" .)) (int .Values.tls.helm.caValidityDays) }}
{{- $cert := genSignedCert (index $dnsNames 2) nil $dnsNames (int .Values.tls.helm.certValidityDays) $ca }}
{{- $_ := set $tls "ca" ($ca.Cert | b64enc) }}
{{- $_ := set $tls "crt" ($cert.Cert | b64enc) }}
{{- $_ := set $tls "key" ($cert.Key | b64enc) }}
{{- end }}
{{- $_ := set .Values "__tandemHelmTLS" $tls }}
{{- end }}
{{- toJson .Values.__tandemHelmTLS }}
{{- end }}

{{/*
tls.mode=auto: the names tandem puts into its serving certificate besides the Service's
(`<svc>.<ns>.svc`, `.svc.cluster.local`, `<svc>.<ns>`, `<svc>`): the Service's name in the
cluster domain, the host of webhook.url (without port or IPv6 brackets), and
tls.auto.extraNames. As a comma-separated list for --tls-extra-names.
*/}}
{{- define "tandem.autoTLSNames" -}}
{{- $svc := include "tandem.fullname" . }}
{{- $names := list (printf "%s.%s.svc.%s" $svc .Release.Namespace .Values.clusterDomain) }}
{{- with .Values.webhook.url }}
{{- $host := regexReplaceAll ":[0-9]+$" (urlParse .).host "" | trimPrefix "[" | trimSuffix "]" }}
{{- $names = append $names $host }}
{{- end }}
{{- $names = concat $names .Values.tls.auto.extraNames | uniq }}
{{- join "," $names }}
{{- end }}

{{/*
The webhook's caBundle (base64), empty for certManager (its CA injector fills it in) and
for auto (tandem writes it).
*/}}
{{- define "tandem.caBundle" -}}
{{- if eq .Values.tls.mode "helm" }}
{{- (include "tandem.helmTLS" . | fromJson).ca }}
{{- else if eq .Values.tls.mode "secret" }}
{{- $bundle := required "tls.secret.caBundle is required when tls.mode is secret" .Values.tls.secret.caBundle | trim }}
{{- if contains "-----BEGIN" $bundle }}
{{- $bundle | b64enc }}
{{- else }}
{{- $bundle }}
{{- end }}
{{- end }}
{{- end }}

{{/*
How the API server reaches the webhook: webhook.url, or the Service; and the caBundle it
trusts (none for certManager: its CA injector fills it in).
*/}}
{{- define "tandem.clientConfig" -}}
{{- if .Values.webhook.url }}
url: {{ .Values.webhook.url | quote }}
{{- else }}
service:
  name: {{ include "tandem.fullname" . }}
  namespace: {{ .Release.Namespace }}
  path: /mutate
  port: 443
{{- end }}
{{- with include "tandem.caBundle" . }}
caBundle: {{ . }}
{{- end }}
{{- end }}

{{/*
The cert-manager Certificate whose CA the CA injector puts into the webhook.
*/}}
{{- define "tandem.certificateName" -}}
{{- printf "%s-tls" (include "tandem.fullname" .) }}
{{- end }}

{{/*
"true" when some policy in .Values.policies switches patterns on for unannotated pods.
*/}}
{{- define "tandem.policiesHaveDefaults" -}}
{{- $found := false }}
{{- range .Values.policies }}
{{- if dig "spec" "defaults" (dict) . }}
{{- $found = true }}
{{- end }}
{{- end }}
{{- $found }}
{{- end }}

{{/*
"true" when the webhook gets the CEL matchCondition that lets only pods with a tandem
annotation through: webhook.annotatedPodsOnly, where `auto` means "unless a policy in
values has defaults" (CEL sees only the pod, not policies or namespace annotations).
matchConditions need Kubernetes 1.28 or newer.
*/}}
{{- define "tandem.annotatedPodsOnly" -}}
{{- $setting := .Values.webhook.annotatedPodsOnly }}
{{- $on := false }}
{{- if eq (toString $setting) "auto" }}
{{- $on = ne (include "tandem.policiesHaveDefaults" .) "true" }}
{{- else }}
{{- $on = $setting }}
{{- end }}
{{- and $on (semverCompare ">=1.28.0-0" .Capabilities.KubeVersion.Version) }}
{{- end }}

{{/*
The CEL expression of that matchCondition.
*/}}
{{- define "tandem.annotatedPodsOnlyExpression" -}}
has(object.metadata.annotations) && object.metadata.annotations.exists(k, k.startsWith('{{ .Values.server.annotationPrefix }}/'))
{{- end }}

{{/*
Checks of values that the schema cannot express.
*/}}
{{- define "tandem.validate" -}}
{{- $drain := add .Values.server.shutdownDelaySeconds .Values.server.shutdownTimeoutSeconds }}
{{- if le (int .Values.terminationGracePeriodSeconds) (int $drain) }}
{{- fail (printf "terminationGracePeriodSeconds (%d) must exceed server.shutdownDelaySeconds + server.shutdownTimeoutSeconds (%d), or pods are killed while reviews are in flight" (int .Values.terminationGracePeriodSeconds) (int $drain)) }}
{{- end }}
{{- if le (int .Values.terminationGracePeriodSeconds) (int .Values.webhook.timeoutSeconds) }}
{{- fail (printf "terminationGracePeriodSeconds (%d) must exceed webhook.timeoutSeconds (%d)" (int .Values.terminationGracePeriodSeconds) (int .Values.webhook.timeoutSeconds)) }}
{{- end }}
{{- if and (eq .Values.tls.mode "secret") (not .Values.tls.secret.name) }}
{{- fail "tls.secret.name is required when tls.mode is secret" }}
{{- end }}
{{- if and (eq .Values.tls.mode "secret") (not .Values.tls.secret.caBundle) }}
{{- fail "tls.secret.caBundle is required when tls.mode is secret: the CA that signed the Secret's certificate" }}
{{- end }}
{{- end }}
