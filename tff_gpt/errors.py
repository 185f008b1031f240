"""The exception type for mistakes in what a user gave: flags, files, settings.

Every such error names the problem and the fix. Entry points print it as one
line, `error: <message>`, and exit with status 2 (`experiments.flags_common.run`);
any other exception is a bug and keeps its traceback. The project's specific
errors (a corpus, a tokenizer, a checkpoint, a resume mismatch, ...) subclass
it, and it subclasses `ValueError`, so code catching that still works.
"""


class UserInputError(ValueError):
  """Raised for a problem in the user's input or settings; the message names the fix."""
