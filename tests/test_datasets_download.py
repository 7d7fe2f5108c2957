"""linpath.datasets.cifar10(download=True) / download_cifar10: the official archive's format,
served from a local HTTP server: checksum, safe extraction, atomic placement, clear failures."""

import functools
import hashlib
import http.server
import io
import pickle
import socket
import tarfile
import threading

import numpy as np
import pytest

import linpath.datasets as ds

BATCHES = [f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def server(tmp_path, monkeypatch):
    """A local HTTP server on 127.0.0.1 for ``tmp_path / "www"``: ``(folder, base_url)``."""
    for name in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    www = tmp_path / "www"
    www.mkdir()
    httpd = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(www))
    )
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield www, f"http://127.0.0.1:{httpd.server_port}/"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """No CIFAR-10 anywhere cifar10() looks: no $LINPATH_CIFAR10, no ../shared/data, an empty cache."""
    monkeypatch.delenv("LINPATH_CIFAR10", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    work = tmp_path / "work" / "cwd"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    monkeypatch.setattr(ds, "_checkout_root", lambda: tmp_path / "checkout" / "repo")
    return tmp_path / "cache" / "linpath" / "cifar10"


def official_like_archive(path, per_batch=3, seed=None, members=None):
    """A tar.gz in the layout of cifar-10-python.tar.gz with random images; returns (md5, batches).

    ``members`` (name -> bytes or a TarInfo) adds or replaces entries, for broken archives.
    """
    rng = np.random.default_rng(seed)
    batches, entries = {}, {}
    for name in BATCHES:
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, per_batch).tolist()
        batches[name] = (data, labels)
        record = {b"batch_label": name.encode(), b"labels": labels, b"data": data, b"filenames": []}
        entries[f"cifar-10-batches-py/{name}"] = pickle.dumps(record)
    meta = {b"label_names": [c.encode() for c in ds.CIFAR10_CLASSES], b"num_vis": 3072}
    entries["cifar-10-batches-py/batches.meta"] = pickle.dumps(meta)
    entries["cifar-10-batches-py/readme.html"] = b"<html></html>"
    entries.update(members or {})
    with tarfile.open(path, "w:gz") as tar:
        dir_info = tarfile.TarInfo("cifar-10-batches-py")
        dir_info.type, dir_info.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(dir_info)
        for name, content in entries.items():
            if isinstance(content, tarfile.TarInfo):
                tar.addfile(content)
                continue
            if content is None:
                continue
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(content), 0o644
            tar.addfile(info, io.BytesIO(content))
    return hashlib.md5(path.read_bytes()).hexdigest(), batches


def assert_matches(data, batches, valid):
    """The Dataset equals the batches written, read back the obvious way."""
    train_x = np.concatenate([batches[n][0] for n in BATCHES[:5]]).astype(np.float64) / 255
    train_y = np.concatenate([batches[n][1] for n in BATCHES[:5]])
    split = len(train_y) - valid
    np.testing.assert_array_equal(data.train[1].numpy(), train_y[:split])
    np.testing.assert_array_equal(data.valid[1].numpy(), train_y[split:])
    np.testing.assert_allclose(data.train[0].numpy().reshape(split, -1), train_x[:split], rtol=1e-6)
    np.testing.assert_allclose(data.valid[0].numpy().reshape(valid, -1), train_x[split:], rtol=1e-6)
    test_x, test_y = batches["test_batch"]
    np.testing.assert_array_equal(data.test[1].numpy(), test_y)
    np.testing.assert_allclose(data.test[0].numpy().reshape(len(test_y), -1), test_x / 255, rtol=1e-6)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_official_archive_and_checksum():
    assert ds.CIFAR10_URL == "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
    assert ds.CIFAR10_MD5 == "c58f30108f718f92721af3b95e74349a"


def test_download_fetches_checks_and_extracts_into_dest(tmp_path, server):
    www, base = server
    md5, batches = official_like_archive(www / "c.tar.gz", seed=np.random.SeedSequence().entropy)
    dest = tmp_path / "data"
    assert ds.download_cifar10(dest, url=base + "c.tar.gz", md5=md5.upper()) == dest
    assert sorted(p.name for p in dest.iterdir()) == ["cifar-10-batches-py"]  # no temporary left
    assert_matches(ds.cifar10(dest, valid=4), batches, valid=4)
    # A complete folder is kept: a second call does not fetch (the URL is now dead).
    assert ds.download_cifar10(dest, url=base + "gone.tar.gz", md5=md5) == dest


def test_cifar10_download_true_fills_the_cache_then_finds_it_without_download(server, isolated, monkeypatch):
    www, base = server
    md5, batches = official_like_archive(www / "cifar-10-python.tar.gz", seed=None)
    monkeypatch.setattr(ds, "CIFAR10_URL", base + "cifar-10-python.tar.gz")
    monkeypatch.setattr(ds, "CIFAR10_MD5", md5)
    with pytest.raises(FileNotFoundError, match=r"download=True"):
        ds.cifar10()
    assert not ds.cifar10_available()
    assert_matches(ds.cifar10(valid=3, download=True), batches, valid=3)
    assert (isolated / "cifar-10-batches-py" / "batches.meta").is_file()
    (www / "cifar-10-python.tar.gz").unlink()  # later calls read the cache
    assert ds.cifar10_available()
    assert_matches(ds.cifar10(valid=3), batches, valid=3)


def test_cifar10_download_true_with_a_root_or_linpath_cifar10(tmp_path, server, isolated, monkeypatch):
    www, base = server
    md5, batches = official_like_archive(www / "a.tar.gz")
    monkeypatch.setattr(ds, "CIFAR10_URL", base + "a.tar.gz")
    monkeypatch.setattr(ds, "CIFAR10_MD5", md5)
    assert_matches(ds.cifar10(tmp_path / "mine", valid=2, download=True), batches, valid=2)
    monkeypatch.setenv("LINPATH_CIFAR10", str(tmp_path / "env"))
    assert_matches(ds.cifar10(valid=2, download=True), batches, valid=2)
    assert (tmp_path / "env" / "cifar-10-batches-py" / "test_batch").is_file()
    assert not isolated.exists()  # the cache was not used


def test_wrong_checksum_raises_and_leaves_nothing(tmp_path, server):
    www, base = server
    md5, _ = official_like_archive(www / "c.tar.gz")
    wrong = f"{int(md5, 16) ^ 1:032x}"
    with pytest.raises(ValueError, match=rf"MD5 {md5}, expected {wrong}"):
        ds.download_cifar10(tmp_path / "new", url=base + "c.tar.gz", md5=wrong)
    assert not (tmp_path / "new").exists()
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "mine.txt").write_text("kept")
    with pytest.raises(ValueError, match="MD5"):
        ds.download_cifar10(tmp_path / "old", url=base + "c.tar.gz", md5=wrong)
    assert [p.name for p in (tmp_path / "old").iterdir()] == ["mine.txt"]


def test_unreachable_server_says_how_to_get_the_data_by_hand(tmp_path, isolated):
    url = f"http://127.0.0.1:{free_port()}/cifar-10-python.tar.gz"
    with pytest.raises(ConnectionError, match="could not download CIFAR-10") as info:
        ds.download_cifar10(tmp_path / "d", url=url, timeout=5)
    assert url in str(info.value) and ds.CIFAR10_HOWTO in str(info.value)
    assert not (tmp_path / "d").exists()
    with pytest.raises(ConnectionError, match="LINPATH_CIFAR10"):
        ds.download_cifar10(tmp_path / "d", url=(tmp_path / "missing.tar.gz").as_uri())
    assert not (tmp_path / "d").exists()


def test_file_urls_work(tmp_path):
    md5, batches = official_like_archive(tmp_path / "c.tar.gz")
    dest = ds.download_cifar10(tmp_path / "d", url=(tmp_path / "c.tar.gz").as_uri(), md5=md5)
    assert_matches(ds.cifar10(dest, valid=1), batches, valid=1)


def link(name, target, kind=tarfile.SYMTYPE):
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


@pytest.mark.parametrize(
    ("members", "message"),
    [
        ({"cifar-10-batches-py/../../escaped": b"x"}, "lies outside"),
        ({"/tmp/absolute": b"x"}, "lies outside"),
        ({"elsewhere/file": b"x"}, "lies outside"),
        ({"cifar-10-batches-py/link": link("cifar-10-batches-py/link", "/etc/passwd")}, "link"),
        ({"cifar-10-batches-py/h": link("cifar-10-batches-py/h", "/etc/passwd", tarfile.LNKTYPE)}, "link"),
        ({"cifar-10-batches-py/test_batch": None}, "lacks test_batch"),
    ],
)
def test_unsafe_or_incomplete_archives_are_refused_and_leave_nothing(tmp_path, members, message):
    md5, _ = official_like_archive(tmp_path / "bad.tar.gz", members=members)
    with pytest.raises(ValueError, match=message):
        ds.download_cifar10(tmp_path / "new" / "d", url=(tmp_path / "bad.tar.gz").as_uri(), md5=md5)
    assert [p.name for p in tmp_path.iterdir()] == ["bad.tar.gz"]  # not even the folders it made


def test_not_a_tar_gz_and_an_incomplete_existing_folder(tmp_path):
    (tmp_path / "junk.tar.gz").write_bytes(b"not an archive")
    md5 = hashlib.md5(b"not an archive").hexdigest()
    with pytest.raises(ValueError, match="not the CIFAR-10 python archive"):
        ds.download_cifar10(tmp_path / "d", url=(tmp_path / "junk.tar.gz").as_uri(), md5=md5)
    (tmp_path / "d" / "cifar-10-batches-py").mkdir(parents=True)
    (tmp_path / "d" / "cifar-10-batches-py" / "data_batch_1").write_bytes(b"")
    with pytest.raises(ValueError, match="lacks data_batch_2.*remove it"):
        ds.download_cifar10(tmp_path / "d", url=(tmp_path / "junk.tar.gz").as_uri(), md5=md5)
