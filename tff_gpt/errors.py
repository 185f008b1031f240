"""The exception types whose messages are meant for the person running the experiment.

`UserInputError`: a mistake in what a user gave (flags, files, settings).
Every such error names the problem and the fix. Entry points print it as one
line, `error: <message>`, and exit with status 2 (`experiments.flags_common.run`).
The project's specific errors (a corpus, a tokenizer, a checkpoint, a resume
mismatch, another run holding the experiment directory, ...) subclass it, and
it subclasses `ValueError`, so code catching that still works.

`RunFailure`: the run could not go on for a reason outside the code (a TFF
worker died, the disk filled, the model diverged); the message says
what happened and what to change, and what was finished is kept. Entry points
print it as `error: <message>` and exit with status 1.

Any other exception is a bug and keeps its traceback.
"""


class UserInputError(ValueError):
  """Raised for a problem in the user's input or settings; the message names the fix."""


class RunFailure(RuntimeError):
  """Raised when the environment stops a run; the message says what happened and what to change."""
