"""The supervisor restarts a crashed child and stops the group on a fatal exit code."""

from __future__ import annotations

import sys
from pathlib import Path

from sandbox_platform.procs.supervisor import Supervisor

SCRIPT = """
import sys
from pathlib import Path
starts = Path(sys.argv[1])
starts.write_text(starts.read_text() + "x" if starts.exists() else "x")
sys.exit(1 if len(starts.read_text()) < 3 else 2)   # crash twice, then a settings error
"""


def test_crashed_child_is_restarted_until_a_fatal_code(tmp_path: Path) -> None:
    starts = tmp_path / "starts"
    supervisor = Supervisor([[sys.executable, "-c", SCRIPT, str(starts)]], env={}, max_backoff=0.2)
    code = supervisor.run()
    assert code == 2
    assert starts.read_text() == "xxx"  # started, restarted twice, then stopped for good
    assert supervisor.restarts == [2]
