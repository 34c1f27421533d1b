"""A stand-in for the one endpoint of Astra's DevOps API the plugin uses: the bundle's download link.

``POST /v2/databases/{id}/secureBundleURL?all=true`` with ``Authorization: Bearer <token>`` answers a
list with one entry per region, each with a pre-signed ``downloadURL``; a GET of that link (no token)
answers the zip. Served over HTTPS on 127.0.0.1 with a certificate from its own CA, which a client
trusts through ``SSL_CERT_FILE``. The signature in the link is a secret like the token: tests check that
neither appears in any output.
"""

from __future__ import annotations

import http.server
import json
import secrets
import ssl
import tempfile
import threading
from pathlib import Path

from .pki import CertificateAuthority


class DevOpsApi:
    """``with DevOpsApi(bundle_path, token, database_id, regions) as api:`` — ``api.url``, ``api.ca_file``."""

    def __init__(self, bundle_path: str, token: str, database_id: str, regions: tuple[str, ...] = ("us-east1",)):
        self.bundle = Path(bundle_path).read_bytes()
        self.token = token
        self.database_id = database_id
        self.regions = regions
        self.signature = "sig-" + secrets.token_hex(16)  # the pre-signed link's secret part
        self.status = 200  # what the API answers (e.g. 409 for a parked database)
        self.requests: list[str] = []
        self._directory = tempfile.TemporaryDirectory(prefix="devops-standin-")
        ca = CertificateAuthority("DevOps API stand-in CA")
        issued = ca.issue("localhost", server=True, dns_names=("localhost",), ip_addresses=("127.0.0.1",))
        self.ca_file = str(Path(self._directory.name, "ca.pem"))
        Path(self.ca_file).write_bytes(ca.cert_pem)
        cert, key = Path(self._directory.name, "cert.pem"), Path(self._directory.name, "key.pem")
        cert.write_bytes(issued.cert_pem)
        key.write_bytes(issued.key_pem)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="devops-standin", daemon=True)

    @property
    def url(self) -> str:
        return f"https://localhost:{self._server.server_address[1]}"

    def _handler(self):
        api = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet
                pass

            def _answer(self, status: int, body: bytes, content_type: str = "application/json") -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                api.requests.append(f"POST {self.path}")
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.headers.get("Authorization") != f"Bearer {api.token}":
                    return self._answer(401, b'{"errors":[{"message":"JWT not valid"}]}')
                if self.path != f"/v2/databases/{api.database_id}/secureBundleURL?all=true":
                    return self._answer(404, b'{"errors":[{"message":"database not found"}]}')
                if api.status != 200:
                    return self._answer(api.status, b'{"errors":[{"message":"database is not active"}]}')
                links = [{"datacenterID": f"{api.database_id}-{number}", "region": region,
                          "downloadURL": f"{api.url}/bundles/{region}/secure-connect.zip"
                                         f"?X-Amz-Expires=300&X-Amz-Signature={api.signature}"}
                         for number, region in enumerate(api.regions, start=1)]
                self._answer(200, json.dumps(links).encode())

            def do_GET(self) -> None:  # noqa: N802
                api.requests.append(f"GET {self.path.split('?')[0]}")
                if "Authorization" in self.headers or api.signature not in self.path:
                    return self._answer(403, b"<Error><Code>AccessDenied</Code></Error>", "application/xml")
                self._answer(200, api.bundle, "application/zip")

        return Handler

    def __enter__(self) -> "DevOpsApi":
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
        self._directory.cleanup()
