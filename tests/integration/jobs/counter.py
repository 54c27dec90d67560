"""A checkpointing job for the tests: counts to N, one step every S seconds, keeping the count
in $CORRAL_CHECKPOINT_DIR/count (every 5 steps, and at once on SIGUSR1). Optionally exits 85
at step E of its first attempt. Prints where it resumed from and each step."""

import os
import pathlib
import signal
import sys
import time

folder = pathlib.Path(os.environ["CORRAL_CHECKPOINT_DIR"])
target, step = int(sys.argv[1]), float(sys.argv[2])
exit_at = int(sys.argv[3]) if len(sys.argv) > 3 else -1
saved = folder / "count"
count = int(saved.read_text()) if saved.exists() else 0
asked = False


def ask(*_: object) -> None:
    global asked
    asked = True


def save() -> None:
    partial = folder / "count.partial"
    partial.write_text(str(count))
    os.replace(partial, saved)  # a checkpoint is never seen half written


signal.signal(signal.SIGUSR1, ask)
print(f"resumed from {count} on attempt {os.environ['CORRAL_ATTEMPT']} "
      f"with GPUs {os.environ['CUDA_VISIBLE_DEVICES']}", flush=True)
while count < target:
    time.sleep(step)
    count += 1
    print(f"count {count}", flush=True)
    if count % 5 == 0 or asked:
        save()
        asked = False
    if count == exit_at and os.environ["CORRAL_ATTEMPT"] == "1":
        save()
        sys.exit(85)
print(f"done at {count}", flush=True)
