"""The portal simulator is a service of its own, outside the API: a package with one module per protocol
it speaks, importing nothing of Cashcycle's, and no function the size of the one it was cut out of."""

from __future__ import annotations

import ast
import importlib

import pytest

from portal_sim import create_app, default_scenario
from portal_sim.control import router as control_router
from portal_sim.gate import Gate
from portal_sim.simulator import Pusher, Simulator
from tests.conftest import ROOT

PACKAGE = ROOT / "portal_sim"
PROTOCOLS = {"cxml": "/cxml", "coupa": "/coupa/", "peppol": "/peppol/"}


def modules() -> dict[str, ast.Module]:
    return {p.stem: ast.parse(p.read_text(), str(p)) for p in sorted(PACKAGE.glob("*.py"))}


def test_the_api_no_longer_contains_the_simulator() -> None:
    assert not (ROOT / "api" / "portal_sim.py").exists()
    for path in (ROOT / "api").rglob("*.py"):
        text = path.read_text()
        assert "api.portal_sim" not in text, path
        assert '"/_sim' not in text, f"{path} serves the simulator's control routes"


def test_one_module_per_protocol_each_serving_only_its_own_routes() -> None:
    assert set(PROTOCOLS) <= set(modules())
    sim = Simulator(default_scenario())
    gate = Gate(sim)
    everything: set[str] = set()
    for name, prefix in PROTOCOLS.items():
        module = importlib.import_module(f"portal_sim.{name}")
        paths = [getattr(r, "path", "") for r in module.router(gate).routes]
        assert paths, f"portal_sim.{name} serves nothing"
        assert all(p.startswith(prefix) for p in paths), (name, paths)
        everything |= set(paths)
    control = [getattr(r, "path", "") for r in control_router(sim, Pusher(sim, 1.0)).routes]
    assert all(p.startswith("/_sim/") for p in control)
    # The app is those routers and nothing else.
    assert set(create_app().openapi()["paths"]) == everything | set(control)


@pytest.mark.parametrize("name", sorted(p.stem for p in PACKAGE.glob("*.py")))
def test_the_simulator_imports_nothing_of_cashcycles(name: str) -> None:
    tree = ast.parse((PACKAGE / f"{name}.py").read_text())
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names} | {
        n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)
    }
    ours = {m for m in imported if m.split(".")[0] in {"api", "activities", "workflows", "demo", "worker"}}
    assert ours == set()


def test_no_function_is_the_size_of_the_one_it_was_cut_out_of() -> None:
    """The routers are factories of small endpoints; everything else stays readable in one screen."""
    too_long = [
        f"{name}.{n.name}: {(n.end_lineno or n.lineno) - n.lineno + 1} lines"
        for name, tree in modules().items()
        for n in ast.walk(tree)
        if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)
        and n.name != "router"
        and (n.end_lineno or n.lineno) - n.lineno + 1 > 60
    ]
    assert too_long == []
    routers = [
        n.end_lineno - n.lineno + 1
        for tree in modules().values()
        for n in tree.body
        if isinstance(n, ast.FunctionDef) and n.name == "router" and n.end_lineno
    ]
    assert max(routers) < 150


def test_the_package_is_shipped_and_type_checked() -> None:
    assert '"portal_sim"' in (ROOT / "pyproject.toml").read_text()
    assert "COPY portal_sim portal_sim" in (ROOT / "Dockerfile").read_text()
    typecheck = next(line for line in (ROOT / "Makefile").read_text().splitlines() if "bin/mypy" in line)
    assert " portal_sim " in f"{typecheck} "
