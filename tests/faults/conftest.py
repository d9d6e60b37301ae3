"""The fault-injection suite runs the real daemon through the durable-delivery kit."""

from __future__ import annotations

import sys
from pathlib import Path

# The kit (daemon subprocess, HTTP sink, bridge-like sender) lives beside the durable tests.
sys.path.insert(0, str(Path(__file__).parents[1] / "durable"))
