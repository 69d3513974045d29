import sys

from deltabench.cli import main

sys.exit(main())
