"""A job that starts two grandchildren, prints every pid of its tree, and waits forever."""

import os
import subprocess
import sys
import time

children = [subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"]) for _ in range(2)]
print("pids", os.getpid(), *(c.pid for c in children), flush=True)
time.sleep(600)
