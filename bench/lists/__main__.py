import sys

from bench.lists.run import main

sys.exit(main())
