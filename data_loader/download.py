"""Download and unpack Google Speech Commands (Warden 2018, arXiv:1804.03209) safely.

Why so careful: the archives are 1.4-2.4 GB, so an interrupted download resumes with an HTTP
Range request instead of starting over; the size and SHA-256 are checked before anything is
unpacked; unpacking refuses members that could write outside the target (absolute paths,
``..``, links, devices); and the corpus appears at ``root`` only when complete (unpacked into
a temporary sibling folder, marked with ``.complete``, then renamed into place).
Without network it fails within seconds with one line that names the alternatives.
"""
import argparse
import hashlib
import http.client
import os
import re
import shutil
import socket
import tarfile
import tempfile
import threading
import urllib.error
import urllib.parse
import urllib.request
import zlib
from collections.abc import Sequence
from pathlib import Path

from utils.atomic import remove_stale, write_yaml
from utils.errors import UserError, exit_on_user_error
from utils.progress import progress_bar

# URLs: the dataset paper (arXiv:1804.03209). SHA-256 of both archives: torchaudio's
# torchaudio/datasets/speechcommands.py (_CHECKSUMS). Size and SHA-256 of v0.02: tensorflow_datasets'
# tensorflow_datasets/url_checksums/speech_commands.txt (the same SHA-256 as torchaudio's).
# Size of v0.01: the Content-Length of the official URL as logged by wget in a public notebook
# (one source only; the SHA-256 check is what guarantees the content).
SPEECH_COMMANDS = {
    "v0.01": {
        "url": "http://download.tensorflow.org/data/speech_commands_v0.01.tar.gz",
        "size": 1489096277,
        "sha256": "743935421bb51cccdb6bdd152e04c5c70274e935c82119ad7faeec31780d811d",
    },
    "v0.02": {
        "url": "http://download.tensorflow.org/data/speech_commands_v0.02.tar.gz",
        "size": 2428923189,
        "sha256": "af14739ee7dc311471de98f5f9d2c9191b18aedfe957f4a6ff791c709868ff58",
    },
}
MARKER = ".complete"
CONNECT_TIMEOUT = 5.0  # seconds for name lookup and TCP connect, at most
CHUNK = 1 << 20
USER_AGENT = "kws-download/1.0 (python urllib)"
SYNTHETIC_COMMAND = "python3 -m data_loader.synthetic --out data/synthetic_kws"


def _alternatives() -> str:
    return (f"to use a corpus you already have pass --data-dir PATH; offline, run the whole chain on a "
            f"synthetic corpus with `make demo`, or make that corpus with: {SYNTHETIC_COMMAND}")


def _one_line(text):
    return " ".join(str(text).split()) or "no details"


class _Interrupted(Exception):
    """The connection ended before the whole body arrived (the partial file is kept)."""


# ----------------------------------------------------------------------------- network

def _connect_check(url, timeout):
    """Resolve and TCP-connect to the server (or the proxy urllib would use) within
    ``timeout`` s, so a machine without network fails fast instead of hanging in DNS."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise OSError("not an http(s) URL")
    host, port = parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)
    proxy = urllib.request.getproxies().get(parts.scheme)
    if proxy and not urllib.request.proxy_bypass(host):
        p = urllib.parse.urlsplit(proxy if "://" in proxy else "http://" + proxy)
        host, port = p.hostname or host, p.port or 80
    found = {}

    def lookup() -> None:
        try:
            found["addrs"] = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as e:
            found["error"] = e

    worker = threading.Thread(target=lookup, daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        raise OSError(f"name lookup of {host} timed out after {timeout:g} s")
    if "error" in found:
        raise found["error"]
    error = OSError(f"no address for {host}")
    for family, kind, proto, _, address in found["addrs"]:
        sock = socket.socket(family, kind, proto)
        sock.settimeout(timeout)
        try:
            sock.connect(address)
            return
        except OSError as e:
            error = e
        finally:
            sock.close()
    raise error


def _content_range(value):
    """(first byte, total or None) of a 206 response's Content-Range header."""
    m = re.fullmatch(r"\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*", value or "")
    if not m:
        return None, None
    return int(m.group(1)), None if m.group(3) == "*" else int(m.group(3))


def _fetch(url, partial, size, timeout, progress, fail):
    """Download ``url`` into ``partial``, resuming from its current length when the server
    honours Range; restarts from zero when it does not. Raises _Interrupted on a cut."""
    for _attempt in range(3):
        have = partial.stat().st_size if partial.exists() else 0
        if size is not None and have > size:  # not a prefix of the expected file
            partial.unlink()
            have = 0
        if size is not None and have == size:
            return
        headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
        if have:
            headers["Range"] = f"bytes={have}-"
        try:
            _connect_check(url, min(timeout, CONNECT_TIMEOUT))
            response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
        except urllib.error.HTTPError as e:
            if e.code == 416 and have:  # our partial file is no prefix the server knows of
                partial.unlink()
                continue
            raise fail(f"the server answered HTTP {e.code} {_one_line(e.reason)}") from None
        except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as e:
            reason = e.reason if isinstance(e, urllib.error.URLError) else e
            raise fail(f"cannot connect: {_one_line(reason)}") from None
        with response:
            total = None
            if have and response.status == 206:
                start, total = _content_range(response.headers.get("Content-Range"))
                if start != have:  # resumed somewhere else: start over
                    partial.unlink()
                    continue
                mode = "ab"
            elif response.status == 200:
                have, mode = 0, "wb"  # Range ignored (or not asked): the whole file follows
                length = response.headers.get("Content-Length")
                total = int(length) if length and length.isdigit() else None
            else:
                raise fail(f"the server answered HTTP {response.status}")
            if size is not None and total is not None and total != size:
                partial.unlink(missing_ok=True)
                raise fail(f"the server's file is {total} bytes, not the expected {size}")
            expected = total if total is not None else size
            with open(partial, mode) as f, progress_bar(enabled=progress, total=expected, initial=have,
                                                        unit="B", unit_scale=True, unit_divisor=1024,
                                                        desc=partial.name[:-len(".partial")]) as bar:
                while True:
                    try:
                        chunk = response.read(CHUNK)
                    except (OSError, http.client.HTTPException) as e:
                        raise _Interrupted(f"{have} of {expected} bytes ({_one_line(e)})") from None
                    if not chunk:
                        break
                    f.write(chunk)
                    have += len(chunk)
                    bar.update(len(chunk))
                    if expected is not None and have > expected:
                        f.close()
                        partial.unlink()
                        raise fail(f"the server sent more than the expected {expected} bytes")
            if expected is not None and have < expected:
                raise _Interrupted(f"{have} of {expected} bytes")
            return
    raise fail("the server did not resume the download consistently")


def _sha256(path, progress):
    digest = hashlib.sha256()
    with open(path, "rb") as f, progress_bar(enabled=progress, total=path.stat().st_size, unit="B",
                                              unit_scale=True, unit_divisor=1024, desc="verifying") as bar:
        for block in iter(lambda: f.read(4 * CHUNK), b""):
            digest.update(block)
            bar.update(len(block))
    return digest.hexdigest()


# ----------------------------------------------------------------------------- unpacking

def _member_path(member):
    """The member's safe relative path ('' for the archive's root entry), or a reason to refuse."""
    name = member.name.replace("\\", "/")
    if "\x00" in name:
        return None, "NUL in its name"
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        return None, "absolute path"
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        return None, "'..' in its path"
    if member.issym() or member.islnk():
        return None, f"link to {member.linkname!r}"
    if member.ischr() or member.isblk() or member.isfifo() or member.isdev():
        return None, "device or fifo"
    if not (member.isfile() or member.isdir()):
        return None, "not a regular file or folder"
    if not parts and not member.isdir():
        return None, "empty name"
    return "/".join(parts), None


def safe_extract(archive: str | os.PathLike, dest: str | os.PathLike, progress: bool = True) -> None:
    """Unpack ``archive`` into the existing folder ``dest``, regular files and folders only.
    An unsafe member raises UserError naming it; what was unpacked before stays in ``dest``
    (callers unpack into a temporary folder and delete it)."""
    dest = Path(dest).resolve()
    try:
        tar = tarfile.open(archive, "r:*")
    except (tarfile.TarError, OSError) as e:
        raise UserError(f"{archive} is not a readable tar archive ({_one_line(e)}); delete it and "
                        f"download again, or {_alternatives()}") from None
    with tar, progress_bar(enabled=progress, unit=" files", desc="unpacking") as bar:
        try:
            for member in tar:
                rel, why = _member_path(member)
                if why:
                    raise UserError(f"refusing to unpack {Path(archive).name}: member {member.name!r} is "
                                    f"unsafe ({why})")
                target = dest.joinpath(*rel.split("/")) if rel else dest
                if os.path.commonpath([dest, target.resolve()]) != str(dest):
                    raise UserError(f"refusing to unpack {Path(archive).name}: member {member.name!r} "
                                    f"leads outside the target folder")
                if member.isdir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                source = tar.extractfile(member)
                with source, open(target, "wb") as out:
                    shutil.copyfileobj(source, out, CHUNK)
                bar.update()
        except (tarfile.TarError, EOFError, OSError, zlib.error) as e:
            raise UserError(f"{archive} is damaged ({_one_line(e)}); delete it and download again, "
                            f"or {_alternatives()}") from None


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _find_corpus(folder):
    """The folder holding validation_list.txt: ``folder`` itself or its only subfolder."""
    if (folder / "validation_list.txt").is_file():
        return folder
    subs = [p for p in folder.iterdir() if not p.name.startswith(".")]
    if len(subs) == 1 and subs[0].is_dir() and (subs[0] / "validation_list.txt").is_file():
        return subs[0]
    return None


# ----------------------------------------------------------------------------- the corpus

def ensure_speech_commands(root: str | os.PathLike, version: str = "v0.02", url: str | None = None,
                           timeout: float = 10, progress: bool = True, size: int | None = None,
                           sha256: str | None = None) -> Path:
    """Return ``root`` holding Speech Commands ``version``, downloading and unpacking it first
    unless a complete copy (``.complete`` marker) is there.

    ``url``, ``size`` (bytes) and ``sha256`` override the version's official values (a mirror,
    or a test server). ``timeout``: seconds without data before giving up; name lookup and
    connect are bounded by at most 5 s so that a machine without network fails fast.
    """
    if version not in SPEECH_COMMANDS:
        raise UserError(f"unknown Speech Commands version {version!r}; choose one of "
                        f"{', '.join(SPEECH_COMMANDS)}")
    info = SPEECH_COMMANDS[version]
    url = url or info["url"]
    size = info["size"] if size is None else int(size)
    sha256 = (info["sha256"] if sha256 is None else sha256).lower()
    root = Path(root)
    if (root / MARKER).is_file():
        return root
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise UserError(f"{root} exists but holds no complete download (no {MARKER} marker); if it is "
                        f"a Speech Commands corpus already, pass --data-dir {root}; otherwise delete it "
                        f"and run again")
    root.parent.mkdir(parents=True, exist_ok=True)
    archive_name = Path(urllib.parse.urlsplit(url).path).name or f"speech_commands_{version}.tar.gz"
    partial = root.parent / (archive_name + ".partial")

    def fail(reason: str) -> UserError:
        return UserError(f"cannot download Speech Commands {version} from {url} into {root}: "
                         f"{reason}; {_alternatives()}")

    try:
        _fetch(url, partial, size, timeout, progress, fail)
    except _Interrupted as e:
        raise UserError(f"the download of {url} was interrupted after {e}; run the same command again "
                        f"to resume it (kept in {partial}), or {_alternatives()}") from None
    got_size = partial.stat().st_size
    if size is not None and got_size != size:
        partial.unlink()
        raise UserError(f"downloaded {archive_name} is {got_size} bytes, expected {size}; it was deleted; "
                        f"run again to download it anew, or {_alternatives()}")
    got = _sha256(partial, progress)
    if got != sha256:
        partial.unlink()
        raise UserError(f"downloaded {archive_name} has SHA-256 {got}, expected {sha256}: it is corrupt "
                        f"or not the official archive and was deleted; run again to download it anew, "
                        f"or {_alternatives()}")

    remove_stale(root.parent)   # extraction folders of killed runs
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.{os.getpid()}.extract-", dir=root.parent))
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes it private; the corpus should not be
    try:
        try:
            safe_extract(partial, tmp, progress)
        except UserError as e:
            partial.unlink(missing_ok=True)
            raise UserError(f"{e}; nothing was unpacked into {root} and the archive was deleted") from None
        corpus = _find_corpus(tmp)
        if corpus is None:
            partial.unlink(missing_ok=True)
            raise UserError(f"{archive_name} holds no Speech Commands corpus (no validation_list.txt); "
                            f"the archive was deleted; check the URL, or {_alternatives()}")
        write_yaml(corpus / MARKER, {"kind": "speech_commands", "version": version, "url": url,
                                     "size": size, "sha256": sha256})
        os.chmod(corpus / MARKER, 0o666 & ~_umask())  # atomic writes leave mkstemp's private mode
        if root.is_dir():
            root.rmdir()  # empty (checked above)
        os.rename(corpus, root)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    partial.unlink(missing_ok=True)
    return root


@exit_on_user_error
def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Download and unpack Google Speech Commands.")
    parser.add_argument("--version", default="v0.02", choices=sorted(SPEECH_COMMANDS))
    parser.add_argument("--out", default=None, help="corpus folder (default data/speech_commands_<version>)")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    out = args.out or f"data/speech_commands_{args.version}"
    print(ensure_speech_commands(out, args.version, progress=not args.no_progress))


if __name__ == "__main__":
    main()
