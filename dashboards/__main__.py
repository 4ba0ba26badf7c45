"""``python -m dashboards [--check]``: writes every dashboard to dashboards/generated/; with
``--check`` writes nothing and exits 1 if a committed file differs from what the code builds."""

from __future__ import annotations

import argparse
import sys

from dashboards import GENERATED, render


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dashboards", description=__doc__)
    parser.add_argument("--check", action="store_true", help="compare with the committed files, write nothing")
    args = parser.parse_args(argv)
    rendered = render()
    if args.check:
        stale = [name for name, text in rendered.items()
                 if not (GENERATED / name).is_file() or (GENERATED / name).read_text(encoding="utf-8") != text]
        for name in stale:
            print(f"dashboards/generated/{name} is out of date: run python -m dashboards", file=sys.stderr)
        return 1 if stale else 0
    GENERATED.mkdir(exist_ok=True)
    for name, text in rendered.items():
        (GENERATED / name).write_text(text, encoding="utf-8")
        print(f"dashboards/generated/{name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
