"""rnnlab serve RUN [RUN ...]: the typing page and the suggestion API on one port."""
from __future__ import annotations

import socket
import sys
from pathlib import Path

from ..errors import UserError
from ..settings import number

HELP = "serve next-word suggestions: a typing page at /, JSON over HTTP and a WebSocket"


def add_arguments(parser) -> None:
    from ..serve.sessions import Limits
    d, count = Limits(), number(int, "positive")
    parser.add_argument("runs", nargs="+", type=Path, metavar="RUN",
                        help="run directories of `rnnlab train` (the first is the default)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=number(int, "port"), default=8000,
                        help="port (0: any free one)")
    parser.add_argument("--max-text", type=count, default=d.max_text,
                        help="characters of text per request (default %(default)s)")
    parser.add_argument("--max-sessions", type=count, default=d.max_sessions,
                        help="typing sessions that keep recurrent state; the oldest idle "
                             "one is dropped first (default %(default)s)")
    parser.add_argument("--max-cache-mb", type=number(float, "positive"),
                        default=d.max_cache_mb,
                        help="recurrent state of all sessions together (default %(default)s)")
    parser.add_argument("--threads", type=count, default=1,
                        help="torch threads (default 1: a suggestion is many tiny products, "
                             "and extra threads only add waits; see docs/serve.md)")
    parser.add_argument("--max-connections", type=count, default=d.max_connections,
                        help="open WebSocket connections (default %(default)s)")


def run(args) -> int:
    import torch
    import uvicorn

    from ..serve import Limits, create_app, load_models
    limits = Limits(max_text=args.max_text, max_sessions=args.max_sessions,
                    max_cache_mb=args.max_cache_mb, max_connections=args.max_connections)
    torch.set_num_threads(args.threads)
    sys.setswitchinterval(0.001)    # many threads wait on short steps: hand the GIL on sooner
    models = load_models(args.runs)
    try:                                    # bound here: a port in use is a one-line error
        sock = socket.create_server((args.host, args.port))
    except OSError as e:
        raise UserError(f"cannot listen on {args.host}:{args.port} ({e.strerror or e})")
    port = sock.getsockname()[1]
    config = uvicorn.Config(create_app(models, limits), log_level="warning",
                            ws_max_size=limits.max_message)
    print(f"rnnlab serve: {', '.join(models)} at http://{args.host}:{port}/ (Ctrl-C stops)",
          file=sys.stderr, flush=True)
    try:
        uvicorn.Server(config).run(sockets=[sock])
    except KeyboardInterrupt:               # uvicorn re-raises Ctrl-C after a clean shutdown
        pass
    print("rnnlab serve: stopped", file=sys.stderr)
    return 0
