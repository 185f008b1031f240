"""After a run has decided how it fails, nothing but its one error line reaches the terminal.

When a TFF worker dies mid-round, TFF's asyncio contexts still hold tasks and
coroutines for the round's other calls. Torn down with the interpreter, they
print "Task exception was never retrieved", a `RuntimeError: cannot schedule
new futures after shutdown` traceback and "coroutine ... was never awaited":
35 lines after the message that says what happened. `route_teardown_noise`
sends all of that (asyncio's log, warnings, exceptions raised in threads or
while objects are collected) to a log file instead.
"""

import logging
import sys
import threading
import warnings


def route_teardown_noise(path: str) -> None:
  """From now on, asyncio's log, warnings and unraisable or thread exceptions go to `path`, appended."""
  log = open(path, "a", encoding="utf-8")  # noqa: SIM115 - open until the process ends.
  handler = logging.StreamHandler(log)
  handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
  for name in ("asyncio", "concurrent.futures"):
    logger = logging.getLogger(name)
    logger.handlers[:] = [handler]
    logger.propagate = False

  def show_warning(message, category, filename, lineno, file=None, line=None):
    log.write(warnings.formatwarning(message, category, filename, lineno, line))
    log.flush()

  def unraisable(hook_args):
    log.write(f"unraisable in {hook_args.object!r}: {hook_args.exc_type.__name__}: {hook_args.exc_value}\n")
    log.flush()

  def thread_exception(hook_args):
    log.write(f"in thread {hook_args.thread}: {hook_args.exc_type.__name__}: {hook_args.exc_value}\n")
    log.flush()

  warnings.showwarning = show_warning
  sys.unraisablehook = unraisable
  threading.excepthook = thread_exception
