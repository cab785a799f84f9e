"""`python -m bench.nostats serve ...`: dnswarden with every `Stats` recording call a no-op.

Only for the benchmark's `dnswarden-nostats` row, which shows what the metrics cost on the hot
path (issue 4 asks for under 5% of qps): the same server, the same config, nothing recorded.
"""

from __future__ import annotations

import sys

from resolver.commands.cli import main
from resolver.observe import stats


def _ignore(*_args: object, **_kwargs: object) -> None:
    return None


for _name in ("count", "query", "rcode", "blocked", "block_answered", "upstream"):
    setattr(stats.Stats, _name, _ignore)

if __name__ == "__main__":
    sys.exit(main())
