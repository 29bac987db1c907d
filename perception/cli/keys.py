"""percept keys: the keystore that turns on CURVE encryption and authentication for a graph."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def register(verbs: Any) -> None:
    p = verbs.add_parser("keys", help="Make and list the keys that encrypt and authenticate a graph (CURVE).")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    generate = actions.add_parser(
        "generate",
        help="Make a keystore: key pairs for the registry, the tools and each node (existing ones are kept).",
    )
    generate.add_argument("keystore", help="the keystore directory (made if missing)")
    generate.add_argument(
        "--launch",
        action="append",
        default=[],
        metavar="FILE",
        help="a key pair for every node of this launch file (or shipped launch file); repeatable",
    )
    generate.add_argument(
        "--node",
        action="append",
        default=[],
        metavar="NAME",
        help="a key pair for this node name; repeatable",
    )
    generate.add_argument(
        "--enclave",
        action="append",
        default=[],
        metavar="ENCLAVE",
        help="a key pair by enclave name; repeatable",
    )
    generate.set_defaults(func=_generate)
    listing = actions.add_parser("list", help="The enclaves of a keystore, with their public keys.")
    listing.add_argument("keystore")
    listing.set_defaults(func=_list)


def _generate(args: argparse.Namespace) -> int:
    from perception.installed import find_launch_file
    from perception.runtime import launch_file
    from perception.runtime.names import validate
    from perception.runtime.security import enclave_for, generate

    for name in args.node:  # a key for a name no node can take would only sit in the keystore
        validate(name if name.startswith("/") else f"/{name}", "node")
    enclaves = [*args.enclave, *(enclave_for(name) for name in args.node)]
    for spec in args.launch:
        description = launch_file.load(find_launch_file(spec))
        enclaves += [enclave_for(node.fqn) for node in description.nodes]
    root = Path(args.keystore)
    made = generate(root, enclaves)
    for enclave in dict.fromkeys(["registry", "tools", *enclaves]):
        print(f"{enclave:<24} {'made' if enclave in made else 'kept (it exists)'}")
    print(
        f"keystore {root}: public/ is the allow-list, private/ the secret keys (give each host only its own).\n"
        f"Turn it on with `security: {{keystore: {root}}}` in a launch file, or PERCEPT_KEYSTORE={root}."
    )
    return 0


def _list(args: argparse.Namespace) -> int:
    import zmq.auth

    from perception.errors import PerceptError

    public = Path(args.keystore) / "public"
    if not public.is_dir():
        raise PerceptError(
            f"{args.keystore}: no keystore there (expected public/); percept keys generate makes one"
        )
    for certificate in sorted(public.glob("*.key")):
        key, _ = zmq.auth.load_certificate(certificate)
        secret = (Path(args.keystore) / "private" / f"{certificate.stem}.key_secret").is_file()
        print(f"{certificate.stem:<24} {key.decode()}  {'secret here' if secret else 'public only'}")
    return 0
