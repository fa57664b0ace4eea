"""Receivers on the pod's loopback for what the programs send: what a log backend would see."""

import gzip
import http.server
import json
import threading


class HttpSink(http.server.ThreadingHTTPServer):
    """Records every request (method, path, headers, body) and answers 200 with `answer(path, body)`."""

    daemon_threads = True

    def __init__(self, pod, answer=None, port=0):
        self.requests = []
        self.lock = threading.Lock()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                with outer.lock:
                    outer.requests.append((self.command, self.path, dict(self.headers), body))
                reply = (answer(self.path, body) if answer else b"")
                self.send_response(200 if reply is not None else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply or b"")))
                self.end_headers()
                self.wfile.write(reply or b"")

            do_PUT = do_POST
            do_GET = do_POST

            def log_message(self, *args):
                pass

        with pod.netns():
            super().__init__(("127.0.0.1", port), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def port(self):
        return self.server_address[1]

    def bodies(self, path=None):
        with self.lock:
            return [body for _, p, _, body in self.requests if path is None or p.split("?")[0] == path]


def elasticsearch_answer(path, body):
    """The bulk API's answer: every action succeeded."""
    if not path.startswith("/_bulk"):
        return json.dumps({"version": {"number": "8.15.0"}}).encode()
    lines = [line for line in body.splitlines() if line.strip()]
    items = [{"create": {"status": 201}} for _ in lines[::2]]
    return json.dumps({"took": 1, "errors": False, "items": items}).encode()
