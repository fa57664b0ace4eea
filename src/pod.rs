//! A borrowed, partial view of a pod: only the fields tandem reads (names, labels,
//! annotations, containers with their ports and mounts, volumes), deserialized straight from
//! the request bytes without copying strings that need no unescaping. Everything else in
//! the pod is skipped, never re-serialized: tandem's patch only ever adds.

use std::{borrow::Cow, fmt};

use serde::{Deserialize, de};

use crate::policy::model::selector::Labels;

/// The fields of a pod tandem reads.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Pod<'a> {
    #[serde(borrow)]
    pub metadata: Metadata<'a>,
    #[serde(borrow)]
    pub spec: Spec<'a>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Metadata<'a> {
    #[serde(borrow)]
    pub name: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub generate_name: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub namespace: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub labels: Option<Pairs<'a>>,
    /// `None` when the pod has no `annotations` object (the patch must add it whole).
    #[serde(borrow)]
    pub annotations: Option<Pairs<'a>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Spec<'a> {
    #[serde(borrow)]
    pub containers: Vec<Container<'a>>,
    /// `None` when absent: the patch adds the array instead of inserting into it.
    #[serde(borrow)]
    pub init_containers: Option<Vec<Container<'a>>>,
    #[serde(borrow)]
    pub ephemeral_containers: Option<Vec<Container<'a>>>,
    #[serde(borrow)]
    pub volumes: Option<Vec<Named<'a>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Container<'a> {
    #[serde(borrow)]
    pub name: Cow<'a, str>,
    #[serde(borrow)]
    pub ports: Option<Vec<Port<'a>>>,
    #[serde(borrow)]
    pub volume_mounts: Option<Vec<Mount<'a>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Port<'a> {
    #[serde(borrow)]
    pub name: Option<Cow<'a, str>>,
    pub container_port: i64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Mount<'a> {
    #[serde(borrow)]
    pub name: Cow<'a, str>,
    #[serde(borrow)]
    pub mount_path: Cow<'a, str>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Named<'a> {
    #[serde(borrow)]
    pub name: Cow<'a, str>,
}

impl<'a> Pod<'a> {
    /// Parses a pod from JSON text.
    pub fn parse(json: &'a str) -> Result<Pod<'a>, serde_json::Error> {
        serde_json::from_str(json)
    }

    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.metadata.annotations.as_ref()?.label(key)
    }

    /// The pod's name, or its generateName with a trailing `*` for pods made by controllers.
    pub fn display_name(&self) -> String {
        display_name(&self.metadata.name, &self.metadata.generate_name)
    }

    /// Every container name in the pod: app, init and ephemeral.
    pub fn container_names(&self) -> impl Iterator<Item = &str> {
        self.spec
            .containers
            .iter()
            .chain(self.spec.init_containers.iter().flatten())
            .chain(self.spec.ephemeral_containers.iter().flatten())
            .map(|c| &*c.name)
    }

    /// Whether the API server could store this pod at all: it has a name (or a
    /// generateName) and a container. One that cannot is not mutated: a patch would have
    /// to create `metadata` or `spec` first, and the API server's own validation says
    /// best what is missing.
    pub fn is_storable(&self) -> bool {
        let named = |name: &Option<Cow<'_, str>>| name.as_deref().is_some_and(|n| !n.is_empty());
        (named(&self.metadata.name) || named(&self.metadata.generate_name))
            && !self.spec.containers.is_empty()
    }

    pub fn volume_names(&self) -> impl Iterator<Item = &str> {
        self.spec.volumes.iter().flatten().map(|v| &*v.name)
    }
}

/// Just a pod's names: what a review reads of a pod nothing can apply to, for the log line.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Identity<'a> {
    #[serde(borrow)]
    metadata: Names<'a>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct Names<'a> {
    #[serde(borrow)]
    name: Option<Cow<'a, str>>,
    #[serde(borrow)]
    generate_name: Option<Cow<'a, str>>,
    #[serde(borrow)]
    labels: Pairs<'a>,
}

impl Identity<'_> {
    pub fn display_name(&self) -> String {
        display_name(&self.metadata.name, &self.metadata.generate_name)
    }

    /// For policies' pod selectors.
    pub fn labels(&self) -> &Pairs<'_> {
        &self.metadata.labels
    }
}

fn display_name(name: &Option<Cow<'_, str>>, generate_name: &Option<Cow<'_, str>>) -> String {
    match (name, generate_name) {
        (Some(name), _) if !name.is_empty() => name.to_string(),
        (_, Some(prefix)) => format!("{prefix}*"),
        _ => String::new(),
    }
}

/// A JSON object of strings kept as a list (labels and annotations are small; a linear
/// search beats building a map).
#[derive(Debug, Default)]
pub struct Pairs<'a>(pub Vec<(Cow<'a, str>, Cow<'a, str>)>);

impl Pairs<'_> {
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (&**k, &**v))
    }
}

impl Labels for Pairs<'_> {
    fn label(&self, key: &str) -> Option<&str> {
        self.0.as_slice().label(key)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Pairs<'a> {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> de::Visitor<'de> for Visitor<'a> {
            type Value = Pairs<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of strings")
            }
            fn visit_map<M: de::MapAccess<'de>>(self, mut map: M) -> Result<Pairs<'a>, M::Error> {
                let mut pairs = Vec::with_capacity(map.size_hint().unwrap_or(4));
                while let Some((key, value)) = map.next_entry::<Borrowed<'a>, Borrowed<'a>>()? {
                    pairs.push((key.0, value.0));
                }
                Ok(Pairs(pairs))
            }
        }
        deserializer.deserialize_map(Visitor(std::marker::PhantomData))
    }
}

/// A string that borrows from the input when it can (serde's `Cow` alone always copies).
struct Borrowed<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Borrowed<'a> {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Inner<'a>(#[serde(borrow)] Cow<'a, str>);
        Inner::deserialize(deserializer).map(|inner| Borrowed(inner.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_tandem_needs_and_skips_the_rest() {
        let json = r#"{
            "metadata": {"generateName": "site-7c6d9b5f4d-", "labels": {"app": "site"},
                         "annotations": {"tandem.dev/log-shipper": "true", "q": "a\"b"},
                         "managedFields": [{"manager": "x"}]},
            "spec": {"containers": [{"name": "web", "image": "nginx",
                                     "ports": [{"name": "http", "containerPort": 80}],
                                     "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
                     "volumes": [{"name": "data", "emptyDir": {}}],
                     "securityContext": {}},
            "status": {}
        }"#;
        let pod = Pod::parse(json).unwrap();
        assert_eq!(pod.display_name(), "site-7c6d9b5f4d-*");
        assert_eq!(pod.annotation("tandem.dev/log-shipper"), Some("true"));
        assert_eq!(pod.annotation("q"), Some("a\"b"));
        assert!(matches!(
            pod.metadata.labels.as_ref().unwrap().0[0].0,
            Cow::Borrowed(_)
        ));
        assert_eq!(
            pod.spec.containers[0].volume_mounts.as_ref().unwrap()[0].mount_path,
            "/data"
        );
        assert!(pod.spec.init_containers.is_none());
        assert_eq!(pod.volume_names().collect::<Vec<_>>(), ["data"]);
    }

    #[test]
    fn absent_and_empty_are_told_apart() {
        let pod = Pod::parse(r#"{"metadata": {"annotations": {}}, "spec": {"containers": [], "initContainers": []}}"#).unwrap();
        assert!(pod.metadata.annotations.is_some());
        assert!(pod.spec.init_containers.is_some());
        assert!(pod.spec.volumes.is_none());
    }
}
