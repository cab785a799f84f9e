import sys

from resolver.commands.cli import main

sys.exit(main())
