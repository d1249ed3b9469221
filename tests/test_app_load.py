"""The demo under concurrent load (issue 15), through its API on 127.0.0.1: 64 simultaneous users
sending the same input (whose answers are equal pictures) or inputs of their own, to /discover and
/swap; every answer must download whole and decode, or be refused as busy when the queue is full.
A reduced form of ``python benchmarks/app_latency.py --load`` (10 rounds) and ``--soak``."""
from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import pytest

pytest.importorskip("gradio_client")
from app_server import (Call, answer, folder_size, mixed_plan, noisy_copies, portrait_files,  # noqa: E402
                        run_load, same_as, tiny_app_server)

pytestmark = pytest.mark.slow
CLIENTS = 64


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    return portrait_files(tmp_path_factory.mktemp("photos"))


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with tiny_app_server(tmp_path_factory.mktemp("app")) as proc:
        yield proc
    print(proc.log_text()[-2000:])


@pytest.mark.parametrize("endpoint", ["/discover", "/swap"])
def test_identical_concurrent_calls_all_answer(server, photos, endpoint):
    """64 users send the same input at once: every one gets the whole, correct picture. (Before
    the answers were files of their own, about one call in ten got a truncated or empty file.)"""
    if endpoint == "/discover":
        args = (photos["astronaut"], True, True, 0.5)
    else:
        args = (photos["astronaut"], photos["grace_hopper"], [1, 2], True)
    check = same_as(answer(server.url, Call(endpoint, args)))
    result = run_load(server.url, lambda r, i: Call(endpoint, args, check), clients=CLIENTS, rounds=1)
    print(result.summary())
    assert result.failures == [] and result.hung == 0
    assert result.answered == CLIENTS  # the queue (64) holds every call: none is refused


def test_mixed_load(server, photos, tmp_path):
    """Same and own inputs, both endpoints, 64 users, 2 rounds; memory stays reasonable."""
    plan = mixed_plan(server.url, photos, noisy_copies(photos["astronaut"], tmp_path, 16))
    rss_before, fds_before = server.rss_mb(), server.fd_count()
    result = run_load(server.url, plan, clients=CLIENTS, rounds=2)
    rss_after, fds_after = server.rss_mb(), server.fd_count()
    print(result.summary(), f"RSS {rss_before} -> {rss_after} MiB, fds {fds_before} -> {fds_after}")
    assert result.failures == [] and result.hung == 0 and result.answered == 2 * CLIENTS
    assert set(result.by_label) == {"discover same", "discover own", "swap same", "swap own"}
    if rss_before is not None and rss_after is not None:
        assert rss_after - rss_before < 1024, "memory grew by more than 1 GiB"


def test_answers_are_files_of_their_own(server, photos):
    """Two equal answers are two read-only files in per-request folders inside gradio's upload
    folder, served as they are."""
    from gradio_client import Client, handle_file

    client = Client(server.url, verbose=False, download_files=False)
    try:
        first, second = (client.predict(handle_file(str(photos["grace_hopper"])), True, True, 0.5,
                                        api_name="/discover") for _ in range(2))
    finally:
        client.close()
    results = Path(server.env["GRADIO_TEMP_DIR"]).resolve() / "partdisc-results"
    for a, b in zip(first[:3], second[:3]):
        pa, pb = Path(a["path"]), Path(b["path"])
        assert pa != pb and pa.parent != pb.parent and pa.name == pb.name
        assert results in pa.parents and pa.read_bytes() == pb.read_bytes()
        assert not os.stat(pa).st_mode & stat.S_IWUSR
    assert [Path(o["path"]).name for o in first[:3]] == ["overlay.png", "part_maps.png", "attention.png"]


@pytest.fixture(scope="module")
def small_server(tmp_path_factory):
    """A server with room for 2 waiting requests and a 6-second cache."""
    with tiny_app_server(tmp_path_factory.mktemp("small"), extra_args=["--queue-size", "2", "--cache-age", "6"]) \
            as proc:
        yield proc
    print(proc.log_text()[-2000:])


def test_full_queue_answers_busy(small_server, photos, tmp_path):
    """More calls than the queue holds: the extra ones are refused at once as busy, none breaks or
    hangs, and the app keeps serving."""
    own = noisy_copies(photos["astronaut"], tmp_path, 4)
    result = run_load(small_server.url, lambda r, i: Call("/discover", (own[i % 4], True, True, 0.5)),
                      clients=24, rounds=1, call_timeout=600)
    print(result.summary())
    assert result.failures == [] and result.hung == 0
    assert result.busy >= 1 and result.answered >= 2 and result.busy + result.answered == 24
    assert answer(small_server.url, Call("/discover", (photos["astronaut"], True, True, 0.5)))[-1].startswith("Face")


def test_old_uploads_and_answers_are_deleted(small_server, photos, tmp_path):
    """delete_cache really deletes: after the cache age, an answer's files, its folder, the upload
    and the upload's folder are gone (new requests keep coming, which run the sweep)."""
    cache = Path(small_server.env["GRADIO_TEMP_DIR"]).resolve()
    first, later = noisy_copies(photos["grace_hopper"], tmp_path, 2, seed=5)
    before = {p for p in cache.iterdir() if p.name != "partdisc-results"}
    from gradio_client import Client, handle_file

    client = Client(small_server.url, verbose=False, download_files=False)
    try:
        out = client.predict(handle_file(str(first)), True, True, 0.5, api_name="/discover")
        answer_folder = Path(out[0]["path"]).parent
        uploads = [p for p in cache.iterdir() if p.name != "partdisc-results" and p not in before]
        assert answer_folder.is_dir() and len(uploads) == 1 and any(uploads[0].iterdir())
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and (answer_folder.exists() or uploads[0].exists()):
            time.sleep(2)
            client.predict(handle_file(str(later)), True, True, 0.5, api_name="/discover")
    finally:
        client.close()
    assert not answer_folder.exists() and not uploads[0].exists()
    print("cache folder (bytes, files, folders):", folder_size(cache))
