//! The value parsers shared by the kinds' checks and the injectors: booleans, ports,
//! `host:port` and upstream lists, durations, DNS names, git refs and git URLs.

use std::time::Duration;

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
    let total = sum_durations(value, false).ok_or_else(|| "is not a duration".to_string())?;
    if total > Duration::from_secs(7 * 24 * 3600) {
        return Err("is longer than a week".into());
    }
    if total.is_zero() {
        return Err("is zero".into());
    }
    Ok(total)
}

/// The sum of whole numbers with units, `1h30m` or `500ms` (`ms`, `s`, `m`, `h`, and `d`
/// when `days`): `None` for anything else, an empty text, or an overflow. The one reader of
/// durations for annotations and for the command line, each with its own bounds.
pub fn sum_durations(text: &str, days: bool) -> Option<Duration> {
    if text.is_empty() {
        return None;
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let number: u32 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let unit = match &rest[..unit_len] {
            "ms" => Duration::from_millis(1),
            "s" => Duration::from_secs(1),
            "m" => Duration::from_secs(60),
            "h" => Duration::from_secs(3600),
            "d" if days => Duration::from_secs(86_400),
            _ => return None,
        };
        rest = &rest[unit_len..];
        total = total.checked_add(unit.checked_mul(number)?)?;
    }
    Some(total)
}

pub(super) fn check_absolute_path(value: &str) -> Result<(), String> {
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

pub(super) fn check_git_ref(value: &str) -> Result<(), String> {
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
}
