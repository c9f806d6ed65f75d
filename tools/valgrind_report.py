"""Read a memcheck log (tools/valgrind.sh): fail on any memory error, and on any
definitely lost block whose allocation stack passes through fastrnn's _core."""
import re
import sys

text = open(sys.argv[1]).read()
records = re.split(r"\n==\d+== \n", text)
errors = [r for r in records if re.search(r"Invalid (read|write|free)|uninitialised|"
                                          r"Mismatched free|overlap|Syscall param", r)]
leaks = [r for r in records if "definitely lost in loss record" in r]
ours = [r for r in leaks if "_core" in r or "fastrnn" in r]
summary = re.search(r"ERROR SUMMARY: (\d+) errors", text)
lost = re.search(r"definitely lost: ([\d,]+) bytes in ([\d,]+) blocks", text)
print(f"memcheck: {len(errors)} memory errors; definitely lost: "
      f"{lost.group(1) if lost else 0} bytes in {len(leaks)} records, {len(ours)} through fastrnn")
for r in errors[:5] + ours[:5]:
    print(r)
sys.exit(1 if errors or ours or summary is None else 0)
