//! The compiled, immutable view of every policy and namespace that a review reads.
//!
//! Built when policies or namespaces change: selectors and globs compiled, profiles merged
//! into one table, and for each namespace the API server described the policies that apply
//! to it merged in advance. What depends on a pod's labels, or on a namespace only a review
//! names (without `--kube`), is merged on first use and kept, so a review does a map
//! look-up or two.

use std::{
    collections::{BTreeMap, HashMap},
    fmt,
    sync::{Arc, PoisonError, RwLock},
};

use crate::{
    annotations::Annotations,
    invalid::Source,
    pattern::{Kind, Pattern, PerPattern},
    policy::{
        model::selector::{Labels, Selector},
        model::types::{
            InjectionPolicy, InjectionPolicySpec, OnInvalid, OptionValue, Profile, SidecarMode,
        },
    },
};

/// The label every namespace carries since Kubernetes 1.21; known even without `--kube`.
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// Placeholders a pattern's injector fills in besides the options.
pub fn computed_placeholders(pattern: Pattern) -> &'static [&'static str] {
    match pattern {
        Pattern::Ambassador => &["bootstrap"],
        _ => &[],
    }
}

/// A policy that failed to load: which one, which field, what is wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("policy {policy:?}: {field}: {message}")]
pub struct PolicyError {
    pub policy: String,
    /// A path into the document, such as `spec.profiles.log-shipper.loki.args[3]`.
    pub field: String,
    pub message: String,
}

/// A profile and the policy that defined it.
#[derive(Clone, Debug)]
pub struct ProfileEntry {
    pub profile: Arc<Profile>,
    pub policy: Arc<str>,
    /// The options the profile's templates use, each once: what a pod must have values
    /// for (computed placeholders left out).
    pub placeholders: Arc<[String]>,
}

/// A namespace as the API server (or `explain --namespace-labels`) describes it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NamespaceInfo {
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

/// A setting and the policy it came from.
#[derive(Clone, Debug, PartialEq)]
pub struct ByPolicy<T> {
    pub value: T,
    pub policy: Arc<str>,
}

/// A pattern's default options, each with the policy that set it.
pub type DefaultOptions = BTreeMap<String, ByPolicy<String>>;

/// What the matching policies decide for one pod, merged by ascending priority: for each
/// setting the last (highest-priority) policy that sets it wins; `defaults` merge option by
/// option, `enforce` accumulates.
#[derive(Clone, Debug, Default)]
pub struct Effective {
    /// Patterns switched on by default (by the highest-priority policy listing them), with
    /// their options (`profile` among them), each from the policy that set it.
    pub defaults: PerPattern<Option<ByPolicy<DefaultOptions>>>,
    pub overrides: PerPattern<Option<ByPolicy<Arc<[String]>>>>,
    pub enforce: PerPattern<Option<Arc<str>>>,
    pub allowed_images: Option<ByPolicy<Arc<[glob::Pattern]>>>,
    pub allowed_git_hosts: Option<ByPolicy<Arc<[String]>>>,
    pub sidecar_mode: Option<ByPolicy<SidecarMode>>,
    pub on_invalid: Option<ByPolicy<OnInvalid>>,
}

impl Effective {
    /// Lays `policy` over what lower-priority policies decided. Everything a policy sets
    /// was compiled into shared values when it loaded: merging copies pointers.
    fn merge(&mut self, policy: &Compiled) {
        let name = &policy.name;
        for (pattern, options) in policy.spec.defaults.iter() {
            let merged = self
                .defaults
                .get_mut(pattern)
                .get_or_insert_with(|| by(BTreeMap::new(), name));
            merged.policy = name.clone();
            for (key, value) in options {
                merged.value.insert(key.clone(), by(value.0.clone(), name));
            }
        }
        for pattern in Pattern::ALL {
            if let Some(allowed) = policy.overrides.get(pattern) {
                *self.overrides.get_mut(pattern) = Some(by(allowed.clone(), name));
            }
        }
        for pattern in &policy.spec.enforce {
            *self.enforce.get_mut(*pattern) = Some(name.clone());
        }
        if let Some(images) = &policy.allowed_images {
            self.allowed_images = Some(by(images.clone(), name));
        }
        if let Some(hosts) = &policy.allowed_git_hosts {
            self.allowed_git_hosts = Some(by(hosts.clone(), name));
        }
        if let Some(mode) = policy.spec.sidecar_mode {
            self.sidecar_mode = Some(by(mode, name));
        }
        if let Some(on_invalid) = policy.spec.on_invalid {
            self.on_invalid = Some(by(on_invalid, name));
        }
    }
}

impl Effective {
    /// What a bad value does: `deny` unless a policy says `warn`.
    pub fn on_invalid(&self) -> OnInvalid {
        self.on_invalid
            .as_ref()
            .map_or(OnInvalid::Deny, |o| o.value)
    }

    /// Native sidecars unless a policy says `classic`.
    pub fn sidecar_mode(&self) -> SidecarMode {
        self.sidecar_mode
            .as_ref()
            .map_or(SidecarMode::Native, |m| m.value)
    }
}

/// A setting of policy `name`.
fn by<T>(value: T, name: &Arc<str>) -> ByPolicy<T> {
    ByPolicy {
        value,
        policy: name.clone(),
    }
}

/// A policy with its selectors and globs compiled.
#[derive(Debug)]
pub struct Compiled {
    pub name: Arc<str>,
    pub spec: InjectionPolicySpec,
    namespaces: Selector,
    pods: Selector,
    overrides: PerPattern<Option<Arc<[String]>>>,
    allowed_images: Option<Arc<[glob::Pattern]>>,
    allowed_git_hosts: Option<Arc<[String]>>,
}

/// A namespace with the policies that apply to it already chosen (and merged, when none of
/// them looks at pod labels).
#[derive(Debug)]
pub struct NamespaceView {
    pub annotations: Annotations,
    /// Indices into [`Snapshot::policies`] whose namespace selector matches.
    candidates: Vec<usize>,
    /// The merge of all candidates, when none of them has a pod selector.
    merged: Option<Arc<Effective>>,
    /// The candidates that switch patterns on by themselves (`defaults`, `enforce`).
    switching: Vec<usize>,
    /// When some candidates select pods: the merge for each set of matching candidates
    /// met so far (one flag per candidate).
    by_pods: RwLock<HashMap<Vec<bool>, Arc<Effective>>>,
}

/// Everything a review needs from the policies, immutable once built.
#[derive(Debug)]
pub struct Snapshot {
    pub prefix: String,
    /// Searches a review body for the prefix, set up once instead of per review.
    prefix_finder: memchr::memmem::Finder<'static>,
    /// Ascending by (priority, name).
    policies: Vec<Compiled>,
    pub profiles: PerPattern<BTreeMap<String, ProfileEntry>>,
    namespaces: HashMap<String, Arc<NamespaceView>>,
    /// Whether namespaces come from the API server (`--kube`); without it a namespace is
    /// known only by its name label.
    namespaces_known: bool,
    /// The view of every namespace the API server has not described, when no policy
    /// selects namespaces (then they all look alike): built once, not per review.
    unknown: Option<Arc<NamespaceView>>,
    /// Views of namespaces the API server has not described, built on first use: without
    /// `--kube` every namespace is one of these. Bounded by [`SEEN_LIMIT`].
    seen: RwLock<HashMap<String, Arc<NamespaceView>>>,
}

/// A namespace's view, as [`Snapshot::namespace`] gives it.
pub enum View<'a> {
    /// One of the snapshot's own.
    Kept(&'a NamespaceView),
    /// Built for a namespace first seen by a review.
    Seen(Arc<NamespaceView>),
}

impl std::ops::Deref for View<'_> {
    type Target = NamespaceView;

    fn deref(&self) -> &NamespaceView {
        match self {
            View::Kept(view) => view,
            View::Seen(view) => view,
        }
    }
}

/// How many namespaces' views a snapshot keeps beyond the known ones.
const SEEN_LIMIT: usize = 4096;

impl Snapshot {
    /// Compiles `policies` (replacing same-named ones in order) and `namespaces`.
    ///
    /// Returns the snapshot built from the policies that are valid, and the errors of the
    /// others. Callers that load a whole set at once (files) reject the set on any error;
    /// callers that get policies one by one (the API server) skip just the bad ones.
    pub fn build(
        prefix: &str,
        policies: impl IntoIterator<Item = InjectionPolicy>,
        namespaces: Option<&HashMap<String, NamespaceInfo>>,
    ) -> (Snapshot, Vec<PolicyError>) {
        let mut by_name = BTreeMap::new();
        for policy in policies {
            let name = policy.metadata.name.clone().unwrap_or_default();
            by_name.insert(name, policy.spec);
        }
        let mut errors = Vec::new();
        let mut ordered: Vec<(String, InjectionPolicySpec)> = by_name.into_iter().collect();
        ordered.sort_by(|(a, x), (b, y)| x.priority.cmp(&y.priority).then(a.cmp(b)));

        // Profiles first: defaults and overrides are checked against the merged table.
        let mut profiles: PerPattern<BTreeMap<String, ProfileEntry>> = PerPattern::default();
        let mut bad = vec![false; ordered.len()];
        for (index, (name, spec)) in ordered.iter().enumerate() {
            let policy: Arc<str> = name.as_str().into();
            for (pattern, named) in spec.profiles.iter() {
                for (profile_name, profile) in named {
                    if let Err((below, message)) = check_profile(pattern, profile_name, profile) {
                        errors.push(PolicyError {
                            policy: name.clone(),
                            field: format!("spec.profiles.{pattern}.{profile_name}{below}"),
                            message,
                        });
                        bad[index] = true;
                    }
                }
            }
            if bad[index] {
                continue;
            }
            for (pattern, named) in spec.profiles.iter() {
                for (profile_name, profile) in named {
                    profiles.get_mut(pattern).insert(
                        profile_name.clone(),
                        ProfileEntry {
                            placeholders: used_options(pattern, profile),
                            profile: Arc::new(profile.clone()),
                            policy: policy.clone(),
                        },
                    );
                }
            }
        }

        let mut compiled = Vec::new();
        for (index, (name, spec)) in ordered.into_iter().enumerate() {
            if bad[index] {
                continue;
            }
            match compile(&name, spec, &profiles) {
                Ok(policy) => compiled.push(policy),
                Err(error) => errors.push(error),
            }
        }

        let mut snapshot = Snapshot {
            prefix: prefix.to_string(),
            prefix_finder: memchr::memmem::Finder::new(prefix).into_owned(),
            policies: compiled,
            profiles,
            namespaces: HashMap::new(),
            namespaces_known: namespaces.is_some(),
            unknown: None,
            seen: RwLock::default(),
        };
        if snapshot.policies.iter().all(|p| p.namespaces.is_empty()) {
            let view = snapshot.view("", &NamespaceInfo::default());
            snapshot.unknown = Some(Arc::new(view));
        }
        if let Some(namespaces) = namespaces {
            snapshot.namespaces = namespaces
                .iter()
                .map(|(name, info)| (name.clone(), Arc::new(snapshot.view(name, info))))
                .collect();
        }
        (snapshot, errors)
    }

    /// The policies in ascending priority, for `explain` and tests.
    pub fn policy_names(&self) -> impl Iterator<Item = &str> {
        self.policies.iter().map(|p| &*p.name)
    }

    /// Whether `bytes` contain the annotation prefix anywhere (a review body that does not
    /// cannot carry any of tandem's annotations).
    pub fn mentions_prefix(&self, bytes: &[u8]) -> bool {
        self.prefix_finder.find(bytes).is_some()
    }

    /// The view of namespace `name`: precomputed when namespaces are known, else built from
    /// the name label alone. A precomputed view is lent, not shared: every review asks, and
    /// a reference count taken on every review would move between the connection threads'
    /// caches.
    pub fn namespace(&self, name: &str) -> View<'_> {
        if let Some(view) = self.namespaces.get(name) {
            return View::Kept(view);
        }
        if let Some(view) = &self.unknown {
            return View::Kept(view);
        }
        View::Seen(self.seen_namespace(name))
    }

    /// The view of a namespace the API server has not described, built once and kept.
    fn seen_namespace(&self, name: &str) -> Arc<NamespaceView> {
        let seen = self.seen.read().unwrap_or_else(PoisonError::into_inner);
        if let Some(view) = seen.get(name) {
            return view.clone();
        }
        drop(seen);
        if self.namespaces_known {
            // A namespace the reflector has not seen yet (created a moment ago): the
            // API server created it before the pod, so this is rare and short-lived.
            tracing::debug!(namespace = name, "namespace not in the store yet");
        }
        let info = NamespaceInfo {
            labels: BTreeMap::from([(NAMESPACE_NAME_LABEL.to_string(), name.to_string())]),
            annotations: BTreeMap::new(),
        };
        let view = Arc::new(self.view(name, &info));
        let mut seen = self.seen.write().unwrap_or_else(PoisonError::into_inner);
        if seen.len() < SEEN_LIMIT {
            seen.insert(name.to_string(), view.clone());
        }
        view
    }

    fn view(&self, name: &str, info: &NamespaceInfo) -> NamespaceView {
        let mut labels = info.labels.clone();
        labels
            .entry(NAMESPACE_NAME_LABEL.to_string())
            .or_insert_with(|| name.to_string());
        let candidates: Vec<usize> = (0..self.policies.len())
            .filter(|&i| self.policies[i].namespaces.matches(&labels))
            .collect();
        let annotations = Annotations::parse(
            &self.prefix,
            info.annotations
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str())),
            |key| Source::Namespace {
                namespace: name.to_string(),
                key: key.to_string(),
            },
        );
        let any_pod_selector = candidates
            .iter()
            .any(|&i| !self.policies[i].pods.is_empty());
        let switching = candidates
            .iter()
            .copied()
            .filter(|&i| {
                let spec = &self.policies[i].spec;
                !spec.defaults.is_empty() || !spec.enforce.is_empty()
            })
            .collect();
        let merged = (!any_pod_selector).then(|| Arc::new(self.merge(candidates.iter().copied())));
        NamespaceView {
            annotations,
            candidates,
            merged,
            switching,
            by_pods: RwLock::default(),
        }
    }

    fn merge(&self, indices: impl Iterator<Item = usize>) -> Effective {
        let mut effective = Effective::default();
        for index in indices {
            effective.merge(&self.policies[index]);
        }
        effective
    }

    /// Whether a pod with `labels` and no annotation of ours gets anything in `namespace`:
    /// the namespace's annotations, or a policy switching a pattern on for it.
    pub fn switches_on(&self, namespace: &NamespaceView, labels: &(impl Labels + ?Sized)) -> bool {
        !namespace.annotations.is_empty()
            || namespace
                .switching
                .iter()
                .any(|&i| self.policies[i].pods.matches(labels))
    }

    /// What the policies decide for a pod with `labels` in namespace view `namespace`.
    pub fn effective(
        &self,
        namespace: &NamespaceView,
        labels: &(impl Labels + ?Sized),
    ) -> Arc<Effective> {
        if let Some(merged) = &namespace.merged {
            return merged.clone();
        }
        // Which candidates' pod selectors match: a few distinct sets per namespace, each
        // merged once and kept.
        let matched: Vec<bool> = namespace
            .candidates
            .iter()
            .map(|&i| self.policies[i].pods.matches(labels))
            .collect();
        let memo = namespace
            .by_pods
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(merged) = memo.get(&matched) {
            return merged.clone();
        }
        drop(memo);
        let merged = Arc::new(
            self.merge(
                namespace
                    .candidates
                    .iter()
                    .zip(&matched)
                    .filter_map(|(&i, &matches)| matches.then_some(i)),
            ),
        );
        let mut memo = namespace
            .by_pods
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if memo.len() < SEEN_LIMIT {
            memo.insert(matched, merged.clone());
        }
        merged
    }
}

fn compile(
    name: &str,
    spec: InjectionPolicySpec,
    profiles: &PerPattern<BTreeMap<String, ProfileEntry>>,
) -> Result<Compiled, PolicyError> {
    let error = |field: String, message: String| PolicyError {
        policy: name.to_string(),
        field,
        message,
    };
    let namespaces = Selector::compile(spec.selector.namespaces.as_ref())
        .map_err(|e| error(format!("spec.selector.namespaces.{}", e.field), e.message))?;
    let pods = Selector::compile(spec.selector.pods.as_ref())
        .map_err(|e| error(format!("spec.selector.pods.{}", e.field), e.message))?;

    for (pattern, options) in spec.defaults.iter() {
        let profile_name = match options.get("profile") {
            Some(OptionValue(name)) => Some(name.as_str()),
            None => pattern.default_profile(),
        };
        let profile = match profile_name {
            Some(profile_name) => {
                Some(profiles.get(pattern).get(profile_name).ok_or_else(|| {
                    error(
                        format!("spec.defaults.{pattern}.profile"),
                        format!(
                            "no {pattern} profile is called {profile_name:?}; accepted: {}",
                            profile_names(profiles, pattern)
                        ),
                    )
                })?)
            }
            None => {
                // Switched on for every matching pod, with nothing to say which exporter.
                return Err(error(
                    format!("spec.defaults.{pattern}"),
                    format!(
                        "{pattern} has no default profile, so the policy must name one; accepted: profile set to one of {}",
                        profile_names(profiles, pattern)
                    ),
                ));
            }
        };
        for (key, OptionValue(value)) in options {
            let field = format!("spec.defaults.{pattern}.{key}");
            match option_kind(pattern, profile.map(|p| &*p.profile), key) {
                Some(Kind::Profile) => {}
                Some(kind) => kind.check(value).map_err(|problem| {
                    error(
                        field,
                        format!("{value:?} {problem}; accepted: {}", kind.accepted()),
                    )
                })?,
                None => {
                    return Err(error(
                        field,
                        format!(
                            "{pattern} has no option {key:?}; accepted: {}",
                            option_names(pattern, profile.map(|p| &*p.profile))
                        ),
                    ));
                }
            }
        }
    }

    for (i, pattern) in spec.enforce.iter().enumerate() {
        let named = pattern.default_profile().is_some()
            || spec
                .defaults
                .get(*pattern)
                .is_some_and(|d| d.contains_key("profile"));
        if !named {
            return Err(error(
                format!("spec.enforce[{i}]"),
                format!(
                    "{pattern} has no default profile, so enforcing it needs spec.defaults.{pattern}.profile; accepted: one of {}",
                    profile_names(profiles, *pattern)
                ),
            ));
        }
    }

    for (pattern, allowed) in spec.overrides.iter() {
        for (i, key) in allowed.iter().enumerate() {
            let declared = pattern.option(key).is_some()
                || profiles
                    .get(pattern)
                    .values()
                    .any(|entry| entry.profile.options.contains_key(key));
            if !declared {
                return Err(error(
                    format!("spec.overrides.{pattern}[{i}]"),
                    format!(
                        "{pattern} has no option {key:?}; accepted: {}",
                        option_names(pattern, None)
                    ),
                ));
            }
        }
    }

    let allowed_images = match &spec.allowed_images {
        None => None,
        Some(globs) => Some(
            globs
                .iter()
                .enumerate()
                .map(|(i, glob)| {
                    glob::Pattern::new(glob).map_err(|e| {
                        error(format!("spec.allowedImages[{i}]"), format!("{glob:?}: {e}"))
                    })
                })
                .collect::<Result<Vec<_>, _>>()?
                .into(),
        ),
    };
    for (i, host) in spec.allowed_git_hosts.iter().flatten().enumerate() {
        let bare = host.strip_prefix("*.").unwrap_or(host);
        crate::pattern::check_dns_subdomain(bare).map_err(|problem| {
            error(
                format!("spec.allowedGitHosts[{i}]"),
                format!(
                    "{host:?} {problem}; accepted: a host name such as github.com, or *.example.com"
                ),
            )
        })?;
    }

    let mut overrides = PerPattern::default();
    for (pattern, allowed) in spec.overrides.iter() {
        *overrides.get_mut(pattern) = Some(allowed.as_slice().into());
    }
    let allowed_git_hosts = spec.allowed_git_hosts.as_deref().map(Into::into);
    Ok(Compiled {
        name: name.into(),
        spec,
        namespaces,
        pods,
        overrides,
        allowed_images,
        allowed_git_hosts,
    })
}

/// The kind of option `key` of `pattern`, with `profile`'s declared options.
pub fn option_kind(pattern: Pattern, profile: Option<&Profile>, key: &str) -> Option<Kind> {
    match pattern.option(key) {
        Some(spec) => Some(spec.kind),
        None => profile
            .filter(|p| p.options.contains_key(key))
            .map(|_| Kind::Text),
    }
}

/// For error messages: the options of `pattern` (and `profile`), sorted.
pub fn option_names(pattern: Pattern, profile: Option<&Profile>) -> String {
    let mut names: Vec<&str> = pattern.options().iter().map(|o| o.name).collect();
    if let Some(profile) = profile {
        names.extend(
            profile
                .options
                .keys()
                .map(String::as_str)
                .filter(|k| pattern.option(k).is_none()),
        );
    }
    names.sort_unstable();
    names.join(", ")
}

/// For error messages: the profiles of `pattern`, sorted.
pub fn profile_names(
    profiles: &PerPattern<BTreeMap<String, ProfileEntry>>,
    pattern: Pattern,
) -> String {
    let names: Vec<&str> = profiles.get(pattern).keys().map(String::as_str).collect();
    if names.is_empty() {
        "none are defined".into()
    } else {
        names.join(", ")
    }
}

/// Checks a profile on its own: image, resources, option names and placeholders. An error
/// carries the path of the offending field below the profile (`.args[3]`), for `file:line`.
fn check_profile(pattern: Pattern, name: &str, profile: &Profile) -> Result<(), (String, String)> {
    let at = |field: &str, message: String| (field.to_string(), message);
    crate::pattern::check_dns_label(name)
        .map_err(|p| (String::new(), format!("profile name {p}")))?;
    if profile.image.trim().is_empty() || profile.image.contains(char::is_whitespace) {
        return Err(at(
            ".image",
            format!("image {:?} is not an image reference", profile.image),
        ));
    }
    let quantity =
        |map: &Option<
            BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>,
        >,
         key: &str| { map.as_ref().is_some_and(|m| m.contains_key(key)) };
    let resources = &profile.resources;
    for (present, what) in [
        (
            quantity(&resources.requests, "cpu"),
            "resources.requests.cpu",
        ),
        (
            quantity(&resources.requests, "memory"),
            "resources.requests.memory",
        ),
        (
            quantity(&resources.limits, "memory"),
            "resources.limits.memory",
        ),
    ] {
        if !present {
            return Err(at(
                ".resources",
                format!(
                    "{what} is missing; injected containers carry cpu and memory requests and a memory limit"
                ),
            ));
        }
    }
    for (field, user) in [
        (".runAsUser", profile.run_as_user),
        (".runAsGroup", profile.run_as_group),
    ] {
        if let Some(user) = user.filter(|&user| user <= 0) {
            return Err(at(
                field,
                format!(
                    "runAsUser/runAsGroup {user} is root or negative; injected containers run as non-root"
                ),
            ));
        }
    }
    for (key, OptionValue(value)) in &profile.options {
        let field = format!(".options.{key}");
        let valid_name = !key.is_empty()
            && key
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !valid_name {
            return Err(at(
                &field,
                format!("option name {key:?} is not lowercase letters, digits and '-'"),
            ));
        }
        if let Some(kind) = option_kind(pattern, Some(profile), key)
            && kind != Kind::Profile
        {
            kind.check(value).map_err(|problem| {
                at(
                    &field,
                    format!("{value:?} {problem}; accepted: {}", kind.accepted()),
                )
            })?;
        }
    }
    for (field, text) in templated_fields(profile) {
        for placeholder in placeholders(text).map_err(|e| (field.clone(), e.to_string()))? {
            let known = pattern.option(placeholder).is_some()
                || profile.options.contains_key(placeholder)
                || computed_placeholders(pattern).contains(&placeholder);
            if !known {
                let mut accepted: Vec<&str> = pattern.options().iter().map(|o| o.name).collect();
                accepted.extend(profile.options.keys().map(String::as_str));
                accepted.extend(computed_placeholders(pattern));
                accepted.sort_unstable();
                accepted.dedup();
                return Err((
                    field,
                    format!(
                        "{{{{{placeholder}}}}} in {text:?} names no option of {pattern}; accepted: {}",
                        accepted.join(", ")
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// The texts of a profile that take placeholders, with the path of each below the profile:
/// `.args[3]`, `.env[0].value`, `.annotations["prometheus.io/port"]`.
fn templated_fields(profile: &Profile) -> impl Iterator<Item = (String, &str)> {
    fn indexed<'a>(
        name: &'static str,
        texts: &'a [String],
    ) -> impl Iterator<Item = (String, &'a str)> {
        texts
            .iter()
            .enumerate()
            .map(move |(i, text)| (format!(".{name}[{i}]"), text.as_str()))
    }
    indexed("command", &profile.command)
        .chain(indexed("args", &profile.args))
        .chain(
            profile
                .env
                .iter()
                .enumerate()
                .filter_map(|(i, e)| Some((format!(".env[{i}].value"), e.value.as_deref()?))),
        )
        .chain(
            profile
                .annotations
                .iter()
                .map(|(key, text)| (format!(".annotations[{key:?}]"), text.as_str())),
        )
}

/// The options a (checked) profile's templates use, each once, computed ones left out.
fn used_options(pattern: Pattern, profile: &Profile) -> Arc<[String]> {
    let mut used: Vec<String> = templated_fields(profile)
        .flat_map(|(_, text)| placeholders(text).into_iter().flatten())
        .filter(|name| !computed_placeholders(pattern).contains(name))
        .map(str::to_string)
        .collect();
    used.sort_unstable();
    used.dedup();
    used.into()
}

/// The `{{name}}` placeholders in `text`.
pub fn placeholders(text: &str) -> Result<impl Iterator<Item = &str>, PlaceholderError> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let end = after.find("}}").ok_or(PlaceholderError::Unclosed)?;
        let name = after[..end].trim();
        if name.is_empty() {
            return Err(PlaceholderError::Empty);
        }
        found.push(name);
        rest = &after[end + 2..];
    }
    Ok(found.into_iter())
}

/// A `{{` without `}}`, or `{{}}`.
#[derive(Debug, PartialEq, Eq)]
pub enum PlaceholderError {
    Unclosed,
    Empty,
}

impl fmt::Display for PlaceholderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlaceholderError::Unclosed => f.write_str("\"{{\" without \"}}\""),
            PlaceholderError::Empty => f.write_str("an empty placeholder \"{{}}\""),
        }
    }
}
