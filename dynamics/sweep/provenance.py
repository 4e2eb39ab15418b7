"""Provenance written once, for every result file: what made it, with which code, where."""

from __future__ import annotations

import datetime
import subprocess
from pathlib import Path

import jax
import jax.numpy as jnp

import dynamics


def git_revision() -> str:
    """The short git revision of the package's checkout, or ``"unknown"`` (an installed copy,
    no git, or a timeout)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=Path(dynamics.__file__).parent,
            capture_output=True, text=True, timeout=5,
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def provenance(command: str = "") -> dict:
    """The attributes every result carries: ``command``, ``package_version``,
    ``git_revision``, ``created`` (UTC), ``dtype``, ``device``, ``jax_version``."""
    dev = jax.devices()[0]
    return dict(
        command=command,
        package_version=dynamics.__version__,
        git_revision=git_revision(),
        created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        dtype=str(jnp.zeros(()).dtype),
        device=f"{dev.platform}:{getattr(dev, 'device_kind', '')}",
        jax_version=jax.__version__,
    )
