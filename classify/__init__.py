"""classify: fine-tune ImageNet CNNs on spectrogram images, evaluate them, and score new audio."""
import warnings

# fastai's layers.py calls torch.jit.script at import time; torch 2.10+ deprecates it. Nothing a
# user of this package can act on, so it is not shown.
warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated", category=FutureWarning)
