"""Real processes for the authz conformance tests (and tests/accounts): a
private Postgres and Redis from Debian's packages, helix-authz with TLS and
mailpit (a real SMTP server whose mails are read back through its API), on
free loopback ports."""

import datetime
import glob
import ipaddress
import json
import os
import pathlib
import random
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
import ssl

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

ROOT = pathlib.Path(__file__).resolve().parents[2]
BIN = ROOT / "bin"
TOOLS = ROOT / ".tools"


def free_port():
    """A port that was free on 127.0.0.1 a moment ago, from below the
    kernel's ephemeral range (as internal/freeport does), so that no
    outgoing connection can take it before the server binds it."""
    for _ in range(200):
        port = random.randint(20000, 32767)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in 20000-32767")


def pg_bin(name):
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=lambda p: int(p.split("/")[4]))
    if not candidates:
        raise RuntimeError(f"{name} not found on PATH or in /usr/lib/postgresql/*/bin: run `make deps`")
    return candidates[-1]


class Postgres:
    """initdb in a temp folder, listening on 127.0.0.1 only."""

    def __init__(self):
        # Its own folder directly under /tmp: pytest's are private to root,
        # and Postgres refuses to run as root, so it runs as "postgres".
        self.top = pathlib.Path(tempfile.mkdtemp(prefix="helix-pg-"))
        self.dir = self.top / "pg"
        self.dir.mkdir()
        self.port = free_port()
        self.prefix = []
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            os.chmod(self.top, 0o755)
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
            self.prefix = ["runuser", "-u", "postgres", "--"]
        data = self.dir / "data"
        subprocess.run(self.prefix + [pg_bin("initdb"), "-D", str(data), "-U", "helix", "-A", "trust",
                                      "--no-sync", "-E", "UTF8"], check=True, capture_output=True)
        opts = f"-c listen_addresses=127.0.0.1 -c port={self.port} -c unix_socket_directories={self.dir} -c fsync=off"
        subprocess.run(self.prefix + [pg_bin("pg_ctl"), "-D", str(data), "-o", opts, "-l", str(self.dir / "log"),
                                      "-w", "start"], check=True, capture_output=True)
        self.data = data
        self.dsn = f"postgres://helix@127.0.0.1:{self.port}/postgres?sslmode=disable"

    def stop(self):
        subprocess.run(self.prefix + [pg_bin("pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"],
                       capture_output=True)
        shutil.rmtree(self.top, ignore_errors=True)


class Redis:
    """redis-server on 127.0.0.1, nothing saved: helix-authz's rate-limit
    counters."""

    def __init__(self, tmp):
        binary = shutil.which("redis-server")
        if not binary:
            raise RuntimeError("redis-server not found on PATH: run `make deps`")
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.proc = subprocess.Popen([binary, "--bind", "127.0.0.1", "--port", str(self.port), "--save", "",
                                      "--appendonly", "no", "--dir", str(tmp)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as c:
                    c.sendall(b"PING\r\n")
                    if c.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"redis-server not answering on {self.address} after 30s")

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=30)


def make_tls(tmp):
    """A throwaway CA and a server certificate for 127.0.0.1/localhost."""
    tmp = pathlib.Path(tmp)
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "helix test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=1))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "helix-authz")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=1)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = {"ca": tmp / "ca.pem", "cert": tmp / "server.pem", "key": tmp / "server.key"}
    paths["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths["cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths["key"].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
    return paths


class Authz:
    """helix-authz against a Postgres, with TLS on its OAuth2 endpoints."""

    def __init__(self, tmp, pg, redis, extra_args=(), replica_of=None):
        """extra_args are more helix-authz flags (tests/accounts: mail,
        trusted proxies, link lifetimes); replica_of, another Authz on the
        same Postgres whose key-encryption key and admin token this one
        shares (a second replica, with flags of its own)."""
        tmp = pathlib.Path(tmp)
        self.tls = make_tls(tmp)
        self.http_port, self.grpc_port, self.admin_port, self.metrics_port = (free_port() for _ in range(4))
        self.issuer = f"https://127.0.0.1:{self.http_port}"
        self.audience = "helixflow-test"
        if replica_of:
            self.admin_token, kek = replica_of.admin_token, replica_of.kek
        else:
            self.admin_token = secrets.token_urlsafe(32)
            kek = tmp / "kek"
            kek.write_text(secrets.token_hex(32))
            kek.chmod(0o600)
        self.kek = kek
        # The admin API gives clients only the plans of the gateway config
        # file, and Check counts requests against them in Redis.
        gateway = tmp / "gateway.yaml"
        gateway.write_text("listener: {address: 127.0.0.1, port: 8443}\nauthz: {address: '127.0.0.1:9001'}\n"
                           "ratelimit: {default_plan: free}\n"
                           "plans:\n  free: {requests_per_second: 5}\n  gold: {requests_per_second: 100}\n")
        self.log = open(tmp / "helix-authz.log", "w+")
        env = dict(os.environ, HELIX_ADMIN_TOKEN=self.admin_token)
        self.proc = subprocess.Popen([
            str(BIN / "helix-authz"), f"--database-url={pg.dsn}", f"--kek-file={kek}", f"--gateway-config={gateway}",
            f"--redis-address={redis.address}", f"--issuer={self.issuer}", f"--audience={self.audience}",
            f"--http-listen=127.0.0.1:{self.http_port}", f"--grpc-listen=127.0.0.1:{self.grpc_port}",
            f"--admin-listen=127.0.0.1:{self.admin_port}", f"--metrics-listen=127.0.0.1:{self.metrics_port}",
            f"--tls-cert-file={self.tls['cert']}", f"--tls-key-file={self.tls['key']}", *extra_args,
        ], stdout=self.log, stderr=subprocess.STDOUT, env=env)
        self.ssl = ssl.create_default_context(cafile=str(self.tls["ca"]))
        self._wait()
        self.admin_env = dict(os.environ, HELIX_ADMIN_URL=f"http://127.0.0.1:{self.admin_port}",
                              HELIX_ADMIN_TOKEN=self.admin_token)

    def _wait(self):
        deadline = time.time() + 60
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"helix-authz exited with {self.proc.returncode}:\n{self.logs()}")
            try:
                with urllib.request.urlopen(f"{self.issuer}/.well-known/jwks.json", context=self.ssl, timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"helix-authz not serving after 60s:\n{self.logs()}")

    def logs(self):
        self.log.flush()
        self.log.seek(0)
        return self.log.read()

    def helixctl(self, *args):
        out = subprocess.run([str(BIN / "helixctl"), *args, "--output", "json"], capture_output=True, text=True,
                             env=self.admin_env, timeout=60)
        if out.returncode != 0:
            raise RuntimeError(f"helixctl {' '.join(args)} failed: {out.stderr}")
        return json.loads(out.stdout)

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def mailpit_binary():
    """mailpit where internal/mailpitbin finds it: $HELIX_MAILPIT_BIN, else
    .tools/mailpit/mailpit (`make deps` builds it); None when absent."""
    p = os.environ.get("HELIX_MAILPIT_BIN")
    p = pathlib.Path(p) if p else TOOLS / "mailpit" / "mailpit"
    return p if p.is_file() and os.access(p, os.X_OK) else None


class Mailpit:
    """mailpit: SMTP on a loopback port (plain: helix-authz allows
    --smtp-tls=none to loopback only), its HTTP API on another; every mail
    is kept in memory and read back with messages() and link()."""

    def __init__(self, binary, tmp):
        self.smtp_port, self.http_port = free_port(), free_port()
        self.smtp_address = f"127.0.0.1:{self.smtp_port}"
        self.api = f"http://127.0.0.1:{self.http_port}/api/v1"
        self.log = open(pathlib.Path(tmp) / "mailpit.log", "w+")
        # internal/mailpitbin.Args: nothing asked of the internet, errors only.
        self.proc = subprocess.Popen([str(binary), "--smtp", self.smtp_address,
                                      "--listen", f"127.0.0.1:{self.http_port}",
                                      "--database", str(pathlib.Path(tmp) / "mailpit.db"),
                                      "--disable-version-check", "--smtp-disable-rdns", "--quiet"],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 30
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mailpit exited with {self.proc.returncode}:\n{self._logs()}")
            try:
                self._get("/info")
                return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"mailpit not answering on {self.api} after 30s:\n{self._logs()}")

    def _logs(self):
        self.log.flush()
        self.log.seek(0)
        return self.log.read()

    def _get(self, path):
        with urllib.request.urlopen(self.api + path, timeout=10) as r:
            return json.loads(r.read())

    def messages(self, to):
        """The mails to address `to`, newest first, each with its Subject
        and Text."""
        q = urllib.parse.urlencode({"query": f'to:"{to}"', "limit": 200})
        out = []
        for m in self._get(f"/search?{q}").get("messages") or []:
            out.append(self._get(f"/message/{m['ID']}"))
        return out

    def wait(self, to, predicate=lambda m: True, skip=(), timeout=15):
        """The newest mail to `to` for which predicate holds and whose ID is
        not in skip; waits up to timeout seconds (mail leaves helix-authz
        from a background queue)."""
        deadline = time.time() + timeout
        while True:
            for m in self.messages(to):
                if m["ID"] not in skip and predicate(m):
                    return m
            if time.time() > deadline:
                raise AssertionError(f"no mail to {to} within {timeout}s (mails: "
                                     f"{[m.get('Subject') for m in self.messages(to)]})")
            time.sleep(0.1)

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
