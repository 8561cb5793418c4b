"""The inference export: ``model/config.json`` + ``model/model.safetensors`` + ``model/README.md`` (the card).

Loading needs no pickle: the JSON names the registered model and its config; the safetensors file holds
the tensors. By default only what inference needs (the model's ``inference_modules()``: the generator, and
a VAE's encoder and likelihood); ``save_model(..., inference_only=False)`` keeps everything (D too).
``config.json`` records the saved ``parts``. Where the run kept an EMA of the generator, the export holds
the EMA weights. :func:`export_graph` adds the generator as ONNX or TorchScript (latent codes -> images).
"""

from __future__ import annotations

import copy
import functools
import importlib.util
import io
import json
import logging
import warnings
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from .config import from_dict, to_dict
from .errors import GanvaeError
from .modelcard import write_card
from .models import MODELS, GenerativeModel, build
from .util.files import atomic_write_bytes
from .util.modes import eval_mode
from .version import __version__

FORMAT = "ganvae-model"
FORMAT_VERSION = 1
GRAPHS = {"onnx": "generator.onnx", "torchscript": "generator.pt"}  # --format -> file in model/
ONNX_PACKAGES = ("onnx", "onnxscript", "onnxruntime")  # the `onnx` extra: exporter and the loaded-back check
GRAPH_ATOL = 1e-4  # the largest difference allowed between the loaded-back graph and the model


def _tops(keys) -> list[str]:
    """The top-level names (``G``, ``D``, ``encoder``, ...) of state-dict keys, in order."""
    return list(dict.fromkeys(k.split(".", 1)[0] for k in keys))


def save_model(model: GenerativeModel, folder: str | Path, generator_net: torch.nn.Module | None = None,
               extra: dict | None = None, *, inference_only: bool = True) -> Path:
    """Write ``folder/config.json``, ``folder/model.safetensors`` (atomically, weights first) and the card
    ``folder/README.md``. ``inference_only``: only the model's ``inference_modules()`` (no discriminator);
    False: every tensor, D included. A graph (generator.onnx/.pt) of other weights than these is removed."""
    folder = Path(folder)
    left_out = _left_out(model)
    if left_out and not inference_only:
        raise GanvaeError(f"this model was loaded from an inference-only export: its {', '.join(left_out)} "
                          "weights are not real; save it with inference_only=True, or load the run's checkpoint")
    keep = set(model.inference_modules()) if inference_only else None
    state = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()
             if keep is None or k.split(".", 1)[0] in keep}
    if generator_net is not None:
        prefix = model.generator_name + "."
        for k, v in generator_net.state_dict().items():
            state[prefix + k] = v.detach().cpu().contiguous().clone()
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "ganvae_version": __version__,
        "model": model.registered_name,
        "family": model.family,
        "config": to_dict(model.config),
        "parts": _tops(state),
        "inference_only": inference_only,
        **(extra or {}),
    }
    data, weights = st_save(state, metadata={"format": FORMAT}), folder / "model.safetensors"
    if not (weights.is_file() and weights.stat().st_size == len(data) and weights.read_bytes() == data):
        for name in [*GRAPHS.values(), GRAPHS["onnx"] + ".data"]:  # a graph of other weights would mislead
            (folder / name).unlink(missing_ok=True)
    atomic_write_bytes(weights, data)
    atomic_write_bytes(folder / "config.json", (json.dumps(meta, indent=2) + "\n").encode())
    try:
        write_card(folder, meta, model)
    except (KeyError, TypeError, ValueError, AttributeError) as e:  # odd records: the export itself stands
        warnings.warn(f"{folder / 'README.md'}: model card not written ({type(e).__name__}: {e})", stacklevel=2)
    return folder


def _left_out(model: GenerativeModel) -> list[str]:
    """The parts of ``model`` its export did not hold (a model loaded from an inference-only export)."""
    parts = (getattr(model, "meta", None) or {}).get("parts")
    return [] if parts is None else [n for n in _tops(model.state_dict()) if n not in parts]


def model_folder(path: str | Path) -> Path:
    """A run folder or a model folder -> the model folder; a clear error otherwise."""
    p = Path(path)
    if not p.exists():
        raise GanvaeError(f"{p}: no such run or model folder")
    if (p / "config.json").is_file() and (p / "model.safetensors").is_file():
        return p
    if (p / "model" / "config.json").is_file():
        return p / "model"
    raise GanvaeError(f"{p}: no exported model here (expected {p}/model/config.json; has training finished?)")


def read_model_meta(path: str | Path) -> dict:
    folder = model_folder(path)
    try:
        meta = json.loads((folder / "config.json").read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise GanvaeError(f"{folder / 'config.json'}: not valid JSON") from None
    if meta.get("format") != FORMAT:
        raise GanvaeError(f"{folder / 'config.json'}: not a ganvae model export")
    return meta


def load_model(path: str | Path, device: str | torch.device = "cpu") -> GenerativeModel:
    """Rebuild a model from a run or model folder; eval mode, on ``device``.

    The weights' shapes are checked against the config (on the meta device, nothing allocated) before
    the model is built, so a damaged or edited export is one clear error, not a traceback or a huge
    allocation. An inference-only export (``parts`` in config.json) loads its parts strictly; the model
    then reports ``has_discriminator`` False and ``discriminate`` says the discriminator is not in the
    export. Exports without ``parts`` (older ones) hold everything.
    """
    folder = model_folder(path)
    meta = read_model_meta(folder)
    weights = folder / "model.safetensors"
    parts = meta.get("parts")
    try:
        spec = MODELS.get(meta["model"])
        cfg = from_dict(spec.config_class, meta["config"], "model")
        if parts is not None and not (isinstance(parts, list) and all(isinstance(p, str) for p in parts)):
            raise TypeError(f"parts: expected a list of names, got {parts!r}")
    except (KeyError, TypeError) as e:
        raise GanvaeError(f"{folder / 'config.json'}: not a complete ganvae model export ({e})") from None
    except GanvaeError as e:
        raise GanvaeError(f"{folder / 'config.json'}: {e}") from None
    if not weights.is_file():
        raise GanvaeError(f"{weights}: missing")
    try:
        state = st_load(weights.read_bytes())
    except (SafetensorError, ValueError, OSError) as e:
        raise GanvaeError(f"{weights}: unreadable safetensors file ({str(e)[:120]})") from None
    _check_shapes(meta["model"], cfg, state, weights, parts)
    model = build(meta["model"], cfg)
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if parts is None or k.split(".", 1)[0] in parts]
    if missing or unexpected:
        raise GanvaeError(f"{weights}: does not match the config (missing {list(missing)[:3]}, "
                          f"unexpected {list(unexpected)[:3]})")
    model.meta = meta
    if _left_out(model) and model.has_discriminator:  # D is never an inference part: not in this export
        model.has_discriminator = False  # an instance attribute over the class's capability flag
        model.discriminate = functools.partial(_not_exported, folder, list(parts))
    return model.to(device).eval()


def _not_exported(folder: Path, parts: list[str], *args, **kwargs):
    raise GanvaeError(f"{folder}: this export holds only what inference needs ({', '.join(parts)}); the "
                      "discriminator is not in it. Use the run's checkpoint (checkpoints/latest.pt), or export "
                      "with save_model(..., inference_only=False)")


def _check_shapes(name: str, cfg, state: dict, weights: Path, parts: list[str] | None = None) -> None:
    """The config's model, built on the meta device, must have exactly the weights' names and shapes
    (of its ``parts``, when the export names them)."""
    try:
        with torch.device("meta"):
            expected = build(name, cfg).state_dict()
    except GanvaeError as e:
        raise GanvaeError(f"{weights.parent / 'config.json'}: {e}") from None
    except (RuntimeError, ValueError, TypeError) as e:
        raise GanvaeError(f"{weights.parent / 'config.json'}: cannot build {name} from it "
                          f"({str(e).splitlines()[0][:160]})") from None
    if parts is not None:
        expected = {k: v for k, v in expected.items() if k.split(".", 1)[0] in parts}
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise GanvaeError(f"{weights}: does not match the config (missing {missing[:3]}, unexpected {unexpected[:3]})")
    for k, t in expected.items():
        if tuple(t.shape) != tuple(state[k].shape):
            raise GanvaeError(f"{weights}: {k} has shape {tuple(state[k].shape)} but the config "
                              f"(config.json) makes {tuple(t.shape)}; the export is damaged or was edited")


# ------------------------------------------------------------------------------------------ graphs
class GeneratorGraph(torch.nn.Module):
    """Latent codes (N, latent_dim [+1: a conditional model's class column]) -> images (N, C, H, W) in [0, 1]:
    ``model.decode_latent`` with the generator network, clamped. Holds the generator only (no D)."""

    def __init__(self, model: GenerativeModel):
        super().__init__()
        self.net = model.generator_net()
        self._decode = model.decode_latent  # a plain attribute: the rest of the model is not part of the graph

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self._decode(z, self.net).clamp(0, 1)


def check_graph_format(fmt: str) -> None:
    """A one-line error unless graphs of format ``fmt`` can be written here (ONNX needs optional packages)."""
    if fmt not in GRAPHS:
        raise GanvaeError(f"--format {fmt}: expected one of {', '.join(GRAPHS)}")
    lacking = [p for p in ONNX_PACKAGES if fmt == "onnx" and importlib.util.find_spec(p) is None]
    if lacking:
        raise GanvaeError(f"--format onnx needs the {', '.join(ONNX_PACKAGES)} packages ({', '.join(lacking)} not "
                          "installed): pip install 'ganvae[onnx]', or use --format torchscript")


def export_graph(model: GenerativeModel, folder: str | Path, fmt: str, log=print) -> Path:
    """Write ``folder/generator.onnx`` (``fmt`` "onnx") or ``folder/generator.pt`` (TorchScript), load it back
    and check its outputs against the model's on fresh codes; update the card. Returns the file."""
    check_graph_format(fmt)
    folder = Path(folder)
    path = folder / GRAPHS[fmt]
    if model.device.type != "cpu":  # graphs are traced and checked on the CPU; the caller's model stays put
        model = copy.deepcopy(model).cpu()
    graph = GeneratorGraph(model).eval()
    example = model.latent(4, torch.Generator().manual_seed(0))
    check = model.latent(3, torch.Generator().manual_seed(1))  # another batch size: the batch axis is free
    with eval_mode(model, graph), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        want = graph(check)
        got = _onnx(graph, example, check, path) if fmt == "onnx" else _torchscript(graph, example, check, path)
    diff = float((got - want).abs().max())
    if not diff <= GRAPH_ATOL:
        for f in (path, path.with_name(path.name + ".data")):
            f.unlink(missing_ok=True)
        raise GanvaeError(f"{path}: the exported graph differs from the model by {diff:.3g} (> {GRAPH_ATOL:g}); "
                          "not written")
    meta = read_model_meta(folder)
    write_card(folder, meta, model)
    if log:
        image = ", ".join(map(str, want.shape[1:]))
        log(f"wrote {path} (latent codes (N, {example.shape[1]}) -> images (N, {image}) in [0, 1]; loaded back: "
            f"max difference {diff:.2g})")
    return path


def _torchscript(graph: torch.nn.Module, example: torch.Tensor, check: torch.Tensor, path: Path) -> torch.Tensor:
    traced = torch.jit.trace(graph, example, check_trace=False)
    buf = io.BytesIO()
    torch.jit.save(traced, buf)
    atomic_write_bytes(path, buf.getvalue())
    return torch.jit.load(str(path), map_location="cpu")(check)


def _onnx(graph: torch.nn.Module, example: torch.Tensor, check: torch.Tensor, path: Path) -> torch.Tensor:
    import onnxruntime  # check_graph_format has seen it (and onnx, onnxscript, which torch.onnx.export uses)

    big = sum(p.numel() * p.element_size() for p in graph.parameters()) > 1.5 * 2**30  # ONNX's 2 GB protobuf cap
    quiet = logging.getLogger("torch.onnx")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        program = torch.onnx.export(graph, (example,), input_names=["z"], output_names=["images"], verbose=False,
                                    dynamic_shapes={"z": {0: torch.export.Dim("batch")}}, dynamo=True)
    finally:
        quiet.setLevel(level)
    if big:  # weights beside the graph, in generator.onnx.data
        program.save(str(path), external_data=True)
    else:
        atomic_write_bytes(path, program.model_proto.SerializeToString())
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return torch.from_numpy(session.run(None, {"z": check.numpy()})[0])
