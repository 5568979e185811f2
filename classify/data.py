"""Training and validation batches from images/{train,val}/{bonafide,spoof}/*.png, checked against spec.json.

Two paths build fastai `DataLoaders` whose batches are the model input described in
`classify.model_io` (float (B,3,H,W), ImageNet-normalized replicated grayscale):
- "memory" (the fast path): every PNG is decoded once, in parallel threads, into one uint8
  tensor (N,1,H,W) kept on the training GPU when it fits there (else in host memory, each batch
  gathered into pinned memory and copied asynchronously: "staging"). A batch is one `index_select` on that tensor;
  the shuffled indices go to the device once per epoch; augmentation runs as batch transforms on
  the device. No worker processes, no per-item Python, no per-batch host synchronization.
- "datablock" (the classic fastai idiom): a `DataBlock` of `ImageBlock(cls=PILImageBW)` and
  `CategoryBlock` split by grandparent folder, streaming PNGs from disk with bounded memory
  and the same batch transforms. Used when the images would not fit in memory, or on request.
Augmentation is spectrogram-safe only: random circular time shift and SpecAugment-style time
and frequency masks (no flips, rotations, warps or zooms).
"""
from __future__ import annotations

import os
import struct
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import torch
from fastai.data.core import DataLoaders
from fastai.data.load import DataLoader
from fastai.data.core import ItemTransform, Pipeline  # fasttransform (fastai 2.8) or fastcore (2.7)
from fastai.torch_core import rank_distrib
from fastprogress.fastprogress import progress_bar

from classify.devices import default_device
from classify.model_io import normalize_channels, resize_images, unit_float
from spec2img.config import SPEC_FILE, SpecConfig, load_spec
from spec2img.rows import LABELS

TRAIN_SPLITS = ("train", "val")  # what training reads; images/test is left for evaluation
MEMORY_FRACTION = 0.5            # the in-memory path may use at most this share of available host RAM
GPU_FRACTION = 0.25              # ... and this share of free GPU memory for keeping the images on the GPU
STORAGES = ("auto", "device", "host")  # where the memory path keeps the images (TrainConfig.storage)


class ImagesError(ValueError):
    """images/ is missing, incomplete or disagrees with spec.json; the message says what to fix."""


@dataclass(frozen=True)
class AugmentConfig:
    time_shift: float = 0.5       # max circular shift along time, as a fraction of the width (either way)
    time_masks: int = 2           # SpecAugment time masks per image
    time_mask_frac: float = 0.1   # max width of one time mask, as a fraction of the width
    freq_masks: int = 2           # SpecAugment frequency masks per image
    freq_mask_frac: float = 0.1   # max height of one frequency mask, as a fraction of the height


@dataclass
class ImageIndex:
    """The PNG files of one split, as found on disk."""
    split: str
    paths: list[Path] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)   # index into LABELS

    def counts(self) -> dict[str, int]:
        """Return {label name: number of images}."""
        return {name: self.labels.count(i) for i, name in enumerate(LABELS)}


# ---------------------------------------------------------------- checking images/ up front

def png_header(path: Path) -> tuple[int, int, int, int]:
    """Return (height, width, bit_depth, color_type) from a PNG's IHDR chunk; ValueError if it is not a PNG."""
    with open(path, "rb") as f:
        head = f.read(26)
    if len(head) < 26 or head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        raise ValueError("not a PNG file (bad signature or header)")
    width, height = struct.unpack(">II", head[16:24])
    return height, width, head[24], head[25]


def index_split(images: Path, split: str) -> ImageIndex:
    """Return the PNGs of images/<split>/<label>/; ImagesError for a missing split or a stray folder."""
    folder = images / split
    if not folder.is_dir():
        raise ImagesError(f"{folder} not found: images/ needs {split}/{{{','.join(LABELS)}}}/ folders of PNGs "
                          f"(convert with `spec2img SRC --out {images}`)")
    index = ImageIndex(split)
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        if sub.name not in LABELS:
            raise ImagesError(f"{sub} is not a label folder: {folder} may only hold {', '.join(LABELS)}/")
        pngs = sorted(sub.glob("*.png"))
        index.paths += pngs
        index.labels += [LABELS.index(sub.name)] * len(pngs)
    return index


def check_split(index: ImageIndex, images: Path):
    """Raise ImagesError when a split is empty or has one class only."""
    counts = index.counts()
    if not index.paths:
        raise ImagesError(f"{images / index.split} holds no PNG images: the {index.split} split is empty "
                          f"(check the conversion's manifest.csv; every split needs both classes)")
    missing = [k for k, v in counts.items() if v == 0]
    if missing:
        raise ImagesError(f"the {index.split} split has one class only ({counts}): "
                          f"{images / index.split / missing[0]}/ is empty or missing; training and EER need "
                          f"both bonafide and spoof images in train and val")


def check_headers(index: ImageIndex, shape: tuple[int, int], log=print) -> ImageIndex:
    """Return `index` without unreadable PNGs (each reported by name); ImagesError if sizes disagree with spec.json."""
    keep, wrong, broken = ImageIndex(index.split), [], 0
    for path, label in zip(index.paths, index.labels):
        try:
            h, w, depth, color = png_header(path)
        except (OSError, ValueError) as e:
            log(f"skipped {path}: {e}")
            broken += 1
            continue
        if (h, w) != shape:
            wrong.append(f"{path} is {h}x{w}")
        elif depth != 8 or color != 0:
            log(f"skipped {path}: not an 8-bit grayscale PNG (bit depth {depth}, color type {color})")
            broken += 1
        else:
            keep.paths.append(path)
            keep.labels.append(label)
    if wrong:
        raise ImagesError(f"{len(wrong)} image(s) in {index.split}/ disagree with spec.json, which gives "
                          f"{shape[0]}x{shape[1]} (height x width): " + "; ".join(wrong[:5])
                          + (" ..." if len(wrong) > 5 else "")
                          + ". Reconvert them with the same settings (spec2img ... --out images).")
    if broken:
        log(f"{broken} unreadable image(s) skipped in {index.split}/")
    return keep


def scan_images(images, log=print) -> tuple[SpecConfig, dict, dict[str, ImageIndex]]:
    """Return (spec, spec.json dict, {split: checked ImageIndex}) for train and val; ImagesError says what to fix."""
    import json
    images = Path(images)
    if not images.is_dir():
        raise ImagesError(f"images folder {images} not found: convert audio first "
                          f"(`make images` or `spec2img SRC --out {images}`)")
    spec = load_spec(images)  # FileNotFoundError naming spec.json and what to run
    spec_dict = json.loads((images / SPEC_FILE).read_text())
    found = {}
    for split in TRAIN_SPLITS:
        index = index_split(images, split)
        check_split(index, images)
        index = check_headers(index, spec.image_shape, log)
        check_split(index, images)
        found[split] = index
    return spec, spec_dict, found


# ---------------------------------------------------------------- decoding into memory

def read_png_gray(path: Path) -> np.ndarray:
    """Return the (H, W) uint8 pixels of an 8-bit grayscale PNG; OSError with the reason if unreadable."""
    import cv2
    pixels = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if pixels is None:  # cv2 gives no reason: ask PIL for one
        from PIL import Image
        try:
            with Image.open(path) as im:
                pixels = np.asarray(im.convert("L") if im.mode != "L" else im)
        except Exception as e:
            raise OSError(f"cannot decode: {e}") from e
    if pixels.dtype != np.uint8 or pixels.ndim != 2:
        raise OSError(f"not 8-bit grayscale (array {pixels.dtype} {pixels.shape})")
    return pixels


def decode_images(paths: list[Path], shape: tuple[int, int], workers: int = 0, log=print,
                  label: str = "") -> tuple[np.ndarray, np.ndarray]:
    """Return (uint8 (N,H,W) pixels, bool (N,) ok) decoding `paths` in parallel threads; failures are logged."""
    pixels = np.zeros((len(paths), *shape), np.uint8)
    ok = np.ones(len(paths), bool)
    chunk = 256

    def decode_chunk(start: int) -> list[str]:
        errors = []
        for i in range(start, min(start + chunk, len(paths))):
            try:
                img = read_png_gray(paths[i])
                if img.shape != shape:
                    raise OSError(f"size {img.shape} differs from spec.json's {shape}")
                pixels[i] = img
            except OSError as e:
                ok[i] = False
                errors.append(f"skipped {paths[i]}: {e}")
        return errors

    workers = workers or min(32, os.cpu_count() or 1)
    starts = range(0, len(paths), chunk)
    with ThreadPoolExecutor(workers) as pool:  # cv2 and PIL release the GIL while decoding
        bar = progress_bar(pool.map(decode_chunk, starts), total=len(starts), display=rank_distrib() == 0)
        bar.comment = label
        for errors in bar:
            for e in errors:
                log(e)
    return pixels, ok


class ImageTensors(torch.utils.data.Dataset):
    """Decoded images of one split: uint8 `images` (N,1,H,W), int64 `labels` (N,), `ids` (PNG stems), `paths`."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, paths: list[Path], vocab=LABELS):
        self.images, self.labels, self.paths, self.vocab = images, labels, list(paths), list(vocab)
        self.ids = [p.stem for p in self.paths]

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return self.images[i], self.labels[i]

    def to(self, device) -> "ImageTensors":
        """Return the same images held on `device`."""
        return ImageTensors(self.images.to(device), self.labels.to(device), self.paths, self.vocab)

    def new_empty(self) -> "ImageTensors":
        """Return an empty set of the same image size (what fastai's `export` pickles instead of the data)."""
        return ImageTensors(self.images[:0].cpu(), self.labels[:0].cpu(), [], self.vocab)


def load_split_tensors(index: ImageIndex, shape: tuple[int, int], workers: int = 0, log=print) -> ImageTensors:
    """Return the split decoded into CPU tensors, without the images that failed to decode."""
    pixels, ok = decode_images(index.paths, shape, workers, log, label=f"decoding {index.split}")
    keep = np.flatnonzero(ok)
    if len(keep) < len(ok):
        log(f"{len(ok) - len(keep)} image(s) of {index.split}/ could not be decoded and were skipped")
        pixels = pixels[keep]
    labels = torch.as_tensor(np.asarray(index.labels)[keep], dtype=torch.long)
    return ImageTensors(torch.from_numpy(pixels).unsqueeze(1), labels, [index.paths[i] for i in keep])


# ---------------------------------------------------------------- batch transforms (both paths)

def random_time_shift(x: torch.Tensor, max_frac: float) -> torch.Tensor:
    """Return x (B,C,H,W) with each image rolled circularly along width by up to ±max_frac·W columns."""
    b, c, h, w = x.shape
    limit = int(max_frac * w)
    if limit < 1:
        return x
    shifts = torch.randint(-limit, limit + 1, (b, 1), device=x.device)
    cols = (torch.arange(w, device=x.device).unsqueeze(0) - shifts) % w  # (B, W) source column
    return x.gather(3, cols.view(b, 1, 1, w).expand(b, c, h, w))


def random_band_masks(b: int, size: int, n_masks: int, max_frac: float, device) -> torch.Tensor:
    """Return a bool (B, size) mask, True inside `n_masks` random bands of up to max_frac·size per row."""
    mask = torch.zeros(b, size, dtype=torch.bool, device=device)
    limit = int(max_frac * size)
    if limit < 1:
        return mask
    pos = torch.arange(size, device=device).unsqueeze(0)
    for _ in range(n_masks):
        width = torch.randint(0, limit + 1, (b, 1), device=device)
        start = (torch.rand(b, 1, device=device) * (size - width + 1)).long()
        mask |= (pos >= start) & (pos < start + width)
    return mask


def spec_augment(x: torch.Tensor, cfg: AugmentConfig) -> torch.Tensor:
    """Return x (B,C,H,W) time-shifted and with time/frequency bands set to each image's mean."""
    b, _, h, w = x.shape
    x = random_time_shift(x, cfg.time_shift)
    time = random_band_masks(b, w, cfg.time_masks, cfg.time_mask_frac, x.device).view(b, 1, 1, w)
    freq = random_band_masks(b, h, cfg.freq_masks, cfg.freq_mask_frac, x.device).view(b, 1, h, 1)
    fill = x.mean(dim=(1, 2, 3), keepdim=True)
    return torch.where(time | freq, fill, x)


class UnitFloatBatch(ItemTransform):
    """Batch transform: uint8 images → plain float tensor in [0, 1], resized to `size` when given."""
    order = 11  # after fastai's IntToFloatTensor (10) on the datablock path

    def __init__(self, size: tuple[int, int] | None = None):
        super().__init__()
        self.size = size

    def encodes(self, b):
        x = b[0].as_subclass(torch.Tensor)  # plain tensors: fastai's tensor subclasses slow every op down
        x = unit_float(x, self.size) if x.dtype == torch.uint8 else resize_images(x, self.size)
        return (x, *b[1:])


class SpecAugmentBatch(ItemTransform):
    """Training-only batch transform: `spec_augment` on the device."""
    order, split_idx = 20, 0

    def __init__(self, cfg: AugmentConfig = AugmentConfig()):
        super().__init__()
        self.cfg = cfg

    def encodes(self, b):
        return (spec_augment(b[0], self.cfg), *b[1:])


class ModelInputBatch(ItemTransform):
    """Batch transform: [0, 1] grayscale (B,1,H,W) → normalized 3-channel model input, channels_last."""
    order = 99

    def __init__(self, mean, std):
        super().__init__()
        self.mean, self.std = list(mean), list(std)

    def encodes(self, b):
        x = normalize_channels(b[0], self.mean, self.std).contiguous(memory_format=torch.channels_last)
        return (x, *(t.as_subclass(torch.Tensor) if isinstance(t, torch.Tensor) else t for t in b[1:]))


def batch_transforms(mean, std, size=None, augment: AugmentConfig | None = AugmentConfig()) -> list:
    """Return the batch transforms shared by both paths (augmentation only on the training split)."""
    tfms = [UnitFloatBatch(size), ModelInputBatch(mean, std)]
    return tfms + ([SpecAugmentBatch(augment)] if augment is not None else [])


# ---------------------------------------------------------------- the in-memory DataLoader

class TensorBatchDL(DataLoader):
    """fastai DataLoader whose batches are slices of an in-memory `ImageTensors` (shuffled per epoch).

    `wgts` (optional, one per image) draws each epoch's indices with replacement in proportion to
    them (a balanced sampler); otherwise a shuffle without replacement, or order when shuffle=False.

    `stage` (set when the images are in host memory and the batches go to a GPU): each batch is
    gathered into a staging buffer (pinned when CUDA is there) and copied to `device` asynchronously.
    """

    def __init__(self, dataset: ImageTensors = None, bs: int = 64, wgts=None, stage: bool = False, **kwargs):
        self.wgts = None if wgts is None else np.asarray(wgts, np.float64) / np.sum(wgts)
        self.stage = stage
        super().__init__(dataset=dataset, bs=bs, **kwargs)

    def get_idxs(self):
        if self.wgts is None or not self.shuffle or self.n == 0:
            return super().get_idxs()
        rng = np.random.default_rng(self.rng.randint(0, 2 ** 32 - 1))
        return rng.choice(self.n, self.n, p=self.wgts).tolist()

    def create_batches(self, samps):
        idxs = torch.as_tensor(list(samps), dtype=torch.long)
        images, labels = self.dataset.images, self.dataset.labels
        pin = torch.cuda.is_available()  # pinned memory needs the CUDA driver; without it the same path, unpinned
        if images.device.type != "cpu":  # one asynchronous copy of the epoch's order to the images' device
            idxs = (idxs.pin_memory() if pin else idxs).to(images.device, non_blocking=True)
        stop = len(idxs) - (len(idxs) % self.bs if self.drop_last else 0)
        for start in range(0, stop, self.bs):
            batch = idxs[start:start + self.bs]
            if self.stage:  # host images, GPU training: gather into pinned memory, copy asynchronously
                x = torch.empty((len(batch), *images.shape[1:]), dtype=images.dtype, pin_memory=pin)
                y = torch.empty((len(batch),), dtype=labels.dtype, pin_memory=pin)
                torch.index_select(images, 0, batch, out=x)
                torch.index_select(labels, 0, batch, out=y)
                yield x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
            else:
                yield images.index_select(0, batch), labels.index_select(0, batch)

    def new(self, dataset=None, cls=None, **kwargs):
        same = dataset is None or dataset is self.dataset
        return super().new(dataset, cls, **{"wgts": self.wgts if same else None, "stage": self.stage, **kwargs})

    @property
    def vocab(self):
        return self.dataset.vocab


def storage_for(n_bytes: int, device: torch.device, storage: str = "auto") -> torch.device:
    """Return the device the uint8 images should live on: the training GPU itself (with its index) when
    they fit in GPU_FRACTION of its free memory or `storage` is "device", else the host ("host", or the CPU)."""
    device = default_device(device)  # a bare "cuda" names the current GPU
    if storage not in STORAGES:
        raise ValueError(f"--storage must be one of {', '.join(STORAGES)}, not {storage!r}")
    if device.type == "cpu" or storage == "host":
        return torch.device("cpu")
    if storage == "device":
        return device
    free, _ = torch.cuda.mem_get_info(device)
    return device if n_bytes <= GPU_FRACTION * free else torch.device("cpu")


def memory_dataloaders(train: ImageTensors, valid: ImageTensors, bs: int, device: torch.device,
                       tfms: list, balance: str = "weights", storage: str = "auto") -> DataLoaders:
    """Return DataLoaders over decoded images moved to the best storage for `device` (see storage_for)."""
    device = default_device(device)
    where = storage_for(train.images.numel() + valid.images.numel(), device, storage)
    train, valid = train.to(where), valid.to(where)
    stage = where != device  # host images, batches on another device: staged through pinned memory
    wgts = None
    if balance == "sampler":
        counts = np.bincount(train.labels.cpu().numpy(), minlength=len(LABELS))
        wgts = (1.0 / counts)[train.labels.cpu().numpy()]
    train_bs = min(bs, len(train))
    train_dl = TensorBatchDL(train, bs=train_bs, shuffle=True, drop_last=len(train) > train_bs, wgts=wgts,
                             stage=stage, device=device, after_batch=Pipeline(tfms, split_idx=0))
    valid_dl = TensorBatchDL(valid, bs=bs, shuffle=False, drop_last=False, stage=stage, device=device,
                             after_batch=Pipeline(tfms, split_idx=1))
    dls = DataLoaders(train_dl, valid_dl, device=device)
    dls.storage = str(where) + (" (batches staged through pinned memory)" if stage else "")
    return dls


def datablock_dataloaders(images: Path, found: dict[str, ImageIndex], bs: int, device: torch.device,
                          tfms: list, balance: str = "weights", workers: int | None = None) -> DataLoaders:
    """Return fastai DataLoaders streaming the checked PNGs from disk through a DataBlock."""
    from fastai.vision.all import (CategoryBlock, DataBlock, GrandparentSplitter, ImageBlock, PILImageBW,
                                   parent_label)
    items = found["train"].paths + found["val"].paths
    dblock = DataBlock(blocks=(ImageBlock(cls=PILImageBW), CategoryBlock(vocab=list(LABELS))),
                       get_items=lambda _: items, get_y=parent_label,
                       splitter=GrandparentSplitter(train_name="train", valid_name="val"), batch_tfms=tfms)
    dsets = dblock.datasets(images)
    kwargs = dict(bs=bs, after_item=dblock.item_tfms, after_batch=dblock.batch_tfms, device=device)
    if workers is not None:
        kwargs["num_workers"] = workers
    if balance == "sampler":
        labels = np.array([LABELS.index(parent_label(p)) for p in dsets.train.items])
        dls = dsets.weighted_dataloaders((1.0 / np.bincount(labels, minlength=len(LABELS)))[labels], **kwargs)
    else:
        dls = dsets.dataloaders(**kwargs)
    dls.storage = "disk"
    return dls


def fits_in_memory(n_bytes: int) -> bool:
    """Return True when `n_bytes` of decoded images fit in the allowed share of available host RAM
    (for every training process of this machine: each decodes its own copy)."""
    import psutil
    copies = int(os.environ.get("LOCAL_WORLD_SIZE", 1))  # set by torchrun / accelerate launch
    return n_bytes * copies <= MEMORY_FRACTION * psutil.virtual_memory().available


def class_weights(labels) -> list[float]:
    """Return per-class loss weights N / (K · n_k), inverse to class frequency (mean weight per image = 1)."""
    counts = np.bincount(np.asarray(labels), minlength=len(LABELS)).astype(np.float64)
    return (counts.sum() / (len(counts) * counts)).tolist()


@dataclass
class DataSummary:
    """What was loaded and how: written to config.json."""
    loader: str                  # "memory" or "datablock"
    storage: str                 # memory path: the images' device ("cuda:0", "cpu"; staging noted) or "disk"
    image_shape: tuple           # (height, width) of the PNGs
    input_shape: tuple           # (height, width) fed to the model
    counts: dict                 # {split: {label: n}}
    class_weights: list          # loss weights per class (all 1 unless balance == "weights")
    decoded_bytes: int           # bytes of uint8 images held in memory (estimate for datablock)


def build_dataloaders(images, bs: int = 64, device=None, loader: str = "auto", balance: str = "weights",
                      size: int = 0, augment: AugmentConfig | None = AugmentConfig(), mean=None, std=None,
                      workers: int = 0, storage: str = "auto",
                      log=print) -> tuple[DataLoaders, SpecConfig, dict, DataSummary]:
    """Return (dls, spec, spec.json dict, summary) after checking images/; `loader` is auto|memory|datablock,
    `storage` (memory path) auto|device|host."""
    if loader not in ("auto", "memory", "datablock"):
        raise ValueError(f"--loader must be auto, memory or datablock, not {loader!r}")
    if balance not in ("none", "weights", "sampler"):
        raise ValueError(f"--balance must be none, weights or sampler, not {balance!r}")
    images = Path(images)
    device = default_device(device)
    spec, spec_dict, found = scan_images(images, log)
    shape = spec.image_shape
    in_shape = input_shape(shape, size)
    n_bytes = sum(len(found[s].paths) for s in TRAIN_SPLITS) * shape[0] * shape[1]
    if loader == "auto":
        loader = "memory" if fits_in_memory(n_bytes) else "datablock"
        if loader == "datablock":
            log(f"{n_bytes / 2**30:.1f} GiB of decoded images would not fit in memory: streaming PNGs from disk")
    from classify.archs import IMAGENET_MEAN, IMAGENET_STD
    tfms = batch_transforms(mean or IMAGENET_MEAN, std or IMAGENET_STD,
                            None if in_shape == shape else in_shape, augment)
    if loader == "memory":
        train, valid = (load_split_tensors(found[s], shape, workers, log) for s in TRAIN_SPLITS)
        for split, part in zip(TRAIN_SPLITS, (train, valid)):
            check_split(ImageIndex(split, part.paths, part.labels.tolist()), images)
        dls = memory_dataloaders(train, valid, bs, device, tfms, balance, storage)
        # fastai's export/predict need item transforms (PNG → tensor), which the tensor loaders do without
        dls.for_export = partial(datablock_dataloaders, images, found, bs, device, tfms, "none", 0)
        labels = train.labels.tolist()
        counts = {s: ImageIndex(s, p.paths, p.labels.tolist()).counts() for s, p in zip(TRAIN_SPLITS, (train, valid))}
    else:
        dls = datablock_dataloaders(images, found, bs, device, tfms, balance, workers or None)
        labels = found["train"].labels
        counts = {s: found[s].counts() for s in TRAIN_SPLITS}
    weights = class_weights(labels) if balance == "weights" else [1.0] * len(LABELS)
    summary = DataSummary(loader, dls.storage, shape, in_shape, counts, weights, n_bytes)
    where = f"images held on {dls.storage}" if loader == "memory" else "streaming PNGs from disk"
    log(f"data: {loader} path ({where}); "
        + "; ".join(f"{s}: " + ", ".join(f"{n} {k}" for k, n in c.items()) for s, c in counts.items())
        + f"; input {in_shape[0]}x{in_shape[1]}")
    return dls, spec, spec_dict, summary


def input_shape(image_shape: tuple[int, int], size: int = 0) -> tuple[int, int]:
    """Return the model's (height, width): the image's, or height `size` with the width keeping the aspect."""
    if not size:
        return tuple(image_shape)
    h, w = image_shape
    return (int(size), max(1, int(round(size * w / h))))

