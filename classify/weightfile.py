"""`--weights FILE`: ImageNet weights of an architecture's body from a local file, checked before training.

The file is safetensors, or a PyTorch state dict read with `torch.load(weights_only=True)` (no
arbitrary unpickling), holding the plain torchvision / timm model's tensors under that library's
names (`layer1.0.conv1.weight`, `blocks.0.0.conv_dw.weight`; `{"state_dict": ...}` / `{"model": ...}`
wrappers and DataParallel's `module.` prefix are unwrapped), or a run's model.safetensors. Only the
body is taken: the ImageNet classifier (`fc.*`, `classifier.*`) or a run's head is ignored, since
the run trains a new head.

fastai renames the body: create_vision_model keeps the torchvision children up to the pooling
layer as `0.<index>.…`, create_timm_model wraps the timm model (classifier removed) as `0.model.…`.
`body_layout` derives that mapping by building the plain model (on the meta device: no memory, no
weights) and cutting it the way fastai does. Every body tensor must be in the file with the
model's shape; else the error names the first mismatches and the registry architecture the file
fits (compared by names and shapes, and by shapes in order for files with other names).
"""
from __future__ import annotations

import hashlib
import pickle
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch
from torch import nn

from classify import archs

OPTIONAL = "num_batches_tracked"  # BatchNorm's step counter: not a weight; older checkpoints lack it
SHOWN = 3  # mismatched tensors named per kind in an error message


class WeightsFileError(ValueError):
    """A --weights file that cannot be used for the chosen architecture; the message names the file and why."""


@dataclass(frozen=True)
class BodyWeights:
    path: Path    # the file, resolved
    sha256: str   # hex digest of the file's bytes, recorded in config.json
    arch: str     # the --arch it was checked against
    state: dict   # {key in the fastai model: tensor} for every body tensor the file supplies

    def record(self) -> dict:
        """Return config.json's description of the file: name, path, sha256 and tensor count."""
        return {"file": self.path.name, "path": str(self.path), "sha256": self.sha256, "tensors": len(self.state)}


@dataclass(frozen=True)
class BodyLayout:
    plain: dict   # {plain torchvision/timm key: shape} of the whole model with its ImageNet classifier, in order
    body: dict    # {plain key: key in the fastai model} for the body's tensors, in order


def read_body_weights(path, arch_name: str) -> BodyWeights:
    """Return the body weights in `path` for `arch_name`, keyed as in the fastai model; WeightsFileError when
    the file cannot be read, is not a plain state dict, or does not fit the architecture's body."""
    path = Path(path).expanduser().resolve()
    state = read_state_dict(path)
    arch = archs.get_arch(arch_name)
    if arch.library == "scratch":
        raise WeightsFileError(f"--weights {path}: {arch_name} is trained from scratch and has no ImageNet body; "
                               f"use an ImageNet architecture ({', '.join(pretrained_arch_names())})")
    mapped, problems = match_body(state, body_layout(arch_name))
    if problems:
        raise WeightsFileError(f"weights file {path} does not fit the body of {arch_name}:\n  "
                               + ";\n  ".join(problems) + f".\n  {identify(state)}")
    return BodyWeights(path, file_sha256(path), arch_name, mapped)


def load_body(model: nn.Module, weights: BodyWeights):
    """Copy the file's body tensors into `model` (built by fastai for weights.arch); the head keeps its weights."""
    model_state = model.state_dict()
    wrong = [k for k, v in weights.state.items() if k not in model_state or model_state[k].shape != v.shape]
    if wrong:  # body_layout and fastai disagree: a fastai version this code does not know
        raise WeightsFileError(f"weights file {weights.path}: the {weights.arch} model built by fastai has no "
                               f"tensor {wrong[0]} of that shape")
    model.load_state_dict(weights.state, strict=False)


# ---------------------------------------------------------------- reading the file

def read_state_dict(path: Path) -> dict:
    """Return {name: tensor} from a safetensors file or a weights_only PyTorch file; WeightsFileError otherwise."""
    if not path.exists():
        raise WeightsFileError(f"weights file {path} does not exist")
    if not path.is_file():
        raise WeightsFileError(f"weights file {path} is not a file")
    try:
        with open(path, "rb") as f:
            head = f.read(9)
    except OSError as e:
        raise WeightsFileError(f"cannot read weights file {path}: {e.strerror or e}") from None
    if head[:2] == b"PK" or head[:1] == b"\x80":  # torch.save's zip archive, or its legacy pickle format
        return unwrap(load_torch(path), path)
    if len(head) == 9 and head[8:9] == b"{":  # safetensors: 8-byte header length, then the JSON header
        from safetensors import SafetensorError
        from safetensors.torch import load_file
        try:
            return load_file(str(path), device="cpu")
        except (SafetensorError, OSError, ValueError) as e:
            raise WeightsFileError(f"cannot read weights file {path} as safetensors ({e}): "
                                   f"is it truncated or damaged?") from None
    raise WeightsFileError(f"weights file {path} is neither safetensors nor a PyTorch state dict "
                           f"({path.stat().st_size} bytes; it begins with {head[:8]!r})")


def load_torch(path: Path):
    """Return torch.load(path, weights_only=True) on the CPU; WeightsFileError naming the file when it fails."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:  # weights_only refused a Python object
        refused = next((line for line in str(e).splitlines() if "Unsupported global" in line), "")
        refused = refused[refused.find("Unsupported"):].split(". Please")[0]  # which class it would have built
        raise WeightsFileError(
            f"weights file {path} is a pickle holding Python objects, not a plain state dict, and is not unpickled "
            f"(weights_only=True){': ' + refused if refused else ''}. Save the weights alone: "
            f"torch.save(model.state_dict(), FILE) or safetensors") from None
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        reason = str(e).splitlines()[0].split(". ")[0] if str(e) else type(e).__name__  # the first sentence
        raise WeightsFileError(f"cannot read weights file {path} ({reason}): is it truncated or damaged?") from None


def unwrap(obj, path: Path) -> dict:
    """Return the {name: tensor} state dict inside a torch.load result (checkpoint wrappers and `module.` removed)."""
    if isinstance(obj, dict):
        for key in ("state_dict", "model"):  # common training-checkpoint wrappers
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj:
        raise WeightsFileError(f"weights file {path} holds a {type(obj).__name__}"
                               f"{' that is empty' if isinstance(obj, dict) else ''}, not a state dict "
                               f"(a mapping of tensor names to tensors)")
    not_tensors = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if not_tensors:
        k = not_tensors[0]
        raise WeightsFileError(f"weights file {path} is not a plain state dict: {k!r} holds "
                               f"{type(obj[k]).__name__} {obj[k]!r:.40}, not a tensor")
    if all(str(k).startswith("module.") for k in obj):  # saved from DataParallel / DistributedDataParallel
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return dict(obj)


def file_sha256(path: Path) -> str:
    """Return the hex sha256 of the file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ---------------------------------------------------------------- the body's names

def pretrained_arch_names() -> list[str]:
    """Return the registry architectures that have an ImageNet body."""
    return [name for name, arch in archs.ARCHS.items() if arch.library != "scratch"]


@lru_cache(maxsize=None)
def body_layout(arch_name: str) -> BodyLayout:
    """Return the plain model's tensor names and shapes, and where fastai puts the body's tensors."""
    from fastai.vision.learner import _default_meta, create_body, model_meta
    arch = archs.get_arch(arch_name)
    with torch.device("meta"):  # shapes only: nothing allocated, nothing initialized for real
        if arch.library == "torchvision":
            factory = archs.torchvision_factory(arch.source)
            plain_model = factory()
            plain = shapes(plain_model)
            children = list(plain_model.named_children())
            body_model = create_body(plain_model, 3, False, model_meta.get(factory, _default_meta)["cut"])
            body = {}
            for index, child in enumerate(body_model):  # fastai's body: nn.Sequential of the first children
                name = next(n for n, c in children if c is child)
                body.update({f"{name}.{k}": f"0.{index}.{k}" for k in child.state_dict()})
        else:
            import timm
            plain = shapes(timm.create_model(arch.source))
            # create_timm_model: the model without its classifier, inside fastai's TimmBody (`.model`)
            body = {k: f"0.model.{k}" for k in timm.create_model(arch.source, num_classes=0).state_dict()}
    return BodyLayout(plain, {k: body[k] for k in plain if k in body})


def shapes(model_or_state) -> dict:
    """Return {name: shape tuple} of a module's state dict or of a state dict, in order."""
    state = model_or_state.state_dict() if isinstance(model_or_state, nn.Module) else model_or_state
    return {k: tuple(v.shape) for k, v in state.items()}


def expected_tensors(state: dict, layout: BodyLayout) -> tuple[dict, tuple]:
    """Return ({file key: (fastai key, shape)} for the body, key prefixes the file may hold besides) in the naming
    `state` uses: the plain model's (extras: its ImageNet classifier) or a run's model.safetensors (extras: head)."""
    if any(k in state for k in layout.body) or not any(v in state for v in layout.body.values()):
        return ({k: (v, layout.plain[k]) for k, v in layout.body.items()},
                tuple(k for k in layout.plain if k not in layout.body))
    return {v: (v, layout.plain[k]) for k, v in layout.body.items()}, ("1.",)  # fastai's head is model[1]


def match_body(state: dict, layout: BodyLayout) -> tuple[dict, list[str]]:
    """Return ({fastai key: tensor} for the body, problems); problems name the first mismatched tensors."""
    expected, ignored = expected_tensors(state, layout)
    missing = [k for k in expected if k not in state and not k.endswith(OPTIONAL)]
    wrong = [k for k, (_, shape) in expected.items() if k in state and tuple(state[k].shape) != shape]
    extra = [k for k in state if k not in expected and not k.startswith(ignored)]
    problems = []
    if wrong:
        problems.append("different shapes: " + ", ".join(
            f"{k} is {tuple(state[k].shape)} in the file, {expected[k][1]} in the model" for k in wrong[:SHOWN])
            + more(wrong))
    if missing:
        problems.append("missing from the file: " + ", ".join(missing[:SHOWN]) + more(missing))
    if extra:
        problems.append("not in the model: " + ", ".join(extra[:SHOWN]) + more(extra))
    return {model_key: state[k] for k, (model_key, _) in expected.items() if k in state}, problems


def more(items: list) -> str:
    """Return ' (and N more)' when `items` holds more than are shown."""
    return f" (and {len(items) - SHOWN} more)" if len(items) > SHOWN else ""


def identify(state: dict) -> str:
    """Return a sentence naming the registry architecture whose body the tensors in `state` fit, or the closest."""
    file_shapes = [tuple(v.shape) for v in state.values()]
    scores = []
    for name in pretrained_arch_names():
        layout = body_layout(name)
        mapped, problems = match_body(state, layout)
        if not problems:
            return f"The file fits {name} (all {len(mapped)} body tensors match): use --arch {name}."
        if file_shapes == list(layout.plain.values()):
            return (f"Its {len(file_shapes)} tensors have the shapes of {name}'s, in the same order, under other "
                    f"names: rename them with classify.weightfile.rename_in_order (see the README) and use "
                    f"--arch {name}.")
        expected, _ = expected_tensors(state, layout)
        fits = sum(tuple(state[k].shape) == shape for k, (_, shape) in expected.items() if k in state)
        scores.append((fits / max(1, len(layout.body)), fits, name, len(layout.body)))
    _, fits, name, total = max(scores)
    if fits == 0:
        return f"It fits none of the architectures here ({', '.join(pretrained_arch_names())})."
    return f"It fits none of the architectures here; the closest is {name} ({fits} of {total} body tensors match)."


def rename_in_order(state: dict, arch_name: str) -> dict:
    """Return `state`'s tensors (contiguous) under the plain model's names of `arch_name`, paired in order; ValueError unless
    the file has exactly as many tensors with the same shapes in the same order (e.g. another port of the model)."""
    plain = body_layout(arch_name).plain
    pairs = list(zip(plain.items(), state.items()))
    if len(state) != len(plain):
        raise ValueError(f"{len(state)} tensors, but {arch_name} has {len(plain)}: they cannot be paired in order")
    for (name, shape), (key, tensor) in pairs:
        if tuple(tensor.shape) != shape:
            raise ValueError(f"{key} {tuple(tensor.shape)} would become {name} {shape}: the shapes differ, "
                             f"so the order is not {arch_name}'s")
    return {name: tensor.contiguous() for (name, _), (_, tensor) in pairs}  # contiguous: what safetensors saves
