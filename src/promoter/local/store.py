"""Promotions on disk: `WORKDIR/promotions/NAME/` holds the spec, the status and the event log.

The status file is replaced atomically after every transition, so a killed `promoter run` resumes
from the last saved phase. A promotion's spec is immutable once started (a changed spec under the
same name is refused, not silently mixed into the old promotion's history), and a lock makes sure
only one process drives a promotion at a time.
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

import yaml

from promoter.promotion.spec import ModelPromotion, SpecError, load_promotion
from promoter.promotion.status import PromotionStatus, Transition, load_status

SPEC_FILE = "promotion.yaml"
STATUS_FILE = "status.json"
EVENTS_FILE = "events.jsonl"


class PromotionBusy(RuntimeError):
    pass


def replace_file(path: Path, text: str) -> None:
    """Readers see the old content or the new one, never half of it (and a crash leaves the old)."""
    partial = path.with_suffix(".partial")
    partial.write_text(text)
    partial.replace(path)


def promotions_dir(workdir: Path) -> Path:
    return workdir / "promotions"


class LocalStatusStore:
    """The status of one promotion, saved after every transition; events appended, never rewritten."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def load(self) -> PromotionStatus:
        return load_status(self.directory / STATUS_FILE)

    def save(self, status: PromotionStatus) -> None:
        replace_file(self.directory / STATUS_FILE, status.to_json())

    def record(self, transition: Transition) -> None:
        with (self.directory / EVENTS_FILE).open("a") as events:
            events.write(transition.model_dump_json(by_alias=True) + "\n")


def started(workdir: Path, promotion: ModelPromotion) -> bool:
    """Whether a promotion of this name was already claimed in the workdir (its spec recorded)."""
    return (promotions_dir(workdir) / promotion.metadata.name / SPEC_FILE).exists()


@contextmanager
def claim(workdir: Path, promotion: ModelPromotion) -> Iterator[LocalStatusStore]:
    """The promotion's store, held exclusively while the caller drives it."""
    directory = promotions_dir(workdir) / promotion.metadata.name
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / "lock").open("w") as lock:
        _lock(lock, promotion.metadata.name)
        spec_path = directory / SPEC_FILE
        manifest = promotion.to_manifest()
        if spec_path.exists():
            recorded = load_promotion(spec_path).to_manifest()
            if recorded["spec"] != manifest["spec"]:
                raise SpecError(
                    f"promotion {promotion.metadata.name!r} already exists in {workdir} with a different "
                    "spec; a promotion's spec cannot change once started: give it a new metadata.name"
                )
        else:
            spec_path.write_text(yaml.safe_dump(manifest, sort_keys=False))
        yield LocalStatusStore(directory)


def _lock(handle: IO[str], name: str) -> None:
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise PromotionBusy(f"promotion {name!r} is being driven by another process") from None


def stored_promotions(workdir: Path) -> list[tuple[ModelPromotion, PromotionStatus]]:
    """Every promotion started in this workdir, oldest first."""
    found = []
    root = promotions_dir(workdir)
    for spec_path in sorted(root.glob(f"*/{SPEC_FILE}")) if root.is_dir() else []:
        promotion = load_promotion(spec_path)
        found.append((promotion, load_status(spec_path.parent / STATUS_FILE)))
    never = datetime.max.replace(tzinfo=UTC)
    return sorted(found, key=lambda item: item[1].history[0].at if item[1].history else never)
