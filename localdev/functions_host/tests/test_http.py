"""HTTP triggers through the local Functions host (a child process)."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path

import aiohttp
import pytest

from localdev.functions_host import HostProcess, spawn_host, start_host
from localdev.functions_host.tests.helpers import APPS, LOG_DIR, copy_app
from localdev.processes import wait_until

PREFIX = "custom/v1"  # http_app's host.json routePrefix


async def fetch(method: str, url: str, **kwargs: object) -> tuple[int, dict[str, str], bytes]:
    async with aiohttp.ClientSession() as session, session.request(method, url, **kwargs) as response:  # type: ignore[arg-type]
        return response.status, dict(response.headers), await response.read()


async def test_anonymous_route_with_params_under_custom_prefix(http_host: HostProcess) -> None:
    status, headers, body = await fetch("GET", f"{http_host.base_url}/{PREFIX}/hello/ada?greeting=Hi")
    assert (status, body) == (200, b"Hi ada")
    assert headers["Content-Type"] == "text/plain; charset=utf-8"


async def test_default_api_prefix_is_not_served_when_a_custom_one_is_set(http_host: HostProcess) -> None:
    status, _, _ = await fetch("GET", f"{http_host.base_url}/api/hello/ada")
    assert status == 404


async def test_unknown_route_is_404(http_host: HostProcess) -> None:
    status, _, body = await fetch("GET", f"{http_host.base_url}/{PREFIX}/nothing-here")
    assert (status, body) == (404, b"")


async def test_wrong_method_is_404_as_in_the_real_host(http_host: HostProcess) -> None:
    status, _, _ = await fetch("POST", f"{http_host.base_url}/{PREFIX}/hello/ada")
    assert status == 404


async def test_route_constraint_rejects_non_matching_values(http_host: HostProcess) -> None:
    key = {"code": http_host.function_key}
    status, _, _ = await fetch("GET", f"{http_host.base_url}/{PREFIX}/items/abc", params=key)
    assert status == 404


async def test_literal_route_wins_over_parameter(http_host: HostProcess) -> None:
    status, _, body = await fetch("GET", f"{http_host.base_url}/{PREFIX}/items/new")
    assert (status, body) == (200, b"new item form")


async def test_optional_route_parameter(http_host: HostProcess) -> None:
    assert (await fetch("GET", f"{http_host.base_url}/{PREFIX}/opt"))[2] == b"none"
    assert (await fetch("GET", f"{http_host.base_url}/{PREFIX}/opt/seven"))[2] == b"seven"


@pytest.mark.parametrize("credentials", [{}, {"params": {"code": "wrong"}}, {"headers": {"x-functions-key": "nope"}}])
async def test_function_level_route_refuses_missing_or_wrong_key(http_host: HostProcess, credentials: dict) -> None:
    status, _, _ = await fetch("GET", f"{http_host.base_url}/{PREFIX}/items/7", **credentials)
    assert status == 401


async def test_function_level_route_with_key_in_query(http_host: HostProcess) -> None:
    status, headers, body = await fetch(
        "POST",
        f"{http_host.base_url}/{PREFIX}/items/42?code={http_host.function_key}&tag=a&tag=b",
        data=b"payload",
        headers=[("X-Test", "yes"), ("X-Test", "again")],  # repeated: the host joins them with ","
    )
    assert status == 201
    assert headers["Content-Type"] == "application/json"
    assert headers["X-Handled-By"] == "items"
    payload = json.loads(body)
    assert payload["method"] == "POST"
    assert payload["route"] == {"id": "42"}
    assert payload["params"]["tag"] == "a,b"
    assert payload["header"] == "yes,again"
    assert payload["body"] == "payload"
    assert payload["url"].startswith(f"{http_host.base_url}/{PREFIX}/items/42?")


async def test_query_names_without_a_value_do_not_reach_the_function(http_host: HostProcess) -> None:
    # The host leaves empty query values out for the Python worker: `?flag` is not in req.params.
    url = f"{http_host.base_url}/{PREFIX}/items/5?code={http_host.function_key}&flag&empty=&kept=1&kept=2"
    status, _, body = await fetch("GET", url)
    assert status == 200
    assert json.loads(body)["params"] == {"code": http_host.function_key, "kept": "1,2"}


async def test_no_cors_headers_unless_local_settings_ask_for_them(http_host: HostProcess) -> None:
    headers = {"Origin": "http://page.test", "Access-Control-Request-Method": "GET"}
    status, answer, _ = await fetch("OPTIONS", f"{http_host.base_url}/{PREFIX}/hello/x", headers=headers)
    assert status == 404 and "Access-Control-Allow-Origin" not in answer


async def test_cors_from_local_settings_as_func_start_applies_it(tmp_path: Path) -> None:
    app_dir = copy_app("http_app", tmp_path)
    host_section = {"CORS": "http://page.test,http://other.test", "CORSCredentials": True}
    (app_dir / "local.settings.json").write_text(json.dumps({"IsEncrypted": False, "Host": host_section}))
    host = await start_host(app_dir, settings={"RECORD_DIR": str(tmp_path)})
    base = f"{host.base_url}/{PREFIX}/hello/x"
    try:
        preflight = {
            "Origin": "http://page.test",
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "x-custom",
        }
        status, answer, _ = await fetch("OPTIONS", base, headers=preflight)
        assert status == 204  # the CORS middleware answers a preflight itself
        assert answer["Access-Control-Allow-Origin"] == "http://page.test"
        assert answer["Access-Control-Allow-Methods"] == "GET"
        assert answer["Access-Control-Allow-Headers"] == "x-custom"
        assert answer["Access-Control-Allow-Credentials"] == "true"

        status, answer, body = await fetch("GET", base, headers={"Origin": "http://other.test"})
        assert (status, body) == (200, b"Hello x")
        assert answer["Access-Control-Allow-Origin"] == "http://other.test"

        status, answer, _ = await fetch("GET", base, headers={"Origin": "http://evil.test"})
        assert status == 200 and "Access-Control-Allow-Origin" not in answer
    finally:
        await host.stop()


async def test_cors_on_the_command_line_replaces_the_settings_files_as_func_start_does(tmp_path: Path) -> None:
    app_dir = copy_app("http_app", tmp_path)
    host_section = {"CORS": "http://from-file.test"}
    (app_dir / "local.settings.json").write_text(json.dumps({"IsEncrypted": False, "Host": host_section}))
    host = await start_host(app_dir, settings={"RECORD_DIR": str(tmp_path)}, cors="http://page.test,http://b.test")
    base = f"{host.base_url}/{PREFIX}/hello/x"
    try:
        for origin in ("http://page.test", "http://b.test"):
            status, answer, _ = await fetch("GET", base, headers={"Origin": origin})
            assert status == 200 and answer["Access-Control-Allow-Origin"] == origin
        status, answer, _ = await fetch("GET", base, headers={"Origin": "http://from-file.test"})
        assert status == 200 and "Access-Control-Allow-Origin" not in answer
    finally:
        await host.stop()


async def test_function_and_admin_levels_accept_key_header(http_host: HostProcess) -> None:
    headers = {"x-functions-key": http_host.function_key}
    assert (await fetch("GET", f"{http_host.base_url}/{PREFIX}/items/1", headers=headers))[0] == 200
    assert (await fetch("GET", f"{http_host.base_url}/{PREFIX}/admin-only", headers=headers))[0] == 200
    assert (await fetch("GET", f"{http_host.base_url}/{PREFIX}/admin-only"))[0] == 401


async def test_exception_gives_500_without_internals(http_host: HostProcess) -> None:
    status, _, body = await fetch("GET", f"{http_host.base_url}/{PREFIX}/boom")
    assert status == 500
    assert b"secret-internal-detail" not in body
    output = http_host.wait_for_output("secret-internal-detail")
    assert "Traceback" in output
    assert "Executed 'Functions.boom' (Failed" in output


async def test_unsupported_return_value_is_500(http_host: HostProcess) -> None:
    assert (await fetch("GET", f"{http_host.base_url}/{PREFIX}/bad-return"))[0] == 500


async def test_mimetype_charset_and_status_are_sent(http_host: HostProcess) -> None:
    status, headers, body = await fetch("GET", f"{http_host.base_url}/{PREFIX}/html")
    assert status == 202
    assert headers["Content-Type"] == "text/html; charset=latin-1"
    assert body == "<p>caf\u00e9</p>".encode("latin-1")


async def test_context_parameter(http_host: HostProcess) -> None:
    status, _, body = await fetch("GET", f"{http_host.base_url}/{PREFIX}/context")
    payload = json.loads(body)
    assert status == 200
    assert payload["name"] == "context_info"
    assert f"Id={payload['id']}" in http_host.wait_for_output(payload["id"])


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_requests_are_served_concurrently(http_host: HostProcess, kind: str) -> None:
    # The function waits until a second request is inside it too: serialised serving would fail.
    url = f"{http_host.base_url}/{PREFIX}/rendezvous/{kind}"
    results = await asyncio.gather(fetch("GET", url), fetch("GET", url))
    assert [(status, body) for status, _, body in results] == [(200, b"met"), (200, b"met")]


async def test_100_mb_body_is_accepted(http_host: HostProcess) -> None:
    body = b"x" * (100 * 1024 * 1024)
    status, _, answer = await fetch("POST", f"{http_host.base_url}/{PREFIX}/size", data=body)
    assert (status, answer) == (200, str(len(body)).encode())


async def test_invocations_are_logged(http_host: HostProcess) -> None:
    await fetch("GET", f"{http_host.base_url}/{PREFIX}/hello/log")
    output = http_host.wait_for_output("Executed 'Functions.hello' (Succeeded")
    assert "Executing 'Functions.hello' (Reason=" in output
    assert f"hello: [GET] {http_host.base_url}/{PREFIX}/hello/{{name}}" in output


async def test_sigterm_lets_in_flight_request_finish_and_exits_0(tmp_path: Path) -> None:
    host = spawn_host(
        APPS / "http_app", settings={"RECORD_DIR": str(tmp_path)}, log_path=LOG_DIR / "functions-host-shutdown.log"
    )
    try:
        request = asyncio.create_task(fetch("GET", f"{host.base_url}/{PREFIX}/slow"))
        await asyncio.to_thread(
            wait_until, lambda: (tmp_path / "slow-started").exists(), message="the slow function to start"
        )
        host.signal(signal.SIGTERM)
        status, _, body = await request
        assert (status, body) == (200, b"finished")
        assert await asyncio.to_thread(host.wait, 15) == 0
        assert "Host stopped" in host.output
    finally:
        host.stop()


def test_app_the_worker_would_refuse_does_not_start() -> None:
    with pytest.raises(RuntimeError, match=r"declared in function\.json but not in Python"):
        spawn_host(APPS / "broken_app", log_path=LOG_DIR / "functions-host-broken.log")


@pytest.mark.parametrize(("route_prefix", "path"), [(None, "/api/hello/x"), ("", "/hello/x")])
async def test_in_process_host_default_and_empty_prefix(tmp_path: Path, route_prefix: str | None, path: str) -> None:
    host_json: dict = {"version": "2.0"}
    if route_prefix is not None:
        host_json["extensions"] = {"http": {"routePrefix": route_prefix}}
    app_dir = copy_app("http_app", tmp_path, host_json)
    host = await start_host(app_dir, port=0, settings={"RECORD_DIR": str(tmp_path)})
    try:
        assert (await fetch("GET", host.base_url + path))[:3:2] == (200, b"Hello x")
        assert (await fetch("GET", host.base_url + "/custom/v1/hello/x"))[0] == 404
    finally:
        await host.stop()
