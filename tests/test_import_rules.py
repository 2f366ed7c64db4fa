"""The import rules of DESIGN.md ("Who may import whom"), read from the source with `ast`.

Every import statement counts, at module level or inside a function. A rule
broken today by code that another branch is rewriting is listed in
KNOWN_VIOLATIONS with its reason: the test passes with those and fails on any
new one, and on a listed one that has gone (so the list only shrinks).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
APPS = ("config", "core", "exceptions", "metering", "billing", "erp_sync")

# The exceptions workbench (queue pages, correct/approve/reverse) may call every app's
# services; everything else in `exceptions` is its core, which imports only `core`.
# `exceptions.apps` is wiring (it may load the workbench at start-up).
EXCEPTIONS_WORKBENCH = (
    "exceptions.views",
    "exceptions.urls",
    "exceptions.workbench",
    "exceptions.api",
)
EXCEPTIONS_WIRING = ("exceptions.apps", "exceptions.tasks")  # entry points: wire the workbench in
# What metering may use of exceptions: its recording services (write an audit entry, lock the
# cases a batch will touch, open a case, close the case its own failure opened). Never the
# cases' models or selectors: metering finds its own cases by fingerprint through these.
EXCEPTIONS_RECORDING = {
    "exceptions.services.audit_record",
    "exceptions.services.cases_lock",
    "exceptions.services.audit_record_many",
    "exceptions.services.AuditSpec",
    "exceptions.services.case_open_or_update",
    "exceptions.services.cases_open_or_update_many",
    "exceptions.services.CaseOpening",
    "exceptions.services.case_close",
    "exceptions.services.case_resolve_open",
}
# How billing reads metering: only through metering/for_billing.py, the named list of what it may call.
BILLING_MAY_READ_FROM_METERING = ("metering.for_billing",)  # its one named module (issue 10)


@dataclass(frozen=True)
class Import:
    module: str  # the importing module, e.g. "billing.services"
    target: str  # what it imports: a module, or module.name for `from module import name`
    line: int


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports() -> Iterator[Import]:
    for app in APPS:
        for path in sorted((ROOT / app).rglob("*.py")):
            module = _module_name(path)
            for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
                if isinstance(node, ast.Import):
                    for alias in node.names:
                        yield Import(module, alias.name, node.lineno)
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    for alias in node.names:
                        yield Import(module, f"{node.module}.{alias.name}", node.lineno)


def _app(dotted: str) -> str:
    return dotted.split(".", 1)[0]


def _under(dotted: str, prefixes: tuple[str, ...]) -> bool:
    return any(dotted == p or dotted.startswith(p + ".") for p in prefixes)


def _broken_rule(imp: Import) -> str | None:
    """The rule this import breaks, or None."""
    source, target = _app(imp.module), _app(imp.target)
    if target not in APPS or target == source:
        if source == "exceptions" and target == "exceptions":
            if not _under(imp.module, EXCEPTIONS_WORKBENCH + EXCEPTIONS_WIRING) and _under(
                imp.target, EXCEPTIONS_WORKBENCH
            ):
                return "the exceptions core does not import its workbench"
        return None
    if source == "config":
        return None  # config wires URLs, settings and the landing page: it may import every app
    if source == "core":
        return "core imports no other app"
    if source == "exceptions":
        if _under(imp.module, EXCEPTIONS_WORKBENCH + EXCEPTIONS_WIRING):
            return None
        return None if target == "core" else "the exceptions core imports only core"
    if target == "config":
        return "no app imports config"
    if source == "metering":
        if target == "core" or imp.target in EXCEPTIONS_RECORDING:
            return None
        return "metering imports only core and the recording services of exceptions"
    if source == "billing":
        if target == "erp_sync":
            return "billing never imports erp_sync"
        if target == "metering" and not _under(imp.target, BILLING_MAY_READ_FROM_METERING):
            return "billing reads metering only through metering.for_billing"
        return None
    if source == "erp_sync" and target == "metering":
        return "erp_sync never reaches into metering"
    return None


# (importing module, imported name) -> why it is allowed for now. Empty: every rule holds;
# a violation added here needs its reason and the issue that will remove it.
KNOWN_VIOLATIONS: dict[tuple[str, str], str] = {}


def _violations() -> dict[tuple[str, str], tuple[Import, str]]:
    found = {}
    for imp in _imports():
        rule = _broken_rule(imp)
        if rule is not None:
            found[(imp.module, imp.target)] = (imp, rule)
    return found


def test_no_import_breaks_the_rules_of_design_md() -> None:
    new = {k: v for k, v in _violations().items() if k not in KNOWN_VIOLATIONS}
    assert not new, "Imports that break DESIGN.md's rules:\n" + "\n".join(
        f"  {imp.module} (line {imp.line}) imports {imp.target}: {rule}"
        for imp, rule in new.values()
    )


def test_every_known_violation_still_exists() -> None:
    """A violation that was fixed comes off the list, so it cannot come back unnoticed."""
    gone = sorted(set(KNOWN_VIOLATIONS) - set(_violations()))
    assert not gone, f"Fixed: remove from KNOWN_VIOLATIONS: {gone}"


@pytest.mark.parametrize(
    ("module", "target", "rule"),
    [
        ("core.services", "exceptions.services.audit_record", "core imports no other app"),
        ("exceptions.services", "billing.models.Invoice", "the exceptions core imports only core"),
        (
            "exceptions.models",
            "exceptions.workbench.appliers",
            "the exceptions core does not import its workbench",
        ),
        ("metering.services", "billing.services.invoice_finalize", "metering imports only core"),
        ("metering.services", "exceptions.selectors.open_cases", "metering imports only core"),
        ("metering.services", "exceptions.models.ExceptionCase", "metering imports only core"),
        ("billing.services", "erp_sync.models.Posting", "billing never imports erp_sync"),
        ("billing.services", "metering.models.UsageEvent", "billing reads metering only through"),
        (
            "erp_sync.services",
            "metering.selectors.summary_events",
            "erp_sync never reaches into metering",
        ),
        ("billing.services", "config.settings", "no app imports config"),
    ],
)
def test_the_rules_refuse_what_design_md_forbids(module: str, target: str, rule: str) -> None:
    broken = _broken_rule(Import(module, target, 1))
    assert broken is not None and broken.startswith(rule)


@pytest.mark.parametrize(
    ("module", "target"),
    [
        ("metering.services", "exceptions.services.audit_record"),
        ("metering.services", "exceptions.services.case_resolve_open"),
        ("metering.services", "core.models.Customer"),
        ("billing.services", "metering.for_billing.summary_event_values"),
        ("billing.services", "exceptions.services.case_open_or_update"),
        ("erp_sync.services", "billing.selectors.invoice_lines"),
        ("exceptions.views", "billing.services.invoice_void"),
        ("exceptions.workbench.appliers", "metering.services.usage_release"),
        ("config.views", "exceptions.selectors.open_cases"),
        ("exceptions.services", "core.actors.Actor"),
    ],
)
def test_the_rules_allow_what_design_md_allows(module: str, target: str) -> None:
    assert _broken_rule(Import(module, target, 1)) is None
