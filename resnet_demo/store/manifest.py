"""weights/manifest.json: the record of every shipped model, and of every retired one.

A shipped model's record is its run's metrics.json (architecture, recipe, measured figures) plus the names of
its files beside the manifest and their sha256. Models are listed plain after residual, shallow before deep, so
the file reads like Table 6; retired models keep their record under "retired", without their weights.
"""
from __future__ import annotations

import json
from pathlib import Path

from resnet_demo.base.storage import atomic_write_json
from resnet_demo.store.weights import WeightsError

FILENAME = "manifest.json"


def read_manifest(directory: Path) -> dict:
    path = directory / FILENAME
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return {"models": {}}
    except (OSError, json.JSONDecodeError) as e:
        raise WeightsError(f"{path} is unreadable: {e}") from e


def write_manifest(directory: Path, manifest: dict) -> None:
    manifest["models"] = dict(sorted(manifest.get("models", {}).items(),
                                     key=lambda kv: (kv[1].get("plain", False), kv[1].get("depth", 0))))
    atomic_write_json(directory / FILENAME, manifest)


def write_manifest_entry(name: str, record: dict, directory: Path) -> None:
    manifest = read_manifest(directory)
    manifest.setdefault("models", {})[name] = record
    manifest.get("retired", {}).pop(name, None)  # shipping a retired name again replaces its history
    write_manifest(directory, manifest)
