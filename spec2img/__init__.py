"""spec2img: render labeled speech collections as normalized spectrogram PNG images (mel, linear, CQT or LFCC)."""
from .config import SpecConfig, load_spec, save_spec
from .features import audio_file_to_image, clip_to_image

__all__ = ["SpecConfig", "load_spec", "save_spec", "clip_to_image", "audio_file_to_image"]
