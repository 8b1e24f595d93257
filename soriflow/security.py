"""TLS, mutual TLS and bearer-token authentication from settings.

Both ends read the same three files (`tls_cert_file`, `tls_key_file`,
`tls_ca_file`): a server presents its certificate and, when a CA is given,
requires clients to present one it signed; a client verifies the server
with the CA and presents its own certificate when it has one.
"""

from __future__ import annotations

import hmac
from pathlib import Path

import grpc

from soriflow.config import CommonSettings
from soriflow.errors import InvalidArgument


def _read(path: Path | None, what: str) -> bytes | None:
    if path is None:
        return None
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise InvalidArgument(f"cannot read {what} {path}: {exc.strerror}") from exc


def server_credentials(settings: CommonSettings) -> grpc.ServerCredentials | None:
    """TLS credentials for a server, or None to serve plaintext (cluster-internal, mesh-encrypted)."""
    if settings.tls_cert_file is None and settings.tls_key_file is None:
        return None
    cert = _read(settings.tls_cert_file, "TLS certificate")
    key = _read(settings.tls_key_file, "TLS key")
    if cert is None or key is None:
        raise InvalidArgument("TLS needs both SORIFLOW_TLS_CERT_FILE and SORIFLOW_TLS_KEY_FILE")
    ca = _read(settings.tls_ca_file, "TLS CA bundle")
    return grpc.ssl_server_credentials(
        [(key, cert)], root_certificates=ca, require_client_auth=ca is not None
    )


def channel_credentials(settings: CommonSettings) -> grpc.ChannelCredentials | None:
    """TLS credentials for a client, or None for plaintext when no CA is configured."""
    ca = _read(settings.tls_ca_file, "TLS CA bundle")
    if ca is None:
        return None
    cert = _read(settings.tls_cert_file, "TLS certificate")
    key = _read(settings.tls_key_file, "TLS key")
    return grpc.ssl_channel_credentials(root_certificates=ca, private_key=key, certificate_chain=cert)


class TokenAuth:
    """Checks `authorization: Bearer <token>` metadata in constant time."""

    def __init__(self, token: str) -> None:
        if not token:
            raise ValueError("an empty auth token would accept everyone")
        self._expected = f"Bearer {token}".encode()

    def check(self, metadata: tuple[tuple[str, str | bytes], ...] | None) -> bool:
        for key, value in metadata or ():
            if key.lower() == "authorization":
                given = value.encode() if isinstance(value, str) else value
                return hmac.compare_digest(given, self._expected)
        return False
