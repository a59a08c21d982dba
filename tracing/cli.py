"""epoll-lab (or python -m tracing in a checkout): the lab's command line."""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import signal
import sys
from importlib import metadata
from pathlib import Path

from .run import load as loads
from .run import recipes, tracers
from .render import browser, timeline, trace_event
from .render.annotated_log import AnnotatedLog
from .render.jsonl import Jsonl
from .render.renderer import fan_out
from .render.summary import summary_text
from .render.text import use_color
from .run import assets
from .modes import compare, live
from .read import inputs
from .understand import snapshot
from .understand.annotate import Annotator, annotate_items, with_stacks_known
from .errors import EXIT_CODES_HELP, EXIT_NOT_STRACE, EXIT_OUTPUT, EXIT_SETUP, TraceError, command_name
from .run.outputs import holds_a_run, new_folder, output_error, ready_folder, report, write_views
from .run.procs import catch_stop_signals
from .log import Progress, eprint
from .run.orchestrate import exit_code, trace
from .run.scenario import LOAD_SECONDS

EPILOG = """\
recommended strace flags for logs you bring to `annotate`:
  strace -f -ttt -T -yy -s 128 -o app.strace -- your-server ...
    -f      follow threads and children (pool threads, subprocesses)
    -ttt    epoch timestamps (ordering across threads, request windows)
    -T      time spent in each call (how long a wait slept)
    -yy     print what each fd is (socket addresses, paths)
  Logs without some of these still annotate; the fd table then works out
  what each fd is from the calls that made it.

""" + EXIT_CODES_HELP


TRACER_HELP = {
    "strace": "strace (ptrace, the default)",
    "ltrace": "ltrace (library calls, not syscalls: getaddrinfo, the epoll wrappers)",
    "kernel": "kernel (a BPF program on tracepoints: barely slows the server and decodes io_uring "
              "operations, uvloop's epoll_ctl among them; needs root, BTF and tracefs)",
}


def _tracer_option(p: argparse.ArgumentParser, **can: bool) -> None:
    """--tracer, offering the tracers that can what this command needs (live=True)."""
    offered = tracers.names(**can)
    p.add_argument("--tracer", choices=offered, default=tracers.DEFAULT,
                   help=", ".join(TRACER_HELP[n] for n in offered)
                        + f"; a run traced by another than {tracers.DEFAULT} is written to traces/<run>-<tracer>/")


class Parser(argparse.ArgumentParser):
    """A usage error is one line and exit 2, as every other error is one line."""

    def error(self, message: str):
        self.exit(2, f"epoll-lab: error: {message} (see {self.prog} --help)\n")


def port_number(text: str) -> int:
    """--port: 1 to 65535 (0 would mean "any port", which the lab cannot curl)."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (1 to 65535)") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a port number (1 to 65535)")
    return port


def pid_number(text: str) -> int:
    """--pid: a whole number from 1 up (0 and -1 name process groups to kill(2), not a process).
    One too big for this kernel is checked when the run starts: no such process (exit 6)."""
    try:
        pid = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a PID (a whole number from 1 up)") from None
    if pid < 1:
        raise argparse.ArgumentTypeError(f"{pid} is not a PID (a whole number from 1 up)")
    return pid


def seconds(text: str) -> float:
    """A time in seconds: finite and above zero (nan, inf and negatives are refused, not defaulted)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text} is not a time: give a number of seconds above 0")
    return value


def whole_seconds(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of seconds") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a time: give a whole number of seconds from 1")
    return value


class StepAction(argparse.Action):
    """--request and --client go into one list, in the order given."""

    def __call__(self, parser, namespace, value, option_string=None):
        steps = getattr(namespace, self.dest, None) or []
        setattr(namespace, self.dest, [*steps, value])


def request_step(text: str) -> recipes.Request:
    try:
        return recipes.parse_request(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def client_command(text: str) -> recipes.Request:
    try:
        return recipes.client_step(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def version() -> str:
    try:
        return metadata.version("epoll-lab")
    except metadata.PackageNotFoundError:
        return "(not installed)"


def build_parser() -> argparse.ArgumentParser:
    p = Parser(
        prog=command_name(),
        description="epoll-lab: trace an event-loop server with strace and annotate what it does.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"epoll-lab {version()}")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("trace", help="trace a demo server, any command, or a running process",
                       usage="%(prog)s [options] {c,sanic,uring}\n"
                             "       %(prog)s [options] -- CMD [ARGS...]\n"
                             "       %(prog)s [options] --pid PID",
                       description="Trace with strace and write traces/<run>/: raw.strace, "
                       "annotated.log, events.jsonl, timeline.html, trace.json (Perfetto), summary.json, and the "
                       "program's own output in server.log. `c` (the C epoll server), `uring` (the C "
                       "io_uring server) and `sanic` start a demo server, send it the lab's curl scenario and stop it with SIGINT. "
                       "`-- CMD ...` runs your command until its first process exits, Ctrl-C or --seconds, "
                       "then stops whatever it left running; "
                       "`--pid PID` attaches to a running process and all its threads and detaches "
                       "at the end. With --port (and --request) the lab waits for the port to "
                       "answer HTTP, sends the requests with curl and then stops.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    t.add_argument("target", nargs="?", choices=sorted(recipes.TARGETS),
                   help="a demo server (or give `-- CMD ...` or --pid)")
    t.add_argument("--pid", type=pid_number, default=None,
                   help="attach to this running process (strace -f -p: every thread)")
    t.add_argument("--seconds", type=seconds, default=None,
                   help="stop (or detach) after this many seconds")
    t.add_argument("--request", action=StepAction, type=request_step, dest="steps", metavar="'[METHOD] PATH'",
                   help="with --port: a request curl sends, as `[METHOD] PATH [-H 'Name: value']... [-d BODY]` "
                        "(e.g. '/items', 'POST /items -H \"Content-Type: application/json\" -d {\"a\":1}'); "
                        "repeatable, each its own window in annotated.log and trace.json (default: GET /, where "
                        "the port speaks HTTP and there is no other step)")
    t.add_argument("--client", action=StepAction, type=client_command, dest="steps", metavar="'CMD'",
                   help="with --port: run this command as a step, through /bin/sh with PORT set (e.g. "
                        "'redis-cli -p $PORT ping', 'printf hi | nc -q1 127.0.0.1 $PORT'); repeatable, in "
                        "order with --request; a non-zero exit fails the run (exit 5)")
    t.add_argument("--ready", choices=("http", "tcp"), default="http",
                   help="with --port: the port is ready when it answers GET / (http, the default) or "
                        "accepts a TCP connection (tcp: any protocol)")
    t.add_argument("--load", nargs="?", const=loads.DEFAULT, default=None, metavar="CONNS:SECONDS",
                   help="with --port, after the steps: CONNS keep-alive connections send GET (the path of "
                        f"the first --request, else /) for SECONDS (wrk, else a built-in client); at most "
                        f"{loads.MAX_CONNS} connections and {loads.MAX_SECONDS} s; --load alone is "
                        f"{loads.DEFAULT}. annotated.log shows the first requests in full and folds the "
                        "repeats; the summary gives syscalls and CPU per request")
    t.add_argument("--syscalls", default=None, metavar="SET",
                   help="the syscalls strace traces, in its own -e trace= syntax: '+futex,clock_nanosleep' "
                        "adds to the lab's set, 'read,write,%%net' replaces it (execve is always added, it "
                        "names the program); calls the annotator has no rule for are kept and described by "
                        "their fds, duration and thread")
    t.add_argument("--asyncio-debug", action="store_true",
                   help="a Python asyncio program: run it with PYTHONASYNCIODEBUG=1, so asyncio reports each "
                        "callback that holds the loop 100 ms or more ('Executing <Task ...> took 0.2 "
                        "seconds'); annotated.log ties each stall to the report, which names the coroutine")
    t.add_argument("--wait", type=seconds, default=60.0, metavar="SECONDS",
                   help="with --port: how long to wait for it to be ready (default 60)")
    t.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop",
                   help="Sanic's event loop (default uvloop)")
    t.add_argument("--pool", action="store_true",
                   help="C epoll server: run getaddrinfo and the file read on a thread pool; io_uring "
                        "server: hand the file's operations to the kernel's io-wq threads (IOSQE_ASYNC)")
    _tracer_option(t)
    t.add_argument("--scenario", choices=("requests", "lessons"), default="requests",
                   help="Sanic: the route tour (default), or the asyncio lessons (blocking vs "
                        "awaiting, gather, CPU with and without yielding, timeouts, TaskGroup, "
                        "cancel), each with a "
                        "GET / fired while it runs")
    t.add_argument("--recipe", choices=("story", "load"), default="story",
                   help="story: the full syscall set and the curl scenario (default); load: only "
                        "epoll and accept calls (--seccomp-bpf, cheap) while wrk loads the server")
    t.add_argument("--no-io-uring", dest="io_uring", action="store_false",
                   help="Sanic: refuse io_uring_setup (strace fault injection), as a container "
                        "would; uvloop then registers fds with plain epoll_ctl")
    t.add_argument("--port", type=port_number, default=None,
                   help="port on 127.0.0.1 (demo servers: default 8000 for sanic, 8080 for c; a "
                        "command or PID: curl it there once it answers)")
    t.add_argument("--out", type=Path, default=None,
                   help="output folder (default traces/<run>, or traces/<run>-2, -3 ... when it holds an "
                        "earlier run; a folder another run is writing is refused)")
    t.add_argument("--force", action="store_true",
                   help="without --out: write traces/<run> even if it holds an earlier run (by default a "
                        "new folder is used: traces/<run>-2, -3 ...)")
    t.add_argument("--json", action="store_true", help="print the summary as JSON")
    t.add_argument("--full", action="store_true",
                   help="annotated.log shows every start-up file call (default: one counted line)")

    c = sub.add_parser("compare", help="the loops side by side: traces/compare.md and .json",
                       description="Trace (or reuse fresh traces of) the C server, the C server "
                       "with its pool, the C io_uring server, Sanic on uvloop with and without io_uring, and Sanic on the "
                       "stdlib loop, all with the same curl scenario; then write traces/compare.md "
                       "(printed) and traces/compare.json.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    c.add_argument("--fresh", action="store_true", help="trace every run again, even if fresh")
    c.add_argument("--port", type=port_number, default=None,
                   help="the port each run's server listens on, one run after another (default: each "
                        "target's own, 8080)")
    _tracer_option(c, traces_syscalls=True)
    c.add_argument("--traces", type=Path, default=Path("traces"), help="folder of the runs")

    lv = sub.add_parser("live", help="trace a server and stream annotated lines as they happen",
                        description="Start the server under strace and print each annotated call as "
                        "it happens while you curl it from another terminal; also writes "
                        "traces/<run>-live/. Ctrl-C stops it all and prints the summary.",
                        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    lv.add_argument("target", choices=sorted(recipes.TARGETS))
    lv.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    lv.add_argument("--pool", action="store_true")
    lv.add_argument("--recipe", choices=("story", "load"), default="story")
    lv.add_argument("--load-seconds", type=whole_seconds, default=LOAD_SECONDS,
                    help=f"with --recipe load: how long wrk runs (default {LOAD_SECONDS})")
    lv.add_argument("--port", type=port_number, default=None)
    _tracer_option(lv, live=True)
    lv.add_argument("--filter", default="",
                    help="comma-separated: a thread role (loop, pool, other), a category (pollable, "
                         "thread-pooled, blocking, wakeup) or the start of a call's name (epoll, "
                         "accept); shows the events matching any of them")
    lv.add_argument("--out", type=Path, default=None)
    lv.add_argument("--color", choices=("auto", "always", "never"), default="auto",
                    help="colour the categories: auto (a terminal, and NO_COLOR unset or empty)")

    tl = sub.add_parser("timeline", help="draw events.jsonl as a per-thread timeline page",
                        description="One self-contained HTML page (inline SVG, no network): a lane "
                        "per thread, waits as spans, calls coloured by category, wakeup arrows, "
                        "requests shaded. Trace runs write traces/<run>/timeline.html themselves.")
    tl.add_argument("events", type=Path, help="events.jsonl from a trace run or `annotate --format jsonl`")
    tl.add_argument("-o", "--output", type=Path, default=None, help="page (default: beside the events)")
    tl.add_argument("--title", default=None)

    w = sub.add_parser("web", help="a live page: start a target traced, press buttons, watch the lanes grow",
                       usage="%(prog)s [--port P] [--start TARGET] [--out DIR]\n"
                             "       %(prog)s [--port P] --command-port N -- CMD [ARGS...]",
                       description="Serve a page on 127.0.0.1 (the lab's own Sanic) that starts a target "
                       "under strace, sends it the scenario's requests, the lessons or a short load burst "
                       "when you press a button, and streams the annotated lines over a WebSocket while "
                       "per-thread lanes grow, with wakeup arrows. Targets: Sanic on uvloop or asyncio, "
                       "the C server (with or without its pool), or the command given after `--` (never "
                       "one from the page). It prints a URL with a random token: the token is required "
                       "to start, stop, send or download; requests for another Host, and WebSockets from "
                       "another Origin, are refused. Ctrl-C stops the page and every process it started.")
    w.add_argument("--port", type=int, default=WEB_PORT, help=f"the page's port on 127.0.0.1 (default {WEB_PORT})")
    w.add_argument("--out", type=Path, default=Path("traces"),
                   help="where each run's files go: OUT/<target>-web/ (default traces)")
    w.add_argument("--start", default=None, metavar="TARGET",
                   help="start this target at once (sanic, sanic-asyncio, c, c-pool, command)")
    w.add_argument("--command-port", type=int, default=None, metavar="N",
                   help="with `-- CMD`: the port your command serves HTTP on (the buttons send GET / there)")

    sh = sub.add_parser("screenshot", help="render a page to PNG with headless Chromium")
    sh.add_argument("page", type=Path)
    sh.add_argument("-o", "--output", type=Path, required=True)
    sh.add_argument("--size", default=None,
                    help="window WIDTHxHEIGHT (default: 1600 wide, as tall as the page says its lanes need)")
    sh.add_argument("--zoom", default=None, metavar="REQUEST",
                    help="open on this request, as its button is labelled (e.g. \"request 2: GET /file\")")

    a = sub.add_parser("annotate", help="annotate a strace log (file or - for stdin)",
                       description="Annotate a strace log: every raw line kept, each with the "
                       "thread's role, a category and a plain-language note. A file is read twice "
                       "(the first pass learns each thread's role); writing to -o with stderr on a "
                       "terminal, a status line says how far each pass has read.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    a.add_argument("log", nargs="+",
                   help="strace output file, or - for standard input; several files (or the NAME "
                        "given to strace -ff -o NAME) are merged by timestamp")
    a.add_argument("--format", choices=("text", "jsonl", "trace-event", "all"), default="text",
                   help="text (the annotated log), jsonl (one record per line), trace-event "
                        "(JSON for ui.perfetto.dev and speedscope), or all: a trace "
                        "run's files (annotated.log with its index, events.jsonl, trace.json, "
                        "timeline.html, summary.json) into the folder -o names, from one read")
    a.add_argument("--fold", action="store_true",
                   help="text: the start-up file calls as one counted line, as in a run's "
                        "annotated.log (by default every line is kept)")
    a.add_argument("--color", choices=("auto", "always", "never"), default="auto",
                   help="colour the categories: auto (a terminal, and NO_COLOR unset or empty)")
    a.add_argument("-o", "--output", default="-", help="output file (default standard output)")
    a.add_argument("--summary", action="store_true", help="print a summary to standard error")
    a.add_argument("--snapshot", default=None, metavar="FILE",
                   help="the process's fds, epoll interest lists and threads when strace attached "
                        "(snapshot.json, which `trace --pid` saves beside raw.strace and which is read "
                        "from there by default): an attached log then starts from what was there")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # `trace [options] -- CMD ARGS...`: the command is everything after `--`.
    command: list[str] = []
    if argv[:1] in (["trace"], ["web"]) and "--" in argv:
        at = argv.index("--")
        argv, command = argv[:at], argv[at + 1:]
    parser = build_parser()
    args = parser.parse_args(argv)
    args.cmd = command
    catch_stop_signals()
    try:
        if args.command == "trace":
            _check_trace_args(parser, args)
            return cmd_trace(args)
        if args.command == "compare":
            return cmd_compare(args)
        if args.command == "live":
            return cmd_live(args)
        if args.command == "timeline":
            return cmd_timeline(args)
        if args.command == "screenshot":
            return cmd_screenshot(args)
        if args.command == "web":
            return cmd_web(parser, args)
        return cmd_annotate(args)
    except TraceError as e:
        eprint(f"epoll-lab: error: {e}")
        return e.code
    except KeyboardInterrupt as e:
        signum = getattr(e, "signum", signal.SIGINT)
        eprint(f"epoll-lab: interrupted ({signal.Signals(signum).name}); nothing was left running")
        return 128 + signum
    except BrokenPipeError:
        return 0


def _target(kind: str, port: int | None = None, tracer: str = tracers.DEFAULT, **options) -> recipes.Target:
    # Each target's function holds its own default port.
    return tracers.get(tracer).prepare(recipes.TARGETS[kind](**options, **({"port": port} if port else {})))


def _check_built(target: recipes.Target) -> None:
    """The C servers are built on first use (the system compiler; see tracing/run/assets.py)."""
    for server in assets.C_SERVERS:
        if target.argv and target.argv[0] == str(assets.c_binary(server)):
            assets.ensure_c_binary(server)


def _check_trace_args(parser: argparse.ArgumentParser, args) -> None:
    given = [w for w, on in (("a demo target", args.target), ("-- CMD", args.cmd),
                             ("--pid", args.pid is not None)) if on]
    if len(given) != 1:
        parser.error("trace needs exactly one of: c, sanic, uring, `-- CMD ...`, --pid PID"
                     + (f" (got {' and '.join(given)})" if given else ""))
    needs_port = [o for o, on in (("--request", any(s.client is None for s in args.steps or ())),
                                  ("--client", any(s.client is not None for s in args.steps or ())),
                                  ("--load", args.load is not None), ("--ready tcp", args.ready == "tcp"))
                  if on]
    if needs_port and not args.port and not args.target:
        parser.error(f"{' and '.join(needs_port)} need{'s' if len(needs_port) == 1 else ''} --port")
    if args.load is not None:
        if args.ready == "tcp":
            parser.error("--load sends HTTP requests: it needs a port that speaks HTTP (--ready http)")
        first = next((s.path for s in args.steps or () if s.client is None), "/")
        try:
            args.load = loads.parse(args.load, first)
        except ValueError as e:
            parser.error(f"--load {e}")
    if args.syscalls is not None and not tracers.get(args.tracer).takes_syscalls:
        parser.error(f"--syscalls sets what strace traces: it does not combine with --tracer {args.tracer}")
    if args.syscalls is not None and args.recipe == "load":
        parser.error("--syscalls does not combine with --recipe load (its set is fixed: epoll and accept)")
    if args.syscalls is not None:
        try:
            recipes.syscall_set(args.syscalls, "")
        except ValueError as e:
            parser.error(f"--syscalls {e}")


def cmd_trace(args) -> int:
    tracer = tracers.get(args.tracer)
    if args.target:
        target = _target(args.target, args.port, loop=args.loop, pool=args.pool, io_uring=args.io_uring,
                         tracer=tracer.name, recipe=args.recipe, scenario=args.scenario)
        _check_built(target)
        if args.steps or args.load is not None:
            target.requests = list(args.steps or [])
        target.ready, target.load = args.ready, args.load
    else:
        target = tracer.prepare(recipes.program(args.cmd, args.port, args.steps, pid=args.pid, ready=args.ready,
                                                load=args.load))
    if args.syscalls is not None:
        target.syscalls = recipes.syscall_set(args.syscalls, target.syscalls)
        tracer.check_syscalls(tracer.check(), target.syscalls)
    if args.asyncio_debug:
        recipes.with_asyncio_debug(target)
    out = args.out
    if out is None and args.force:
        out = Path("traces") / target.name
    elif out is None:
        # Never over an earlier run: traces/<name>, else traces/<name>-2, -3 ...
        out, why = new_folder(Path("traces"), target.name)
        if why:
            eprint(f"[epoll-lab] writing {out}: {why} (--out DIR picks the folder, --force writes over "
                   f"{Path('traces') / target.name})")
    elif holds_a_run(out):
        eprint(f"[epoll-lab] {out} holds an earlier run: writing over it")
    result = trace(target, out, seconds=args.seconds, wait=args.wait, full=args.full)
    if args.json:
        print(json.dumps(result["summary"]))
    else:
        report(result)
    if result.get("interrupted"):  # Ctrl-C (SIGTERM, SIGHUP) ended a run with no scenario: files written
        return 128 + result["interrupted"]
    if result.get("exit_status") is not None:
        return exit_code(result["exit_status"])  # as strace does: the program's own status
    return 0


# The runs `compare` puts side by side, as trace-target options.
COMPARED = [("c", {"pool": False}), ("c", {"pool": True}), ("uring", {}), ("sanic", {"loop": "uvloop"}),
            ("sanic", {"loop": "uvloop", "io_uring": False}), ("sanic", {"loop": "asyncio"})]
def _fresh(out: Path) -> bool:
    """A kept run is reused while it is newer than every source file it came from."""
    done = out / "events.jsonl"
    if not (done.exists() and (out / "scenario.jsonl").exists()):
        return False
    newest = max((p.stat().st_mtime for d in assets.source_dirs() for p in d.rglob("*") if p.is_file()),
                 default=0.0)
    return done.stat().st_mtime > newest


def _compared(name: str) -> list[tuple[str, dict]]:
    """COMPARED with every run on tracer `name` (a run without io_uring needs a tracer that injects
    faults), plus Sanic/uvloop and the io_uring server under a tracer that sees inside io_uring
    when `name` does not: the operations strace cannot see."""
    tracer = tracers.get(name)
    faults = name if tracer.injects_faults else tracers.names(injects_faults=True)[0]
    runs = [(k, {**o, "tracer": name if o.get("io_uring", True) else faults}) for k, o in COMPARED]
    if not tracer.sees_io_uring:
        seer = tracers.names(sees_io_uring=True)[0]
        runs += [("sanic", {"loop": "uvloop", "tracer": seer}), ("uring", {"tracer": seer})]
    return runs


def cmd_compare(args) -> int:
    runs = {}
    compared = _compared(args.tracer)
    for i, (kind, opts) in enumerate(compared, 1):
        target = _target(kind, args.port, **opts)
        out = args.traces / target.name
        if why := tracers.get(target.tracer).unavailable():
            eprint(f"[epoll-lab] {i}/{len(compared)} {target.name}: skipped: {why}")
            continue
        if not args.fresh and _fresh(out):
            eprint(f"[epoll-lab] {i}/{len(compared)} {target.name}: reusing {out} (newer than the sources)")
        else:
            eprint(f"[epoll-lab] {i}/{len(compared)} {target.name}: tracing ...")
            _check_built(target)
            trace(target, out)
        runs[target.name] = out
    result = compare.build(runs)
    md, js = compare.write(result, args.traces)
    print(md.read_text(), end="")
    eprint(f"[epoll-lab] wrote {md} and {js}")
    return 0


def cmd_live(args) -> int:
    target = _target(args.target, args.port, loop=args.loop, pool=args.pool, recipe=args.recipe,
                     tracer=args.tracer)
    target.name += "-live"
    _check_built(target)
    wanted = [w.strip() for w in args.filter.split(",") if w.strip()]
    return live.main_live(target, args.out or Path("traces") / target.name, wanted, args.load_seconds,
                          color=args.color)


def cmd_timeline(args) -> int:
    events = args.events
    if not events.exists():
        raise TraceError(f"no such file: {events}", EXIT_SETUP)
    if events.is_dir():
        raise TraceError(f"{events} is a folder: give its events.jsonl", 2)
    out = args.output or events.with_name("timeline.html")
    if not events.is_file():  # /dev/null, a FIFO: the page goes to the working folder
        out = args.output or Path("timeline.html")
    try:
        shown = timeline.write(timeline.from_jsonl(events), out, args.title or f"epoll-lab timeline: {events}",
                               empty_ok=False)
    except timeline.NotEvents as e:
        if str(e).startswith("it holds no call"):
            raise TraceError(f"{events} is empty: {e} (timeline reads the events.jsonl of a run, or of "
                             "annotate --format jsonl)", 2) from None
        raise TraceError(f"{e}: timeline reads the events.jsonl of a run (or of annotate --format jsonl)",
                         2) from None
    except OSError as e:
        raise output_error(out, e, running=False) from None
    if shown["hidden"]:
        eprint(f"[epoll-lab] {shown['threads']:,} threads: drew {shown['lanes']} lanes (every loop and pool "
               f"thread, then the busiest), left out {shown['hidden']:,}")
    eprint(f"[epoll-lab] wrote {out} ({out.stat().st_size / 1e6:.1f} MB)")
    return 0


WEB_PORT = 8765


def cmd_web(parser: argparse.ArgumentParser, args) -> int:
    from .modes import web
    if not 0 < args.port < 65536:
        parser.error(f"--port {args.port}: a port is 1 to 65535")
    if args.cmd and not args.command_port:
        parser.error("a command needs --command-port: the port it serves HTTP on")
    if args.command_port is not None and not (0 < args.command_port < 65536) :
        parser.error(f"--command-port {args.command_port}: a port is 1 to 65535")
    return web.main_web(args.port, args.out, args.cmd or None, args.command_port, args.start)


def cmd_screenshot(args) -> int:
    if not args.page.is_file():
        raise TraceError(f"no such file: {args.page}", EXIT_SETUP)
    width, _, height = (args.size or f"1600x{browser.page_height(args.page)}").partition("x")
    try:
        console = browser.screenshot(args.page, args.output, int(width), int(height), args.zoom)
    except browser.BrowserError as e:
        raise TraceError(str(e), EXIT_SETUP) from None
    for line in console:
        eprint(f"[chromium console] {line}")
    eprint(f"[epoll-lab] wrote {args.output}")
    return 1 if console else 0


def cmd_annotate(args) -> int:
    if args.format == "all":
        return _annotate_all(args)
    out = _annotate_output(args.output)
    once = inputs.stream(args.log)
    # A big log takes a while: say how far on the terminal, while the output goes to
    # the -o file (on standard output it may be a pager's screen). One pass says nothing.
    progress = Progress(sys.stderr, once is None and out is not sys.stdout)
    try:
        if once is not None:
            # One pass (standard input, a FIFO): roles are learned as the stream goes.
            ann = Annotator()
            source = inputs.as_text(sys.stdin.buffer) if once == "-" else inputs.open_text(once)
            items, stacks = with_stacks_known(enumerate(source, 1))
            records = ann.stream(items, stacks)
        else:
            opened = progress.passes(inputs.opener(args.log, warn=lambda m: eprint(f"epoll-lab: {m}")))
            records, ann = annotate_items(opened, snapshot=_snapshot(args), copies=True)
    except inputs.InputError as e:
        raise TraceError(str(e), EXIT_SETUP) from None
    try:
        if args.format == "jsonl":
            fan_out(records, [Jsonl(out)])
        elif args.format == "trace-event":
            (counts,) = fan_out(records, [trace_event.Exporter(out, f"epoll-lab: {' '.join(args.log)}")])
            eprint(f"[epoll-lab] trace events: {counts.get('X:epoll-wait', 0)} epoll waits, "
                   f"{sum(v for k, v in counts.items() if k.startswith('X:'))} slices in all, "
                   f"{counts['flows']} wakeup flows; open it at https://ui.perfetto.dev")
        elif out is sys.stdout:
            fan_out(records, [AnnotatedLog(out, full=not args.fold, color=use_color(out, args.color))])
        else:
            out.close()
            heading = f"# epoll-lab annotated trace of {' '.join(args.log)}\n"
            fan_out(records, [AnnotatedLog(Path(args.output), heading, full=not args.fold,
                                           color=args.color == "always")])
        if out is not sys.stdout:
            out.close()  # here, where a full disk is a one-line error
    except BrokenPipeError:
        raise
    except inputs.InputError as e:  # the input, opened again for a later pass
        raise TraceError(str(e), EXIT_SETUP) from None
    except OSError as e:
        raise output_error(Path(args.output), e) from None
    finally:
        progress.clear()
        if out is not sys.stdout and not out.closed:
            with contextlib.suppress(OSError):  # an error is on its way already
                out.close()
    return _said(args, ann)


def _said(args, ann) -> int:
    """The summary if asked, and what the input was: exit 0, or 4 for no strace output."""
    summary = ann.summary
    if args.summary:
        eprint(summary_text(summary.as_dict()))
    name = "standard input" if args.log == ["-"] else " ".join(args.log)
    if summary.lines == 0:
        raise TraceError(f"{name} is empty: there is no strace output to annotate", EXIT_NOT_STRACE)
    if summary.understood == 0:
        raise TraceError(f"{name}: none of its {summary.unparsed} lines is strace output (no call, "
                         "signal, exit or strace message); make a log with: strace -f -ttt -T -yy "
                         "-o app.strace -- your-server", EXIT_NOT_STRACE)
    if summary.unparsed:
        eprint(f"epoll-lab: {summary.unparsed} of the {summary.lines} lines of {name} are not strace "
               f"output (kept verbatim, first at line {summary.unparsed_lines[0]})")
    return 0


def _annotate_all(args) -> int:
    """annotate --format all -o DIR: the files a trace run writes, from a log."""
    if args.output == "-":
        raise TraceError("--format all writes a folder of files: name it with -o DIR", 2)
    folder = Path(args.output)
    ready_folder(folder)
    if inputs.stream(args.log) is not None:
        raise TraceError("--format all reads its log twice (roles, then the views): give a file, not "
                         "standard input or a FIFO", 2)
    progress = Progress(sys.stderr)
    try:
        opened = progress.passes(inputs.opener(args.log, warn=lambda m: eprint(f"epoll-lab: {m}")))
        records, ann = annotate_items(opened, snapshot=_snapshot(args), copies=True)
        name = " ".join(args.log)
        heading = (f"# epoll-lab annotated trace of {name}; raw lines, each followed by '->' [category] note.\n")
        summary, _ = write_views(folder, records, lambda: ann.summary.as_dict(), heading, name, full=not args.fold)
    except inputs.InputError as e:
        raise TraceError(str(e), EXIT_SETUP) from None
    except OSError as e:
        raise output_error(Path(e.filename) if e.filename else folder, e) from None
    finally:
        progress.clear()
    return _said(args, ann)


def _snapshot(args) -> dict | None:
    """--snapshot, or the snapshot.json a `trace --pid` run saved beside its raw log."""
    path = args.snapshot or (snapshot.beside(args.log[0]) if len(args.log) == 1 and args.log[0] != "-" else None)
    if path is None:
        return None
    try:
        got = snapshot.load(path)
    except (OSError, ValueError) as e:
        raise TraceError(f"--snapshot {path}: cannot read it ({e})", EXIT_SETUP) from None
    if not args.snapshot:
        eprint(f"epoll-lab: using {path}, the fds and threads `trace --pid` saw at attach")
    return got


def _annotate_output(output: str):
    """Standard output, or the -o file opened for writing: a one-line error if it cannot be."""
    if output == "-":
        if hasattr(sys.stdout, "reconfigure"):
            sys.stdout.reconfigure(encoding="utf-8", errors="replace")
        return sys.stdout
    path = Path(output)
    if path.is_dir():
        raise TraceError(f"-o {output} is a directory: give a file name (e.g. -o {path / 'annotated.log'})",
                         EXIT_OUTPUT)
    if not path.parent.is_dir():
        raise TraceError(f"-o {output}: the folder {path.parent} does not exist: create it "
                         f"(mkdir -p {path.parent}) or write elsewhere", EXIT_OUTPUT)
    try:
        return open(path, "w", encoding="utf-8")
    except OSError as e:
        raise TraceError(f"-o {output}: cannot write it ({e.strerror})", EXIT_OUTPUT) from None
