"""``scripts/team_stack.sh``'s commands: up, run, down, check, status (``app.team.stack`` does the
work, ``app.team.check`` the comparison)."""

from __future__ import annotations

import json
import sys

from app.team import check as team_check
from app.team import stack as ts


def main(argv: list[str]) -> int:
    settings = ts.Settings()
    command, rest = (argv[0], argv[1:]) if argv else ("status", [])
    try:
        if command == "up":
            ts.up(settings)
        elif command == "run":
            return ts.run(settings, rest).returncode
        elif command == "down":
            ts.down(settings, keep_images="--keep-images" in rest)
        elif command == "status":
            print(json.dumps(ts.status(settings), indent=1))
        elif command == "_register":
            ts._register(rest[0])
        elif command == "check":
            return team_check.check(settings, rest)
        else:
            print(
                "usage: scripts/team_stack.sh up | run [run.py demo options] | down [--keep-images] | check | status",
                file=sys.stderr,
            )
            return 2
    except ts.TeamStackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
