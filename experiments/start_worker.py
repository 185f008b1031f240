"""Serves TFF computations on this host until Ctrl-C or SIGTERM: one of the `--workers` of a run elsewhere.

python -m experiments.start_worker --port=8000 [--max_concurrent_computation_calls=2]
(or scripts/start_worker.sh, which sets up the venv first)

Runs TFF's C++ `worker_binary` (from the installed wheel) with the thread and
malloc settings `runtime.host` sizes for this host (the environment's
`TF_NUM_INTRAOP_THREADS`, `TF_NUM_INTEROP_THREADS` and `MALLOC_ARENA_MAX` win).
It answers anyone who can reach the port, unauthenticated: keep it on a
private network.
"""

import os
import signal
import socket

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import flags  # noqa: E402

from experiments import flags_common  # noqa: E402
from tff_gpt.runtime import host, workers  # noqa: E402

flags.DEFINE_integer("port", None, "Port to listen on (all interfaces).", lower_bound=1, upper_bound=65535)
flags.DEFINE_integer(
  "max_concurrent_computation_calls", 2, "Client computations run at once (1 for GPT-2 124M).", lower_bound=1
)
flags.mark_flag_as_required("port")
FLAGS = flags.FLAGS


def _stop_as_ctrl_c(signum, frame):
  del signum, frame
  raise KeyboardInterrupt


def main(argv):
  flags_common.check_main_args(argv)
  host.configure(concurrent_calls=FLAGS.max_concurrent_computation_calls)  # The worker inherits them.
  worker = workers.LocalWorker(
    max_concurrent_computation_calls=FLAGS.max_concurrent_computation_calls, port=FLAGS.port
  )
  signal.signal(signal.SIGTERM, _stop_as_ctrl_c)
  try:
    worker.start()
    print(
      f"TFF worker listening on {socket.gethostname()}:{FLAGS.port} (pid {worker.process.pid}, "
      f"{FLAGS.max_concurrent_computation_calls} computations at once). Ctrl-C or SIGTERM stops it.",
      flush=True,
    )
    worker.process.wait()
    raise workers.WorkerDiedError(f"TFF's worker_binary {workers.describe_exit(worker.process.returncode)}.")
  except KeyboardInterrupt:
    pass
  finally:
    worker.stop()
  print("TFF worker stopped.", flush=True)


if __name__ == "__main__":
  flags_common.run(main)
