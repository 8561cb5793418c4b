"""The on-disk data cache: invalidation, parallel decoding, idx/npz streaming, killed builds and bad input
(a full disk, a cache made for another image size, a source changing while it is cached)."""

from __future__ import annotations

import errno
import os
import pickle
import queue
import struct
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import ganvae.data.cache as cache_mod
import ganvae.data.cache_arrays as arrays_mod
import ganvae.data.cache_folder as folder_mod
from ganvae import api
from ganvae.cli import main
from ganvae.data import DataConfig, load_data
from ganvae.data.cache import open_cache
from ganvae.data.cache_view import CachedImages, is_cached
from ganvae.errors import GanvaeError

HERE = Path(__file__).resolve().parent


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GANVAE_CACHE", str(tmp_path / "env-cache"))


def make_folder(root: Path, n: int = 12, grey: bool = False) -> Path:
    rng = np.random.default_rng(2)
    for i in range(n):
        path = root / f"{i:03d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        shape = (9, 9) if grey else (9, 9, 3)
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(path)
    return root


def load(source, cache: str = "auto", **kw):
    kw.setdefault("holdout", 0.0)
    kw.setdefault("image_size", 8)
    return load_data(DataConfig(source=str(source), cache=cache, **kw), progress=False)


def caches(root: Path) -> list[Path]:
    return sorted(p for p in (root / "data").glob("*") if p.is_dir())


def leftovers(parent: Path) -> list[Path]:
    return sorted(parent.glob(".tmp-*"))


# --------------------------------------------------------------------------- the view
def test_cached_images_behave_like_the_tensor(tmp_path):
    t = torch.randint(0, 256, (10, 2, 3, 3), dtype=torch.uint8)
    (tmp_path / "x.u8").write_bytes(t.numpy().tobytes())
    rows = np.array([7, 2, 2, 9, 0])
    v = CachedImages(tmp_path / "x.u8", (10, 2, 3, 3), rows)
    ref = t[torch.from_numpy(rows)]
    assert v.shape == ref.shape and len(v) == 5 and v.dtype == torch.uint8
    assert torch.equal(v[torch.tensor([4, 0, 3])], ref[[4, 0, 3]])  # any order, duplicates in rows
    assert torch.equal(v[1], ref[1]) and torch.equal(v[-1], ref[-1]) and torch.equal(v[1:3], ref[1:3])
    assert torch.equal(v[:, 1, 0], ref[:, 1, 0]) and torch.equal(v[..., 0], ref[..., 0])
    assert torch.equal(torch.cat([v, ref]), torch.cat([ref, ref])) and torch.equal(v, ref)
    assert torch.equal(v.float(), ref.float()) and torch.equal(v == 3, ref == 3)
    assert [x.tolist() for x in v] == [x.tolist() for x in ref]
    assert torch.equal(v.take(torch.tensor([1, 4])).materialize(), ref[[1, 4]])  # a view of a view
    assert v.to("cpu") is v and torch.equal(v.to(torch.float32), ref.float())
    assert np.array_equal(np.asarray(v), ref.numpy())
    assert torch.equal(pickle.loads(pickle.dumps(v))[0], ref[0])


# --------------------------------------------------------------------------- building and finding
def test_a_changed_file_invalidates_the_cache(tmp_path):
    root = make_folder(tmp_path / "pics")
    first = load(root)
    assert first.meta["cache"] == "written" and len(caches(tmp_path / "env-cache")) == 1
    assert load(root).meta["cache"] == "hit"
    Image.new("RGB", (9, 9), (200, 10, 10)).save(root / "003.png")  # new pixels (and size, mtime)
    st = os.stat(root / "003.png")
    os.utime(root / "003.png", ns=(st.st_atime_ns, st.st_mtime_ns + 10_000_000))
    second = load(root)
    assert second.meta["cache"] == "written"
    assert second.train.images[3][:, 0, 0].tolist() == [200, 10, 10]
    assert not torch.equal(first.train.images, second.train.images)
    assert len(caches(tmp_path / "env-cache")) == 1  # the stale cache was removed
    (root / "extra.png").write_bytes((root / "000.png").read_bytes())  # an added file
    assert len(load(root).train) == 13


def test_parallel_decoding_gives_the_in_memory_pixels(tmp_path):
    root = make_folder(tmp_path / "pics", n=3 * folder_mod.CHUNK + 5)
    Image.new("L", (9, 9), 99).save(root / "grey.png")
    mem = load(root, "off")
    two = load(root, str(tmp_path / "c2"), workers=2)
    one = load(root, str(tmp_path / "c1"), workers=1)
    assert is_cached(two.train.images) and two.meta["cache"] == "written"
    assert torch.equal(mem.train.images, two.train.images) and torch.equal(mem.train.images, one.train.images)
    assert open_cache(tmp_path / "c2").meta["build"]["workers"] == 2


def test_channels_of_a_grey_folder_come_from_the_headers(tmp_path):
    root = make_folder(tmp_path / "grey", grey=True)
    d = load(root)
    assert d.train.images.shape[1] == 1 and torch.equal(d.train.images, load(root, "off").train.images)


@pytest.mark.parametrize("dtype", ["uint8", "float32"])
def test_idx_and_npz_stream_into_the_cache_like_the_in_memory_loader(tmp_path, monkeypatch, dtype):
    monkeypatch.setattr(arrays_mod, "CHUNK_BYTES", 1000)  # many chunks: float ranges must hold over the whole set
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (40, 12, 10)).astype(np.uint8)
    if dtype == "float32":  # in [0, 1]: scaled by 255 (only the whole array's range says so)
        imgs = imgs.astype(np.float32) / 255.0
    np.savez(tmp_path / "a.npz", images=imgs, labels=rng.integers(0, 3, 40),
             test_images=imgs[:5], test_labels=rng.integers(0, 3, 5))
    mn = tmp_path / "mn"
    mn.mkdir()
    raw = rng.integers(0, 256, (30, 9, 9), dtype=np.uint8)
    (mn / "train-images-idx3-ubyte").write_bytes(struct.pack(">I3I", 0x0803, 30, 9, 9) + raw.tobytes())
    for source in (f"npz:{tmp_path / 'a.npz'}", str(mn)):
        for kw in ({"image_size": None}, {"image_size": 8, "channels": 3}):
            mem = load(source, "off", holdout=0.2, **kw)
            assert not is_cached(mem.train.images)
            assert not is_cached(load(source, holdout=0.2, **kw).train.images)  # auto: small, in memory
            cached = load(source, str(tmp_path / f"c{len(kw)}{source[-3:]}"), holdout=0.2, **kw)
            assert is_cached(cached.train.images), source
            for part in ("train", "test"):
                a, b = getattr(mem, part), getattr(cached, part)
                assert torch.equal(a.images, b.images), (source, kw, part)
                assert (a.labels is None and b.labels is None) or torch.equal(a.labels, b.labels)
            assert mem.meta.get("cropped_from") == cached.meta.get("cropped_from")
    monkeypatch.setattr(arrays_mod, "THRESHOLD", 0)  # auto caches what is over the threshold
    assert is_cached(load(mn).train.images)


# --------------------------------------------------------------------------- killed, changed, full, mismatched
KILLER = textwrap.dedent("""
    import os, signal, sys
    import ganvae.data.cache_folder as cf
    real, seen = cf.decode_file, []
    def dying(path, size):
        seen.append(path)
        if len(seen) == 5:
            os.kill(os.getpid(), signal.SIGKILL)  # no cleanup, no finally: like a power cut or kill -9
        return real(path, size)
    cf.decode_file = dying
    from ganvae import api
    api.prepare_data(sys.argv[1], image_size=8, out=sys.argv[2], workers=1, progress=False)
""")


def test_a_killed_prepare_leaves_no_cache_that_looks_complete(tmp_path):
    root = make_folder(tmp_path / "pics")
    out = tmp_path / "caches" / "pics8"
    r = subprocess.run([sys.executable, "-c", KILLER, str(root), str(out)], capture_output=True, text=True,
                       timeout=120, env={**os.environ, "PYTHONPATH": str(HERE.parent / "src")})
    assert r.returncode == -9, r.stderr[-2000:]
    assert not out.exists() and open_cache(out) is None
    (tmp,) = leftovers(out.parent)  # the half-written build, never mistaken for a cache
    assert not (tmp / "complete").exists()
    d = load(root, str(out))
    assert d.meta["cache"] == "written" and torch.equal(d.train.images, load(root, "off").train.images)
    assert not leftovers(out.parent)  # the next build removed it


SLOW_BUILDER = textwrap.dedent("""
    import os, sys, time
    import ganvae.data.cache_folder as cf
    real = cf.decode_file
    hold = sys.argv[2] if len(sys.argv) > 2 else None
    def slow(path, size):  # the first builder decodes nothing while the test holds it (no race with start-up)
        while hold and os.path.exists(hold):
            time.sleep(0.05)
        return real(path, size)
    cf.decode_file = slow
    from ganvae.data import DataConfig, load_data
    d = load_data(DataConfig(source=sys.argv[1], image_size=8, workers=1), progress=True)
    print(d.meta["cache"])
""")


def test_a_second_process_waits_for_the_build_in_progress_and_reads_it(tmp_path):
    root = make_folder(tmp_path / "pics")
    env = {**os.environ, "PYTHONPATH": str(HERE.parent / "src")}
    hold = tmp_path / "hold"  # the first builder stays inside its build while this file exists
    hold.touch()
    first = subprocess.Popen([sys.executable, "-c", SLOW_BUILDER, str(root), str(hold)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=env)
    data = tmp_path / "env-cache" / "data"
    for _ in range(2400):  # until the first holds the lock and is writing
        if first.poll() is not None or leftovers(data):
            break
        time.sleep(0.05)
    assert leftovers(data), "the first process never started its build"
    second = subprocess.Popen([sys.executable, "-c", SLOW_BUILDER, str(root)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(x) for x in second.stderr], daemon=True).start()
    said, deadline = [], time.monotonic() + 120
    while time.monotonic() < deadline and not any("waiting for another process" in x for x in said):
        try:
            said.append(lines.get(timeout=0.5))
        except queue.Empty:
            if second.poll() is not None:
                break
    hold.unlink()  # the first build may finish now; the second reads what it wrote
    out1, err1 = first.communicate(timeout=120)
    out2 = second.stdout.read()
    second.wait(timeout=120)
    assert first.returncode == 0 and second.returncode == 0, err1[-2000:] + "".join(said)[-2000:]
    assert out1.split() == ["written"] and out2.split() == ["hit"]
    assert any("waiting for another process building the data cache" in x for x in said)
    assert len(caches(tmp_path / "env-cache")) == 1 and not leftovers(data)


def test_a_source_changing_while_it_is_cached_is_refused(tmp_path, monkeypatch):
    root = make_folder(tmp_path / "pics")
    real = folder_mod.decode_file

    def touching(path, size):
        if path.endswith("000.png"):
            Image.new("RGB", (9, 9), (1, 2, 3)).save(root / "011.png")
        return real(path, size)

    monkeypatch.setattr(folder_mod, "decode_file", touching)
    with pytest.raises(GanvaeError, match="changed while it was being cached") as e:
        load(root, workers=1)
    assert "\n" not in str(e.value) and str(root) in str(e.value)
    cache_root = tmp_path / "env-cache" / "data"
    assert not caches(tmp_path / "env-cache") and not leftovers(cache_root)
    monkeypatch.setattr(folder_mod, "decode_file", real)
    assert load(root).meta["cache"] == "written"  # once it is stable


@pytest.mark.parametrize("where", ["allocate", "write"])
def test_a_full_disk_is_one_line_naming_the_cache_and_leaves_nothing(tmp_path, monkeypatch, capsys, where):
    root = make_folder(tmp_path / "pics")
    out = tmp_path / "full" / "pics8"

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(cache_mod.os if where == "allocate" else folder_mod, "posix_fallocate" if where == "allocate"
                        else "_pwrite_all", full)
    with pytest.raises(GanvaeError, match="the disk is full") as e:
        load(root, str(out), workers=1)
    assert str(out) in str(e.value) and "\n" not in str(e.value)
    assert not out.exists() and not leftovers(out.parent)
    assert main(["data", "prepare", str(root), "--image-size", "8", "--out", str(out), "--workers", "1"]) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("ganvae:")]  # not the bar
    assert len(err) == 1 and "disk is full" in err[0] and str(out) in err[0]
    assert not out.exists() and not leftovers(out.parent)


def test_a_cache_made_for_another_image_size_is_refused(tmp_path, capsys):
    root = make_folder(tmp_path / "pics")
    out = tmp_path / "pics8"
    api.prepare_data(str(root), image_size=8, out=out, progress=False, log=None)
    with pytest.raises(GanvaeError, match=r"made for image size 8 \(not 16\)") as e:
        load(root, str(out), image_size=16)
    assert "\n" not in str(e.value)
    assert main(["data", "prepare", str(root), "--image-size", "16", "--out", str(out)]) == 2
    assert "image size 8 (not 16)" in capsys.readouterr().err
    assert open_cache(out).meta["options"]["image_size"] == 8  # untouched
    assert load(root, str(out)).meta["cache"] == "hit"
    # under auto another size is simply another cache
    assert load(root, image_size=16).train.images.shape[-1] == 16


def test_a_cache_path_holding_other_things_is_refused_and_left_alone(tmp_path):
    root = make_folder(tmp_path / "pics")
    (tmp_path / "f").write_text("x")
    with pytest.raises(GanvaeError, match="is a file"):
        load(root, str(tmp_path / "f"))
    with pytest.raises(GanvaeError, match="holds other files .*not a ganvae data cache"):
        load(root, str(root))  # --out pointing at the photos themselves: nothing is deleted
    assert len(list(root.glob("*.png"))) == 12
    (tmp_path / "empty").mkdir()
    assert load(root, str(tmp_path / "empty")).meta["cache"] == "written"
