//! What the leader does next: a plain function of what it observed (the Secret, the
//! webhook's caBundle, the replicas' reports, the time) to one step. The writer carries the
//! step out, observes again and asks again, until the answer is to wait.
//!
//! Two rules keep every review working:
//! - a CA is in the caBundle for `trust_delay` before any certificate it alone signs is
//!   written to the Secret (the API servers pick up the new bundle in that time);
//! - an older CA leaves the Secret's trust (and then the caBundle) only once every replica
//!   that reports reports serving a certificate of the newest CA, or once it has expired.
//!
//! The rotation of a CA (due, or asked for with the Secret's `tandem.dev/rotate-ca`
//! annotation) is therefore: [`Step::BeginRotation`] (new CA first in `ca.crt`, the
//! served certificate unchanged), [`Step::ApplyBundle`] (old and new CA), a wait,
//! [`Step::IssueLeaf`] (a certificate of the new CA; replicas reload it), and
//! [`Step::Retire`] (the old CA out) once every replica serves the new one. A Secret that
//! is missing starts over the same way, the new CA kept in memory until it is trusted:
//! [`Step::MakeCa`], [`Step::ApplyBundle`] (new CA and whatever the bundle trusted), a
//! wait, [`Step::CreateSecret`].

use std::time::Duration;

use super::material::{Cert, Material};

/// What the Secret looks like to the planner.
#[derive(Clone, Debug)]
pub enum SecretView {
    Missing,
    Present {
        material: Material,
        /// The `tandem.dev/rotate-ca` annotation is set.
        rotate_requested: bool,
    },
}

/// A replica's report: the fingerprint of the CA that signed what it serves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    pub identity: String,
    pub issuer: String,
}

/// Everything the planner looks at.
#[derive(Clone)]
pub struct Observed<'a> {
    pub secret: &'a SecretView,
    /// The CAs in the caBundle of the webhook entries that call tandem (all equal, or
    /// `bundle_in_sync` is false against any target).
    pub bundle: &'a [Cert],
    /// Every entry that calls tandem holds exactly `bundle` (false when they differ).
    pub entries_agree: bool,
    /// Reports of the replicas heard from recently (the leader's own among them).
    pub reports: &'a [Report],
    /// How long, as this leader has seen it, the bundle has held the CA with this
    /// fingerprint (zero if it does not).
    pub trusted_for: &'a dyn Fn(&Cert) -> Duration,
    /// The CA made in memory for a Secret that is missing.
    pub pending: Option<&'a Cert>,
    /// Unix seconds.
    pub now: i64,
}

/// The settings the planner needs.
#[derive(Clone, Debug)]
pub struct Rules {
    /// What the serving certificate must name.
    pub names: Vec<String>,
    pub trust_delay: Duration,
}

/// The next thing to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Make a CA and keep it in memory as pending.
    MakeCa,
    /// Server-side apply exactly these CAs as every calling entry's caBundle.
    ApplyBundle(Vec<Cert>),
    /// Create the Secret: the pending CA (first in `trust`), a certificate it signs.
    CreateSecret { trust: Vec<Cert> },
    /// Put the pending CA first in the Secret's `ca.crt` (with `trust` after it) and its
    /// key in `ca.key`, keep the served certificate, drop the rotate annotation.
    BeginRotation { trust: Vec<Cert> },
    /// Issue a serving certificate with the newest CA into the Secret.
    IssueLeaf,
    /// Keep only these CAs in `ca.crt`.
    Retire { keep: Vec<Cert> },
    /// Nothing to do before this long, unless something changes.
    Wait { for_: Duration, why: &'static str },
    /// All is as it should be.
    Idle,
}

pub fn plan(seen: &Observed<'_>, rules: &Rules) -> Step {
    let now = seen.now;
    let (material, rotate_requested) = match seen.secret {
        SecretView::Missing => return recreate(seen, rules),
        SecretView::Present {
            material,
            rotate_requested,
        } => (material, *rotate_requested),
    };

    // The CA part: usable and not due, or a new CA goes first.
    let signer = material.signer(now);
    let ca_ok = signer.as_ref().is_some_and(|ca| !ca.cert.renewal_due(now));
    if !ca_ok || rotate_requested {
        let Some(_) = seen.pending else {
            return Step::MakeCa;
        };
        let mut trust = Vec::new();
        for cert in material.cas.iter().chain(seen.bundle) {
            if !cert.expired(now) && !trust.contains(cert) {
                trust.push(cert.clone());
            }
        }
        return Step::BeginRotation { trust };
    }
    let newest = &material.cas[0];

    // The caBundle follows ca.crt.
    if !seen.entries_agree || seen.bundle != material.cas.as_slice() {
        return Step::ApplyBundle(material.cas.clone());
    }

    // The serving certificate: present, right, not due, and the newest CA's.
    let leaf = material.leaf.as_ref().map(|leaf| &leaf.cert);
    let by_newest = leaf.is_some_and(|leaf| leaf.issued_by(newest));
    let leaf_ok = leaf.is_some_and(|leaf| {
        leaf.covers(&rules.names)
            && !leaf.renewal_due(now)
            && material.cas.iter().any(|ca| leaf.issued_by(ca))
    });
    if !leaf_ok || !by_newest {
        if !by_newest {
            let trusted = (seen.trusted_for)(newest);
            if trusted < rules.trust_delay {
                return Step::Wait {
                    for_: rules.trust_delay - trusted,
                    why: "the caBundle with the new CA is reaching the API servers",
                };
            }
        }
        return Step::IssueLeaf;
    }

    // Older CAs: out once every replica serves the newest one, or once expired.
    if material.cas.len() > 1 {
        let everyone_moved = !seen.reports.is_empty()
            && seen
                .reports
                .iter()
                .all(|report| report.issuer == newest.fingerprint);
        if everyone_moved {
            return Step::Retire {
                keep: vec![newest.clone()],
            };
        }
        let keep: Vec<Cert> = material
            .cas
            .iter()
            .filter(|ca| !ca.expired(now))
            .cloned()
            .collect();
        if keep.len() < material.cas.len() {
            return Step::Retire { keep };
        }
        return Step::Wait {
            for_: Duration::MAX,
            why: "waiting for every replica to serve the new CA's certificate",
        };
    }
    Step::Idle
}

/// No Secret: a new CA, trusted alongside what the bundle trusts, before the Secret with a
/// certificate of it is written.
fn recreate(seen: &Observed<'_>, rules: &Rules) -> Step {
    let Some(new) = seen.pending else {
        return Step::MakeCa;
    };
    let mut trust = vec![new.clone()];
    for cert in seen.bundle {
        if !cert.expired(seen.now) && !trust.contains(cert) {
            trust.push(cert.clone());
        }
    }
    if !seen.entries_agree || seen.bundle != trust.as_slice() {
        return Step::ApplyBundle(trust);
    }
    // Nothing else trusted: no replica can be serving a certificate that works, so there is
    // nothing to wait for (a fresh install).
    let trusted = (seen.trusted_for)(new);
    if trust.len() > 1 && trusted < rules.trust_delay {
        return Step::Wait {
            for_: rules.trust_delay - trusted,
            why: "the caBundle with the new CA is reaching the API servers",
        };
    }
    Step::CreateSecret { trust }
}

#[cfg(test)]
mod tests {
    //! A small cluster in memory: the Secret, the bundle, replicas that serve what the Secret
    //! held when they last looked. Every step the planner asks for is carried out, and after
    //! each one every replica that served a trusted certificate must still be trusted.

    use std::collections::HashMap;

    use super::*;
    use crate::tls_manager::material::{Ca, Leaf, issue_ca, issue_leaf};

    const DAY: i64 = 86_400;
    const START: i64 = 1_800_000_000;

    struct Cluster {
        now: i64,
        /// CAs by fingerprint, with their keys.
        keys: HashMap<String, Ca>,
        secret: Option<(Vec<Cert>, Option<Ca>, Option<Leaf>)>,
        rotate: bool,
        bundle: Vec<Cert>,
        /// When the bundle first held each CA.
        since: HashMap<String, i64>,
        pending: Option<Ca>,
        /// What each replica serves: the leaf's issuer, or none.
        replicas: Vec<Option<Cert>>,
        /// Replicas that no longer see Secret changes (cut off from the API server).
        frozen: Vec<bool>,
        ca_lifetime: i64,
        leaf_lifetime: i64,
        log: Vec<String>,
    }

    fn rules() -> Rules {
        Rules {
            names: vec!["tandem.tandem-system.svc".into()],
            trust_delay: Duration::from_secs(10),
        }
    }

    impl Cluster {
        fn new(replicas: usize) -> Cluster {
            Cluster {
                now: START,
                keys: HashMap::new(),
                secret: None,
                rotate: false,
                bundle: vec![],
                since: HashMap::new(),
                pending: None,
                replicas: vec![None; replicas],
                frozen: vec![false; replicas],
                ca_lifetime: 365 * DAY,
                leaf_lifetime: 90 * DAY,
                log: vec![],
            }
        }

        fn view(&self) -> SecretView {
            match &self.secret {
                None => SecretView::Missing,
                Some((cas, ca, leaf)) => SecretView::Present {
                    material: Material {
                        cas: cas.clone(),
                        ca_key_pem: ca.as_ref().map(|ca| ca.key_pem.clone()),
                        leaf: leaf.clone(),
                        problems: vec![],
                    },
                    rotate_requested: self.rotate,
                },
            }
        }

        /// Replicas that see the Secret load its certificate.
        fn sync_replicas(&mut self) {
            if let Some((cas, _, Some(leaf))) = &self.secret {
                let issuer = cas.iter().find(|ca| leaf.cert.issued_by(ca)).cloned();
                for (served, frozen) in self.replicas.iter_mut().zip(&self.frozen) {
                    if !frozen {
                        *served = issuer.clone();
                    }
                }
            }
        }

        fn assert_trusted(&self, before: &[bool]) {
            for (i, (served, was)) in self.replicas.iter().zip(before).enumerate() {
                // A frozen replica is silent: the planner cannot know it (see
                // a_silent_replica_is_taken_as_gone).
                if *was && !self.frozen[i] {
                    let ok = served.as_ref().is_some_and(|ca| self.bundle.contains(ca));
                    assert!(ok, "replica {i} lost trust; steps: {:#?}", self.log);
                }
            }
        }

        fn trusted(&self) -> Vec<bool> {
            self.replicas
                .iter()
                .map(|served| served.as_ref().is_some_and(|ca| self.bundle.contains(ca)))
                .collect()
        }

        /// Runs the planner until it waits forever or is idle; time passes in waits.
        fn settle(&mut self, max_steps: usize) -> Step {
            for _ in 0..max_steps {
                self.sync_replicas();
                let reports: Vec<Report> = self
                    .replicas
                    .iter()
                    .zip(&self.frozen)
                    .enumerate()
                    .filter(|(_, (_, frozen))| !**frozen)
                    .filter_map(|(i, (served, _))| {
                        served.as_ref().map(|ca| Report {
                            identity: format!("r{i}"),
                            issuer: ca.fingerprint.clone(),
                        })
                    })
                    .collect();
                let now = self.now;
                let since = self.since.clone();
                let trusted_for = move |ca: &Cert| {
                    since
                        .get(&ca.fingerprint)
                        .map_or(Duration::ZERO, |t| Duration::from_secs((now - t) as u64))
                };
                let view = self.view();
                let pending = self.pending.as_ref().map(|ca| ca.cert.clone());
                let step = plan(
                    &Observed {
                        secret: &view,
                        bundle: &self.bundle,
                        entries_agree: true,
                        reports: &reports,
                        trusted_for: &trusted_for,
                        pending: pending.as_ref(),
                        now,
                    },
                    &rules(),
                );
                self.log
                    .push(format!("{step:?}").chars().take(60).collect());
                let before = self.trusted();
                match step.clone() {
                    Step::MakeCa => {
                        let ca = issue_ca(self.now, self.ca_lifetime).unwrap();
                        self.keys.insert(ca.cert.fingerprint.clone(), ca.clone());
                        self.pending = Some(ca);
                    }
                    Step::ApplyBundle(cas) => {
                        for ca in &cas {
                            self.since.entry(ca.fingerprint.clone()).or_insert(self.now);
                        }
                        self.since
                            .retain(|fp, _| cas.iter().any(|c| &c.fingerprint == fp));
                        self.bundle = cas;
                    }
                    Step::CreateSecret { trust } => {
                        let ca = self.pending.take().unwrap();
                        assert_eq!(trust[0], ca.cert);
                        let leaf =
                            issue_leaf(&ca, &rules().names, self.now, self.leaf_lifetime).unwrap();
                        self.secret = Some((trust, Some(ca), Some(leaf)));
                    }
                    Step::BeginRotation { trust } => {
                        let ca = self.pending.take().unwrap();
                        let (_, _, leaf) = self.secret.take().unwrap();
                        let mut cas = vec![ca.cert.clone()];
                        cas.extend(trust);
                        self.secret = Some((cas, Some(ca), leaf));
                        self.rotate = false;
                    }
                    Step::IssueLeaf => {
                        let (cas, ca, _) = self.secret.take().unwrap();
                        let signer = ca.clone().unwrap();
                        let leaf =
                            issue_leaf(&signer, &rules().names, self.now, self.leaf_lifetime)
                                .unwrap();
                        self.secret = Some((cas, ca, Some(leaf)));
                    }
                    Step::Retire { keep } => {
                        self.secret.as_mut().unwrap().0 = keep;
                    }
                    Step::Wait { for_, .. } if for_ < Duration::from_secs(3600) => {
                        self.now += for_.as_secs() as i64;
                    }
                    Step::Wait { .. } | Step::Idle => return step,
                }
                self.sync_replicas();
                self.assert_trusted(&before);
            }
            panic!("no rest after {max_steps} steps: {:#?}", self.log);
        }
    }

    #[test]
    fn a_fresh_install_makes_a_ca_a_bundle_and_a_secret_without_waiting() {
        let mut cluster = Cluster::new(2);
        assert_eq!(cluster.settle(10), Step::Idle);
        let (cas, _, leaf) = cluster.secret.clone().unwrap();
        assert_eq!(cas.len(), 1);
        assert_eq!(cluster.bundle, cas);
        assert!(leaf.unwrap().cert.issued_by(&cas[0]));
        assert_eq!(cluster.now, START, "nothing was trusted before: no wait");
        assert!(cluster.replicas.iter().all(|r| r.as_ref() == Some(&cas[0])));
    }

    #[test]
    fn a_valid_secret_is_kept() {
        let mut cluster = Cluster::new(2);
        cluster.settle(10);
        let before = cluster.secret.clone().unwrap();
        cluster.now += 30 * DAY;
        assert_eq!(cluster.settle(10), Step::Idle);
        let after = cluster.secret.clone().unwrap();
        assert_eq!(before.0, after.0);
        assert_eq!(before.2.unwrap().cert, after.2.unwrap().cert);
    }

    #[test]
    fn a_forced_rotation_trusts_both_cas_until_every_replica_moved() {
        let mut cluster = Cluster::new(3);
        cluster.settle(10);
        let old = cluster.bundle[0].clone();
        cluster.rotate = true;
        assert_eq!(cluster.settle(20), Step::Idle);
        let steps = cluster.log.join("\n");
        let new = cluster.bundle[0].clone();
        assert_ne!(new, old);
        assert_eq!(cluster.bundle, vec![new.clone()], "{steps}");
        assert!(cluster.replicas.iter().all(|r| r.as_ref() == Some(&new)));
        assert!(steps.contains("BeginRotation"), "{steps}");
        assert!(steps.contains("Wait"), "{steps}");
        assert!(steps.contains("Retire"), "{steps}");
        assert!(!cluster.rotate);
    }

    #[test]
    fn a_silent_replica_is_taken_as_gone() {
        // A replica cut off from the API server neither loads the new certificate nor
        // reports: once the others serve the new CA, the old one goes.
        let mut cluster = Cluster::new(2);
        cluster.settle(10);
        let old = cluster.bundle[0].clone();
        cluster.frozen[1] = true;
        cluster.rotate = true;
        assert_eq!(cluster.settle(20), Step::Idle);
        assert!(!cluster.bundle.contains(&old));
        assert_eq!(cluster.replicas[1].as_ref(), Some(&old));
    }

    #[test]
    fn a_replica_that_reports_the_old_ca_keeps_it_trusted_until_it_expires() {
        let now = START;
        let old = issue_ca(now, 10 * DAY).unwrap();
        let new = issue_ca(now, 365 * DAY).unwrap();
        let leaf = issue_leaf(&new, &rules().names, now, 30 * DAY).unwrap();
        let cas = vec![new.cert.clone(), old.cert.clone()];
        let view = SecretView::Present {
            material: Material {
                cas: cas.clone(),
                ca_key_pem: Some(new.key_pem.clone()),
                leaf: Some(leaf),
                problems: vec![],
            },
            rotate_requested: false,
        };
        let reports = vec![
            Report {
                identity: "r0".into(),
                issuer: new.cert.fingerprint.clone(),
            },
            Report {
                identity: "r1".into(),
                issuer: old.cert.fingerprint.clone(),
            },
        ];
        let forever = |_: &Cert| Duration::MAX;
        let at = |now: i64| {
            plan(
                &Observed {
                    secret: &view,
                    bundle: &cas,
                    entries_agree: true,
                    reports: &reports,
                    trusted_for: &forever,
                    pending: None,
                    now,
                },
                &rules(),
            )
        };
        assert!(matches!(at(now), Step::Wait { .. }), "{:?}", at(now));
        assert_eq!(
            at(old.cert.not_after),
            Step::Retire {
                keep: vec![new.cert.clone()]
            }
        );
    }

    #[test]
    fn a_deleted_secret_is_recreated_after_the_new_ca_is_trusted() {
        let mut cluster = Cluster::new(2);
        cluster.settle(10);
        let old = cluster.bundle[0].clone();
        let started = cluster.now;
        cluster.secret = None;
        assert_eq!(cluster.settle(20), Step::Idle);
        let steps = cluster.log.join("\n");
        assert!(steps.contains("CreateSecret"), "{steps}");
        assert!(
            cluster.now >= started + 10,
            "waited for the bundle: {steps}"
        );
        assert!(!cluster.bundle.contains(&old));
        assert_eq!(cluster.bundle.len(), 1);
    }

    #[test]
    fn the_ca_and_the_leaf_are_renewed_before_they_end() {
        let mut cluster = Cluster::new(2);
        cluster.ca_lifetime = 90 * DAY;
        cluster.leaf_lifetime = 30 * DAY;
        cluster.settle(10);
        let first_ca = cluster.bundle[0].clone();
        let first_leaf = cluster.secret.as_ref().unwrap().2.clone().unwrap().cert;
        // A leaf two thirds through its life is re-issued by the same CA.
        cluster.now = first_leaf.not_after - 9 * DAY;
        cluster.settle(10);
        let second_leaf = cluster.secret.as_ref().unwrap().2.clone().unwrap().cert;
        assert_ne!(second_leaf, first_leaf);
        assert!(second_leaf.issued_by(&first_ca));
        assert_eq!(cluster.bundle, vec![first_ca.clone()]);
        // A CA two thirds through its life is rotated.
        cluster.now = first_ca.not_after - 29 * DAY;
        cluster.settle(20);
        assert_ne!(cluster.bundle, vec![first_ca]);
        assert_eq!(cluster.bundle.len(), 1);
    }

    #[test]
    fn a_leaf_for_other_names_is_reissued_without_waiting() {
        let mut cluster = Cluster::new(1);
        cluster.settle(10);
        let (cas, ca, _) = cluster.secret.clone().unwrap();
        let wrong = issue_leaf(
            ca.as_ref().unwrap(),
            &["elsewhere.svc".into()],
            cluster.now,
            DAY,
        )
        .unwrap();
        cluster.secret = Some((cas, ca, Some(wrong)));
        let at = cluster.now;
        assert_eq!(cluster.settle(10), Step::Idle);
        assert_eq!(cluster.now, at);
        assert!(
            cluster
                .secret
                .unwrap()
                .2
                .unwrap()
                .cert
                .covers(&rules().names)
        );
    }
}
