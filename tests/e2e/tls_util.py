"""Certificates for the TLS-client tests, made by the openssl command line as an operator
would make them, and their public-key pins computed the way curl documents for
--pinnedpubkey (openssl x509 -pubkey | openssl pkey -pubin -outform der | sha256 | base64)."""

from __future__ import annotations

import subprocess
from pathlib import Path


def openssl(*args: str, stdin: bytes | None = None) -> bytes:
    return subprocess.run(["openssl", *args], input=stdin, check=True,
                          capture_output=True).stdout


def self_signed(dir: Path, name: str, cn: str = "localhost") -> tuple[str, str]:
    """As `openssl req -x509` makes it: self-signed with basicConstraints CA:TRUE."""
    crt, key = dir / f"{name}.crt", dir / f"{name}.key"
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-days", "30", "-subj", f"/CN={cn}", "-addext", f"subjectAltName=DNS:{cn}",
            "-keyout", str(key), "-out", str(crt))
    assert b"CA:TRUE" in openssl("x509", "-in", str(crt), "-noout", "-text")
    return str(crt), str(key)


def signed_by(dir: Path, name: str, ca: tuple[str, str], cn: str) -> tuple[str, str]:
    """A leaf (client or server) signed by `ca` = (certificate, key)."""
    crt, key, csr = dir / f"{name}.crt", dir / f"{name}.key", dir / f"{name}.csr"
    ext = dir / f"{name}.ext"
    ext.write_text(f"basicConstraints=CA:FALSE\nsubjectAltName=DNS:{cn}\n")
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-subj", f"/CN={cn}", "-keyout", str(key), "-out", str(csr))
    openssl("x509", "-req", "-in", str(csr), "-CA", ca[0], "-CAkey", ca[1], "-CAcreateserial",
            "-days", "30", "-extfile", str(ext), "-out", str(crt))
    return str(crt), str(key)


def spki_pin(cert: str) -> str:
    """curl's form: sha256//BASE64 of the SHA-256 of the certificate's SubjectPublicKeyInfo."""
    pub = openssl("x509", "-in", cert, "-pubkey", "-noout")
    der = openssl("pkey", "-pubin", "-outform", "der", stdin=pub)
    digest = openssl("dgst", "-sha256", "-binary", stdin=der)
    return "sha256//" + openssl("enc", "-base64", "-A", stdin=digest).decode().strip()


def spki_pin_hex(cert: str) -> str:
    """The same hash as openssl prints it: AB:CD:..."""
    import base64
    raw = base64.b64decode(spki_pin(cert).removeprefix("sha256//"))
    return ":".join(f"{b:02X}" for b in raw)
