"""The four TLS modes: auto renders nothing TLS-related (the same on every render), and
helm's caBundle survives `helm upgrade`."""

from __future__ import annotations

import base64
import datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from chartlib import CA_PEM, NAMESPACE, SCENARIOS, container, flags, pod_of

HELM = {"tls": {"mode": "helm"}}
SERVICE_DNS = ["tandem", f"tandem.{NAMESPACE}", f"tandem.{NAMESPACE}.svc", f"tandem.{NAMESPACE}.svc.cluster.local"]


def webhook(objects) -> dict:
    return objects.one("MutatingWebhookConfiguration")


def ca_bundle(objects) -> str | None:
    return webhook(objects)["webhooks"][0]["clientConfig"].get("caBundle")


def tls_volume_secret(objects) -> str:
    (volume,) = [v for v in pod_of(objects.one("Deployment"))["spec"]["volumes"] if v["name"] == "tls"]
    return volume["secret"]["secretName"]


def helm_test_ca_secret(objects) -> str:
    (volume,) = objects.one("Pod")["spec"]["volumes"]
    return volume["secret"]["secretName"]


def load(b64_pem: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(base64.b64decode(b64_pem))


# --- auto -----------------------------------------------------------------------------------


def test_auto_is_the_default_and_renders_no_key_certificate_or_ca_bundle(render):
    objects = render({})
    assert not objects.all("Secret") and not objects.all("Certificate") and not objects.all("Issuer")
    assert ca_bundle(objects) is None
    assert "annotations" not in webhook(objects)["metadata"]
    server = pod_of(objects.one("Deployment"))
    assert not [v for v in server["spec"]["volumes"] if v["name"] == "tls"]
    f = flags(container(server, "tandem"))
    assert "tls-cert" not in f and "tls-key" not in f
    fullname = webhook(objects)["metadata"]["name"]
    assert f["tls-secret"] == f"{fullname}-tls" == f["tls-lease"] == helm_test_ca_secret(objects)
    assert f["tls-webhook"] == fullname and f["tls-service"] == objects.one("Service")["metadata"]["name"]
    assert f["tls-namespace"] == NAMESPACE
    assert f["tls-extra-names"] == f"{fullname}.{NAMESPACE}.svc.cluster.local"
    assert (f["tls-ca-duration"], f["tls-cert-duration"]) == ("43800h", "2160h")
    assert (f["tls-check-interval"], f["tls-trust-delay"], f["tls-lease-duration"]) == ("1m", "10s", "15s")


@pytest.mark.parametrize(
    "url, host",
    [
        ("https://127.0.0.1:8443/mutate", "127.0.0.1"),
        ("https://[::1]:8443/mutate", "::1"),
        ("https://dev-laptop.example/mutate", "dev-laptop.example"),
    ],
)
def test_auto_puts_the_webhook_urls_host_into_the_certificate(render, url, host):
    values = {"webhook": {"url": url}, "clusterDomain": "corp.internal", "tls": {"auto": {"extraNames": ["10.0.0.7", host]}}}
    f = flags(container(pod_of(render(values).one("Deployment")), "tandem"))
    assert f["tls-extra-names"] == f"tandem.{NAMESPACE}.svc.corp.internal,{host},10.0.0.7"


def test_auto_renders_are_byte_identical_offline_and_against_a_cluster(render, render_against, fake_apiserver):
    """What Argo CD and Flux rely on: the same values give the same manifests, every time."""
    values = {"replicaCount": 3, "webhook": {"url": "https://127.0.0.1:8443/mutate"}}
    first, second = render(values), render(values)
    assert first.manifests == second.manifests
    upgraded = render_against(fake_apiserver, values, is_upgrade=True)
    assert upgraded.manifests == first.manifests
    # where helm mode is not: its CA is generated anew on each render without the cluster
    assert render(HELM).manifests != render(HELM).manifests


@pytest.mark.parametrize(
    "auto",
    [{"caDuration": "5y"}, {"certDuration": "1.5h"}, {"leaseDuration": "500ms"}, {"extraNames": ["not a name"]}, {"renewBefore": "1h"}],
)
def test_auto_settings_are_checked_by_the_schema(render, auto):
    from helm_python.errors import HelmError

    with pytest.raises(HelmError):
        render({"tls": {"auto": auto}})


# --- helm -----------------------------------------------------------------------------------


def test_helm_mode_generates_a_ca_and_a_serving_certificate_for_the_service(render):
    objects = render(HELM)
    secret = objects.one("Secret")
    assert secret["type"] == "kubernetes.io/tls"
    assert set(secret["data"]) == {"ca.crt", "tls.crt", "tls.key"}
    assert ca_bundle(objects) == secret["data"]["ca.crt"]
    assert tls_volume_secret(objects) == secret["metadata"]["name"]
    assert helm_test_ca_secret(objects) == secret["metadata"]["name"]

    ca, cert = load(secret["data"]["ca.crt"]), load(secret["data"]["tls.crt"])
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    cert.verify_directly_issued_by(ca)
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    assert sorted(sans) == sorted(SERVICE_DNS)
    assert ExtendedKeyUsageOID.SERVER_AUTH in cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    now = datetime.datetime.now(datetime.timezone.utc)
    assert cert.not_valid_before_utc <= now < cert.not_valid_after_utc
    assert cert.not_valid_after_utc - now > datetime.timedelta(days=3000)  # certValidityDays 3650
    key = serialization.load_pem_private_key(base64.b64decode(secret["data"]["tls.key"]), password=None)
    assert key.public_key().public_numbers() == cert.public_key().public_numbers()


def test_helm_mode_uses_the_cluster_domain(render):
    secret = render({**HELM, "clusterDomain": "corp.internal"}).one("Secret")
    sans = load(secret["data"]["tls.crt"]).extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert f"tandem.{NAMESPACE}.svc.corp.internal" in sans.get_values_for_type(x509.DNSName)


def test_without_a_cluster_each_render_generates_a_new_ca(render):
    """Offline (helm template, first install) lookup finds nothing."""
    assert ca_bundle(render(HELM)) != ca_bundle(render(HELM))


def test_upgrade_keeps_the_existing_secret_and_the_ca_bundle(render, render_against, fake_apiserver):
    installed = render(HELM)
    secret = installed.one("Secret")
    fake_apiserver.add_secret(secret)

    upgraded = render_against(fake_apiserver, HELM, is_upgrade=True)
    assert upgraded.one("Secret")["data"] == secret["data"]
    assert ca_bundle(upgraded) == ca_bundle(installed) == secret["data"]["ca.crt"]
    assert any(r.startswith(f"/api/v1/namespaces/{NAMESPACE}/secrets/tandem-tls") for r in fake_apiserver.requests)

    # and again: a second upgrade with other values still keeps it
    again = render_against(fake_apiserver, {**HELM, "replicaCount": 3, "webhook": {"failurePolicy": "Ignore"}}, is_upgrade=True)
    assert ca_bundle(again) == secret["data"]["ca.crt"]


def test_upgrade_without_the_secret_generates_one(render_against, fake_apiserver):
    objects = render_against(fake_apiserver, HELM, is_upgrade=True)
    secret = objects.one("Secret")
    assert ca_bundle(objects) == secret["data"]["ca.crt"]
    load(secret["data"]["tls.crt"]).verify_directly_issued_by(load(secret["data"]["ca.crt"]))
    assert any("/secrets/tandem-tls" in r for r in fake_apiserver.requests), "lookup was not asked"


def test_upgrade_replaces_a_secret_made_for_other_dns_names(render, render_against, fake_apiserver):
    old = render({**HELM, "clusterDomain": "old.example"}).one("Secret")
    fake_apiserver.add_secret(old)
    objects = render_against(fake_apiserver, HELM, is_upgrade=True)
    assert ca_bundle(objects) != old["data"]["ca.crt"]
    sans = load(objects.one("Secret")["data"]["tls.crt"]).extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    ).value.get_values_for_type(x509.DNSName)
    assert sorted(sans) == sorted(SERVICE_DNS)


def test_upgrade_replaces_an_incomplete_secret(render, render_against, fake_apiserver):
    old = render(HELM).one("Secret")
    del old["data"]["ca.crt"]
    fake_apiserver.add_secret(old)
    objects = render_against(fake_apiserver, HELM, is_upgrade=True)
    assert set(objects.one("Secret")["data"]) == {"ca.crt", "tls.crt", "tls.key"}
    assert objects.one("Secret")["data"]["tls.crt"] != old["data"]["tls.crt"]


# --- certManager --------------------------------------------------------------------------


def test_cert_manager_mode_with_its_own_ca_chain(render):
    objects = render(SCENARIOS["tls-certManager"])
    assert not objects.all("Secret")
    assert ca_bundle(objects) is None
    issuers = {i["metadata"]["name"]: i for i in objects.all("Issuer")}
    certs = {c["metadata"]["name"]: c for c in objects.all("Certificate")}
    assert set(issuers) == {"tandem-selfsigned", "tandem-ca"} and set(certs) == {"tandem-ca", "tandem-tls"}
    # self-signed Issuer -> CA Certificate -> CA Issuer -> serving Certificate
    assert issuers["tandem-selfsigned"]["spec"] == {"selfSigned": {}}
    ca_cert = certs["tandem-ca"]["spec"]
    assert ca_cert["isCA"] is True and ca_cert["issuerRef"]["name"] == "tandem-selfsigned"
    assert issuers["tandem-ca"]["spec"]["ca"]["secretName"] == ca_cert["secretName"]
    serving = certs["tandem-tls"]["spec"]
    assert serving["issuerRef"] == {"name": "tandem-ca", "kind": "Issuer", "group": "cert-manager.io"}
    assert sorted(serving["dnsNames"]) == sorted(SERVICE_DNS)
    assert serving["secretName"] == tls_volume_secret(objects) == helm_test_ca_secret(objects)
    assert "server auth" in serving["usages"]
    for obj in list(issuers.values()) + list(certs.values()):
        assert obj["apiVersion"] == "cert-manager.io/v1" and obj["metadata"]["namespace"] == NAMESPACE
    # the CA injector reads <namespace>/<Certificate name>
    annotation = webhook(objects)["metadata"]["annotations"]["cert-manager.io/inject-ca-from"]
    assert annotation == f"{NAMESPACE}/tandem-tls"


def test_cert_manager_mode_with_a_given_issuer(render):
    objects = render(SCENARIOS["tls-certManager-issuer"])
    assert not objects.all("Issuer")
    serving = objects.one("Certificate")
    assert serving["spec"]["issuerRef"] == {"name": "corp-ca", "kind": "ClusterIssuer", "group": "cert-manager.io"}
    annotation = webhook(objects)["metadata"]["annotations"]["cert-manager.io/inject-ca-from"]
    assert annotation == f"{NAMESPACE}/{serving['metadata']['name']}"


# --- secret ---------------------------------------------------------------------------------


@pytest.mark.parametrize("scenario", ["tls-secret", "tls-secret-base64"])
def test_secret_mode_uses_the_given_secret_and_ca_bundle(render, scenario):
    objects = render(SCENARIOS[scenario])
    assert not objects.all("Secret") and not objects.all("Certificate") and not objects.all("Issuer")
    assert base64.b64decode(ca_bundle(objects)).decode().strip() == CA_PEM.strip()
    assert "annotations" not in webhook(objects)["metadata"]
    assert tls_volume_secret(objects) == "my-webhook-tls" == helm_test_ca_secret(objects)


@pytest.mark.parametrize("mode", ["helm", "certManager"])
def test_other_modes_do_not_annotate_or_leak(render, mode):
    objects = render({"tls": {"mode": mode}})
    annotations = webhook(objects)["metadata"].get("annotations", {})
    assert ("cert-manager.io/inject-ca-from" in annotations) is (mode == "certManager")
