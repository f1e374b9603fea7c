"""Write docs/CONFIG.md from the declarations of rhfs/config.py (see rhfs/config_reference.py).

python3 scripts/gen_config_doc.py          # write it
python3 scripts/gen_config_doc.py --check  # exit 1 if it is stale
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from rhfs import config_reference  # noqa: E402


def main(argv: list[str]) -> int:
    problems = config_reference.missing_help()
    if problems:
        print("rhfs/config_reference.py HELP: " + "; ".join(problems), file=sys.stderr)
        return 1
    path = REPO / config_reference.DOC_PATH
    text = config_reference.render()
    if "--check" in argv:
        if not path.exists() or path.read_text() != text:
            stale = f"{config_reference.DOC_PATH} is stale; run: {config_reference.REGENERATE}"
            print(stale, file=sys.stderr)
            return 1
        return 0
    path.write_text(text)
    print(f"wrote {config_reference.DOC_PATH}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
