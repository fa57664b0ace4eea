"""What the tests' app containers share: API objects, nginx's configuration, a GET from the pod."""

import base64

NGINX_TEMP_PATHS = """
  client_body_temp_path /tmp/body;
  proxy_temp_path /tmp/proxy;
  fastcgi_temp_path /tmp/fastcgi;
  uwsgi_temp_path /tmp/uwsgi;
  scgi_temp_path /tmp/scgi;"""


def nginx_conf(server, http="  access_log off;"):
    """A whole nginx.conf for a non-root nginx in the foreground: one server on 127.0.0.1:8080,
    temporary files and the pid under /tmp, errors on stderr; `http` adds to the http block
    (by default: no access log)."""
    return f"""
pid /tmp/nginx.pid;
error_log stderr;
events {{}}
http {{{NGINX_TEMP_PATHS}
{http}
  server {{
    listen 127.0.0.1:8080;
{server}
  }}
}}
"""


def secret(name, **data):
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name},
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}}


def config_map(name, **data):
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data}


def get(pod, port, path, timeout=3):
    """The body of a 200 answer from the pod's localhost, else None."""
    try:
        status, body = pod.http_get(f"http://127.0.0.1:{port}{path}", timeout=timeout)
    except OSError:
        return None
    return body if status == 200 else None
