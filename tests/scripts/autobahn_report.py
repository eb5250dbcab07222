#!/usr/bin/env python3
"""Judge a kosoku/Autobahn fuzzingclient report (OUT/index.json).

Fails (exit 1) if any case's behavior is FAILED, ERROR or anything unknown, or
UNIMPLEMENTED outside sections 12 and 13 (permessage-deflate; with --compression
those must pass as well). OK, NON-STRICT and
INFORMATIONAL pass. Prints a per-section summary and the offending cases.
"""

import json
import sys
from collections import Counter, defaultdict

PASSING = {"OK", "NON-STRICT", "INFORMATIONAL"}
SECTION_NAMES = {
    "1": "Framing", "2": "Pings/Pongs", "3": "Reserved Bits", "4": "Opcodes",
    "5": "Fragmentation", "6": "UTF-8 Handling", "7": "Close Handling",
    "9": "Limits/Performance", "10": "Misc", "12": "WebSocket Compression (different payloads)",
    "13": "WebSocket Compression (different parameters)",
}


def case_key(cid: str):
    return tuple(int(x) for x in cid.split("."))


def main(path: str, expected_min: int = 1, compression: bool = False) -> int:
    with open(path) as f:
        index = json.load(f)
    if not index:
        print("autobahn: empty report")
        return 1
    bad = []
    total = 0
    for agent, cases in index.items():
        per_section: dict[str, Counter] = defaultdict(Counter)
        for cid in sorted(cases, key=case_key):
            c = cases[cid]
            total += 1
            section = cid.split(".")[0]
            behavior = c.get("behavior", "?")
            per_section[section][behavior] += 1
            ok = behavior in PASSING or (
                behavior == "UNIMPLEMENTED" and section in ("12", "13") and not compression
            )
            if not ok:
                bad.append((agent, cid, behavior, c.get("behaviorClose"), c.get("remoteCloseCode")))
        print(f"autobahn agent {agent!r}: {len(cases)} cases")
        for section in sorted(per_section, key=int):
            counts = ", ".join(f"{k} {v}" for k, v in sorted(per_section[section].items()))
            print(f"  {section:>3} {SECTION_NAMES.get(section, ''):<45} {counts}")
    for agent, cid, behavior, bclose, code in bad:
        print(f"  FAIL {cid}: behavior={behavior} behaviorClose={bclose} remoteCloseCode={code}")
    if total < expected_min:
        print(f"autobahn: only {total} cases in the report, expected at least {expected_min}")
        return 1
    print(f"autobahn: {total - len(bad)} passed, {len(bad)} failed")
    return 1 if bad else 0


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--compression"]
    sys.exit(main(args[0], int(args[1]) if len(args) > 1 else 1, "--compression" in sys.argv))
