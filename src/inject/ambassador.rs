//! Proxy ambassador: Envoy listening on `127.0.0.1:<port>` (the app connects to localhost),
//! forwarding to weighted upstreams, configured entirely inline (`--config-yaml`): no
//! ConfigMap to create or keep in sync. A second listener on the pod IP answers `/ready`
//! for the kubelet, so as a native sidecar the app starts only once the proxy is up.

use k8s_openapi::{
    api::core::v1::{HTTPGetAction, Probe},
    apimachinery::pkg::util::intstr::IntOrString,
};
use serde_json::{Value, json};

use crate::{
    invalid::Invalid,
    pattern::{Pattern, Upstream, parse_bool, parse_duration, parse_port, parse_upstreams},
    policy::resolve::Resolved,
};

use super::{Builder, port, render};

/// The port of the readiness listener, unless the pod uses it already.
pub const HEALTH_PORT: u16 = 15021;
pub const HEALTH_PORT_NAME: &str = "ambassador-hc";
pub const HEALTH_PATH: &str = "/ready";

/// Where Envoy's image keeps the system CA bundle, for verifying TLS upstreams.
pub const CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

pub fn plan(builder: &mut Builder<'_>, resolved: &Resolved) -> Result<(), Invalid> {
    let listen = parse_port(resolved.require("port")).expect("checked during resolution");
    let upstreams =
        parse_upstreams(resolved.require("upstream")).expect("checked during resolution");
    let protocol = resolved.require("protocol");
    let name = builder.container_name(Pattern::Ambassador.container_name());
    // The app connects to this port on localhost, so nothing else in the pod may listen on it.
    builder.claim_port(listen, &name, resolved, "port")?;
    let health = builder.free_port(HEALTH_PORT, &name, resolved)?;

    let settings = Settings::from(resolved, &upstreams, protocol, listen, health);
    // Written as bytes: `Value`'s `to_string` goes through `fmt::Display`, a call per
    // token. The same compact JSON either way.
    let bootstrap = serde_json::to_string(&bootstrap(&settings)).expect("a Value serializes");
    let mut proxy = render(name, resolved, &[("bootstrap", &bootstrap)]);
    proxy
        .ports
        .get_or_insert_with(Vec::new)
        .push(port(HEALTH_PORT_NAME, health));
    let probe = |period, failures| Probe {
        http_get: Some(HTTPGetAction {
            path: Some(HEALTH_PATH.into()),
            port: IntOrString::String(HEALTH_PORT_NAME.into()),
            scheme: Some("HTTP".into()),
            ..Default::default()
        }),
        period_seconds: Some(period),
        failure_threshold: Some(failures),
        timeout_seconds: Some(1),
        ..Default::default()
    };
    proxy.startup_probe = Some(probe(1, 60));
    proxy.readiness_probe = Some(probe(5, 3));
    builder.add_sidecar(proxy, resolved.sidecar_mode);
    Ok(())
}

/// What the Envoy configuration is made from.
#[derive(Debug)]
pub struct Settings<'a> {
    pub protocol: &'a str,
    pub listen: u16,
    pub health: u16,
    pub upstreams: &'a [Upstream<'a>],
    pub connect_timeout: &'a str,
    pub timeout: &'a str,
    pub retries: u32,
    /// The server name to send and verify, when connecting with TLS.
    pub tls: Option<&'a str>,
}

impl<'a> Settings<'a> {
    fn from(
        resolved: &'a Resolved,
        upstreams: &'a [Upstream<'a>],
        protocol: &'a str,
        listen: u16,
        health: u16,
    ) -> Self {
        let tls = parse_bool(resolved.option("tls").unwrap_or("false")).unwrap_or(false);
        Settings {
            protocol,
            listen,
            health,
            upstreams,
            connect_timeout: resolved.require("connect-timeout"),
            timeout: resolved.require("timeout"),
            retries: resolved.require("retries").parse().unwrap_or(2),
            tls: tls.then(|| resolved.option("sni").unwrap_or(upstreams[0].host)),
        }
    }
}

/// Envoy's v3 bootstrap for `settings`, as JSON (which `--config-yaml` accepts).
pub fn bootstrap(settings: &Settings<'_>) -> Value {
    let clusters: Vec<Value> = settings
        .upstreams
        .iter()
        .enumerate()
        .map(|(i, upstream)| cluster(&format!("upstream-{i}"), upstream, settings))
        .collect();
    let weighted: Vec<Value> = settings
        .upstreams
        .iter()
        .enumerate()
        .map(|(i, u)| json!({"name": format!("upstream-{i}"), "weight": u.weight}))
        .collect();
    let data = match settings.protocol {
        "http" => http_listener(settings, weighted),
        _ => tcp_listener(settings, weighted),
    };
    json!({
        "node": {"id": "tandem-ambassador", "cluster": "tandem-ambassador"},
        "static_resources": {
            "listeners": [data, health_listener(settings.health)],
            "clusters": clusters,
        },
    })
}

fn address(host: &str, port: u16) -> Value {
    json!({"socket_address": {"address": host, "port_value": port}})
}

fn tcp_listener(settings: &Settings<'_>, weighted: Vec<Value>) -> Value {
    let mut proxy = json!({
        "@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
        "stat_prefix": "ambassador",
    });
    if weighted.len() == 1 {
        proxy["cluster"] = weighted[0]["name"].clone();
    } else {
        proxy["weighted_clusters"] = json!({"clusters": weighted});
    }
    json!({
        "name": "ambassador",
        "address": address("127.0.0.1", settings.listen),
        "filter_chains": [{"filters": [{
            "name": "envoy.filters.network.tcp_proxy",
            "typed_config": proxy,
        }]}],
    })
}

fn http_listener(settings: &Settings<'_>, weighted: Vec<Value>) -> Value {
    let mut route = json!({
        "timeout": envoy_duration(settings.timeout),
        "retry_policy": {
            "retry_on": "5xx,reset,connect-failure,refused-stream",
            "num_retries": settings.retries,
        },
        // Upstreams behind virtual hosting (and TLS) expect their own name as Host.
        "auto_host_rewrite": true,
    });
    if weighted.len() == 1 {
        route["cluster"] = weighted[0]["name"].clone();
    } else {
        route["weighted_clusters"] = json!({"clusters": weighted});
    }
    json!({
        "name": "ambassador",
        "address": address("127.0.0.1", settings.listen),
        "filter_chains": [{"filters": [{
            "name": "envoy.filters.network.http_connection_manager",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                "stat_prefix": "ambassador",
                "codec_type": "AUTO",
                // HTTP/1.0 clients too (nginx's proxy_pass speaks 1.0 unless told otherwise),
                // which Envoy would answer 426 Upgrade Required.
                "http_protocol_options": {
                    "accept_http_10": true,
                    "default_host_for_http_10": "localhost",
                },
                "route_config": {
                    "name": "ambassador",
                    "virtual_hosts": [{
                        "name": "upstreams",
                        "domains": ["*"],
                        "routes": [{"match": {"prefix": "/"}, "route": route}],
                    }],
                },
                "http_filters": [router()],
            },
        }]}],
    })
}

/// The kubelet's probe target: 200 on `/ready` while Envoy is up and not draining.
fn health_listener(port: u16) -> Value {
    json!({
        "name": "health",
        "address": address("0.0.0.0", port),
        "filter_chains": [{"filters": [{
            "name": "envoy.filters.network.http_connection_manager",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                "stat_prefix": "health",
                "route_config": {
                    "name": "health",
                    "virtual_hosts": [{
                        "name": "health",
                        "domains": ["*"],
                        "routes": [{"match": {"prefix": "/"}, "direct_response": {"status": 404}}],
                    }],
                },
                "http_filters": [
                    {
                        "name": "envoy.filters.http.health_check",
                        "typed_config": {
                            "@type": "type.googleapis.com/envoy.extensions.filters.http.health_check.v3.HealthCheck",
                            "pass_through_mode": false,
                            "headers": [{"name": ":path", "string_match": {"exact": HEALTH_PATH}}],
                        },
                    },
                    router(),
                ],
            },
        }]}],
    })
}

fn router() -> Value {
    json!({
        "name": "envoy.filters.http.router",
        "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
    })
}

fn cluster(name: &str, upstream: &Upstream<'_>, settings: &Settings<'_>) -> Value {
    let is_ip = upstream.host.parse::<std::net::IpAddr>().is_ok();
    let mut cluster = json!({
        "name": name,
        // STRICT_DNS keeps every address of a headless Service in rotation.
        "type": if is_ip { "STATIC" } else { "STRICT_DNS" },
        "connect_timeout": envoy_duration(settings.connect_timeout),
        "dns_lookup_family": "V4_PREFERRED",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{"lb_endpoints": [{"endpoint": {
                "address": address(upstream.host, upstream.port),
                "hostname": upstream.host,
            }}]}],
        },
    });
    if let Some(sni) = settings.tls {
        cluster["transport_socket"] = json!({
            "name": "envoy.transport_sockets.tls",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
                "sni": sni,
                "common_tls_context": {"validation_context": {
                    "trusted_ca": {"filename": CA_BUNDLE},
                    "match_typed_subject_alt_names": [{"san_type": "DNS", "matcher": {"exact": sni}}],
                }},
            },
        });
    }
    cluster
}

/// Protobuf JSON durations are seconds with an `s` suffix: `1m30s` → `90s`.
fn envoy_duration(text: &str) -> String {
    let duration = parse_duration(text).expect("checked during resolution");
    format!("{}s", duration.as_secs_f64())
}
