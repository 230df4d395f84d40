"""`python -m hyperhive.offline_model --port N`: serve the offline model and print its URL."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal

from hyperhive.offline_model.server import LABEL, OfflineModelServer


async def _serve(host: str, port: int, api_key: str | None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with OfflineModelServer(host, port, api_key=api_key) as model:
        print(f"{LABEL}: {model.url}", flush=True)
        print(f"export ANTHROPIC_BASE_URL={model.url} ANTHROPIC_API_KEY={api_key or 'dummy'}", flush=True)
        await stop.wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m hyperhive.offline_model", description=LABEL)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 = let the OS choose (printed)")
    parser.add_argument("--api-key", default=None, help="refuse /v1 requests carrying another key (401)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    asyncio.run(_serve(args.host, args.port, args.api_key))


if __name__ == "__main__":
    main()
