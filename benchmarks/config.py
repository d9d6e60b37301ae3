"""How long the config reader takes for a large config (start-up and check-config cost).

Run: python benchmarks/config.py [--instances N]. No target in the issue; the figure shows
that even thousands of instances load in well under a second.
"""

from __future__ import annotations

import argparse
import time

from push_notification.config import parse_config, render_effective


def big_config(instances: int) -> str:
    blocks = [
        f"push_notification hook{i} {{\n"
        f"  driver = webhook\n"
        f"  push_notification_webhook_url = https://user:pw@hooks.example/{i}  # comment\n"
        f'  webhook_header = "X-Id: {i}"\n'
        f"  driver_timeout = 2 mins\n"
        f"  lua_settings {{\n    key{i} = value\n  }}\n"
        f"}}\n"
        for i in range(instances)
    ]
    plugin = "".join(
        f"  push_notification_driver{i + 1 if i else ''} = ox:url=http://h/{i} cache_lifetime=30s\n" for i in range(100)
    )
    return "listen = 127.0.0.1:8425\n" + "".join(blocks) + "plugin {\n" + plugin + "}\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--instances", type=int, default=2000)
    args = parser.parse_args()
    text = big_config(args.instances)
    lines = text.count("\n")
    start = time.perf_counter()
    config = parse_config(text, "<benchmark>")
    parsed = time.perf_counter() - start
    start = time.perf_counter()
    rendered = render_effective(config)
    render = time.perf_counter() - start
    print(f"config: {lines} lines, {len(config.instances)} instances")
    print(f"parse:  {parsed * 1000:.1f} ms ({lines / parsed:,.0f} lines/s)")
    print(f"render: {render * 1000:.1f} ms ({len(rendered):,} bytes)")


if __name__ == "__main__":
    main()
