"""Each route names its mechanism; bad input gets a 400 with a reason, never a 500."""

from __future__ import annotations

import json

import pytest

from tests.helpers import curl


def get_json(port, path):
    status, body = curl(port, path)
    return status, json.loads(body)


@pytest.mark.parametrize("path, mechanism", [
    ("/", "socket"),
    ("/json", "socket"),
    ("/file", "thread-pool"),
    ("/dns?host=localhost", "thread-pool"),
    ("/sleep?ms=10", "timer"),
    ("/subprocess", "pipe"),
    ("/block?ms=10", "blocking"),
    ("/cpu?ms=10", "cpu"),
    ("/gather?ms=10,20", "timers"),
    ("/timeout?ms=10&limit=100", "timeout"),
    ("/taskgroup?ms=10,20", "taskgroup"),
    ("/cancel?every=10&after=25", "cancel"),
])
def test_each_route_answers_json_naming_its_mechanism(sanic_server, path, mechanism):
    status, body = get_json(sanic_server, path)
    assert status == 200, body
    assert body["mechanism"] == mechanism, body


def test_file_route_reads_the_lab_data_file(sanic_server):
    _, body = get_json(sanic_server, "/file")
    assert body["file"] == "lab.txt" and body["bytes"] > 100, body


def test_dns_route_resolves_localhost_to_loopback(sanic_server):
    _, body = get_json(sanic_server, "/dns?host=localhost")
    assert "127.0.0.1" in body["addresses"] or "::1" in body["addresses"], body


def test_sleep_route_really_sleeps(sanic_server):
    _, body = get_json(sanic_server, "/sleep?ms=120")
    assert body["ms"] == 120 and body["elapsed_ms"] >= 115, body


def test_subprocess_route_reads_the_child_output(sanic_server):
    _, body = get_json(sanic_server, "/subprocess")
    assert body["output"] == "hello from a child process" and body["child_exit"] == 0, body


@pytest.mark.parametrize("path, reason", [
    ("/sleep?ms=abc", "whole number"),
    ("/sleep?ms=-5", "between 0 and 10000"),
    ("/sleep?ms=10001", "between 0 and 10000"),
    ("/sleep?ms=1e3", "whole number"),
    ("/file?name=../../etc/passwd", "outside the lab's data folder"),
    ("/file?name=..%2F..%2Fetc%2Fpasswd", "outside the lab's data folder"),
    ("/file?name=/etc/passwd", "outside the lab's data folder"),
    ("/file?name=missing.txt", "no file"),
    ("/file?name=%00x", "inside the lab's data folder"),
    ("/file?name=.", "outside the lab's data folder"),
    ("/dns", "host is required"),
    ("/dns?host=" + "a" * 300, "not a valid host name"),
    ("/block?ms=5001", "at most 5000"),
    ("/block?ms=x", "whole number"),
    ("/cpu?ms=100&yield=2", "yield must be 0 or 1"),
    ("/cpu?ms=6000", "at most 5000"),
    ("/gather", "ms is required"),
    ("/gather?ms=1,2,3,4,5,6,7,8,9,10,11", "at most 10 timers"),
    ("/gather?ms=100,,200", "whole number"),
    ("/timeout?ms=100&limit=-1", "between 0 and 10000"),
    ("/taskgroup", "ms is required, e.g. /taskgroup"),
    ("/taskgroup?ms=", "ms is blank"),
    ("/taskgroup?ms=100,x", "whole number"),
    ("/taskgroup?ms=1,2,3,4,5,6,7,8,9,10,11", "at most 10 timers"),
    ("/taskgroup?ms=100&fail=", "fail is blank"),
    ("/taskgroup?ms=100&fail=yes", "fail must be 0 or 1"),
    ("/cancel?every=", "every is blank"),
    ("/cancel?after=", "after is blank"),
    ("/cancel?every=5", "every must be at least 10"),
    ("/cancel?every=abc", "every must be a whole number"),
    ("/cancel?after=10001", "after must be between 0 and 10000"),
])
def test_bad_input_gets_400_with_a_reason(sanic_server, path, reason):
    status, raw = curl(sanic_server, path)
    assert status == 400, f"{path}: {status} {raw}"
    body = json.loads(raw)
    assert reason in body["message"], body


def test_gather_waits_for_the_longest_timer_not_the_sum(sanic_server):
    _, body = get_json(sanic_server, "/gather?ms=100,200,300")
    assert body["sum_ms"] == 600 and 295 <= body["elapsed_ms"] < 450, body


def test_a_failing_task_in_a_taskgroup_cancels_its_siblings_and_answers_200(sanic_server):
    status, body = get_json(sanic_server, "/taskgroup?ms=300,100,200&fail=1")
    assert status == 200 and body["failed"] == [1] and body["cancelled"] == [0, 2], body
    assert body["finished"] == [] and body["elapsed_ms"] < 250, body


def test_a_taskgroup_without_a_failure_waits_for_every_task(sanic_server):
    _, body = get_json(sanic_server, "/taskgroup?ms=50,100")
    assert body["finished"] == [0, 1] and body["failed"] == body["cancelled"] == [], body
    assert body["elapsed_ms"] >= 95, body


def test_cancel_stops_the_ticker_between_ticks(sanic_server):
    _, body = get_json(sanic_server, "/cancel?every=50&after=175")
    # 50, 100, 150 ms; one more only if the loop ran the cancel late.
    assert body["cancelled"] and 3 <= body["ticks"] <= body["elapsed_ms"] // 50, body
    assert body["elapsed_ms"] >= 170, body


def test_cpu_with_yield_gives_way_to_the_loop(sanic_server):
    _, busy = get_json(sanic_server, "/cpu?ms=60")
    _, polite = get_json(sanic_server, "/cpu?ms=60&yield=1")
    # About 12 yields on a quiet machine; a loaded one preempts the spin between checks.
    assert busy["yields"] == 0 and polite["yields"] >= 2, (busy, polite)


def test_work_that_overruns_its_timeout_gets_504_with_a_reason(sanic_server):
    status, raw = curl(sanic_server, "/timeout?ms=500&limit=50")
    body = json.loads(raw)
    assert status == 504 and "cancelled it after 50 ms" in body["reason"], body
    assert body["elapsed_ms"] < 400, body


def test_unknown_path_gets_404_json(sanic_server):
    status, raw = curl(sanic_server, "/no/such/route")
    assert status == 404
    assert json.loads(raw)["status"] == 404


def test_wrong_method_gets_405(sanic_server):
    status, _ = curl(sanic_server, "/file", "-X", "POST")
    assert status == 405
