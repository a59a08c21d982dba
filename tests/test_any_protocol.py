"""Your own server, any protocol: `--ready tcp` waits for a connection, not an HTTP
answer; `--client CMD` runs any client as a step with its own window; `--request`
carries a method, headers and a body; the HTTP probe reads its answer to the end."""

from __future__ import annotations

import json
import sys

import pytest

from tests.helpers import PROGRAMS, Trace, free_port, run_cli, show

PY = sys.executable
SAY = f"{PY} {PROGRAMS / 'tcp_say.py'} $PORT"


def one_error_line(p, code: int) -> str:
    errors = [line for line in p.stderr.splitlines() if line.startswith("epoll-lab: error:")]
    assert p.returncode == code and len(errors) == 1, p.stderr
    assert "Traceback" not in p.stderr, p.stderr
    return errors[0]


@pytest.fixture(scope="module")
def echo_run(tools_present, tmp_path_factory):
    out, port = tmp_path_factory.mktemp("echo"), free_port()
    p = run_cli("trace", "--out", str(out), "--port", str(port), "--ready", "tcp",
                "--client", f"{SAY} hello", "--client", f"{SAY} again",
                "--", PY, str(PROGRAMS / "tcp_echo.py"), str(port))
    assert p.returncode == 0, p.stderr
    return p, Trace.load(out)


def test_a_raw_tcp_server_is_ready_once_it_accepts_and_each_client_is_a_step(echo_run):
    p, trace = echo_run
    labels = [f"request 1: $ {SAY} hello", f"request 2: $ {SAY} again"]
    assert f"1/2 $ {SAY} hello -> exit 0" in p.stderr, p.stderr
    for label, word in zip(labels, ("hello", "again")):
        mine = [r for r in trace.records if r.get("request") == label]
        got = [r for r in mine if r["thread"] == "loop" and r["syscall"] in ("recvfrom", "read")
               and f'"{word}\\n"' in r["args"]]
        sent = [r for r in mine if r["thread"] == "loop" and r["syscall"] in ("sendto", "write")
                and f'"{word}\\n"' in r["args"]]
        assert got and sent, f"{label}: the loop reads and echoes {word!r} in the step's window\n{show(mine)}"
    text = (trace.out / "annotated.log").read_text()
    assert all(f"==== {label}" in text for label in labels)
    assert "accepted a TCP connection" in text.split("==== request 1", 1)[0]
    spans = [e["name"] for e in json.loads((trace.out / "trace.json").read_text())["traceEvents"]
             if e.get("cat") == "request"]
    assert labels[0] in spans and labels[1] in spans, spans


def test_the_echo_loop_is_a_loop(echo_run):
    _, trace = echo_run
    loops = {r["tid"] for r in trace.records if r["thread"] == "loop"}
    assert len(loops) == 1 and any(r["syscall"] == "epoll_wait" and r["tid"] in loops for r in trace.records)


def test_a_server_that_does_not_speak_http_is_named_with_the_fix(tools_present, tmp_path):
    port = free_port()
    p = run_cli("trace", "--out", str(tmp_path / "o"), "--port", str(port), "--wait", "2",
                "--", PY, str(PROGRAMS / "tcp_echo.py"), str(port))
    assert "--ready tcp" in one_error_line(p, 4)


def test_a_client_step_that_fails_is_one_line_and_exit_5(tools_present, tmp_path):
    port = free_port()
    p = run_cli("trace", "--out", str(tmp_path / "o"), "--port", str(port), "--ready", "tcp",
                "--client", f"{PY} -c 'import sys; print(\"no answer here\", file=sys.stderr); sys.exit(3)'",
                "--", PY, str(PROGRAMS / "tcp_echo.py"), str(port))
    line = one_error_line(p, 5)
    assert "failed (exit 3): no answer here" in line, line
    assert (tmp_path / "o" / "scenario.jsonl").exists()


def test_a_request_carries_its_method_headers_and_body(tools_present, tmp_path):
    port, out = free_port(), tmp_path / "o"
    p = run_cli("trace", "--out", str(out), "--port", str(port),
                "--request", "POST /echo -H 'X-Lab: yes' -d 'a body'", "--request", "/",
                "--", PY, str(PROGRAMS / "own_server.py"), str(port))
    assert p.returncode == 0, p.stderr
    trace = Trace.load(out)
    posted = next(r for r in trace.requests if r["path"] == "/echo")
    assert posted["method"] == "POST" and posted["status"] == 200 and posted["body"] == "POST a body", posted
    mine = [r for r in trace.records if r.get("request") == "request 1: POST /echo"]
    read = "".join(r["args"] for r in mine if r["thread"] == "loop" and r["syscall"] in ("recvfrom", "read"))
    assert "POST /echo HTTP/1.1" in read and "X-Lab: yes" in read, show(mine)
    # The body comes after -s 128's cut in the read; the server's answer echoes it.
    sent = "".join(r["args"] for r in mine if r["thread"] == "loop" and r["syscall"] in ("sendto", "write"))
    assert "POST a body" in sent, show(mine)
    assert "==== request 2: GET / " in (out / "annotated.log").read_text()


def test_the_readiness_probe_reads_its_answer_to_the_end(tools_present, tmp_path):
    # Cut short after one byte, the probe reset the socket while http.server still wrote to it:
    # a ConnectionResetError traceback in the server's own output.
    port = free_port()
    p = run_cli("trace", "--out", str(tmp_path / "o"), "--port", str(port), "--",
                PY, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(tmp_path))
    assert p.returncode == 0, p.stderr
    log = (tmp_path / "o" / "server.log").read_text()
    assert "Traceback" not in log and "ConnectionResetError" not in log, log


@pytest.mark.parametrize("args,words", [
    (["--request", "POST"], "give a path"),
    (["--request", "/x -Z y"], "'-Z' is not understood"),
    (["--request", "/x -H nocolon"], "a header is 'Name: value'"),
    (["--client", " "], "--client needs a command"),
    (["--load", "0:3"], "0 connections"),
    (["--load", "64:999"], "999 s"),
    (["--load", "lots"], "is not CONNS:SECONDS"),
    (["--syscalls", ""], "is empty"),
    (["--syscalls", "+"], "name the syscalls to add"),
    (["--syscalls", "+no_such_call_here"], "strace refuses the set"),
    (["--ready", "tcp", "--load", "8:1"], "--load sends HTTP requests"),
])
def test_a_step_load_or_syscall_set_it_cannot_use_is_one_line_and_exit_2(tools_present, tmp_path, args, words):
    p = run_cli("trace", "--out", str(tmp_path / "o"), "--port", str(free_port()), *args, "--", "true")
    assert p.returncode == 2 and words in p.stderr, p.stderr
    assert "Traceback" not in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr


def test_steps_without_a_port_are_a_usage_error(tmp_path):
    p = run_cli("trace", "--out", str(tmp_path / "o"), "--client", "true", "--load", "--", "true")
    assert p.returncode == 2 and "--client and --load need --port" in p.stderr, p.stderr
