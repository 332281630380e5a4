"""No process-wide slot outside the list in docs/architecture.md ("Process-wide slots").

State that can differ per app or per job is found through the job's scope; the few slots
that remain are listed there, each with its reason (tests/architecture/slots.py says what a
slot is)."""

from __future__ import annotations

import re
from pathlib import Path

import sandbox_platform
from tests.architecture.slots import Slot, find_slots, slots_in_source

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = Path(sandbox_platform.__file__).resolve().parent
_ROW = re.compile(r"^\| `(sandbox_platform[\w.]*:\w+)` \| (.+) \|$")


def listed_slots(text: str) -> dict[str, str]:
    """``module:name`` -> reason, from the "Process-wide slots" table of the document."""
    section = text[text.index("## Process-wide slots") :]
    section = section[: section.find("\n## ", 1) if "\n## " in section[1:] else None]
    rows = (_ROW.match(line) for line in section.splitlines())
    return {row.group(1): row.group(2).strip() for row in rows if row}


def unlisted(found: set[Slot], listed: dict[str, str]) -> list[str]:
    return sorted(f"{slot.key} ({slot.kind})" for slot in found if slot.key not in listed)


def test_every_process_wide_slot_is_listed_with_its_reason() -> None:
    listed = listed_slots((ROOT / "docs" / "architecture.md").read_text())
    assert listed, "docs/architecture.md has no process-wide slots table"
    assert all(len(reason) > 10 for reason in listed.values()), listed
    found = find_slots(PACKAGE, "sandbox_platform")
    assert unlisted(found, listed) == [], (
        "a process-wide slot: make it per app or per job (the job's scope), or list it with "
        "its reason in docs/architecture.md"
    )
    stale = sorted(set(listed) - {slot.key for slot in found})
    assert stale == [], "listed in docs/architecture.md but no longer in the code"


PLANTED = """
import threading
from collections import deque
from types import MappingProxyType

CONSTANT = MappingProxyType({"a": 1})
NAMES = frozenset({"a"})
_current = {}
_recent = deque(maxlen=10)
_per_thread = threading.local()
_mode = "sandbox"

def use(mode):
    global _mode
    _mode = mode
"""


def test_a_planted_slot_is_found_and_fails_the_check() -> None:
    found = slots_in_source("sandbox_platform.planted", PLANTED)
    assert {slot.key for slot in found} == {
        "sandbox_platform.planted:_current",
        "sandbox_platform.planted:_recent",
        "sandbox_platform.planted:_per_thread",
        "sandbox_platform.planted:_mode",
    }
    listed = listed_slots((ROOT / "docs" / "architecture.md").read_text())
    assert len(unlisted(found, listed)) == 4


def test_a_slot_made_by_any_call_is_found_from_the_imported_module() -> None:
    made_elsewhere = "import builders\nREGISTRY = builders.make()\n"
    namespace = {"REGISTRY": {}}
    found = slots_in_source("sandbox_platform.planted", made_elsewhere, namespace)
    assert {slot.key for slot in found} == {"sandbox_platform.planted:REGISTRY"}
