//! Profiles as a snapshot keeps them: each checked on its own when loaded (image,
//! resources, option names and values, `{{placeholder}}`s), with the options its templates
//! use; and the option and profile names error messages list.

use std::{collections::BTreeMap, fmt, sync::Arc};

use crate::{
    pattern::{Kind, Pattern, PerPattern},
    policy::model::types::{OptionValue, Profile},
};

/// Placeholders a pattern's injector fills in besides the options.
pub fn computed_placeholders(pattern: Pattern) -> &'static [&'static str] {
    match pattern {
        Pattern::Ambassador => &["bootstrap"],
        _ => &[],
    }
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
pub(super) fn check_profile(
    pattern: Pattern,
    name: &str,
    profile: &Profile,
) -> Result<(), (String, String)> {
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
pub(super) fn used_options(pattern: Pattern, profile: &Profile) -> Arc<[String]> {
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
