#!/usr/bin/env python3
"""tsan_classify.py LOG BINARY: sorts ThreadSanitizer reports by where both accesses are.

For TSan runs on a machine with no llvm-symbolizer (such as the lent device machine),
where every frame prints as `<null>` and tests/tsan.supp cannot match frame names: run
the test there with TSAN_OPTIONS=halt_on_error=0:log_path=..., bring the log back, and
give it here with the same, unstripped binary (strip --strip-debug keeps the addresses;
a log whose BuildId is not the binary's is refused).
Each report's two accesses are symbolized with addr2line; the output counts reports by
the innermost function of each access. A report whose accesses are both in
`moodycamel::` is the known one that tests/tsan.supp suppresses (moodycamel 1.0.3
synchronises with standalone fences, which TSan does not model); any other line is
a finding. Exit status 1 if there is one.
"""
import collections
import re
import subprocess
import sys


def innermost(binary, addr):
    out = subprocess.run(["addr2line", "-f", "-C", "-e", binary, addr],
                         capture_output=True, text=True, check=True).stdout.splitlines()
    return out[0] if out else "?"


def build_id(binary):
    out = subprocess.run(["readelf", "-n", binary], capture_output=True, text=True,
                         check=True).stdout
    m = re.search(r"Build ID: ([0-9a-f]+)", out)
    return m.group(1) if m else None


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    log, binary = sys.argv[1], sys.argv[2]
    name = re.escape(binary.rsplit("/", 1)[-1])
    text = open(log, errors="replace").read()
    # Addresses mean nothing against another build: refuse rather than misname.
    logged = set(re.findall(r"\(%s\+0x[0-9a-f]+\) \(BuildId: ([0-9a-f]+)\)" % name, text))
    mine = build_id(binary)
    if logged and mine not in logged:
        sys.exit(f"{binary} is build {mine}, the log's is {', '.join(sorted(logged))}: "
                 "give the binary that made the log")
    reports = [r for r in text.split("==================") if "WARNING: ThreadSanitizer" in r]
    kinds = collections.Counter()
    findings = 0
    for r in reports:
        # The two accesses: "Write of size 8 ... by thread T1:" / "Previous read ...".
        stacks = re.findall(r"\n  (?:Write|Read|Atomic|Previous)[^\n]*\n((?:    #\d+[^\n]*\n)+)", r)
        tops = []
        for s in stacks:
            m = re.search(r"#0 <null> <null> \(%s\+(0x[0-9a-f]+)\)" % name, s)
            tops.append(innermost(binary, m.group(1)) if m else "?")
        # The function's qualified name comes before its parameter list.
        known = len(tops) == 2 and all("moodycamel::" in t.split("(", 1)[0] for t in tops)
        findings += not known
        kinds[("known (moodycamel)  " if known else "FINDING  ") +
              " | ".join(t.split("<")[0] for t in tops)] += 1
    for k, v in kinds.most_common():
        print(f"{v:6d}  {k}")
    print(f"{len(reports)} reports, {findings} outside moodycamel")
    sys.exit(1 if findings else 0)


if __name__ == "__main__":
    main()
