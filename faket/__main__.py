import sys

from faket.cli import main

sys.exit(main())
