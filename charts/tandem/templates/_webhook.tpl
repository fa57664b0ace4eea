{{/*
The webhook entries of the MutatingWebhookConfiguration. Two entries, whose namespace
selectors never both match one namespace, so no pod is sent twice:

- "pods.tandem.dev": every namespace not labelled <prefix>/inject (enabled or disabled),
  with the CEL filter of webhook.annotatedPodsOnly: there only pods that carry a tandem
  annotation depend on the webhook.
- "opted-in.pods.tandem.dev": namespaces labelled <prefix>/inject=enabled, never
  filtered: every pod there reaches tandem, so namespace annotations and policy defaults
  apply to pods without annotations of their own.

Neither ever selects kube-system, kube-node-lease, the release namespace or
webhook.excludeNamespaces, labelled or not. The names are stable: other controllers
(a caBundle writer) address the entries by name.
*/}}

{{/* The name of the entry for every namespace that has not opted in or out. */}}
{{- define "tandem.webhookName" -}}
pods.tandem.dev
{{- end }}

{{/* The name of the entry for namespaces labelled <prefix>/inject=enabled. */}}
{{- define "tandem.optedInWebhookName" -}}
opted-in.pods.tandem.dev
{{- end }}

{{/* The namespace label that opts a namespace in (=enabled) or out (=disabled). */}}
{{- define "tandem.injectLabel" -}}
{{ .Values.server.annotationPrefix }}/inject
{{- end }}

{{/*
One webhook entry. Called with (dict "root" $ "name" NAME "inject" SELECTOR "filter" BOOL),
where SELECTOR is the requirement on the inject label.
*/}}
{{- define "tandem.webhookEntry" -}}
{{- $root := .root }}
{{- with $root }}
- name: {{ $.name }}
  admissionReviewVersions: ["v1"]
  sideEffects: None
  # tandem's patch is idempotent, and a later webhook may add containers that a
  # pattern should cover.
  reinvocationPolicy: IfNeeded
  failurePolicy: {{ .Values.webhook.failurePolicy }}
  timeoutSeconds: {{ .Values.webhook.timeoutSeconds }}
  matchPolicy: Equivalent
  clientConfig:
    {{- include "tandem.clientConfig" . | nindent 4 }}
  rules:
    - apiGroups: [""]
      apiVersions: ["v1"]
      operations: ["CREATE"]
      resources: ["pods"]
      scope: Namespaced
  namespaceSelector:
    matchExpressions:
      # Never the control plane's namespaces nor tandem's own, labelled or not: a webhook
      # that is down must not stop itself or the cluster from coming back.
      - key: kubernetes.io/metadata.name
        operator: NotIn
        values:
          {{- $skip := concat (list "kube-system" "kube-node-lease" .Release.Namespace) .Values.webhook.excludeNamespaces | uniq }}
          {{- toYaml $skip | nindent 10 }}
      - key: {{ include "tandem.injectLabel" . }}
        {{- toYaml $.inject | nindent 8 }}
  objectSelector:
    matchExpressions:
      # tandem's own pods (they also live in an excluded namespace).
      - key: app.kubernetes.io/name
        operator: NotIn
        values: [{{ include "tandem.name" . | quote }}]
  {{- if $.filter }}
  matchConditions:
    # Only pods that carry a tandem annotation reach the webhook, so the others never
    # depend on it being up. CEL sees only the pod: namespaces whose annotations or
    # policy defaults should apply to every pod are labelled <prefix>/inject=enabled
    # (the other entry).
    - name: has-tandem-annotation
      expression: {{ include "tandem.annotatedPodsOnlyExpression" . | quote }}
  {{- end }}
{{- end }}
{{- end }}
