"""The set-up script: wrong Python is refused clearly, a ready venv is reused."""

import os
import stat
import subprocess

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SETUP = os.path.join(REPO, "scripts", "setup_venv.sh")


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
  venv = os.path.join(REPO, ".venv")
  if not os.path.exists(os.path.join(venv, ".requirements.sha256")):
    import pytest

    pytest.skip("tests run outside the project's .venv")
  result = subprocess.run([SETUP, venv], capture_output=True, text=True, timeout=60)
  assert result.returncode == 0
  assert result.stdout == "" and "Setting up" not in result.stderr
