"""The metrics adapter, run for real: each exporter as tandem injects it, beside the real app
(Debian's redis, nginx, PostgreSQL and MariaDB; a StatsD client; an HTTP server of JSON),
scraped where the pod's annotations tell Prometheus to scrape, reporting the app up.

Where the profile takes credentials, the app demands them (a password-protected redis, a
PostgreSQL and a MariaDB user with a password) and they come from the Secret the pod names.
"""

import glob
import pwd
import re
import textwrap
import urllib.parse
from pathlib import Path


from apps import config_map, nginx_conf, secret
from fixtures import container, inject

EXPORTER = "tandem-metrics-adapter"
# Debian's PostgreSQL server programs (initdb, postgres, pg_isready), e.g. /usr/lib/postgresql/15/bin.
POSTGRES_BIN = max(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name), default="")
PASSWORD = "c0rrect-h0rse"


def pod(profile, app, volumes=(), **options):
    annotations = {"tandem.dev/metrics-adapter": profile}
    annotations.update({f"tandem.dev/metrics-adapter.{k}": v for k, v in options.items()})
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"{profile}-app", "annotations": annotations},
            "spec": {"containers": [app], "volumes": list(volumes)}}


def app(name, script, user=None, mounts=(), **extra):
    c = {"name": name, "image": f"docker.io/library/{name}:debian", "command": ["sh", "-c", script], **extra}
    if user:
        uid = pwd.getpwnam(user)
        c["securityContext"] = {"runAsUser": uid.pw_uid, "runAsGroup": uid.pw_gid}
    if mounts:
        c["volumeMounts"] = [{"name": n, "mountPath": p} for n, p in mounts]
    return c


def scrape(pod_, mutated, params=""):
    """The exporter's page where the annotations say Prometheus scrapes it."""
    annotations = mutated["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    port = int(annotations["prometheus.io/port"])
    assert [p["containerPort"] for p in container(mutated, EXPORTER)["ports"] if p["name"] == "metrics"] == [port]
    try:
        status, body = pod_.http_get(f"http://127.0.0.1:{port}{annotations['prometheus.io/path']}{params}", timeout=5)
    except OSError:
        return ""
    return body if status == 200 else ""


def sample(text, metric):
    """The value of an unlabelled sample, or None."""
    match = re.search(rf"^{re.escape(metric)} (\S+)$", text, re.M)
    return float(match.group(1)) if match else None


def wait_for_sample(pod_, mutated, metric, value, params=""):
    return pod_.wait_for(lambda: (text := scrape(pod_, mutated, params)) and sample(text, metric) == value and text,
                         what=f"{metric} {value}", timeout=90)


def test_redis_exporter_logs_in_with_the_secrets_password(run_pod):
    redis = app("redis", f"exec redis-server --bind 127.0.0.1 --port 6379 --requirepass {PASSWORD} "
                         "--save '' --appendonly no --dir /tmp", user="redis")
    mutated = inject(pod("redis", redis, secret="redis-auth"))
    p = run_pod(mutated, objects=[secret("redis-auth", REDIS_PASSWORD=PASSWORD)])
    text = wait_for_sample(p, mutated, "redis_up", 1)
    assert re.search(r'^redis_instance_info\{.*redis_version="[0-9.]+"', text, re.M)


def test_redis_exporter_without_the_password_reports_redis_down(run_pod):
    # The same app and exporter, no Secret: the exporter cannot log in (so the test above
    # proves the password travelled).
    redis = app("redis", f"exec redis-server --bind 127.0.0.1 --port 6379 --requirepass {PASSWORD} "
                         "--save '' --appendonly no --dir /tmp", user="redis")
    mutated = inject(pod("redis", redis))
    p = run_pod(mutated)
    wait_for_sample(p, mutated, "redis_up", 0)


NGINX_CONF = nginx_conf("    location = /stub_status { stub_status; }")

def test_nginx_exporter_reads_stub_status(run_pod):
    nginx = app("nginx", "exec nginx -c /etc/app/nginx.conf -g 'daemon off;'", user="www-data",
                mounts=[("conf", "/etc/app")])
    mutated = inject(pod("nginx", nginx, volumes=[{"name": "conf", "configMap": {"name": "nginx-conf"}}]))
    p = run_pod(mutated, objects=[config_map("nginx-conf", **{"nginx.conf": NGINX_CONF})])
    text = wait_for_sample(p, mutated, "nginx_up", 1)
    assert sample(text, "nginx_connections_accepted") >= 1


def test_postgres_exporter_logs_in_with_the_secrets_user(run_pod):
    script = textwrap.dedent(f"""
        set -e
        echo '{PASSWORD}' > /tmp/pw
        initdb -D /data/pg --auth=scram-sha-256 --username=admin --pwfile=/tmp/pw >/dev/null
        postgres -D /data/pg -c listen_addresses=localhost -c port=5432 -c unix_socket_directories=/tmp &
        until pg_isready -q -h localhost -p 5432; do sleep 0.2; done
        PGPASSWORD='{PASSWORD}' psql -h localhost -U admin -d postgres -v ON_ERROR_STOP=1 -q \\
          -c "CREATE USER metrics PASSWORD 'metrics-{PASSWORD}'" -c "GRANT pg_monitor TO metrics"
        echo ready
        wait""")
    postgres = app("postgres", script, user="postgres", mounts=[("data", "/data")],
                   env=[{"name": "PATH", "value": f"{POSTGRES_BIN}:/usr/bin:/bin"}])
    mutated = inject(pod("postgres", postgres, volumes=[{"name": "data", "emptyDir": {}}], secret="pg-auth"))
    p = run_pod(mutated, objects=[secret("pg-auth", DATA_SOURCE_USER="metrics", DATA_SOURCE_PASS=f"metrics-{PASSWORD}")])
    text = wait_for_sample(p, mutated, "pg_up", 1)
    assert re.search(rf'^pg_static\{{.*short_version="{Path(POSTGRES_BIN).parent.name}\.', text, re.M)


def test_mysqld_exporter_logs_in_with_the_secrets_password(run_pod):
    script = textwrap.dedent(f"""
        set -e
        mariadb-install-db --datadir=/data/mysql --auth-root-authentication-method=socket >/dev/null
        cat > /tmp/init.sql <<'SQL'
        CREATE USER 'exporter'@'localhost' IDENTIFIED BY '{PASSWORD}' WITH MAX_USER_CONNECTIONS 3;
        CREATE USER 'exporter'@'127.0.0.1' IDENTIFIED BY '{PASSWORD}' WITH MAX_USER_CONNECTIONS 3;
        GRANT PROCESS, REPLICATION CLIENT, SELECT ON *.* TO 'exporter'@'localhost';
        GRANT PROCESS, REPLICATION CLIENT, SELECT ON *.* TO 'exporter'@'127.0.0.1';
        SQL
        exec mariadbd --datadir=/data/mysql --socket=/tmp/mysqld.sock --pid-file=/tmp/mysqld.pid \\
          --bind-address=127.0.0.1 --port=3306 --skip-name-resolve=0 --init-file=/tmp/init.sql""")
    mysql = app("mariadb", script, user="mysql", mounts=[("data", "/data")])
    mutated = inject(pod("mysql", mysql, volumes=[{"name": "data", "emptyDir": {}}], secret="mysql-auth"))
    # The profile passes the user by flag (option `user`, default exporter), the password by
    # the Secret's MYSQLD_EXPORTER_PASSWORD.
    assert "--mysqld.username=exporter" in container(mutated, EXPORTER)["args"]
    p = run_pod(mutated, objects=[secret("mysql-auth", MYSQLD_EXPORTER_PASSWORD=PASSWORD)])
    text = wait_for_sample(p, mutated, "mysql_up", 1)
    assert re.search(r'^mysql_version_info\{.*version="[0-9]+\.', text, re.M)


def test_statsd_exporter_counts_what_the_app_sends_over_udp(run_pod):
    # The app: a StatsD client sending one counter increment a second to the target, over UDP.
    target = "localhost:9125"
    client = app("statsd-client", "while true; do printf 'checkout.orders:1|c' > /dev/udp/127.0.0.1/9125; sleep 1; done")
    client["command"] = ["bash", "-c", client["command"][2]]
    mutated = inject(pod("statsd", client))
    assert f"--statsd.listen-udp={target}" in container(mutated, EXPORTER)["args"]
    p = run_pod(mutated)
    p.wait_for(lambda: (sample(scrape(p, mutated), "checkout_orders") or 0) >= 3, what="three increments counted")


JSON_CONFIG = """
modules:
  default:
    metrics:
      - name: shop_orders
        path: "{ .orders }"
        help: orders taken
      - name: shop_queue
        type: object
        path: "{ .queues[*] }"
        labels: {queue: "{ .name }"}
        values: {depth: "{ .depth }"}
"""


def test_json_exporter_turns_the_apps_json_into_metrics(run_pod):
    page = '{"orders": 42, "queues": [{"name": "mail", "depth": 3}, {"name": "print", "depth": 0}]}'
    server = app("python", f"mkdir -p /tmp/site && printf '%s' '{page}' > /tmp/site/stats && cd /tmp/site && "
                           "exec python3 -m http.server --bind 127.0.0.1 8080")
    mutated = inject(pod("json", server, config="shop-json"))
    annotations = mutated["metadata"]["annotations"]
    # Prometheus scrapes /probe with the module and target the annotations name.
    params = "?" + urllib.parse.urlencode({"module": annotations["prometheus.io/param_module"],
                                           "target": annotations["prometheus.io/param_target"]})
    p = run_pod(mutated, objects=[config_map("shop-json", **{"config.yml": JSON_CONFIG})])
    text = wait_for_sample(p, mutated, "shop_orders", 42, params)
    assert re.search(r'^shop_queue_depth\{queue="mail"\} 3$', text, re.M)
    assert re.search(r'^shop_queue_depth\{queue="print"\} 0$', text, re.M)
