"""The web layer's handlers reach signaling only through its facade (DESIGN.md:
"never to the store or the dispatcher directly"): an endpoint module may name the
facade's vocabulary (the messages, the rights, the values the facade returns) but
no part of signaling's machinery (the notifier, the store, the hub, the services),
nor the app's socket.io server or hub."""

import ast
from pathlib import Path

from web import errors

WEB = Path(__file__).resolve().parents[2] / "web"
# What the facade speaks in: payloads, rights, the live values it hands back, errors.
VOCABULARY = {
    "signaling.facade",
    "signaling.messages",
    "signaling.access",
    "signaling.live",
    "signaling.figures",
    "signaling.errors",
}


def signaling_imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        found |= {n for n in names if n.startswith("signaling")}
    return found


# The app keys of signaling's machinery (web/keys.py), for the wiring alone.
MACHINERY_KEYS = {"SOCKETS", "HUB"}


def keys_used(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {
        a.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module == "web.keys"
        for a in node.names
    }


def test_endpoint_modules_use_signaling_only_through_its_facade() -> None:
    reaching = {}
    for path in sorted(WEB.glob("*_api.py")):
        modules = {name for name in signaling_imports(path) if name.count(".") <= 1}
        beyond = sorted(m for m in modules if m not in VOCABULARY and m != "signaling")
        beyond += sorted(keys_used(path) & MACHINERY_KEYS)
        if beyond:
            reaching[path.name] = beyond
    assert reaching == {}


HTTP_ERRORS = {
    name
    for name, value in vars(errors).items()
    if isinstance(value, type) and issubclass(value, errors.ApiError)
}


def test_statuses_and_codes_of_errors_are_set_in_web_errors_alone() -> None:
    """Errors become HTTP answers in one place (CONVENTIONS.md): a handler raises an
    error of web.errors (or a storage or signaling one that it maps), never sets an
    error's status by hand nor defines an error class of its own."""
    by_hand = {}
    for path in sorted(WEB.glob("*.py")):
        if path.name == "errors.py":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        found = [
            f"{path.name}:{leaf.lineno}"
            for node in ast.walk(tree)
            for target in (node.targets if isinstance(node, ast.Assign) else [])
            for leaf in (target.elts if isinstance(target, ast.Tuple) else [target])
            if isinstance(leaf, ast.Attribute) and leaf.attr == "status"
        ]
        found += [
            f"{path.name}:{node.lineno}"
            for node in ast.walk(tree)
            if isinstance(node, ast.ClassDef)
            and any(isinstance(b, ast.Name) and b.id in HTTP_ERRORS for b in node.bases)
        ]
        if found:
            by_hand[path.name] = found
    assert by_hand == {}
