//! What went wrong with clients and with tandem itself, as metrics: connections the
//! server cut short (and why), connections open, reviews that panicked.

use prometheus_client::{
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};

use crate::server::Cut;

/// The counters, registered together.
pub struct Faults {
    cut: Vec<Counter>,
    pub open_connections: Gauge,
    panics: Counter,
}

impl Faults {
    pub fn register(registry: &mut Registry) -> Faults {
        let family = Family::<[(&'static str, &'static str); 1], Counter>::default();
        let cut = Cut::ALL
            .iter()
            .map(|cut| family.get_or_create(&[("reason", cut.label())]).clone())
            .collect();
        registry.register(
            "connections_cut",
            "Webhook connections closed by tandem rather than by the client, by reason \
             (refused, evicted, handshake_timeout, header_timeout, idle, stalled)",
            family,
        );
        let open_connections = Gauge::default();
        registry.register(
            "open_connections",
            "Webhook connections open now",
            open_connections.clone(),
        );
        let panics = Counter::default();
        registry.register(
            "review_panics",
            "Reviews that panicked (a bug), each answered with HTTP 500 naming its uid",
            panics.clone(),
        );
        Faults {
            cut,
            open_connections,
            panics,
        }
    }

    pub fn cut(&self, cut: Cut) {
        self.cut[cut.index()].inc();
    }

    pub fn panicked(&self) {
        self.panics.inc();
    }
}
