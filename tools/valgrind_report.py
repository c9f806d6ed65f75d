"""Read a memcheck log (tools/valgrind.sh). Fails on any memory error whose stacks
(where it happened, and where the memory was allocated, freed or left
uninitialised: --track-origins) pass through fastrnn's _core, and on any
definitely lost block allocated through _core. Errors entirely inside CPython,
glibc or the dynamic loader (valgrind's known false positives for their
vectorised string functions and small-int cache) are counted and shown, not failed."""
import re
import sys

text = open(sys.argv[1]).read()
records = re.split(r"\n==\d+== \n", text)
errors = [r for r in records if re.search(r"Invalid (read|write|free)|uninitialised value|"
                                          r"Mismatched free|overlap|Syscall param", r)]
leaks = [r for r in records if "definitely lost in loss record" in r]


def ours(record):
    """A frame in fastrnn's compiled modules: their files, sources or C++ namespaces."""
    return re.search(r"/fastrnn/_\w+\.cpython|/csrc/|fastrnn::|pybind11::", record) is not None


bad = [r for r in errors + leaks if ours(r)]
done = re.search(r"ERROR SUMMARY: (\d+) errors", text)
print(f"memcheck: {len(errors)} error contexts, {sum(map(ours, errors))} through fastrnn; "
      f"{len(leaks)} definitely lost records, {sum(map(ours, leaks))} through fastrnn")
for r in errors:
    if not ours(r):
        frames = re.findall(r"(?:at|by) 0x[0-9A-F]+: (\S+) \(([^)]*)\)", r)[:3]
        print("  outside fastrnn:", r.strip().splitlines()[0].split("== ")[-1], "|",
              " <- ".join(f"{f} ({w})" for f, w in frames))
for r in bad[:10]:
    print(r)
sys.exit(1 if bad or done is None else 0)
