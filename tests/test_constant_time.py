"""Secrets are compared in constant time: no ``==`` or ``!=`` between values named
like a token, secret, MAC, signature, password or nonce anywhere in the server's
code (``hmac.compare_digest`` instead). ``==`` leaks, through its timing, how
much of a guess was right. SQL expressions (``table.c.token_hash == digest``) are
database lookups of a hash, not comparisons in Python, and constants
(``algorithm == HMAC_SM3``) are no secrets."""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("web", "signaling", "storage", "media", "observability")
SECRET = re.compile(r"token|secret|mac|signature|password|passwd|credential|nonce", re.I)


def _names(node: ast.expr) -> list[str]:
    """The identifiers a compared value is named by (``x``, ``a.x``, ``x()``, ``x[i]``)."""
    if isinstance(node, ast.Name):
        return [node.id]
    if isinstance(node, ast.Attribute):
        return [node.attr]
    if isinstance(node, ast.Call):
        return _names(node.func)
    if isinstance(node, ast.Subscript):
        return _names(node.value)
    return []


def _sql_column(node: ast.expr) -> bool:
    """``table.c.name``: a SQLAlchemy column, whose ``==`` builds a WHERE clause."""
    return (
        isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Attribute)
        and node.value.attr == "c"
    )


def secret_comparisons(source: str) -> list[str]:
    """``==``/``!=`` comparisons in ``source`` between values named like secrets."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Compare):
            continue
        if not any(isinstance(op, ast.Eq | ast.NotEq) for op in node.ops):
            continue
        sides = [node.left, *node.comparators]
        if any(isinstance(s, ast.Constant) or _sql_column(s) for s in sides):
            continue
        named = [n for s in sides for n in _names(s) if not n.isupper()]
        if any(SECRET.search(n) for n in named):
            found.append(f"line {node.lineno}: {ast.unparse(node)}")
    return found


def test_the_scan_finds_what_it_looks_for() -> None:
    assert secret_comparisons("if own == token: pass") == ["line 1: own == token"]
    assert secret_comparisons("ok = request.headers.get(H) != self._secret")
    assert secret_comparisons("ok = mac(key, body) == presented") == [
        "line 1: mac(key, body) == presented"
    ]
    assert not secret_comparisons("q = sessions.c.token_hash == digest")
    assert not secret_comparisons('ok = scheme.lower() == "bearer"')
    assert not secret_comparisons("ok = algorithm == HMAC_SM3")
    assert not secret_comparisons("ok = hmac.compare_digest(own, token)")


def test_no_secret_is_compared_with_equality() -> None:
    files = [ROOT / "server.py", *(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))]
    found = [
        f"{path.relative_to(ROOT)} {hit}"
        for path in files
        for hit in secret_comparisons(path.read_text(encoding="utf-8"))
    ]
    assert found == [], "use hmac.compare_digest for these:\n" + "\n".join(found)
