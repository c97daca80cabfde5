"""`python -m portal_sim [--host 127.0.0.1] [--port 9100] [--scenario FILE]`: the simulator on its own,
without Cashcycle's settings or stores (`cashcycle portal-sim` runs the same)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from portal_sim.app import serve


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="portal_sim", description="a simulated customer portal: cXML, Coupa-style REST, Peppol"
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9100)
    parser.add_argument("--scenario", help="a scenario file (TOML or JSON); default: the demo's portal")
    args = parser.parse_args(argv)
    serve(args.host, args.port, Path(args.scenario) if args.scenario else None)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
