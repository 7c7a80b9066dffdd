import sys

from concept_diffusion.cli import main

sys.exit(main())
