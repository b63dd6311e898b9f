#!/usr/bin/env python3
"""Prints how many tests of a real-cluster run ran there and how many are fake-only.

Reads `cargo test` outputs (first argument: the plugin's e2e suite; the rest: the libraries'
cluster tests). A test marked `cfg_attr(real_cluster, ignore = "...")` is reported by cargo as
`ignored, <reason>`: it needs the fake API server (fault injection, request log, clock skew).
Then, for each failed test, its panic message without the backtrace: the end of a long log is
what a CI summary shows, so the reason must be there.
"""
import re
import sys


def counts(path):
    passed = failed = ignored = 0
    reasons = {}
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            m = re.match(r"test result: \w+\. (\d+) passed; (\d+) failed; (\d+) ignored", line)
            if m:
                passed += int(m.group(1))
                failed += int(m.group(2))
                ignored += int(m.group(3))
            m = re.match(r"test (\S+) \.\.\. ignored, (.*)$", line.strip())
            if m:
                reasons.setdefault(m.group(2), []).append(m.group(1))
    return passed, failed, ignored, reasons


def failures(path, lines_each=14):
    """(test name, the first lines of its panic output before any backtrace)."""
    found = []
    current = None
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            line = line.rstrip("\n")
            m = re.match(r"---- (\S+) stdout ----$", line)
            if m:
                current = []
                found.append((m.group(1), current))
                continue
            if current is None:
                continue
            if line.startswith("stack backtrace:") or line == "failures:" or line.startswith("---- "):
                current = None
            elif len(current) < lines_each and line.strip():
                current.append(line[:300])
    return found


def main():
    for i, path in enumerate(sys.argv[1:]):
        passed, failed, ignored, reasons = counts(path)
        what = "e2e tests (the plugin binary)" if i == 0 else "library cluster tests"
        print(f"real cluster: {passed} {what} passed there, {failed} failed, {ignored} fake-only")
        for reason, tests in sorted(reasons.items()):
            print(f"  fake-only ({reason}): {len(tests)}")
    for path in sys.argv[1:]:
        for name, text in failures(path):
            print(f"FAILED on the real cluster: {name}")
            for line in text:
                print(f"    {line}")


if __name__ == "__main__":
    main()
