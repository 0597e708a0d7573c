"""What the two docs generators share: write the generated page, or with --check only say
whether the committed one is current."""

import argparse
import sys
from pathlib import Path


def write_or_check(output: Path, text: str, root: Path, script: str, description: str) -> int:
    """Parse --check; write `text` to `output`, or compare it with the file. Returns the exit
    code: 1 when --check finds the page out of date."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--check", action="store_true",
                        help=f"only check that {output.relative_to(root)} is current")
    args = parser.parse_args()
    if args.check:
        current = output.read_text(encoding="utf-8") if output.exists() else ""
        if current != text:
            print(f"{output.relative_to(root)} is out of date: run `python {script}` to "
                  "update", file=sys.stderr)
            return 1
        return 0
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text, encoding="utf-8")
    print(f"wrote {output.relative_to(root)}", file=sys.stderr)
    return 0
