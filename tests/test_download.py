"""Speech Commands download against a local HTTP server: verify, resume, refuse, fail fast."""
import hashlib
import http.server
import io
import re
import socket
import tarfile
import threading
import time

import numpy as np
import pytest
import soundfile as sf

from data_loader import download
from data_loader.download import MARKER, SPEECH_COMMANDS, ensure_speech_commands
from utils.errors import UserError


class _Handler(http.server.BaseHTTPRequestHandler):
    """Serves ``server.payload`` at any path; honours ``Range: bytes=N-``. Modes:
    'normal', 'ignore_range' (always 200) and 'drop' (sends half the body, then hangs up)."""

    def do_GET(self):
        srv = self.server
        srv.ranges.append(self.headers.get("Range"))
        if srv.mode == "missing":
            self.send_error(404)
            return
        data, start = srv.payload, 0
        asked = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
        if asked and srv.mode != "ignore_range":
            start = int(asked.group(1))
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if srv.mode == "drop":
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.payload, srv.mode, srv.ranges = b"", "normal", []
    srv.url = f"http://127.0.0.1:{srv.server_address[1]}/speech_commands_test.tar.gz"
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join(5)


def _wav_bytes(seed):
    buf = io.BytesIO()
    rng = np.random.default_rng(seed)
    samples = (rng.standard_normal(1600) * 1000).astype(np.int16)
    sf.write(buf, samples, 16000, subtype="PCM_16", format="WAV")
    return buf.getvalue()


CORPUS_FILES = {
    "one/aaaa0001_nohash_0.wav": _wav_bytes(1),
    "two/aaaa0001_nohash_0.wav": _wav_bytes(2),
    "three/bbbb0002_nohash_0.wav": _wav_bytes(3),
    "bed/cccc0003_nohash_0.wav": _wav_bytes(4),
    "_background_noise_/white_noise.wav": _wav_bytes(5),
    "validation_list.txt": b"two/aaaa0001_nohash_0.wav\n",
    "testing_list.txt": b"three/bbbb0002_nohash_0.wav\n",
}


def _tar(entries, prefix="./"):
    """A .tar.gz of (name, bytes) regular files, or TarInfo objects given as is."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for entry in entries:
            if isinstance(entry, tarfile.TarInfo):
                tar.addfile(entry)
                continue
            name, data = entry
            info = tarfile.TarInfo(prefix + name)
            info.size = len(data)
            info.mtime = 1_500_000_000
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _serve(server, payload):
    server.payload = payload
    return dict(url=server.url, size=len(payload), sha256=hashlib.sha256(payload).hexdigest())


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir())


def test_official_table_has_urls_sizes_and_sha256():
    for version in ("v0.01", "v0.02"):
        url = f"http://download.tensorflow.org/data/speech_commands_{version}.tar.gz"
        assert SPEECH_COMMANDS[version]["url"] == url
    assert SPEECH_COMMANDS["v0.01"]["size"] == 1489096277
    assert SPEECH_COMMANDS["v0.02"]["size"] == 2428923189
    for info in SPEECH_COMMANDS.values():
        assert re.fullmatch(r"[0-9a-f]{64}", info["sha256"])


def test_download_verify_extract_then_reuse(server, tmp_path):
    spec = _serve(server, _tar(CORPUS_FILES.items()))
    root = tmp_path / "data" / "sc"
    assert ensure_speech_commands(root, "v0.02", progress=False, **spec) == root
    for name, data in CORPUS_FILES.items():
        assert (root / name).read_bytes() == data
    assert (root / MARKER).is_file()
    assert _leftovers(tmp_path / "data") == ["sc"]  # archive and temporary folder are gone
    assert server.ranges == [None]
    # complete: the second call does not touch the network
    server.mode = "missing"
    assert ensure_speech_commands(root, "v0.02", progress=False, **spec) == root
    assert len(server.ranges) == 1


def test_archive_with_a_single_top_folder(server, tmp_path):
    spec = _serve(server, _tar(CORPUS_FILES.items(), prefix="speech_commands/"))
    root = tmp_path / "sc"
    ensure_speech_commands(root, progress=False, **spec)
    assert (root / "validation_list.txt").read_bytes() == CORPUS_FILES["validation_list.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sc"]


def test_tampered_archive_is_rejected_and_removed(server, tmp_path):
    spec = _serve(server, _tar(CORPUS_FILES.items()))
    spec["sha256"] = hashlib.sha256(b"the real archive").hexdigest()
    root = tmp_path / "sc"
    with pytest.raises(UserError, match="SHA-256") as err:
        ensure_speech_commands(root, progress=False, **spec)
    assert "deleted" in str(err.value) and "\n" not in str(err.value)
    assert not root.exists()
    assert _leftovers(tmp_path) == []


def test_wrong_size_on_server_is_rejected(server, tmp_path):
    spec = _serve(server, _tar(CORPUS_FILES.items()))
    spec["size"] += 10
    with pytest.raises(UserError, match=f"not the expected {spec['size']}"):
        ensure_speech_commands(tmp_path / "sc", progress=False, **spec)
    assert _leftovers(tmp_path) == []


def test_interrupted_download_resumes(server, tmp_path):
    payload = _tar(CORPUS_FILES.items())
    spec = _serve(server, payload)
    root = tmp_path / "sc"
    server.mode = "drop"
    with pytest.raises(UserError, match="interrupted") as err:
        ensure_speech_commands(root, progress=False, **spec)
    assert "\n" not in str(err.value)
    partial = tmp_path / "speech_commands_test.tar.gz.partial"
    assert partial.stat().st_size == len(payload) // 2
    assert not root.exists()

    server.mode = "normal"
    ensure_speech_commands(root, progress=False, **spec)
    assert server.ranges == [None, f"bytes={len(payload) // 2}-"]
    assert (root / "one/aaaa0001_nohash_0.wav").read_bytes() == CORPUS_FILES["one/aaaa0001_nohash_0.wav"]
    assert _leftovers(tmp_path) == ["sc"]


def test_server_ignoring_range_restarts_cleanly(server, tmp_path):
    payload = _tar(CORPUS_FILES.items())
    spec = _serve(server, payload)
    partial = tmp_path / "speech_commands_test.tar.gz.partial"
    partial.write_bytes(b"x" * 100)  # garbage that a resume would keep
    server.mode = "ignore_range"
    ensure_speech_commands(tmp_path / "sc", progress=False, **spec)
    assert server.ranges == ["bytes=100-"]
    assert (tmp_path / "sc" / "testing_list.txt").read_bytes() == CORPUS_FILES["testing_list.txt"]


def test_partial_larger_than_expected_restarts(server, tmp_path):
    payload = _tar(CORPUS_FILES.items())
    spec = _serve(server, payload)
    (tmp_path / "speech_commands_test.tar.gz.partial").write_bytes(b"x" * (len(payload) + 5))
    ensure_speech_commands(tmp_path / "sc", progress=False, **spec)
    assert server.ranges == [None]
    assert (tmp_path / "sc" / MARKER).is_file()


def _info(name, kind=tarfile.REGTYPE, linkname=""):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    return info


@pytest.mark.parametrize("case", ["dotdot", "nested_dotdot", "absolute", "symlink", "hardlink", "device"])
def test_malicious_archive_is_refused(server, tmp_path, case):
    data = tmp_path / "data"
    data.mkdir()
    outside = tmp_path / "evil.txt"
    evil = {
        "dotdot": ("../evil.txt", b"pwned"),
        "nested_dotdot": ("one/../../../evil.txt", b"pwned"),
        "absolute": (str(outside), b"pwned"),
        "symlink": _info("one/link", tarfile.SYMTYPE, str(tmp_path)),
        "hardlink": _info("one/hard", tarfile.LNKTYPE, "../../evil.txt"),
        "device": _info("one/dev", tarfile.CHRTYPE),
    }[case]
    name = evil[0] if isinstance(evil, tuple) else evil.name
    # a harmless member first, so that a half-unpacked folder would be visible
    spec = _serve(server, _tar([("one/aaaa0001_nohash_0.wav", b"RIFF"), evil], prefix=""))
    root = data / "sc"
    with pytest.raises(UserError, match="unsafe") as err:
        ensure_speech_commands(root, progress=False, **spec)
    message = str(err.value)
    assert repr(name) in message and "\n" not in message
    assert not outside.exists() and not (data / "evil.txt").exists()
    assert not root.exists()
    assert _leftovers(data) == []  # no temporary folder, archive deleted
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]


def test_unreachable_url_fails_fast_with_one_line(tmp_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/x.tar.gz"
    root = tmp_path / "sc"
    start = time.monotonic()
    with pytest.raises(UserError) as err:
        ensure_speech_commands(root, "v0.02", url=url, progress=False)
    assert time.monotonic() - start < 5
    message = str(err.value)
    assert "\n" not in message
    assert url in message and str(root) in message
    assert "--data-dir PATH" in message and "`make demo`" in message
    assert "python3 -m data_loader.synthetic --out data/synthetic_kws" in message
    assert not root.exists() and _leftovers(tmp_path) == []


def test_http_error_names_the_url(server, tmp_path):
    spec = _serve(server, b"")
    server.mode = "missing"
    with pytest.raises(UserError, match=re.escape(spec["url"]) + ".*HTTP 404"):
        ensure_speech_commands(tmp_path / "sc", size=10, sha256="0" * 64, url=spec["url"], progress=False)


def test_unknown_version_and_occupied_root(tmp_path):
    with pytest.raises(UserError, match="choose one of v0.01, v0.02"):
        ensure_speech_commands(tmp_path / "sc", "v9")
    occupied = tmp_path / "mine"
    occupied.mkdir()
    (occupied / "notes.txt").write_text("keep me")
    with pytest.raises(UserError, match="--data-dir"):
        ensure_speech_commands(occupied, "v0.02", url="http://127.0.0.1:9/x.tar.gz")
    assert (occupied / "notes.txt").read_text() == "keep me"


def test_connect_check_bounds_name_lookup(monkeypatch):
    """A resolver that hangs must not hang the download: the lookup is abandoned in time."""
    def slow_lookup(*args, **kwargs):
        time.sleep(3)
        raise OSError("too late")
    monkeypatch.setattr(download.socket, "getaddrinfo", slow_lookup)
    start = time.monotonic()
    with pytest.raises(OSError, match="timed out"):
        download._connect_check("http://example.invalid/x.tar.gz", 0.3)
    assert time.monotonic() - start < 2
