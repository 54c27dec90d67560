"""Run the chaos harness longer than CI does:

    python -m tests.chaos --tasks 20000 --leader-kills 20 --worker-kills 40 --seed 7
"""

from __future__ import annotations

import argparse
import sys
import tempfile

from tests.chaos.harness import Chaos, Plan


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    defaults = Plan()
    for name in ("tasks", "leader_kills", "leader_pauses", "partitions", "worker_kills", "node_kills",
                 "etcd_kills", "seed"):
        parser.add_argument("--" + name.replace("_", "-"), type=int, default=getattr(defaults, name))
    parser.add_argument("--gap", type=float, default=defaults.gap)
    opts = parser.parse_args()
    plan = Plan(**{k: getattr(opts, k) for k in Plan.__dataclass_fields__})
    with tempfile.TemporaryDirectory(prefix="corral-chaos-") as tmp:
        report = Chaos(tmp, plan).run()
    print(report.summary())
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
