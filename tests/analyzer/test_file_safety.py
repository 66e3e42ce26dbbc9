"""Hostile entries in a night folder: each is counted and named, none blocks, none costs
memory of its size, none stops the night (FIFOs, sockets, huge files, unreadable
subfolders, links out of the folder).

Whatever could hang runs in a child interpreter under a timeout, so a regression fails the
test instead of hanging the suite.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from analyzer import DatasetAnalyzer
from analyzer.dataset import profile_folder
from analyzer.errors import AnalyzerError, DatasetError, EmptyDatasetError
from analyzer.images import read_image
from analyzer.options import AnalyzerOptions
from tests.fixtures.images import write_images

ROOT = Path(__file__).resolve().parents[2]
HANG_GUARD_S = 120
"""Generous: a child that has not finished by then is stuck, not slow."""

GIB = 1024**3

PEAK_RSS_MB = """
def peak_rss_mb():
    # VmHWM: this process's own peak (getrusage's ru_maxrss would include the parent's
    # size at the fork that started this interpreter).
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:")) / 1024
"""

PROFILE_IN_CHILD = PEAK_RSS_MB + """
import json, sys
from analyzer.dataset import profile_folder
from analyzer.options import AnalyzerOptions
profile = profile_folder(sys.argv[1], AnalyzerOptions(workers=int(sys.argv[2]), chunk_size=4,
                                                       progress="off"))
print(json.dumps({
    "images": profile.image_count, "total": profile.total_files,
    "issues": {k: v.to_dict() for k, v in profile.issues.items() if v.count},
    "peak_rss_mb": peak_rss_mb(),
}))
"""


def run_child(code: str, *args: str, prefix: tuple[str, ...] = ()) -> dict[str, object]:
    """Run ``code`` in a fresh interpreter; return the JSON it printed on its last line."""
    done = subprocess.run([*prefix, sys.executable, "-c", code, *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=HANG_GUARD_S)
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def sparse_file(path: Path, size: int, head: bytes = b"") -> Path:
    """A file of ``size`` bytes that starts with ``head`` and takes no disk space."""
    with path.open("wb") as fh:
        fh.write(head)
        fh.truncate(size)
    return path


@pytest.fixture
def unix_socket(tmp_path: Path) -> Iterator[Path]:
    """A listening Unix socket named ``s.jpg`` in ``tmp_path``."""
    path = tmp_path / "s.jpg"
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(path))
        sock.listen()
        yield path


class TestSpecialFiles:
    """A FIFO, socket or device named like an image is turned away without being opened."""

    @pytest.mark.parametrize("workers", [1, 2])
    def test_fifo_named_jpg_is_named_unreadable_and_the_night_completes(
        self, tmp_path: Path, workers: int
    ) -> None:
        """Opening a FIFO waits for a writer for ever; the folder is profiled anyway."""
        write_images(tmp_path, 10, seed=0, size=(16, 16))
        os.mkfifo(tmp_path / "x.jpg")
        os.mkfifo(tmp_path / "a.jpg")  # first in name order: the first file a worker reads
        out = run_child(PROFILE_IN_CHILD, str(tmp_path), str(workers))
        assert out["images"] == 10 and out["total"] == 12
        assert out["issues"] == {"unreadable": {"count": 2, "examples": ["a.jpg", "x.jpg"]}}

    def test_read_image_turns_a_fifo_away_with_the_reason(self, tmp_path: Path) -> None:
        """``read_image`` itself checks the file type (the folder may change after listing)."""
        os.mkfifo(tmp_path / "x.jpg")
        code = ("import json, sys; from analyzer.images import read_image; "
                "r = read_image(sys.argv[1]); print(json.dumps([r.issue, r.detail]))")
        done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "x.jpg")], cwd=ROOT,
                              capture_output=True, text=True, timeout=HANG_GUARD_S)
        assert json.loads(done.stdout) == ["unreadable", "not a regular file (FIFO)"]

    def test_socket_and_device_are_named_unreadable(self, tmp_path: Path,
                                                    unix_socket: Path) -> None:
        """A socket and a link to a character device are entries, not images."""
        write_images(tmp_path, 3, seed=0, size=(16, 16))
        (tmp_path / "null.jpg").symlink_to("/dev/null")
        options = AnalyzerOptions(workers=1, progress="off", follow_symlinks_outside=True)
        profile = profile_folder(tmp_path, options)
        assert profile.image_count == 3
        assert profile.issues["unreadable"].examples == ["null.jpg", "s.jpg"]
        assert read_image(str(unix_socket)).detail == "not a regular file (socket)"
        assert read_image("/dev/null").detail == "not a regular file (character device)"

    def test_each_kind_of_rejected_entry_is_logged_once(
        self, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        """An operator sees why entries were skipped, with a count, in the log."""
        write_images(tmp_path, 3, seed=0, size=(16, 16))
        (tmp_path / "gone.jpg").symlink_to(tmp_path / "nowhere.jpg")
        with socket.socket(socket.AF_UNIX) as one, socket.socket(socket.AF_UNIX) as two:
            one.bind(str(tmp_path / "x.jpg"))
            two.bind(str(tmp_path / "y.jpg"))
            with caplog.at_level(logging.WARNING, logger="analyzer"):
                profile_folder(tmp_path, AnalyzerOptions(workers=1, progress="off"))
        rejected = [r for r in caplog.records if r.msg == "dataset.entries_rejected"]
        assert [(r.__dict__["reason"], r.__dict__["count"]) for r in rejected] == [
            ("broken symlink", 1), ("not a regular file (socket)", 2)]


class TestLargeFiles:
    """Size and signature are checked before a file is read; nothing is read whole."""

    def test_huge_sparse_file_is_unreadable_without_being_read(self, tmp_path: Path) -> None:
        """3 GB of zeros named .jpg: named unreadable, and the process stays small."""
        write_images(tmp_path, 5, seed=0, size=(16, 16))
        sparse_file(tmp_path / "huge.jpg", 3 * GIB)
        out = run_child(PROFILE_IN_CHILD, str(tmp_path), "1")
        assert out["images"] == 5
        assert out["issues"] == {"unreadable": {"count": 1, "examples": ["huge.jpg"]}}
        assert float(str(out["peak_rss_mb"])) < 1024  # the file alone would be 3,072

    def test_file_over_max_file_bytes_is_unreadable_with_the_option_named(
        self, tmp_path: Path
    ) -> None:
        """A file with a JPEG signature but over the cap is turned away by its size."""
        path = sparse_file(tmp_path / "big.jpg", 3 * GIB, b"\xff\xd8\xff\xe0")
        rec = read_image(str(path))
        assert rec.issue == "unreadable"
        assert rec.detail == "file is 3,221,225,472 bytes, over max_file_bytes=536,870,912"
        assert read_image(str(path), max_file_bytes=10).detail.endswith("max_file_bytes=10")

    def test_non_image_is_recognised_by_its_first_bytes(self, tmp_path: Path) -> None:
        """A file with no image signature is 'not an image', and says how it starts."""
        path = sparse_file(tmp_path / "blob.png", 64 * 1024**2, b"PK\x03\x04zip")
        rec = read_image(str(path))
        assert (rec.issue, rec.detail) == (
            "unreadable", "not an image: no image signature (starts b'PK\\x03\\x04zip\\x00')")

    def test_digest_is_computed_in_blocks(self, tmp_path: Path) -> None:
        """A valid JPEG followed by 256 MB of padding decodes without 256 MB of memory."""
        small = write_images(tmp_path / "small", 1, seed=0, size=(32, 32))[0]
        padded = tmp_path / "padded.jpg"
        sparse_file(padded, 256 * 1024**2, small.read_bytes())  # decoders stop at EOI
        code = PEAK_RSS_MB + (
            "import json, sys; from analyzer.images import read_image\n"
            "read_image(sys.argv[1]); before = peak_rss_mb(); rec = read_image(sys.argv[2])\n"
            "print(json.dumps({'issue': rec.issue, 'digest': rec.digest.hex(),"
            " 'grown_mb': peak_rss_mb() - before}))"
        )
        out = run_child(code, str(small), str(padded))
        assert out["issue"] is None
        sha = hashlib.sha1()
        with padded.open("rb") as fh:
            while block := fh.read(1 << 20):
                sha.update(block)
        whole = sha.digest()[:8].hex()
        assert out["digest"] == whole  # the fingerprint of the file hashed in one piece
        assert float(str(out["grown_mb"])) < 64  # reading it whole would add 256

    def test_max_file_bytes_must_be_positive(self) -> None:
        """A cap below one byte is a configuration error naming the option."""
        with pytest.raises(AnalyzerError, match="max_file_bytes=0 must be >= 1"):
            AnalyzerOptions(max_file_bytes=0)


class TestFolders:
    """What cannot be listed is counted and named, and the folder itself fails clearly."""

    DROP_READ_OVERRIDE = ("setpriv", "--bounding-set=-dac_override,-dac_read_search")
    """As root, permissions only bite once these capabilities are gone."""

    def test_unreadable_subfolder_is_counted_and_named(self, tmp_path: Path) -> None:
        """A subfolder the service cannot list is one unreadable entry, ``name/``."""
        write_images(tmp_path, 4, seed=0, size=(16, 16))
        write_images(tmp_path / "private", 2, seed=1, size=(16, 16))
        (tmp_path / "private").chmod(0)
        prefix = self.DROP_READ_OVERRIDE if os.geteuid() == 0 else ()
        try:
            out = run_child(PROFILE_IN_CHILD, str(tmp_path), "1", prefix=prefix)
        finally:
            (tmp_path / "private").chmod(0o755)
        assert out["images"] == 4 and out["total"] == 5
        assert out["issues"] == {"unreadable": {"count": 1, "examples": ["private/"]}}

    def test_unreadable_subfolder_reason_is_logged(self, tmp_path: Path) -> None:
        """The log says which subfolder and why."""
        write_images(tmp_path, 2, seed=0, size=(16, 16))
        (tmp_path / "private").mkdir(mode=0)
        code = (
            "import json, logging, sys\n"
            "from analyzer.dataset import list_image_files\n"
            "from pathlib import Path\n"
            "seen = []\n"
            "class H(logging.Handler):\n"
            "    def emit(self, r): seen.append([r.msg, r.reason, r.examples])\n"
            "logging.getLogger('analyzer').addHandler(H())\n"
            "files, rejected = list_image_files(Path(sys.argv[1]))\n"
            "print(json.dumps({'rejected': rejected, 'logged': seen}))"
        )
        prefix = self.DROP_READ_OVERRIDE if os.geteuid() == 0 else ()
        out = run_child(code, str(tmp_path), prefix=prefix)
        private = f"{tmp_path / 'private'}/"
        reason = "subfolder cannot be read: Permission denied"
        assert out["rejected"] == [[private, reason]]
        assert out["logged"] == [["dataset.entries_rejected", reason, [private]]]

    def test_unreadable_data_folder_is_a_dataset_error(self, tmp_path: Path) -> None:
        """The folder itself unreadable is not 'holds no image files': it says why."""
        night = tmp_path / "night"
        write_images(night, 2, seed=0, size=(16, 16))
        night.chmod(0)
        code = (
            "import sys\nfrom analyzer.errors import DatasetError\n"
            "from analyzer.dataset import profile_folder\n"
            "try:\n    profile_folder(sys.argv[1])\n"
            "except DatasetError as err:\n    print(__import__('json').dumps({'error': str(err)}))"
        )
        prefix = self.DROP_READ_OVERRIDE if os.geteuid() == 0 else ()
        try:
            out = run_child(code, str(night), prefix=prefix)
        finally:
            night.chmod(0o755)
        assert out["error"] == (f"data folder {str(night)!r} cannot be read (Permission "
                                "denied); give the service read access to it")

    def test_missing_folder_error_is_unchanged(self, tmp_path: Path) -> None:
        """A folder that is not there still says so."""
        with pytest.raises(DatasetError, match="does not exist"):
            profile_folder(tmp_path / "nope")


class TestSymlinks:
    """Links out of the folder: refused by default, with the option named; on request, read."""

    def _linked_dataset(self, tmp_path: Path) -> Path:
        store = tmp_path / "store"
        write_images(store, 6, seed=2, size=(16, 16))
        data = tmp_path / "dataset"
        data.mkdir()
        for image in sorted(store.iterdir()):
            (data / image.name).symlink_to(image)
        return data

    def test_dataset_of_links_names_the_option_that_reads_it(self, tmp_path: Path) -> None:
        """The error for a folder of links tells how to analyse it (library and config)."""
        data = self._linked_dataset(tmp_path)
        with pytest.raises(EmptyDatasetError) as caught:
            DatasetAnalyzer(data, workers=1, progress="off").analyze()
        message = str(caught.value)
        assert "symlink points outside the data folder" in message
        assert "follow_symlinks_outside=True" in message
        assert "[analysis] follow_symlinks_outside = true" in message

    def test_follow_symlinks_outside_reads_the_links(self, tmp_path: Path) -> None:
        """With the option set, a dataset of links profiles like the files themselves."""
        data = self._linked_dataset(tmp_path)
        linked = DatasetAnalyzer(data, workers=1, progress="off",
                                 follow_symlinks_outside=True).analyze()
        direct = DatasetAnalyzer(tmp_path / "store", workers=1, progress="off").analyze()
        assert linked["dataset_info"]["image_count"] == 6
        assert linked["features"] == direct["features"]

    def test_link_to_a_fifo_is_not_followed_into_a_hang(self, tmp_path: Path) -> None:
        """Even when links are followed, the target must be a regular file."""
        write_images(tmp_path / "data", 3, seed=0, size=(16, 16))
        os.mkfifo(tmp_path / "pipe")
        (tmp_path / "data" / "p.jpg").symlink_to(tmp_path / "pipe")
        code = (
            "import json, sys\nfrom analyzer.dataset import profile_folder\n"
            "from analyzer.options import AnalyzerOptions\n"
            "p = profile_folder(sys.argv[1], AnalyzerOptions(workers=1, progress='off',"
            " follow_symlinks_outside=True))\n"
            "print(json.dumps([p.image_count, p.issues['unreadable'].examples]))"
        )
        done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "data")], cwd=ROOT,
                              capture_output=True, text=True, timeout=HANG_GUARD_S)
        assert json.loads(done.stdout) == [3, ["p.jpg"]], done.stderr


def test_small_images_still_decode_from_the_open_file(tmp_path: Path) -> None:
    """Every format read here still decodes when Pillow reads from the checked file."""
    for fmt, name in (("JPEG", "a.jpg"), ("PNG", "a.png"), ("GIF", "a.gif"), ("BMP", "a.bmp"),
                      ("TIFF", "a.tif"), ("WEBP", "a.webp"), ("PPM", "a.ppm")):
        Image.new("RGB", (20, 10), (10, 200, 30)).save(tmp_path / name, fmt)
        rec = read_image(str(tmp_path / name))
        assert rec.issue is None, (name, rec.detail)
        assert rec.categories[0] == fmt
