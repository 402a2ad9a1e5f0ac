"""Which certificates and keys does a secured Deployment use? A CA and a SuperLink certificate, and
SuperNode key pairs, made with the commands of README.md."""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from tools.harness.launch import HOST, HarnessError, _capture


def _tool(cmd: str, cwd: Path) -> None:
    result = _capture(shlex.split(cmd), cwd, None, timeout=60)
    if result.returncode:
        raise HarnessError(f"`{cmd}` failed:\n{result.stdout}{result.stderr}")


@dataclass(frozen=True)
class TlsFiles:
    ca_cert: Path
    server_cert: Path
    server_key: Path


def make_tls_files(folder: Path, hosts: Iterable[str] = (HOST, "localhost"), days: int = 2) -> TlsFiles:
    """A CA and a SuperLink certificate for `hosts` (IPs or DNS names), made with the `openssl` commands
    of README.md ("Run with the Deployment Engine")."""
    folder.mkdir(parents=True, exist_ok=True)
    names = ", ".join(f"IP:{h}" if re.fullmatch(r"[\d.]+|.*:.*", h) else f"DNS:{h}" for h in hosts)
    ext = f"subjectAltName = {names}\nbasicConstraints = CA:FALSE\nextendedKeyUsage = serverAuth\n"
    (folder / "server.ext").write_text(ext)
    for cmd in (
        "openssl ecparam -name secp384r1 -genkey -noout -out ca.key",
        f"openssl req -x509 -new -key ca.key -sha256 -days {days} -subj '/CN=whisper_example CA' -out ca.crt",
        "openssl ecparam -name secp384r1 -genkey -noout -out server.key",
        "openssl req -new -key server.key -subj /CN=superlink -out server.csr",
        f"openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days {days} -sha256 "
        "-extfile server.ext -out server.pem",
    ):
        _tool(cmd, folder)
    return TlsFiles(folder / "ca.crt", folder / "server.pem", folder / "server.key")


def make_supernode_keys(folder: Path, name: str) -> tuple[Path, Path]:
    """An ECDSA P-384 key pair made as README.md says (`ssh-keygen`): (private key, `<name>.pub`)."""
    folder.mkdir(parents=True, exist_ok=True)
    _tool(f"ssh-keygen -q -t ecdsa -b 384 -N '' -C {shlex.quote(name)} -f {shlex.quote(name)}", folder)
    return folder / name, folder / f"{name}.pub"
