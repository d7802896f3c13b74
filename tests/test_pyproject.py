"""pyproject.toml: every runtime dependency has a version floor that holds."""

import importlib.metadata
import os
import re
import tomllib

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _dependencies() -> list[Requirement]:
  with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
    project = tomllib.load(f)["project"]
  return [Requirement(line) for line in project["dependencies"]]


def _pins() -> dict[str, Version]:
  """requirements.txt's `name==version` lines."""
  pins = {}
  with open(os.path.join(ROOT, "requirements.txt")) as f:
    for line in f:
      match = re.match(r"^([A-Za-z0-9_.\-]+)==(\S+)", line.strip())
      if match:
        pins[canonicalize_name(match.group(1))] = Version(match.group(2))
  return pins


def test_every_runtime_dependency_has_a_floor():
  requirements = _dependencies()
  assert len(requirements) > 20
  for requirement in requirements:
    floors = [s for s in requirement.specifier if s.operator == ">="]
    assert len(floors) == 1, f"{requirement.name} has no single >= floor: {requirement}"


def test_installed_and_pinned_versions_meet_the_floors():
  pins = _pins()
  for requirement in _dependencies():
    name = canonicalize_name(requirement.name)
    installed = importlib.metadata.version(requirement.name)
    assert requirement.specifier.contains(installed, prereleases=True), (
        f"installed {requirement.name} {installed} does not meet {requirement.specifier}")
    assert name in pins, f"{requirement.name} is not pinned in requirements.txt"
    assert requirement.specifier.contains(pins[name], prereleases=True), (
        f"requirements.txt pins {requirement.name} {pins[name]}, below {requirement.specifier}")
