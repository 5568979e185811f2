"""The built-in SYNTHETIC demo corpus: speech-like bonafide clips and vocoder-style spoofs of them.

    spec2img-demo data/demo [--clips-per-class N] [--seed S] [--workers W] [--overwrite]
    (python -m spec2img.demo works too)

Nothing in it was recorded. Bonafide clips come from a source-filter model of a talker (glottal
pulses on a pitch contour with jitter and shimmer, moving formant resonators, aspiration, fricatives,
stop bursts, pauses, room and microphone); each spoof clip is one bonafide utterance resynthesized by
one of the vocoder-style systems in `SYSTEMS`. The folder holds `manifest.csv` (file,label,system,
speaker; paths relative to it; no split column, so spec2img splits by speaker), the audio under
`audio/<bonafide|system>/`, `demo.json` (the settings) and `README.txt`. Everything is drawn from the
seed, per utterance, so the bytes do not depend on the number of workers; a re-run with the same
settings is a no-op and an interrupted run is completed.

Modules: `talker` (the source-filter talker of the bonafide clips), `vocoders` (the spoofing systems),
`corpus` (settings, seeded plan, files, command line), `dsp` (framing and filter designs both use).
"""
from .corpus import (AUDIO_DIR, GENERATOR_VERSION, MANIFEST, README_FILE, SETTINGS_FILE, DemoClip, DemoConfig,
                     DemoError, DemoRun, Utterance, build_parser, corpus_clips, generate_corpus, main, plan_corpus,
                     utterance_clips, utterance_waves)
from .vocoders import SYSTEMS

__all__ = ["AUDIO_DIR", "GENERATOR_VERSION", "MANIFEST", "README_FILE", "SETTINGS_FILE", "SYSTEMS", "DemoClip",
           "DemoConfig", "DemoError", "DemoRun", "Utterance", "build_parser", "corpus_clips", "generate_corpus", "main",
           "plan_corpus", "utterance_clips", "utterance_waves"]
