"""python -m spec2img.demo DIR: the same command as spec2img-demo."""
import sys

from .corpus import main

sys.exit(main())
