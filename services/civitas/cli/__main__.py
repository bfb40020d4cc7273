import sys

from civitas.cli import main

sys.exit(main())
