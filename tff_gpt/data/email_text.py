"""Mailing-list emails as document and summary pairs: the body, and the subject line that sums it up.

An email counts when it has a `List-Id` header (its client: the list's id, the
part between `<` and `>`), a subject and a body. The subject loses leading
`Re:`/`Fwd:` and `[list tag]` prefixes (a tag names the list, the client, and
would be free to predict). The body is the first text/plain part, without
quoted lines (`>`), and cut at a signature (`-- `) or a list footer (a line of
underscores).
"""

import email
import json
import re
import tarfile
from email import policy

_PREFIX = re.compile(r"^\s*(?:(?:re|fwd?|aw)\s*(?:\[\d+\])?\s*:\s*|\[[^\]]*\]\s*)+", re.IGNORECASE)
_FOOTER = re.compile(r"^(?:-- ?|_{10,}.*)$")


def subject_line(subject: str) -> str:
  """The subject without reply, forward and list-tag prefixes, its white space collapsed."""
  return " ".join(_PREFIX.sub("", subject or "").split())


def body_text(message: email.message.Message) -> str:
  """The first text/plain part, without quoted lines, cut at a signature or a list footer."""
  part = next((p for p in message.walk() if p.get_content_type() == "text/plain"), None)
  if part is None:
    return ""
  payload = part.get_payload(decode=True) or b""
  try:
    text = payload.decode(part.get_content_charset() or "latin-1", errors="replace")
  except LookupError:  # A charset Python does not know ("unknown-8bit"): bytes as Latin-1.
    text = payload.decode("latin-1")
  lines = []
  for line in text.splitlines():
    if _FOOTER.match(line.rstrip()):
      break
    if not line.lstrip().startswith(">"):
      lines.append(line.rstrip())
  return "\n".join(lines).strip()


def from_email(raw: str, *, unlisted: str | None = None) -> dict | None:
  """`{client_id, document, summary}` of one raw email, or None when it lacks a list, subject or body.

  With `unlisted`, the other way round: an email without a list, its client `unlisted` (None for a list's).
  """
  message = email.message_from_string(raw, policy=policy.compat32)
  list_id = message.get("List-Id")
  if bool(list_id) == bool(unlisted):
    return None
  found = re.search(r"<([^>]+)>", list_id or "")
  client = unlisted or (found.group(1) if found else list_id).strip().lower()
  summary, document = subject_line(str(message.get("Subject", ""))), body_text(message)
  if not summary or not document:
    return None
  return {"client_id": client, "document": document, "summary": summary}


def list_emails(archive: str, *, unlisted: bool = False) -> list[dict]:
  """Every list email of the npm package's archive (`package/data/<group>/<id>.json`), in file order.

  `unlisted`: the emails without a list instead (no client's: text to pretrain on), each the client of its
  group (`easy_ham`, `spam`, ...).
  """
  rows = []
  with tarfile.open(archive) as tar:
    for member in tar:
      parts = member.name.split("/")
      if member.isfile() and len(parts) == 4 and parts[1] == "data" and parts[3].endswith(".json"):
        raw = json.load(tar.extractfile(member))["text"]
        row = from_email(raw, unlisted=parts[2] if unlisted else None)
        if row is not None:
          rows.append(row)
  return rows
