"""The written rules of the map (../shared/design/architecture.md, docs/adapters.md), held by
an AST walk over every import - at module level, in functions and under TYPE_CHECKING:

- the core (`gateway/`) never imports an adapter or a simulator: it finds adapters through
  entry points;
- an adapter imports from the core only its seam (`gateway.ports`), the canonical types
  (`gateway.domain`, `gateway.jsonform`) and the error family (`gateway.errors`), and never
  another adapter (`adapters/function_settings.py` is shared vocabulary, not an adapter);
- a codec (`codec/`) is pure: no core, no I/O frameworks; a mapper imports no I/O framework;
- simulators are outside parties: they never import the core, and of the adapters only
  their codecs (the wire format a real device shares);
- the shared `pki` package imports none of them.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SEAM = {"gateway.ports", "gateway.domain", "gateway.errors", "gateway.jsonform"}
IO_FRAMEWORKS = {"aiohttp", "asyncio", "asyncua", "pymodbus", "sqlalchemy", "sqlmodel"}
ADAPTERS = sorted(p.name for p in (ROOT / "adapters").iterdir()
                  if p.is_dir() and (p / "__init__.py").exists())


def imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every import in a file, relative imports resolved."""
    tree = ast.parse(path.read_text(), str(path))
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] + ([base] if base else []))
            found += [(node.lineno, f"{base}.{alias.name}" if base else alias.name)
                      for alias in node.names]
    return found


def within(module: str, *prefixes: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def files(folder: str) -> list[Path]:
    return sorted(p for p in (ROOT / folder).rglob("*.py") if "node_modules" not in p.parts)


def broken(paths: list[Path], allowed: callable) -> list[str]:  # type: ignore[valid-type]
    out = []
    for path in paths:
        for line, module in imports(path):
            reason = allowed(path, module)
            if reason:
                out.append(f"{path.relative_to(ROOT)}:{line} imports {module}: {reason}")
    return out


def test_the_core_imports_no_adapter_and_no_simulator():
    def rule(_path: Path, module: str) -> str | None:
        if within(module, "adapters", "simulators"):
            return "the core finds adapters through entry points"
        return None

    assert broken(files("gateway"), rule) == []


# Adapters still moving to the seam (each removes itself here when it is done).
PENDING: set[str] = set()


@pytest.mark.parametrize("adapter", [
    pytest.param(a, marks=pytest.mark.xfail(strict=True, reason="moving to the seam"))
    if a in PENDING else a for a in ADAPTERS])
def test_an_adapter_reaches_the_core_only_through_the_seam(adapter):
    def rule(path: Path, module: str) -> str | None:
        in_codec = "codec" in path.relative_to(ROOT / "adapters" / adapter).parts
        is_mapper = path.name == "mapper.py"
        if within(module, "gateway") and not within(module, *SEAM):
            return f"only {', '.join(sorted(SEAM))} of the core"
        if within(module, "adapters") and not within(module, f"adapters.{adapter}",
                                                      "adapters.function_settings"):
            return "adapters never import each other"
        if within(module, "simulators"):
            return "simulators are outside parties"
        if in_codec and within(module, "gateway", *IO_FRAMEWORKS):
            return "a codec is pure: no core, no I/O"
        if is_mapper and within(module, *IO_FRAMEWORKS):
            return "a mapper is pure: no I/O"
        return None

    assert broken(files(f"adapters/{adapter}"), rule) == []


def test_simulators_are_outside_parties():
    def rule(_path: Path, module: str) -> str | None:
        if within(module, "gateway"):
            return "a simulator reaches the gateway over the network only"
        if within(module, "adapters") and ".codec" not in module:
            return "a simulator may share an adapter's codec, nothing else of it"
        return None

    assert broken(files("simulators"), rule) == []


def test_pki_stands_alone():
    def rule(_path: Path, module: str) -> str | None:
        if within(module, "gateway", "adapters", "simulators"):
            return "pki is shared by everyone and imports none of them"
        return None

    assert broken(files("pki"), rule) == []


def test_a_broken_rule_is_caught(tmp_path, monkeypatch):
    """The walk itself can fail: a planted import of the store in a codec is found."""
    bad = tmp_path / "adapters" / "demo" / "codec" / "wire.py"
    bad.parent.mkdir(parents=True)
    bad.write_text("from ..mapper import x\nfrom gateway.store import repo\n")
    monkeypatch.setattr(__import__(__name__), "ROOT", tmp_path)
    found = imports(bad)
    assert (1, "adapters.demo.mapper.x") in found and (2, "gateway.store.repo") in found
