"""The browser's display order (server/static/dom.js inDisplayOrder) under Node's test
runner: the widget and the console show voice turns added from ElevenLabs' transcript
where they were said, as the server's pages do (tests/test_voice_calls.py)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

JS = Path(__file__).parent / "js"


def test_display_order_in_the_browser_code() -> None:
    node = shutil.which("node")
    assert node, "node is needed (.ci/run installs it)"
    done = subprocess.run(
        [node, "--test", str(JS / "display_order.test.mjs")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "# pass 4" in done.stdout and "# fail 0" in done.stdout, done.stdout
