"""The one place that makes the repository importable for `python tools/<name>.py`.

Python runs such a script with tools/ first on sys.path, not the repository, so neither
`tools.*` nor the kit (net, the layers, plumbing, data) would import. Each entry script
imports this module first (as `kit_path`, found in tools/) when it runs as a script; it
puts the repository root in tools/'s place (tools/ itself would let its entry scripts
shadow modules of the same names). Under `python -m` or the tests the root is already on
sys.path, and nothing here runs.
"""

import sys
from pathlib import Path

_TOOLS = Path(__file__).resolve().parent
_ROOT = str(_TOOLS.parent)

if sys.path and sys.path[0] and Path(sys.path[0]).resolve() == _TOOLS:
    sys.path[0] = _ROOT
elif _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)
