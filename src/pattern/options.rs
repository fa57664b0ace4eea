//! The options each pattern accepts: names, defaults, whether required, the kind of value,
//! and the line `explain` and the README show.

use super::Kind;

/// An option of a pattern: `tandem.dev/<pattern>.<name>` on a pod, `<name>` under a
/// policy's `defaults.<pattern>`, `{{<name>}}` in a profile.
#[derive(Debug)]
pub struct OptionSpec {
    pub name: &'static str,
    /// Used when neither profile, policy nor annotation sets the option.
    pub default: Option<&'static str>,
    /// The pattern cannot work without it (the profile's options may supply it).
    pub required: bool,
    pub kind: Kind,
    /// One line for `explain` and the README.
    pub doc: &'static str,
}

const fn opt(
    name: &'static str,
    kind: Kind,
    default: Option<&'static str>,
    doc: &'static str,
) -> OptionSpec {
    OptionSpec {
        name,
        default,
        required: false,
        kind,
        doc,
    }
}

const fn required(spec: OptionSpec) -> OptionSpec {
    OptionSpec {
        required: true,
        ..spec
    }
}

/// Every pattern accepts `profile`; the bare annotation sets it for all but git-clone.
const PROFILE: OptionSpec = opt("profile", Kind::Profile, None, "the profile to use");

pub(super) static LOG_SHIPPER: &[OptionSpec] = &[
    PROFILE,
    required(opt(
        "path",
        Kind::AbsolutePath,
        Some("/var/log/app"),
        "the directory the app writes its log files into; shared with the shipper",
    )),
    opt(
        "containers",
        Kind::Containers,
        None,
        "the app containers that get the log directory (default: all)",
    ),
    opt(
        "secret",
        Kind::SecretName,
        None,
        "a Secret whose keys become the shipper's environment (credentials, such as S3 keys)",
    ),
];

pub(super) static METRICS_ADAPTER: &[OptionSpec] = &[
    PROFILE,
    required(opt(
        "target",
        Kind::HostPort,
        None,
        "where the exporter finds the app's own metrics (default: the profile's)",
    )),
    required(opt(
        "port",
        Kind::Port,
        None,
        "the port the exporter serves Prometheus metrics on (default: the profile's)",
    )),
    opt(
        "path",
        Kind::UrlPath,
        Some("/metrics"),
        "the HTTP path of the exporter's metrics",
    ),
    opt(
        "secret",
        Kind::SecretName,
        None,
        "a Secret whose keys become the exporter's environment (credentials)",
    ),
    opt(
        "config",
        Kind::ConfigMapName,
        None,
        "a ConfigMap with the exporter's configuration, mounted at /etc/tandem/<name> (json)",
    ),
];

pub(super) static AMBASSADOR: &[OptionSpec] = &[
    PROFILE,
    opt(
        "protocol",
        Kind::Protocol,
        Some("tcp"),
        "what the proxy speaks: tcp, or http for retries and request timeouts",
    ),
    required(opt(
        "upstream",
        Kind::Upstreams,
        None,
        "where the proxy forwards: host:port[=weight], comma separated",
    )),
    required(opt(
        "port",
        Kind::Port,
        None,
        "the port the app connects to on localhost",
    )),
    opt(
        "connect-timeout",
        Kind::Duration,
        Some("1s"),
        "how long a connection to an upstream may take",
    ),
    opt(
        "timeout",
        Kind::Duration,
        Some("15s"),
        "http: how long a whole request may take, retries included",
    ),
    opt(
        "retries",
        Kind::Retries,
        Some("2"),
        "http: how often a failed request is retried",
    ),
    opt(
        "tls",
        Kind::Bool,
        Some("false"),
        "connect to the upstreams with TLS, verified against the system CAs",
    ),
    opt(
        "sni",
        Kind::Hostname,
        None,
        "with tls: the server name to send and verify (default: the first upstream's host)",
    ),
];

pub(super) static GIT_CLONE: &[OptionSpec] = &[
    PROFILE,
    required(opt(
        "repo",
        Kind::GitRepo,
        None,
        "the repository; the bare tandem.dev/git-clone annotation sets it",
    )),
    opt(
        "ref",
        Kind::GitRef,
        Some("HEAD"),
        "the branch, tag or commit to check out",
    ),
    opt(
        "path",
        Kind::AbsolutePath,
        Some("/git"),
        "where the files appear in the app containers",
    ),
    opt(
        "depth",
        Kind::Depth,
        Some("1"),
        "how many commits to fetch; 0 for the full history",
    ),
    opt(
        "sync",
        Kind::Duration,
        None,
        "keep pulling at this interval with a git-sync sidecar",
    ),
    opt(
        "secret",
        Kind::SecretName,
        None,
        "a Secret with ssh (key ssh, known_hosts) or basic (username, password) credentials",
    ),
    opt(
        "ca",
        Kind::ConfigMapName,
        None,
        "a ConfigMap whose ca.crt is the CA https clones trust (a private git server's)",
    ),
    opt(
        "auth",
        Kind::GitAuth,
        None,
        "how the secret is used (default: ssh for ssh URLs, basic otherwise)",
    ),
    opt(
        "link",
        Kind::FileName,
        Some("current"),
        "sync mode: the name under path of the link to the current checkout",
    ),
    opt(
        "containers",
        Kind::Containers,
        None,
        "the app containers that get the files (default: all)",
    ),
    opt(
        "writable",
        Kind::Bool,
        Some("false"),
        "mount the files read-write in the app containers",
    ),
];

#[cfg(test)]
mod tests {
    use crate::pattern::Pattern;

    #[test]
    fn every_default_passes_its_own_check() {
        for pattern in Pattern::ALL {
            for spec in pattern.options() {
                if let Some(default) = spec.default {
                    assert_eq!(spec.kind.check(default), Ok(()), "{pattern}.{}", spec.name);
                }
            }
        }
    }
}
