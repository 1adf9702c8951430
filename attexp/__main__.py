import sys

from attexp.cli import main

sys.exit(main())
