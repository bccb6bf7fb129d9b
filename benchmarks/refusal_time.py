"""How long a user waits for a bad spec to be refused: `promoter run` on every invalid spec of the
shared table (tests/invalid_specs.py), each in its own process as a user runs it, start-up included.

The target is the core issue's: every refusal in under 5 s, exit 2, nothing trained. A unit test
cannot time this honestly (a second pytest worker on the same 2 cores doubles it), so the tests
assert the refusal itself and this script measures it. For comparison it also times `promoter
--version`, the floor every command pays (interpreter, typer, rich), in the same run.

    .venv/bin/python benchmarks/refusal_time.py              # every spec of the table
    .venv/bin/python benchmarks/refusal_time.py --only 10    # the first ten
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from tests.invalid_specs import INVALID_SPECS  # noqa: E402  (the table lives with the tests)

PROMOTER = Path(sys.executable).parent / "promoter"
BUDGET_SECONDS = 5.0


def timed(*args: str) -> tuple[int, float, str]:
    started = time.monotonic()
    done = subprocess.run([str(PROMOTER), *args], capture_output=True, text=True, check=False)
    return done.returncode, time.monotonic() - started, done.stderr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--only", type=int, default=len(INVALID_SPECS), help="the first N specs")
    options = parser.parse_args()

    floor = min(timed("--version")[1] for _ in range(3))
    rows: list[tuple[str, int, float, bool]] = []
    with tempfile.TemporaryDirectory(prefix="promoter-refusal-") as scratch:
        for invalid in INVALID_SPECS[: options.only]:
            spec = Path(scratch) / f"{invalid.id}.yaml"
            spec.write_text(yaml.safe_dump(invalid.document(), sort_keys=False))
            workdir = Path(scratch) / f"{invalid.id}-workdir"
            code, elapsed, stderr = timed("run", str(spec), "--workdir", str(workdir))
            clean = invalid.field in stderr and "Traceback" not in stderr and not workdir.exists()
            rows.append((invalid.id, code, elapsed, clean))
            print(f"{invalid.id:<36} exit {code}  {elapsed:5.2f} s  {'ok' if clean else 'NOT CLEAN'}")

    seconds = [row[2] for row in rows]
    print(f"\n`promoter --version` (the floor every command pays): {floor:.2f} s")
    print(f"refusals: {len(rows)}, median {statistics.median(seconds):.2f} s, max {max(seconds):.2f} s")
    print(f"all exit 2, field named, no traceback, nothing written: {all(r[1] == 2 and r[3] for r in rows)}")
    fraction = max(seconds) / BUDGET_SECONDS
    print(f"max_fraction_of_budget {fraction:.2f}  (target < 1: every refusal under {BUDGET_SECONDS:.0f} s)")


if __name__ == "__main__":
    main()
