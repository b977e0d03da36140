"""The landing as users run it: `cxone-pipeline serve` in its own process."""

from __future__ import annotations

import signal
import subprocess
import threading
from pathlib import Path

import httpx

from cxone_pipeline.lake.store import LocalStore, S3Store, s3_client
from cxone_pipeline_tests.landing_fixtures import TOKEN, staged_envelopes
from cxone_pipeline_tests.servers import TcpProxy, cli_process, free_port, wait_for_http

AUTH = {"Authorization": f"Bearer {TOKEN}"}


def serve(env: dict[str, str], *args: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    process = cli_process(
        ["serve", "--port", str(port), *args],
        env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    wait_for_http(url + "/healthz", process=process)
    return process, url


def run_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    process = cli_process(
        list(args), env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    out, err = process.communicate(timeout=60)
    return subprocess.CompletedProcess(args, process.returncode, out, err)


def test_refuses_to_start_unauthenticated(tmp_path: Path) -> None:
    env = {
        "CXONE_PIPELINE_INGEST_TOKEN": "",
        "CXONE_PIPELINE_WEBHOOK_SECRETS": "",
        "CXONE_PIPELINE_LAKE_URL": str(tmp_path),
    }
    plain = run_cli(env, "serve", "--port", str(free_port()))
    public_dev = run_cli(env, "serve", "--dev", "--host", "0.0.0.0")
    assert plain.returncode == 2
    assert plain.stderr.strip() == (
        "cxone-pipeline serve: refusing to run unauthenticated: set CXONE_PIPELINE_INGEST_TOKEN "
        "(or CXONE_PIPELINE_WEBHOOK_SECRETS), or use --dev on 127.0.0.1"
    )
    assert public_dev.returncode == 2
    assert "--dev only binds to a loopback address" in public_dev.stderr


def test_dev_mode_generates_and_prints_a_working_token(tmp_path: Path) -> None:
    env = {"CXONE_PIPELINE_INGEST_TOKEN": "", "CXONE_PIPELINE_LAKE_URL": str(tmp_path)}
    process, url = serve(env, "--dev")
    try:
        first_line = process.stdout.readline()
        assert first_line.startswith("dev mode: ingest token ")
        token = first_line.split()[-1]
        assert len(token) >= 32
        ok = httpx.post(
            url + "/ingest/call_event", json={"a": 1}, headers={"Authorization": f"Bearer {token}"}
        )
        denied = httpx.post(
            url + "/ingest/call_event", json={"a": 1}, headers={"Authorization": "Bearer x"}
        )
    finally:
        process.terminate()
        process.wait(30)
    assert (ok.status_code, denied.status_code) == (202, 401)


def test_sigterm_flushes_pending_requests_and_answers_them(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    env = {"CXONE_PIPELINE_INGEST_TOKEN": TOKEN, "CXONE_PIPELINE_LAKE_URL": str(tmp_path)}
    process, url = serve(env)
    acknowledged: list[str] = []
    failures: list[str] = []
    started = threading.Barrier(9)

    def sender(n: int) -> None:
        with httpx.Client(timeout=30) as http:
            started.wait()
            for i in range(10_000):
                try:
                    r = http.post(
                        url + "/ingest/call_event", json={"eventId": f"{n}-{i}"}, headers=AUTH
                    )
                except httpx.TransportError:
                    return  # the server stopped accepting: expected after SIGTERM
                if r.status_code != 202:
                    failures.append(r.text)
                    return
                acknowledged.extend(r.json()["event_ids"])

    threads = [threading.Thread(target=sender, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    started.wait()
    while len(acknowledged) < 200:
        threading.Event().wait(0.01)
    process.send_signal(signal.SIGTERM)
    for t in threads:
        t.join(60)
    output, _ = process.communicate(timeout=60)
    # uvicorn re-raises SIGTERM once the graceful shutdown is complete
    assert process.returncode == -signal.SIGTERM, output
    assert "Application shutdown complete" in output
    staged = [e["event_id"] for e in staged_envelopes(store, "call_event")]
    assert sorted(staged) == sorted(acknowledged)  # every 202 is staged, nothing else is
    assert failures == [] or all("shutting_down" in f for f in failures)


def test_s3_outage_answers_503_then_recovers_by_itself(s3_endpoint: str, s3_bucket: str) -> None:
    port = int(s3_endpoint.rsplit(":", 1)[1])
    with TcpProxy(port) as proxy:
        env = {
            "CXONE_PIPELINE_INGEST_TOKEN": TOKEN,
            "CXONE_PIPELINE_LAKE_URL": f"s3://{s3_bucket}/lake",
            "CXONE_PIPELINE_S3_ENDPOINT_URL": f"http://127.0.0.1:{proxy.port}",
            "CXONE_PIPELINE_STORE_DEADLINE_SECONDS": "2",
        }
        process, url = serve(env)
        try:
            before = httpx.post(
                url + "/ingest/call_event", json={"eventId": "before"}, headers=AUTH
            )
            proxy.pause()
            during = httpx.post(
                url + "/ingest/call_event", json={"eventId": "during"}, headers=AUTH, timeout=30
            )
            ready_during = httpx.get(url + "/readyz", timeout=30)
            proxy.resume()
            after = httpx.post(
                url + "/ingest/call_event", json={"eventId": "after"}, headers=AUTH, timeout=30
            )
            ready_after = httpx.get(url + "/readyz", timeout=30)
            alive = process.poll() is None
        finally:
            process.terminate()
            process.wait(30)
    assert before.status_code == 202
    assert (during.status_code, during.json().get("error")) == (503, "store_unavailable"), (
        during.text
    )
    assert int(during.headers["Retry-After"]) >= 1
    assert ready_during.status_code == 503
    assert alive and after.status_code == 202 and ready_after.status_code == 200
    store = S3Store(s3_client(s3_endpoint), s3_bucket, "lake")
    staged = sorted(e["event_id"] for e in staged_envelopes(store, "call_event"))
    assert "before" in staged and "after" in staged
    assert set(staged) <= {"before", "during", "after"}  # a timed-out write may still land


def test_help_lists_the_commands() -> None:
    result = run_cli({}, "--help")
    assert result.returncode == 0
    assert "serve" in result.stdout
