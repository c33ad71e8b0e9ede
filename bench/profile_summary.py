"""Milliseconds of sampled CPU per credited payment, from a py-spy profile in folded-stack form
(`bench/webhooks.py --profile DIR --profile-format raw`): for each pattern, the samples whose stack
contains it (inclusive), divided by the sampling rate and the number of payments credited.

    python bench/profile_summary.py DIR/worker-1.txt --credited 2000 verify_transaction GroupCommit
"""

from __future__ import annotations

import argparse
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("profile", type=Path)
    parser.add_argument("patterns", nargs="+", help="substrings of a frame (function, file or both)")
    parser.add_argument("--credited", type=int, required=True, help="payments credited during the profile")
    parser.add_argument("--rate", type=float, default=200, help="samples per second (bench/webhooks.py: 200)")
    args = parser.parse_args()
    total, hits = 0, dict.fromkeys(args.patterns, 0)
    for line in args.profile.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        total += int(count)
        for pattern in args.patterns:
            if pattern in stack:
                hits[pattern] += int(count)

    def per_credited(samples: int) -> float:
        return samples / args.rate / args.credited * 1000

    print(f"{per_credited(total):8.2f} ms  100.0%  all sampled CPU")
    for pattern, samples in hits.items():
        print(f"{per_credited(samples):8.2f} ms  {samples / max(total, 1) * 100:5.1f}%  {pattern}")


if __name__ == "__main__":
    main()
