import sys

from tourserver.cli import main

sys.exit(main())
