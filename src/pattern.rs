//! The four patterns and the options each accepts: names, defaults, and the checks a value
//! must pass. Annotations, policies and the injectors all read this one table.

use std::{fmt, str::FromStr, time::Duration};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A multi-container pattern tandem knows how to add to a pod.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum Pattern {
    /// A log agent tailing the files the app writes into a shared emptyDir.
    LogShipper,
    /// An exporter that turns the app's own metrics into Prometheus metrics.
    MetricsAdapter,
    /// A local proxy the app reaches on localhost, forwarding to remote upstreams.
    Ambassador,
    /// A one-time clone into a shared emptyDir before the app starts, optionally kept in sync.
    GitClone,
}

impl Pattern {
    /// Every pattern, in the order their containers are added.
    pub const ALL: [Pattern; 4] = [
        Pattern::GitClone,
        Pattern::LogShipper,
        Pattern::MetricsAdapter,
        Pattern::Ambassador,
    ];

    /// The name users type: the annotation key and the policy field.
    pub const fn name(self) -> &'static str {
        match self {
            Pattern::LogShipper => "log-shipper",
            Pattern::MetricsAdapter => "metrics-adapter",
            Pattern::Ambassador => "ambassador",
            Pattern::GitClone => "git-clone",
        }
    }

    /// Index into per-pattern arrays.
    pub const fn index(self) -> usize {
        self as usize
    }

    /// The options of this pattern (profiles may declare more).
    pub fn options(self) -> &'static [OptionSpec] {
        match self {
            Pattern::LogShipper => LOG_SHIPPER,
            Pattern::MetricsAdapter => METRICS_ADAPTER,
            Pattern::Ambassador => AMBASSADOR,
            Pattern::GitClone => GIT_CLONE,
        }
    }

    /// The option spec called `name`, if the pattern itself defines it.
    pub fn option(self, name: &str) -> Option<&'static OptionSpec> {
        self.options().iter().find(|spec| spec.name == name)
    }

    /// The profile `"true"` selects when neither a policy nor the annotation names one.
    pub const fn default_profile(self) -> Option<&'static str> {
        match self {
            Pattern::LogShipper => Some("fluent-bit"),
            Pattern::MetricsAdapter => None,
            Pattern::Ambassador => Some("tcp"),
            Pattern::GitClone => Some("git-sync"),
        }
    }

    /// The name of the (first) container this pattern injects.
    pub const fn container_name(self) -> &'static str {
        match self {
            Pattern::LogShipper => "tandem-log-shipper",
            Pattern::MetricsAdapter => "tandem-metrics-adapter",
            Pattern::Ambassador => "tandem-ambassador",
            Pattern::GitClone => "tandem-git-clone",
        }
    }

    /// For error messages: the accepted pattern names.
    pub fn accepted() -> String {
        let mut names: Vec<_> = Pattern::ALL.iter().map(|p| p.name()).collect();
        names.sort_unstable();
        names.join(", ")
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Pattern {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        Pattern::ALL.into_iter().find(|p| p.name() == s).ok_or(())
    }
}

/// One value per pattern, indexed by [`Pattern::index`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PerPattern<T>(pub [T; 4]);

impl<T> PerPattern<T> {
    pub fn get(&self, pattern: Pattern) -> &T {
        &self.0[pattern.index()]
    }

    pub fn get_mut(&mut self, pattern: Pattern) -> &mut T {
        &mut self.0[pattern.index()]
    }
}

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

static LOG_SHIPPER: &[OptionSpec] = &[
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
];

static METRICS_ADAPTER: &[OptionSpec] = &[
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

static AMBASSADOR: &[OptionSpec] = &[
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

static GIT_CLONE: &[OptionSpec] = &[
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

// ---- value parsers shared by the checks above and the injectors ---------------------------

pub fn parse_bool(value: &str) -> Result<bool, String> {
    match value {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err("is not true or false".into()),
    }
}

pub fn parse_port(value: &str) -> Result<u16, String> {
    match value.parse::<u16>() {
        Ok(port) if port > 0 => Ok(port),
        _ => Err("is not a port number from 1 to 65535".into()),
    }
}

/// `host:port` → (host, port). IPv6 hosts are bracketed: `[::1]:6379`.
pub fn parse_host_port(value: &str) -> Result<(&str, u16), String> {
    let Some((host, port)) = value.rsplit_once(':') else {
        return Err("has no port".into());
    };
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if bare.is_empty() {
        return Err("has no host".into());
    }
    if bare.contains(':') && bare == host {
        return Err("has an IPv6 host without brackets".into());
    }
    if !bare
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b".-_:".contains(&b))
    {
        return Err("has a host that is not a DNS name or IP address".into());
    }
    let port = parse_port(port).map_err(|_| format!("has port {port:?}, not 1 to 65535"))?;
    Ok((bare, port))
}

/// One upstream of an ambassador.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Upstream<'a> {
    pub host: &'a str,
    pub port: u16,
    pub weight: u32,
}

pub fn parse_upstreams(value: &str) -> Result<Vec<Upstream<'_>>, String> {
    let mut upstreams = Vec::new();
    for item in value.split(',').map(str::trim) {
        if item.is_empty() {
            return Err("has an empty entry".into());
        }
        let (address, weight) = match item.split_once('=') {
            Some((address, weight)) => match weight.parse::<u32>() {
                Ok(w) if (1..=1000).contains(&w) => (address, w),
                _ => return Err(format!("has weight {weight:?} in {item:?}, not 1 to 1000")),
            },
            None => (item, 1),
        };
        let (host, port) =
            parse_host_port(address).map_err(|problem| format!("entry {item:?} {problem}"))?;
        upstreams.push(Upstream { host, port, weight });
    }
    if upstreams.len() > 16 {
        return Err("has more than 16 upstreams".into());
    }
    Ok(upstreams)
}

/// Go-style durations as Kubernetes and git-sync write them: `500ms`, `30s`, `1m30s`, `2h`.
pub fn parse_duration(value: &str) -> Result<Duration, String> {
    let bad = || "is not a duration".to_string();
    if value.is_empty() {
        return Err(bad());
    }
    let mut total = Duration::ZERO;
    let mut rest = value;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(bad());
        }
        let number: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let unit = match &rest[..unit_len] {
            "ms" => Duration::from_millis(1),
            "s" => Duration::from_secs(1),
            "m" => Duration::from_secs(60),
            "h" => Duration::from_secs(3600),
            _ => return Err(bad()),
        };
        rest = &rest[unit_len..];
        total = unit
            .checked_mul(u32::try_from(number).map_err(|_| bad())?)
            .and_then(|d| total.checked_add(d))
            .ok_or_else(bad)?;
    }
    if total > Duration::from_secs(7 * 24 * 3600) {
        return Err("is longer than a week".into());
    }
    if total.is_zero() {
        return Err("is zero".into());
    }
    Ok(total)
}

fn check_absolute_path(value: &str) -> Result<(), String> {
    if !value.starts_with('/') {
        return Err("is not an absolute path".into());
    }
    if value == "/" {
        return Err("is the root directory".into());
    }
    if value.split('/').any(|segment| segment == "..") {
        return Err("contains '..'".into());
    }
    if value.contains(|c: char| c.is_control() || c == ':' || c == ',') {
        return Err("contains ':', ',' or control characters".into());
    }
    Ok(())
}

/// RFC 1123 label: lowercase alphanumerics and '-', at most 63, starting and ending alphanumeric.
pub fn check_dns_label(value: &str) -> Result<(), String> {
    let bytes = value.as_bytes();
    let ok = !bytes.is_empty()
        && bytes.len() <= 63
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes[0] != b'-'
        && bytes[bytes.len() - 1] != b'-';
    if ok {
        Ok(())
    } else {
        Err(format!("{value:?} is not a DNS-1123 label"))
    }
}

/// RFC 1123 subdomain: dot-separated labels, at most 253 characters.
pub fn check_dns_subdomain(value: &str) -> Result<(), String> {
    if value.is_empty()
        || value.len() > 253
        || value.split('.').any(|l| check_dns_label(l).is_err())
    {
        Err("is not a DNS-1123 subdomain".into())
    } else {
        Ok(())
    }
}

fn check_git_ref(value: &str) -> Result<(), String> {
    // git-sync passes the ref to git as an argument: a leading '-' would read as a flag.
    let ok = !value.is_empty()
        && value.len() <= 255
        && !value.starts_with(['-', '/', '.'])
        && !value.contains("..")
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._/-+".contains(&b));
    if ok {
        Ok(())
    } else {
        Err("is not a branch, tag or commit name".into())
    }
}

/// The parts of a git URL the allow-list and the credentials need.
#[derive(Debug, PartialEq, Eq)]
pub struct GitUrl<'a> {
    pub host: &'a str,
    pub ssh: bool,
}

impl<'a> GitUrl<'a> {
    pub fn parse(value: &'a str) -> Result<Self, String> {
        if value.chars().any(|c| c.is_whitespace() || c.is_control()) || value.starts_with('-') {
            return Err("contains whitespace or starts with '-'".into());
        }
        let (rest, ssh) = if let Some(rest) = value.strip_prefix("https://") {
            (rest, false)
        } else if let Some(rest) = value.strip_prefix("ssh://") {
            (rest, true)
        } else if let Some((scheme, _)) = value.split_once("://") {
            return Err(format!("uses scheme {scheme:?}, not https or ssh"));
        } else if let Some((user_host, path)) = value.split_once(':') {
            // scp-like: git@github.com:example/site.git
            if !user_host.contains('@') || path.is_empty() {
                return Err("is neither a URL nor user@host:path".into());
            }
            let host = user_host.rsplit_once('@').map_or(user_host, |(_, h)| h);
            check_dns_subdomain(host).map_err(|_| format!("has host {host:?}, not a DNS name"))?;
            return Ok(GitUrl { host, ssh: true });
        } else {
            return Err("is not a URL".into());
        };
        let authority = rest.split('/').next().unwrap_or_default();
        let path = &rest[authority.len()..];
        if path.len() < 2 {
            return Err("has no repository path".into());
        }
        let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        if !ssh && authority.contains('@') {
            return Err("carries credentials in the URL; use the secret option".into());
        }
        let host = match host_port.rsplit_once(':') {
            Some((host, port)) if port.parse::<u16>().is_ok() => host,
            _ => host_port,
        };
        check_dns_subdomain(host).map_err(|_| format!("has host {host:?}, not a DNS name"))?;
        Ok(GitUrl { host, ssh })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case("30s", 30_000)]
    #[case("500ms", 500)]
    #[case("1m30s", 90_000)]
    #[case("2h", 7_200_000)]
    fn durations(#[case] text: &str, #[case] millis: u64) {
        assert_eq!(parse_duration(text), Ok(Duration::from_millis(millis)));
    }

    #[rstest]
    #[case("")]
    #[case("30")]
    #[case("s")]
    #[case("1d")]
    #[case("0s")]
    #[case("-1s")]
    #[case("9999999h")]
    fn bad_durations(#[case] text: &str) {
        assert!(parse_duration(text).is_err(), "{text:?} parsed");
    }

    #[rstest]
    #[case("https://github.com/example/site.git", "github.com", false)]
    #[case("https://gitlab.example.com:8443/a/b", "gitlab.example.com", false)]
    #[case("ssh://git@github.com/example/site.git", "github.com", true)]
    #[case("git@github.com:example/site.git", "github.com", true)]
    fn git_urls(#[case] url: &str, #[case] host: &str, #[case] ssh: bool) {
        assert_eq!(GitUrl::parse(url), Ok(GitUrl { host, ssh }));
    }

    #[rstest]
    #[case("http://github.com/example/site.git", "scheme \"http\"")]
    #[case("file:///etc/passwd", "scheme \"file\"")]
    #[case("https://user:pw@github.com/x/y", "credentials")]
    #[case("https://github.com", "no repository path")]
    #[case("/srv/repo", "not a URL")]
    #[case("--upload-pack=x", "starts with '-'")]
    fn bad_git_urls(#[case] url: &str, #[case] problem: &str) {
        let error = GitUrl::parse(url).unwrap_err();
        assert!(error.contains(problem), "{url}: {error}");
    }

    #[test]
    fn upstreams_with_weights() {
        let parsed = parse_upstreams("redis-a.db:6379=3, redis-b.db:6379").unwrap();
        assert_eq!(
            parsed,
            vec![
                Upstream {
                    host: "redis-a.db",
                    port: 6379,
                    weight: 3
                },
                Upstream {
                    host: "redis-b.db",
                    port: 6379,
                    weight: 1
                },
            ]
        );
        assert_eq!(parse_upstreams("[::1]:80").unwrap()[0].host, "::1");
    }

    #[rstest]
    #[case("redis-a.db", "has no port")]
    #[case("redis:0", "not 1 to 65535")]
    #[case("redis:99999", "not 1 to 65535")]
    #[case("redis:6379=0", "weight")]
    #[case("a:1,,b:2", "empty entry")]
    #[case("::1:80", "IPv6")]
    fn bad_upstreams(#[case] value: &str, #[case] problem: &str) {
        let error = parse_upstreams(value).unwrap_err();
        assert!(error.contains(problem), "{value}: {error}");
    }

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
