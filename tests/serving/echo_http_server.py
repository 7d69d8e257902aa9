"""`serving.http` with a tiny echo app, for the HTTP-layer tests (no TensorFlow).

Usage: python tests/serving/echo_http_server.py [--max_request_bytes=N --rest_api_*=...]
Prints `PORT <n>` once listening. Paths:
  /count    -> {"handled": <echo requests the app has seen (held or answered)>}
  /hold     -> later /echo requests are held unanswered until /release
  /release  -> answers the held requests (in order) and stops holding
  anything else -> {"method", "url", "body_bytes", "crc32"} of the request
                   (`?pad=N` adds N bytes to the response)
"""

import asyncio
import json
import logging
import sys
import zlib

import uvloop

from serving import config
from serving.http import limits_from_flags, start_http_server


class EchoApp:
    def __init__(self):
        self.handled = 0
        self.holding = False
        self.held = []

    def handle(self, request) -> None:
        path = request.url.split("?", 1)[0]
        if path == "/count":
            request.respond(200, json.dumps({"handled": self.handled}).encode())
        elif path == "/hold":
            self.holding = True
            request.respond(200, b"{}")
        elif path == "/release":
            self.holding = False
            held, self.held = self.held, []
            for waiting in held:
                self._echo(waiting)
            request.respond(200, json.dumps({"released": len(held)}).encode())
        elif self.holding:
            self.handled += 1
            self.held.append(request)
        else:
            self.handled += 1
            self._echo(request)

    @staticmethod
    def _echo(request) -> None:
        body = {
            "method": request.method,
            "url": request.url,
            "body_bytes": len(request.body),
            "crc32": zlib.crc32(request.body),
        }
        if "?pad=" in request.url:
            body["pad"] = "x" * int(request.url.split("?pad=", 1)[1])
        request.respond(200, json.dumps(body).encode())


async def main(argv) -> None:
    args = config.build_parser().parse_args(argv)
    server = await start_http_server(EchoApp(), "127.0.0.1", 0, limits_from_flags(args))
    print(f"PORT {server.port}", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    uvloop.new_event_loop().run_until_complete(main(sys.argv[1:]))  # as serving.server
