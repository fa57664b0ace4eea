//! The kinds of value an option accepts: what each is called in error messages, and the
//! check a value must pass.

use super::values::{
    GitUrl, check_absolute_path, check_dns_label, check_dns_subdomain, check_git_ref, parse_bool,
    parse_duration, parse_host_port, parse_port, parse_upstreams,
};

/// What values an option accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A profile name; checked against the profile table, not here.
    Profile,
    AbsolutePath,
    /// Comma-separated container names.
    Containers,
    Port,
    /// `host:port`.
    HostPort,
    /// An HTTP path such as `/metrics`.
    UrlPath,
    /// The name of a Secret in the pod's namespace.
    SecretName,
    /// The name of a ConfigMap in the pod's namespace.
    ConfigMapName,
    /// `host:port[=weight]`, comma separated.
    Upstreams,
    /// `500ms`, `30s`, `1m30s`, `2h`.
    Duration,
    Retries,
    Bool,
    Hostname,
    /// An https:// or ssh:// URL, or scp-like `user@host:path`.
    GitRepo,
    /// A branch, tag or commit.
    GitRef,
    Depth,
    /// `ssh` or `basic`.
    GitAuth,
    /// `tcp` or `http`.
    Protocol,
    /// A single file or directory name.
    FileName,
    /// Free text for profile-declared options: anything without control characters.
    Text,
}

impl Kind {
    /// What the kind accepts, as error messages say it.
    pub fn accepted(self) -> &'static str {
        match self {
            Kind::Profile => "a profile name",
            Kind::AbsolutePath => "an absolute path such as /var/log/app",
            Kind::Containers => "comma-separated container names of this pod, such as web,worker",
            Kind::Port => "a port number from 1 to 65535",
            Kind::HostPort => "host:port, such as localhost:6379",
            Kind::UrlPath => "an HTTP path starting with /, such as /metrics",
            Kind::SecretName => "the name of a Secret in the pod's namespace",
            Kind::ConfigMapName => "the name of a ConfigMap in the pod's namespace",
            Kind::Upstreams => {
                "host:port[=weight], comma separated, such as redis-a.db:6379=3,redis-b.db:6379=1"
            }
            Kind::Duration => "a duration such as 500ms, 30s, 5m or 1h",
            Kind::Retries => "a number of retries from 0 to 10",
            Kind::Bool => "true or false",
            Kind::Hostname => "a DNS name such as api.example.com",
            Kind::GitRepo => {
                "an https:// or ssh:// URL, or user@host:path, such as https://github.com/example/site.git"
            }
            Kind::GitRef => "a branch, tag or commit, such as main, v1.2.0 or a commit hash",
            Kind::Depth => "a number of commits from 0 (full history) to 1000000",
            Kind::GitAuth => "ssh or basic",
            Kind::Protocol => "tcp or http",
            Kind::FileName => "a file name of letters, digits, '.', '_' and '-'",
            Kind::Text => "text without control characters",
        }
    }

    /// `Err(problem)` when `value` is not of this kind; the caller adds key and accepted.
    pub fn check(self, value: &str) -> Result<(), String> {
        match self {
            Kind::Profile => check_dns_label(value),
            Kind::AbsolutePath => check_absolute_path(value),
            Kind::Containers => value
                .split(',')
                .try_for_each(|name| check_dns_label(name.trim())),
            Kind::Port => parse_port(value).map(drop),
            Kind::HostPort => parse_host_port(value).map(drop),
            Kind::UrlPath => {
                if value.starts_with('/') && !value.contains(char::is_whitespace) {
                    Ok(())
                } else {
                    Err("is not an HTTP path".into())
                }
            }
            Kind::SecretName | Kind::ConfigMapName => check_dns_subdomain(value),
            Kind::Upstreams => parse_upstreams(value).map(drop),
            Kind::Duration => parse_duration(value).map(drop),
            Kind::Retries => match value.parse::<u32>() {
                Ok(n) if n <= 10 => Ok(()),
                _ => Err("is not a number of retries from 0 to 10".into()),
            },
            Kind::Bool => parse_bool(value).map(drop),
            Kind::Hostname => check_dns_subdomain(value),
            Kind::GitRepo => GitUrl::parse(value).map(drop),
            Kind::GitRef => check_git_ref(value),
            Kind::Depth => match value.parse::<u32>() {
                Ok(n) if n <= 1_000_000 => Ok(()),
                _ => Err("is not a number of commits".into()),
            },
            Kind::GitAuth => match value {
                "ssh" | "basic" => Ok(()),
                _ => Err("is not a known authentication method".into()),
            },
            Kind::Protocol => match value {
                "tcp" | "http" => Ok(()),
                _ => Err("is not a protocol the ambassador speaks".into()),
            },
            Kind::FileName => {
                let ok = !value.is_empty()
                    && value.len() <= 63
                    && !value.starts_with('.')
                    && value
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
                if ok {
                    Ok(())
                } else {
                    Err("is not a plain file name".into())
                }
            }
            Kind::Text => {
                if value.chars().any(char::is_control) {
                    Err("contains control characters".into())
                } else {
                    Ok(())
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case(Kind::AbsolutePath, "/var/log/app", true)]
    #[case(Kind::AbsolutePath, "var/log/app", false)]
    #[case(Kind::AbsolutePath, "/", false)]
    #[case(Kind::AbsolutePath, "/var/../etc", false)]
    #[case(Kind::Port, "9121", true)]
    #[case(Kind::Port, "0", false)]
    #[case(Kind::Port, "65536", false)]
    #[case(Kind::GitRef, "main", true)]
    #[case(Kind::GitRef, "refs/tags/v1.0", true)]
    #[case(Kind::GitRef, "-c", false)]
    #[case(Kind::Containers, "web,worker", true)]
    #[case(Kind::Containers, "Web", false)]
    #[case(Kind::Retries, "11", false)]
    #[case(Kind::FileName, "..", false)]
    fn kinds(#[case] kind: Kind, #[case] value: &str, #[case] ok: bool) {
        assert_eq!(kind.check(value).is_ok(), ok, "{kind:?} {value:?}");
    }
}
