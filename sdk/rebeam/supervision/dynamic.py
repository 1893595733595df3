"""The one naming rule for dynamic children (simple_one_for_one), on every backend.

A dynamic child is named ``<template>-<n>``: the template's name, then its serial number,
counting from 1 with each start_child. Numbers are never given twice in one tree's life: a
supervisor that is restarted continues counting where its previous incarnation stopped, so
``pool/worker-3`` in an old log line or event always means the same child (docs/sdk.md,
"Dynamic children" says why).
"""

from __future__ import annotations

__all__ = ["dynamic_child_id", "dynamic_serial"]


def dynamic_child_id(template: str, serial: int) -> str:
    """The id (and name) of the ``serial``-th dynamic child made from ``template``."""
    return f"{template}-{serial}"


def dynamic_serial(template: str, child_id: str) -> int | None:
    """The serial number in a dynamic child's id, or None when ``child_id`` is no id
    :func:`dynamic_child_id` makes from ``template``."""
    digits = child_id.removeprefix(f"{template}-")
    if digits == child_id or not (digits.isascii() and digits.isdigit()):
        return None
    serial = int(digits)
    # One spelling per child: "worker-01" and "worker-0" name nobody.
    return serial if serial >= 1 and str(serial) == digits else None
