"""Analysis benchmark: shadowed and redundant rules, and `fwc diff`, on the bench policies.

Run: `.venv/bin/python bench/bench_analysis.py [--sizes 10000,50000] [--edits 5]`.
Prints seconds per step (policy loading apart), the shadowed rules a pairwise check
finds beside the union check, and whether the diff of an edited policy names only
regions that the edited rules touch.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from fwc.compiler.analysis.diff import VERDICT, diff
from fwc.compiler.analysis.index import RuleIndex
from fwc.compiler.analysis.match import rule_cubes
from fwc.compiler.analysis.redundancy import redundant
from fwc.compiler.analysis.shadow import reaches, shadowed
from fwc.compiler.analysis.space import region_minus_all, region_overlaps
from fwc.compiler.policy.ir import Policy

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
T = TypeVar("T")


def pairwise_shadowed(index: RuleIndex) -> set[int]:
    """Rules covered by one earlier rule alone: all a pairwise check (Capirca's) can see."""
    out = set()
    for i, cubes in enumerate(index.cubes):
        for j in index.overlapping(cubes):
            if j < i and not region_minus_all(cubes, index.cubes[j]):
                out.add(i)
                break
    return out


def edit_text(text: str, count: int) -> tuple[str, set[str]]:
    """`text` with `count` rules edited, spread over the list: an action flipped, a rule
    removed, a denying copy inserted before one, in turn. Returns the names touched."""
    blocks = re.split(r"(?m)^(?=  - name: )", text)
    head, rules = blocks[0], blocks[1:]
    touched: set[str] = set()
    step = len(rules) // (count + 1)
    for k in reversed(range(count)):
        i = step * (k + 1)
        name = rules[i].split()[2]
        touched.add(name)
        how = k % 3
        if how == 0:
            flipped = "deny" if "action: allow" in rules[i] else "allow"
            rules[i] = re.sub(r"action: \w+", f"action: {flipped}", rules[i])
        elif how == 1:
            del rules[i]
        else:
            copy = rules[i].replace(name, f"{name}_copy", 1)
            rules.insert(i, re.sub(r"action: \w+", "action: deny", copy))
            touched.add(f"{name}_copy")
    return head + "".join(rules), touched


def timed(label: str, fn: Callable[..., T], *args: object) -> T:
    start = time.perf_counter()
    result = fn(*args)
    print(f"  {label:<40} {time.perf_counter() - start:7.2f} s")
    return result


def shadow_figures(policy: Policy) -> None:
    total = time.perf_counter()
    index = timed("index (rule cubes, address index)", RuleIndex, policy)
    reached = timed("reach of every rule", reaches, index)
    found = timed("shadowed rules with minimal covers", shadowed, index, reached)
    extra = timed("redundant rules", redundant, index, reached)
    print(f"  {'shadowing + redundancy, all':<40} {time.perf_counter() - total:7.2f} s")
    pairwise = timed("pairwise shadow check (for comparison)", pairwise_shadowed, index)
    union = {s.rule.id for s in found}
    print(
        f"  shadowed: union check {len(union)}, pairwise {len(pairwise)}, "
        f"missed by pairwise {len(union - pairwise)}; "
        f"covered by a rule that decides differently {sum(1 for s in found if s.conflicting)}; "
        f"redundant {len(extra)}"
    )


def diff_figures(old: Policy, new: Policy, touched: set[str], edits: int) -> None:
    start = time.perf_counter()
    changes = diff(RuleIndex(old), RuleIndex(new))
    took = time.perf_counter() - start
    region = [c for p in (old, new) for r in p.rules if r.name in touched for c in rule_cubes(r)]
    inside = all(region_overlaps([c.cube], region) for c in changes)
    verdicts = sum(1 for c in changes if c.kind == VERDICT)
    print(
        f"  {f'diff, {edits} rules edited':<40} {took:7.2f} s: {verdicts} verdict regions, "
        f"{len(changes) - verdicts} other; all inside the edited rules: {inside}"
    )


def cli_figures(old_text: str, new_text: str) -> None:
    """`fwc diff` end to end: start-up, loading and checking both files included."""
    with tempfile.TemporaryDirectory() as tmp:
        a, b = Path(tmp) / "old.yaml", Path(tmp) / "new.yaml"
        a.write_text(old_text)
        b.write_text(new_text)
        start = time.perf_counter()
        done = subprocess.run(
            [str(ROOT / ".venv/bin/fwc"), "diff", str(a), str(b), "--format", "json"],
            capture_output=True,
            check=False,
        )
        took = time.perf_counter() - start
    print(f"  {f'fwc diff end to end (exit {done.returncode})':<40} {took:7.2f} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="10000,50000", help="rule counts, comma-separated")
    parser.add_argument("--edits", type=int, default=5, help="rules edited for the diff")
    args = parser.parse_args()
    sys.path.insert(0, str(BENCH))
    from policies import load_policy, make_policy_yaml

    for n in (int(s) for s in args.sizes.split(",")):
        text = make_policy_yaml(n, 1)
        start = time.perf_counter()
        policy = load_policy(text)
        print(f"{n} rules (policy loaded in {time.perf_counter() - start:.2f} s)")
        shadow_figures(policy)
        new_text, touched = edit_text(text, args.edits)
        diff_figures(policy, load_policy(new_text), touched, args.edits)
        cli_figures(text, new_text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
