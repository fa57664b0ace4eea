"""Git remotes on the pod's loopback: smart HTTP over TLS with basic credentials (Debian's
`git http-backend` behind a small TLS server), and ssh (Debian's sshd)."""

import base64
import contextlib
import http.server
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
from pathlib import Path


@contextlib.contextmanager
def readable_directory():
    """A directory the pods' neighbours can read as other users (pytest's tmp_path is root's
    alone), removed afterwards."""
    directory = Path(tempfile.mkdtemp(prefix="tandem-remote-"))
    directory.chmod(0o755)
    try:
        yield directory
    finally:
        shutil.rmtree(directory)


def git(*args, cwd=None):
    env = {"PATH": os.environ["PATH"], "HOME": str(cwd or "/"), "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@test",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@test", "GIT_CONFIG_NOSYSTEM": "1"}
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout


class Repository:
    """A bare repository served by the remotes, and a work tree to push commits from."""

    def __init__(self, directory, name="site.git"):
        self.bare = Path(directory) / name
        self.work = Path(directory) / "work"
        git("init", "-q", "--bare", "-b", "main", str(self.bare))
        git("init", "-q", "-b", "main", str(self.work))
        # The remotes run as other users than the one who made it (git refuses that unless told).
        git("config", "--file", str(self.bare / "config"), "http.receivepack", "false")
        for path in (self.bare, *self.bare.rglob("*")):
            path.chmod(0o755 if path.is_dir() else 0o644)

    def commit(self, files, message="update"):
        for name, content in files.items():
            (self.work / name).write_text(content)
        git("add", "-A", cwd=self.work)
        git("commit", "-q", "-m", message, cwd=self.work)
        git("push", "-q", str(self.bare), "main", cwd=self.work)
        for path in self.bare.rglob("*"):
            path.chmod(0o755 if path.is_dir() else 0o644)
        return git("rev-parse", "HEAD", cwd=self.work).strip()


class HttpsGitServer(http.server.ThreadingHTTPServer):
    """Smart HTTP (`git http-backend` as CGI) over TLS, behind basic authentication."""

    daemon_threads = True

    def __init__(self, pod, root, cert, key, user, password, port=8443):
        self.requests = []
        expected = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def handle_one(self):
                path, _, query = self.path.partition("?")
                outer.requests.append((self.command, path, self.headers.get("Authorization") == expected))
                if self.headers.get("Authorization") != expected:
                    self.send_response(401)
                    self.send_header("WWW-Authenticate", 'Basic realm="git"')
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                env = {"PATH": os.environ["PATH"], "GIT_PROJECT_ROOT": str(root), "GIT_HTTP_EXPORT_ALL": "1",
                       "PATH_INFO": path, "QUERY_STRING": query, "REQUEST_METHOD": self.command,
                       "CONTENT_TYPE": self.headers.get("Content-Type", ""), "CONTENT_LENGTH": str(len(body)),
                       "REMOTE_USER": user, "REMOTE_ADDR": "127.0.0.1", "GIT_PROTOCOL": self.headers.get("Git-Protocol", ""),
                       "HTTP_CONTENT_ENCODING": self.headers.get("Content-Encoding", "")}
                out = subprocess.run(["git", "-c", "safe.directory=*", "http-backend"], input=body, env=env,
                                     capture_output=True, check=True).stdout
                head, _, payload = out.partition(b"\r\n\r\n")
                status = 200
                headers = []
                for line in head.decode().split("\r\n"):
                    name, _, value = line.partition(": ")
                    if name.lower() == "status":
                        status = int(value.split()[0])
                    else:
                        headers.append((name, value))
                self.send_response(status)
                for name, value in headers:
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = handle_one

            def log_message(self, *args):
                pass

        with pod.netns():
            super().__init__(("127.0.0.1", port), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        self.socket = context.wrap_socket(self.socket, server_side=True)
        threading.Thread(target=self.serve_forever, daemon=True).start()


SSHD_CONFIG = """\
ListenAddress 127.0.0.1:{port}
HostKey {dir}/host_key
AuthorizedKeysFile {dir}/authorized_keys
PidFile none
UsePAM no
StrictModes no
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin no
AllowUsers git
LogLevel VERBOSE
"""


def make_ssh_keys(directory, port=2222):
    """sshd's host key and the client's key; returns (client key, known_hosts line)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(directory / "host_key")], check=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "git-sync", "-f", str(directory / "client")],
                   check=True)
    (directory / "authorized_keys").write_text((directory / "client.pub").read_text())
    host_key = (directory / "host_key.pub").read_text().split()
    return (directory / "client").read_text(), f"[localhost]:{port} {host_key[0]} {host_key[1]}\n"


def start_sshd(pod, directory, repository_root, port=2222):
    """Debian's sshd on the pod's loopback with the keys of `make_ssh_keys`, user `git`
    (added to the neighbour's own /etc/passwd: the host's is untouched)."""
    directory = Path(directory)
    (directory / "sshd_config").write_text(SSHD_CONFIG.format(port=port, dir=directory))
    # The repositories belong to the test's user: git-upload-pack, as user git, may read them.
    (Path(repository_root) / ".gitconfig").write_text("[safe]\n\tdirectory = *\n")
    pod.beside_container("sshd", ["/usr/sbin/sshd", "-D", "-e", "-f", str(directory / "sshd_config")],
                         passwd=[f"git:x:64000:64000::{repository_root}:/bin/sh"], directories=["/run/sshd"],
                         binds=[repository_root])

    # The pod's containers start next: a clone that dials before sshd listens is refused
    # (seen on a loaded machine).
    def accepting():
        with pod.netns():
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return True
            except OSError:
                return False

    pod.wait_for(accepting, timeout=30, what=f"sshd accepting on port {port}")
