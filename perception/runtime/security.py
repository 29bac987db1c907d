"""Encryption and authentication of every socket of a graph (ZeroMQ CURVE), in the manner of SROS2.

A keystore is a directory that `percept keys generate` fills:

    public/<enclave>.key            a public certificate: the allow-list (every key here may connect)
    private/<enclave>.key_secret    its secret half (mode 0600): give each host only its own

An enclave is who a process is: the registry (`registry`), a node (its name: `/robot/camera` is
`robot.camera`), or the command-line tools and the viewer (`tools`). With PERCEPT_KEYSTORE set (a
launch file's `security: {keystore: DIR}` sets it for its nodes), a process loads its enclave's key
pair (PERCEPT_ENCLAVE names it; the launcher sets it to each node's name), every socket that binds is a
CURVE server and every socket that connects a CURVE client that knows its server's public key (the
registry's from the keystore, each publisher's and service's from the registry), and a ZAP handler
(perception.runtime.gatekeeper) lets in only clients whose public key is in public/. The registry also
checks that a node registers under its own enclave's name (the tools' key may register hidden names
only, those with a part starting with '_'), so a key cannot take another node's name over, and it
hands out each node's key as authenticated by the handshake, never as claimed.

What it cannot do: a process of the same user can read the keystore, as it can read any file of that
user; same-host pipes and shared memory are not encrypted, so with a keystore they are off unless
PERCEPT_SHM=on asks for them (docs/security.md).
"""

from __future__ import annotations

import functools
import os
import pwd
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zmq
import zmq.auth
from zmq.utils import z85

from perception.errors import PerceptError
from perception.runtime.names import is_hidden

KEYSTORE_ENV = "PERCEPT_KEYSTORE"
ENCLAVE_ENV = "PERCEPT_ENCLAVE"
REGISTRY = "registry"
TOOLS = "tools"


class SecurityError(PerceptError):
    """A keystore that cannot be used (missing, or without this process's key)."""


def enclave_for(name: str) -> str:
    """The enclave of a node name: `/robot/camera` -> `robot.camera`."""
    return name.strip("/").replace("/", ".") or TOOLS


def may_register(enclave: str, name: str) -> bool:
    """A node may take `name` with the key of `enclave`: its own name, or a hidden one for the tools.
    No node may be named as the registry's or the tools' enclave (it would get their key)."""
    if enclave_for(name) in (REGISTRY, TOOLS):
        return False
    return enclave_for(name) == enclave or (enclave == TOOLS and is_hidden(name))


def generate(keystore: Path, enclaves: list[str]) -> list[str]:
    """Key pairs for `enclaves` (and the registry's and the tools'), keeping those that exist; the
    enclaves that got a new pair."""
    public, private = keystore / "public", keystore / "private"
    public.mkdir(parents=True, exist_ok=True)
    private.mkdir(parents=True, exist_ok=True)
    private.chmod(0o700)
    made = []
    for enclave in dict.fromkeys([REGISTRY, TOOLS, *enclaves]):
        # A public key is never replaced, even where its secret is not here (a host given only its own
        # secrets): every host's allow-list and every client of the registry depend on it.
        if (public / f"{enclave}.key").exists():
            continue
        public_file, secret_file = zmq.auth.create_certificates(private, enclave)
        Path(secret_file).chmod(0o600)
        os.replace(public_file, public / f"{enclave}.key")
        made.append(enclave)
    return made


@dataclass(frozen=True)
class Keys:
    """One process's view of a keystore: its own key pair and the public keys it may meet."""

    keystore: Path
    enclave: str
    public: bytes  # z85, as ZeroMQ's options take it
    secret: bytes
    registry_public: bytes
    enclaves_by_key: dict[str, str]  # z85 public key -> enclave: the allow-list, by name

    @classmethod
    def load(cls, keystore: str | Path, enclave: str) -> Keys:
        try:
            return cls._load(keystore, enclave)
        except PermissionError as exc:  # another user's keystore: its private/ is theirs alone (0700)
            where = Path(exc.filename or keystore)
            raise SecurityError(
                f"keystore {keystore}: cannot read {where}: permission denied{_owner(where)}; a keystore "
                "is readable by the user who made it only: run as that user, or make one of your own with "
                "`percept keys generate DIR`"
            ) from None

    @classmethod
    def _load(cls, keystore: str | Path, enclave: str) -> Keys:
        root = Path(keystore)
        if not (root / "public").is_dir():
            raise SecurityError(
                f"{KEYSTORE_ENV}={keystore}: no keystore there (expected public/ and private/); "
                f"make one with `percept keys generate {keystore}`"
            )
        secret_file = root / "private" / f"{enclave}.key_secret"
        if not secret_file.is_file():
            raise SecurityError(
                f"keystore {keystore} has no key for enclave {enclave!r} (expected {secret_file}); "
                f"`percept keys generate {keystore} --enclave {enclave}` makes one"
            )
        if secret_file.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise SecurityError(f"{secret_file} is readable by others: chmod 600 it")
        public, secret = zmq.auth.load_certificate(secret_file)
        assert secret is not None
        by_key = {}
        for certificate in sorted((root / "public").glob("*.key")):
            key, _ = zmq.auth.load_certificate(certificate)
            by_key[key.decode()] = certificate.stem
        registry_file = root / "public" / f"{REGISTRY}.key"
        if not registry_file.is_file():
            raise SecurityError(f"keystore {keystore} has no registry key (expected {registry_file})")
        registry_public, _ = zmq.auth.load_certificate(registry_file)
        return cls(root, enclave, public, secret, registry_public, by_key)

    @classmethod
    def from_environment(cls, enclave: str | None = None) -> Keys | None:
        """The keys of PERCEPT_KEYSTORE (None when it is not set) for `enclave`, else the enclave
        PERCEPT_ENCLAVE names, else the tools'."""
        keystore = os.environ.get(KEYSTORE_ENV)
        if not keystore:
            return None
        return _loaded(keystore, enclave or os.environ.get(ENCLAVE_ENV) or TOOLS)

    @classmethod
    def resolve(cls, keys: Keys | bool | None, enclave: str | None = None) -> Keys | None:
        """What a `keys` argument means: given keys; None: the environment's (for `enclave`); False:
        none."""
        if isinstance(keys, Keys):
            return keys
        return cls.from_environment(enclave) if keys is None else None

    def enclave_of(self, user_id: str) -> str | None:
        """The enclave whose public key authenticated a message (ZeroMQ's User-Id property)."""
        return self.enclaves_by_key.get(user_id)

    # -- sockets -----------------------------------------------------------------------------------

    def serve(self, socket: zmq.Socket[Any]) -> None:
        """Make a socket that binds a CURVE server (before it binds)."""
        socket.curve_secretkey = self.secret
        socket.curve_publickey = self.public
        socket.curve_server = True

    def connect_to(self, socket: zmq.Socket[Any], server_key: str | bytes) -> None:
        """Make a socket a CURVE client of the server with `server_key` (before each connect: the
        key is taken at connect time, so one SUB socket reaches publishers with different keys)."""
        socket.curve_secretkey = self.secret
        socket.curve_publickey = self.public
        socket.curve_serverkey = server_key.encode() if isinstance(server_key, str) else server_key


@functools.lru_cache(maxsize=16)
def _loaded(keystore: str, enclave: str) -> Keys:
    """A keystore read once per process (a tool asks the registry every second): like the ZAP
    handler's allow-list, a change to the keystore takes effect at the next start."""
    return Keys.load(keystore, enclave)


def _owner(path: Path) -> str:
    """ " (DIR is owned by USER, mode 0700)": who holds the nearest of a path and its directory that this
    process may look at (another user's private/ hides the files in it); nothing if neither."""
    for candidate in (path, path.parent):
        try:
            info = candidate.stat()
        except OSError:
            continue
        try:
            user = pwd.getpwuid(info.st_uid).pw_name
        except KeyError:
            user = str(info.st_uid)
        return f" ({candidate} is owned by {user}, mode {stat.S_IMODE(info.st_mode):04o})"
    return ""


def key_text(key: bytes) -> str:
    """A raw 32-byte or z85 public key as z85 text."""
    return (z85.encode(key) if len(key) == 32 else key).decode("ascii")
