"""The set-up script: wrong Python is refused clearly, a ready venv is reused."""

import hashlib
import os
import pathlib
import stat
import subprocess

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SETUP = os.path.join(REPO, "scripts", "setup_venv.sh")
LOCKS = ("requirements.txt", "requirements-nodeps.txt")


def test_wrong_python_gets_a_clear_message(tmp_path):
  fake = tmp_path / "python3.12"
  fake.write_text("#!/bin/sh\necho 3.12\n")
  fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
  result = subprocess.run(
    [SETUP, str(tmp_path / "venv")], env=dict(os.environ, PYTHON=str(fake)), capture_output=True, text=True
  )
  assert result.returncode == 2
  assert "needs Python 3.11" in result.stderr and "'3.12'" in result.stderr
  assert "PYTHON=/path/to/python3.11" in result.stderr
  assert not (tmp_path / "venv").exists()


def test_ready_venv_is_not_reinstalled():
  venv = pathlib.Path(REPO, ".venv")
  stamp = venv / ".requirements.sha256"  # What setup_venv.sh writes after an install.
  if not stamp.exists():
    pytest.skip("tests run outside the project's .venv")
  # A stale venv would be deleted and rebuilt under the running suite.
  locks = b"".join(pathlib.Path(REPO, name).read_bytes() for name in LOCKS)
  if stamp.read_text().strip() != hashlib.sha256(locks).hexdigest():
    pytest.fail("the lock files changed since .venv was installed: run scripts/setup_venv.sh, then the tests")
  result = subprocess.run([SETUP, venv], capture_output=True, text=True, timeout=60)
  assert result.returncode == 0
  assert result.stdout == "" and "Setting up" not in result.stderr


def _pins(path) -> dict[str, str]:
  """`{name: version}` of the `name==version` lines of a requirements file (continuations skipped)."""
  pins = {}
  for line in open(path):
    line = line.split("#")[0].strip().rstrip("\\").strip()
    if "==" in line and not line.startswith("--"):
      name, version = line.split("==")
      name = name.split("[")[0]  # flwr[simulation]: the extra is not the package's name.
      pins[name.strip().lower().replace("_", "-")] = version.strip()
  return pins


def _hashed_packages(path) -> int:
  text = open(path).read()
  return len([block for block in text.split("\n") if "==" in block and block.endswith("\\")])


@pytest.mark.parametrize(
  "source, lock",
  [
    ("requirements.in", "requirements.txt"),
    ("requirements-nodeps.in", "requirements-nodeps.txt"),
    ("requirements-colab.in", "requirements-colab.txt"),
    ("requirements-peers.in", "requirements-peers.txt"),
  ],
)
def test_each_lock_holds_its_sources_pins_and_a_hash_for_every_package(source, lock):
  """An edited .in without `scripts/lock.sh` would install the old versions: this catches it."""
  wanted, locked = _pins(os.path.join(REPO, source)), _pins(os.path.join(REPO, lock))
  changed = {
    name: (version, locked.get(name)) for name, version in wanted.items() if locked.get(name) != version
  }
  assert not changed, f"{lock} is stale for {changed}: run scripts/lock.sh"
  assert _hashed_packages(os.path.join(REPO, lock)) == len(locked), "every locked package has hashes"
  if source != "requirements-nodeps.in":
    assert len(locked) > 2 * len(wanted), "transitive dependencies are locked too"


def test_set_up_scripts_install_the_locks_with_hashes_required():
  scripts = os.path.join(REPO, "scripts")
  assert '--require-hashes -r "$repo/requirements.txt"' in open(os.path.join(scripts, "setup_venv.sh")).read()
  assert '--require-hashes -r "$lock"' in open(os.path.join(scripts, "locked_venv.sh")).read()
  for script, lock in (
    ("setup_colab_venv.sh", "requirements-colab.txt"),
    ("setup_peers_venv.sh", "requirements-peers.txt"),
  ):
    text = open(os.path.join(scripts, script)).read()
    assert f'scripts/locked_venv.sh" "$venv" "$python" "$repo/{lock}"' in text, script
